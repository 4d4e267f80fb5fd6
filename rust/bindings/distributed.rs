//! Bindings of distributed rounds (issue 16): the worker's `RoundTrainer`, the driver's
//! `merge_spectra`, and spectra as plain numpy arrays (what crosses between processes).
//!
//! Spectra travel as a tuple `(freq u16, re f32, im f32, counters u32)` of V*K, V*K, V*K and
//! V values; a round's changed words as `(words u32, freq, re, im, counters)` of n rows.

use super::spectra::PySpectra;
use super::vocabulary::PyVocabulary;
use crate::distributed::{frequent_counts, merge, split_counts, SlotArrays, SparseRows};
use crate::error::CssError;
use crate::trainer::{Corpus, RoundOutcome, RoundPlan, TrainParams, Trainer};
use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray1};
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// A shard's raw counts split into `buckets` unbuilt vocabularies by a stable hash of the word.
#[pyfunction]
fn vocabulary_buckets(
    py: Python<'_>,
    vocab: PyRef<'_, PyVocabulary>,
    buckets: usize,
) -> Vec<PyVocabulary> {
    let inner = &vocab.inner;
    py.detach(|| split_counts(inner, buckets))
        .into_iter()
        .map(|inner| PyVocabulary { inner })
        .collect()
}

/// `{word: count}` of the words counted at least `min_count` times.
#[pyfunction]
fn frequent_word_counts<'py>(
    py: Python<'py>,
    vocab: PyRef<'_, PyVocabulary>,
    min_count: u64,
) -> PyResult<Bound<'py, PyDict>> {
    let inner = &vocab.inner;
    let counts = py.detach(|| frequent_counts(inner, min_count));
    let d = PyDict::new(py);
    for (w, c) in counts {
        d.set_item(w, c)?;
    }
    Ok(d)
}

type Arr<'py, T> = Bound<'py, PyArray1<T>>;
type SpectraIn<'py> = (
    PyReadonlyArray1<'py, u16>,
    PyReadonlyArray1<'py, f32>,
    PyReadonlyArray1<'py, f32>,
    PyReadonlyArray1<'py, u32>,
);
type SpectraOut<'py> = (Arr<'py, u16>, Arr<'py, f32>, Arr<'py, f32>, Arr<'py, u32>);
type RowsIn<'py> = (
    PyReadonlyArray1<'py, u32>,
    PyReadonlyArray1<'py, u16>,
    PyReadonlyArray1<'py, f32>,
    PyReadonlyArray1<'py, f32>,
    PyReadonlyArray1<'py, u32>,
);
type RowsOut<'py> = (
    Arr<'py, u32>,
    Arr<'py, u16>,
    Arr<'py, f32>,
    Arr<'py, f32>,
    Arr<'py, u32>,
);

fn slot_arrays(s: &SpectraIn<'_>) -> PyResult<SlotArrays> {
    let counters = s.3.as_slice()?.to_vec();
    let freq = s.0.as_slice()?.to_vec();
    let k = if counters.is_empty() {
        0
    } else {
        freq.len() / counters.len()
    };
    Ok(SlotArrays {
        k,
        freq,
        re: s.1.as_slice()?.to_vec(),
        im: s.2.as_slice()?.to_vec(),
        counters,
    })
}

fn spectra_out(py: Python<'_>, s: SlotArrays) -> SpectraOut<'_> {
    (
        PyArray1::from_vec(py, s.freq),
        PyArray1::from_vec(py, s.re),
        PyArray1::from_vec(py, s.im),
        PyArray1::from_vec(py, s.counters),
    )
}

fn sparse_rows(r: &RowsIn<'_>, k: usize) -> PyResult<SparseRows> {
    Ok(SparseRows {
        k,
        words: r.0.as_slice()?.to_vec(),
        freq: r.1.as_slice()?.to_vec(),
        re: r.2.as_slice()?.to_vec(),
        im: r.3.as_slice()?.to_vec(),
        counters: r.4.as_slice()?.to_vec(),
    })
}

fn rows_out(py: Python<'_>, r: SparseRows) -> RowsOut<'_> {
    (
        PyArray1::from_vec(py, r.words),
        PyArray1::from_vec(py, r.freq),
        PyArray1::from_vec(py, r.re),
        PyArray1::from_vec(py, r.im),
        PyArray1::from_vec(py, r.counters),
    )
}

fn settings(settings_json: &str) -> PyResult<TrainParams> {
    Ok(TrainParams::from_json(settings_json)?)
}

/// The global spectra a run starts from: the same random spectra a single-process run with
/// these settings starts from.
#[pyfunction]
fn initial_spectra<'py>(
    py: Python<'py>,
    vocab_size: usize,
    settings_json: &str,
) -> PyResult<SpectraOut<'py>> {
    let p = settings(settings_json)?;
    Ok(spectra_out(py, Trainer::initial_spectra(&p, vocab_size)))
}

/// The driver's merge: each word that updates changed becomes the mean of its changed
/// versions, cut to the K largest magnitudes; the result does not depend on the updates' order.
#[pyfunction]
fn merge_spectra<'py>(
    py: Python<'py>,
    spectra: SpectraIn<'py>,
    updates: Vec<RowsIn<'py>>,
    frequency_dim: usize,
) -> PyResult<SpectraOut<'py>> {
    let global = slot_arrays(&spectra)?;
    global.validate(frequency_dim)?;
    let rows = updates
        .iter()
        .map(|u| sparse_rows(u, global.k))
        .collect::<PyResult<Vec<_>>>()?;
    let merged = py.detach(|| merge(&global, &rows, frequency_dim))?;
    Ok(spectra_out(py, merged))
}

/// Raw spectra in query form (a model's `Spectra`).
#[pyfunction]
fn spectra_from_arrays(
    py: Python<'_>,
    spectra: SpectraIn<'_>,
    frequency_dim: usize,
) -> PyResult<PySpectra> {
    let s = slot_arrays(&spectra)?;
    s.validate(frequency_dim)?;
    Ok(PySpectra::new(py.detach(|| s.to_spectra(frequency_dim))))
}

/// A worker's trainer: its own encoded documents (`ids`, `offsets`, kept for every round and
/// epoch), the global vocabulary's counts and the run's settings.
#[pyclass(name = "RoundTrainer", module = "css_rs._core")]
struct PyRoundTrainer {
    inner: Trainer,
    ids: Py<PyArray1<u32>>,
    offsets: Vec<i64>,
}

fn outcome_dict<'py>(py: Python<'py>, o: &RoundOutcome) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("next_doc", o.next_doc)?;
    d.set_item("tokens", o.tokens)?;
    d.set_item("positions", o.positions)?;
    d.set_item("loss", o.loss)?;
    d.set_item("loss_positions", o.loss_positions)?;
    d.set_item("seconds", o.seconds)?;
    Ok(d)
}

#[pymethods]
impl PyRoundTrainer {
    #[new]
    fn new(
        py: Python<'_>,
        ids: Bound<'_, PyArray1<u32>>,
        offsets: Bound<'_, PyArray1<i64>>,
        vocab: PyRef<'_, PyVocabulary>,
        settings_json: &str,
    ) -> PyResult<Self> {
        let params = settings(settings_json)?;
        if !vocab.inner.is_built() {
            return Err(PyErr::from(CssError::NotReady(
                "vocabulary is not built yet: call build(min_count, max_size)".to_string(),
            )));
        }
        let counts = vocab.inner.counts().to_vec();
        let offsets = offsets.readonly().as_slice()?.to_vec();
        {
            let ids_ro = ids.readonly();
            Corpus::new(ids_ro.as_slice()?, &offsets)?;
        }
        let inner = py.detach(|| Trainer::for_rounds(params, &counts))?;
        Ok(PyRoundTrainer {
            inner,
            ids: ids.unbind(),
            offsets,
        })
    }

    #[getter]
    fn documents(&self) -> usize {
        self.offsets.len() - 1
    }

    #[getter]
    fn tokens(&self) -> u64 {
        self.offsets.last().copied().unwrap_or(0) as u64
    }

    /// Trains one round from `spectra`; returns `(changed rows, figures)`.
    #[pyo3(signature = (
        spectra, *, first_doc, token_budget, epoch, round, worker, workers,
        cluster_tokens_done, cluster_tokens_total
    ))]
    #[allow(clippy::too_many_arguments)]
    fn train_round<'py>(
        &mut self,
        py: Python<'py>,
        spectra: SpectraIn<'py>,
        first_doc: usize,
        token_budget: u64,
        epoch: usize,
        round: u64,
        worker: u32,
        workers: u32,
        cluster_tokens_done: u64,
        cluster_tokens_total: u64,
    ) -> PyResult<(RowsOut<'py>, Bound<'py, PyDict>)> {
        let start = slot_arrays(&spectra)?;
        let plan = RoundPlan {
            first_doc,
            token_budget,
            epoch,
            round,
            worker,
            workers,
            cluster_tokens_done,
            cluster_tokens_total,
        };
        let ids = self.ids.bind(py).readonly();
        let ids_s = ids.as_slice()?;
        if self.offsets.last().copied() != Some(ids_s.len() as i64) {
            return Err(PyErr::from(CssError::InvalidData(
                "the worker's token ids changed size since the RoundTrainer was made".to_string(),
            )));
        }
        let corpus = Corpus {
            ids: ids_s,
            offsets: &self.offsets,
        };
        let inner = &mut self.inner;
        let (rows, outcome) = py.detach(|| inner.train_round(&corpus, &start, &plan))?;
        Ok((rows_out(py, rows), outcome_dict(py, &outcome)?))
    }
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(initial_spectra, m)?)?;
    m.add_function(wrap_pyfunction!(vocabulary_buckets, m)?)?;
    m.add_function(wrap_pyfunction!(frequent_word_counts, m)?)?;
    m.add_function(wrap_pyfunction!(merge_spectra, m)?)?;
    m.add_function(wrap_pyfunction!(spectra_from_arrays, m)?)?;
    m.add_class::<PyRoundTrainer>()?;
    Ok(())
}
