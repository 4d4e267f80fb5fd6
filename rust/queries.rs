//! Queries on trained spectra: complex cosine, parallel top-k, peaks and semantic modes. All
//! O(K) per pair or O(V·K) per scan, never O(D). (A peak's sense neighbours and a word's
//! senses are `senses`.)

use crate::spectra::{Spectra, EMPTY};
use rayon::prelude::*;

/// `Re<S_a, S_b>` by merging the two frequency-sorted slot lists.
pub fn inner(s: &Spectra, a: usize, b: usize) -> f32 {
    let (ra, rb) = (s.slots(a), s.slots(b));
    let (mut i, mut j) = (ra.start, rb.start);
    let mut acc = 0.0f32;
    while i < ra.end && j < rb.end {
        let (fa, fb) = (s.freq[i], s.freq[j]);
        if fa == EMPTY || fb == EMPTY {
            break;
        }
        match fa.cmp(&fb) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                acc += s.re[i] * s.re[j] + s.im[i] * s.im[j];
                i += 1;
                j += 1;
            }
        }
    }
    acc
}

/// Complex cosine `Re<S_a, S_b> / (|S_a| |S_b|)`; 0 when either spectrum is empty.
pub fn similarity(s: &Spectra, a: usize, b: usize) -> f32 {
    let d = s.norm[a] * s.norm[b];
    if d > 0.0 {
        inner(s, a, b) / d
    } else {
        0.0
    }
}

/// A score that ranks: float32 for the stored values, float64 for `most_similar`.
trait Score: Copy + Send {
    fn total_cmp(&self, other: &Self) -> std::cmp::Ordering;
}

impl Score for f32 {
    fn total_cmp(&self, other: &Self) -> std::cmp::Ordering {
        f32::total_cmp(self, other)
    }
}

impl Score for f64 {
    fn total_cmp(&self, other: &Self) -> std::cmp::Ordering {
        f64::total_cmp(self, other)
    }
}

/// Keeps the `k` best `(score, id)` pairs, best first (ties by id, so results are stable).
fn top_k<T: Score>(mut scored: Vec<(T, u32)>, k: usize) -> Vec<(u32, T)> {
    let cmp = |a: &(T, u32), b: &(T, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    if scored.len() > k && k > 0 {
        scored.select_nth_unstable_by(k - 1, cmp);
        scored.truncate(k);
    }
    scored.sort_unstable_by(cmp);
    scored.truncate(k);
    scored.into_iter().map(|(sc, id)| (id, sc)).collect()
}

/// The `k` words most similar to `word` (itself excluded), scanned in parallel.
pub fn similar(s: &Spectra, word: usize, k: usize) -> Vec<(u32, f32)> {
    if s.norm[word] == 0.0 {
        return Vec::new();
    }
    let scored: Vec<(f32, u32)> = (0..s.vocab_size)
        .into_par_iter()
        .filter(|&w| w != word && s.norm[w] > 0.0)
        .map(|w| (similarity(s, word, w), w as u32))
        .collect();
    top_k(scored, k)
}

/// Word `w`'s entries as float64 complex values `(frequency, re, im)`, from the stored
/// amplitudes and phases (float64 throughout, so that near-ties rank as in float64 numpy).
fn values64(s: &Spectra, w: usize) -> impl Iterator<Item = (usize, f64, f64)> + '_ {
    s.slots(w).filter(|&i| s.freq[i] != EMPTY).map(|i| {
        let (a, ph) = (s.amp[i] as f64, s.phase[i] as f64);
        (s.freq[i] as usize, a * ph.cos(), a * ph.sin())
    })
}

/// gensim's `most_similar`: the `k` words nearest (complex cosine) to the sum of the unit
/// spectra of `positive` minus those of `negative`, the query words excluded. The query is a
/// dense vector of D values; each word is read over its K slots, O(V·K), never a V × D matrix.
/// An empty word, or an empty query, scores 0.
pub fn most_similar(
    s: &Spectra,
    positive: &[usize],
    negative: &[usize],
    k: usize,
) -> Vec<(u32, f64)> {
    let mut query = vec![(0.0f64, 0.0f64); s.frequency_dim];
    for (words, sign) in [(positive, 1.0), (negative, -1.0)] {
        for &w in words {
            let norm = values64(s, w)
                .map(|(_, r, i)| r * r + i * i)
                .sum::<f64>()
                .sqrt();
            if norm > 0.0 {
                for (f, r, i) in values64(s, w) {
                    query[f].0 += sign * r / norm;
                    query[f].1 += sign * i / norm;
                }
            }
        }
    }
    let query_norm = query.iter().map(|(r, i)| r * r + i * i).sum::<f64>().sqrt();
    let scored: Vec<(f64, u32)> = (0..s.vocab_size)
        .into_par_iter()
        .filter(|w| !positive.contains(w) && !negative.contains(w))
        .map(|w| {
            let (mut dot, mut norm2) = (0.0f64, 0.0f64);
            for (f, r, i) in values64(s, w) {
                dot += r * query[f].0 + i * query[f].1;
                norm2 += r * r + i * i;
            }
            let norms = norm2.sqrt() * query_norm;
            (if norms > 0.0 { dot / norms } else { 0.0 }, w as u32)
        })
        .collect();
    top_k(scored, k)
}

/// Entries of `word` with amplitude >= `ratio` × its largest: `(freq, amplitude, phase)`,
/// strongest first.
pub fn peaks(s: &Spectra, word: usize, ratio: f32) -> Vec<(u16, f32, f32)> {
    let r = s.slots(word);
    let max = s.amp[r.clone()].iter().cloned().fold(0.0f32, f32::max);
    if max <= 0.0 {
        return Vec::new();
    }
    let mut out: Vec<(u16, f32, f32)> = r
        .filter(|&i| s.freq[i] != EMPTY && s.amp[i] >= ratio * max)
        .map(|i| (s.freq[i], s.amp[i], s.phase[i]))
        .collect();
    out.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    out
}

/// Amplitude of `word` at frequency `f` (0 if not active).
pub fn amplitude_at(s: &Spectra, word: usize, f: u16) -> f32 {
    s.slots(word)
        .find(|&i| s.freq[i] == f)
        .map_or(0.0, |i| s.amp[i])
}

/// Semantic mode `f`: the `k` words with the largest amplitude at frequency `f`.
pub fn modes(s: &Spectra, f: u16, k: usize) -> Vec<(u32, f32)> {
    let scored: Vec<(f32, u32)> = (0..s.vocab_size)
        .into_par_iter()
        .filter_map(|w| {
            let a = amplitude_at(s, w, f);
            (a > 0.0).then_some((a, w as u32))
        })
        .collect();
    top_k(scored, k)
}

/// How many words use each frequency.
pub fn frequency_usage(s: &Spectra) -> Vec<u64> {
    let mut usage = vec![0u64; s.frequency_dim];
    for &f in &s.freq {
        if f != EMPTY {
            usage[f as usize] += 1;
        }
    }
    usage
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Spectra {
        // word 0: {1: 1.0, 3: 0.5}; word 1: {1: 2.0}; word 2: {3: 1.0, 5: 0.1}; word 3: empty.
        Spectra::from_slots(
            2,
            8,
            vec![1, 3, 1, EMPTY, 3, 5, EMPTY, EMPTY],
            vec![1.0, 0.5, 2.0, 0.0, 1.0, 0.1, 0.0, 0.0],
            vec![0.0; 8],
        )
        .unwrap()
    }

    #[test]
    fn cosine_and_similar() {
        let s = model();
        let c01 = similarity(&s, 0, 1);
        assert!((c01 - 1.0 / 1.25f32.sqrt()).abs() < 1e-6);
        assert_eq!(similarity(&s, 0, 3), 0.0);
        let top = similar(&s, 0, 5);
        assert_eq!(top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn phases_matter() {
        let s = Spectra::from_slots(
            1,
            4,
            vec![2, 2],
            vec![1.0, 1.0],
            vec![0.0, std::f32::consts::PI],
        )
        .unwrap();
        assert!((similarity(&s, 0, 1) + 1.0).abs() < 1e-6);
    }

    #[test]
    fn peaks_modes_usage() {
        let s = model();
        assert_eq!(peaks(&s, 0, 0.25).len(), 2);
        assert_eq!(peaks(&s, 2, 0.25).len(), 1);
        assert_eq!(modes(&s, 3, 10), vec![(2, 1.0), (0, 0.5)]);
        assert_eq!(frequency_usage(&s)[1], 2);
    }

    #[test]
    fn most_similar_combines_unit_spectra_and_excludes_the_query() {
        let s = model();
        // Word 0 alone: its own cosines, in float64, itself excluded; the empty word scores 0.
        let alone = most_similar(&s, &[0], &[], 5);
        let ids: Vec<u32> = alone.iter().map(|a| a.0).collect();
        assert_eq!(ids, vec![1, 2, 3]);
        assert!((alone[0].1 - similarity(&s, 0, 1) as f64).abs() < 1e-6);
        assert_eq!(alone[2].1, 0.0);
        // Word 0 minus word 1 (unit {1: 1}): the query is {1: 1/√1.25 - 1, 3: 0.5/√1.25}.
        let (q1, q3) = (1.0 / 1.25f64.sqrt() - 1.0, 0.5 / 1.25f64.sqrt());
        let minus = most_similar(&s, &[0], &[1], 1);
        let expected = q3 / (1.01f64.sqrt() * (q1 * q1 + q3 * q3).sqrt());
        assert_eq!(minus[0].0, 2);
        assert!((minus[0].1 - expected).abs() < 1e-6);
    }
}
