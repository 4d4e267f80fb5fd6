//! The crate's one error type. The binding module maps each variant to a Python
//! exception in a single place (`bindings/errors.rs`: `From<CssError> for PyErr`), as polars does.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum CssError {
    /// A setting outside its allowed range: names the field, the value and the range.
    #[error("{field} = {value} is invalid: {allowed}")]
    InvalidValue {
        field: String,
        value: String,
        allowed: String,
    },
    /// Input data that cannot be used (corrupt state, mismatched arrays, bad JSON).
    #[error("{0}")]
    InvalidData(String),
    /// The operation needs a built vocabulary or a trained model that is not there yet.
    #[error("{0}")]
    NotReady(String),
    /// Training stopped because the caller asked it to (Ctrl+C).
    #[error("training interrupted")]
    Interrupted,
}

impl CssError {
    pub fn invalid(field: &str, value: impl ToString, allowed: &str) -> Self {
        CssError::InvalidValue {
            field: field.to_string(),
            value: value.to_string(),
            allowed: allowed.to_string(),
        }
    }
}

pub type Result<T> = std::result::Result<T, CssError>;
