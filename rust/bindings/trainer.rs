//! `css_rs._core.Trainer` and what it reports: `Progress`, the epochs' figures and the
//! `TrainingState` a run resumes from.

use super::spectra::PySpectra;
use super::vocabulary::PyVocabulary;
use crate::error::CssError;
use crate::trainer::{Corpus, EpochStats, Progress, TrainParams, Trainer};
use numpy::{PyArray1, PyArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use std::time::Duration;

/// Where a training run stands (reported about every 0.5 s).
#[pyclass(name = "Progress", module = "css_rs._core", frozen, eq)]
#[derive(PartialEq)]
pub(super) struct PyProgress(Progress);

#[pymethods]
impl PyProgress {
    #[new]
    #[allow(clippy::too_many_arguments)]
    fn new(
        tokens_done: u64,
        tokens_total: u64,
        epoch: usize,
        epochs: usize,
        loss: f64,
        avg_active: f64,
        learning_rate: f64,
        elapsed: f64,
        tokens_per_second: f64,
        done: bool,
    ) -> Self {
        PyProgress(Progress {
            tokens_done,
            tokens_total,
            epoch,
            epochs,
            loss,
            avg_active,
            learning_rate,
            elapsed,
            tokens_per_second,
            done,
        })
    }

    #[getter]
    fn tokens_done(&self) -> u64 {
        self.0.tokens_done
    }

    #[getter]
    fn tokens_total(&self) -> u64 {
        self.0.tokens_total
    }

    /// 1-based epoch being trained (the last one when done).
    #[getter]
    fn epoch(&self) -> usize {
        self.0.epoch
    }

    #[getter]
    fn epochs(&self) -> usize {
        self.0.epochs
    }

    /// Mean loss per position since the previous report.
    #[getter]
    fn loss(&self) -> f64 {
        self.0.loss
    }

    #[getter]
    fn avg_active(&self) -> f64 {
        self.0.avg_active
    }

    #[getter]
    fn learning_rate(&self) -> f64 {
        self.0.learning_rate
    }

    #[getter]
    fn elapsed(&self) -> f64 {
        self.0.elapsed
    }

    #[getter]
    fn tokens_per_second(&self) -> f64 {
        self.0.tokens_per_second
    }

    #[getter]
    fn done(&self) -> bool {
        self.0.done
    }

    /// The share of the planned tokens trained (1.0 when nothing was planned).
    #[getter]
    fn fraction(&self) -> f64 {
        if self.0.tokens_total == 0 {
            1.0
        } else {
            self.0.tokens_done as f64 / self.0.tokens_total as f64
        }
    }

    fn __repr__(&self) -> String {
        let p = &self.0;
        format!(
            "Progress(tokens_done={}, tokens_total={}, epoch={}, epochs={}, loss={:?}, \
             avg_active={:?}, learning_rate={:?}, elapsed={:?}, tokens_per_second={:?}, \
             done={})",
            p.tokens_done,
            p.tokens_total,
            p.epoch,
            p.epochs,
            p.loss,
            p.avg_active,
            p.learning_rate,
            p.elapsed,
            p.tokens_per_second,
            if p.done { "True" } else { "False" }
        )
    }
}

/// Everything needed to continue a run exactly: spectra, epoch, corpus position, RNG states,
/// step counters. Opaque bytes (`Trainer::state_bytes`); resuming with `threads=1` reproduces
/// the uninterrupted run.
#[pyclass(name = "TrainingState", module = "css_rs._core", frozen)]
pub(super) struct PyTrainingState {
    bytes: Py<PyBytes>,
}

#[pymethods]
impl PyTrainingState {
    /// Takes any bytes-like object, as `bytes(data)` does (a `bytes` object is kept as is).
    #[new]
    fn new(data: &Bound<'_, PyAny>) -> PyResult<Self> {
        let bytes = match data.cast::<PyBytes>() {
            Ok(b) => b.clone(),
            Err(_) => data
                .py()
                .get_type::<PyBytes>()
                .call1((data,))?
                .cast_into::<PyBytes>()?,
        };
        Ok(PyTrainingState {
            bytes: bytes.unbind(),
        })
    }

    #[staticmethod]
    fn from_bytes(data: &Bound<'_, PyAny>) -> PyResult<Self> {
        Self::new(data)
    }

    fn to_bytes(&self, py: Python<'_>) -> Py<PyBytes> {
        self.bytes.clone_ref(py)
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        self.bytes.bind(py).as_bytes().len()
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!("TrainingState({} bytes)", self.__len__(py))
    }
}

fn epoch_dict<'py>(py: Python<'py>, e: &EpochStats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("epoch", e.epoch)?;
    d.set_item("loss", e.loss)?;
    d.set_item("avg_active", e.avg_active)?;
    d.set_item("empty_words", e.empty_words)?;
    d.set_item("effective_frequencies", e.effective_frequencies)?;
    d.set_item("largest_share", e.largest_share)?;
    d.set_item("crowded_frequencies", e.crowded_frequencies)?;
    d.set_item("tokens", e.tokens)?;
    d.set_item("positions", e.positions)?;
    d.set_item("negative_updates", e.negative_updates)?;
    d.set_item("seconds", e.seconds)?;
    Ok(d)
}

/// Longest step: about 31 years. A longer one (`step(1e300)`) means "until done"; a deadline
/// beyond what the clock can represent would panic.
const MAX_STEP_SECONDS: f64 = 1e9;

/// The Rust trainer over a corpus held in numpy arrays (the token ids may be memory-mapped).
/// The token ids are borrowed read-only for each `step`, with the GIL released; Python code
/// may still change them in place, so each id is checked as training reads it (never trusted
/// as an index). The offsets, which slice the ids without a check, are copied once and
/// validated (8 bytes per document, small beside the ids), so no change made to the caller's
/// array afterwards, from any thread, can make a document reach outside the ids.
#[pyclass(name = "Trainer", module = "css_rs._core")]
pub(super) struct PyTrainer {
    inner: Trainer,
    ids: Py<PyArray1<u32>>,
    offsets: Vec<i64>,
}

#[pymethods]
impl PyTrainer {
    #[new]
    #[pyo3(signature = (ids, offsets, vocab, settings_json, state=None))]
    fn new(
        py: Python<'_>,
        ids: Bound<'_, PyArray1<u32>>,
        offsets: Bound<'_, PyArray1<i64>>,
        vocab: PyRef<'_, PyVocabulary>,
        settings_json: &str,
        state: Option<PyRef<'_, PyTrainingState>>,
    ) -> PyResult<Self> {
        let params = TrainParams::from_json(settings_json)?;
        if !vocab.inner.is_built() {
            return Err(CssError::NotReady(
                "vocabulary is not built yet: call build(min_count, max_size)".to_string(),
            )
            .into());
        }
        let counts = vocab.inner.counts().to_vec();
        let state = state.as_ref().map(|s| s.bytes.bind(py).as_bytes());
        let offsets = offsets.readonly().as_slice()?.to_vec();
        let inner = {
            let ids_ro = ids.readonly();
            let ids_s = ids_ro.as_slice()?;
            let off_s = offsets.as_slice();
            py.detach(|| {
                let corpus = Corpus::new(ids_s, off_s)?;
                match state {
                    Some(bytes) => Trainer::resume(params, &counts, &corpus, bytes),
                    None => Trainer::new(params, &counts, &corpus),
                }
            })?
        };
        Ok(PyTrainer {
            inner,
            ids: ids.unbind(),
            offsets,
        })
    }

    /// Trains for about `seconds` with the GIL released; returns the progress.
    #[pyo3(signature = (seconds=0.5))]
    fn step(&mut self, py: Python<'_>, seconds: f64) -> PyResult<PyProgress> {
        if !(seconds.is_finite() && seconds >= 0.0) {
            return Err(CssError::invalid("seconds", seconds, "must be >= 0").into());
        }
        let budget = Duration::from_secs_f64(seconds.min(MAX_STEP_SECONDS));
        let ids = self.ids.bind(py).readonly();
        let ids_s = ids.as_slice()?;
        // The ids array keeps its length (numpy refuses to resize an array others reference),
        // but check it: a slice shorter than the (validated) offsets say must never be cut.
        if self.offsets.last().copied() != Some(ids_s.len() as i64) {
            return Err(CssError::InvalidData(
                "the corpus token ids changed size since the Trainer was made".to_string(),
            )
            .into());
        }
        let corpus = Corpus {
            ids: ids_s,
            offsets: &self.offsets,
        };
        let inner = &mut self.inner;
        Ok(PyProgress(py.detach(|| inner.step(&corpus, budget))?))
    }

    fn progress(&mut self) -> PyProgress {
        PyProgress(self.inner.progress())
    }

    #[getter]
    fn done(&self) -> bool {
        self.inner.is_done()
    }

    fn epoch_stats<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        self.inner
            .epoch_stats()
            .iter()
            .map(|e| epoch_dict(py, e))
            .collect()
    }

    fn state(&self, py: Python<'_>) -> PyTrainingState {
        let bytes = py.detach(|| self.inner.state_bytes());
        PyTrainingState {
            bytes: PyBytes::new(py, &bytes).unbind(),
        }
    }

    fn snapshot(&self, py: Python<'_>) -> PySpectra {
        PySpectra::new(py.detach(|| self.inner.snapshot()))
    }
}

/// The form of the training kernels this process runs: "avx2" when the CPU has it, else
/// "scalar" (also when the environment sets CSS_RS_KERNELS=scalar). Both train the same
/// spectra bit for bit.
#[pyfunction]
pub(super) fn kernels() -> PyResult<&'static str> {
    Ok(crate::kernels::Isa::from_env()?.name())
}

/// The engine's default settings as JSON (`TrainParams::default()`): Python's `TrainConfig`
/// declares the same defaults, and a test holds the two equal.
#[pyfunction]
pub(super) fn engine_defaults() -> String {
    serde_json::to_string(&TrainParams::default()).expect("settings serialise")
}
