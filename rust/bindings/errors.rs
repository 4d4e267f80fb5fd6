//! The crate's errors as Python exceptions, in one place (as polars' `error.rs`):
//! `From<CssError> for PyErr`, so every binding propagates a `CssError` with `?`. The
//! exception classes are made here, once; `css_rs.errors` re-exports them, so an error of the
//! engine reaches Python already typed and no Python code re-wraps it.
//!
//! | `CssError`                      | Python exception                            |
//! |---------------------------------|---------------------------------------------|
//! | `InvalidValue`, `InvalidData`   | `InputError(CssRsError, ValueError)`        |
//! | `NotReady`                      | `NotReadyError(CssRsError, RuntimeError)`   |
//! | `Interrupted`                   | `KeyboardInterrupt`                         |

use crate::error::CssError;
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyKeyboardInterrupt, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

/// Where the classes live for Python (their `__module__`): pickling and tracebacks name it.
const MODULE: &str = "css_rs.errors";

create_exception!(
    css_rs.errors,
    CssRsError,
    PyException,
    "A failure css-rs can explain in one line (exit code 1 on the command line)."
);

static INPUT_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static NOT_READY_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// Bad input or usage: names the file, field or value and what is allowed (exit code 2). A
/// `ValueError` too, so `except ValueError` callers keep catching it.
pub(super) fn input_error(py: Python<'_>) -> PyResult<Bound<'_, PyType>> {
    let ty = INPUT_ERROR.get_or_try_init(py, || {
        subclass_of_both(
            py,
            "InputError",
            py.get_type::<PyValueError>(),
            "Bad input or usage: names the file, field or value and what is allowed \
             (exit code 2).",
        )
    })?;
    Ok(ty.bind(py).clone())
}

/// An operation that needs something not made yet (e.g. encoding with a vocabulary that is
/// not built). A `RuntimeError` too.
pub(super) fn not_ready_error(py: Python<'_>) -> PyResult<Bound<'_, PyType>> {
    let ty = NOT_READY_ERROR.get_or_try_init(py, || {
        subclass_of_both(
            py,
            "NotReadyError",
            py.get_type::<PyRuntimeError>(),
            "An operation that needs something not made yet, such as a built vocabulary.",
        )
    })?;
    Ok(ty.bind(py).clone())
}

/// A subclass of `CssRsError` and of a builtin exception. `create_exception!` takes one base
/// only, so these are made as Python makes any class: `type(name, bases, namespace)`.
fn subclass_of_both(
    py: Python<'_>,
    name: &str,
    builtin: Bound<'_, PyType>,
    doc: &str,
) -> PyResult<Py<PyType>> {
    let bases = PyTuple::new(py, [py.get_type::<CssRsError>(), builtin])?;
    let namespace = PyDict::new(py);
    namespace.set_item("__module__", MODULE)?;
    namespace.set_item("__doc__", doc)?;
    let made = py
        .get_type::<PyType>()
        .call1((name, bases, namespace))?
        .cast_into::<PyType>()?;
    Ok(made.unbind())
}

impl From<CssError> for PyErr {
    fn from(err: CssError) -> PyErr {
        let message = err.to_string();
        let class = match err {
            CssError::Interrupted => return PyKeyboardInterrupt::new_err(message),
            CssError::NotReady(_) => not_ready_error,
            CssError::InvalidValue { .. } | CssError::InvalidData(_) => input_error,
        };
        Python::attach(|py| match class(py) {
            Ok(ty) => PyErr::from_type(ty, message),
            Err(e) => e,
        })
    }
}

/// Adds the exception classes to the module `m`.
pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("CssRsError", py.get_type::<CssRsError>())?;
    m.add("InputError", input_error(py)?)?;
    m.add("NotReadyError", not_ready_error(py)?)?;
    Ok(())
}
