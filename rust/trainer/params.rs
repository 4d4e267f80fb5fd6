//! The trainer's settings: every value the engine reads, their defaults and their allowed
//! ranges (ALGORITHM.md), and the learning-rate schedule they define.

use crate::error::{CssError, Result};
use crate::spectra::{InitParams, MAX_K};
use serde::{Deserialize, Serialize};

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
    /// At each refinement prune, entries weaker than this fraction of the word's strongest
    /// amplitude go too: a word keeps the entries that grew, whatever the corpus's scale of
    /// amplitudes (an absolute threshold that suits one corpus empties a smaller one's words).
    pub refine_prune_ratio: f32,
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
            exploration_fraction: 0.3,
            balance_gamma: 8.0,
            score_bias: 2.0,
            explore_prune_threshold: 0.001,
            refine_prune_threshold: 1e-4,
            refine_prune_ratio: 0.1,
            refine_prune_every: 100,
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
    /// The settings that differ from `other`'s, as `name: self's -> other's`, by name:
    /// what a refused resume names, so that the user knows which setting to restore.
    pub fn differences(&self, other: &TrainParams) -> Vec<String> {
        let fields = |p: &TrainParams| match serde_json::to_value(p) {
            Ok(serde_json::Value::Object(fields)) => fields,
            _ => unreachable!("TrainParams serialises to a JSON object"),
        };
        // Both sides are the same struct: every name is in both maps.
        let (ours, theirs) = (fields(self), fields(other));
        (ours.iter())
            .filter_map(|(name, value)| {
                let other = &theirs[name.as_str()];
                (other != value).then(|| format!("{name}: {value} -> {other}"))
            })
            .collect()
    }

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
        if !(0.0..1.0).contains(&self.refine_prune_ratio) {
            return Err(CssError::invalid(
                "refine_prune_ratio",
                self.refine_prune_ratio,
                "must be in [0, 1)",
            ));
        }
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

    pub(super) fn init_params(&self) -> InitParams {
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

pub(super) fn learning_rate(p: &TrainParams, progress: f64, epoch: usize) -> f32 {
    match p.lr_schedule {
        LrSchedule::Linear => {
            let lr = p.learning_rate as f64 - (p.learning_rate - p.min_lr) as f64 * progress;
            lr.max(p.min_lr as f64) as f32
        }
        LrSchedule::Step => p.learning_rate * 0.9f32.powi((epoch / 5) as i32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_each_setting_that_changed() {
        let a = TrainParams::default();
        assert!(a.differences(&a).is_empty());
        let b = TrainParams {
            seed: a.seed + 1,
            refine_prune_every: 1000,
            ..a.clone()
        };
        assert_eq!(
            a.differences(&b),
            [
                "refine_prune_every: 100 -> 1000".to_string(),
                format!("seed: {} -> {}", a.seed, b.seed),
            ]
        );
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
