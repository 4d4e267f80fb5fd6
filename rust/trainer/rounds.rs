//! Rounds of distributed training (issue 16): a worker's trainer starts each round from the
//! global spectra the driver sends, trains a token budget of its own documents at the
//! round's place in the global learning-rate schedule, and returns the words it changed.
//!
//! A round's result depends only on its arguments (the spectra, the plan, the settings' seed)
//! and the worker's documents: with one thread it is bit for bit the same however often it is
//! run, so a failed round can simply be run again.

use super::{run_worker, Corpus, Shared, Tally, TrainParams, Trainer, WorkerCursor};
use crate::distributed::{SlotArrays, SparseRows};
use crate::error::{CssError, Result};
use crate::rng::Rng;
use crate::spectra::SharedSpectra;
use rayon::prelude::*;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

/// Where a worker's round stands in its own documents and in the cluster's schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoundPlan {
    /// The worker's first document of the round.
    pub first_doc: usize,
    /// Tokens to train (the round stops at the first document boundary past it, or at the
    /// end of the worker's documents).
    pub token_budget: u64,
    /// The worker's epoch (0-based): the step schedule and the random streams read it.
    pub epoch: usize,
    pub round: u64,
    pub worker: u32,
    pub workers: u32,
    /// Tokens the whole cluster trained before this round, and will train in all.
    pub cluster_tokens_done: u64,
    pub cluster_tokens_total: u64,
}

/// What a round did besides changing spectra.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RoundOutcome {
    /// The worker's next document (its cursor for the next round).
    pub next_doc: usize,
    pub tokens: u64,
    pub positions: u64,
    /// Summed loss over `loss_positions` sampled positions.
    pub loss: f64,
    pub loss_positions: u64,
    pub seconds: f64,
}

/// Long enough to never stop a round by time (a deadline the clock cannot hold would panic).
const NO_DEADLINE: Duration = Duration::from_secs(1_000_000_000);

/// The last document of a round from `first` with `budget` tokens: the first boundary at or
/// past the budget (at least one document when any is left).
fn round_end(corpus: &Corpus<'_>, first: usize, budget: u64) -> usize {
    let start = corpus.offsets[first];
    let goal = start.saturating_add(budget.min(i64::MAX as u64) as i64);
    let rest = &corpus.offsets[first + 1..];
    (first + 1 + rest.partition_point(|&o| o < goal)).min(corpus.num_docs())
}

impl Trainer {
    /// A trainer for rounds over a vocabulary with `counts`: its spectra are set by each
    /// round, its documents given to each round.
    pub fn for_rounds(params: TrainParams, counts: &[u64]) -> Result<Self> {
        params.validate()?;
        if counts.is_empty() {
            return Err(CssError::InvalidData(
                "the vocabulary is empty: nothing to train (lower min_word_freq or add data)"
                    .to_string(),
            ));
        }
        let no_docs = Corpus::new(&[], &[0])?;
        let spectra = SharedSpectra::empty(counts.len(), params.max_frequencies);
        Trainer::assemble(params, counts, &no_docs, spectra)
    }

    /// The global spectra a run starts from (the same as a single-process run's).
    pub fn initial_spectra(params: &TrainParams, vocab_size: usize) -> SlotArrays {
        SlotArrays::random(vocab_size, &params.init_params(), params.seed)
    }

    /// Trains one round of `corpus` (this worker's documents) from `start`; returns the words
    /// it changed and its figures. Documents of the round are split among the threads in
    /// contiguous slices, each with a random stream of (seed, round, worker, thread).
    pub fn train_round(
        &mut self,
        corpus: &Corpus<'_>,
        start: &SlotArrays,
        plan: &RoundPlan,
    ) -> Result<(SparseRows, RoundOutcome)> {
        self.check_round(corpus, start, plan)?;
        let started = Instant::now();
        self.spectra = start.to_shared();
        self.recount_usage();
        let end = round_end(corpus, plan.first_doc, plan.token_budget);
        let threads = self.workers.len();
        let docs = end - plan.first_doc;
        for (i, w) in self.workers.iter_mut().enumerate() {
            let stream = (plan.round << 32) ^ ((plan.worker as u64) << 12) ^ i as u64;
            *w = WorkerCursor {
                next_doc: plan.first_doc + i * docs / threads,
                end_doc: plan.first_doc + (i + 1) * docs / threads,
                rng: Rng::derive(self.params.seed ^ 0x0D15_7B1B_u64, stream),
            };
        }
        // The schedule reads `done / total` with `done` this worker's running count: scaled
        // by 1/W, that is the cluster's position assuming every worker advances at this one's
        // pace through the round.
        let w = plan.workers.max(1) as u64;
        let tokens_done = AtomicU64::new(plan.cluster_tokens_done / w);
        let tally = self.run_round_workers(corpus, &tokens_done, plan, w)?;
        let after = SlotArrays::from_shared(&self.spectra);
        let outcome = RoundOutcome {
            next_doc: end,
            tokens: (corpus.offsets[end] - corpus.offsets[plan.first_doc]) as u64,
            positions: tally.positions,
            loss: tally.loss,
            loss_positions: tally.loss_positions,
            seconds: started.elapsed().as_secs_f64(),
        };
        Ok((start.changed_rows(&after), outcome))
    }

    fn check_round(&self, corpus: &Corpus<'_>, start: &SlotArrays, plan: &RoundPlan) -> Result<()> {
        if start.k != self.params.max_frequencies || start.vocab_size() != self.keep_prob.len() {
            return Err(CssError::InvalidData(format!(
                "round spectra have {} words of K = {}, the trainer {} of K = {}",
                start.vocab_size(),
                start.k,
                self.keep_prob.len(),
                self.params.max_frequencies
            )));
        }
        start.validate(self.params.frequency_dim)?;
        if plan.first_doc >= corpus.num_docs() {
            return Err(CssError::invalid(
                "first_doc",
                plan.first_doc,
                &format!("must be below the worker's {} documents", corpus.num_docs()),
            ));
        }
        if plan.workers == 0 || plan.worker >= plan.workers {
            return Err(CssError::invalid(
                "worker",
                plan.worker,
                &format!("must be below workers ({})", plan.workers),
            ));
        }
        if plan.cluster_tokens_done > plan.cluster_tokens_total {
            return Err(CssError::invalid(
                "cluster_tokens_done",
                plan.cluster_tokens_done,
                &format!(
                    "must be <= cluster_tokens_total ({})",
                    plan.cluster_tokens_total
                ),
            ));
        }
        Ok(())
    }

    fn run_round_workers(
        &mut self,
        corpus: &Corpus<'_>,
        tokens_done: &AtomicU64,
        plan: &RoundPlan,
        workers: u64,
    ) -> Result<Tally> {
        let shared = Shared {
            params: &self.params,
            spectra: &self.spectra,
            sampler: &self.sampler,
            keep_prob: &self.keep_prob,
            tokens_done,
            total_planned: (plan.cluster_tokens_total / workers).max(1),
            epoch: plan.epoch,
            isa: self.isa,
            usage: &self.usage,
            balance: &self.balance,
        };
        let deadline = Instant::now() + NO_DEADLINE;
        let cursors = &mut self.workers;
        let results: Vec<_> = self.pool.install(|| {
            cursors
                .par_iter_mut()
                .map(|w| run_worker(&shared, corpus, w, deadline))
                .collect()
        });
        let mut total = Tally::default();
        for r in results {
            match r {
                Ok(t) => total.add(&t),
                Err((id, _)) => {
                    return Err(CssError::InvalidData(format!(
                        "token id {id} is outside the vocabulary (0..{})",
                        self.keep_prob.len()
                    )))
                }
            }
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distributed::merge;

    fn corpus_ids(docs: usize, len: usize, vocab: u32) -> (Vec<u32>, Vec<i64>) {
        let mut rng = Rng::new(3);
        let ids: Vec<u32> = (0..docs * len)
            .map(|i| ((i as u32 % 7) * 3 + rng.below(5) as u32) % vocab)
            .collect();
        let offsets = (0..=docs).map(|d| (d * len) as i64).collect();
        (ids, offsets)
    }

    fn params() -> TrainParams {
        TrainParams {
            frequency_dim: 32,
            max_frequencies: 4,
            threads: 1,
            sample: 0.0,
            epochs: 1,
            ..TrainParams::default()
        }
    }

    fn plan(first_doc: usize, budget: u64) -> RoundPlan {
        RoundPlan {
            first_doc,
            token_budget: budget,
            epoch: 0,
            round: 0,
            worker: 0,
            workers: 2,
            cluster_tokens_done: 0,
            cluster_tokens_total: 4000,
        }
    }

    #[test]
    fn a_round_stops_at_the_first_boundary_past_its_budget() {
        let (ids, offsets) = corpus_ids(10, 20, 25);
        let corpus = Corpus::new(&ids, &offsets).unwrap();
        assert_eq!(round_end(&corpus, 0, 1), 1);
        assert_eq!(round_end(&corpus, 0, 40), 2);
        assert_eq!(round_end(&corpus, 0, 41), 3);
        assert_eq!(round_end(&corpus, 8, 1000), 10);
    }

    #[test]
    fn a_repeated_round_gives_the_same_rows_bit_for_bit() {
        let (ids, offsets) = corpus_ids(50, 30, 25);
        let corpus = Corpus::new(&ids, &offsets).unwrap();
        let counts = vec![10u64; 25];
        let p = params();
        let start = Trainer::initial_spectra(&p, 25);
        let mut t = Trainer::for_rounds(p.clone(), &counts).unwrap();
        let (a, oa) = t.train_round(&corpus, &start, &plan(5, 300)).unwrap();
        // Another round in between must leave nothing behind.
        t.train_round(&corpus, &start, &plan(20, 300)).unwrap();
        let (b, ob) = t.train_round(&corpus, &start, &plan(5, 300)).unwrap();
        assert_eq!(a, b);
        assert_eq!((oa.next_doc, oa.tokens), (15, 300));
        assert_eq!((ob.next_doc, ob.positions), (15, oa.positions));
        assert!(!a.is_empty());
        let merged = merge(&start, &[a], p.frequency_dim).unwrap();
        assert_ne!(merged, start);
    }

    #[test]
    fn a_round_refuses_spectra_and_plans_that_do_not_fit() {
        let (ids, offsets) = corpus_ids(5, 10, 25);
        let corpus = Corpus::new(&ids, &offsets).unwrap();
        let p = params();
        let mut t = Trainer::for_rounds(p.clone(), &[1; 25]).unwrap();
        let wrong = Trainer::initial_spectra(&p, 24);
        assert!(t.train_round(&corpus, &wrong, &plan(0, 10)).is_err());
        let start = Trainer::initial_spectra(&p, 25);
        assert!(t.train_round(&corpus, &start, &plan(5, 10)).is_err());
        let bad_worker = RoundPlan {
            worker: 2,
            ..plan(0, 10)
        };
        assert!(t.train_round(&corpus, &start, &bad_worker).is_err());
    }
}
