//! Per-session search settings: `SET valori.ef_search = N` and
//! `SET valori.exact = on` over the Postgres protocol, `EF` and `EXACT` in
//! the query DSL, `ef` and `exact` in REST and Python.

/// How nearest-neighbour queries of one session are answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SearchSettings {
    /// Size of the HNSW result list; `None` takes the default (at least `k`).
    pub ef_search: Option<usize>,
    /// Brute force instead of the graph (same total order `(distance, id)`).
    pub exact: bool,
}
