//! The PyO3 module `css_rs._core`: one binding file per core module, each converting types
//! and releasing the GIL around long calls; errors become Python exceptions in one place
//! (`errors`, `From<CssError> for PyErr`), so every binding propagates them with `?`.

mod distributed;
mod errors;
mod senses;
mod spectra;
mod text;
mod tokenizer;
mod trainer;
mod vocabulary;
mod word_table;

use pyo3::prelude::*;

#[pymodule]
#[pyo3(name = "_core")]
fn core_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::register(m)?;
    m.add_class::<tokenizer::PyTokenizer>()?;
    m.add_class::<vocabulary::PyVocabulary>()?;
    m.add_function(wrap_pyfunction!(trainer::kernels, m)?)?;
    m.add_function(wrap_pyfunction!(trainer::engine_defaults, m)?)?;
    m.add_class::<trainer::PyTrainer>()?;
    m.add_class::<trainer::PyProgress>()?;
    m.add_class::<trainer::PyTrainingState>()?;
    m.add_class::<spectra::PySpectra>()?;
    m.add_class::<senses::PySenseSettings>()?;
    distributed::register(m)?;
    word_table::register(m)?;
    Ok(())
}
