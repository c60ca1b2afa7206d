//! Statements and DSL queries shaped to exhaust a thread's stack: the
//! shapes that used to abort the process are refused before parsing with
//! `QueryError::TooComplex`, the state is unchanged, and the deepest
//! shapes the limits let through plan and run on a 2 MiB test thread
//! (the stack size of the server's runtime threads).

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::Int64Type;
use valori_core::distance::Metric;
use valori_core::limits::{
    EXPRESSION_NESTING_MAX, EXPRESSION_TERM_TOKENS_MAX, EXPRESSION_TOKENS_MAX,
};
use valori_engine::Engine;
use valori_query::dsl::{self, DslError};
use valori_query::{QueryEngine, QueryError, datafusion};

use super::{block_on, create};

const TOKENS: usize = EXPRESSION_TOKENS_MAX as usize;
const NESTING: usize = EXPRESSION_NESTING_MAX as usize;
const TERM_TOKENS: usize = EXPRESSION_TERM_TOKENS_MAX as usize;

fn engine() -> (tempfile::TempDir, Arc<Engine>, QueryEngine) {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    create(&engine, "docs", 2, Metric::L2);
    let mut batch = valori_core::event::Batch::new(2);
    for id in 1..=4u64 {
        let v = valori_core::q16::quantize_vector(&[id as f32, 0.0]).unwrap();
        batch.push(valori_core::event::RecordId(id), &v, id % 2, &[]);
    }
    engine
        .submit(valori_core::event::Event::InsertBatch {
            collection: valori_core::event::CollectionName::new("docs").unwrap(),
            batch,
        })
        .unwrap();
    let query = QueryEngine::new(Arc::clone(&engine));
    (dir, engine, query)
}

fn too_complex(e: &QueryError) -> bool {
    matches!(e, QueryError::TooComplex(_)) && e.is_user_error()
}

/// The single value of a one-row, one-column result.
fn single_i64(batches: &[datafusion::arrow::array::RecordBatch]) -> i64 {
    let column = batches[0].column(0);
    let column =
        datafusion::arrow::compute::cast(column, &datafusion::arrow::datatypes::DataType::Int64)
            .unwrap();
    assert_eq!(column.len(), 1);
    column.as_primitive::<Int64Type>().value(0)
}

/// Proves the shapes — 10,000 and 20,000 `OR` terms, 50,000
/// `NOT`s, 20,000 nested parentheses — are refused through SQL and the
/// DSL with a user error, and leave the state as it was.
#[test]
fn deep_shapes_are_refused() {
    let (_dir, engine, query) = engine();
    let before = engine.proof().unwrap();
    let sql = [
        format!("SELECT 1 WHERE {}", vec!["1=1"; 10_000].join(" OR ")),
        format!("SELECT {}true", "NOT ".repeat(50_000)),
        format!("SELECT {}1{}", "(".repeat(20_000), ")".repeat(20_000)),
        format!("SELECT 1{}", "::bigint".repeat(20_000)),
    ];
    let dsl = [
        format!(
            "FROM docs NEAREST [1, 2] K 1 WHERE {}id = 1{}",
            "(".repeat(20_000),
            ")".repeat(20_000)
        ),
        format!(
            "FROM docs NEAREST [1, 2] K 1 WHERE {}id = 1",
            "NOT ".repeat(50_000)
        ),
        format!(
            "FROM docs NEAREST [1, 2] K 1 WHERE {}",
            vec!["id = 1"; 20_000].join(" OR ")
        ),
    ];
    block_on(async {
        for text in &sql {
            let e = query.sql(text).await.unwrap_err();
            assert!(too_complex(&e), "{}…: {e:?}", &text[..40]);
        }
        for text in &dsl {
            let e = dsl::run(&query, text, &BTreeMap::new()).await.unwrap_err();
            assert!(
                matches!(&e, DslError::Query(q) if too_complex(q)),
                "{}…: {e:?}",
                &text[..40]
            );
            assert!(e.is_user_error());
        }
    });
    assert_eq!(engine.proof().unwrap(), before);
}

/// Proves the deepest trees the limits admit are planned, optimized and
/// run correctly: a chain of `OR` at the token limit, casts and an
/// arithmetic filter at the term limit, as many such terms as the chain
/// limit allows,
/// runs of `NOT` and unary minus at the nesting limit, a left-deep `OR` that continues a group, parentheses
/// at the nesting limit, and the same shapes one token or level past the
/// limit refused. Expected values are computed here from the shape (an
/// even number of negations is the identity).
#[test]
fn deepest_admitted_shapes_run() {
    let (_dir, _engine, query) = engine();
    // `SELECT 1 WHERE` is 3 tokens, each `1=1` 3 and each `OR` 1.
    let terms = (TOKENS - 6) / 4 + 1;
    let or_chain = |n: usize| format!("SELECT 1 WHERE {}", vec!["1=1"; n].join(" OR "));
    let nots = |n: usize| format!("SELECT CAST({}true AS INT)", "NOT ".repeat(n));
    let minus = |n: usize| format!("SELECT {}7", "- ".repeat(n));
    // `::bigint` is 3 tokens (two colons and the type).
    let casts = |n: usize| format!("SELECT 7{}", "::bigint".repeat(n));
    // A group of (TOKENS / 2) tokens continued by a chain as long.
    let half = (TOKENS / 2 - 8) / 4;
    let continued = format!(
        "SELECT 1 WHERE ({}) OR {}",
        vec!["1=1"; half].join(" OR "),
        vec!["1=1"; half].join(" OR ")
    );
    let nested = |n: usize| format!("SELECT {}7{}", "(".repeat(n), ")".repeat(n));
    // The deepest arithmetic filter evaluated on every row of a table:
    // `WHERE` ends a term; `id` is 1 token, `>= 0` 3 (each operator
    // character counts), each `+ 0` 2. `+ 0` is the shape DataFusion's
    // simplifier takes longest over.
    let filter = |n: usize| {
        format!(
            "SELECT count(*) FROM docs WHERE id{} >= 0",
            " + 0".repeat(n)
        )
    };
    let n_filter = (TERM_TOKENS - 4) / 2;
    // As many such terms as the chain limit allows, joined by OR
    // (`SELECT count(*) FROM docs WHERE` is 7 tokens).
    let term = format!("id{} >= 0", " + 0".repeat(n_filter));
    let term_count = (TOKENS - 7) / (4 + 2 * n_filter + 1);
    let many_terms = format!(
        "SELECT count(*) FROM docs WHERE {}",
        vec![term.as_str(); term_count].join(" OR ")
    );
    block_on(async {
        assert_eq!(single_i64(&query.sql(&or_chain(terms)).await.unwrap()), 1);
        assert!(too_complex(
            &query.sql(&or_chain(terms + 1)).await.unwrap_err()
        ));
        // A run of prefix operators is nesting.
        assert_eq!(single_i64(&query.sql(&nots(NESTING)).await.unwrap()), 1);
        assert_eq!(single_i64(&query.sql(&nots(NESTING - 1)).await.unwrap()), 0);
        assert!(too_complex(
            &query.sql(&nots(NESTING + 1)).await.unwrap_err()
        ));
        assert_eq!(single_i64(&query.sql(&minus(NESTING)).await.unwrap()), 7);
        assert_eq!(
            single_i64(&query.sql(&minus(NESTING - 1)).await.unwrap()),
            -7
        );
        assert!(too_complex(
            &query.sql(&minus(NESTING + 1)).await.unwrap_err()
        ));
        // `SELECT` ends a term; `7` and each cast (3 tokens) count.
        let n = (TERM_TOKENS - 1) / 3;
        assert_eq!(single_i64(&query.sql(&casts(n)).await.unwrap()), 7);
        assert!(too_complex(&query.sql(&casts(n + 1)).await.unwrap_err()));
        assert_eq!(single_i64(&query.sql(&continued).await.unwrap()), 1);
        assert_eq!(single_i64(&query.sql(&nested(NESTING)).await.unwrap()), 7);
        assert_eq!(single_i64(&query.sql(&filter(n_filter)).await.unwrap()), 4);
        assert_eq!(single_i64(&query.sql(&many_terms).await.unwrap()), 4);
        assert!(too_complex(
            &query.sql(&filter(n_filter + 1)).await.unwrap_err()
        ));
        assert!(too_complex(
            &query.sql(&nested(NESTING + 1)).await.unwrap_err()
        ));
    });
}

/// Proves a DSL filter at the limits runs and answers what the filter
/// means: a chain of `OR`s as long as the token limit allows, a run of
/// `NOT`s at the nesting limit, and parentheses at the nesting limit (the rows matching
/// are worked out here from the filter's meaning).
#[test]
fn deepest_admitted_dsl_filters_run() {
    let (_dir, _engine, query) = engine();
    // `FROM docs NEAREST [1, 2] K 10 WHERE` is 8 tokens (the vector is a
    // group of 2), each `id = 3` 3, each `OR` 1.
    let head = "FROM docs NEAREST [1, 2] K 10 WHERE";
    let terms = (TOKENS - 8 - 3) / 4 + 1;
    let mut ors = vec!["id = 3".to_owned(); terms - 1];
    ors.push("id = 1".to_owned());
    let or_chain = format!("{head} {}", ors.join(" OR "));
    let nots = format!("{head} {}id = 1", "NOT ".repeat(NESTING - 1 + NESTING % 2));
    let nested = format!(
        "{head} {}tag = 1{}",
        "(".repeat(NESTING),
        ")".repeat(NESTING)
    );
    let ids = |out: valori_query::QueryOutput| {
        let mut ids: Vec<u64> = out
            .batches
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_primitive::<datafusion::arrow::datatypes::UInt64Type>()
                    .values()
                    .to_vec()
            })
            .collect();
        ids.sort_unstable();
        ids
    };
    block_on(async {
        let none = BTreeMap::new();
        assert_eq!(
            ids(dsl::run(&query, &or_chain, &none).await.unwrap()),
            [1, 3]
        );
        assert_eq!(
            ids(dsl::run(&query, &nots, &none).await.unwrap()),
            [2, 3, 4]
        );
        assert_eq!(ids(dsl::run(&query, &nested, &none).await.unwrap()), [1, 3]);
        let past = format!(
            "{head} {}tag = 1{}",
            "(".repeat(NESTING + 1),
            ")".repeat(NESTING + 1)
        );
        let e = dsl::run(&query, &past, &none).await.unwrap_err();
        assert!(matches!(&e, DslError::Query(q) if too_complex(q)), "{e:?}");
    });
}

/// Proves a statement that runs past the statement timeout is cancelled
/// with `QueryError::Timeout` (10^12 generated rows would take hours),
/// and one that needs more memory than the pool holds fails with
/// `QueryError::MemoryExhausted` (an `array_agg` of 50 million values
/// against a 16 MiB pool) instead of exhausting the process; both leave
/// the engine serving.
#[test]
fn timeout_and_memory_pool_bound_every_statement() {
    let (_dir, engine, _) = engine();
    let limits = valori_query::QueryLimits {
        statement_timeout: std::time::Duration::from_secs(3),
        memory_bytes: 16 << 20,
    };
    let query = QueryEngine::with_limits(Arc::clone(&engine), limits);
    block_on(async {
        let e = query
            .sql("SELECT count(*) FROM generate_series(1, 1000000000000)")
            .await
            .unwrap_err();
        assert!(
            matches!(e, QueryError::Timeout { after } if after == limits.statement_timeout),
            "{e:?}"
        );
        assert!(e.is_user_error());
        let e = dsl::run(&query, "FROM docs NEAREST [1, 0] K 2", &BTreeMap::new()).await;
        assert!(e.is_ok(), "{e:?}");
        let e = query
            .sql("SELECT array_agg(generate_series) FROM generate_series(1, 50000000)")
            .await
            .unwrap_err();
        assert!(matches!(e, QueryError::MemoryExhausted(_)), "{e:?}");
        assert!(e.is_user_error());
        assert_eq!(
            single_i64(&query.sql("SELECT count(*) FROM docs").await.unwrap()),
            4
        );
    });
}
