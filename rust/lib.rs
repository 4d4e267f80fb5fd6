//! css-rs core: Compressive Semantic Spectroscopy in pure Rust.
//!
//! Every module here is plain Rust and knows nothing of Python, so `cargo test` and
//! `cargo bench` run without an interpreter. The one PyO3 module, `bindings`, is compiled only
//! with the `python` feature that maturin enables.

pub mod distributed;
pub mod error;
pub mod kernels;
pub mod queries;
pub mod rng;
pub mod sampler;
pub mod senses;
pub mod spectra;
pub mod tokenizer;
pub mod trainer;
pub mod vocabulary;
pub mod word_table;

#[cfg(feature = "python")]
mod bindings;

pub use error::{CssError, Result};
pub use spectra::Spectra;
pub use trainer::{Corpus, Progress, TrainParams, Trainer};
pub use vocabulary::Vocabulary;
