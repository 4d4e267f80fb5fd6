//! Sparse complex spectra in fixed K slots per word (structure of arrays).
//!
//! Two forms: `SharedSpectra` is what training mutates from many threads at once (Hogwild):
//! every slot is an atomic read and written with relaxed ordering, so concurrent updates may
//! interleave (the Hogwild bargain) but there is no undefined behaviour. `Spectra` is the plain,
//! immutable form that queries read, with each word's entries coalesced and sorted by frequency.

use crate::error::{CssError, Result};
use crate::rng::Rng;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Frequency value of an empty slot.
pub const EMPTY: u16 = u16::MAX;
/// Largest supported K: word buffers live on the stack.
pub const MAX_K: usize = 64;

/// One word's entries, copied out of shared storage for an update.
#[derive(Clone, Copy)]
pub struct WordBuf {
    pub len: usize,
    pub freq: [u16; MAX_K],
    pub re: [f32; MAX_K],
    pub im: [f32; MAX_K],
    /// The record's frequency words as loaded: `store_values` checks the support against them.
    pub packed: [u64; MAX_K / 4],
}

impl Default for WordBuf {
    fn default() -> Self {
        WordBuf {
            len: 0,
            freq: [EMPTY; MAX_K],
            re: [0.0; MAX_K],
            im: [0.0; MAX_K],
            packed: [u64::MAX; MAX_K / 4],
        }
    }
}

impl WordBuf {
    /// The entries `(frequency, re, im)`, without a bounds check per entry.
    #[inline]
    pub fn entries(&self) -> impl Iterator<Item = (u16, f32, f32)> + '_ {
        let n = self.len.min(MAX_K);
        self.freq[..n]
            .iter()
            .zip(&self.re[..n])
            .zip(&self.im[..n])
            .map(|((&f, &re), &im)| (f, re, im))
    }

    #[inline]
    pub fn push(&mut self, f: u16, re: f32, im: f32) {
        self.freq[self.len] = f;
        self.re[self.len] = re;
        self.im[self.len] = im;
        self.len += 1;
    }
}

/// How a spectrum is initialised.
#[derive(Debug, Clone, Copy)]
pub struct InitParams {
    pub frequency_dim: usize,
    pub k: usize,
    pub min_init: usize,
    pub amp_min: f32,
    pub amp_max: f32,
    pub use_phases: bool,
}

/// Shared, trainable spectra. Each word is one contiguous record of `u64` atomics, so that an
/// update touches two cache lines rather than one per array (training is memory-bound):
///
/// `[ frequencies, 4 x u16 per u64 (EMPTY-padded) | K complex slots (re bits low, im bits
/// high) | update counter | padding ]`
///
/// Records start on a cache line and are padded to whole lines, so two words never share a
/// line: ids go by frequency, so the records of the most frequent words, which every thread
/// updates, are neighbours, and with 88-byte records (K = 8) their shared lines went back and
/// forth between the cores (measured: 2 threads 7% faster padded).
pub struct SharedSpectra {
    k: usize,
    freq_words: usize,
    /// Words of the records, a whole number of cache lines.
    stride: usize,
    /// Where the first record starts in `data`: the first cache-line boundary.
    offset: usize,
    vocab_size: usize,
    data: Vec<AtomicU64>,
}

const WORDS_PER_LINE: usize = 8;

#[inline]
fn pack_complex(re: f32, im: f32) -> u64 {
    re.to_bits() as u64 | ((im.to_bits() as u64) << 32)
}

#[inline]
fn unpack_complex(x: u64) -> (f32, f32) {
    (f32::from_bits(x as u32), f32::from_bits((x >> 32) as u32))
}

/// Bit i set when 16-bit lane i of `packed` is not EMPTY (lanes past K are EMPTY padding).
/// Branch-free: a lane of `!packed` is non-zero exactly when the lane is not EMPTY; adding
/// 0x7FFF to its low 15 bits carries into bit 15 unless they are zero, the OR adds bit 15
/// itself, and a multiply gathers the four lane flags into the top nibble (every partial
/// product lands on its own bit, so nothing carries into it).
#[inline]
fn nonempty_lanes(packed: u64) -> u64 {
    const LOW15: u64 = 0x7FFF_7FFF_7FFF_7FFF;
    let x = !packed;
    let flags = (((x & LOW15) + LOW15) | x) & !LOW15;
    const GATHER: u64 = (1 << 48) | (1 << 33) | (1 << 18) | (1 << 3);
    ((flags >> 15).wrapping_mul(GATHER) >> 48) & 0xF
}

/// Bit j set when slot j of a record with these frequency words is not EMPTY.
#[inline]
fn nonempty_slots(freq_words: &[u64]) -> u64 {
    freq_words
        .iter()
        .enumerate()
        .fold(0, |m, (q, &packed)| m | nonempty_lanes(packed) << (4 * q))
}

/// Whether the non-empty slots are exactly the first ones (what `store_entries` writes).
#[inline]
fn is_compact(nonempty: u64) -> bool {
    nonempty & nonempty.wrapping_add(1) == 0
}

/// Moves the non-empty slots of a buffer loaded slot for slot (holes included) to the front.
#[cold]
fn compact(buf: &mut WordBuf, k: usize) {
    let mut len = 0;
    for j in 0..k.min(MAX_K) {
        if buf.freq[j] != EMPTY {
            buf.freq[len] = buf.freq[j];
            buf.re[len] = buf.re[j];
            buf.im[len] = buf.im[j];
            len += 1;
        }
    }
    buf.len = len;
}

impl SharedSpectra {
    /// Random initial spectra: each word gets a random count in `[min_init, K]` of distinct
    /// random frequencies, amplitudes uniform in `[amp_min, amp_max]`, phases uniform.
    pub fn random(vocab_size: usize, p: &InitParams, seed: u64) -> Self {
        let k = p.k;
        let s = SharedSpectra::empty(vocab_size, k);
        let mut rng = Rng::derive(seed, 0x1A17);
        for w in 0..vocab_size {
            let mut buf = WordBuf::default();
            let n = if p.min_init >= k {
                k
            } else {
                p.min_init + rng.below(k - p.min_init + 1)
            };
            while buf.len < n {
                let f = rng.below(p.frequency_dim) as u16;
                if buf.freq[..buf.len].contains(&f) {
                    continue;
                }
                let amp = p.amp_min + (p.amp_max - p.amp_min) * rng.next_f32();
                let phase = if p.use_phases {
                    (rng.next_f32() * 2.0 - 1.0) * std::f32::consts::PI
                } else {
                    0.0
                };
                buf.push(f, amp * phase.cos(), amp * phase.sin());
            }
            s.store(w, &buf);
        }
        s
    }

    pub fn empty(vocab_size: usize, k: usize) -> Self {
        let freq_words = k.div_ceil(4);
        let stride = (freq_words + k + 1).div_ceil(WORDS_PER_LINE) * WORDS_PER_LINE;
        // One line more than the records need, to start them on a line boundary. The vector
        // never grows, so the boundary stays where it is.
        let data: Vec<AtomicU64> = (0..vocab_size * stride + WORDS_PER_LINE)
            .map(|_| AtomicU64::new(0))
            .collect();
        let line = WORDS_PER_LINE * std::mem::size_of::<AtomicU64>();
        let offset = (line - data.as_ptr() as usize % line) % line / std::mem::size_of::<u64>();
        for w in 0..vocab_size {
            for f in &data[offset + w * stride..][..freq_words] {
                f.store(u64::MAX, Relaxed); // all slots empty
            }
        }
        SharedSpectra {
            k,
            freq_words,
            stride,
            offset,
            vocab_size,
            data,
        }
    }

    /// Rebuilds shared storage from raw slot arrays (a checkpoint): per slot the frequency and
    /// the bit patterns of re and im, plus each word's update counter.
    pub fn from_raw(
        k: usize,
        freq: &[u16],
        re_bits: &[u32],
        im_bits: &[u32],
        counters: &[u32],
    ) -> Self {
        let v = counters.len();
        let s = SharedSpectra::empty(v, k);
        for w in 0..v {
            let base = s.base(w);
            for (j, chunk) in freq[w * k..(w + 1) * k].chunks(4).enumerate() {
                let mut packed = u64::MAX;
                for (i, &f) in chunk.iter().enumerate() {
                    packed = (packed & !(0xFFFF << (16 * i))) | ((f as u64) << (16 * i));
                }
                s.data[base + j].store(packed, Relaxed);
            }
            for j in 0..k {
                let x = re_bits[w * k + j] as u64 | ((im_bits[w * k + j] as u64) << 32);
                s.data[base + s.freq_words + j].store(x, Relaxed);
            }
            s.counter(w).store(counters[w] as u64, Relaxed);
        }
        s
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Asks the CPU to start fetching word `w`'s record into cache. Training knows which words
    /// it will touch next (the document's words, the next negatives) and the vocabulary rarely
    /// fits in L2, so overlapping those fetches with work saves most of the wait. No effect on
    /// results.
    #[inline]
    pub fn prefetch(&self, w: usize) {
        #[cfg(target_arch = "x86_64")]
        if let Some(first) = self.data.get(self.base(w)) {
            use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let p = first as *const AtomicU64 as *const i8;
            // SAFETY: a prefetch is a cache hint: it reads nothing in Rust's memory model and
            // cannot fault, and `p` (and the next line, still inside or just past this record)
            // is only an address. SSE is part of the x86_64 baseline.
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(p);
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(64));
            }
        }
    }

    /// Where word `w`'s record starts in `data`.
    #[inline]
    fn base(&self, w: usize) -> usize {
        self.offset + w * self.stride
    }

    /// Word `w`'s update counter (used to schedule refinement pruning).
    #[inline]
    pub fn counter(&self, w: usize) -> &AtomicU64 {
        &self.data[self.base(w) + self.freq_words + self.k]
    }

    #[inline]
    fn slot_freq(&self, base: usize, j: usize) -> u16 {
        (self.data[base + j / 4].load(Relaxed) >> (16 * (j % 4))) as u16
    }

    /// Word `w`'s record, split into its frequency words, its K value slots and its counter.
    /// (Slicing once lets the loops below run without a bounds check per slot.)
    #[inline]
    fn record(&self, w: usize) -> (&[AtomicU64], &[AtomicU64], &AtomicU64) {
        let b = self.base(w);
        let rec = &self.data[b..b + self.freq_words + self.k + 1];
        let (freqs, rest) = rec.split_at(self.freq_words);
        let (values, counter) = rest.split_at(self.k);
        (freqs, values, &counter[0])
    }

    /// Copies word `w`'s non-empty slots into `buf`. A record as `store_entries` writes it
    /// (entries first, then empty slots) is copied slot for slot; one that a torn concurrent
    /// write left with a hole is compacted.
    #[inline]
    pub fn load(&self, w: usize, buf: &mut WordBuf) {
        let (freqs, values, _) = self.record(w);
        // The non-empty mask is built from the words as loaded, in registers: reading the
        // copies back (as `nonempty_slots` does) stalled on store forwarding.
        let mut nonempty = 0u64;
        for (q, (packed, copy)) in freqs.iter().zip(&mut buf.packed).enumerate() {
            let packed = packed.load(Relaxed);
            *copy = packed;
            nonempty |= nonempty_lanes(packed) << (4 * q);
            for (i, f) in buf.freq[4 * q..4 * q + 4].iter_mut().enumerate() {
                *f = (packed >> (16 * i)) as u16;
            }
        }
        for ((value, re), im) in values.iter().zip(&mut buf.re).zip(&mut buf.im) {
            (*re, *im) = unpack_complex(value.load(Relaxed));
        }
        // Compact: the non-empty slots are exactly the first `len`.
        buf.len = (!nonempty).trailing_zeros() as usize;
        if !is_compact(nonempty) {
            compact(buf, self.k);
        }
    }

    /// Writes `buf` into word `w`'s slots; the remaining slots become empty.
    #[inline]
    pub fn store(&self, w: usize, buf: &WordBuf) {
        self.store_entries(w, buf.entries());
    }

    /// Writes up to K `(frequency, re, im)` entries into word `w`; remaining slots become empty
    /// (their values are left as they were: an empty slot's value is never read).
    #[inline]
    pub fn store_entries<I: Iterator<Item = (u16, f32, f32)>>(&self, w: usize, entries: I) {
        let (freqs, values, _) = self.record(w);
        // Frequencies are packed four to a word in a register and each word stored once.
        let mut packed = u64::MAX;
        let mut q = 0;
        let mut n = 0;
        for ((f, re, im), value) in entries.zip(values) {
            value.store(pack_complex(re, im), Relaxed);
            let shift = 16 * (n % 4);
            packed = (packed & !(0xFFFF << shift)) | ((f as u64) << shift);
            n += 1;
            if n % 4 == 0 {
                freqs[q].store(packed, Relaxed);
                packed = u64::MAX;
                q += 1;
            }
        }
        if n % 4 != 0 {
            freqs[q].store(packed, Relaxed);
            q += 1;
        }
        for rest in &freqs[q..] {
            rest.store(u64::MAX, Relaxed);
        }
    }

    /// Writes new values for the entries of `loaded` (a `load` of word `w`), in order, if the
    /// word's support is still the one loaded; returns false, writing nothing, if another
    /// thread has changed it since. This is the common refinement step: the support is frozen,
    /// so only values change, and the frequency words need not be packed and written again.
    #[inline]
    pub fn store_values<I: Iterator<Item = (f32, f32)>>(
        &self,
        w: usize,
        loaded: &WordBuf,
        new_values: I,
    ) -> bool {
        let (freqs, values, _) = self.record(w);
        let unchanged = freqs
            .iter()
            .zip(&loaded.packed)
            .all(|(now, &then)| now.load(Relaxed) == then);
        // A compact support (entries first, then empty slots) maps entry j to slot j.
        let compact = is_compact(nonempty_slots(&loaded.packed[..freqs.len()]));
        if !(unchanged && compact) {
            return false;
        }
        for ((re, im), value) in new_values.zip(values) {
            value.store(pack_complex(re, im), Relaxed);
        }
        true
    }

    fn word_freqs(&self, w: usize) -> impl Iterator<Item = u16> + '_ {
        let base = self.base(w);
        (0..self.k).map(move |j| self.slot_freq(base, j))
    }

    /// Active (non-empty) slots over the whole vocabulary.
    pub fn active_slots(&self) -> u64 {
        (0..self.vocab_size())
            .map(|w| self.word_freqs(w).filter(|&f| f != EMPTY).count() as u64)
            .sum()
    }

    /// How many words hold an entry on each of the `frequency_dim` frequencies.
    pub fn frequency_usage(&self, frequency_dim: usize) -> Vec<u64> {
        let mut usage = vec![0u64; frequency_dim];
        for w in 0..self.vocab_size() {
            for f in self.word_freqs(w).filter(|&f| (f as usize) < frequency_dim) {
                usage[f as usize] += 1;
            }
        }
        usage
    }

    /// Words that have lost every entry.
    pub fn empty_words(&self) -> usize {
        (0..self.vocab_size())
            .filter(|&w| self.word_freqs(w).all(|f| f == EMPTY))
            .count()
    }

    /// Raw slot arrays (checkpointing): frequencies, the bit patterns of re and im (slot by
    /// slot, V*K each), and each word's update counter.
    pub fn to_raw(&self) -> (Vec<u16>, Vec<u32>, Vec<u32>, Vec<u32>) {
        let v = self.vocab_size();
        let n = v * self.k;
        let (mut freq, mut re, mut im) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let mut counters = Vec::with_capacity(v);
        for w in 0..v {
            let base = self.base(w);
            for j in 0..self.k {
                freq.push(self.slot_freq(base, j));
                let x = self.data[base + self.freq_words + j].load(Relaxed);
                re.push(x as u32);
                im.push((x >> 32) as u32);
            }
            counters.push(self.counter(w).load(Relaxed) as u32);
        }
        (freq, re, im, counters)
    }

    /// The immutable query form: entries coalesced (a torn concurrent write can duplicate a
    /// frequency; duplicates add up, which is what the sparse vector means) and sorted by
    /// frequency, as amplitude and phase.
    pub fn snapshot(&self, frequency_dim: usize) -> Spectra {
        let v = self.vocab_size();
        let k = self.k;
        let mut out = Spectra::empty(v, k, frequency_dim);
        let mut buf = WordBuf::default();
        for w in 0..v {
            self.load(w, &mut buf);
            let mut entries: Vec<(u16, f32, f32)> = Vec::with_capacity(buf.len);
            for j in 0..buf.len {
                match entries.iter_mut().find(|e| e.0 == buf.freq[j]) {
                    Some(e) => {
                        e.1 += buf.re[j];
                        e.2 += buf.im[j];
                    }
                    None => entries.push((buf.freq[j], buf.re[j], buf.im[j])),
                }
            }
            entries.sort_unstable_by_key(|e| e.0);
            let mut slot = w * k;
            for (f, re, im) in entries {
                let amp = re.hypot(im);
                if amp > 0.0 && amp.is_finite() {
                    out.freq[slot] = f;
                    out.amp[slot] = amp;
                    out.phase[slot] = im.atan2(re);
                    slot += 1;
                }
            }
        }
        out.refresh_complex();
        out
    }
}

/// Immutable spectra for queries: per word K slots sorted by frequency, empty slots last.
/// Amplitude and phase are the canonical values (what the model file stores, exactly); the
/// complex form is derived from them.
#[derive(Debug, Clone, PartialEq)]
pub struct Spectra {
    pub vocab_size: usize,
    pub k: usize,
    pub frequency_dim: usize,
    pub freq: Vec<u16>,
    pub amp: Vec<f32>,
    pub phase: Vec<f32>,
    pub re: Vec<f32>,
    pub im: Vec<f32>,
    /// Euclidean norm of each word's spectrum.
    pub norm: Vec<f32>,
}

impl Spectra {
    pub fn empty(vocab_size: usize, k: usize, frequency_dim: usize) -> Self {
        let n = vocab_size * k;
        Spectra {
            vocab_size,
            k,
            frequency_dim,
            freq: vec![EMPTY; n],
            amp: vec![0.0; n],
            phase: vec![0.0; n],
            re: vec![0.0; n],
            im: vec![0.0; n],
            norm: vec![0.0; vocab_size],
        }
    }

    /// Builds from per-slot arrays (a loaded model), validating every value and canonicalising
    /// each word (sorted by frequency, empty slots last).
    pub fn from_slots(
        k: usize,
        frequency_dim: usize,
        freq: Vec<u16>,
        amp: Vec<f32>,
        phase: Vec<f32>,
    ) -> Result<Self> {
        if k == 0 || freq.len() % k != 0 || amp.len() != freq.len() || phase.len() != freq.len() {
            return Err(CssError::InvalidData(format!(
                "spectra arrays do not fit K = {k}: {} frequencies, {} amplitudes, {} phases",
                freq.len(),
                amp.len(),
                phase.len()
            )));
        }
        let v = freq.len() / k;
        let mut s = Spectra::empty(v, k, frequency_dim);
        for w in 0..v {
            let mut entries: Vec<(u16, f32, f32)> = Vec::with_capacity(k);
            for j in w * k..(w + 1) * k {
                if freq[j] == EMPTY {
                    continue;
                }
                if freq[j] as usize >= frequency_dim {
                    return Err(CssError::InvalidData(format!(
                        "word {w}: frequency {} is outside 0..{frequency_dim}",
                        freq[j]
                    )));
                }
                if !amp[j].is_finite() || amp[j] < 0.0 || !phase[j].is_finite() {
                    return Err(CssError::InvalidData(format!(
                        "word {w}: amplitude {} / phase {} is not a finite value (amplitude >= 0)",
                        amp[j], phase[j]
                    )));
                }
                if entries.iter().any(|e| e.0 == freq[j]) {
                    return Err(CssError::InvalidData(format!(
                        "word {w}: frequency {} appears twice",
                        freq[j]
                    )));
                }
                entries.push((freq[j], amp[j], phase[j]));
            }
            entries.sort_unstable_by_key(|e| e.0);
            for (i, (f, a, p)) in entries.into_iter().enumerate() {
                let slot = w * k + i;
                s.freq[slot] = f;
                s.amp[slot] = a;
                s.phase[slot] = p;
            }
        }
        s.refresh_complex();
        Ok(s)
    }

    fn refresh_complex(&mut self) {
        for i in 0..self.freq.len() {
            let (sin, cos) = self.phase[i].sin_cos();
            self.re[i] = self.amp[i] * cos;
            self.im[i] = self.amp[i] * sin;
        }
        for w in 0..self.vocab_size {
            let r = w * self.k..(w + 1) * self.k;
            let sq: f64 = self.amp[r].iter().map(|&a| (a as f64) * (a as f64)).sum();
            self.norm[w] = sq.sqrt() as f32;
        }
    }

    #[inline]
    pub fn slots(&self, w: usize) -> std::ops::Range<usize> {
        w * self.k..(w + 1) * self.k
    }

    /// Number of active entries of word `w`.
    pub fn active(&self, w: usize) -> usize {
        self.freq[self.slots(w)]
            .iter()
            .take_while(|&&f| f != EMPTY)
            .count()
    }

    pub fn total_active(&self) -> usize {
        (0..self.vocab_size).map(|w| self.active(w)).sum()
    }

    /// Back to shared (trainable) storage, e.g. to continue training a loaded model.
    pub fn to_shared(&self) -> SharedSpectra {
        let re: Vec<u32> = self.re.iter().map(|x| x.to_bits()).collect();
        let im: Vec<u32> = self.im.iter().map(|x| x.to_bits()).collect();
        SharedSpectra::from_raw(self.k, &self.freq, &re, &im, &vec![0; self.vocab_size])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_start_on_cache_lines_and_fill_whole_lines() {
        for k in [1, 4, 8, 13, 16, 64] {
            let s = SharedSpectra::empty(100, k);
            assert_eq!(s.stride % WORDS_PER_LINE, 0, "K = {k}");
            assert!(
                s.stride > s.freq_words + k,
                "the record and its counter fit"
            );
            for w in [0, 1, 2, 57, 99] {
                let start = &s.data[s.base(w)] as *const AtomicU64 as usize;
                assert_eq!(start % 64, 0, "K = {k}, word {w}");
            }
            assert!(s.base(99) + s.stride <= s.data.len());
        }
    }

    #[test]
    fn nonempty_lanes_flags_exactly_the_non_empty_lanes() {
        let values = [0u16, 1, 0x7FFF, 0x8000, 0xFFFE, EMPTY];
        for a in values {
            for b in values {
                for c in values {
                    for d in values {
                        let packed =
                            a as u64 | (b as u64) << 16 | (c as u64) << 32 | (d as u64) << 48;
                        let want = [a, b, c, d]
                            .iter()
                            .enumerate()
                            .fold(0, |m, (i, &f)| m | ((f != EMPTY) as u64) << i);
                        assert_eq!(nonempty_lanes(packed), want, "{packed:#x}");
                    }
                }
            }
        }
    }

    #[test]
    fn load_compacts_a_record_with_holes() {
        // Slots: 3, hole, 7, hole, hole, 9 (K = 6), as a torn concurrent write can leave.
        let freq = [3, EMPTY, 7, EMPTY, EMPTY, 9];
        let re: Vec<u32> = (1..=6).map(|i| (i as f32).to_bits()).collect();
        let im: Vec<u32> = (1..=6).map(|i| (-(i as f32)).to_bits()).collect();
        let s = SharedSpectra::from_raw(6, &freq, &re, &im, &[0]);
        let mut buf = WordBuf::default();
        s.load(0, &mut buf);
        let got: Vec<_> = buf.entries().collect();
        assert_eq!(got, vec![(3, 1.0, -1.0), (7, 3.0, -3.0), (9, 6.0, -6.0)]);
        // A compact record is copied as is.
        let freq = [3, 7, 9, EMPTY, EMPTY, EMPTY];
        let s = SharedSpectra::from_raw(6, &freq, &re, &im, &[0]);
        s.load(0, &mut buf);
        let got: Vec<_> = buf.entries().collect();
        assert_eq!(got, vec![(3, 1.0, -1.0), (7, 2.0, -2.0), (9, 3.0, -3.0)]);
    }

    fn params() -> InitParams {
        InitParams {
            frequency_dim: 50,
            k: 6,
            min_init: 6,
            amp_min: 0.001,
            amp_max: 0.01,
            use_phases: true,
        }
    }

    #[test]
    fn random_init_has_k_distinct_frequencies_in_range() {
        let s = SharedSpectra::random(100, &params(), 3);
        let snap = s.snapshot(50);
        for w in 0..100 {
            assert_eq!(snap.active(w), 6);
            let fr = &snap.freq[snap.slots(w)];
            assert!(fr.windows(2).all(|p| p[0] < p[1]));
            for j in snap.slots(w) {
                assert!((0.001..=0.01).contains(&snap.amp[j]));
            }
        }
    }

    #[test]
    fn raw_round_trip_is_exact() {
        let s = SharedSpectra::random(20, &params(), 9);
        s.counter(3).store(17, Relaxed);
        let (f, r, i, c) = s.to_raw();
        assert_eq!(c[3], 17);
        let back = SharedSpectra::from_raw(6, &f, &r, &i, &c);
        assert_eq!(back.to_raw(), (f, r, i, c));
    }

    #[test]
    fn store_and_load_any_k() {
        for k in [1, 3, 4, 5, 8, 9, 64] {
            let s = SharedSpectra::empty(3, k);
            let mut buf = WordBuf::default();
            for j in 0..k.min(5) {
                buf.push(j as u16 * 3, j as f32, -(j as f32));
            }
            s.store(1, &buf);
            let mut back = WordBuf::default();
            s.load(1, &mut back);
            assert_eq!(back.len, buf.len);
            assert_eq!(back.freq[..back.len], buf.freq[..buf.len]);
            assert_eq!(back.im[..back.len], buf.im[..buf.len]);
            s.load(0, &mut back);
            assert_eq!(back.len, 0);
            assert_eq!(s.active_slots(), k.min(5) as u64);
            assert_eq!(s.empty_words(), 2);
        }
    }

    #[test]
    fn store_values_writes_only_over_the_support_it_loaded() {
        let s = SharedSpectra::random(3, &params(), 5);
        let mut loaded = WordBuf::default();
        s.load(1, &mut loaded);
        let doubled = |b: &WordBuf| -> Vec<(f32, f32)> {
            b.entries()
                .map(|(_, re, im)| (2.0 * re, 2.0 * im))
                .collect()
        };
        assert!(s.store_values(1, &loaded, doubled(&loaded).into_iter()));
        let mut back = WordBuf::default();
        s.load(1, &mut back);
        assert_eq!(back.freq[..back.len], loaded.freq[..loaded.len]);
        assert_eq!(back.re[0], 2.0 * loaded.re[0]);

        // Another writer changed the support since `loaded`: nothing is written.
        let mut moved = back;
        moved.freq[0] = 49 - moved.freq[0].min(49);
        s.store(1, &moved);
        let before = s.to_raw();
        assert!(!s.store_values(1, &loaded, doubled(&loaded).into_iter()));
        assert_eq!(s.to_raw(), before);

        // A support with a hole (a torn write) does not map entry j to slot j: refused.
        let (mut f, r, i, c) = s.to_raw();
        f[6 * 2 + 1] = EMPTY;
        let holed = SharedSpectra::from_raw(6, &f, &r, &i, &c);
        holed.load(2, &mut loaded);
        assert_eq!(loaded.len, 5);
        assert!(!holed.store_values(2, &loaded, doubled(&loaded).into_iter()));
        assert_eq!(holed.to_raw(), (f, r, i, c));
    }

    #[test]
    fn from_slots_validates() {
        let bad = Spectra::from_slots(2, 10, vec![3, 11], vec![1.0, 1.0], vec![0.0, 0.0]);
        assert!(matches!(bad, Err(CssError::InvalidData(_))));
        let dup = Spectra::from_slots(2, 10, vec![3, 3], vec![1.0, 1.0], vec![0.0, 0.0]);
        assert!(dup.is_err());
        let nan = Spectra::from_slots(2, 10, vec![3, 4], vec![f32::NAN, 1.0], vec![0.0, 0.0]);
        assert!(nan.is_err());
        let ok = Spectra::from_slots(2, 10, vec![7, 3], vec![1.0, 2.0], vec![0.0, 0.5]).unwrap();
        assert_eq!(ok.freq, vec![3, 7]);
        assert_eq!(ok.amp, vec![2.0, 1.0]);
    }
}

/// How the vocabulary's entries spread over the frequencies: what tells a sparse spectral
/// model from a dense embedding in disguise (every word on the same few frequencies).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UsageStats {
    /// Frequencies that hold at least one entry.
    pub in_use: usize,
    /// `exp` of the entropy of the frequencies' shares of all entries: D when usage is even,
    /// about K when every word sits on the same K frequencies.
    pub effective: f64,
    /// The largest fraction of the vocabulary holding an entry on one frequency.
    pub largest_share: f64,
    /// Frequencies held by more than `CROWDED_SHARE` of the vocabulary.
    pub crowded: usize,
}

/// The vocabulary share above which a frequency counts as crowded (a background shared by
/// most words rather than a semantic mode).
pub const CROWDED_SHARE: f64 = 0.15;

impl UsageStats {
    /// From the words per frequency (`frequency_usage`) of a vocabulary of `vocab_size` words.
    pub fn from_usage(usage: &[u64], vocab_size: usize) -> Self {
        let total: u64 = usage.iter().sum();
        let v = vocab_size.max(1) as f64;
        let entropy: f64 = usage
            .iter()
            .filter(|&&u| u > 0)
            .map(|&u| {
                let p = u as f64 / total as f64;
                -p * p.ln()
            })
            .sum();
        UsageStats {
            in_use: usage.iter().filter(|&&u| u > 0).count(),
            effective: if total > 0 { entropy.exp() } else { 0.0 },
            largest_share: usage.iter().max().map_or(0.0, |&m| m as f64 / v),
            crowded: usage
                .iter()
                .filter(|&&u| u as f64 > CROWDED_SHARE * v)
                .count(),
        }
    }
}

#[cfg(test)]
mod usage_tests {
    use super::*;

    #[test]
    fn usage_stats_tell_even_from_collapsed() {
        // Even: 4 frequencies, 10 words each, of 20 words.
        let even = UsageStats::from_usage(&[10, 10, 10, 10], 20);
        assert_eq!(even.in_use, 4);
        assert!((even.effective - 4.0).abs() < 1e-9);
        assert!((even.largest_share - 0.5).abs() < 1e-12);
        assert_eq!(even.crowded, 4);
        // Collapsed: one frequency holds everything.
        let collapsed = UsageStats::from_usage(&[0, 100, 0, 0, 1], 100);
        assert_eq!(collapsed.in_use, 2);
        assert!(collapsed.effective < 1.1 && collapsed.effective > 1.0);
        assert_eq!(collapsed.largest_share, 1.0);
        assert_eq!(collapsed.crowded, 1);
        let empty = UsageStats::from_usage(&[0, 0], 5);
        assert_eq!((empty.in_use, empty.effective, empty.crowded), (0, 0.0, 0));
    }
}
