//! SQL through the query layer against a real engine: exact KNN in SQL
//! agrees with `Collection::search_exact` on real vectors, literals
//! quantize like the engine, pushdown and error classification.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Float64Type, UInt64Type};
use valori_core::distance::{Distance, Metric};
use valori_core::event::{
    Batch, CollectionConfig, CollectionName, Event, IndexParams, Record, RecordId,
};
use valori_core::q16::quantize_vector;
use valori_engine::Engine;
use valori_query::{QueryEngine, QueryError, datafusion};

#[path = "query/bounds.rs"]
mod bounds;
#[path = "query/dsl.rs"]
mod dsl;
#[path = "query/knn.rs"]
mod knn;
#[path = "query/statement.rs"]
mod statement;

/// Rows of the GloVe base set loaded into each collection.
const ROWS: usize = 5_000;
/// Query vectors tried per check.
const QUERIES: usize = 5;
const K: usize = 10;
const TAGS: u64 = 10;

fn data_dir() -> PathBuf {
    match std::env::var_os("VALORI_DATA") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"),
    }
}

/// The id of row `i`: a permutation, so that id order is not row order.
fn id_of(i: usize) -> u64 {
    ((i * 7) % ROWS) as u64 * 3 + 11
}

fn name(s: &str) -> CollectionName {
    CollectionName::new(s).unwrap()
}

fn create(engine: &Engine, collection: &str, dim: u32, metric: Metric) {
    engine
        .submit(Event::CreateCollection {
            name: name(collection),
            config: CollectionConfig {
                dim,
                metric,
                index: IndexParams::default(),
            },
        })
        .unwrap();
}

struct Glove {
    _dir: tempfile::TempDir,
    engine: Arc<Engine>,
    query: QueryEngine,
    base: Vec<Vec<f32>>,
    queries: Vec<Vec<f32>>,
}

/// An engine holding the first ROWS GloVe vectors in three collections
/// (l2, inner product, cosine), with ids `id_of(i)` and tags `i % TAGS`.
fn glove() -> Glove {
    let dir = data_dir().join("glove50-100k-l2");
    let base = valori_columnar::texmex::read_fvecs(&dir.join("base.fvecs")).unwrap();
    let queries = valori_columnar::texmex::read_fvecs(&dir.join("query.fvecs")).unwrap();
    assert!(base.rows >= ROWS && queries.rows >= QUERIES);
    let base: Vec<Vec<f32>> = (0..ROWS).map(|i| base.row(i).to_vec()).collect();
    let queries: Vec<Vec<f32>> = (0..QUERIES).map(|i| queries.row(i).to_vec()).collect();
    let tmp = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(tmp.path()).unwrap());
    let dim = base[0].len() as u32;
    for (collection, metric) in [
        ("docs", Metric::L2),
        ("docs_ip", Metric::InnerProduct),
        ("docs_cos", Metric::Cosine),
    ] {
        create(&engine, collection, dim, metric);
        for chunk in (0..ROWS).collect::<Vec<_>>().chunks(1000) {
            let mut batch = Batch::new(dim);
            for &i in chunk {
                let vector = quantize_vector(&base[i]).unwrap();
                batch.push(RecordId(id_of(i)), &vector, i as u64 % TAGS, b"");
            }
            engine
                .submit(Event::InsertBatch {
                    collection: name(collection),
                    batch,
                })
                .unwrap();
        }
    }
    let query = QueryEngine::new(Arc::clone(&engine));
    Glove {
        _dir: tmp,
        engine,
        query,
        base,
        queries,
    }
}

/// pgvector's text form; `f32`'s Display is the shortest string that
/// parses back to the same float.
fn literal(v: &[f32]) -> String {
    let parts: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    format!("[{}]", parts.join(","))
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// `(id, value)` rows of a two-column result.
fn id_values(batches: &[RecordBatch]) -> Vec<(u64, f64)> {
    let mut out = Vec::new();
    for b in batches {
        let ids = b.column(0).as_primitive::<UInt64Type>();
        let values = b.column(1).as_primitive::<Float64Type>();
        for i in 0..b.num_rows() {
            out.push((ids.value(i), values.value(i)));
        }
    }
    out
}

fn ids(batches: &[RecordBatch]) -> Vec<u64> {
    batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<UInt64Type>().values().to_vec())
        .collect()
}

fn exact(g: &Glove, collection: &str, q: &[f32], tag: Option<u64>) -> Vec<(Distance, RecordId)> {
    let q = quantize_vector(q).unwrap();
    g.engine
        .read(|s| {
            s.collection(&name(collection))
                .unwrap()
                .search_exact(&q, K, tag)
        })
        .unwrap()
}

/// Proves that exact SQL top-k — `ORDER BY <distance>, id LIMIT k`, with
/// and without a tag filter — returns exactly the ids, in order, of
/// `search_exact` for all three metrics on real GloVe vectors, and that
/// each value is the engine's exact key scaled as documented.
#[test]
fn sql_top_k_equals_search_exact() {
    let g = glove();
    block_on(async {
        for q in &g.queries {
            let lit = literal(q);
            for tag in [None, Some(7)] {
                let filter = tag.map_or(String::new(), |t| format!("WHERE tag = {t}"));
                let expected = exact(&g, "docs", q, tag);
                let expected_ids: Vec<u64> = expected.iter().map(|(_, id)| id.0).collect();
                assert_eq!(expected.len(), K);

                // l2: sqrt(key) / 2^16.
                let sql = format!(
                    "SELECT id, l2(vec, '{lit}') AS d FROM docs {filter} ORDER BY d, id LIMIT {K}"
                );
                let rows = id_values(&g.query.sql(&sql).await.unwrap());
                assert_same_order(&rows, &expected_ids, &sql);
                for ((_, d), (key, _)) in rows.iter().zip(&expected) {
                    assert_eq!(*d, (key.0 as f64).sqrt() / 65536.0);
                }

                // l2_squared: key / 2^32.
                let sql = format!(
                    "SELECT id, l2_squared(vec, '{lit}') AS d FROM docs {filter} ORDER BY d, id LIMIT {K}"
                );
                let rows = id_values(&g.query.sql(&sql).await.unwrap());
                assert_same_order(&rows, &expected_ids, &sql);
                assert_values_are_keys(&rows, &expected);

                // Inner product: the key is −dot; ascending by
                // negative_inner_product, or descending by inner_product.
                let expected = exact(&g, "docs_ip", q, tag);
                let expected_ids: Vec<u64> = expected.iter().map(|(_, id)| id.0).collect();
                let sql = format!(
                    "SELECT id, negative_inner_product(vec, '{lit}') AS d FROM docs_ip {filter} ORDER BY d, id LIMIT {K}"
                );
                let rows = id_values(&g.query.sql(&sql).await.unwrap());
                assert_same_order(&rows, &expected_ids, &sql);
                assert_values_are_keys(&rows, &expected);
                let sql = format!(
                    "SELECT id, inner_product(vec, '{lit}') AS p FROM docs_ip {filter} ORDER BY p DESC, id LIMIT {K}"
                );
                let rows = id_values(&g.query.sql(&sql).await.unwrap());
                assert_same_order(&rows, &expected_ids, &sql);

                // Cosine: key / 2^32.
                let expected = exact(&g, "docs_cos", q, tag);
                let expected_ids: Vec<u64> = expected.iter().map(|(_, id)| id.0).collect();
                let sql = format!(
                    "SELECT id, cosine_distance(vec, '{lit}') AS d FROM docs_cos {filter} ORDER BY d, id LIMIT {K}"
                );
                let rows = id_values(&g.query.sql(&sql).await.unwrap());
                assert_same_order(&rows, &expected_ids, &sql);
                assert_values_are_keys(&rows, &expected);
            }
        }
    });
}

/// Proves that a literal goes through the same quantization as the
/// engine's writes: every sampled row is at distance exactly 0 from its
/// own floats written as a literal, and the query also accepts the same
/// vector as an array of floats.
#[test]
fn literals_quantize_like_writes() {
    let g = glove();
    block_on(async {
        for i in (0..ROWS).step_by(250) {
            let lit = literal(&g.base[i]);
            let sql = format!("SELECT id FROM docs WHERE l2_squared(vec, '{lit}') = 0 ORDER BY id");
            let found = ids(&g.query.sql(&sql).await.unwrap());
            assert!(found.contains(&id_of(i)), "row {i}: {found:?}");

            let array = lit.clone();
            let sql = format!(
                "SELECT id FROM docs WHERE l2_squared(vec, make_array{}) = 0 ORDER BY id",
                array.replace('[', "(").replace(']', ")")
            );
            let found = ids(&g.query.sql(&sql).await.unwrap());
            assert!(found.contains(&id_of(i)), "row {i} as array: {found:?}");
        }
    });
}

/// Proves the scan applies `tag = n` itself (no FilterExec remains) and
/// returns exactly the live rows with that tag; a filter it cannot apply
/// stays in the plan.
#[test]
fn tag_filter_is_pushed_into_the_scan() {
    let g = glove();
    block_on(async {
        let plan = g
            .query
            .sql("EXPLAIN SELECT id FROM docs WHERE tag = 7")
            .await
            .unwrap();
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&plan)
            .unwrap()
            .to_string();
        assert!(!text.contains("FilterExec"), "{text}");
        let plan = g
            .query
            .sql("EXPLAIN SELECT id FROM docs WHERE tag > 7")
            .await
            .unwrap();
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&plan)
            .unwrap()
            .to_string();
        assert!(text.contains("FilterExec"), "{text}");

        let mut expected: Vec<u64> = (0..ROWS)
            .filter(|i| *i as u64 % TAGS == 7)
            .map(id_of)
            .collect();
        expected.sort_unstable();
        let got = ids(&g
            .query
            .sql("SELECT id FROM docs WHERE tag = 7 ORDER BY id")
            .await
            .unwrap());
        assert_eq!(got, expected);
        let got = ids(&g
            .query
            .sql("SELECT id FROM docs WHERE tag = 7 AND 7 = tag ORDER BY id")
            .await
            .unwrap());
        assert_eq!(got, expected);
        let got = ids(&g
            .query
            .sql("SELECT id FROM docs WHERE tag = 7 AND tag = 8")
            .await
            .unwrap());
        assert!(got.is_empty());

        // LIMIT without ORDER BY: the first live matching rows in row order.
        let got = ids(&g
            .query
            .sql("SELECT id FROM docs WHERE tag = 3 LIMIT 4")
            .await
            .unwrap());
        let expected: Vec<u64> = (0..ROWS)
            .filter(|i| *i as u64 % TAGS == 3)
            .take(4)
            .map(id_of)
            .collect();
        assert_eq!(got, expected);
    });
}

/// Proves the distance functions read the stored integers through
/// `vec_q16` even where the `f32` view rounds (a raw 2^24 + 1 shows as
/// 256.0), and documents the fallback when only the view is in scope.
#[test]
fn raw_values_beyond_f32_stay_exact() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    create(&engine, "wide", 2, Metric::L2);
    engine
        .submit(Event::Insert {
            collection: name("wide"),
            record: Record {
                id: RecordId(1),
                vector: vec![(1 << 24) + 1, 0],
                tag: 0,
                metadata: Vec::new(),
            },
        })
        .unwrap();
    let query = QueryEngine::new(engine);
    block_on(async {
        let value = |batches: Vec<RecordBatch>| -> f64 {
            batches[0].column(0).as_primitive::<Float64Type>().value(0)
        };
        // (2^24 + 1)² = 2^48 + 2^25 + 1 is exact in f64; / 2^32 too.
        let exact = 16_777_217f64 * 16_777_217f64 / 4_294_967_296.0;
        let got = value(
            query
                .sql("SELECT l2_squared(vec, '[0,0]') FROM wide")
                .await
                .unwrap(),
        );
        assert_eq!(got, exact);
        let got = value(
            query
                .sql("SELECT l2_squared(w.vec, '[0,0]') FROM (SELECT vec, vec_q16 FROM wide) AS w")
                .await
                .unwrap(),
        );
        assert_eq!(got, exact);
        // Only the f32 view in scope: 256.0 quantizes to 2^24, and
        // (2^24)² / 2^32 = 65536.
        let got = value(
            query
                .sql("SELECT l2_squared(v, '[0,0]') FROM (SELECT vec AS v FROM wide)")
                .await
                .unwrap(),
        );
        assert_eq!(got, 65536.0);
        // The column is named as Postgres names a call, by its function
        // (the KNN rewrite does not change it); an operator is `?column?`.
        let batches = query
            .sql("SELECT l2(vec, '[0,0]') FROM wide")
            .await
            .unwrap();
        assert_eq!(batches[0].schema().field(0).name(), "l2");
        let batches = query.sql("SELECT vec <-> '[0,0]' FROM wide").await.unwrap();
        assert_eq!(batches[0].schema().field(0).name(), "?column?");
    });
}

/// Proves errors say who is at fault: bad vectors and bad statements are
/// the user's, and writes over SQL are refused without touching the
/// state.
#[test]
fn errors_are_classified() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    create(&engine, "docs", 2, Metric::L2);
    let before = engine.proof().unwrap();
    let query = QueryEngine::new(Arc::clone(&engine));
    block_on(async {
        let e = query.sql("SELECT l2(vec, '[1,nan]') FROM docs").await;
        // The table is empty: the function never runs, so no error.
        assert!(e.is_ok());
        let e = query
            .sql("SELECT l2('[1,2]', '[1,nan]')")
            .await
            .unwrap_err();
        assert!(matches!(e, QueryError::Vector(_)), "{e:?}");
        assert!(e.is_user_error());
        assert!(e.to_string().contains("component 1 (nan)"), "{e}");
        let e = query
            .sql("SELECT l2('[1,2]', '[1,2,3]')")
            .await
            .unwrap_err();
        assert!(matches!(e, QueryError::Vector(_)), "{e:?}");
        let e = query.sql("SELECT * FROM missing").await.unwrap_err();
        assert!(matches!(e, QueryError::Invalid(_)), "{e:?}");
        let e = query
            .sql("SELECT l2(id, '[1,2]') FROM docs")
            .await
            .unwrap_err();
        assert!(matches!(e, QueryError::Invalid(_)), "{e:?}");
        for write in [
            "INSERT INTO docs (id, tag) VALUES (1, 2)",
            "CREATE TABLE t (x INT)",
            "DELETE FROM docs",
            "DROP TABLE docs",
        ] {
            let e = query.sql(write).await.unwrap_err();
            assert!(e.is_user_error(), "{write}: {e:?}");
        }
    });
    assert_eq!(engine.proof().unwrap(), before);
}

/// The SQL rows come in the engine's exact order.
fn assert_same_order(rows: &[(u64, f64)], expected_ids: &[u64], sql: &str) {
    let ids: Vec<u64> = rows.iter().map(|r| r.0).collect();
    assert_eq!(ids, expected_ids, "{sql}");
}

/// Each SQL value is the engine's exact key scaled by 2^-32.
fn assert_values_are_keys(rows: &[(u64, f64)], expected: &[(Distance, RecordId)]) {
    for ((_, d), (key, _)) in rows.iter().zip(expected) {
        assert_eq!(*d, key.0 as f64 / 4_294_967_296.0);
    }
}
