//! `css_rs.Tokenizer`: the Rust tokenizer.

use super::text::{text_of, PyTexts};
use crate::tokenizer;
use pyo3::prelude::*;

/// Lowercases and splits text into words (letters and digits of every script, and `_`).
#[pyclass(name = "Tokenizer", module = "css_rs._core", frozen)]
pub(super) struct PyTokenizer;

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
