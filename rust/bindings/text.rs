//! Python text arguments as Rust strings: one text, or an iterable of them read without the GIL.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

/// Texts taken from a Python iterable of `str`, readable without the GIL.
///
/// Each string is encoded to UTF-8 once, by CPython (`PyUnicode_AsUTF8String`); the bytes
/// objects are kept alive here and read in place, so nothing is copied a second time. A string
/// with lone surrogates (e.g. bytes decoded with `surrogateescape`) cannot be encoded strictly:
/// it is converted lossily (U+FFFD) into an owned string instead.
pub(super) struct PyTexts<'py> {
    encoded: Vec<Bound<'py, PyBytes>>,
    lossy: Vec<String>,
    /// For each text in order: (taken from `encoded`?, index in that vector).
    order: Vec<(bool, usize)>,
}

impl<'py> PyTexts<'py> {
    /// A non-`str` item raises `TypeError` naming its index.
    pub(super) fn extract(texts: &Bound<'py, PyAny>) -> PyResult<Self> {
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
    pub(super) fn strs(&self) -> Vec<&str> {
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

pub(super) fn text_of(text: &Bound<'_, PyAny>) -> PyResult<String> {
    let s = text
        .cast::<PyString>()
        .map_err(|_| PyTypeError::new_err("text must be str"))?;
    Ok(owned_text(s))
}
