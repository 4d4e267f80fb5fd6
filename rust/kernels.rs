//! The inner loop's data and arithmetic per word: the sparse accumulators of the context and
//! error spectra, the candidates of a projected step, and the three computations over a
//! word's slots or a touched list (score, step, new candidates), in two forms with the same
//! results bit for bit: plain Rust, and AVX2 (eight entries per instruction, accumulator
//! values read with gathers) chosen at run time when the CPU has it.
//!
//! Bit-identical means the same operations in the same order: products and sums are formed
//! lane by lane exactly as the scalar code forms them (a multiply, then an add; no fused
//! multiply-add), and the dot product's lanes are summed one after the other, in slot order.
//! So a model does not depend on which machine trained it, and a test can hold the two forms
//! to each other.

use crate::error::{CssError, Result};
use crate::spectra::{WordBuf, MAX_K};

/// Size of the frequency axis of a dense accumulator: every `u16` is a valid index, so no
/// read or gather can go out of bounds whatever a slot holds (only `0..D` is ever touched;
/// the rest stays unmapped zero pages).
pub const FREQ_SPACE: usize = 1 << 16;

/// A sparse complex vector over `0..D`: dense value arrays that are zero outside the touched
/// frequencies, plus their list, so reads are plain loads and clearing zeroes only what was
/// touched. Whether a frequency is already listed is a generation stamp, and the list is a
/// fixed array: adding takes no branch (first touches are data-dependent, so a branch on them
/// is mispredicted often).
pub struct SparseAcc {
    re: Box<[f32; FREQ_SPACE]>,
    im: Box<[f32; FREQ_SPACE]>,
    stamp: Box<[u32; FREQ_SPACE]>,
    generation: u32,
    listed: Box<[u16; FREQ_SPACE]>,
    len: usize,
}

fn zeroed<T: Copy>(zero: T) -> Box<[T; FREQ_SPACE]> {
    vec![zero; FREQ_SPACE]
        .into_boxed_slice()
        .try_into()
        .unwrap_or_else(|_| unreachable!("the vector has FREQ_SPACE elements"))
}

impl Default for SparseAcc {
    fn default() -> Self {
        SparseAcc {
            re: zeroed(0.0),
            im: zeroed(0.0),
            stamp: zeroed(0),
            generation: 1,
            listed: zeroed(0),
            len: 0,
        }
    }
}

impl SparseAcc {
    /// The touched frequencies, in the order first touched.
    #[inline]
    pub fn touched(&self) -> &[u16] {
        &self.listed[..self.len]
    }

    /// Eight consecutive entries of the touched list from `j` (past its end: stale values).
    #[inline]
    pub fn listed_chunk(&self, j: usize) -> &[u16; 8] {
        self.listed[j..j + 8].try_into().expect("8 entries")
    }

    pub fn clear(&mut self) {
        for &f in &self.listed[..self.len] {
            self.re[f as usize] = 0.0;
            self.im[f as usize] = 0.0;
        }
        self.len = 0;
        if self.generation == u32::MAX {
            self.stamp.fill(0);
            self.generation = 0;
        }
        self.generation += 1;
    }

    #[inline]
    pub fn get(&self, f: u16) -> (f32, f32) {
        (self.re[f as usize], self.im[f as usize])
    }

    pub fn scale(&mut self, s: f32) {
        for &f in &self.listed[..self.len] {
            self.re[f as usize] *= s;
            self.im[f as usize] *= s;
        }
    }

    pub fn add_word(&mut self, w: &WordBuf, s: f32) {
        let SparseAcc {
            re,
            im,
            stamp,
            generation,
            listed,
            len,
        } = self;
        *len = accumulate(re, im, stamp, listed, *generation, *len, w, s);
    }
}

/// Adds every entry of `w`, scaled by `s`, listing the frequencies touched for the first time;
/// returns the new list length. The arrays come in as separate arguments so the compiler knows
/// they do not alias and keeps the length and the array addresses in registers across the
/// stores.
#[allow(clippy::too_many_arguments)]
#[inline]
fn accumulate(
    re: &mut [f32; FREQ_SPACE],
    im: &mut [f32; FREQ_SPACE],
    stamp: &mut [u32; FREQ_SPACE],
    listed: &mut [u16; FREQ_SPACE],
    generation: u32,
    mut len: usize,
    w: &WordBuf,
    s: f32,
) -> usize {
    for (f, wr, wi) in w.entries() {
        let i = f as usize;
        let first = stamp[i] != generation;
        stamp[i] = generation;
        listed[len % FREQ_SPACE] = f;
        len += first as usize;
        re[i] += s * wr;
        im[i] += s * wi;
    }
    len
}

/// The new values of one projected step restricted to a word's own slots:
/// `re[j] = w.re[j] + scale * x.re[f_j]` (and im), with `mag2[j] = re² + im²`.
pub struct Step {
    pub re: [f32; MAX_K],
    pub im: [f32; MAX_K],
    pub mag2: [f32; MAX_K],
}

impl Default for Step {
    fn default() -> Self {
        Step {
            re: [0.0; MAX_K],
            im: [0.0; MAX_K],
            mag2: [0.0; MAX_K],
        }
    }
}

/// One candidate entry of a projected update.
#[derive(Clone, Copy, Default, Debug, PartialEq)]
pub struct Cand {
    pub f: u16,
    pub re: f32,
    pub im: f32,
    pub mag2: f32,
}

impl Cand {
    #[inline]
    pub fn scale(&mut self, factor: f32) {
        self.re *= factor;
        self.im *= factor;
        self.mag2 = self.re * self.re + self.im * self.im;
    }
}

/// The frequencies a word's candidate list already holds, as generation stamps over the
/// frequency axis (starting a new list is one increment, not a clear).
pub struct Members {
    stamp: Box<[u32; FREQ_SPACE]>,
    generation: u32,
}

impl Default for Members {
    /// The empty set.
    fn default() -> Self {
        Members {
            stamp: zeroed(0),
            generation: 1,
        }
    }
}

impl Members {
    /// Empties the set.
    #[inline]
    pub fn restart(&mut self) {
        if self.generation == u32::MAX {
            self.stamp.fill(0);
            self.generation = 0;
        }
        self.generation += 1;
    }

    #[inline]
    pub fn insert(&mut self, f: u16) {
        self.stamp[f as usize] = self.generation;
    }

    #[inline]
    pub fn contains(&self, f: u16) -> bool {
        self.stamp[f as usize] == self.generation
    }
}

/// Words with at most this many entries take the scalar step and score even on AVX2: they
/// read accumulator values written a moment before, and measured on gcide the gathers were
/// ~5% slower than the scalar loop at K = 8 and ~9% faster at K = 16. (The new candidates
/// of an exploration step scan the whole touched list, ~40 entries, and always gather.)
pub const GATHER_ABOVE: usize = 8;

/// Which form of the kernels this CPU runs. The form is private: an `Isa` that says AVX2
/// exists only where `detect` found it, so calling the kernels is safe from any code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Isa(Form);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Form {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

impl Isa {
    /// The plain-Rust form, on any CPU.
    pub const SCALAR: Isa = Isa(Form::Scalar);

    /// The fastest form this CPU supports.
    pub fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            return Isa(Form::Avx2);
        }
        Isa::SCALAR
    }

    /// What the environment variable `CSS_RS_KERNELS` asks for: `auto` (or unset, or empty)
    /// is `detect`, `scalar` rules the SIMD form out (for comparing the two, or when chasing a
    /// problem); anything else is an error that names the variable.
    pub fn from_env() -> Result<Isa> {
        match std::env::var("CSS_RS_KERNELS") {
            Err(_) => Ok(Isa::detect()),
            Ok(v) if v.is_empty() || v.eq_ignore_ascii_case("auto") => Ok(Isa::detect()),
            Ok(v) if v.eq_ignore_ascii_case("scalar") => Ok(Isa::SCALAR),
            Ok(v) => Err(CssError::invalid(
                "CSS_RS_KERNELS",
                format!("{v:?}"),
                "must be \"auto\" or \"scalar\"",
            )),
        }
    }

    /// Its name, as `css-rs --version` and the benchmarks print it.
    pub fn name(self) -> &'static str {
        match self.0 {
            Form::Scalar => "scalar",
            #[cfg(target_arch = "x86_64")]
            Form::Avx2 => "avx2",
        }
    }

    /// `Re<w, x>`: the sum over w's entries, in slot order, of `w.re*x.re + w.im*x.im`.
    #[inline]
    pub fn dot(self, w: &WordBuf, x: &SparseAcc) -> f32 {
        match self.0 {
            // SAFETY: `Form::Avx2` is only constructed by `detect`, when the CPU has AVX2.
            #[cfg(target_arch = "x86_64")]
            Form::Avx2 if w.len > GATHER_ABOVE => unsafe { avx2::dot(w, x) },
            _ => dot_scalar(w, x),
        }
    }

    /// Fills `out` with the step `w + scale * x` on w's slots and returns whether every new
    /// value's squared magnitude lies in `(floor2, limit2]` (false for NaN).
    #[inline]
    pub fn step(
        self,
        w: &WordBuf,
        x: &SparseAcc,
        scale: f32,
        floor2: f32,
        limit2: f32,
        out: &mut Step,
    ) -> bool {
        match self.0 {
            // SAFETY: as in `dot`.
            #[cfg(target_arch = "x86_64")]
            Form::Avx2 if w.len > GATHER_ABOVE => unsafe {
                avx2::step(w, x, scale, floor2, limit2, out)
            },
            _ => step_scalar(w, x, scale, floor2, limit2, out),
        }
    }

    /// Appends to `out`, in the order of `x.touched()`, a candidate `scale * x[f]` for every
    /// touched frequency `f` not in `own` whose squared magnitude exceeds `bar`.
    #[inline]
    pub fn new_candidates(
        self,
        x: &SparseAcc,
        scale: f32,
        bar: f32,
        own: &Members,
        out: &mut Vec<Cand>,
    ) {
        match self.0 {
            Form::Scalar => new_candidates_scalar(x, x.touched(), scale, bar, own, out),
            // SAFETY: as in `dot`.
            #[cfg(target_arch = "x86_64")]
            Form::Avx2 => unsafe { avx2::new_candidates(x, scale, bar, own, out) },
        }
    }
}

/// Every candidate is written and the count advances only for those that qualify: whether a
/// step clears the bar is data-dependent, and a branch on it is mispredicted often.
fn new_candidates_scalar(
    x: &SparseAcc,
    freqs: &[u16],
    scale: f32,
    bar: f32,
    own: &Members,
    out: &mut Vec<Cand>,
) {
    let mut n = out.len();
    out.resize(n + freqs.len(), Cand::default());
    for &f in freqs {
        let (xr, xi) = x.get(f);
        let (re, im) = (scale * xr, scale * xi);
        let mag2 = re * re + im * im;
        out[n] = Cand { f, re, im, mag2 };
        n += (!own.contains(f) && mag2 > bar) as usize;
    }
    out.truncate(n);
}

fn dot_scalar(w: &WordBuf, x: &SparseAcc) -> f32 {
    let mut s = 0.0;
    for (f, wr, wi) in w.entries() {
        let (re, im) = x.get(f);
        s += wr * re + wi * im;
    }
    s
}

fn step_scalar(
    w: &WordBuf,
    x: &SparseAcc,
    scale: f32,
    floor2: f32,
    limit2: f32,
    out: &mut Step,
) -> bool {
    let mut inside = true;
    for (j, (f, cr, ci)) in w.entries().enumerate() {
        let (xr, xi) = x.get(f);
        let (re, im) = (cr + scale * xr, ci + scale * xi);
        let mag2 = re * re + im * im;
        out.re[j] = re;
        out.im[j] = im;
        out.mag2[j] = mag2;
        // `<=` is false for NaN.
        inside &= mag2 > floor2 && mag2 <= limit2;
    }
    inside
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Cand, Members, SparseAcc, Step, WordBuf, FREQ_SPACE, MAX_K};
    use core::arch::x86_64::*;

    /// The eight frequencies of slots `j..j+8` as gather indices. Slots past the word's
    /// length hold stale frequencies or EMPTY: still `u16`, so still inside FREQ_SPACE.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn indices(w: &WordBuf, j: usize) -> __m256i {
        let freqs: &[u16; 8] = w.freq[j..j + 8].try_into().expect("8 slots");
        // SAFETY: an unaligned 16-byte read of an array of exactly 16 bytes.
        let packed = unsafe { _mm_loadu_si128(freqs.as_ptr().cast()) };
        _mm256_cvtepu16_epi32(packed)
    }

    /// `x.re[f]` and `x.im[f]` for the eight indices.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn gather(x: &SparseAcc, idx: __m256i) -> (__m256, __m256) {
        const _: () = assert!(FREQ_SPACE == 1 << 16);
        // SAFETY: every index is a zero-extended u16, below FREQ_SPACE, the arrays' length.
        unsafe {
            (
                _mm256_i32gather_ps::<4>(x.re.as_ptr(), idx),
                _mm256_i32gather_ps::<4>(x.im.as_ptr(), idx),
            )
        }
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn load8(a: &[f32; MAX_K], j: usize) -> __m256 {
        let s: &[f32; 8] = a[j..j + 8].try_into().expect("8 slots");
        // SAFETY: an unaligned 32-byte read of an array of exactly 32 bytes.
        unsafe { _mm256_loadu_ps(s.as_ptr()) }
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn store8<const N: usize>(a: &mut [f32; N], j: usize, v: __m256) {
        let s: &mut [f32; 8] = (&mut a[j..j + 8]).try_into().expect("8 slots");
        // SAFETY: an unaligned 32-byte write of an array of exactly 32 bytes.
        unsafe { _mm256_storeu_ps(s.as_mut_ptr(), v) }
    }

    /// Chunks of eight slots covering the word's `len` entries (MAX_K is a multiple of 8,
    /// so the last chunk stays inside the arrays).
    #[inline]
    fn chunks(len: usize) -> impl Iterator<Item = usize> {
        const _: () = assert!(MAX_K % 8 == 0);
        (0..len.min(MAX_K)).step_by(8)
    }

    #[target_feature(enable = "avx2")]
    pub fn new_candidates(x: &SparseAcc, scale: f32, bar: f32, own: &Members, out: &mut Vec<Cand>) {
        let len = x.touched().len();
        let (scale_v, bar_v) = (_mm256_set1_ps(scale), _mm256_set1_ps(bar));
        let generation = _mm256_set1_epi32(own.generation as i32);
        let (mut re, mut im, mut mag2) = ([0.0f32; 8], [0.0f32; 8], [0.0f32; 8]);
        let mut j = 0;
        // The last chunk reads past the listed frequencies (stale u16 values, inside the
        // list's FREQ_SPACE slots) and masks those lanes out.
        while j < len && j + 8 <= FREQ_SPACE {
            let freqs = x.listed_chunk(j);
            // SAFETY: an unaligned 16-byte read of an array of exactly 16 bytes.
            let idx = _mm256_cvtepu16_epi32(unsafe { _mm_loadu_si128(freqs.as_ptr().cast()) });
            let (xr, xi) = gather(x, idx);
            let r = _mm256_mul_ps(scale_v, xr);
            let i = _mm256_mul_ps(scale_v, xi);
            let m = _mm256_add_ps(_mm256_mul_ps(r, r), _mm256_mul_ps(i, i));
            // SAFETY: indices are zero-extended u16, below FREQ_SPACE, the stamps' length.
            let stamps = unsafe { _mm256_i32gather_epi32::<4>(own.stamp.as_ptr().cast(), idx) };
            let clears = _mm256_cmp_ps::<_CMP_GT_OQ>(m, bar_v);
            let listed = _mm256_castsi256_ps(_mm256_cmpeq_epi32(stamps, generation));
            let valid = (1u32 << (len - j).min(8)) - 1;
            let mut lanes = _mm256_movemask_ps(_mm256_andnot_ps(listed, clears)) as u32 & valid;
            j += 8;
            if lanes == 0 {
                continue; // the common case: no new entry clears the bar
            }
            store8(&mut re, 0, r);
            store8(&mut im, 0, i);
            store8(&mut mag2, 0, m);
            while lanes != 0 {
                let l = lanes.trailing_zeros() as usize;
                lanes &= lanes - 1;
                out.push(Cand {
                    f: freqs[l],
                    re: re[l],
                    im: im[l],
                    mag2: mag2[l],
                });
            }
        }
        if j < len {
            super::new_candidates_scalar(x, &x.touched()[j..], scale, bar, own, out);
        }
    }

    #[target_feature(enable = "avx2")]
    pub fn dot(w: &WordBuf, x: &SparseAcc) -> f32 {
        let n = w.len.min(MAX_K);
        let mut terms = [0.0f32; MAX_K];
        for j in chunks(n) {
            let (xr, xi) = gather(x, indices(w, j));
            let t = _mm256_add_ps(
                _mm256_mul_ps(load8(&w.re, j), xr),
                _mm256_mul_ps(load8(&w.im, j), xi),
            );
            store8(&mut terms, j, t);
        }
        // In slot order, as the scalar loop adds them.
        let mut s = 0.0;
        for &t in &terms[..n] {
            s += t;
        }
        s
    }

    #[target_feature(enable = "avx2")]
    pub fn step(
        w: &WordBuf,
        x: &SparseAcc,
        scale: f32,
        floor2: f32,
        limit2: f32,
        out: &mut Step,
    ) -> bool {
        let n = w.len.min(MAX_K);
        let (scale, floor2, limit2) = (
            _mm256_set1_ps(scale),
            _mm256_set1_ps(floor2),
            _mm256_set1_ps(limit2),
        );
        let mut inside = true;
        for j in chunks(n) {
            let (xr, xi) = gather(x, indices(w, j));
            let re = _mm256_add_ps(load8(&w.re, j), _mm256_mul_ps(scale, xr));
            let im = _mm256_add_ps(load8(&w.im, j), _mm256_mul_ps(scale, xi));
            let mag2 = _mm256_add_ps(_mm256_mul_ps(re, re), _mm256_mul_ps(im, im));
            store8(&mut out.re, j, re);
            store8(&mut out.im, j, im);
            store8(&mut out.mag2, j, mag2);
            // Ordered, non-signalling compares: false for NaN, as in the scalar form.
            let ok = _mm256_and_ps(
                _mm256_cmp_ps::<_CMP_GT_OQ>(mag2, floor2),
                _mm256_cmp_ps::<_CMP_LE_OQ>(mag2, limit2),
            );
            let lanes = (n - j).min(8);
            let wanted = (1i32 << lanes) - 1;
            inside &= _mm256_movemask_ps(ok) & wanted == wanted;
        }
        inside
    }
}

/// A word of `len` random entries over `0..d`, values in (-2, 2), for tests of what reads
/// words (stale slots past `len`, as a reused buffer has them).
#[cfg(test)]
pub(crate) fn random_word(rng: &mut crate::rng::Rng, len: usize, d: usize) -> WordBuf {
    let mut w = WordBuf::default();
    for j in 0..MAX_K {
        w.freq[j] = rng.below(d) as u16;
        w.re[j] = rng.next_f32() * 4.0 - 2.0;
        w.im[j] = rng.next_f32() * 4.0 - 2.0;
    }
    w.len = len;
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// The SIMD forms called directly, for every length (the dispatch sends words of up to
    /// GATHER_ABOVE entries to the scalar form).
    fn simd_dot(w: &WordBuf, x: &SparseAcc) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if Isa::detect().0 != Form::Scalar {
            // SAFETY: the CPU has AVX2.
            return unsafe { avx2::dot(w, x) };
        }
        dot_scalar(w, x)
    }

    fn simd_step(w: &WordBuf, x: &SparseAcc, scale: f32, lo: f32, hi: f32, out: &mut Step) -> bool {
        #[cfg(target_arch = "x86_64")]
        if Isa::detect().0 != Form::Scalar {
            // SAFETY: the CPU has AVX2.
            return unsafe { avx2::step(w, x, scale, lo, hi, out) };
        }
        step_scalar(w, x, scale, lo, hi, out)
    }

    #[test]
    fn both_forms_agree_bit_for_bit() {
        let isa = Isa::detect();
        let d = 200;
        let mut rng = Rng::new(7);
        let mut x = SparseAcc::default();
        for case in 0..2000 {
            x.clear();
            let mut entries = WordBuf::default();
            for _ in 0..rng.below(60) {
                let f = rng.below(d) as u16;
                entries.push(f, rng.next_f32() - 0.5, rng.next_f32() - 0.5);
            }
            x.add_word(&entries, 1.0);
            let len = case % (MAX_K + 1);
            let w = random_word(&mut rng, len, d);
            let scale = (rng.next_f32() - 0.5) * 10.0;
            let dot = dot_scalar(&w, &x).to_bits();
            assert_eq!(simd_dot(&w, &x).to_bits(), dot, "dot, case {case}");
            assert_eq!(
                isa.dot(&w, &x).to_bits(),
                dot,
                "dispatched dot, case {case}"
            );
            let mut own = Members::default();
            own.restart();
            for (f, _, _) in w.entries() {
                own.insert(f);
            }
            let bar = rng.next_f32() * rng.next_f32();
            let (mut a, mut b) = (vec![Cand::default(); 3], vec![Cand::default(); 3]);
            isa.new_candidates(&x, scale, bar, &own, &mut a);
            new_candidates_scalar(&x, x.touched(), scale, bar, &own, &mut b);
            assert_eq!(a, b, "new candidates, case {case}");
            assert!(b[3..].iter().all(|c| c.mag2 > bar && !own.contains(c.f)));
            let (floor2, limit2) = (rng.next_f32() * 0.5, 1.0 + rng.next_f32() * 8.0);
            let (mut a, mut b) = (Step::default(), Step::default());
            let inside_a = simd_step(&w, &x, scale, floor2, limit2, &mut a);
            let inside_b = step_scalar(&w, &x, scale, floor2, limit2, &mut b);
            assert_eq!(inside_a, inside_b, "step range check, case {case}");
            let mut c = Step::default();
            let inside_c = isa.step(&w, &x, scale, floor2, limit2, &mut c);
            assert_eq!(inside_c, inside_b, "dispatched step, case {case}");
            for j in 0..len {
                assert_eq!(a.re[j].to_bits(), b.re[j].to_bits(), "case {case}");
                assert_eq!(a.im[j].to_bits(), b.im[j].to_bits(), "case {case}");
                assert_eq!(a.mag2[j].to_bits(), b.mag2[j].to_bits(), "case {case}");
            }
        }
    }

    #[test]
    fn step_range_check_catches_nan_and_out_of_range_values() {
        let isa = Isa::detect();
        let mut x = SparseAcc::default();
        let mut entries = WordBuf::default();
        entries.push(3, f32::NAN, 0.0);
        entries.push(5, 1.0, 0.0);
        x.add_word(&entries, 1.0);
        let mut w = WordBuf::default();
        w.push(5, 0.5, 0.0);
        let mut out = Step::default();
        assert!(isa.step(&w, &x, 1.0, 0.0, 4.0, &mut out));
        assert!(
            !isa.step(&w, &x, 1.0, 0.0, 2.0, &mut out),
            "above the limit"
        );
        assert!(
            !isa.step(&w, &x, 1.0, 2.5, 4.0, &mut out),
            "at or below the floor"
        );
        w.push(3, 0.5, 0.0);
        assert!(!isa.step(&w, &x, 1.0, 0.0, 4.0, &mut out), "NaN");
    }
}
