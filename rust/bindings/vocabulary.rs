//! `css_rs.Vocabulary`: word counts and ids.

use super::text::{text_of, PyTexts};
use crate::error::CssError;
use crate::vocabulary::Vocabulary;
use numpy::PyArray1;
use pyo3::exceptions::{PyIndexError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// Word counts and ids. Feed it with `update`, fix ids with `build`.
#[pyclass(name = "Vocabulary", module = "css_rs._core")]
#[derive(Clone)]
pub(super) struct PyVocabulary {
    pub(super) inner: Vocabulary,
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
        Ok(py.detach(|| inner.build(min_count, max_size))?)
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
        Ok(PyVocabulary { inner: inner? })
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
                return Err(
                    CssError::invalid(&format!("counts[{word:?}]"), c, "must be >= 0").into(),
                );
            }
            pairs.push((word, c as u64));
        }
        let mut v = Vocabulary::new();
        v.add_counts(pairs);
        v.build(min_count, max_size)?;
        Ok(PyVocabulary { inner: v })
    }

    /// A built vocabulary with exactly these ids (word i has id i), e.g. from a saved model.
    #[staticmethod]
    fn from_words(words: Vec<String>, counts: Vec<u64>) -> PyResult<Self> {
        Ok(PyVocabulary {
            inner: Vocabulary::from_words(words, counts)?,
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
        let ids = self.inner.encode(&text)?;
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
        let (ids, offsets) = py.detach(|| inner.encode_batch(&strs))?;
        Ok((PyArray1::from_vec(py, ids), PyArray1::from_vec(py, offsets)))
    }

    fn to_json(&self) -> PyResult<String> {
        Ok(self.inner.to_json()?)
    }

    #[staticmethod]
    fn from_json(text: &str) -> PyResult<Self> {
        Ok(PyVocabulary {
            inner: Vocabulary::from_json(text)?,
        })
    }

    /// Every word counted so far (in the vocabulary or not) with its count.
    fn raw_counts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (w, c) in self.inner.raw_counts() {
            d.set_item(w, c)?;
        }
        Ok(d)
    }

    /// Pickles as its JSON form (raw counts, ids and all), e.g. to cross to a Ray worker.
    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<(Bound<'py, PyAny>, (String,))> {
        let from_json = py.get_type::<PyVocabulary>().getattr("from_json")?;
        Ok((from_json, (self.to_json()?,)))
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

pub(super) fn check_build_args(min_count: i64, max_size: i64) -> Result<(u64, usize), CssError> {
    if min_count < 1 {
        return Err(CssError::invalid("min_count", min_count, "must be >= 1"));
    }
    if max_size < 1 {
        return Err(CssError::invalid("max_size", max_size, "must be >= 1"));
    }
    Ok((min_count as u64, max_size as usize))
}
