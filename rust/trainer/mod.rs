//! The CSS trainer: contrastive learning with negative sampling and projected
//! (hard-thresholded) stochastic gradient steps on K-sparse complex spectra (ALGORITHM.md).
//!
//! Parallelism is Hogwild: each worker walks its own contiguous slice of the documents and
//! updates the shared spectra without locks (relaxed atomics, see `spectra`). Training advances
//! in `step` calls bounded by a deadline, stopping only at document boundaries, and everything
//! that determines the future (spectra, counters, each worker's cursor and RNG) is in
//! `TrainingState`, so a run paused and resumed with one thread is bit-for-bit the same run.
//!
//! One concept a file: `params` (settings and their ranges), `corpus` (the view of the token
//! ids), `stats` (what training reports), `state` (the state's byte format), `worker` (one
//! worker's loop over its documents and positions), `update` (the projected update rule),
//! `balance` (usage-balanced selection) and `rounds` (distributed training's rounds). This
//! file holds the `Trainer` and its epochs.

mod balance;
mod corpus;
mod params;
mod rounds;
mod state;
mod stats;
#[cfg(test)]
mod test_support;
mod update;
mod worker;

pub use corpus::Corpus;
pub use params::{Loss, LrSchedule, NegativeDistribution, Normalize, TrainParams};
pub use rounds::{RoundOutcome, RoundPlan};
pub use stats::{EpochStats, Progress};

use crate::error::{CssError, Result};
use crate::kernels::Isa;
use crate::rng::Rng;
use crate::sampler::AliasSampler;
use crate::spectra::{SharedSpectra, Spectra, UsageStats};
use balance::balance_weights;
use params::learning_rate;
use rayon::prelude::*;
use state::{check_state_cursors, decode_state, encode_state, StateHeader};
use stats::Tally;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};
use worker::{run_worker, Shared, WorkerCursor};

/// A training run over one corpus and vocabulary: the shared spectra, the workers' cursors,
/// the epoch's counters and the thread pool (its fields are private to this module tree).
pub struct Trainer {
    params: TrainParams,
    spectra: SharedSpectra,
    sampler: AliasSampler,
    keep_prob: Vec<f32>,
    corpus_tokens: u64,
    corpus_docs: usize,
    corpus_fingerprint: u64,
    epoch: usize,
    workers: Vec<WorkerCursor>,
    tokens_done: AtomicU64,
    elapsed: f64,
    epoch_tally: Tally,
    window_tally: Tally,
    epoch_tokens_start: u64,
    epoch_seconds: f64,
    epoch_stats: Vec<EpochStats>,
    done: bool,
    pool: rayon::ThreadPool,
    last_rate: f64,
    isa: Isa,
    /// Words holding each frequency, kept up to date by exploration steps when selection is
    /// usage-balanced (empty otherwise), recounted from the spectra at every epoch start.
    usage: Vec<AtomicI32>,
    /// Selection weight on a squared magnitude by usage count (index clamped to 0..=V; empty
    /// when selection is not balanced).
    balance: Vec<f32>,
}

fn build_pool(threads: usize) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("css-rs-train-{i}"))
        .build()
        .map_err(|e| CssError::InvalidData(format!("cannot start worker threads: {e}")))
}

/// word2vec's subsampling: keep probability `(sqrt(f / t) + 1) * t / f` with `t = sample * total`.
fn keep_probabilities(counts: &[u64], sample: f64) -> Vec<f32> {
    let total: u64 = counts.iter().sum();
    if sample <= 0.0 || total == 0 {
        return vec![1.0; counts.len()];
    }
    let t = sample * total as f64;
    counts
        .iter()
        .map(|&c| {
            if c == 0 {
                1.0
            } else {
                let f = c as f64;
                (((f / t).sqrt() + 1.0) * t / f).min(1.0) as f32
            }
        })
        .collect()
}

impl Trainer {
    /// A fresh trainer for `corpus` over a vocabulary with `counts` (ids in order).
    pub fn new(params: TrainParams, counts: &[u64], corpus: &Corpus<'_>) -> Result<Self> {
        params.validate()?;
        if counts.is_empty() {
            return Err(CssError::InvalidData(
                "the vocabulary is empty: nothing to train (lower min_word_freq or add data)"
                    .to_string(),
            ));
        }
        let spectra = SharedSpectra::random(counts.len(), &params.init_params(), params.seed);
        let mut t = Trainer::assemble(params, counts, corpus, spectra)?;
        t.start_epoch(corpus);
        Ok(t)
    }

    /// Continues a run from `state` (bytes from `state_bytes`). The corpus, the vocabulary
    /// counts and the settings must be the ones the state was made with.
    pub fn resume(
        params: TrainParams,
        counts: &[u64],
        corpus: &Corpus<'_>,
        state: &[u8],
    ) -> Result<Self> {
        params.validate()?;
        let (header, spectra) = decode_state(state)?;
        if header.params != params {
            return Err(CssError::InvalidData(format!(
                "the training state was made with different settings ({})",
                header.params.differences(&params).join("; ")
            )));
        }
        if header.vocab_size != counts.len() {
            return Err(CssError::InvalidData(format!(
                "the training state has {} words but the vocabulary has {}",
                header.vocab_size,
                counts.len()
            )));
        }
        if header.corpus_tokens != corpus.tokens()
            || header.corpus_docs != corpus.num_docs()
            || header.corpus_fingerprint != corpus.fingerprint()
        {
            return Err(CssError::InvalidData(
                "the training state was made on a different corpus".to_string(),
            ));
        }
        check_state_cursors(&header, corpus)?;
        let mut t = Trainer::assemble(params, counts, corpus, spectra)?;
        t.epoch = header.epoch;
        t.workers = header.workers;
        t.tokens_done = AtomicU64::new(header.tokens_done);
        t.elapsed = header.elapsed;
        t.epoch_tally = header.epoch_tally;
        t.epoch_tokens_start = header.epoch_tokens_start;
        t.epoch_seconds = header.epoch_seconds;
        t.epoch_stats = header.epoch_stats;
        t.done = header.done;
        Ok(t)
    }

    fn assemble(
        params: TrainParams,
        counts: &[u64],
        corpus: &Corpus<'_>,
        spectra: SharedSpectra,
    ) -> Result<Self> {
        let threads = if params.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            params.threads
        };
        let sampler = match params.negative_distribution {
            NegativeDistribution::Unigram => AliasSampler::unigram(counts, 0.75),
            NegativeDistribution::Uniform => AliasSampler::uniform(counts.len()),
        };
        let mut t = Trainer {
            keep_prob: keep_probabilities(counts, params.sample),
            sampler,
            spectra,
            corpus_tokens: corpus.tokens(),
            corpus_docs: corpus.num_docs(),
            corpus_fingerprint: corpus.fingerprint(),
            epoch: 0,
            workers: vec![
                WorkerCursor {
                    next_doc: 0,
                    end_doc: 0,
                    rng: Rng::new(0)
                };
                threads
            ],
            tokens_done: AtomicU64::new(0),
            elapsed: 0.0,
            epoch_tally: Tally::default(),
            window_tally: Tally::default(),
            epoch_tokens_start: 0,
            epoch_seconds: 0.0,
            epoch_stats: Vec::new(),
            done: false,
            pool: build_pool(threads)?,
            last_rate: 0.0,
            isa: Isa::from_env()?,
            usage: Vec::new(),
            balance: balance_weights(&params, counts.len()),
            params,
        };
        t.recount_usage();
        Ok(t)
    }

    /// Sets the usage counts from the spectra (with one thread the running counts are always
    /// equal to this; with several, racing updates can make them drift a little).
    fn recount_usage(&mut self) {
        if self.balance.is_empty() {
            return;
        }
        let counts = self.spectra.frequency_usage(self.params.frequency_dim);
        self.usage = counts.iter().map(|&c| AtomicI32::new(c as i32)).collect();
    }

    /// Splits the documents into one contiguous slice per worker, each with its own RNG
    /// derived from (seed, epoch, worker).
    fn start_epoch(&mut self, corpus: &Corpus<'_>) {
        let n = corpus.num_docs();
        let t = self.workers.len();
        for (i, w) in self.workers.iter_mut().enumerate() {
            w.next_doc = i * n / t;
            w.end_doc = (i + 1) * n / t;
            w.rng = Rng::derive(self.params.seed, ((self.epoch as u64) << 16) | i as u64);
        }
        self.epoch_tally = Tally::default();
        self.epoch_tokens_start = self.tokens_done.load(Relaxed);
        self.epoch_seconds = 0.0;
        self.recount_usage();
    }

    fn epoch_finished(&self) -> bool {
        self.workers.iter().all(|w| w.next_doc >= w.end_doc)
    }

    fn finish_epoch(&mut self, corpus: &Corpus<'_>) {
        let v = self.spectra.vocab_size().max(1);
        let usage = UsageStats::from_usage(
            &self.spectra.frequency_usage(self.params.frequency_dim),
            self.spectra.vocab_size(),
        );
        self.epoch_stats.push(EpochStats {
            epoch: self.epoch + 1,
            loss: self.epoch_tally.mean_loss().unwrap_or(f64::NAN),
            avg_active: self.spectra.active_slots() as f64 / v as f64,
            empty_words: self.spectra.empty_words(),
            effective_frequencies: usage.effective,
            largest_share: usage.largest_share,
            crowded_frequencies: usage.crowded,
            tokens: self.tokens_done.load(Relaxed) - self.epoch_tokens_start,
            positions: self.epoch_tally.positions,
            negative_updates: self.epoch_tally.negative_updates,
            seconds: self.epoch_seconds,
        });
        self.epoch += 1;
        if self.epoch >= self.params.epochs {
            self.done = true;
        } else {
            self.start_epoch(corpus);
        }
    }

    fn total_planned(&self) -> u64 {
        self.corpus_tokens * self.params.epochs as u64
    }

    /// Trains for about `budget` (never stopping inside a document), then returns.
    pub fn step(&mut self, corpus: &Corpus<'_>, budget: Duration) -> Result<Progress> {
        self.check_corpus(corpus)?;
        let started = Instant::now();
        let deadline = started + budget;
        let tokens_before = self.tokens_done.load(Relaxed);
        while !self.done {
            if self.epoch_finished() {
                self.finish_epoch(corpus);
                continue;
            }
            let epoch_start = Instant::now();
            let tally = self.run_workers(corpus, deadline)?;
            self.epoch_seconds += epoch_start.elapsed().as_secs_f64();
            self.epoch_tally.add(&tally);
            self.window_tally.add(&tally);
            if Instant::now() >= deadline {
                break;
            }
        }
        let secs = started.elapsed().as_secs_f64();
        self.elapsed += secs;
        if secs > 0.0 {
            self.last_rate = (self.tokens_done.load(Relaxed) - tokens_before) as f64 / secs;
        }
        Ok(self.progress())
    }

    fn check_corpus(&self, corpus: &Corpus<'_>) -> Result<()> {
        if corpus.tokens() != self.corpus_tokens || corpus.num_docs() != self.corpus_docs {
            return Err(CssError::InvalidData(
                "step() was given a different corpus than the trainer was made for".to_string(),
            ));
        }
        Ok(())
    }

    fn run_workers(&mut self, corpus: &Corpus<'_>, deadline: Instant) -> Result<Tally> {
        let shared = Shared {
            params: &self.params,
            spectra: &self.spectra,
            sampler: &self.sampler,
            keep_prob: &self.keep_prob,
            tokens_done: &self.tokens_done,
            total_planned: self.total_planned().max(1),
            epoch: self.epoch,
            isa: self.isa,
            usage: &self.usage,
            balance: &self.balance,
        };
        let workers = &mut self.workers;
        let results: Vec<_> = self.pool.install(|| {
            workers
                .par_iter_mut()
                .map(|w| {
                    // Each worker works on a copy of its cursor on its own stack: the cursors
                    // sit side by side, and the RNG in them moves at every draw.
                    let mut own = *w;
                    let result = run_worker(&shared, corpus, &mut own, deadline);
                    *w = own;
                    result
                })
                .collect()
        });
        let mut total = Tally::default();
        let mut bad_id = None;
        for r in results {
            match r {
                Ok(t) => total.add(&t),
                Err((id, t)) => {
                    total.add(&t);
                    bad_id = bad_id.or(Some(id));
                }
            }
        }
        match bad_id {
            None => Ok(total),
            Some(id) => Err(CssError::InvalidData(format!(
                "token id {id} is outside the vocabulary (0..{})",
                self.keep_prob.len()
            ))),
        }
    }

    pub fn current_learning_rate(&self) -> f64 {
        let p = self.tokens_done.load(Relaxed) as f64 / self.total_planned().max(1) as f64;
        learning_rate(&self.params, p, self.epoch) as f64
    }

    /// Current figures; resets the report window used for the loss.
    pub fn progress(&mut self) -> Progress {
        let v = self.spectra.vocab_size().max(1);
        let w = std::mem::take(&mut self.window_tally);
        let loss = w
            .mean_loss()
            .or_else(|| self.epoch_tally.mean_loss())
            .unwrap_or_else(|| self.epoch_stats.last().map_or(f64::NAN, |e| e.loss));
        Progress {
            tokens_done: self.tokens_done.load(Relaxed),
            tokens_total: self.total_planned(),
            epoch: (self.epoch + 1).min(self.params.epochs),
            epochs: self.params.epochs,
            loss,
            avg_active: self.spectra.active_slots() as f64 / v as f64,
            learning_rate: self.current_learning_rate(),
            elapsed: self.elapsed,
            tokens_per_second: self.last_rate,
            done: self.done,
        }
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    pub fn epoch_stats(&self) -> &[EpochStats] {
        &self.epoch_stats
    }

    /// Runs the plain-Rust kernels whatever the CPU has (tests hold the forms to each other).
    pub fn use_scalar_kernels(&mut self) {
        self.isa = Isa::SCALAR;
    }

    pub fn params(&self) -> &TrainParams {
        &self.params
    }

    /// The current spectra in query form.
    pub fn snapshot(&self) -> Spectra {
        self.spectra.snapshot(self.params.frequency_dim)
    }

    /// Serialises everything needed to continue exactly where this run stands.
    pub fn state_bytes(&self) -> Vec<u8> {
        let header = StateHeader {
            format: "css-rs-training-state".to_string(),
            params: self.params.clone(),
            vocab_size: self.spectra.vocab_size(),
            corpus_tokens: self.corpus_tokens,
            corpus_docs: self.corpus_docs,
            corpus_fingerprint: self.corpus_fingerprint,
            epoch: self.epoch,
            workers: self.workers.clone(),
            tokens_done: self.tokens_done.load(Relaxed),
            elapsed: self.elapsed,
            epoch_tally: self.epoch_tally,
            epoch_tokens_start: self.epoch_tokens_start,
            epoch_seconds: self.epoch_seconds,
            epoch_stats: self.epoch_stats.clone(),
            done: self.done,
        };
        encode_state(&header, &self.spectra)
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{clustered_corpus, small_params, train_all};
    use super::*;

    #[test]
    fn single_thread_is_deterministic() {
        let (ids, offsets) = clustered_corpus(200, 1);
        let a = train_all(small_params(1), &ids, &offsets).snapshot();
        let b = train_all(small_params(1), &ids, &offsets).snapshot();
        assert_eq!(a, b);
    }

    /// The SIMD kernels (when this CPU has them) and the plain ones train the same spectra,
    /// bit for bit, through both phases and with K both a multiple of 8 and not.
    #[test]
    fn scalar_and_simd_kernels_train_the_same_spectra() {
        let (ids, offsets) = clustered_corpus(300, 5);
        let counts = vec![100u64; 10];
        let corpus = Corpus::new(&ids, &offsets).unwrap();
        for k in [4, 8, 12] {
            let params = TrainParams {
                max_frequencies: k,
                exploration_fraction: 0.5,
                ..small_params(1)
            };
            let run = |scalar: bool| {
                let mut t = Trainer::new(params.clone(), &counts, &corpus).unwrap();
                if scalar {
                    t.use_scalar_kernels();
                }
                while !t.is_done() {
                    t.step(&corpus, Duration::from_secs(60)).unwrap();
                }
                t.spectra.to_raw()
            };
            assert_eq!(run(false), run(true), "K = {k}");
        }
    }

    #[test]
    fn learns_clusters_with_two_threads() {
        let (ids, offsets) = clustered_corpus(400, 3);
        let snap = train_all(small_params(2), &ids, &offsets).snapshot();
        let sim = |a: usize, b: usize| crate::queries::similarity(&snap, a, b);
        let within = (sim(0, 1) + sim(2, 3) + sim(5, 6) + sim(7, 8)) / 4.0;
        let across = (sim(0, 5) + sim(1, 6) + sim(2, 7) + sim(3, 8)) / 4.0;
        assert!(within > across + 0.3, "within {within} across {across}");
    }
}
