//! What synchronous distributed rounds exchange, and the driver's merge (issue 16).
//!
//! The driver holds the global spectra as dense raw slot arrays (`SlotArrays`: per word K
//! slots of frequency, re and im, plus the word's update counter) and sends them to every
//! worker at the start of a round. A worker trains its slice from them and sends back only the
//! words its round changed (`SparseRows`). The merge replaces each changed word by the mean,
//! in complex space, of the versions of the workers that changed it, cut back to its K largest
//! magnitudes (hard threshold). Averaging, not summing, keeps W workers' steps on a shared
//! word from adding up to a W-times larger step.

use crate::error::{CssError, Result};
use crate::spectra::{InitParams, SharedSpectra, Spectra, EMPTY};
use crate::vocabulary::Vocabulary;
use std::cmp::Ordering;

/// Which of `buckets` reducers counts `word`: FNV-1a of its UTF-8 bytes, the same on every
/// machine and in every process (a seeded hasher would send a word to different reducers).
pub fn word_bucket(word: &str, buckets: usize) -> usize {
    let h = word.bytes().fold(0xCBF2_9CE4_8422_2325_u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01B3)
    });
    (h % buckets.max(1) as u64) as usize
}

/// A vocabulary's raw counts split into `buckets` unbuilt vocabularies by `word_bucket`, so
/// that reducer `b` merges bucket `b` of every shard and no process holds every word.
pub fn split_counts(v: &Vocabulary, buckets: usize) -> Vec<Vocabulary> {
    let mut parts: Vec<Vec<(String, u64)>> = vec![Vec::new(); buckets.max(1)];
    for (word, count) in v.raw_counts() {
        let b = word_bucket(&word, buckets);
        parts[b].push((word, count));
    }
    parts
        .into_iter()
        .map(|counts| {
            let mut part = Vocabulary::new();
            part.add_counts(counts);
            part
        })
        .collect()
}

/// The words counted at least `min_count` times, with their counts, sorted by word: all a
/// vocabulary's build needs from a reducer.
pub fn frequent_counts(v: &Vocabulary, min_count: u64) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = v
        .raw_counts()
        .into_iter()
        .filter(|&(_, c)| c >= min_count)
        .collect();
    out.sort_unstable();
    out
}

/// Dense raw slot arrays of every word (`vocab_size * k` slots, slot order as trained).
#[derive(Debug, Clone, PartialEq)]
pub struct SlotArrays {
    pub k: usize,
    pub freq: Vec<u16>,
    pub re: Vec<f32>,
    pub im: Vec<f32>,
    pub counters: Vec<u32>,
}

/// Some words' slot arrays: `words[i]` owns slots `i*k..(i+1)*k` and `counters[i]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SparseRows {
    pub k: usize,
    pub words: Vec<u32>,
    pub freq: Vec<u16>,
    pub re: Vec<f32>,
    pub im: Vec<f32>,
    pub counters: Vec<u32>,
}

/// Checks that slot arrays of `rows` rows fit K and hold only valid entries: frequencies below
/// `frequency_dim` (or EMPTY), none twice in a row, finite values.
fn check_slots(
    what: &str,
    k: usize,
    rows: usize,
    slots: (&[u16], &[f32], &[f32]),
    frequency_dim: usize,
) -> Result<()> {
    let (freq, re, im) = slots;
    let n = rows.checked_mul(k);
    if k == 0 || Some(freq.len()) != n || re.len() != freq.len() || im.len() != freq.len() {
        return Err(CssError::InvalidData(format!(
            "{what}: {} frequencies, {} re and {} im values do not fit {rows} words of K = {k}",
            freq.len(),
            re.len(),
            im.len()
        )));
    }
    for (row, chunk) in freq.chunks(k).enumerate() {
        for (j, &f) in chunk.iter().enumerate().filter(|&(_, &f)| f != EMPTY) {
            if f as usize >= frequency_dim || chunk[..j].contains(&f) {
                return Err(CssError::InvalidData(format!(
                    "{what}: row {row} has frequency {f} twice or outside 0..{frequency_dim}"
                )));
            }
            let s = row * k + j;
            if !(re[s].is_finite() && im[s].is_finite()) {
                return Err(CssError::InvalidData(format!(
                    "{what}: row {row} has a non-finite value at frequency {f}"
                )));
            }
        }
    }
    Ok(())
}

impl SlotArrays {
    /// The initial global spectra of a run: what `Trainer::new` starts from.
    pub fn random(vocab_size: usize, init: &InitParams, seed: u64) -> Self {
        SlotArrays::from_shared(&SharedSpectra::random(vocab_size, init, seed))
    }

    pub fn from_shared(s: &SharedSpectra) -> Self {
        let (freq, re, im, counters) = s.to_raw();
        SlotArrays {
            k: s.k(),
            freq,
            re: re.into_iter().map(f32::from_bits).collect(),
            im: im.into_iter().map(f32::from_bits).collect(),
            counters,
        }
    }

    pub fn to_shared(&self) -> SharedSpectra {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
        SharedSpectra::from_raw(
            self.k,
            &self.freq,
            &bits(&self.re),
            &bits(&self.im),
            &self.counters,
        )
    }

    pub fn vocab_size(&self) -> usize {
        self.counters.len()
    }

    pub fn validate(&self, frequency_dim: usize) -> Result<()> {
        let slots = (&self.freq[..], &self.re[..], &self.im[..]);
        check_slots("spectra", self.k, self.vocab_size(), slots, frequency_dim)
    }

    /// The query form (coalesced, sorted by frequency, as amplitude and phase).
    pub fn to_spectra(&self, frequency_dim: usize) -> Spectra {
        self.to_shared().snapshot(frequency_dim)
    }

    fn row_equal(&self, other: &SlotArrays, w: usize) -> bool {
        let r = w * self.k..(w + 1) * self.k;
        let same_bits =
            |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
        self.freq[r.clone()] == other.freq[r.clone()]
            && same_bits(&self.re[r.clone()], &other.re[r.clone()])
            && same_bits(&self.im[r.clone()], &other.im[r])
            && self.counters[w] == other.counters[w]
    }

    /// The words of `newer` that differ from `self` (bit for bit), in id order: what a worker
    /// sends back. A word trained but left bit-identical is not distinguishable from an
    /// untouched one, and needs no vote in the mean either way.
    pub fn changed_rows(&self, newer: &SlotArrays) -> SparseRows {
        let k = self.k;
        let mut out = SparseRows {
            k,
            ..SparseRows::default()
        };
        for w in (0..self.vocab_size()).filter(|&w| !self.row_equal(newer, w)) {
            let r = w * k..(w + 1) * k;
            out.words.push(w as u32);
            out.freq.extend_from_slice(&newer.freq[r.clone()]);
            out.re.extend_from_slice(&newer.re[r.clone()]);
            out.im.extend_from_slice(&newer.im[r]);
            out.counters.push(newer.counters[w]);
        }
        out
    }
}

impl SparseRows {
    pub fn len(&self) -> usize {
        self.words.len()
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// Bytes of the arrays (what a round sends back over the network, roughly).
    pub fn nbytes(&self) -> usize {
        self.words.len() * 8 + self.freq.len() * 10
    }

    /// Checks the rows against the global spectra they are to be merged into: the same K,
    /// word ids in range and each at most once, valid slots.
    pub fn validate(&self, vocab_size: usize, frequency_dim: usize) -> Result<()> {
        if self.counters.len() != self.words.len() {
            return Err(CssError::InvalidData(format!(
                "update: {} words but {} counters",
                self.words.len(),
                self.counters.len()
            )));
        }
        let slots = (&self.freq[..], &self.re[..], &self.im[..]);
        check_slots("update", self.k, self.words.len(), slots, frequency_dim)?;
        let mut seen = vec![false; vocab_size];
        for &w in &self.words {
            match seen.get_mut(w as usize) {
                None => {
                    return Err(CssError::InvalidData(format!(
                        "update: word id {w} is outside the vocabulary (0..{vocab_size})"
                    )))
                }
                Some(true) => {
                    return Err(CssError::InvalidData(format!(
                        "update: word id {w} appears twice"
                    )))
                }
                Some(s) => *s = true,
            }
        }
        Ok(())
    }
}

/// One contribution to a word: a worker's entry at a frequency.
#[derive(Clone, Copy)]
struct Entry {
    f: u16,
    re: f32,
    im: f32,
}

/// A canonical order of entries (frequency, then the values' bits), so that sums taken in it
/// do not depend on the order the updates came in.
fn canonical(a: &Entry, b: &Entry) -> Ordering {
    a.f.cmp(&b.f)
        .then_with(|| a.re.total_cmp(&b.re))
        .then_with(|| a.im.total_cmp(&b.im))
}

/// The merged spectrum of one word from its `voters` versions' entries: per frequency the
/// mean over the voters (an absent entry counts as 0), then the K largest magnitudes (ties to
/// the lower frequency), sorted by frequency. Zero entries are dropped.
fn merge_word(entries: &mut [Entry], voters: usize, k: usize) -> Vec<Entry> {
    entries.sort_unstable_by(canonical);
    let mut means: Vec<Entry> = Vec::with_capacity(entries.len());
    for e in entries.iter() {
        match means.last_mut() {
            Some(m) if m.f == e.f => {
                m.re += e.re;
                m.im += e.im;
            }
            _ => means.push(*e),
        }
    }
    let n = voters as f32;
    for m in &mut means {
        m.re /= n;
        m.im /= n;
    }
    means.retain(|m| m.re != 0.0 || m.im != 0.0);
    let mag2 = |m: &Entry| m.re * m.re + m.im * m.im;
    means.sort_by(|a, b| mag2(b).total_cmp(&mag2(a)).then(a.f.cmp(&b.f)));
    means.truncate(k);
    means.sort_unstable_by_key(|m| m.f);
    means
}

/// The driver's merge: every word changed by at least one update becomes the mean of its
/// changed versions, hard-thresholded to K entries; its counter the largest of theirs. Other
/// words keep their global slots. The result does not depend on the order of `updates`.
pub fn merge(
    global: &SlotArrays,
    updates: &[SparseRows],
    frequency_dim: usize,
) -> Result<SlotArrays> {
    let k = global.k;
    let v = global.vocab_size();
    for u in updates {
        if u.k != k {
            return Err(CssError::InvalidData(format!(
                "update has K = {} but the spectra have K = {k}",
                u.k
            )));
        }
        u.validate(v, frequency_dim)?;
    }
    // Per word, its rows in the updates: (update, row).
    let mut rows: Vec<(u32, usize, usize)> = updates
        .iter()
        .enumerate()
        .flat_map(|(i, u)| u.words.iter().enumerate().map(move |(r, &w)| (w, i, r)))
        .collect();
    rows.sort_unstable_by_key(|&(w, _, _)| w);
    let mut out = global.clone();
    let mut entries = Vec::new();
    for group in rows.chunk_by(|a, b| a.0 == b.0) {
        let w = group[0].0 as usize;
        entries.clear();
        let mut counter = 0u32;
        for &(_, i, r) in group {
            let u = &updates[i];
            for s in r * k..(r + 1) * k {
                if u.freq[s] != EMPTY {
                    entries.push(Entry {
                        f: u.freq[s],
                        re: u.re[s],
                        im: u.im[s],
                    });
                }
            }
            counter = counter.max(u.counters[r]);
        }
        let merged = merge_word(&mut entries, group.len(), k);
        let slots = w * k..(w + 1) * k;
        out.freq[slots.clone()].fill(EMPTY);
        out.re[slots.clone()].fill(0.0);
        out.im[slots].fill(0.0);
        for (j, e) in merged.iter().enumerate() {
            out.freq[w * k + j] = e.f;
            out.re[w * k + j] = e.re;
            out.im[w * k + j] = e.im;
        }
        out.counters[w] = counter;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn global(v: usize, k: usize) -> SlotArrays {
        let init = InitParams {
            frequency_dim: 20,
            k,
            min_init: 1,
            amp_min: 0.1,
            amp_max: 1.0,
            use_phases: true,
        };
        SlotArrays::random(v, &init, 7)
    }

    fn rows_of(g: &SlotArrays, words: &[u32]) -> SparseRows {
        let k = g.k;
        let mut r = SparseRows {
            k,
            ..SparseRows::default()
        };
        for &w in words {
            let s = w as usize * k..(w as usize + 1) * k;
            r.words.push(w);
            r.freq.extend_from_slice(&g.freq[s.clone()]);
            r.re.extend_from_slice(&g.re[s.clone()]);
            r.im.extend_from_slice(&g.im[s]);
            r.counters.push(g.counters[w as usize]);
        }
        r
    }

    #[test]
    fn split_counts_partitions_the_words_and_keeps_their_counts() {
        let mut v = Vocabulary::new();
        v.update(&["a b b c c c d d d d e"]);
        let parts = split_counts(&v, 3);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts.iter().map(|p| p.total_tokens()).sum::<u64>(), 11);
        let mut merged = Vocabulary::new();
        for (b, p) in parts.iter().enumerate() {
            assert!(p.raw_counts().keys().all(|w| word_bucket(w, 3) == b));
            merged.merge(p);
        }
        assert_eq!(merged.raw_counts(), v.raw_counts());
        let frequent = frequent_counts(&v, 3);
        assert_eq!(frequent, vec![("c".to_string(), 3), ("d".to_string(), 4)]);
    }

    #[test]
    fn raw_round_trip_is_exact() {
        let g = global(30, 4);
        assert_eq!(SlotArrays::from_shared(&g.to_shared()), g);
        assert!(g.validate(20).is_ok());
    }

    #[test]
    fn changed_rows_lists_exactly_the_changed_words() {
        let g = global(10, 4);
        let mut h = g.clone();
        h.re[3 * 4] += 1.0;
        h.counters[7] += 1;
        assert_eq!(g.changed_rows(&h).words, vec![3, 7]);
        assert!(g.changed_rows(&g).is_empty());
    }

    #[test]
    fn merge_takes_the_mean_not_the_sum() {
        let k = 2;
        let g = global(3, k);
        let one = |re: f32| SparseRows {
            k,
            words: vec![1],
            freq: vec![5, EMPTY],
            re: vec![re, 0.0],
            im: vec![0.0, 0.0],
            counters: vec![3],
        };
        let m = merge(&g, &[one(1.0), one(3.0)], 20).unwrap();
        assert_eq!(&m.freq[2..4], &[5, EMPTY]);
        assert_eq!(m.re[2], 2.0);
        // Untouched words keep their slots.
        assert_eq!(m.freq[..2], g.freq[..2]);
        assert_eq!(m.re[4..], g.re[4..]);
    }

    #[test]
    fn merge_keeps_the_k_largest_magnitudes() {
        let k = 2;
        let g = global(1, k);
        let a = SparseRows {
            k,
            words: vec![0],
            freq: vec![1, 2],
            re: vec![4.0, 1.0],
            im: vec![0.0, 0.0],
            counters: vec![0],
        };
        let b = SparseRows {
            freq: vec![3, 1],
            re: vec![0.0, 4.0],
            im: vec![3.0, 0.0],
            ..a.clone()
        };
        // Means: f1 = 4, f2 = 0.5, f3 = 1.5i: f2 goes.
        let m = merge(&g, &[a, b], 20).unwrap();
        assert_eq!(m.freq, vec![1, 3]);
        assert_eq!((m.re[0], m.im[1]), (4.0, 1.5));
    }

    #[test]
    fn merge_ignores_the_order_of_updates() {
        let g = global(40, 4);
        let a = rows_of(&global(40, 4), &[1, 2, 3, 9]);
        let mut other = global(40, 4);
        other.re.iter_mut().for_each(|x| *x *= 1.37);
        let b = rows_of(&other, &[2, 3, 30]);
        let c = rows_of(&g, &[3, 4]);
        let abc = merge(&g, &[a.clone(), b.clone(), c.clone()], 20).unwrap();
        let cba = merge(&g, &[c, b, a], 20).unwrap();
        assert_eq!(abc, cba);
    }

    #[test]
    fn merge_refuses_bad_updates() {
        let g = global(3, 2);
        let bad_word = SparseRows {
            k: 2,
            words: vec![3],
            freq: vec![1, EMPTY],
            re: vec![1.0, 0.0],
            im: vec![0.0, 0.0],
            counters: vec![0],
        };
        assert!(merge(&g, std::slice::from_ref(&bad_word), 20).is_err());
        let twice = SparseRows {
            words: vec![0],
            freq: vec![1, 1],
            ..bad_word.clone()
        };
        assert!(merge(&g, &[twice], 20).is_err());
        let nan = SparseRows {
            words: vec![0],
            re: vec![f32::NAN, 0.0],
            ..bad_word
        };
        assert!(merge(&g, &[nan], 20).is_err());
    }
}
