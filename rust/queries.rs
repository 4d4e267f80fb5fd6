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

/// Keeps the `k` best `(score, id)` pairs, best first (ties by id, so results are stable).
fn top_k(mut scored: Vec<(f32, u32)>, k: usize) -> Vec<(u32, f32)> {
    let cmp = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
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
}
