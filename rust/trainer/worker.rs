//! One worker's side of training: it walks its slice of the documents, subsamples each one,
//! draws negatives and trains every position (score, loss, gradient weights, updates).

use super::balance::Balance;
use super::corpus::Corpus;
use super::params::{learning_rate, Loss, TrainParams};
use super::stats::Tally;
use super::update::{update_word, Acc, Bounds, Work};
use crate::kernels::{Cand, Isa, Members, SparseAcc, Step};
use crate::rng::Rng;
use crate::sampler::AliasSampler;
use crate::spectra::{SharedSpectra, WordBuf, MAX_K};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// Scores enter exp() clamped: beyond this the sigmoid is 0 or 1 in f32 anyway.
const SCORE_CLAMP: f32 = 30.0;
/// The reported loss is the mean over every 8th position: computing logs for every position
/// cost ~5% of training time and the estimate is just as informative.
const LOSS_SAMPLE_EVERY: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(super) struct WorkerCursor {
    pub(super) next_doc: usize,
    pub(super) end_doc: usize,
    pub(super) rng: Rng,
}

/// Read-only view of the trainer that all workers share.
pub(super) struct Shared<'a> {
    pub(super) params: &'a TrainParams,
    pub(super) spectra: &'a SharedSpectra,
    pub(super) sampler: &'a AliasSampler,
    pub(super) keep_prob: &'a [f32],
    pub(super) tokens_done: &'a AtomicU64,
    pub(super) total_planned: u64,
    pub(super) epoch: usize,
    pub(super) isa: Isa,
    pub(super) usage: &'a [AtomicI32],
    pub(super) balance: &'a [f32],
}

impl Shared<'_> {
    /// Whether selection is usage-balanced (`balance_gamma` > 0).
    #[inline]
    pub(super) fn balanced(&self) -> bool {
        !self.balance.is_empty()
    }
}

/// Spectra copied out for the current position (reused; `len` says what is valid, so they
/// are never re-zeroed or copied whole).
struct Bufs {
    target: WordBuf,
    negs: Vec<WordBuf>,
    ctx: Vec<WordBuf>,
}

/// Per-worker scratch memory, allocated once per step.
struct Scratch {
    work: Work,
    bufs: Bufs,
    sentence: Vec<u32>,
    /// Negatives of the current position: id and score (then gradient weight g_n).
    negs: Vec<(u32, f32)>,
    /// Negatives drawn one position ahead, so their spectra can be prefetched.
    next_negs: Vec<u32>,
    /// Words already updated at this position: a later update of the same word must reload
    /// it rather than use the copy taken before.
    updated: Vec<u32>,
}

impl Scratch {
    fn new(sh: &Shared<'_>) -> Self {
        let p = sh.params;
        let w = p.window_size.min(1024);
        Scratch {
            work: Work {
                ctx: SparseAcc::default(),
                err: SparseAcc::default(),
                ctx_bounds: Bounds::NONE,
                err_bounds: Bounds::NONE,
                members: Members::default(),
                cands: Vec::with_capacity(p.max_frequencies * (2 * w + p.negative_count + 2)),
                step: Step::default(),
                slots: [Cand::default(); MAX_K],
                balance: Balance::new(sh),
            },
            bufs: Bufs {
                target: WordBuf::default(),
                negs: vec![WordBuf::default(); p.negative_count],
                ctx: vec![WordBuf::default(); 2 * w],
            },
            sentence: Vec::new(),
            negs: Vec::with_capacity(p.negative_count),
            next_negs: Vec::with_capacity(p.negative_count),
            updated: Vec::with_capacity(2 * w + p.negative_count + 1),
        }
    }
}

/// Trains the worker's documents until its slice ends or the deadline passes. Returns the
/// tally, or the first out-of-vocabulary token id met (its document is left untrained).
pub(super) fn run_worker(
    sh: &Shared<'_>,
    corpus: &Corpus<'_>,
    w: &mut WorkerCursor,
    deadline: Instant,
) -> std::result::Result<Tally, (u32, Tally)> {
    let mut scratch = Scratch::new(sh);
    let mut tally = Tally::default();
    let check_every = sh.params.training_batch_size.max(1);
    let mut since_check = 0usize;
    // Tokens of this worker not yet added to the shared count. Publishing once per work unit
    // rather than per document keeps the shared counter's cache line from bouncing between
    // cores; with one thread the count seen (shared + pending) is exact either way.
    let mut pending = 0u64;
    while w.next_doc < w.end_doc {
        let doc = corpus.doc(w.next_doc);
        let done = sh.tokens_done.load(Relaxed) + pending;
        if let Err(bad) = train_document(
            sh,
            doc,
            w.next_doc,
            done,
            &mut w.rng,
            &mut scratch,
            &mut tally,
        ) {
            sh.tokens_done.fetch_add(pending, Relaxed);
            scratch.work.balance.publish(sh);
            return Err((bad, tally));
        }
        pending += doc.len() as u64;
        w.next_doc += 1;
        since_check += 1;
        // Checking the clock per work unit (training_batch_size documents) keeps it cheap.
        if since_check >= check_every {
            since_check = 0;
            sh.tokens_done
                .fetch_add(std::mem::take(&mut pending), Relaxed);
            scratch.work.balance.publish(sh);
            if Instant::now() >= deadline {
                break;
            }
        }
    }
    sh.tokens_done.fetch_add(pending, Relaxed);
    scratch.work.balance.publish(sh);
    Ok(tally)
}

/// Trains one document; `done` is the number of tokens trained before it (the schedule's
/// progress).
fn train_document(
    sh: &Shared<'_>,
    doc: &[u32],
    doc_index: usize,
    done: u64,
    rng: &mut Rng,
    s: &mut Scratch,
    tally: &mut Tally,
) -> std::result::Result<(), u32> {
    let p = sh.params;
    let progress = done as f64 / sh.total_planned as f64;
    let lr = learning_rate(p, progress, sh.epoch);
    let explore = progress < p.exploration_fraction;
    // Subsampling: every token is written and the length advances only for kept ones, with
    // no branch on the (random) outcome.
    s.sentence.clear();
    s.sentence.resize(doc.len(), 0);
    let mut kept = 0;
    for &id in doc {
        // The only check of token ids: before any update of this document.
        let Some(&keep) = sh.keep_prob.get(id as usize) else {
            return Err(id);
        };
        s.sentence[kept] = id;
        kept += (keep >= 1.0 || rng.next_f32() < keep) as usize;
    }
    s.sentence.truncate(kept);
    if explore && sh.balanced() {
        s.work.balance.refresh(sh);
    }
    for &w in &s.sentence {
        sh.spectra.prefetch(w as usize);
    }
    draw_negatives(sh, rng, &mut s.next_negs);
    for t in 0..s.sentence.len() {
        // The loss is estimated on a fixed subset of positions, the same however the run is
        // paused and resumed.
        let sample_loss = (doc_index + t) % LOSS_SAMPLE_EVERY == 0;
        let window = if p.shrink_windows {
            1 + rng.below(p.window_size)
        } else {
            p.window_size
        };
        let at = Position {
            t,
            window,
            lr,
            explore,
            sample_loss,
        };
        train_position(sh, &at, rng, s, tally);
    }
    Ok(())
}

/// Draws the negatives of the next position and prefetches their spectra.
fn draw_negatives(sh: &Shared<'_>, rng: &mut Rng, out: &mut Vec<u32>) {
    out.clear();
    for _ in 0..sh.params.negative_count {
        let neg = sh.sampler.sample(rng);
        sh.spectra.prefetch(neg as usize);
        out.push(neg);
    }
}

#[inline]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x.clamp(-SCORE_CLAMP, SCORE_CLAMP)).exp())
}

/// -log(sigmoid(x)), computed without overflow.
#[inline]
fn softplus_neg(x: f64) -> f64 {
    (-x).max(0.0) + (-x.abs()).exp().ln_1p()
}

/// What one position of a document trains with.
struct Position {
    t: usize,
    window: usize,
    lr: f32,
    explore: bool,
    sample_loss: bool,
}

fn train_position(
    sh: &Shared<'_>,
    at: &Position,
    rng: &mut Rng,
    s: &mut Scratch,
    tally: &mut Tally,
) {
    let p = sh.params;
    let &Position {
        t,
        window,
        lr,
        explore,
        sample_loss,
    } = at;
    let n = s.sentence.len();
    let lo = t.saturating_sub(window);
    let hi = (t + window + 1).min(n);
    let n_ctx = hi - lo - 1;
    if n_ctx == 0 {
        return;
    }
    let Scratch {
        work,
        bufs,
        sentence,
        negs,
        next_negs,
        updated,
    } = s;
    // Context spectrum C: mean of the context words' current spectra (copies kept for the
    // context updates below).
    work.ctx.clear();
    for (j, i) in (lo..hi).filter(|&i| i != t).enumerate() {
        sh.spectra.load(sentence[i] as usize, &mut bufs.ctx[j]);
        work.ctx.add_word(&bufs.ctx[j], 1.0);
    }
    work.ctx.scale(1.0 / n_ctx as f32);
    if explore {
        work.ctx_bounds = Bounds::of(&work.ctx, &work.balance);
    }

    let target = sentence[t];
    sh.spectra.load(target as usize, &mut bufs.target);
    let score_w = sh.isa.dot(&bufs.target, &work.ctx) - p.score_bias;

    negs.clear();
    for &neg in next_negs.iter() {
        if neg == target {
            continue;
        }
        let buf = &mut bufs.negs[negs.len()];
        sh.spectra.load(neg as usize, buf);
        negs.push((neg, sh.isa.dot(buf, &work.ctx) - p.score_bias));
    }
    draw_negatives(sh, rng, next_negs);

    if sample_loss {
        tally.loss += position_loss(p, score_w, negs);
        tally.loss_positions += 1;
    }
    tally.positions += 1;

    // Gradient weights g (target) and g_n (negatives; they replace the scores in `negs`).
    let g = match p.loss {
        Loss::Logistic => {
            for e in negs.iter_mut() {
                e.1 = sigmoid(e.1);
            }
            1.0 - sigmoid(score_w)
        }
        Loss::Hinge => {
            let mut g = 0.0f32;
            for e in negs.iter_mut() {
                e.1 = if p.margin - score_w + e.1 > 0.0 {
                    1.0
                } else {
                    0.0
                };
                g += e.1;
            }
            g
        }
    };

    // E = g*S_w - sum g_n*S_n, taken before any spectrum of this position changes.
    if p.update_context {
        work.err.clear();
        work.err.add_word(&bufs.target, g);
        for (i, &(_, gn)) in negs.iter().enumerate() {
            work.err.add_word(&bufs.negs[i], -gn);
        }
        if explore {
            work.err_bounds = Bounds::of(&work.err, &work.balance);
        }
    }

    updated.clear();
    update_word(
        sh,
        target,
        &bufs.target,
        lr * g,
        Acc::Ctx,
        explore,
        lr,
        work,
    );
    updated.push(target);
    let lr_neg = lr * p.negative_lr_scale;
    for (i, &(neg, gn)) in negs.iter().enumerate() {
        // A step of zero changes nothing: skip its load and store (`negative_lr_scale` 0
        // leaves negatives to the context updates' error term).
        if lr_neg * gn == 0.0 {
            continue;
        }
        if updated.contains(&neg) {
            sh.spectra.load(neg as usize, &mut bufs.negs[i]);
        }
        update_word(
            sh,
            neg,
            &bufs.negs[i],
            -lr_neg * gn,
            Acc::Ctx,
            explore,
            lr,
            work,
        );
        updated.push(neg);
        tally.negative_updates += 1;
    }
    if p.update_context && !work.err.touched().is_empty() {
        let step = lr / n_ctx as f32;
        for (j, i) in (lo..hi).filter(|&i| i != t).enumerate() {
            let c = sentence[i];
            if updated.contains(&c) {
                sh.spectra.load(c as usize, &mut bufs.ctx[j]);
            }
            update_word(sh, c, &bufs.ctx[j], step, Acc::Err, explore, lr, work);
            updated.push(c);
        }
    }
}

/// The position's loss from its scores (logistic or hinge).
fn position_loss(p: &TrainParams, score_w: f32, negs: &[(u32, f32)]) -> f64 {
    match p.loss {
        Loss::Logistic => {
            softplus_neg(score_w as f64)
                + negs
                    .iter()
                    .map(|e| softplus_neg(-(e.1 as f64)))
                    .sum::<f64>()
        }
        Loss::Hinge => negs
            .iter()
            .map(|e| (p.margin - score_w + e.1).max(0.0) as f64)
            .sum(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::small_params;
    use super::super::Trainer;
    use super::*;
    use std::time::Duration;

    /// Ids are checked when training reads them, before any update of their document.
    #[test]
    fn out_of_vocabulary_ids_are_refused_before_any_update() {
        let counts = vec![1u64; 3];
        let corpus = Corpus::new(&[1, 5], &[0, 2]).unwrap();
        let mut t = Trainer::new(small_params(1), &counts, &corpus).unwrap();
        let before = t.snapshot();
        let err = t.step(&corpus, Duration::from_secs(1)).unwrap_err();
        assert!(err
            .to_string()
            .contains("token id 5 is outside the vocabulary (0..3)"));
        assert_eq!(t.snapshot(), before);
    }
}
