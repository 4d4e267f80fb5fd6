//! The CSS trainer: contrastive learning with negative sampling and projected
//! (hard-thresholded) stochastic gradient steps on K-sparse complex spectra (ALGORITHM.md).
//!
//! Parallelism is Hogwild: each worker walks its own contiguous slice of the documents and
//! updates the shared spectra without locks (relaxed atomics, see `spectra`). Training advances
//! in `step` calls bounded by a deadline, stopping only at document boundaries, and everything
//! that determines the future (spectra, counters, each worker's cursor and RNG) is in
//! `TrainingState`, so a run paused and resumed with one thread is bit-for-bit the same run.

use crate::error::{CssError, Result};
use crate::kernels::{Cand, Isa, Members, SparseAcc, Step};
use crate::rng::Rng;
use crate::sampler::AliasSampler;
use crate::spectra::{InitParams, SharedSpectra, Spectra, UsageStats, WordBuf, EMPTY, MAX_K};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Amplitudes are clamped here so that even absurd learning rates can never overflow f32 into
/// infinities and NaNs (scores stay below K * 1e12).
const AMP_LIMIT: f32 = 1.0e6;
/// Scores enter exp() clamped: beyond this the sigmoid is 0 or 1 in f32 anyway.
const SCORE_CLAMP: f32 = 30.0;
/// The reported loss is the mean over every 8th position: computing logs for every position
/// cost ~5% of training time and the estimate is just as informative.
const LOSS_SAMPLE_EVERY: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Loss {
    Logistic,
    Hinge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Normalize {
    None,
    L2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    Linear,
    Step,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NegativeDistribution {
    Unigram,
    Uniform,
}

/// Every setting the engine reads; names and defaults are ALGORITHM.md's (and TrainConfig's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainParams {
    pub frequency_dim: usize,
    pub max_frequencies: usize,
    pub min_init_frequencies: Option<usize>,
    pub init_amp_min: f32,
    pub init_amp_max: f32,
    pub use_phases: bool,
    pub window_size: usize,
    /// Each position uses a window drawn uniformly from `1..=window_size` (word2vec's and
    /// gensim's reduced window), so nearer words count more.
    pub shrink_windows: bool,
    pub negative_count: usize,
    pub negative_distribution: NegativeDistribution,
    pub loss: Loss,
    pub margin: f32,
    pub learning_rate: f32,
    pub min_lr: f32,
    pub lr_schedule: LrSchedule,
    pub negative_lr_scale: f32,
    pub update_context: bool,
    pub sparsity_penalty: f32,
    pub normalize: Normalize,
    pub max_norm: Option<f32>,
    pub sample: f64,
    pub exploration_fraction: f64,
    /// Usage-balanced selection: while exploring, a candidate's magnitude is weighted by
    /// `min(1, share / usage)^gamma`, where `usage` is the number of words holding the
    /// frequency and `share = K·V/D` its even share, so an entry on a crowded frequency must be
    /// stronger to be kept. 0 is plain top-K by magnitude.
    pub balance_gamma: f32,
    /// Subtracted from every score before the loss: words with disjoint supports then score
    /// below zero, so negatives need not share frequencies with a context to be told apart.
    pub score_bias: f32,
    pub explore_prune_threshold: f32,
    pub refine_prune_threshold: f32,
    pub refine_prune_every: u32,
    pub epochs: usize,
    pub training_batch_size: usize,
    pub threads: usize,
    pub seed: u64,
}

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams {
            frequency_dim: 200,
            max_frequencies: 16,
            min_init_frequencies: None,
            init_amp_min: 0.001,
            init_amp_max: 0.01,
            use_phases: true,
            window_size: 3,
            shrink_windows: false,
            negative_count: 5,
            negative_distribution: NegativeDistribution::Unigram,
            loss: Loss::Logistic,
            margin: 0.5,
            learning_rate: 0.3,
            min_lr: 1e-4,
            lr_schedule: LrSchedule::Linear,
            negative_lr_scale: 0.1,
            update_context: true,
            sparsity_penalty: 0.0,
            normalize: Normalize::None,
            max_norm: None,
            sample: 1e-4,
            exploration_fraction: 0.2,
            balance_gamma: 8.0,
            score_bias: 2.0,
            explore_prune_threshold: 0.001,
            refine_prune_threshold: 1e-4,
            refine_prune_every: 1000,
            epochs: 5,
            training_batch_size: 100,
            threads: 0,
            seed: 1,
        }
    }
}

fn finite_at_least(field: &str, v: f64, lo: f64, open: bool) -> Result<()> {
    let ok = v.is_finite() && if open { v > lo } else { v >= lo };
    if ok {
        Ok(())
    } else {
        let rel = if open { ">" } else { ">=" };
        Err(CssError::invalid(
            field,
            v,
            &format!("must be a finite number {rel} {lo}"),
        ))
    }
}

impl TrainParams {
    pub fn from_json(text: &str) -> Result<Self> {
        let p: TrainParams = serde_json::from_str(text)
            .map_err(|e| CssError::InvalidData(format!("invalid training settings: {e}")))?;
        p.validate()?;
        Ok(p)
    }

    /// The same rules as Python's TrainConfig, so the engine is safe when driven from Rust.
    pub fn validate(&self) -> Result<()> {
        let d = self.frequency_dim;
        if d == 0 || d >= u16::MAX as usize {
            return Err(CssError::invalid(
                "frequency_dim",
                d,
                "must be in [1, 65534]",
            ));
        }
        let k = self.max_frequencies;
        if k == 0 || k > MAX_K || k > d {
            return Err(CssError::invalid(
                "max_frequencies",
                k,
                &format!("must be in [1, {}] and <= frequency_dim ({d})", MAX_K),
            ));
        }
        if let Some(m) = self.min_init_frequencies {
            if m == 0 || m > k {
                return Err(CssError::invalid(
                    "min_init_frequencies",
                    m,
                    &format!("must be in [1, max_frequencies ({k})]"),
                ));
            }
        }
        finite_at_least("init_amp_min", self.init_amp_min as f64, 0.0, true)?;
        finite_at_least(
            "init_amp_max",
            self.init_amp_max as f64,
            self.init_amp_min as f64,
            false,
        )?;
        if self.window_size == 0 {
            return Err(CssError::invalid("window_size", 0, "must be >= 1"));
        }
        finite_at_least("learning_rate", self.learning_rate as f64, 0.0, true)?;
        finite_at_least("min_lr", self.min_lr as f64, 0.0, false)?;
        finite_at_least("margin", self.margin as f64, 0.0, false)?;
        finite_at_least(
            "negative_lr_scale",
            self.negative_lr_scale as f64,
            0.0,
            false,
        )?;
        finite_at_least("sparsity_penalty", self.sparsity_penalty as f64, 0.0, false)?;
        finite_at_least("sample", self.sample, 0.0, false)?;
        finite_at_least(
            "explore_prune_threshold",
            self.explore_prune_threshold as f64,
            0.0,
            false,
        )?;
        finite_at_least(
            "refine_prune_threshold",
            self.refine_prune_threshold as f64,
            0.0,
            false,
        )?;
        if let Some(m) = self.max_norm {
            finite_at_least("max_norm", m as f64, 0.0, true)?;
        }
        if !(0.0..=1.0).contains(&self.exploration_fraction) {
            return Err(CssError::invalid(
                "exploration_fraction",
                self.exploration_fraction,
                "must be in [0, 1]",
            ));
        }
        finite_at_least("balance_gamma", self.balance_gamma as f64, 0.0, false)?;
        if self.balance_gamma > 32.0 {
            return Err(CssError::invalid(
                "balance_gamma",
                self.balance_gamma,
                "must be in [0, 32]",
            ));
        }
        finite_at_least("score_bias", self.score_bias as f64, 0.0, false)?;
        if self.refine_prune_every == 0 {
            return Err(CssError::invalid("refine_prune_every", 0, "must be >= 1"));
        }
        if self.epochs == 0 {
            return Err(CssError::invalid("epochs", 0, "must be >= 1"));
        }
        if self.training_batch_size == 0 {
            return Err(CssError::invalid("training_batch_size", 0, "must be >= 1"));
        }
        if self.loss == Loss::Hinge && self.normalize == Normalize::None && self.max_norm.is_none()
        {
            return Err(CssError::invalid(
                "loss",
                "hinge",
                "hinge scores are unbounded: it needs normalize = 'l2' or max_norm",
            ));
        }
        Ok(())
    }

    fn init_params(&self) -> InitParams {
        InitParams {
            frequency_dim: self.frequency_dim,
            k: self.max_frequencies,
            min_init: self.min_init_frequencies.unwrap_or(self.max_frequencies),
            amp_min: self.init_amp_min,
            amp_max: self.init_amp_max,
            use_phases: self.use_phases,
        }
    }
}

/// A tokenised corpus: all token ids, and `num_docs + 1` offsets into them.
#[derive(Clone, Copy)]
pub struct Corpus<'a> {
    pub ids: &'a [u32],
    pub offsets: &'a [i64],
}

impl<'a> Corpus<'a> {
    /// Checks the offsets. Token ids are checked as training reads them (see
    /// `train_document`): a scan here would make a memory-mapped corpus resident all at once.
    pub fn new(ids: &'a [u32], offsets: &'a [i64]) -> Result<Self> {
        if offsets.is_empty() || offsets[0] != 0 {
            return Err(CssError::InvalidData(
                "corpus offsets must start with 0 (one more offset than documents)".to_string(),
            ));
        }
        if *offsets.last().unwrap_or(&0) != ids.len() as i64 {
            return Err(CssError::InvalidData(format!(
                "corpus offsets end at {} but there are {} token ids",
                offsets.last().unwrap_or(&0),
                ids.len()
            )));
        }
        if offsets.windows(2).any(|w| w[1] < w[0]) {
            return Err(CssError::InvalidData(
                "corpus offsets must not decrease".to_string(),
            ));
        }
        Ok(Corpus { ids, offsets })
    }

    pub fn num_docs(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn tokens(&self) -> u64 {
        self.ids.len() as u64
    }

    #[inline]
    fn doc(&self, i: usize) -> &'a [u32] {
        &self.ids[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    /// A cheap identity of the corpus, so that a checkpoint is never resumed against other
    /// data: the sizes and the first and last 1024 ids and offsets. Only the ends, on
    /// purpose: a read of a memory-mapped file maps the whole page-cache folio around it (up
    /// to 2 MB), so even 64 samples spread over a 160 MB corpus made 110 MB of it resident.
    /// (The pipeline also checksums its corpus files.)
    pub fn fingerprint(&self) -> u64 {
        const ENDS: usize = 1024;
        let mut h: u64 = 0xCBF2_9CE4_8422_2325;
        let mut mix = |x: u64| {
            h ^= x;
            h = h.wrapping_mul(0x0100_0000_01B3);
        };
        mix(self.ids.len() as u64);
        mix(self.offsets.len() as u64);
        let ends = |n: usize| (0..n.min(ENDS)).chain(n.saturating_sub(ENDS).max(ENDS)..n);
        for i in ends(self.ids.len()) {
            mix(self.ids[i] as u64);
        }
        for i in ends(self.offsets.len()) {
            mix(self.offsets[i] as u64);
        }
        h
    }
}

/// Figures of one finished epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    pub epoch: usize,
    /// NaN when the epoch had no position to estimate it on (e.g. one-word documents).
    #[serde(deserialize_with = "f64_or_nan")]
    pub loss: f64,
    pub avg_active: f64,
    pub empty_words: usize,
    /// How the entries spread over the frequencies at the epoch's end (`UsageStats`; states
    /// saved before these figures existed read back as 0).
    #[serde(default)]
    pub effective_frequencies: f64,
    #[serde(default)]
    pub largest_share: f64,
    #[serde(default)]
    pub crowded_frequencies: usize,
    pub tokens: u64,
    pub positions: u64,
    pub negative_updates: u64,
    pub seconds: f64,
}

/// JSON has no NaN: serde_json writes it as `null`, which reads back as NaN here.
fn f64_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// What callers see between steps.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub tokens_done: u64,
    pub tokens_total: u64,
    /// 1-based epoch being trained (the last one when done).
    pub epoch: usize,
    pub epochs: usize,
    /// Mean loss per position since the previous report.
    pub loss: f64,
    pub avg_active: f64,
    pub learning_rate: f64,
    pub elapsed: f64,
    pub tokens_per_second: f64,
    pub done: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct WorkerCursor {
    next_doc: usize,
    end_doc: usize,
    rng: Rng,
}

/// Running sums of the epoch in progress (and of the current report window).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Tally {
    loss: f64,
    loss_positions: u64,
    positions: u64,
    negative_updates: u64,
}

impl Tally {
    fn mean_loss(&self) -> Option<f64> {
        (self.loss_positions > 0).then(|| self.loss / self.loss_positions as f64)
    }

    fn add(&mut self, o: &Tally) {
        self.loss += o.loss;
        self.loss_positions += o.loss_positions;
        self.positions += o.positions;
        self.negative_updates += o.negative_updates;
    }
}

/// Everything a resumed run needs apart from the spectra arrays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StateHeader {
    format: String,
    params: TrainParams,
    vocab_size: usize,
    corpus_tokens: u64,
    corpus_docs: usize,
    corpus_fingerprint: u64,
    epoch: usize,
    workers: Vec<WorkerCursor>,
    tokens_done: u64,
    elapsed: f64,
    epoch_tally: Tally,
    epoch_tokens_start: u64,
    epoch_seconds: f64,
    epoch_stats: Vec<EpochStats>,
    done: bool,
}

const STATE_MAGIC: &[u8; 8] = b"CSSSTAT1";

mod rounds;
pub use rounds::{RoundOutcome, RoundPlan};

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

/// The usage-balanced selection weights on squared magnitudes, `min(1, share / u)^(2·gamma)`
/// for a usage count `u` in `0..=V`, with `share = K·V/D`. Empty when gamma is 0.
///
/// Only crowding is penalised: a frequency under its share gets no bonus. (Measured on gcide:
/// boosting rare frequencies too, `(share / u)^gamma` unclamped, makes words adopt whatever
/// tiny entry lands on an unused frequency, and WordSim-353 falls to ~0.42 at K = 8.)
fn balance_weights(p: &TrainParams, vocab_size: usize) -> Vec<f32> {
    if p.balance_gamma <= 0.0 {
        return Vec::new();
    }
    let share = (p.max_frequencies * vocab_size) as f64 / p.frequency_dim as f64;
    (0..=vocab_size)
        .map(|u| {
            let r = (share / u.max(1) as f64).min(1.0);
            let w = r.powf(2.0 * p.balance_gamma as f64);
            w.min(f32::MAX as f64) as f32
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
            return Err(CssError::InvalidData(
                "the training state was made with different settings".to_string(),
            ));
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

fn encode_state(header: &StateHeader, spectra: &SharedSpectra) -> Vec<u8> {
    let head = serde_json::to_vec(header).expect("state header serialises");
    let (freq, re, im, counters) = spectra.to_raw();
    let mut out = Vec::with_capacity(32 + head.len() + freq.len() * 10 + counters.len() * 4);
    out.extend_from_slice(STATE_MAGIC);
    out.extend_from_slice(&(head.len() as u64).to_le_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(&(spectra.k() as u64).to_le_bytes());
    out.extend_from_slice(&(freq.len() as u64).to_le_bytes());
    freq.iter()
        .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
    re.iter()
        .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
    im.iter()
        .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
    counters
        .iter()
        .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
    out
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let end =
            end.ok_or_else(|| CssError::InvalidData("training state is truncated".to_string()))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    fn array<const N: usize, T>(&mut self, n: usize, f: fn([u8; N]) -> T) -> Result<Vec<T>> {
        let bytes =
            self.take(n.checked_mul(N).ok_or_else(|| {
                CssError::InvalidData("training state sizes overflow".to_string())
            })?)?;
        Ok(bytes
            .chunks_exact(N)
            .map(|c| f(c.try_into().expect("chunk of N")))
            .collect())
    }
}

fn decode_state(bytes: &[u8]) -> Result<(StateHeader, SharedSpectra)> {
    let mut r = Reader { buf: bytes, pos: 0 };
    if r.take(8)? != STATE_MAGIC {
        return Err(CssError::InvalidData(
            "not a css-rs training state (bad magic bytes)".to_string(),
        ));
    }
    let head_len = r.u64()? as usize;
    let header: StateHeader = serde_json::from_slice(r.take(head_len)?)
        .map_err(|e| CssError::InvalidData(format!("training state header is corrupt: {e}")))?;
    let k = r.u64()? as usize;
    let n = r.u64()? as usize;
    if k != header.params.max_frequencies || Some(n) != header.vocab_size.checked_mul(k) {
        return Err(CssError::InvalidData(
            "training state arrays do not match its header".to_string(),
        ));
    }
    let freq = r.array(n, u16::from_le_bytes)?;
    let re = r.array(n, u32::from_le_bytes)?;
    let im = r.array(n, u32::from_le_bytes)?;
    let counters = r.array(header.vocab_size, u32::from_le_bytes)?;
    if r.pos != bytes.len() {
        return Err(CssError::InvalidData(
            "training state has trailing bytes".to_string(),
        ));
    }
    if header.workers.is_empty() {
        return Err(CssError::InvalidData(
            "training state has no workers".to_string(),
        ));
    }
    header.params.validate()?;
    check_state_frequencies(&freq, k, header.params.frequency_dim)?;
    let spectra = SharedSpectra::from_raw(k, &freq, &re, &im, &counters);
    Ok((header, spectra))
}

/// A state's positions must lie within its corpus and run: a damaged or forged state must
/// be refused with an error, never make a worker read past the corpus or a counter wrap.
fn check_state_cursors(header: &StateHeader, corpus: &Corpus<'_>) -> Result<()> {
    let docs = corpus.num_docs();
    if let Some(w) = header
        .workers
        .iter()
        .find(|w| w.end_doc > docs || w.next_doc > w.end_doc)
    {
        return Err(CssError::InvalidData(format!(
            "training state has a worker at document {} of {}..{}, outside the corpus's {docs} \
             documents",
            w.next_doc, w.next_doc, w.end_doc
        )));
    }
    if header.epoch > header.params.epochs || (header.epoch == header.params.epochs) != header.done
    {
        return Err(CssError::InvalidData(format!(
            "training state is at epoch {} of {} (done: {})",
            header.epoch, header.params.epochs, header.done
        )));
    }
    let planned = corpus.tokens().saturating_mul(header.params.epochs as u64);
    if header.epoch_tokens_start > header.tokens_done || header.tokens_done > planned {
        return Err(CssError::InvalidData(format!(
            "training state counts {} tokens done (epoch started at {}) of {planned} planned",
            header.tokens_done, header.epoch_tokens_start
        )));
    }
    let times = [header.elapsed, header.epoch_seconds];
    if times.iter().any(|t| !(t.is_finite() && *t >= 0.0)) {
        return Err(CssError::InvalidData(
            "training state has a negative or non-finite duration".to_string(),
        ));
    }
    Ok(())
}

/// Every frequency of a state's spectra is EMPTY or below D, at most once per word.
fn check_state_frequencies(freq: &[u16], k: usize, frequency_dim: usize) -> Result<()> {
    for (w, slots) in freq.chunks(k.max(1)).enumerate() {
        for (i, &f) in slots.iter().enumerate().filter(|&(_, &f)| f != EMPTY) {
            if f as usize >= frequency_dim || slots[..i].contains(&f) {
                return Err(CssError::InvalidData(format!(
                    "training state: word {w} has frequency {f} twice or outside 0..{frequency_dim}"
                )));
            }
        }
    }
    Ok(())
}

fn learning_rate(p: &TrainParams, progress: f64, epoch: usize) -> f32 {
    match p.lr_schedule {
        LrSchedule::Linear => {
            let lr = p.learning_rate as f64 - (p.learning_rate - p.min_lr) as f64 * progress;
            lr.max(p.min_lr as f64) as f32
        }
        LrSchedule::Step => p.learning_rate * 0.9f32.powi((epoch / 5) as i32),
    }
}

/// Read-only view of the trainer that all workers share.
struct Shared<'a> {
    params: &'a TrainParams,
    spectra: &'a SharedSpectra,
    sampler: &'a AliasSampler,
    keep_prob: &'a [f32],
    tokens_done: &'a AtomicU64,
    total_planned: u64,
    epoch: usize,
    isa: Isa,
    usage: &'a [AtomicI32],
    balance: &'a [f32],
}

impl Shared<'_> {
    /// Whether selection is usage-balanced (`balance_gamma` > 0).
    #[inline]
    fn balanced(&self) -> bool {
        !self.balance.is_empty()
    }
}

/// A worker's side of usage-balanced selection: its view of the words per frequency is the
/// shared counts plus its own changes not yet published (publishing each change at once would
/// make the cores fight over the counters' cache lines; with one thread the view is exact).
/// The selection weights are taken from that view at the start of each document: looked up
/// per candidate they would add a shared load and a table lookup to every comparison of the
/// selection, and a document moves the counts of a frequency by a few words in thousands.
#[derive(Default)]
struct Balance {
    pending: Vec<i32>,
    /// Each frequency's selection weight, as of the start of the current document.
    weights: Vec<f32>,
    /// Candidates with their selection keys, for the top-K choice.
    ranked: Vec<(f32, Cand)>,
}

impl Balance {
    fn new(sh: &Shared<'_>) -> Self {
        Balance {
            pending: vec![0; sh.usage.len()],
            weights: vec![1.0; sh.usage.len()],
            ..Balance::default()
        }
    }

    /// Takes the weights from the current counts (at a document start: with one thread, a
    /// run paused and resumed between documents sees the same weights).
    fn refresh(&mut self, sh: &Shared<'_>) {
        let top = sh.balance.len() - 1;
        for ((w, u), d) in self.weights.iter_mut().zip(sh.usage).zip(&self.pending) {
            *w = sh.balance[((u.load(Relaxed) + d).max(0) as usize).min(top)];
        }
    }

    /// The selection weight of frequency `f` (1 when selection is not balanced).
    #[inline]
    fn weight(&self, f: u16) -> f32 {
        self.weights.get(f as usize).copied().unwrap_or(1.0)
    }

    /// Moves the counts from the support `old` to the kept candidates' support (a frequency in
    /// both is taken off and put back: no set difference to compute).
    fn moved(&mut self, old: &[u16], kept: impl Iterator<Item = u16>) {
        for &f in old {
            self.pending[f as usize] -= 1;
        }
        for f in kept {
            self.pending[f as usize] += 1;
        }
    }

    /// Adds this worker's changes to the shared counts.
    fn publish(&mut self, sh: &Shared<'_>) {
        for (f, d) in self
            .pending
            .iter_mut()
            .enumerate()
            .filter(|(_, d)| **d != 0)
        {
            sh.usage[f].fetch_add(std::mem::take(d), Relaxed);
        }
    }

    /// Drops the candidates after the first `own` whose key is at most `bar`.
    fn drop_weaker_newcomers(&self, cands: &mut Vec<Cand>, own: usize, bar: f32) {
        let mut n = own;
        for i in own..cands.len() {
            let c = cands[i];
            cands[n] = c;
            n += (c.mag2 * self.weight(c.f) > bar) as usize;
        }
        cands.truncate(n);
    }

    /// Keeps the `k` candidates of largest weighted squared magnitude.
    fn select(&mut self, cands: &mut Vec<Cand>, k: usize) {
        self.ranked.clear();
        for c in cands.iter() {
            self.ranked.push((c.mag2 * self.weight(c.f), *c));
        }
        self.ranked
            .select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
        cands.clear();
        cands.extend(self.ranked[..k].iter().map(|r| r.1));
    }
}

/// Scratch that updates write into: the context and error accumulators and candidate lists.
struct Work {
    ctx: SparseAcc,
    err: SparseAcc,
    /// The largest squared magnitude in `ctx` and `err` (exploration only): a step too small
    /// to lift any of their entries over the bar needs no scan for new candidates.
    ctx_max2: f32,
    err_max2: f32,
    /// The frequencies already among an exploration step's candidates.
    members: Members,
    cands: Vec<Cand>,
    /// The new values of a refinement step, and the same as candidates when they need more
    /// than a store (at most K: the word's own entries).
    step: Step,
    slots: [Cand; MAX_K],
    /// Usage-balanced selection's state (unused when it is off).
    balance: Balance,
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
                ctx_max2: f32::INFINITY,
                err_max2: f32::INFINITY,
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
fn run_worker(
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
        work.ctx_max2 = work.ctx.max_mag2();
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
            work.err_max2 = work.err.max_mag2();
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
        if gn == 0.0 {
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

#[derive(Clone, Copy)]
enum Acc {
    Ctx,
    Err,
}

/// One projected gradient step on word `word`: `current + scale * X` on the candidate support
/// (current support, plus X's support while exploring), keep the K largest, soft-threshold,
/// normalise, prune, store.
#[allow(clippy::too_many_arguments)]
fn update_word(
    sh: &Shared<'_>,
    word: u32,
    current: &WordBuf,
    scale: f32,
    which: Acc,
    explore: bool,
    lr: f32,
    work: &mut Work,
) {
    let Work {
        ctx,
        err,
        ctx_max2,
        err_max2,
        members,
        cands,
        step,
        slots,
        balance,
    } = work;
    let (x, x_max2) = match which {
        Acc::Ctx => (&*ctx, *ctx_max2),
        Acc::Err => (&*err, *err_max2),
    };
    if explore {
        let step_max2 = scale * scale * x_max2;
        explore_step(
            sh,
            word,
            current,
            scale,
            (x, step_max2),
            lr,
            members,
            cands,
            step,
            balance,
        );
    } else {
        refine(sh, word, current, scale, x, lr, step, slots, balance);
    }
}

/// An exploration step: the candidates are the word's own entries moved by the step, then
/// every other frequency of `x` that the step makes large enough to matter. When no new
/// frequency qualifies, no own value needs clamping or pruning and the record is as loaded,
/// only the values are written (as in `refine`).
#[allow(clippy::too_many_arguments)]
fn explore_step(
    sh: &Shared<'_>,
    word: u32,
    current: &WordBuf,
    scale: f32,
    (x, step_max2): (&SparseAcc, f32),
    lr: f32,
    members: &mut Members,
    cands: &mut Vec<Cand>,
    step: &mut Step,
    balance: &mut Balance,
) {
    let p = sh.params;
    let n = current.len.min(MAX_K);
    members.restart();
    let mut duplicated = false;
    for &f in &current.freq[..n] {
        duplicated |= members.contains(f);
        members.insert(f);
    }
    let floor2 = prune_floor2(sh, word, true);
    cands.clear();
    let own_inside = if duplicated {
        own_candidates_merging_duplicates(current, scale, x, cands);
        false
    } else {
        let inside = sh
            .isa
            .step(current, x, scale, floor2, AMP_LIMIT * AMP_LIMIT, step);
        cands.extend(step_candidates(current, step));
        inside
    };
    let own = cands.len();
    let k = p.max_frequencies;
    // Without normalisation every later step (L1, clamp, max_norm) only shrinks a value, so a
    // new entry already at or below the prune threshold would be pruned: skip it. And when the
    // word's own entries already fill K slots, a new entry must beat the smallest of them to
    // be among the K largest: skip the rest before selecting (most steps are small).
    let mut bar = if p.normalize == Normalize::None {
        p.explore_prune_threshold * p.explore_prune_threshold
    } else {
        0.0
    };
    // (With usage-balanced selection the bar is the smallest own key: weights are at most 1,
    // so a weaker entry cannot win even on an uncrowded frequency.)
    if own >= k {
        let smallest = cands
            .iter()
            .fold(f32::INFINITY, |m, c| m.min(c.mag2 * balance.weight(c.f)));
        bar = bar.max(smallest);
    }
    // The scan finds nothing when no entry of the step can clear the bar (most steps of
    // negatives and context words: small rates times small values). The margin covers the
    // rounding of the bound against the kernel's own products, so results do not change.
    if step_max2 * 1.001 > bar {
        sh.isa.new_candidates(x, scale, bar, members, cands);
    }
    if sh.balanced() && own >= k {
        // The kernel barred new entries by magnitude; by key, most of those on crowded
        // frequencies cannot beat the smallest own key either: drop them before selecting.
        balance.drop_weaker_newcomers(cands, own, bar);
    }
    if own_inside && cands.len() == own && store_step_values(sh, word, current, step, lr) {
        return;
    }
    // Projection onto K-sparse spectra: keep the K largest magnitudes (weighted by usage
    // when selection is balanced).
    if cands.len() > k {
        if sh.balanced() {
            balance.select(cands, k);
        } else {
            cands.select_nth_unstable_by(k - 1, |a, b| b.mag2.total_cmp(&a.mag2));
            cands.truncate(k);
        }
    }
    shrink(p, lr, cands);
    store_kept(sh, word, current, cands, floor2, balance);
}

/// The own candidates of a word whose record a torn concurrent write left with a frequency
/// twice: the entries of one frequency add up, then the step applies once.
fn own_candidates_merging_duplicates(
    current: &WordBuf,
    scale: f32,
    x: &SparseAcc,
    cands: &mut Vec<Cand>,
) {
    for (f, re, im) in current.entries() {
        match cands.iter_mut().find(|c| c.f == f) {
            Some(c) => {
                c.re += re;
                c.im += im;
            }
            None => {
                let (xr, xi) = x.get(f);
                cands.push(Cand {
                    f,
                    re: re + scale * xr,
                    im: im + scale * xi,
                    mag2: 0.0,
                });
            }
        }
    }
    for c in cands.iter_mut() {
        c.mag2 = c.re * c.re + c.im * c.im;
    }
}

/// A refinement step: the support is frozen, so the candidates are the word's own entries.
/// When only the numeric clamp applies (the defaults), no value needs clamping or pruning and
/// no other thread has changed the word's support since `current` was loaded, only the values
/// are written; otherwise the step goes through `shrink` and `store_kept` like any other.
/// (A frequency duplicated by a torn concurrent write stays two entries that add up.)
#[allow(clippy::too_many_arguments)]
fn refine(
    sh: &Shared<'_>,
    word: u32,
    current: &WordBuf,
    scale: f32,
    x: &SparseAcc,
    lr: f32,
    step: &mut Step,
    slots: &mut [Cand; MAX_K],
    balance: &mut Balance,
) {
    let p = sh.params;
    let floor2 = prune_floor2(sh, word, false);
    let inside = sh
        .isa
        .step(current, x, scale, floor2, AMP_LIMIT * AMP_LIMIT, step);
    if inside && store_step_values(sh, word, current, step, lr) {
        return;
    }
    let slots = &mut slots[..current.len.min(MAX_K)];
    for (slot, cand) in slots.iter_mut().zip(step_candidates(current, step)) {
        *slot = cand;
    }
    shrink(p, lr, slots);
    store_kept(sh, word, current, slots, floor2, balance);
}

/// The step's new values on the word's own entries, as candidates.
fn step_candidates<'a>(current: &'a WordBuf, step: &'a Step) -> impl Iterator<Item = Cand> + 'a {
    (0..current.len.min(MAX_K)).map(|j| Cand {
        f: current.freq[j],
        re: step.re[j],
        im: step.im[j],
        mag2: step.mag2[j],
    })
}

/// The common step's store: when only the numeric clamp applies (the defaults) and the word's
/// record is still as `current` was loaded, only the step's values are written. False when
/// the step must go through `shrink` and `store_kept`.
fn store_step_values(sh: &Shared<'_>, word: u32, current: &WordBuf, step: &Step, lr: f32) -> bool {
    let n = current.len.min(MAX_K);
    only_clamps(sh.params, lr)
        && sh.spectra.store_values(
            word as usize,
            current,
            step.re[..n]
                .iter()
                .zip(&step.im[..n])
                .map(|(&re, &im)| (re, im)),
        )
}

/// True when neither L1 nor a norm applies (the defaults): an update only needs the clamp.
fn only_clamps(p: &TrainParams, lr: f32) -> bool {
    lr * p.sparsity_penalty <= 0.0 && p.normalize == Normalize::None && p.max_norm.is_none()
}

/// Proximal L1 and normalisation when set, and always the numeric clamp.
fn shrink(p: &TrainParams, lr: f32, cands: &mut [Cand]) {
    if only_clamps(p, lr) {
        for c in cands.iter_mut().filter(|c| needs_clamp(c)) {
            clamp(c);
        }
    } else {
        shrink_and_normalise(p, lr * p.sparsity_penalty, cands);
    }
}

/// The squared amplitude at or below which this update prunes an entry: the exploration
/// threshold on every update, the refinement one every `refine_prune_every` updates of the
/// word, else 0 (only exact zeros go).
fn prune_floor2(sh: &Shared<'_>, word: u32, explore: bool) -> f32 {
    let p = sh.params;
    let prune = if explore {
        Some(p.explore_prune_threshold)
    } else {
        // A plain load and store, not a locked fetch_add: a lost increment between two
        // threads only delays one prune (Hogwild), and single-thread runs stay exact.
        // The counter runs up to refine_prune_every and restarts (no division per update).
        let counter = sh.spectra.counter(word as usize);
        let n = counter.load(Relaxed) + 1;
        let due = n >= p.refine_prune_every as u64;
        counter.store(if due { 0 } else { n }, Relaxed);
        due.then_some(p.refine_prune_threshold)
    };
    prune.map_or(0.0, |th| th * th)
}

/// Stores the candidates above `floor2` (thresholds are >= 0, so exact zeros always go) in
/// place of `current`, the record as loaded.
fn store_kept(
    sh: &Shared<'_>,
    word: u32,
    current: &WordBuf,
    cands: &[Cand],
    floor2: f32,
    balance: &mut Balance,
) {
    let kept = cands.iter().filter(|c| c.mag2 > floor2);
    if sh.balanced() {
        balance.moved(
            &current.freq[..current.len.min(MAX_K)],
            kept.clone().map(|c| c.f),
        );
    }
    sh.spectra
        .store_entries(word as usize, kept.map(|c| (c.f, c.re, c.im)));
}

/// A value `clamp` changes: NaN, infinite (above the limit too) or above AMP_LIMIT.
#[inline]
fn needs_clamp(c: &Cand) -> bool {
    c.mag2 > AMP_LIMIT * AMP_LIMIT || c.mag2.is_nan()
}

/// Zeroes a value that is not finite (only reachable with absurd settings; the entry is then
/// dropped) and scales one above AMP_LIMIT down to it.
#[inline(never)]
fn clamp(c: &mut Cand) {
    if !c.mag2.is_finite() {
        *c = Cand {
            f: c.f,
            ..Cand::default()
        };
    } else if c.mag2 > AMP_LIMIT * AMP_LIMIT {
        c.scale(AMP_LIMIT / c.mag2.sqrt());
    }
}

/// Proximal L1 (soft threshold `thr`), the numeric clamp, then unit normalisation or the
/// `max_norm` cap.
fn shrink_and_normalise(p: &TrainParams, thr: f32, cands: &mut [Cand]) {
    let mut norm2 = 0.0f32;
    for c in cands.iter_mut() {
        if !c.mag2.is_finite() {
            clamp(c);
            continue;
        }
        if thr > 0.0 {
            let a = c.mag2.sqrt();
            let factor = if a > thr { (a - thr) / a } else { 0.0 };
            c.scale(factor);
        }
        clamp(c);
        norm2 += c.mag2;
    }
    let norm = norm2.sqrt();
    let target_norm = match (p.normalize, p.max_norm) {
        (Normalize::L2, _) => Some(1.0),
        (Normalize::None, Some(m)) if norm > m => Some(m),
        _ => None,
    };
    if let Some(tn) = target_norm {
        if norm > 0.0 && norm.is_finite() {
            let f = tn / norm;
            for c in cands.iter_mut() {
                c.re *= f;
                c.im *= f;
                c.mag2 *= f * f;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two clusters of words that share contexts: words 0..5 and 5..10.
    fn clustered_corpus(docs: usize, seed: u64) -> (Vec<u32>, Vec<i64>) {
        let mut rng = Rng::new(seed);
        let mut ids = Vec::new();
        let mut offsets = vec![0i64];
        for d in 0..docs {
            let base = if d % 2 == 0 { 0 } else { 5 };
            for _ in 0..20 {
                ids.push(base + rng.below(5) as u32);
            }
            offsets.push(ids.len() as i64);
        }
        (ids, offsets)
    }

    fn small_params(threads: usize) -> TrainParams {
        TrainParams {
            frequency_dim: 40,
            max_frequencies: 4,
            epochs: 3,
            threads,
            sample: 0.0,
            training_batch_size: 7,
            ..TrainParams::default()
        }
    }

    fn train_all(params: TrainParams, ids: &[u32], offsets: &[i64]) -> Trainer {
        let counts = vec![100u64; 10];
        let corpus = Corpus::new(ids, offsets).unwrap();
        let mut t = Trainer::new(params, &counts, &corpus).unwrap();
        while !t.is_done() {
            t.step(&corpus, Duration::from_secs(60)).unwrap();
        }
        t
    }

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
    fn pausing_and_resuming_gives_the_same_spectra() {
        let (ids, offsets) = clustered_corpus(200, 2);
        let balanced = TrainParams {
            balance_gamma: 2.0,
            score_bias: 1.0,
            exploration_fraction: 0.6,
            ..small_params(1)
        };
        for params in [small_params(1), balanced] {
            let reference = train_all(params.clone(), &ids, &offsets).state_bytes();
            let counts = vec![100u64; 10];
            let corpus = Corpus::new(&ids, &offsets).unwrap();
            let mut t = Trainer::new(params.clone(), &counts, &corpus).unwrap();
            let mut steps = 0;
            while !t.is_done() {
                // Zero budget: every step does one work unit, then we round-trip the state.
                t.step(&corpus, Duration::ZERO).unwrap();
                let bytes = t.state_bytes();
                t = Trainer::resume(params.clone(), &counts, &corpus, &bytes).unwrap();
                steps += 1;
            }
            assert!(steps > 10);
            let reference = Trainer::resume(params, &counts, &corpus, &reference).unwrap();
            assert_eq!(t.spectra.to_raw(), reference.spectra.to_raw());
            assert_eq!(t.snapshot(), reference.snapshot());
        }
    }

    /// `clusters` groups of 6 words; each document draws 20 words of one group.
    fn many_clusters(clusters: u32, docs: usize, seed: u64) -> (Vec<u32>, Vec<i64>) {
        let mut rng = Rng::new(seed);
        let (mut ids, mut offsets) = (Vec::new(), vec![0i64]);
        for _ in 0..docs {
            let base = 6 * rng.below(clusters as usize) as u32;
            ids.extend((0..20).map(|_| base + rng.below(6) as u32));
            offsets.push(ids.len() as i64);
        }
        (ids, offsets)
    }

    /// With one thread the running usage counts of balanced selection are exactly the words
    /// per frequency of the spectra, at any point of exploration.
    #[test]
    fn usage_counts_follow_the_spectra() {
        let (ids, offsets) = many_clusters(8, 300, 3);
        let counts = vec![100u64; 48];
        let corpus = Corpus::new(&ids, &offsets).unwrap();
        let params = TrainParams {
            balance_gamma: 2.0,
            exploration_fraction: 1.0,
            ..small_params(1)
        };
        let mut t = Trainer::new(params, &counts, &corpus).unwrap();
        for _ in 0..20 {
            t.step(&corpus, Duration::ZERO).unwrap();
            let running: Vec<u64> = t.usage.iter().map(|u| u.load(Relaxed) as u64).collect();
            assert_eq!(running, t.spectra.frequency_usage(40));
        }
    }

    /// Plain top-K piles every word onto a few frequencies; balanced selection spreads them
    /// while words of one cluster still end up more similar than words of two.
    #[test]
    fn balanced_selection_spreads_frequencies_and_keeps_clusters() {
        let (ids, offsets) = many_clusters(8, 1500, 7);
        let counts = vec![100u64; 48];
        let corpus = Corpus::new(&ids, &offsets).unwrap();
        let train = |gamma: f32| {
            let params = TrainParams {
                balance_gamma: gamma,
                score_bias: 1.0,
                exploration_fraction: 0.5,
                ..small_params(1)
            };
            let mut t = Trainer::new(params, &counts, &corpus).unwrap();
            while !t.is_done() {
                t.step(&corpus, Duration::from_secs(60)).unwrap();
            }
            t.snapshot()
        };
        let spread = |s: &Spectra| {
            UsageStats::from_usage(&crate::queries::frequency_usage(s), s.vocab_size).effective
        };
        let (plain, balanced) = (train(0.0), train(2.0));
        assert!(
            spread(&balanced) > spread(&plain) + 5.0,
            "effective number {} balanced vs {} plain",
            spread(&balanced),
            spread(&plain)
        );
        let sim = |a: usize, b: usize| crate::queries::similarity(&balanced, a, b);
        let within: f32 = (0..8).map(|c| sim(6 * c, 6 * c + 1)).sum::<f32>() / 8.0;
        let across: f32 = (0..8).map(|c| sim(6 * c, (6 * c + 7) % 48)).sum::<f32>() / 8.0;
        assert!(within > across + 0.3, "within {within} across {across}");
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

    #[test]
    fn resume_rejects_other_settings_and_corrupt_state() {
        let (ids, offsets) = clustered_corpus(20, 4);
        let counts = vec![100u64; 10];
        let corpus = Corpus::new(&ids, &offsets).unwrap();
        let t = Trainer::new(small_params(1), &counts, &corpus).unwrap();
        let bytes = t.state_bytes();
        let other = TrainParams {
            seed: 99,
            ..small_params(1)
        };
        assert!(Trainer::resume(other, &counts, &corpus, &bytes).is_err());
        assert!(
            Trainer::resume(small_params(1), &counts, &corpus, &bytes[..bytes.len() - 3]).is_err()
        );
        assert!(Trainer::resume(small_params(1), &counts, &corpus, b"garbage").is_err());
    }

    #[test]
    fn a_run_without_positions_still_checkpoints_and_resumes() {
        // One-word documents: no context, so no position and an epoch loss of NaN.
        let ids: Vec<u32> = (0..50).map(|i| i % 10).collect();
        let offsets: Vec<i64> = (0..=50).collect();
        let counts = vec![5u64; 10];
        let corpus = Corpus::new(&ids, &offsets).unwrap();
        let mut t = Trainer::new(small_params(1), &counts, &corpus).unwrap();
        t.step(&corpus, Duration::from_secs(60)).unwrap();
        assert!(t.is_done() && t.epoch_stats()[0].loss.is_nan());
        let back = Trainer::resume(small_params(1), &counts, &corpus, &t.state_bytes()).unwrap();
        assert!(back.is_done() && back.epoch_stats()[0].loss.is_nan());
    }

    #[test]
    fn corpus_validation() {
        assert!(Corpus::new(&[1, 2], &[0, 2]).is_ok());
        assert!(Corpus::new(&[1, 2], &[0, 1]).is_err());
        assert!(Corpus::new(&[1, 2], &[1, 2]).is_err());
        assert!(Corpus::new(&[1, 2], &[0, 2, 1, 2]).is_err());
        // Ids are checked when training reads them, before any update of their document.
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

    #[test]
    fn hinge_without_normalisation_is_refused() {
        let p = TrainParams {
            loss: Loss::Hinge,
            ..TrainParams::default()
        };
        assert!(matches!(p.validate(), Err(CssError::InvalidValue { .. })));
        let p = TrainParams {
            loss: Loss::Hinge,
            normalize: Normalize::L2,
            ..TrainParams::default()
        };
        assert!(p.validate().is_ok());
    }
}
