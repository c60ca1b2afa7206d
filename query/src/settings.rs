//! Per-session search settings: `SET valori.ef_search = N` and
//! `SET valori.exact = on` over the Postgres protocol, `EF` and `EXACT` in
//! the query DSL, `ef` and `exact` in REST and Python.
//!
//! A session's front end keeps its [`SearchSettings`] and passes them to
//! [`crate::QueryEngine::execute_with`] on every call. That call plans the
//! statement in its own copy of the DataFusion session state, with the
//! settings stored as the [`ValoriOptions`] configuration extension (the
//! `valori.` namespace), where the KNN rewrite reads them. Two calls with
//! different settings therefore never see each other's values, whatever
//! runs concurrently.

use datafusion::common::extensions_options;
use datafusion::config::ConfigExtension;
use valori_core::hnsw::SearchOptions;

/// How nearest-neighbour queries of one session are answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SearchSettings {
    /// Size of the HNSW result list; `None` takes the default (at least `k`).
    pub ef_search: Option<usize>,
    /// Brute force instead of the graph (same total order `(distance, id)`).
    pub exact: bool,
}

impl SearchSettings {
    /// The engine's default result-list size, used when `ef_search` is not
    /// set.
    pub fn default_ef() -> usize {
        SearchOptions::default().ef
    }

    /// The result-list size a search for `k` rows uses: the setting or the
    /// engine default, and never below `k` (the engine widens it to `k`
    /// itself; this is what EXPLAIN shows).
    pub fn effective_ef(&self, k: usize) -> usize {
        self.ef_search.unwrap_or_else(Self::default_ef).max(k)
    }
}

/// Which state a session's reads see (`SET valori.read_consistency`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ReadConsistency {
    /// This node's applied state (`applied`): on a follower of a cluster
    /// it may trail the leader by the entries in flight.
    #[default]
    Applied,
    /// Every write the cluster acknowledged before the read
    /// (`linearizable`): the read first waits at the engine's read barrier
    /// (`Engine::read_barrier`).
    Linearizable,
}

impl ReadConsistency {
    pub fn name(self) -> &'static str {
        match self {
            ReadConsistency::Applied => "applied",
            ReadConsistency::Linearizable => "linearizable",
        }
    }

    /// `applied` or `linearizable`, without regard to ASCII case.
    pub fn parse(value: &str) -> Option<ReadConsistency> {
        [ReadConsistency::Applied, ReadConsistency::Linearizable]
            .into_iter()
            .find(|c| value.eq_ignore_ascii_case(c.name()))
    }
}

extensions_options! {
    /// The session a statement runs in, as a configuration extension
    /// under the `valori_session.` prefix, for the functions that answer
    /// about it (`current_user`).
    pub struct SessionIdentity {
        /// The name the session logged in with; empty where it has none.
        pub user: String, default = String::new()
    }
}

impl ConfigExtension for SessionIdentity {
    const PREFIX: &'static str = "valori_session";
}

extensions_options! {
    /// [`SearchSettings`] as a DataFusion configuration extension under
    /// the `valori.` prefix (`valori.ef_search`, `valori.exact`).
    pub struct ValoriOptions {
        /// HNSW result-list size; 0 takes the engine default.
        pub ef_search: usize, default = 0
        /// Exact scan instead of the graph.
        pub exact: bool, default = false
    }
}

impl ConfigExtension for ValoriOptions {
    const PREFIX: &'static str = "valori";
}

impl From<&SearchSettings> for ValoriOptions {
    fn from(s: &SearchSettings) -> Self {
        ValoriOptions {
            ef_search: s.ef_search.unwrap_or(0),
            exact: s.exact,
        }
    }
}

impl From<&ValoriOptions> for SearchSettings {
    fn from(o: &ValoriOptions) -> Self {
        SearchSettings {
            ef_search: (o.ef_search > 0).then_some(o.ef_search),
            exact: o.exact,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves the round trip between the settings and the configuration
    /// extension, including "not set" as 0, and the effective ef.
    #[test]
    fn settings_round_trip_through_options() {
        for s in [
            SearchSettings::default(),
            SearchSettings {
                ef_search: Some(200),
                exact: false,
            },
            SearchSettings {
                ef_search: None,
                exact: true,
            },
        ] {
            assert_eq!(SearchSettings::from(&ValoriOptions::from(&s)), s);
        }
        let s = SearchSettings::default();
        assert_eq!(s.effective_ef(10), SearchOptions::default().ef.max(10));
        assert_eq!(s.effective_ef(1000), 1000);
        let s = SearchSettings {
            ef_search: Some(16),
            exact: false,
        };
        assert_eq!(s.effective_ef(10), 16);
        assert_eq!(s.effective_ef(40), 40);
    }
}
