//! The KNN rewrite: `ORDER BY <distance>(vec, <constant>) LIMIT k` over a
//! collection becomes one engine search instead of a scan and a sort.
//!
//! - [`KnnRule`] (a logical optimizer rule, run after DataFusion's own
//!   rules) recognises the pattern and replaces it with a [`KnnNode`];
//! - [`KnnPlanner`] (an extension planner, installed by
//!   [`ValoriQueryPlanner`]) turns the node into a [`ValoriKnnExec`];
//! - [`ValoriKnnExec`] calls `Collection::search` under the engine's read
//!   lock and emits the rows, their distance and their rank.
//!
//! `EXPLAIN` shows the node as
//! `ValoriKnnExec: collection=docs k=10 ef=64 tag=7 path=hnsw distance=l2`
//! (then `filter=…` when there is a residual filter): `k` is LIMIT plus
//! OFFSET, `ef` the result-list size the search uses (the session's
//! `ef_search` or the engine default, at least `k`), `tag` the tag or tag
//! set searched (absent when any), and `path` the way the engine answers
//! as planned — `exact` when the session asks for it, when the collection
//! has no index yet, or when the tag is held by at most one row in
//! `FILTER_EXACT_RATIO` (scanning those rows is cheaper), `hnsw`
//! otherwise, `mixed` for a tag set searched both ways, `filtered` when a
//! residual filter decides at run time (below). `EXPLAIN ANALYZE` adds
//! the number of `candidates` the engine returned and `filter_rows`, the
//! rows a residual filter evaluated first kept.
//!
//! # What is rewritten
//!
//! A `Sort` with a fetch (ORDER BY … LIMIT, with or without OFFSET) whose
//!
//! - first key is a distance function of the table's `vec` (or `vec_q16`)
//!   column and a constant vector (a literal, or a bound `$n` parameter),
//!   either directly or through a column of the projection below it, in
//!   the direction in which smaller is nearer (ascending; descending for
//!   `inner_product`);
//! - only other key, if any, is `id` ascending (the tie-break the node
//!   applies anyway);
//! - function follows the collection's metric: `l2` or `l2_squared` for
//!   `l2`, `negative_inner_product` (ascending) or `inner_product`
//!   (descending) for `inner_product`, `cosine_distance` for `cosine`;
//!
//! and whose input is a chain of projections, filters and aliases over a
//! scan of one collection (the distance may sit in any projection of the
//! chain, for example as a common subexpression; each column and filter is
//! restated over the scan's columns), with no volatile value in the chain.
//! Anything else keeps DataFusion's plan, so the rewrite never changes
//! which queries are accepted. Placeholders bound with
//! [`QueryEngine::execute_with_params`](crate::QueryEngine::execute_with_params)
//! are constants by the time the rule runs.
//!
//! # Filters
//!
//! Conjuncts `tag = n`, `tag IN (…)` and disjunctions of `tag = n` become
//! the search's tag set: one engine search per tag, merged in
//! `(distance, id)` order. Every other conjunct (the *residual*: any
//! column, ranges, `IN`, `LIKE`, `IS NULL`, JSON operators, boolean
//! combinations) is evaluated by the node, in one of two ways chosen per
//! query from its selectivity, estimated on an even-stride sample of up
//! to 1,024 of the rows the tags allow (the same rows for the same state):
//!
//! - a filter keeping fewer than one sampled row in four is evaluated on
//!   every row the tags allow first (reading only the columns it names),
//!   and the engine searches among the rows it keeps
//!   (`Collection::search_among`): exactly when they are at most one live
//!   row in `FILTER_EXACT_RATIO`, else by a walk of the graph that keeps
//!   only them — the two ways a tag filter is searched;
//! - a broader one is applied to candidates: the node asks the engine for
//!   four times `k` candidates and, while fewer than `k` pass, asks again
//!   for four times as many, until `k` pass or every row the tags allow
//!   has been a candidate.
//!
//! Either way a query asking for `k` rows gets `k` rows when `k` rows
//! match, and the filter sees the state the search reads (one read lock).
//!
//! # Order and exactness
//!
//! Rows come in the engine's total order: the exact integer key, then the
//! id. That is the order of `ORDER BY d, id` and refines `ORDER BY d` (ties
//! by id). With `exact` set (or when the engine chooses an exact scan
//! because the index does not cover the rows or the tag filter is
//! selective), each search is exact, and an exact top-`m` filtered by the
//! residual keeps the exact top-`k` of the filtered rows, so the answer is
//! exactly the exact plan's. Through the graph it is approximate, as HNSW
//! is.
//!
//! Two different keys can round to the same `f64` value only far from the
//! query (for `l2`, keys above 2^51 raw units, a distance above 724; for
//! the others above 2^53); there the node orders by the exact key where
//! DataFusion's sort would order by the rounded value.

mod exec;
mod node;
mod rule;

pub use exec::{KnnPlanner, ValoriKnnExec, ValoriQueryPlanner};

pub use node::KnnNode;
pub use rule::KnnRule;

use datafusion::common::ScalarValue;
use valori_core::event::CollectionName;

use crate::functions::{Argument, DistanceFunction};
use crate::settings::SearchSettings;

/// The node's distance column: the function's value, as the UDF computes
/// it.
pub const DISTANCE_COLUMN: &str = "__valori_distance";
/// The node's rank column: 0 for the nearest row. A sort on it above the
/// node keeps the node's order through DataFusion's physical optimizer.
pub const RANK_COLUMN: &str = "__valori_rank";

/// Which tags a search keeps.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TagSet {
    Any,
    /// Sorted, without duplicates; empty means no row matches.
    Only(Vec<u64>),
}

impl TagSet {
    /// The tags both sets keep.
    pub fn intersect(&self, other: &TagSet) -> TagSet {
        match (self, other) {
            (TagSet::Any, t) | (t, TagSet::Any) => t.clone(),
            (TagSet::Only(a), TagSet::Only(b)) => {
                TagSet::Only(a.iter().copied().filter(|t| b.contains(t)).collect())
            }
        }
    }

    /// A set of the given tags.
    pub fn of(tags: impl IntoIterator<Item = u64>) -> TagSet {
        let mut tags: Vec<u64> = tags.into_iter().collect();
        tags.sort_unstable();
        tags.dedup();
        TagSet::Only(tags)
    }
}

impl std::fmt::Display for TagSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TagSet::Any => f.write_str("any"),
            TagSet::Only(tags) if tags.len() == 1 => write!(f, "{}", tags[0]),
            TagSet::Only(tags) => {
                let parts: Vec<String> = tags.iter().map(u64::to_string).collect();
                write!(f, "[{}]", parts.join(", "))
            }
        }
    }
}

/// The vector a search looks near.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum QueryVector {
    /// Written in the statement, quantized as the function quantizes it.
    Given(Vec<i32>),
    /// A placeholder (`$1`), bound at each execution from the
    /// [`BoundParams`] of the task: a prepared statement is planned once
    /// and searches with a new vector every time it runs.
    Param { id: String, argument: Argument },
}

impl std::fmt::Display for QueryVector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueryVector::Given(v) => write!(f, "[{} dimensions]", v.len()),
            QueryVector::Param { id, .. } => f.write_str(id),
        }
    }
}

/// The values of a statement's placeholders for one execution, in order
/// (`$1` first), carried to the plan's nodes in the task's session
/// configuration.
#[derive(Clone, Debug, Default)]
pub struct BoundParams(pub Vec<ScalarValue>);

impl BoundParams {
    /// The value of placeholder `id` (`$n`).
    pub fn get(&self, id: &str) -> Option<&ScalarValue> {
        let n: usize = id.strip_prefix('$')?.parse().ok()?;
        self.0.get(n.checked_sub(1)?)
    }
}

/// What the node asks of the engine.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KnnSearch {
    pub collection: CollectionName,
    /// Which creation of the name the plan was made for.
    pub incarnation: u64,
    pub function: DistanceFunction,
    pub query: QueryVector,
    /// Rows to return (the sort's fetch: LIMIT plus OFFSET).
    pub k: usize,
    pub tags: TagSet,
    /// Placeholders compared with the tag (`tag = $2`): each bound value
    /// narrows `tags` at execution.
    pub tag_params: Vec<String>,
    pub settings: SearchSettings,
    /// The table's columns the node emits (indices into the table schema),
    /// before the distance and rank columns.
    pub projection: Vec<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves tag-set intersection and display.
    #[test]
    fn tag_sets_intersect() {
        let a = TagSet::of([7, 3, 3]);
        assert_eq!(a, TagSet::Only(vec![3, 7]));
        assert_eq!(TagSet::Any.intersect(&a), a);
        assert_eq!(a.intersect(&TagSet::Any), a);
        assert_eq!(a.intersect(&TagSet::of([7, 9])), TagSet::Only(vec![7]));
        assert_eq!(a.intersect(&TagSet::of([9])), TagSet::Only(vec![]));
        assert_eq!(TagSet::Only(vec![7]).to_string(), "7");
        assert_eq!(a.to_string(), "[3, 7]");
        assert_eq!(TagSet::Only(vec![]).to_string(), "[]");
    }
}
