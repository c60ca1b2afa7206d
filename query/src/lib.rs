//! The query layer over the engine: the DataFusion table provider, distance
//! UDFs, the KNN rewrite and the query DSL are built here.

pub use valori_engine as engine;
