//! The projected update rule: one stochastic gradient step on a word's spectrum, projected
//! back onto K-sparse spectra (keep the K largest, soft-threshold, normalise, prune, store).

use super::balance::Balance;
use super::params::{Normalize, TrainParams};
use super::worker::Shared;
use crate::kernels::{Cand, Members, SparseAcc, Step};
use crate::spectra::{WordBuf, MAX_K};
use std::sync::atomic::Ordering::Relaxed;

/// Amplitudes are clamped here so that even absurd learning rates can never overflow f32 into
/// infinities and NaNs (scores stay below K * 1e12).
const AMP_LIMIT: f32 = 1.0e6;

/// Scratch that updates write into: the context and error accumulators and candidate lists.
pub(super) struct Work {
    pub(super) ctx: SparseAcc,
    pub(super) err: SparseAcc,
    /// Bounds on the entries of `ctx` and `err` (exploration only): a step too small to lift
    /// any of their entries over the bar needs no scan for new candidates.
    pub(super) ctx_bounds: Bounds,
    pub(super) err_bounds: Bounds,
    /// The frequencies already among an exploration step's candidates.
    pub(super) members: Members,
    pub(super) cands: Vec<Cand>,
    /// The new values of a refinement step, and the same as candidates when they need more
    /// than a store (at most K: the word's own entries).
    pub(super) step: Step,
    pub(super) slots: [Cand; MAX_K],
    /// Usage-balanced selection's state (unused when it is off).
    pub(super) balance: Balance,
}

/// The largest squared magnitude among an accumulator's entries, plain and times its
/// frequency's selection weight: a step of `scale * x` gives no new entry a squared magnitude
/// above `scale² * max2`, nor a selection key above `scale² * key_max2`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Bounds {
    pub(super) max2: f32,
    pub(super) key_max2: f32,
}

impl Bounds {
    /// No bound: every step is scanned.
    pub(super) const NONE: Bounds = Bounds {
        max2: f32::INFINITY,
        key_max2: f32::INFINITY,
    };

    /// The bounds of `x` under the selection weights of `balance` (all 1 when selection is
    /// not balanced).
    pub(super) fn of(x: &SparseAcc, balance: &Balance) -> Bounds {
        let (mut max2, mut key_max2) = (0.0f32, 0.0f32);
        for &f in x.touched() {
            let (re, im) = x.get(f);
            let mag2 = re * re + im * im;
            max2 = larger(max2, mag2);
            key_max2 = larger(key_max2, mag2 * balance.weight(f));
        }
        Bounds { max2, key_max2 }
    }
}

/// `v` if it is larger than `m`, else `m`; `smaller` likewise. A comparison rather than
/// f32::max/min: a NaN `v` is skipped either way, and on the hot paths this is one instruction
/// instead of a NaN-aware sequence.
#[inline]
fn larger(m: f32, v: f32) -> f32 {
    if v > m {
        v
    } else {
        m
    }
}

#[inline]
fn smaller(m: f32, v: f32) -> f32 {
    if v < m {
        v
    } else {
        m
    }
}

#[derive(Clone, Copy)]
pub(super) enum Acc {
    Ctx,
    Err,
}

/// One projected gradient step on word `word`: `current + scale * X` on the candidate support
/// (current support, plus X's support while exploring), keep the K largest, soft-threshold,
/// normalise, prune, store.
#[allow(clippy::too_many_arguments)]
pub(super) fn update_word(
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
        ctx_bounds,
        err_bounds,
        members,
        cands,
        step,
        slots,
        balance,
    } = work;
    let (x, bounds) = match which {
        Acc::Ctx => (&*ctx, *ctx_bounds),
        Acc::Err => (&*err, *err_bounds),
    };
    if explore {
        explore_step(
            sh,
            word,
            current,
            scale,
            (x, bounds),
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
    (x, bounds): (&SparseAcc, Bounds),
    lr: f32,
    members: &mut Members,
    cands: &mut Vec<Cand>,
    step: &mut Step,
    balance: &mut Balance,
) {
    let p = sh.params;
    let n = current.len.min(MAX_K);
    let k = p.max_frequencies;
    let floor2 = explore_floor2(p);
    let inside = sh
        .isa
        .step(current, x, scale, floor2, AMP_LIMIT * AMP_LIMIT, step);
    // Most exploration steps add no frequency and need no clamp or prune: they store their
    // values as a refinement step does. Telling so needs only the step's own values, so the
    // candidate list is built only for the others. (A frequency that a torn concurrent write
    // left twice in the record then stays two entries that add up, as in `refine`.)
    let own_keys = (0..n).map(|j| step.mag2[j] * balance.weight(current.freq[j]));
    let bar = newcomer_bar(p, n >= k, own_keys);
    let scan = may_add(bounds, scale, bar, sh.balanced() && n >= k);
    if !scan && inside && store_step_values(sh, word, current, step, lr) {
        return;
    }
    members.restart();
    let mut duplicated = false;
    for &f in &current.freq[..n] {
        duplicated |= members.contains(f);
        members.insert(f);
    }
    cands.clear();
    let own_inside = if duplicated {
        own_candidates_merging_duplicates(current, scale, x, cands);
        false
    } else {
        cands.extend(step_candidates(current, step));
        inside
    };
    let own = cands.len();
    // Merged duplicates are fewer own entries with other values: their bar and scan differ
    // from those taken above on the record as loaded.
    let (bar, scan) = if duplicated {
        let bar = newcomer_bar(
            p,
            own >= k,
            cands.iter().map(|c| c.mag2 * balance.weight(c.f)),
        );
        (bar, may_add(bounds, scale, bar, sh.balanced() && own >= k))
    } else {
        (bar, scan)
    };
    if scan {
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

/// The squared magnitude a new entry must exceed to matter. Without normalisation every later
/// step (L1, clamp, max_norm) only shrinks a value, so a new entry already at or below the
/// prune threshold would be pruned. And when the word's own entries already fill K slots
/// (`full`), a new entry must beat the smallest of their keys (`own_keys`: magnitude times
/// selection weight) to be among the K largest; as weights are at most 1, a weaker entry
/// cannot win even on an uncrowded frequency.
fn newcomer_bar(p: &TrainParams, full: bool, own_keys: impl Iterator<Item = f32>) -> f32 {
    let bar = if p.normalize == Normalize::None {
        p.explore_prune_threshold * p.explore_prune_threshold
    } else {
        0.0
    };
    if !full {
        return bar;
    }
    bar.max(own_keys.fold(f32::INFINITY, smaller))
}

/// Whether a step of `scale` times an accumulator with these bounds can lift any new entry
/// over `bar`. Most steps of negatives and context words cannot (small rates times small
/// values). With balanced selection and K own entries (`weighted`) a newcomer must beat the
/// bar by its key, while the large entries of a step are mostly on crowded frequencies: the
/// weighted bound rules out most scans. The margin covers the rounding of the bound against
/// the scan's own products, so a scan skipped is one that would have found nothing.
fn may_add(bounds: Bounds, scale: f32, bar: f32, weighted: bool) -> bool {
    let bound = if weighted {
        bounds.key_max2
    } else {
        bounds.max2
    };
    scale * scale * bound * 1.001 > bar
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
    let due = refine_prune_due(sh, word);
    let mut floor2 = if due {
        p.refine_prune_threshold * p.refine_prune_threshold
    } else {
        0.0
    };
    let mut inside = sh
        .isa
        .step(current, x, scale, floor2, AMP_LIMIT * AMP_LIMIT, step);
    if due && p.refine_prune_ratio > 0.0 {
        let values = &step.mag2[..current.len.min(MAX_K)];
        let relative = relative_floor2(p.refine_prune_ratio, values);
        inside &= values.iter().all(|&m| m > relative);
        floor2 = floor2.max(relative);
    }
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

/// The squared amplitude at or below which an exploration update prunes an entry.
fn explore_floor2(p: &TrainParams) -> f32 {
    p.explore_prune_threshold * p.explore_prune_threshold
}

/// Whether this refinement update of `word` prunes: every `refine_prune_every` updates of the
/// word (between them only exact zeros go).
fn refine_prune_due(sh: &Shared<'_>, word: u32) -> bool {
    // A plain load and store, not a locked fetch_add: a lost increment between two threads
    // only delays one prune (Hogwild), and single-thread runs stay exact. The counter runs up
    // to refine_prune_every and restarts (no division per update).
    let counter = sh.spectra.counter(word as usize);
    let n = counter.load(Relaxed) + 1;
    let due = n >= sh.params.refine_prune_every as u64;
    counter.store(if due { 0 } else { n }, Relaxed);
    due
}

/// The squared amplitude below `ratio` times the strongest of these squared amplitudes: what a
/// relative prune removes (`refine_prune_ratio`).
fn relative_floor2(ratio: f32, mag2: &[f32]) -> f32 {
    ratio * ratio * mag2.iter().copied().fold(0.0, larger)
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
    use crate::kernels::{random_word, Isa};
    use crate::rng::Rng;

    /// A random accumulator over `0..d`: `n` words of `k` entries added.
    fn random_acc(rng: &mut Rng, d: usize, k: usize, n: usize) -> SparseAcc {
        let mut acc = SparseAcc::default();
        for _ in 0..n {
            let scale = rng.next_f32();
            acc.add_word(&random_word(rng, k, d), scale);
        }
        acc
    }

    /// Whenever the bounds say a step can lift no entry over the bar, the scan (and the key
    /// filter of balanced selection) finds no new candidate: skipping it changes nothing.
    #[test]
    fn a_step_within_the_bounds_has_no_new_candidates() {
        let mut rng = Rng::new(7);
        let d = 200;
        let (mut skipped, mut scanned) = (0, 0);
        for case in 0..2000 {
            let acc = random_acc(&mut rng, d, 16, 1 + case % 6);
            let weights: Vec<f32> = (0..d).map(|_| rng.next_f32().powi(8)).collect();
            let balance = Balance::with_weights(weights);
            let bounds = Bounds::of(&acc, &balance);
            let scale = rng.next_f32() * 0.5;
            let bar = rng.next_f32() * 0.05;
            let mut members = Members::default();
            members.restart();
            let mut unweighted = Vec::new();
            Isa::detect().new_candidates(&acc, scale, bar, &members, &mut unweighted);
            let mut cands = unweighted.clone();
            balance.drop_weaker_newcomers(&mut cands, 0, bar);
            if may_add(bounds, scale, bar, true) {
                scanned += 1;
            } else {
                skipped += 1;
                assert!(cands.is_empty(), "case {case}: {} candidates", cands.len());
            }
            if !may_add(bounds, scale, bar, false) {
                assert!(unweighted.is_empty(), "case {case}");
            }
        }
        // Both sides of the bound were exercised.
        assert!(
            skipped > 100 && scanned > 100,
            "{skipped} skipped, {scanned} scanned"
        );
    }
}
