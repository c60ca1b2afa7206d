//! Python bindings: a thin shim over the engine and the query layer, with
//! no logic of its own. The pyo3 module is built here with maturin.
