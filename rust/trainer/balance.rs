//! Usage-balanced selection: while exploring, a candidate's magnitude is weighted down when
//! its frequency is held by more words than its even share, so words spread over the
//! frequencies instead of piling onto a few (`balance_gamma`).

use super::params::TrainParams;
use super::worker::Shared;
use crate::kernels::Cand;
use std::sync::atomic::Ordering::Relaxed;

/// The usage-balanced selection weights on squared magnitudes, `min(1, share / u)^(2·gamma)`
/// for a usage count `u` in `0..=V`, with `share = K·V/D`. Empty when gamma is 0.
///
/// Only crowding is penalised: a frequency under its share gets no bonus. (Measured on gcide:
/// boosting rare frequencies too, `(share / u)^gamma` unclamped, makes words adopt whatever
/// tiny entry lands on an unused frequency, and WordSim-353 falls to ~0.42 at K = 8.)
pub(super) fn balance_weights(p: &TrainParams, vocab_size: usize) -> Vec<f32> {
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

/// A worker's side of usage-balanced selection: its view of the words per frequency is the
/// shared counts plus its own changes not yet published (publishing each change at once would
/// make the cores fight over the counters' cache lines; with one thread the view is exact).
/// The selection weights are taken from that view at the start of each document: looked up
/// per candidate they would add a shared load and a table lookup to every comparison of the
/// selection, and a document moves the counts of a frequency by a few words in thousands.
#[derive(Default)]
pub(super) struct Balance {
    pending: Vec<i32>,
    /// Each frequency's selection weight, as of the start of the current document.
    weights: Vec<f32>,
    /// Candidates with their selection keys, for the top-K choice.
    ranked: Vec<(f32, Cand)>,
}

impl Balance {
    pub(super) fn new(sh: &Shared<'_>) -> Self {
        Balance {
            pending: vec![0; sh.usage.len()],
            weights: vec![1.0; sh.usage.len()],
            ..Balance::default()
        }
    }

    /// A balance with these selection weights (for tests of what uses them).
    #[cfg(test)]
    pub(super) fn with_weights(weights: Vec<f32>) -> Self {
        Balance {
            pending: vec![0; weights.len()],
            weights,
            ..Balance::default()
        }
    }

    /// Takes the weights from the current counts (at a document start: with one thread, a
    /// run paused and resumed between documents sees the same weights).
    pub(super) fn refresh(&mut self, sh: &Shared<'_>) {
        let top = sh.balance.len() - 1;
        for ((w, u), d) in self.weights.iter_mut().zip(sh.usage).zip(&self.pending) {
            *w = sh.balance[((u.load(Relaxed) + d).max(0) as usize).min(top)];
        }
    }

    /// The selection weight of frequency `f` (1 when selection is not balanced).
    #[inline]
    pub(super) fn weight(&self, f: u16) -> f32 {
        self.weights.get(f as usize).copied().unwrap_or(1.0)
    }

    /// Moves the counts from the support `old` to the kept candidates' support (a frequency in
    /// both is taken off and put back: no set difference to compute).
    pub(super) fn moved(&mut self, old: &[u16], kept: impl Iterator<Item = u16>) {
        for &f in old {
            self.pending[f as usize] -= 1;
        }
        for f in kept {
            self.pending[f as usize] += 1;
        }
    }

    /// Adds this worker's changes to the shared counts.
    pub(super) fn publish(&mut self, sh: &Shared<'_>) {
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
    pub(super) fn drop_weaker_newcomers(&self, cands: &mut Vec<Cand>, own: usize, bar: f32) {
        let mut n = own;
        for i in own..cands.len() {
            let c = cands[i];
            cands[n] = c;
            n += (c.mag2 * self.weight(c.f) > bar) as usize;
        }
        cands.truncate(n);
    }

    /// Keeps the `k` candidates of largest weighted squared magnitude.
    pub(super) fn select(&mut self, cands: &mut Vec<Cand>, k: usize) {
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

#[cfg(test)]
mod tests {
    use super::super::test_support::{many_clusters, small_params};
    use super::super::{Corpus, Trainer};
    use super::*;
    use crate::spectra::{Spectra, UsageStats};
    use std::time::Duration;

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
}
