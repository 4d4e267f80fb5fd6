//! A word's senses: groups of its nearest words (and of its peaks' sense neighbours) that are
//! close to each other, each peak attached to the group it carries. What
//! `css_rs.analysis.SenseAnalyzer` reports, computed here for many words in parallel.
//!
//! Per word: its inner products with every word, summed over an inverted index (the columns of
//! its own frequencies: no dense rows, nothing O(V·D)); its peaks and their sense neighbours;
//! its `neighbourhood` nearest words; the candidates (nearest words, then the peaks' sense
//! neighbours); their mutual cosines (O(K) each); average linkage; filters; carriers.
//!
//! Values are float64, computed from the stored float32 amplitudes and phases exactly as the
//! numpy code this replaces computed them, so that rankings and thresholds come out the same
//! (float32 values would reorder near-ties among a word's neighbours). Amplitude comparisons
//! (peaks, eligibility, the amplitude ranking) stay float32, as in `queries`.

use crate::error::{CssError, Result};
use crate::queries;
use crate::spectra::{Spectra, EMPTY};
use rayon::prelude::*;

/// How a peak's sense neighbours are ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ranking {
    /// The phase-aligned product `Re(z_w(f) · conj z_u(f))`, among the words with a positive
    /// cosine with the word.
    Phase,
    /// The plain amplitude product (float32), for comparison.
    Amplitude,
}

impl Ranking {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "phase" => Ok(Ranking::Phase),
            "amplitude" => Ok(Ranking::Amplitude),
            _ => Err(CssError::invalid(
                "rank",
                name,
                "must be phase or amplitude",
            )),
        }
    }
}

/// The settings of a sense analysis (`SenseAnalyzer`'s, with the same defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct SenseParams {
    /// A peak is an entry with at least this fraction of the word's largest amplitude.
    pub peak_ratio: f32,
    /// Sense neighbours per peak.
    pub k: usize,
    pub rank: Ranking,
    /// Senses are drawn from this many nearest words.
    pub neighbourhood: usize,
    /// Groups join while their mean mutual cosine is >= this x the word's mean cosine with
    /// its nearest words.
    pub merge_ratio: f64,
    /// A group lighter than this fraction of the heaviest is no sense...
    pub min_share: f64,
    /// Whether the peaks' sense neighbours are candidates too.
    pub modes: bool,
    /// ... unless two of its members came from one peak and it reaches this fraction.
    pub mode_share: f64,
    /// Only the `vocabulary` most frequent words (ids `0..vocabulary`: ids run by descending
    /// count) can be neighbours or sense members; `usize::MAX` for all. Rare words have noisy
    /// spectra that land close to anything, and reading only their part of each column is
    /// also most of the analysis's speed.
    pub vocabulary: usize,
}

impl Default for SenseParams {
    fn default() -> Self {
        SenseParams {
            peak_ratio: 0.25,
            k: 5,
            rank: Ranking::Phase,
            neighbourhood: 20,
            merge_ratio: 0.45,
            min_share: 0.25,
            modes: true,
            mode_share: 0.2,
            vocabulary: usize::MAX,
        }
    }
}

impl SenseParams {
    pub fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.peak_ratio) {
            return Err(CssError::invalid(
                "peak_ratio",
                self.peak_ratio,
                "must be in 0..1",
            ));
        }
        if self.k < 1 {
            return Err(CssError::invalid("k", self.k, "must be >= 1"));
        }
        if self.neighbourhood < 2 {
            return Err(CssError::invalid(
                "neighbourhood",
                self.neighbourhood,
                "must be >= 2",
            ));
        }
        if self.vocabulary < 2 {
            return Err(CssError::invalid(
                "vocabulary",
                self.vocabulary,
                "must be >= 2",
            ));
        }
        for (field, value) in [
            ("merge_ratio", self.merge_ratio),
            ("min_share", self.min_share),
            ("mode_share", self.mode_share),
        ] {
            if !value.is_finite() {
                return Err(CssError::invalid(field, value, "must be a finite number"));
            }
        }
        Ok(())
    }
}

/// One peak of a word and its sense neighbours `(word, score)`, best first.
#[derive(Debug, Clone, PartialEq)]
pub struct PeakNeighbours {
    pub frequency: u16,
    pub amplitude: f32,
    pub phase: f32,
    pub neighbours: Vec<(u32, f64)>,
}

/// A group of candidates close to each other: `(word, cosine with the sensed word)`, best
/// first, and the indices (into the word's peaks) of the peaks that carry it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sense {
    pub members: Vec<(u32, f64)>,
    pub peaks: Vec<usize>,
}

impl Sense {
    /// Similarity mass: the members' cosines summed in order (as Python's `Sense.weight`, so
    /// both sides rank words by bit-identical scores).
    pub fn weight(&self) -> f64 {
        self.members.iter().fold(0.0, |acc, &(_, c)| acc + c)
    }
}

/// A word's peaks (strongest first) and senses (heaviest first).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WordSenses {
    pub peaks: Vec<PeakNeighbours>,
    pub senses: Vec<Sense>,
}

// --- the inverted index ------------------------------------------------------------------

/// All active entries grouped by frequency (words ascending within a frequency), and each
/// slot's value in float64. Built once per model (`PySpectra` keeps it), O(V·K) memory.
///
/// The columns are a structure of arrays, so that the column pass (most of the analysis) reads
/// each field as a stream; each entry also carries its word's largest amplitude, so that
/// whether the entry is one of its word's peaks is known without a random read.
pub struct FrequencyIndex {
    starts: Vec<usize>,
    /// Per entry: the word, its value `amp · (cos φ, sin φ)` and amplitude at the column's
    /// frequency, and the word's largest amplitude.
    words: Vec<u32>,
    entry_re: Vec<f64>,
    entry_im: Vec<f64>,
    entry_amp: Vec<f32>,
    entry_max_amp: Vec<f32>,
    /// Per slot, as `Spectra`'s arrays: `amp · (cos φ, sin φ)` in float64 (0 when empty).
    re: Vec<f64>,
    im: Vec<f64>,
    /// Per word: `sqrt(Σ amp²)` in float64, and the largest amplitude.
    norm: Vec<f64>,
    max_amp: Vec<f32>,
}

/// One column, or its first part: the entries of one frequency, words ascending.
#[derive(Clone, Copy)]
struct Column<'a> {
    words: &'a [u32],
    re: &'a [f64],
    im: &'a [f64],
    amp: &'a [f32],
    max_amp: &'a [f32],
}

impl Column<'_> {
    /// Entry `j`'s product with `(zr, zi)` at this column's frequency: `Re(z · conj e)`.
    #[inline]
    fn term(&self, j: usize, zr: f64, zi: f64) -> f64 {
        zr * self.re[j] + zi * self.im[j]
    }

    /// Adds every entry's term to `dots[word]`.
    fn add_to(&self, zr: f64, zi: f64, dots: &mut [f64]) {
        for ((&u, &re), &im) in self.words.iter().zip(self.re).zip(self.im) {
            dots[u as usize] += zr * re + zi * im;
        }
    }
}

impl FrequencyIndex {
    pub fn new(s: &Spectra) -> Self {
        let (re, im): (Vec<f64>, Vec<f64>) = (0..s.freq.len())
            .map(|i| {
                if s.freq[i] == EMPTY {
                    return (0.0, 0.0);
                }
                let (sin, cos) = (s.phase[i] as f64).sin_cos();
                (s.amp[i] as f64 * cos, s.amp[i] as f64 * sin)
            })
            .unzip();
        let mut starts = vec![0usize; s.frequency_dim + 1];
        for &f in s.freq.iter().filter(|&&f| f != EMPTY) {
            starts[f as usize + 1] += 1;
        }
        for f in 0..s.frequency_dim {
            starts[f + 1] += starts[f];
        }
        let active = |w: usize| s.slots(w).take_while(|&i| s.freq[i] != EMPTY);
        let mut next = starts.clone();
        let total = starts[s.frequency_dim];
        let mut words = vec![0u32; total];
        let mut entry_re = vec![0.0; total];
        let mut entry_im = vec![0.0; total];
        let mut entry_amp = vec![0.0f32; total];
        let mut entry_max_amp = vec![0.0f32; total];
        let max_amp: Vec<f32> = (0..s.vocab_size)
            .map(|w| active(w).fold(0.0f32, |m, i| m.max(s.amp[i])))
            .collect();
        for (w, &word_max) in max_amp.iter().enumerate() {
            for i in active(w) {
                let at = &mut next[s.freq[i] as usize];
                words[*at] = w as u32;
                entry_re[*at] = re[i];
                entry_im[*at] = im[i];
                entry_amp[*at] = s.amp[i];
                entry_max_amp[*at] = word_max;
                *at += 1;
            }
        }
        let norm = (0..s.vocab_size)
            .map(|w| {
                active(w)
                    .map(|i| (s.amp[i] as f64).powi(2))
                    .sum::<f64>()
                    .sqrt()
            })
            .collect();
        FrequencyIndex {
            starts,
            words,
            entry_re,
            entry_im,
            entry_amp,
            entry_max_amp,
            re,
            im,
            norm,
            max_amp,
        }
    }

    /// The entries of column `f` for words `0..limit` (words ascend within a column).
    fn column_below(&self, f: u16, limit: usize) -> Column<'_> {
        let (start, end) = (self.starts[f as usize], self.starts[f as usize + 1]);
        let below = self.words[start..end].partition_point(|&u| (u as usize) < limit);
        let r = start..start + below;
        Column {
            words: &self.words[r.clone()],
            re: &self.entry_re[r.clone()],
            im: &self.entry_im[r.clone()],
            amp: &self.entry_amp[r.clone()],
            max_amp: &self.entry_max_amp[r],
        }
    }
}

/// How many more sense-neighbour candidates than `k` the column pass keeps per peak, so that
/// the cosine check afterwards rarely leaves fewer than `k` (then the column is read again).
const SPARE: usize = 4;

// --- selection ---------------------------------------------------------------------------

/// The `n` best `(id, score)` offered so far, best first, ties by smaller id: a short sorted
/// list, since `n` is small and most offers are rejected by one comparison.
struct Best {
    n: usize,
    items: Vec<(u32, f64)>,
    /// The score a new id must reach to get in: -inf until the list is full, then the last
    /// item's. Kept as a field because it is read for every offer, most of them rejected.
    bar: f64,
}

fn better(a: (u32, f64), b: (u32, f64)) -> bool {
    a.1 > b.1 || (a.1 == b.1 && a.0 < b.0)
}

impl Best {
    fn new(n: usize) -> Self {
        Best {
            n,
            items: Vec::with_capacity(n + 1),
            bar: if n == 0 {
                f64::INFINITY
            } else {
                f64::NEG_INFINITY
            },
        }
    }

    /// Scores below this cannot get in (equal ones may, by id).
    fn bar(&self) -> f64 {
        self.bar
    }

    fn offer(&mut self, id: u32, score: f64) {
        let item = (id, score);
        if self.items.len() == self.n {
            match self.items.last() {
                Some(&worst) if better(item, worst) => {
                    self.items.pop();
                }
                _ => return,
            }
        }
        // Walk up from the end: an entrant usually lands low in the list (cheaper than a
        // binary search and a move of the tail); it goes after the items better than it.
        self.items.push(item);
        let mut at = self.items.len() - 1;
        while at > 0 && better(item, self.items[at - 1]) {
            self.items[at] = self.items[at - 1];
            at -= 1;
        }
        self.items[at] = item;
        if self.items.len() == self.n {
            self.bar = self.items[self.n - 1].1;
        }
    }
}

// --- average linkage ---------------------------------------------------------------------

/// Agglomerative clustering of `n` items with symmetric similarities `sim` (row-major,
/// diagonal ignored): merges the two most similar groups (mean pairwise similarity) while that
/// similarity is at least `threshold`. Groups come out in order of their first row, members in
/// merge order. Of equal similarities the first in row-major order merges first, as numpy's
/// `argmax` picked it (this replaces `analysis._average_linkage`).
///
/// Each live row keeps its first maximum over the other live columns; a merge updates the
/// merged row and column in O(n) and rescans only the rows whose maximum it may have moved.
pub fn average_linkage(mut sim: Vec<f64>, n: usize, threshold: f64) -> Vec<Vec<usize>> {
    assert_eq!(sim.len(), n * n, "similarities must be n x n");
    // With no -inf or NaN off the diagonal (mutual cosines have none, and means of such values
    // have none), a row's first maximum over the other live columns is its first maximum over
    // all columns once the diagonal and the merged-away columns hold -inf: a plain scan.
    let plain = (0..n).all(|r| (0..n).all(|c| c == r || sim[r * n + c] > f64::NEG_INFINITY));
    if plain {
        (0..n).for_each(|r| sim[r * n + r] = f64::NEG_INFINITY);
    }
    let row_best = |sim: &[f64], live: &[usize], r: usize| {
        if plain {
            first_max_of_row(&sim[r * n..(r + 1) * n])
        } else {
            row_best(sim, n, live, r)
        }
    };
    // The live groups by first row, ascending; each group a chain of rows in merge order.
    let mut live: Vec<usize> = (0..n).collect();
    let mut size = vec![1usize; n];
    let mut next = vec![usize::MAX; n];
    let mut last: Vec<usize> = (0..n).collect();
    let mut best: Vec<(f64, usize)> = (0..n).map(|r| row_best(&sim, &live, r)).collect();
    while live.len() > 1 {
        let rows = live.iter().map(|&r| ((r, best[r].1), best[r].0));
        let ((a, b), value) = first_max(rows).expect("two groups are alive");
        if value < threshold {
            break;
        }
        let (na, nb) = (size[a] as f64, size[b] as f64);
        live.retain(|&r| r != b);
        if plain {
            live.iter()
                .for_each(|&r| sim[r * n + b] = f64::NEG_INFINITY);
        }
        for &j in live.iter().filter(|&&j| j != a) {
            let merged = (sim[a * n + j] * na + sim[b * n + j] * nb) / (na + nb);
            sim[a * n + j] = merged;
            sim[j * n + a] = merged;
        }
        size[a] += size[b];
        next[last[a]] = b;
        last[a] = last[b];
        best[a] = row_best(&sim, &live, a);
        for &r in live.iter().filter(|&&r| r != a) {
            let (v, c) = best[r];
            let s = sim[r * n + a];
            best[r] = if c == a || c == b {
                // Row r's maximum was a or b: a kept its place (no column before a held that
                // maximum) if it did not fall; otherwise any column may hold it now.
                if s > v || (c == a && s == v) {
                    (s, a)
                } else {
                    row_best(&sim, &live, r)
                }
            } else if s > v || (s == v && a < c) {
                (s, a)
            } else {
                (v, c)
            };
        }
    }
    (live.into_iter())
        .map(|head| {
            let mut group = Vec::with_capacity(size[head]);
            let mut at = head;
            while at != usize::MAX {
                group.push(at);
                at = next[at];
            }
            group
        })
        .collect()
}

/// The first item with the largest value, as numpy's `argmax` picks it (no NaN here).
fn first_max<T>(items: impl Iterator<Item = (T, f64)>) -> Option<(T, f64)> {
    items.fold(None, |top, x| match top {
        Some(t) if x.1 <= t.1 => Some(t),
        _ => Some(x),
    })
}

/// The first maximum of `row` (-inf and no column if all of it is -inf; no NaN here).
fn first_max_of_row(row: &[f64]) -> (f64, usize) {
    // Four running maxima side by side, not one chain of comparisons.
    let mut lanes = [f64::NEG_INFINITY; 4];
    let chunks = row.chunks_exact(4);
    for &x in chunks.remainder() {
        lanes[0] = if x > lanes[0] { x } else { lanes[0] };
    }
    for chunk in chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane = if x > *lane { x } else { *lane };
        }
    }
    let top = (lanes.iter()).fold(f64::NEG_INFINITY, |m, &x| if x > m { x } else { m });
    match row.iter().position(|&x| x == top) {
        Some(c) if top > f64::NEG_INFINITY => (top, c),
        _ => (f64::NEG_INFINITY, usize::MAX),
    }
}

/// The first maximum of row `r` over the live columns (ascending) other than `r` (-inf if
/// none).
fn row_best(sim: &[f64], n: usize, live: &[usize], r: usize) -> (f64, usize) {
    let row = &sim[r * n..(r + 1) * n];
    (live.iter().filter(|&&c| c != r)).fold((f64::NEG_INFINITY, usize::MAX), |(v, c0), &c| {
        let s = row[c];
        if s > v || c0 == usize::MAX {
            (s, c)
        } else {
            (v, c0)
        }
    })
}

// --- the analysis of one word ------------------------------------------------------------

/// Entries per block of the peak-column and nearest-word passes: each block is first tested
/// as a whole (branch-free) against the list's bar, and only a block with a possible entrant
/// is walked entry by entry.
const BLOCK: usize = 16;

/// Per-thread buffers: the inner products with every word, and the candidates' entries.
struct Scratch {
    dots: Vec<f64>,
    by_frequency: ByFrequency,
}

impl Scratch {
    fn new(s: &Spectra) -> Self {
        Scratch {
            dots: vec![0.0; s.vocab_size],
            by_frequency: ByFrequency::default(),
        }
    }
}

/// Some words' active entries grouped by frequency (an inverted index of a few words): which
/// of the words (its index among them, ascending within a frequency) and its value.
#[derive(Default)]
struct ByFrequency {
    starts: Vec<usize>,
    next: Vec<usize>,
    member: Vec<usize>,
    re: Vec<f64>,
    im: Vec<f64>,
}

/// The candidates senses are drawn from: word ids, and for each the index of the peak whose
/// sense neighbours it came from (`None`: one of the nearest words).
struct Candidates {
    ids: Vec<u32>,
    from_peak: Vec<Option<usize>>,
}

struct Analyzer<'a> {
    s: &'a Spectra,
    index: &'a FrequencyIndex,
    params: &'a SenseParams,
}

impl Analyzer<'_> {
    fn active(&self, w: usize) -> impl Iterator<Item = usize> + '_ {
        self.s.slots(w).take_while(|&i| self.s.freq[i] != EMPTY)
    }

    fn slot_of(&self, w: usize, f: u16) -> Option<usize> {
        self.active(w).find(|&i| self.s.freq[i] == f)
    }

    /// `dots[u] = Re<S_w, S_u>` for every word `u`, summed over `w`'s columns in frequency
    /// order (the order of the numpy sums this replaces); and, in the same pass over the
    /// column of each peak (`peak_slots`), its best sense-neighbour candidates before the
    /// cosine check, which needs the finished sums. Reading the columns once matters: they
    /// are most of the work.
    fn scan_columns(&self, w: usize, peak_slots: &[usize], dots: &mut [f64]) -> Vec<Best> {
        let read = dots.len().min(self.params.vocabulary);
        dots[..read].fill(0.0);
        let mut found: Vec<Best> = peak_slots
            .iter()
            .map(|_| Best::new(SPARE * self.params.k))
            .collect();
        for i in self.active(w) {
            let (zr, zi) = (self.index.re[i], self.index.im[i]);
            let column = self
                .index
                .column_below(self.s.freq[i], self.params.vocabulary);
            match peak_slots.iter().position(|&p| p == i) {
                None => column.add_to(zr, zi, dots),
                Some(p) => self.scan_peak_column(w, i, column, dots, &mut found[p]),
            }
        }
        found
    }

    /// `Column::add_to` for the column of `w`'s peak `slot`, offering its words as sense
    /// neighbours on the way, in column order, exactly as `offer_neighbour` would. A block
    /// none of whose words can get in (one of their own peaks at this frequency, a score
    /// above 0 and the list's bar at the block's start: the bar only rises) is tested
    /// branch-free and offers nothing.
    fn scan_peak_column(
        &self,
        w: usize,
        slot: usize,
        column: Column<'_>,
        dots: &mut [f64],
        best: &mut Best,
    ) {
        let (zr, zi) = (self.index.re[slot], self.index.im[slot]);
        let (phase, peak_amp) = (self.params.rank == Ranking::Phase, self.s.amp[slot]);
        let ratio = self.params.peak_ratio;
        // One length for every field, so that the indexing below needs no bounds checks.
        let n = column.words.len();
        let (words, amp, max_amp) = (&column.words[..n], &column.amp[..n], &column.max_amp[..n]);
        let term = |j: usize| zr * column.re[..n][j] + zi * column.im[..n][j];
        let score = |j: usize, term: f64| {
            if phase {
                term
            } else {
                (peak_amp * amp[j]) as f64
            }
        };
        // offer_neighbour's tests but `u == w` (amplitude, score, bar), without branches.
        let refused = |j: usize, score: f64, bar: f64| {
            (amp[j] <= 0.0) | (amp[j] < ratio * max_amp[j]) | (score <= 0.0) | (score < bar)
        };
        for start in (0..n).step_by(BLOCK) {
            let block = start..(start + BLOCK).min(n);
            let bar = best.bar();
            let mut hope = false;
            for j in block.clone() {
                let t = term(j);
                dots[words[j] as usize] += t;
                hope |= !refused(j, score(j, t), bar);
            }
            if !hope {
                continue;
            }
            for j in block {
                let x = score(j, term(j));
                if !refused(j, x, best.bar()) && words[j] as usize != w {
                    best.offer(words[j], x);
                }
            }
        }
    }

    /// Offers `u` (its amplitude `amp` at a peak frequency of `w`; `score`: its rank there)
    /// as a sense neighbour, if its own peaks include that frequency.
    fn offer_neighbour(&self, w: usize, u: u32, amp: f32, score: f64, best: &mut Best) {
        // Anti-aligned words pull the inner product down: not neighbours. The score is
        // checked first: most words fall short of the list and never cost the random read.
        if score <= 0.0 || score < best.bar() {
            return;
        }
        let ui = u as usize;
        if ui == w || amp <= 0.0 || amp < self.params.peak_ratio * self.index.max_amp[ui] {
            return;
        }
        best.offer(u, score);
    }

    /// The `neighbourhood` words with the largest positive cosine with `w`, best first.
    fn nearest(&self, w: usize, dots: &[f64]) -> Vec<(u32, f64)> {
        let (norm, nw) = (&self.index.norm, self.index.norm[w]);
        let mut best = Best::new(self.params.neighbourhood);
        if nw == 0.0 {
            return best.items;
        }
        let read = dots.len().min(self.params.vocabulary);
        for start in (0..read).step_by(BLOCK) {
            let end = (start + BLOCK).min(read);
            // The per-word test below with the bar at the block's start (it only rises):
            // most blocks hold no entrant and cost one branch-free pass.
            let bar = best.bar() * nw;
            let hope = (dots[start..end].iter().zip(&norm[start..end]))
                .fold(false, |h, (&dot, &n)| {
                    h | !((dot <= 0.0) | (dot < bar * n * (1.0 - 1e-9)))
                });
            if !hope {
                continue;
            }
            for u in start..end {
                let dot = dots[u];
                if dot <= 0.0 || u == w {
                    continue;
                }
                // Most words fall short of the list: reject them with a multiplication (with
                // a margin far above rounding) before the exact division.
                if dot < best.bar() * nw * norm[u] * (1.0 - 1e-9) {
                    continue;
                }
                best.offer(u as u32, dot / (norm[u] * nw));
            }
        }
        best.items
    }

    /// The sense neighbours of `w` through its peak `slot`, best first: the words whose own
    /// peaks include that frequency, from the column pass's candidates `found`. The phase
    /// ranking keeps those with a positive cosine with `w` (one frequency's term can be large
    /// for a word whose other terms cancel it: no neighbour at all); in the rare case that
    /// leaves fewer than `k` of a full list, the column is read again.
    fn sense_neighbours(
        &self,
        w: usize,
        slot: usize,
        found: Best,
        dots: &[f64],
    ) -> Vec<(u32, f64)> {
        let (k, phase) = (self.params.k, self.params.rank == Ranking::Phase);
        let full = found.items.len() == found.n;
        let kept: Vec<(u32, f64)> = (found.items.into_iter())
            .filter(|&(u, _)| !phase || dots[u as usize] > 0.0)
            .take(k)
            .collect();
        if kept.len() == k || !full {
            return kept;
        }
        let (zr, zi) = (self.index.re[slot], self.index.im[slot]);
        let mut best = Best::new(k);
        let column = (self.index).column_below(self.s.freq[slot], self.params.vocabulary);
        for (j, &u) in column.words.iter().enumerate() {
            if dots[u as usize] > 0.0 {
                let score = match self.params.rank {
                    Ranking::Phase => column.term(j, zr, zi),
                    Ranking::Amplitude => (self.s.amp[slot] * column.amp[j]) as f64,
                };
                self.offer_neighbour(w, u, column.amp[j], score, &mut best);
            }
        }
        best.items
    }

    /// Fills `dots` (see `scan_columns`) and returns the word's peaks with their sense
    /// neighbours.
    fn peaks(&self, w: usize, dots: &mut [f64]) -> Vec<PeakNeighbours> {
        let found = queries::peaks(self.s, w, self.params.peak_ratio);
        let slots: Vec<usize> = (found.iter())
            .map(|p| self.slot_of(w, p.0).expect("a peak is an active slot"))
            .collect();
        let candidates = self.scan_columns(w, &slots, dots);
        (found.into_iter().zip(slots).zip(candidates))
            .map(
                |(((frequency, amplitude, phase), slot), best)| PeakNeighbours {
                    frequency,
                    amplitude,
                    phase,
                    neighbours: self.sense_neighbours(w, slot, best, dots),
                },
            )
            .collect()
    }

    /// The nearest words, then (with `modes`) the peaks' sense neighbours not already in: a
    /// sense that the frequent sense crowds out of the nearest words still shows as a peak
    /// whose neighbours are close to each other.
    fn candidates(&self, near: &[(u32, f64)], peaks: &[PeakNeighbours]) -> Candidates {
        let mut c = Candidates {
            ids: near.iter().map(|&(u, _)| u).collect(),
            from_peak: vec![None; near.len()],
        };
        if !self.params.modes {
            return c;
        }
        for (n, peak) in peaks.iter().enumerate() {
            for &(u, _) in &peak.neighbours {
                if !c.ids.contains(&u) {
                    c.ids.push(u);
                    c.from_peak.push(Some(n));
                }
            }
        }
        c
    }

    /// Groups the active entries of `ids` by frequency (see `ByFrequency`).
    fn group_by_frequency(&self, ids: &[u32], g: &mut ByFrequency) {
        let d = self.s.frequency_dim;
        g.starts.clear();
        g.starts.resize(d + 1, 0);
        for &u in ids {
            for i in self.active(u as usize) {
                g.starts[self.s.freq[i] as usize + 1] += 1;
            }
        }
        for f in 0..d {
            g.starts[f + 1] += g.starts[f];
        }
        let total = g.starts[d];
        g.member.resize(total, 0);
        g.re.resize(total, 0.0);
        g.im.resize(total, 0.0);
        g.next.clone_from(&g.starts);
        for (c, &u) in ids.iter().enumerate() {
            for i in self.active(u as usize) {
                let at = &mut g.next[self.s.freq[i] as usize];
                g.member[*at] = c;
                g.re[*at] = self.index.re[i];
                g.im[*at] = self.index.im[i];
                *at += 1;
            }
        }
    }

    /// Complex cosines among `ids` (row-major n x n, diagonal -inf). The inner products are
    /// summed frequency by frequency over the pairs that share it (a few per frequency,
    /// instead of K gathers for each of the n²/2 pairs). Each pair's terms come in ascending
    /// frequency, the order of its entries, and a frequency only one of the two holds adds an
    /// exact zero: the sums are those over each pair's entries.
    fn mutual_cosines(&self, ids: &[u32], g: &mut ByFrequency) -> Vec<f64> {
        let n = ids.len();
        self.group_by_frequency(ids, g);
        let mut sim = vec![0.0; n * n];
        for f in 0..self.s.frequency_dim {
            let shared = g.starts[f]..g.starts[f + 1];
            for x in shared.clone() {
                for y in x + 1..shared.end {
                    // member[x] < member[y]: the first word's value times the second's.
                    sim[g.member[x] * n + g.member[y]] += g.re[x] * g.re[y] + g.im[x] * g.im[y];
                }
            }
        }
        for a in 0..n {
            let na = self.index.norm[ids[a] as usize];
            sim[a * n + a] = f64::NEG_INFINITY;
            for b in a + 1..n {
                let cos = sim[a * n + b] / (na * self.index.norm[ids[b] as usize]);
                sim[a * n + b] = cos;
                sim[b * n + a] = cos;
            }
        }
        sim
    }

    /// The peaks' frequency terms of the cosine of `w` with each candidate (rows: peaks).
    fn peak_terms(&self, w: usize, peaks: &[PeakNeighbours], ids: &[u32]) -> Vec<Vec<f64>> {
        let unit = |u: usize, f: u16| {
            self.slot_of(u, f).map_or((0.0, 0.0), |i| {
                let n = self.index.norm[u];
                (self.index.re[i] / n, self.index.im[i] / n)
            })
        };
        peaks
            .iter()
            .map(|p| {
                let (wr, wi) = unit(w, p.frequency);
                ids.iter()
                    .map(|&u| {
                        let (ur, ui) = unit(u as usize, p.frequency);
                        wr * ur + wi * ui
                    })
                    .collect()
            })
            .collect()
    }

    fn analyse(&self, w: usize, scratch: &mut Scratch) -> WordSenses {
        let peaks = self.peaks(w, &mut scratch.dots);
        let near = self.nearest(w, &scratch.dots);
        if near.len() < 2 {
            return WordSenses {
                peaks,
                senses: Vec::new(),
            };
        }
        let cand = self.candidates(&near, &peaks);
        let nw = self.index.norm[w];
        let cosines: Vec<f64> = (cand.ids.iter())
            .map(|&u| scratch.dots[u as usize] / (self.index.norm[u as usize] * nw))
            .collect();
        let sim = self.mutual_cosines(&cand.ids, &mut scratch.by_frequency);
        // The scale comes from the nearest words alone: the peaks' modes add words further
        // from the word (its less frequent senses), which must not lower the bar.
        let scale = near.iter().map(|&(_, c)| c).sum::<f64>() / near.len() as f64;
        let groups = average_linkage(sim, cand.ids.len(), self.params.merge_ratio * scale);
        let groups = self.keep_senses(groups, &cosines, &cand.from_peak);
        let carriers = carriers(&self.peak_terms(w, &peaks, &cand.ids), &groups);
        let senses = groups
            .iter()
            .enumerate()
            .map(|(n, g)| Sense {
                members: sorted_members(g, &cand.ids, &cosines),
                peaks: (0..peaks.len())
                    .filter(|&p| carriers[p] == Some(n))
                    .collect(),
            })
            .collect();
        WordSenses { peaks, senses }
    }

    /// Groups of two or more, heaviest first, without the light ones: lighter than
    /// `min_share` x the heaviest is noise, unless the group is carried by one peak (two
    /// members from its modes) and reaches `mode_share` x the heaviest.
    fn keep_senses(
        &self,
        groups: Vec<Vec<usize>>,
        cosines: &[f64],
        from_peak: &[Option<usize>],
    ) -> Vec<Vec<usize>> {
        let weight = |g: &[usize]| g.iter().fold(0.0, |acc, &i| acc + cosines[i]);
        let mut groups: Vec<(f64, Vec<usize>)> = groups
            .into_iter()
            .filter(|g| g.len() >= 2)
            .map(|g| (weight(&g), g))
            .collect();
        groups.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
        let Some(&(heaviest, _)) = groups.first() else {
            return Vec::new();
        };
        let (min_share, mode_share) = (self.params.min_share, self.params.mode_share);
        groups
            .into_iter()
            .filter(|(wt, g)| {
                *wt >= min_share * heaviest
                    || (carried(g, from_peak) && *wt >= mode_share * heaviest)
            })
            .map(|(_, g)| g)
            .collect()
    }
}

/// Whether at least two members of `group` came from the same peak's modes: a sense the word
/// holds a frequency for, however light its similarity mass.
fn carried(group: &[usize], from_peak: &[Option<usize>]) -> bool {
    let peaks: Vec<usize> = group.iter().filter_map(|&i| from_peak[i]).collect();
    peaks
        .iter()
        .any(|p| peaks.iter().filter(|&q| q == p).count() >= 2)
}

/// For each peak, the group its frequency term adds most similarity to (`terms[p][i]`: that
/// term for candidate `i`); `None` when it adds to none. Of equal gains the first group wins.
pub fn carriers(terms: &[Vec<f64>], groups: &[Vec<usize>]) -> Vec<Option<usize>> {
    terms
        .iter()
        .map(|t| {
            let gains = groups
                .iter()
                .map(|g| g.iter().fold(0.0, |acc, &i| acc + t[i]));
            let (best, gain) = first_max(gains.enumerate())?;
            (gain > 0.0).then_some(best)
        })
        .collect()
}

/// A group's members as `(word, cosine)`, by decreasing cosine (a stable sort: ties keep the
/// merge order).
fn sorted_members(group: &[usize], ids: &[u32], cosines: &[f64]) -> Vec<(u32, f64)> {
    let mut order = group.to_vec();
    order.sort_by(|&a, &b| {
        (cosines[b].partial_cmp(&cosines[a])).unwrap_or(std::cmp::Ordering::Equal)
    });
    order.into_iter().map(|i| (ids[i], cosines[i])).collect()
}

/// The peaks, sense neighbours and senses of each of `words`, in parallel over the words.
pub fn senses(
    s: &Spectra,
    index: &FrequencyIndex,
    words: &[usize],
    params: &SenseParams,
) -> Result<Vec<WordSenses>> {
    params.validate()?;
    if let Some(&w) = words.iter().find(|&&w| w >= s.vocab_size) {
        return Err(CssError::invalid(
            "word id",
            w,
            &format!("must be in [0, {})", s.vocab_size),
        ));
    }
    let analyzer = Analyzer { s, index, params };
    Ok(words
        .par_iter()
        .with_min_len(8)
        .map_init(
            || Scratch::new(s),
            |scratch, &w| analyzer.analyse(w, scratch),
        )
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f32::consts::PI;

    #[test]
    fn best_keeps_the_top_ties_by_id() {
        let mut best = Best::new(3);
        for (id, score) in [(5, 1.0), (1, 2.0), (3, 1.0), (2, 1.0), (4, 0.5)] {
            best.offer(id, score);
        }
        assert_eq!(best.items, vec![(1, 2.0), (2, 1.0), (3, 1.0)]);
        assert_eq!(best.bar(), 1.0);
        let mut none = Best::new(0);
        none.offer(1, 1.0);
        assert!(none.items.is_empty());
    }

    fn block(n: usize, pairs: &[(usize, usize, f64)]) -> Vec<f64> {
        let mut sim = vec![0.0; n * n];
        for &(a, b, v) in pairs {
            sim[a * n + b] = v;
            sim[b * n + a] = v;
        }
        sim
    }

    #[test]
    fn average_linkage_stops_at_the_threshold() {
        let sim = block(4, &[(0, 1, 0.9), (0, 3, 0.1), (1, 2, 0.1), (2, 3, 0.8)]);
        assert_eq!(
            average_linkage(sim.clone(), 4, 0.5),
            vec![vec![0, 1], vec![2, 3]]
        );
        assert_eq!(average_linkage(sim.clone(), 4, -1.0).len(), 1);
        assert_eq!(average_linkage(sim, 4, 0.95).len(), 4);
    }

    #[test]
    fn average_linkage_merges_by_mean_similarity() {
        // 0-1 merge first (0.9); {0,1} to 2 is then (0.8 + 0.0) / 2 = 0.4 < 0.5 even though
        // single linkage would join 2 through its 0.8 with 0.
        let sim = block(3, &[(0, 1, 0.9), (0, 2, 0.8), (1, 2, 0.0)]);
        assert_eq!(
            average_linkage(sim.clone(), 3, 0.5),
            vec![vec![0, 1], vec![2]]
        );
        assert_eq!(average_linkage(sim, 3, 0.4), vec![vec![0, 1, 2]]);
    }

    #[test]
    fn average_linkage_breaks_ties_in_row_major_order() {
        // Four equal pairs. Row-major order takes (0, 1) first, then {0, 1} with 2 at
        // (0.7 + 0.7) / 2; merging (1, 3) first would have given {0, 2} and {1, 3} instead.
        let sim = block(4, &[(0, 2, 0.7), (1, 3, 0.7), (0, 1, 0.7), (1, 2, 0.7)]);
        assert_eq!(average_linkage(sim, 4, 0.5), vec![vec![0, 1, 2], vec![3]]);
        let sim = block(4, &[(2, 3, 0.7), (1, 3, 0.7)]);
        assert_eq!(
            average_linkage(sim, 4, 0.5),
            vec![vec![0], vec![1, 3], vec![2]]
        );
        assert_eq!(
            average_linkage(Vec::new(), 0, 0.5),
            Vec::<Vec<usize>>::new()
        );
    }

    /// The clustering as first written: every merge rescans each row whose maximum was one
    /// of the merged groups, over all columns with an `alive` test.
    fn rescanning_linkage(mut sim: Vec<f64>, n: usize, threshold: f64) -> Vec<Vec<usize>> {
        let mut groups: Vec<Vec<usize>> = (0..n).map(|i| vec![i]).collect();
        let mut alive = vec![true; n];
        let best_of = |sim: &[f64], alive: &[bool], r: usize| {
            let live: Vec<usize> = (0..n).filter(|&c| alive[c]).collect();
            row_best(sim, n, &live, r)
        };
        let mut best: Vec<(f64, usize)> = (0..n).map(|r| best_of(&sim, &alive, r)).collect();
        for _ in 1..n {
            let rows = (0..n)
                .filter(|&r| alive[r])
                .map(|r| ((r, best[r].1), best[r].0));
            let ((a, b), value) = first_max(rows).unwrap();
            if value < threshold {
                break;
            }
            let (na, nb) = (groups[a].len() as f64, groups[b].len() as f64);
            for j in (0..n).filter(|&j| alive[j] && j != a && j != b) {
                let merged = (sim[a * n + j] * na + sim[b * n + j] * nb) / (na + nb);
                sim[a * n + j] = merged;
                sim[j * n + a] = merged;
            }
            let moved = std::mem::take(&mut groups[b]);
            groups[a].extend(moved);
            alive[b] = false;
            best[a] = best_of(&sim, &alive, a);
            for r in (0..n).filter(|&r| alive[r] && r != a) {
                let (v, c) = best[r];
                let s = sim[r * n + a];
                if c == a || c == b {
                    best[r] = best_of(&sim, &alive, r);
                } else if s > v || (s == v && a < c) {
                    best[r] = (s, a);
                }
            }
        }
        groups.into_iter().filter(|g| !g.is_empty()).collect()
    }

    #[test]
    fn average_linkage_merges_as_a_full_rescan_does() {
        // Similarities on a coarse grid, so that ties are common; some matrices with a -inf
        // off the diagonal, which takes the scan over the live columns.
        let mut rng = crate::rng::Rng::new(7);
        for case in 0..20000 {
            let n = 2 + rng.below(30);
            let levels = 2 + case % 7;
            let mut sim = vec![0.0; n * n];
            for a in 0..n {
                for b in a + 1..n {
                    let v = rng.below(levels) as f64 / 2.0;
                    sim[a * n + b] = v;
                    sim[b * n + a] = v;
                }
            }
            if case % 4 == 0 {
                let (a, b) = (rng.below(n), rng.below(n));
                if a != b {
                    sim[a * n + b] = f64::NEG_INFINITY;
                    sim[b * n + a] = f64::NEG_INFINITY;
                }
            }
            let threshold = rng.below(4) as f64 / 4.0;
            assert_eq!(
                average_linkage(sim.clone(), n, threshold),
                rescanning_linkage(sim, n, threshold),
                "case {case}"
            );
        }
    }

    #[test]
    fn carriers_pick_the_group_a_peak_adds_most_to() {
        let groups = vec![vec![0, 1], vec![2, 3]];
        let terms = vec![
            vec![0.3, 0.2, 0.0, 0.1],   // group 0
            vec![0.0, -0.1, 0.2, 0.1],  // group 1
            vec![-0.1, 0.0, -0.2, 0.0], // subtracts from both: none
            vec![0.1, 0.1, 0.2, 0.0],   // a tie: the first group
        ];
        assert_eq!(
            carriers(&terms, &groups),
            vec![Some(0), Some(1), None, Some(0)]
        );
        assert_eq!(carriers(&terms, &[]), vec![None; 4]);
    }

    #[test]
    fn carried_needs_two_members_from_one_peak() {
        let from = [None, Some(0), Some(1), Some(1)];
        assert!(carried(&[0, 2, 3], &from));
        assert!(!carried(&[0, 1, 2], &from));
    }

    /// Two topics sharing nothing, and a word with one peak in each. Topic A lives on
    /// frequencies 0-3, topic B on 4-7; `bank` (word 0) holds 0 and 4.
    fn two_topics() -> Spectra {
        let k = 4;
        let mut freq = Vec::new();
        let mut amp = Vec::new();
        let mut phase = Vec::new();
        let mut word = |entries: &[(u16, f32)]| {
            for j in 0..k {
                let (f, a) = entries.get(j).copied().unwrap_or((EMPTY, 0.0));
                freq.push(f);
                amp.push(a);
                phase.push(0.0);
            }
        };
        word(&[(0, 1.0), (4, 0.9)]); // 0: bank
        for w in 0..4u16 {
            word(&[(0, 1.0), (1 + w % 3, 0.5)]); // 1-4: topic A
        }
        for w in 0..4u16 {
            word(&[(4, 1.0), (5 + w % 3, 0.5)]); // 5-8: topic B
        }
        word(&[(2, 1.0)]); // 9: on topic A's frequency 2 alone
        word(&[]); // 10: empty
        word(&[(0, 1.0)]); // 11: opposite phase at 0 (set below)
        phase[11 * k] = PI;
        Spectra::from_slots(k, 8, freq, amp, phase).unwrap()
    }

    fn analyse(s: &Spectra, params: &SenseParams, words: &[usize]) -> Vec<WordSenses> {
        senses(s, &FrequencyIndex::new(s), words, params).unwrap()
    }

    #[test]
    fn a_word_between_two_topics_has_two_senses_carried_by_its_peaks() {
        let s = two_topics();
        let params = SenseParams {
            neighbourhood: 10,
            ..SenseParams::default()
        };
        let found = &analyse(&s, &params, &[0])[0];
        assert_eq!(
            found.peaks.iter().map(|p| p.frequency).collect::<Vec<_>>(),
            vec![0, 4]
        );
        let members: Vec<Vec<u32>> = found
            .senses
            .iter()
            .map(|x| {
                let mut m: Vec<u32> = x.members.iter().map(|&(u, _)| u).collect();
                m.sort();
                m
            })
            .collect();
        assert_eq!(members, vec![vec![1, 2, 3, 4], vec![5, 6, 7, 8]]);
        assert_eq!(found.senses[0].peaks, vec![0]); // frequency 0 carries topic A
        assert_eq!(found.senses[1].peaks, vec![1]);
        assert!(found.senses[0].weight() > found.senses[1].weight()); // 1.0 vs 0.9
        for sense in &found.senses {
            let cos: Vec<f64> = sense.members.iter().map(|&(_, c)| c).collect();
            assert!(cos.windows(2).all(|p| p[0] >= p[1]));
            for &(u, c) in &sense.members {
                assert!((c - queries::similarity(&s, 0, u as usize) as f64).abs() < 1e-6);
            }
        }
        // Sense neighbours: the phase ranking skips word 11 (opposite phase, negative cosine).
        let neighbours: Vec<u32> = found.peaks[0].neighbours.iter().map(|n| n.0).collect();
        assert_eq!(neighbours, vec![1, 2, 3, 4]);
    }

    #[test]
    fn a_topic_word_has_one_sense_and_an_empty_word_none() {
        let s = two_topics();
        let params = SenseParams {
            neighbourhood: 10,
            ..SenseParams::default()
        };
        let found = analyse(&s, &params, &[1, 10]);
        assert_eq!(found[0].senses.len(), 1);
        assert!(found[0].senses[0]
            .members
            .iter()
            .all(|&(u, _)| u <= 4 || u == 9));
        assert_eq!(found[1], WordSenses::default());
    }

    #[test]
    fn words_past_the_vocabulary_limit_are_neither_neighbours_nor_members() {
        let s = two_topics();
        let all = SenseParams {
            neighbourhood: 10,
            ..SenseParams::default()
        };
        let limited = SenseParams {
            vocabulary: 3,
            ..all.clone()
        };
        let every = &analyse(&s, &all, &[0])[0];
        let few = &analyse(&s, &limited, &[0])[0];
        let ids = |w: &WordSenses| -> Vec<u32> {
            let members = w.senses.iter().flat_map(|x| x.members.iter().map(|m| m.0));
            let neighbours = w
                .peaks
                .iter()
                .flat_map(|p| p.neighbours.iter().map(|n| n.0));
            members.chain(neighbours).collect()
        };
        assert!(ids(every).iter().any(|&u| u >= 3));
        assert!(!ids(few).is_empty() && ids(few).iter().all(|&u| u < 3));
        let one = SenseParams {
            vocabulary: 1,
            ..all
        };
        assert!(one.validate().is_err());
    }

    #[test]
    fn the_amplitude_ranking_ignores_the_phase() {
        let s = two_topics();
        let params = SenseParams {
            rank: Ranking::Amplitude,
            k: 10,
            ..SenseParams::default()
        };
        let peak = &analyse(&s, &params, &[0])[0].peaks[0];
        assert!(peak.neighbours.iter().any(|&(u, _)| u == 11));
        assert!(peak.neighbours.iter().all(|&(_, score)| score == 1.0));
    }

    #[test]
    fn nearest_words_agree_with_similar() {
        let s = two_topics();
        let index = FrequencyIndex::new(&s);
        let params = SenseParams::default();
        let analyzer = Analyzer {
            s: &s,
            index: &index,
            params: &params,
        };
        let mut scratch = Scratch::new(&s);
        for w in 0..s.vocab_size {
            analyzer.scan_columns(w, &[], &mut scratch.dots);
            let mine = analyzer.nearest(w, &scratch.dots);
            let engine: Vec<(u32, f32)> = queries::similar(&s, w, 20)
                .into_iter()
                .filter(|&(_, c)| c > 0.0)
                .collect();
            assert_eq!(mine.len(), engine.len());
            for (a, b) in mine.iter().zip(&engine) {
                assert!((a.1 - b.1 as f64).abs() < 1e-6, "word {w}");
            }
        }
    }

    #[test]
    fn bad_settings_and_word_ids_are_refused() {
        let s = two_topics();
        let index = FrequencyIndex::new(&s);
        let bad = SenseParams {
            neighbourhood: 1,
            ..SenseParams::default()
        };
        assert!(senses(&s, &index, &[0], &bad).is_err());
        assert!(senses(&s, &index, &[99], &SenseParams::default()).is_err());
        assert!(Ranking::parse("loudest").is_err());
    }
}
