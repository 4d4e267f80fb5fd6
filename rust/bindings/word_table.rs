//! `WordTable` and `remap_documents`: the id cache of phase 1 (`crate::word_table`).

use super::text::PyTexts;
use super::vocabulary::{check_build_args, PyVocabulary};
use crate::word_table::{self, WordTable};
use numpy::{PyArray1, PyReadonlyArray1};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// Words numbered in the order they are first seen, with counts.
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
            inner: WordTable::from_words_text(data)?,
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
        let (stream, tokens) = py.detach(|| inner.encode(&strs))?;
        Ok((PyArray1::from_vec(py, stream), tokens))
    }

    /// Adds the tokens of a cached id stream to the counts; returns how many there were.
    fn recount(&mut self, py: Python<'_>, stream: PyReadonlyArray1<'_, u32>) -> PyResult<u64> {
        let stream = stream.as_slice()?;
        let inner = &mut self.inner;
        Ok(py.detach(|| inner.recount(stream))?)
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
        let (vocab, remap) = py.detach(|| inner.vocabulary(min_count, max_size))?;
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
    let (ids, offsets, used) = py.detach(|| word_table::remap_documents(stream, remap))?;
    Ok((
        PyArray1::from_vec(py, ids),
        PyArray1::from_vec(py, offsets),
        used,
    ))
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("END_OF_DOCUMENT", word_table::END_OF_DOCUMENT)?;
    m.add_class::<PyWordTable>()?;
    m.add_function(wrap_pyfunction!(remap_documents, m)?)
}
