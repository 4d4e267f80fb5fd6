//! The sense analysis (`senses`) for Python: its settings, and its results as plain values.

use super::spectra::PySpectra;
use crate::senses::{self, FrequencyIndex, Ranking, SenseParams, WordSenses};
use pyo3::prelude::*;

/// A word's senses as plain Python values: `(peaks, senses)`, a peak as `(frequency,
/// amplitude, phase, [(word id, score)])`, a sense as `([(word id, cosine)], [peak index])`.
pub(super) type PeakTuple = (u16, f32, f32, Vec<(u32, f64)>);
pub(super) type SenseTuple = (Vec<(u32, f64)>, Vec<usize>);
pub(super) type WordSensesTuple = (Vec<PeakTuple>, Vec<SenseTuple>);

pub(super) fn senses_tuple(found: WordSenses) -> WordSensesTuple {
    let peaks = found.peaks.into_iter();
    let senses = found.senses.into_iter();
    (
        peaks
            .map(|p| (p.frequency, p.amplitude, p.phase, p.neighbours))
            .collect(),
        senses.map(|s| (s.members, s.peaks)).collect(),
    )
}

/// The settings of a sense analysis (`senses::SenseParams`), checked once when made.
#[pyclass(name = "SenseSettings", module = "css_rs._core", frozen)]
pub(super) struct PySenseSettings {
    pub(super) inner: SenseParams,
}

#[pymethods]
impl PySenseSettings {
    #[new]
    #[pyo3(signature = (
        *, peak_ratio=0.25, k=5, rank="phase", neighbourhood=20, merge_ratio=0.45,
        min_share=0.25, modes=true, mode_share=0.2, vocabulary=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        peak_ratio: f32,
        k: usize,
        rank: &str,
        neighbourhood: usize,
        merge_ratio: f64,
        min_share: f64,
        modes: bool,
        mode_share: f64,
        vocabulary: Option<usize>,
    ) -> PyResult<Self> {
        let inner = SenseParams {
            peak_ratio,
            k,
            rank: Ranking::parse(rank)?,
            neighbourhood,
            merge_ratio,
            min_share,
            modes,
            mode_share,
            vocabulary: vocabulary.unwrap_or(usize::MAX),
        };
        inner.validate()?;
        Ok(PySenseSettings { inner })
    }

    fn __repr__(&self) -> String {
        format!("SenseSettings({:?})", self.inner)
    }
}

impl PySpectra {
    /// The sense analysis of `word_ids`, with the GIL released.
    pub(super) fn analyse(
        &self,
        py: Python<'_>,
        word_ids: &[i64],
        settings: &PySenseSettings,
    ) -> PyResult<Vec<WordSenses>> {
        let words = word_ids
            .iter()
            .map(|&w| self.check_word(w))
            .collect::<PyResult<Vec<usize>>>()?;
        let params = settings.inner.clone();
        let found = py.detach(|| {
            let index = self.index.get_or_init(|| FrequencyIndex::new(&self.inner));
            senses::senses(&self.inner, index, &words, &params)
        })?;
        Ok(found)
    }
}
