//! The one PyO3 module: converts types, releases the GIL around long calls, and maps the
//! crate's error enum to Python exceptions in one place (`to_py_err`).

use crate::error::CssError;
use crate::queries;
use crate::senses::{self, FrequencyIndex, Ranking, SenseParams, WordSenses};
use crate::spectra::{Spectra, UsageStats};
use crate::tokenizer;
use crate::trainer::{Corpus, EpochStats, Progress, TrainParams, Trainer};
use crate::vocabulary::Vocabulary;
use crate::word_table::{self, WordTable};
use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray1};
use pyo3::exceptions::{
    PyIndexError, PyKeyboardInterrupt, PyRuntimeError, PyTypeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3::types::{PyDict, PyString};
use std::sync::OnceLock;
use std::time::Duration;

/// The single place where Rust errors become Python exceptions.
pub(crate) fn to_py_err(err: CssError) -> PyErr {
    match err {
        CssError::InvalidValue { .. } | CssError::InvalidData(_) => {
            PyValueError::new_err(err.to_string())
        }
        CssError::NotReady(_) => PyRuntimeError::new_err(err.to_string()),
        CssError::Interrupted => PyKeyboardInterrupt::new_err(err.to_string()),
    }
}

/// Texts taken from a Python iterable of `str`, readable without the GIL.
///
/// Each string is encoded to UTF-8 once, by CPython (`PyUnicode_AsUTF8String`); the bytes
/// objects are kept alive here and read in place, so nothing is copied a second time. A string
/// with lone surrogates (e.g. bytes decoded with `surrogateescape`) cannot be encoded strictly:
/// it is converted lossily (U+FFFD) into an owned string instead.
pub(crate) struct PyTexts<'py> {
    encoded: Vec<Bound<'py, PyBytes>>,
    lossy: Vec<String>,
    /// For each text in order: (taken from `encoded`?, index in that vector).
    order: Vec<(bool, usize)>,
}

impl<'py> PyTexts<'py> {
    /// A non-`str` item raises `TypeError` naming its index.
    pub(crate) fn extract(texts: &Bound<'py, PyAny>) -> PyResult<Self> {
        if texts.is_instance_of::<PyString>() {
            return Err(PyTypeError::new_err(
                "texts must be an iterable of str, not a single str",
            ));
        }
        let mut out = PyTexts {
            encoded: Vec::new(),
            lossy: Vec::new(),
            order: Vec::new(),
        };
        for (i, item) in texts.try_iter()?.enumerate() {
            let item = item?;
            let s = item.cast::<PyString>().map_err(|_| {
                let tname = item
                    .get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_else(|_| "object".to_string());
                PyTypeError::new_err(format!("texts[{i}] is {tname}, expected str"))
            })?;
            match s.encode_utf8() {
                Ok(bytes) => {
                    out.order.push((true, out.encoded.len()));
                    out.encoded.push(bytes);
                }
                Err(_) => {
                    out.order.push((false, out.lossy.len()));
                    out.lossy.push(s.to_string_lossy().into_owned());
                }
            }
        }
        Ok(out)
    }

    /// The texts as `&str`, in order (plain references: they may cross `Python::detach`).
    pub(crate) fn strs(&self) -> Vec<&str> {
        self.order
            .iter()
            .map(|&(encoded, i)| {
                if encoded {
                    // Strict UTF-8 from CPython is valid UTF-8; the fallback is unreachable.
                    std::str::from_utf8(self.encoded[i].as_bytes()).unwrap_or("")
                } else {
                    self.lossy[i].as_str()
                }
            })
            .collect()
    }
}

/// The text as an owned Rust string. The strict conversion is the fast one; only a string
/// with lone surrogates takes the lossy path, where they become U+FFFD.
fn owned_text(s: &Bound<'_, PyString>) -> String {
    match s.to_cow() {
        Ok(text) => text.into_owned(),
        Err(_) => s.to_string_lossy().into_owned(),
    }
}

fn text_of(text: &Bound<'_, PyAny>) -> PyResult<String> {
    let s = text
        .cast::<PyString>()
        .map_err(|_| PyTypeError::new_err("text must be str"))?;
    Ok(owned_text(s))
}

/// Lowercases and splits text into words (letters and digits of every script, and `_`).
#[pyclass(name = "Tokenizer", module = "css_rs._core", frozen)]
struct PyTokenizer;

#[pymethods]
impl PyTokenizer {
    #[new]
    fn new() -> Self {
        PyTokenizer
    }

    fn tokenize(&self, text: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
        Ok(tokenizer::tokenize(&text_of(text)?))
    }

    fn tokenize_batch(
        &self,
        py: Python<'_>,
        texts: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<Vec<String>>> {
        let texts = PyTexts::extract(texts)?;
        let strs = texts.strs();
        Ok(py.detach(|| tokenizer::tokenize_batch(&strs)))
    }

    fn __repr__(&self) -> &'static str {
        "Tokenizer()"
    }
}

/// Word counts and ids. Feed it with `update`, fix ids with `build`.
#[pyclass(name = "Vocabulary", module = "css_rs._core")]
#[derive(Clone)]
pub(crate) struct PyVocabulary {
    pub(crate) inner: Vocabulary,
}

#[pymethods]
impl PyVocabulary {
    #[new]
    fn new() -> Self {
        PyVocabulary {
            inner: Vocabulary::new(),
        }
    }

    /// Counts the words of `texts` in parallel; returns the number of tokens counted.
    fn update(&mut self, py: Python<'_>, texts: &Bound<'_, PyAny>) -> PyResult<u64> {
        let texts = PyTexts::extract(texts)?;
        let strs = texts.strs();
        let inner = &mut self.inner;
        Ok(py.detach(|| inner.update(&strs)))
    }

    fn merge(&mut self, other: PyRef<'_, PyVocabulary>) {
        self.inner.merge(&other.inner);
    }

    #[pyo3(signature = (min_count=5, max_size=50000))]
    fn build(&mut self, py: Python<'_>, min_count: i64, max_size: i64) -> PyResult<()> {
        let (min_count, max_size) = check_build_args(min_count, max_size)?;
        let inner = &mut self.inner;
        py.detach(|| inner.build(min_count, max_size))
            .map_err(to_py_err)
    }

    #[staticmethod]
    #[pyo3(signature = (texts, min_count=5, max_size=50000))]
    fn from_texts(
        py: Python<'_>,
        texts: &Bound<'_, PyAny>,
        min_count: i64,
        max_size: i64,
    ) -> PyResult<Self> {
        let (min_count, max_size) = check_build_args(min_count, max_size)?;
        let texts = PyTexts::extract(texts)?;
        let strs = texts.strs();
        let inner = py.detach(|| {
            let mut v = Vocabulary::new();
            v.update(&strs);
            v.build(min_count, max_size).map(|_| v)
        });
        Ok(PyVocabulary {
            inner: inner.map_err(to_py_err)?,
        })
    }

    #[staticmethod]
    #[pyo3(signature = (counts, min_count=5, max_size=50000))]
    fn from_counts(counts: &Bound<'_, PyAny>, min_count: i64, max_size: i64) -> PyResult<Self> {
        let (min_count, max_size) = check_build_args(min_count, max_size)?;
        let dict = counts
            .cast::<PyDict>()
            .map_err(|_| PyTypeError::new_err("counts must be a dict of str -> int"))?;
        let mut pairs = Vec::with_capacity(dict.len());
        for (k, v) in dict.iter() {
            let word: String = k
                .extract()
                .map_err(|_| PyTypeError::new_err("counts keys must be str"))?;
            let c: i64 = v
                .extract()
                .map_err(|_| PyTypeError::new_err(format!("counts[{word:?}] must be an int")))?;
            if c < 0 {
                return Err(PyValueError::new_err(format!(
                    "counts[{word:?}] = {c} is invalid: must be >= 0"
                )));
            }
            pairs.push((word, c as u64));
        }
        let mut v = Vocabulary::new();
        v.add_counts(pairs);
        v.build(min_count, max_size).map_err(to_py_err)?;
        Ok(PyVocabulary { inner: v })
    }

    /// A built vocabulary with exactly these ids (word i has id i), e.g. from a saved model.
    #[staticmethod]
    fn from_words(words: Vec<String>, counts: Vec<u64>) -> PyResult<Self> {
        Ok(PyVocabulary {
            inner: Vocabulary::from_words(words, counts).map_err(to_py_err)?,
        })
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __contains__(&self, word: &str) -> bool {
        self.inner.word_to_id(word).is_some()
    }

    fn word_to_id(&self, word: &str) -> Option<u32> {
        self.inner.word_to_id(word)
    }

    fn id_to_word(&self, id: i64) -> PyResult<String> {
        u32::try_from(id)
            .ok()
            .and_then(|i| self.inner.id_to_word(i))
            .map(str::to_string)
            .ok_or_else(|| {
                PyIndexError::new_err(format!(
                    "id {id} is out of range: the vocabulary has ids 0..{}",
                    self.inner.len()
                ))
            })
    }

    /// Words in id order.
    #[getter]
    fn words(&self) -> Vec<String> {
        self.inner.words().to_vec()
    }

    /// `{word: count}` of the vocabulary's words, in id order.
    #[getter]
    fn counts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (w, c) in self.inner.words().iter().zip(self.inner.counts()) {
            d.set_item(w, c)?;
        }
        Ok(d)
    }

    /// Tokens counted so far (all words, in or out of the vocabulary).
    #[getter]
    fn total_tokens(&self) -> u64 {
        self.inner.total_tokens()
    }

    /// Distinct words counted so far.
    #[getter]
    fn distinct_words(&self) -> usize {
        self.inner.distinct_words()
    }

    #[getter]
    fn is_built(&self) -> bool {
        self.inner.is_built()
    }

    fn encode<'py>(
        &self,
        py: Python<'py>,
        text: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<u32>>> {
        let text = text_of(text)?;
        let ids = self.inner.encode(&text).map_err(to_py_err)?;
        Ok(PyArray1::from_vec(py, ids))
    }

    #[allow(clippy::type_complexity)]
    fn encode_batch<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyArray1<u32>>, Bound<'py, PyArray1<i64>>)> {
        let texts = PyTexts::extract(texts)?;
        let strs = texts.strs();
        let inner = &self.inner;
        let (ids, offsets) = py.detach(|| inner.encode_batch(&strs)).map_err(to_py_err)?;
        Ok((PyArray1::from_vec(py, ids), PyArray1::from_vec(py, offsets)))
    }

    fn to_json(&self) -> PyResult<String> {
        self.inner.to_json().map_err(to_py_err)
    }

    #[staticmethod]
    fn from_json(text: &str) -> PyResult<Self> {
        Ok(PyVocabulary {
            inner: Vocabulary::from_json(text).map_err(to_py_err)?,
        })
    }

    fn __repr__(&self) -> String {
        if self.inner.is_built() {
            format!(
                "Vocabulary({} words, min_count={}, max_size={}, {} tokens counted)",
                self.inner.len(),
                self.inner.min_count(),
                self.inner.max_size(),
                self.inner.total_tokens()
            )
        } else {
            format!(
                "Vocabulary(not built, {} distinct words, {} tokens counted)",
                self.inner.distinct_words(),
                self.inner.total_tokens()
            )
        }
    }
}

fn check_build_args(min_count: i64, max_size: i64) -> PyResult<(u64, usize)> {
    if min_count < 1 {
        return Err(to_py_err(CssError::invalid(
            "min_count",
            min_count,
            "must be >= 1",
        )));
    }
    if max_size < 1 {
        return Err(to_py_err(CssError::invalid(
            "max_size",
            max_size,
            "must be >= 1",
        )));
    }
    Ok((min_count as u64, max_size as usize))
}

fn progress_dict<'py>(py: Python<'py>, p: &Progress) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("tokens_done", p.tokens_done)?;
    d.set_item("tokens_total", p.tokens_total)?;
    d.set_item("epoch", p.epoch)?;
    d.set_item("epochs", p.epochs)?;
    d.set_item("loss", p.loss)?;
    d.set_item("avg_active", p.avg_active)?;
    d.set_item("learning_rate", p.learning_rate)?;
    d.set_item("elapsed", p.elapsed)?;
    d.set_item("tokens_per_second", p.tokens_per_second)?;
    d.set_item("done", p.done)?;
    Ok(d)
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
struct PyTrainer {
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
        state: Option<&[u8]>,
    ) -> PyResult<Self> {
        let params = TrainParams::from_json(settings_json).map_err(to_py_err)?;
        if !vocab.inner.is_built() {
            return Err(to_py_err(CssError::NotReady(
                "vocabulary is not built yet: call build(min_count, max_size)".to_string(),
            )));
        }
        let counts = vocab.inner.counts().to_vec();
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
            })
            .map_err(to_py_err)?
        };
        Ok(PyTrainer {
            inner,
            ids: ids.unbind(),
            offsets,
        })
    }

    /// Trains for about `seconds` with the GIL released; returns the progress as a dict.
    #[pyo3(signature = (seconds=0.5))]
    fn step<'py>(&mut self, py: Python<'py>, seconds: f64) -> PyResult<Bound<'py, PyDict>> {
        if !(seconds.is_finite() && seconds >= 0.0) {
            return Err(to_py_err(CssError::invalid(
                "seconds",
                seconds,
                "must be >= 0",
            )));
        }
        let budget = Duration::from_secs_f64(seconds.min(MAX_STEP_SECONDS));
        let ids = self.ids.bind(py).readonly();
        let ids_s = ids.as_slice()?;
        // The ids array keeps its length (numpy refuses to resize an array others reference),
        // but check it: a slice shorter than the (validated) offsets say must never be cut.
        if self.offsets.last().copied() != Some(ids_s.len() as i64) {
            return Err(to_py_err(CssError::InvalidData(
                "the corpus token ids changed size since the Trainer was made".to_string(),
            )));
        }
        let corpus = Corpus {
            ids: ids_s,
            offsets: &self.offsets,
        };
        let inner = &mut self.inner;
        let progress = py
            .detach(|| inner.step(&corpus, budget))
            .map_err(to_py_err)?;
        progress_dict(py, &progress)
    }

    fn progress<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let p = self.inner.progress();
        progress_dict(py, &p)
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

    fn state<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let bytes = py.detach(|| self.inner.state_bytes());
        PyBytes::new(py, &bytes)
    }

    fn snapshot(&self, py: Python<'_>) -> PySpectra {
        PySpectra::new(py.detach(|| self.inner.snapshot()))
    }
}

/// Trained spectra in query form (K slots per word, sorted by frequency, empty slots last).
#[pyclass(name = "Spectra", module = "css_rs._core", frozen)]
struct PySpectra {
    inner: Spectra,
    /// The inverted index of the sense analysis, built by its first call: a scan of 5,000
    /// words goes by in chunks (for a progress bar), which must not rebuild it each time.
    index: OnceLock<FrequencyIndex>,
}

/// A word's senses as plain Python values: `(peaks, senses)`, a peak as `(frequency,
/// amplitude, phase, [(word id, score)])`, a sense as `([(word id, cosine)], [peak index])`.
type PeakTuple = (u16, f32, f32, Vec<(u32, f64)>);
type SenseTuple = (Vec<(u32, f64)>, Vec<usize>);
type WordSensesTuple = (Vec<PeakTuple>, Vec<SenseTuple>);

fn senses_tuple(found: WordSenses) -> WordSensesTuple {
    let peaks = found.peaks.into_iter();
    let senses = found.senses.into_iter();
    (
        peaks
            .map(|p| (p.frequency, p.amplitude, p.phase, p.neighbours))
            .collect(),
        senses.map(|s| (s.members, s.peaks)).collect(),
    )
}

impl PySpectra {
    fn new(inner: Spectra) -> Self {
        PySpectra {
            inner,
            index: OnceLock::new(),
        }
    }

    /// The sense analysis of `word_ids`, with the GIL released.
    fn analyse(
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
        py.detach(|| {
            let index = self.index.get_or_init(|| FrequencyIndex::new(&self.inner));
            senses::senses(&self.inner, index, &words, &params)
        })
        .map_err(to_py_err)
    }

    fn check_word(&self, w: i64) -> PyResult<usize> {
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
                to_py_err(CssError::invalid(
                    "frequency",
                    f,
                    &format!("must be in [0, {})", self.inner.frequency_dim),
                ))
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
        )
        .map_err(to_py_err)?;
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

    fn sense_neighbours(
        &self,
        py: Python<'_>,
        word: i64,
        freq: i64,
        ratio: f32,
        k: usize,
    ) -> PyResult<Vec<(u32, f32)>> {
        let (w, f) = (self.check_word(word)?, self.check_freq(freq)?);
        Ok(py.detach(|| queries::sense_neighbours(&self.inner, w, f, ratio, k)))
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

/// The settings of a sense analysis (`senses::SenseParams`), checked once when made.
#[pyclass(name = "SenseSettings", module = "css_rs._core", frozen)]
struct PySenseSettings {
    inner: SenseParams,
}

#[pymethods]
impl PySenseSettings {
    #[new]
    #[pyo3(signature = (
        *, peak_ratio=0.25, k=5, rank="phase", neighbourhood=20, merge_ratio=0.5,
        min_share=0.25, modes=true, mode_share=0.2
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
    ) -> PyResult<Self> {
        let inner = SenseParams {
            peak_ratio,
            k,
            rank: Ranking::parse(rank).map_err(to_py_err)?,
            neighbourhood,
            merge_ratio,
            min_share,
            modes,
            mode_share,
        };
        inner.validate().map_err(to_py_err)?;
        Ok(PySenseSettings { inner })
    }

    fn __repr__(&self) -> String {
        format!("SenseSettings({:?})", self.inner)
    }
}

/// The form of the training kernels this process runs: "avx2" when the CPU has it, else
/// "scalar" (also when the environment sets CSS_RS_KERNELS=scalar). Both train the same
/// spectra bit for bit.
#[pyfunction]
fn kernels() -> PyResult<&'static str> {
    Ok(crate::kernels::Isa::from_env().map_err(to_py_err)?.name())
}

/// The engine's default settings as JSON (`TrainParams::default()`): Python's `TrainConfig`
/// declares the same defaults, and a test holds the two equal.
#[pyfunction]
fn engine_defaults() -> String {
    serde_json::to_string(&TrainParams::default()).expect("settings serialise")
}

// --- the id cache: first-seen word ids (crate::word_table) ----------------------------------

/// Words numbered in the order they are first seen, with counts (`crate::word_table`).
#[pyclass(name = "WordTable", module = "css_rs._core")]
struct PyWordTable {
    inner: WordTable,
}

#[pymethods]
impl PyWordTable {
    #[new]
    fn new() -> Self {
        PyWordTable {
            inner: WordTable::new(),
        }
    }

    /// The table a checkpoint's words file holds (one word a line); counts start at zero.
    #[staticmethod]
    fn from_words_text(data: &[u8]) -> PyResult<Self> {
        Ok(PyWordTable {
            inner: WordTable::from_words_text(data).map_err(to_py_err)?,
        })
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// Tokenizes `texts` into the id stream (ids, then END_OF_DOCUMENT, per document),
    /// adding new words and counting; returns the stream and the number of tokens.
    fn encode<'py>(
        &mut self,
        py: Python<'py>,
        texts: &Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyArray1<u32>>, u64)> {
        let texts = PyTexts::extract(texts)?;
        let strs = texts.strs();
        let inner = &mut self.inner;
        let (stream, tokens) = py.detach(|| inner.encode(&strs)).map_err(to_py_err)?;
        Ok((PyArray1::from_vec(py, stream), tokens))
    }

    /// Adds the tokens of a cached id stream to the counts; returns how many there were.
    fn recount(&mut self, py: Python<'_>, stream: PyReadonlyArray1<'_, u32>) -> PyResult<u64> {
        let stream = stream.as_slice()?;
        let inner = &mut self.inner;
        py.detach(|| inner.recount(stream)).map_err(to_py_err)
    }

    /// The words from id `start` on, one a line (UTF-8).
    fn words_text<'py>(&self, py: Python<'py>, start: usize) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.inner.words_text(start))
    }

    /// The vocabulary `Vocabulary.build(min_count, max_size)` would give on these counts, and
    /// the first-seen id -> vocabulary id table (`DROPPED` for words left out).
    fn vocabulary<'py>(
        &self,
        py: Python<'py>,
        min_count: i64,
        max_size: i64,
    ) -> PyResult<(PyVocabulary, Bound<'py, PyArray1<u32>>)> {
        let (min_count, max_size) = check_build_args(min_count, max_size)?;
        let inner = &self.inner;
        let (vocab, remap) = py
            .detach(|| inner.vocabulary(min_count, max_size))
            .map_err(to_py_err)?;
        Ok((PyVocabulary { inner: vocab }, PyArray1::from_vec(py, remap)))
    }
}

/// The complete documents of an id stream through a `WordTable.vocabulary` table: returns
/// `(ids, offsets, used)`, empty documents dropped, `used` the stream entries read.
#[pyfunction]
#[allow(clippy::type_complexity)]
fn remap_documents<'py>(
    py: Python<'py>,
    stream: PyReadonlyArray1<'py, u32>,
    remap: PyReadonlyArray1<'py, u32>,
) -> PyResult<(Bound<'py, PyArray1<u32>>, Bound<'py, PyArray1<i64>>, usize)> {
    let (stream, remap) = (stream.as_slice()?, remap.as_slice()?);
    let (ids, offsets, used) = py
        .detach(|| word_table::remap_documents(stream, remap))
        .map_err(to_py_err)?;
    Ok((
        PyArray1::from_vec(py, ids),
        PyArray1::from_vec(py, offsets),
        used,
    ))
}

fn add_word_table(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("END_OF_DOCUMENT", word_table::END_OF_DOCUMENT)?;
    m.add_class::<PyWordTable>()?;
    m.add_function(wrap_pyfunction!(remap_documents, m)?)
}

#[pymodule]
#[pyo3(name = "_core")]
fn core_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(kernels, m)?)?;
    m.add_function(wrap_pyfunction!(engine_defaults, m)?)?;
    m.add_class::<PyTokenizer>()?;
    m.add_class::<PyVocabulary>()?;
    m.add_class::<PyTrainer>()?;
    m.add_class::<PySpectra>()?;
    m.add_class::<PySenseSettings>()?;
    add_word_table(m)?;
    Ok(())
}
