//! `css_rs._core.Spectra`: trained spectra and the queries on them (`queries`).

use super::senses::{senses_tuple, PySenseSettings, WordSensesTuple};
use crate::error::CssError;
use crate::queries;
use crate::senses::FrequencyIndex;
use crate::spectra::{Spectra, UsageStats};
use numpy::{PyArray1, PyReadonlyArray1};
use pyo3::exceptions::PyIndexError;
use pyo3::prelude::*;
use std::sync::OnceLock;

/// Trained spectra in query form (K slots per word, sorted by frequency, empty slots last).
#[pyclass(name = "Spectra", module = "css_rs._core", frozen)]
pub(super) struct PySpectra {
    pub(super) inner: Spectra,
    /// The inverted index of the sense analysis, built by its first call: a scan of 5,000
    /// words goes by in chunks (for a progress bar), which must not rebuild it each time.
    pub(super) index: OnceLock<FrequencyIndex>,
}

impl PySpectra {
    pub(super) fn new(inner: Spectra) -> Self {
        PySpectra {
            inner,
            index: OnceLock::new(),
        }
    }

    pub(super) fn check_word(&self, w: i64) -> PyResult<usize> {
        usize::try_from(w)
            .ok()
            .filter(|&w| w < self.inner.vocab_size)
            .ok_or_else(|| {
                PyIndexError::new_err(format!(
                    "word id {w} is out of range 0..{}",
                    self.inner.vocab_size
                ))
            })
    }

    fn check_freq(&self, f: i64) -> PyResult<u16> {
        u16::try_from(f)
            .ok()
            .filter(|&f| (f as usize) < self.inner.frequency_dim)
            .ok_or_else(|| {
                let allowed = format!("must be in [0, {})", self.inner.frequency_dim);
                CssError::invalid("frequency", f, &allowed).into()
            })
    }
}

#[pymethods]
impl PySpectra {
    /// Builds from flat per-slot arrays of length V*K (validated).
    #[staticmethod]
    fn from_slots(
        k: usize,
        frequency_dim: usize,
        freq: PyReadonlyArray1<'_, u16>,
        amp: PyReadonlyArray1<'_, f32>,
        phase: PyReadonlyArray1<'_, f32>,
    ) -> PyResult<Self> {
        let inner = Spectra::from_slots(
            k,
            frequency_dim,
            freq.as_slice()?.to_vec(),
            amp.as_slice()?.to_vec(),
            phase.as_slice()?.to_vec(),
        )?;
        Ok(PySpectra::new(inner))
    }

    #[getter]
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size
    }

    #[getter]
    fn k(&self) -> usize {
        self.inner.k
    }

    #[getter]
    fn frequency_dim(&self) -> usize {
        self.inner.frequency_dim
    }

    fn freq<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u16>> {
        PyArray1::from_slice(py, &self.inner.freq)
    }

    fn amp<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f32>> {
        PyArray1::from_slice(py, &self.inner.amp)
    }

    fn phase<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f32>> {
        PyArray1::from_slice(py, &self.inner.phase)
    }

    fn re<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f32>> {
        PyArray1::from_slice(py, &self.inner.re)
    }

    fn im<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f32>> {
        PyArray1::from_slice(py, &self.inner.im)
    }

    fn norms<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f32>> {
        PyArray1::from_slice(py, &self.inner.norm)
    }

    fn active_counts<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u32>> {
        let v: Vec<u32> = (0..self.inner.vocab_size)
            .map(|w| self.inner.active(w) as u32)
            .collect();
        PyArray1::from_vec(py, v)
    }

    fn frequency_usage<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u64>> {
        PyArray1::from_vec(py, queries::frequency_usage(&self.inner))
    }

    /// `(in_use, effective, largest_share, crowded)`: how the entries spread over the
    /// frequencies (`spectra::UsageStats`).
    fn usage_stats(&self) -> (usize, f64, f64, usize) {
        let u = UsageStats::from_usage(
            &queries::frequency_usage(&self.inner),
            self.inner.vocab_size,
        );
        (u.in_use, u.effective, u.largest_share, u.crowded)
    }

    fn similarity(&self, a: i64, b: i64) -> PyResult<f32> {
        Ok(queries::similarity(
            &self.inner,
            self.check_word(a)?,
            self.check_word(b)?,
        ))
    }

    fn similar(&self, py: Python<'_>, word: i64, k: usize) -> PyResult<Vec<(u32, f32)>> {
        let w = self.check_word(word)?;
        Ok(py.detach(|| queries::similar(&self.inner, w, k)))
    }

    fn peaks(&self, word: i64, ratio: f32) -> PyResult<Vec<(u16, f32, f32)>> {
        Ok(queries::peaks(&self.inner, self.check_word(word)?, ratio))
    }

    /// The `k` words nearest to the unit spectra of `positive` minus those of `negative`.
    fn most_similar(
        &self,
        py: Python<'_>,
        positive: Vec<i64>,
        negative: Vec<i64>,
        k: usize,
    ) -> PyResult<Vec<(u32, f64)>> {
        let check = |ids: Vec<i64>| -> PyResult<Vec<usize>> {
            ids.into_iter().map(|w| self.check_word(w)).collect()
        };
        let (positive, negative) = (check(positive)?, check(negative)?);
        Ok(py.detach(|| queries::most_similar(&self.inner, &positive, &negative, k)))
    }

    fn modes(&self, py: Python<'_>, freq: i64, k: usize) -> PyResult<Vec<(u32, f32)>> {
        let f = self.check_freq(freq)?;
        Ok(py.detach(|| queries::modes(&self.inner, f, k)))
    }

    /// Peaks, sense neighbours and senses of each word (`senses::senses`), in parallel.
    fn senses(
        &self,
        py: Python<'_>,
        word_ids: Vec<i64>,
        settings: PyRef<'_, PySenseSettings>,
    ) -> PyResult<Vec<WordSensesTuple>> {
        let found = self.analyse(py, &word_ids, &settings)?;
        Ok(found.into_iter().map(senses_tuple).collect())
    }

    /// Only the weights of each word's senses, heaviest first: what a ranking of thousands of
    /// words needs, without building their members as Python objects.
    fn sense_weights(
        &self,
        py: Python<'_>,
        word_ids: Vec<i64>,
        settings: PyRef<'_, PySenseSettings>,
    ) -> PyResult<Vec<Vec<f64>>> {
        let found = self.analyse(py, &word_ids, &settings)?;
        Ok(found
            .iter()
            .map(|f| f.senses.iter().map(|s| s.weight()).collect())
            .collect())
    }
}
