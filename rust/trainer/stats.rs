//! What training reports: the figures of each finished epoch, the progress seen between steps,
//! and the running sums of positions and loss behind them.

use serde::{Deserialize, Serialize};

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

/// Running sums of the epoch in progress (and of the current report window).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Tally {
    pub(super) loss: f64,
    pub(super) loss_positions: u64,
    pub(super) positions: u64,
    pub(super) negative_updates: u64,
}

impl Tally {
    pub(super) fn mean_loss(&self) -> Option<f64> {
        (self.loss_positions > 0).then(|| self.loss / self.loss_positions as f64)
    }

    pub(super) fn add(&mut self, o: &Tally) {
        self.loss += o.loss;
        self.loss_positions += o.loss_positions;
        self.positions += o.positions;
        self.negative_updates += o.negative_updates;
    }
}
