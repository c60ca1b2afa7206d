//! The KNN rewrite on real vectors: with `exact` it returns exactly what
//! DataFusion's own plan (the rule removed) returns, in the same order;
//! through the graph its recall@10 against the data set's ground truth is
//! high; EXPLAIN shows the node and its path; per-call settings do not
//! leak between concurrent calls.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::execution::context::SessionContext;
use valori_core::distance::Metric;
use valori_core::event::{Batch, Event, Record, RecordId};
use valori_core::q16::quantize_vector;
use valori_engine::Engine;
use valori_query::settings::SearchSettings;
use valori_query::{QueryEngine, QueryError, SQL_BYTES_MAX, datafusion};

use super::{block_on, create, data_dir, id_values, ids, literal, name};

pub(super) const EXACT: SearchSettings = SearchSettings {
    ef_search: None,
    exact: true,
};
pub(super) const GRAPH: SearchSettings = SearchSettings {
    ef_search: None,
    exact: false,
};

pub(super) struct Data {
    pub(super) base: Vec<Vec<f32>>,
    pub(super) queries: Vec<Vec<f32>>,
    /// Exact top-100 base rows per query, under L2 on the floats.
    truth: Vec<Vec<usize>>,
}

pub(super) fn load(set: &str, rows: usize, queries: usize) -> Data {
    let dir = data_dir().join(set);
    let base = valori_columnar::texmex::read_fvecs(&dir.join("base.fvecs")).unwrap();
    let q = valori_columnar::texmex::read_fvecs(&dir.join("query.fvecs")).unwrap();
    let gt = valori_columnar::texmex::read_ivecs(&dir.join("groundtruth.ivecs")).unwrap();
    let rows = rows.min(base.rows);
    let queries = queries.min(q.rows);
    Data {
        base: (0..rows).map(|i| base.row(i).to_vec()).collect(),
        queries: (0..queries).map(|i| q.row(i).to_vec()).collect(),
        truth: (0..queries)
            .map(|i| gt.row(i).iter().map(|&r| r as usize).collect())
            .collect(),
    }
}

/// Loads `data` into one collection per `(name, metric)`, with ids from
/// `id` and tags `row % tags`, and waits for the index.
fn engine_with(
    data: &Data,
    collections: &[(&str, Metric)],
    id: &dyn Fn(usize) -> u64,
    tags: u64,
) -> (tempfile::TempDir, Arc<Engine>) {
    let tmp = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(tmp.path()).unwrap());
    let dim = data.base[0].len() as u32;
    for &(collection, metric) in collections {
        create(&engine, collection, dim, metric);
        let rows: Vec<usize> = (0..data.base.len()).collect();
        for chunk in rows.chunks(2000) {
            let mut batch = Batch::new(dim);
            for &i in chunk {
                let vector = quantize_vector(&data.base[i]).unwrap();
                batch.push(RecordId(id(i)), &vector, i as u64 % tags, b"");
            }
            engine
                .submit(Event::InsertBatch {
                    collection: name(collection),
                    batch,
                })
                .unwrap();
        }
    }
    engine.wait_for_index().unwrap();
    (tmp, engine)
}

/// A session over `engine` without the KNN rule: DataFusion's own plan,
/// the reference the rewrite must match.
pub(super) fn plain(engine: &Arc<Engine>) -> SessionContext {
    let ctx = valori_query::session(Arc::clone(engine));
    assert!(ctx.remove_optimizer_rule("valori_knn"));
    ctx
}

pub(super) async fn plain_rows(ctx: &SessionContext, sql: &str) -> Vec<(u64, f64)> {
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    id_values(&batches)
}

pub(super) async fn run(q: &QueryEngine, sql: &str, settings: &SearchSettings) -> Vec<RecordBatch> {
    match q.execute_with(sql, settings).await {
        Ok(out) => out.batches,
        Err(e) => panic!("{sql}: {e}"),
    }
}

pub(super) async fn explain(q: &QueryEngine, sql: &str, settings: &SearchSettings) -> String {
    let batches = run(q, &format!("EXPLAIN {sql}"), settings).await;
    datafusion::arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string()
}

/// The `ValoriKnnExec` line of a plan, trimmed of the table's borders.
pub(super) fn knn_line(plan: &str) -> Option<String> {
    plan.lines()
        .find_map(|l| l.find("ValoriKnnExec:").map(|i| l[i..].to_owned()))
        .map(|l| l.trim_end_matches(['|', ' ']).to_owned())
}

fn recall(found: &[u64], truth: &[usize], k: usize) -> f64 {
    let truth: Vec<u64> = truth.iter().take(k).map(|&r| r as u64).collect();
    found.iter().filter(|id| truth.contains(id)).count() as f64 / k as f64
}

/// Proves, on the digits set (integer pixels, with exact distance ties at
/// rank 10), that with `exact` the rewritten query returns exactly the
/// rows and values of DataFusion's plan ordered by `(value, id)` — for
/// every distance function whose metric the collection has, with no
/// filter, a tag filter the scan takes, a tag set, a residual filter and
/// an OFFSET — and that the plan is the KNN node on the exact path.
#[test]
fn exact_knn_equals_datafusion_plan() {
    let data = load("digits-l2", usize::MAX, 8);
    let n = data.base.len();
    // A permutation: id order is not row order, so the tie-break is seen.
    let id = move |i: usize| ((i * 7) % n) as u64 + 1;
    let (_tmp, engine) = engine_with(
        &data,
        &[
            ("docs", Metric::L2),
            ("docs_ip", Metric::InnerProduct),
            ("docs_cos", Metric::Cosine),
        ],
        &id,
        10,
    );
    let q = QueryEngine::new(Arc::clone(&engine));
    let reference = plain(&engine);
    let cases: [(&str, &str, &str); 5] = [
        ("docs", "l2", "ASC"),
        ("docs", "l2_squared", "ASC"),
        ("docs_ip", "negative_inner_product", "ASC"),
        ("docs_ip", "inner_product", "DESC"),
        ("docs_cos", "cosine_distance", "ASC"),
    ];
    let filters = [
        "",
        "WHERE tag = 3",
        "WHERE tag IN (1, 4, 7)",
        "WHERE id % 3 <> 0",
        "WHERE (tag = 2 OR tag = 5) AND id > 400",
    ];
    block_on(async {
        let mut compared = 0;
        let mut ties = 0;
        for query in &data.queries {
            let lit = literal(query);
            for (collection, function, dir) in cases {
                for filter in filters {
                    for tail in ["LIMIT 10", "LIMIT 10 OFFSET 5"] {
                        let knn = format!(
                            "SELECT id, {function}(vec, '{lit}') AS d FROM {collection} {filter} ORDER BY d {dir} {tail}"
                        );
                        let reference_sql = format!(
                            "SELECT id, {function}(vec, '{lit}') AS d FROM {collection} {filter} ORDER BY d {dir}, id {tail}"
                        );
                        let got = id_values(&run(&q, &knn, &EXACT).await);
                        let want = plain_rows(&reference, &reference_sql).await;
                        assert_eq!(got, want, "{knn}");
                        assert_eq!(got.len(), 10, "{knn}");
                        ties += got.windows(2).filter(|w| w[0].1 == w[1].1).count();
                        compared += 1;
                    }
                }
            }
        }
        // The tie-break was exercised, not just possible.
        assert!(ties > 0);
        println!("exact KNN: {compared} queries equal DataFusion's plan; {ties} tied neighbours");

        let lit = literal(&data.queries[0]);
        let plan = explain(
            &q,
            &format!("SELECT id, l2(vec, '{lit}') AS d FROM docs WHERE tag = 3 AND id > 5 ORDER BY d LIMIT 10"),
            &EXACT,
        )
        .await;
        assert_eq!(
            knn_line(&plan).as_deref(),
            Some(
                format!(
                    "ValoriKnnExec: collection=docs k=10 ef={} tag=3 path=exact distance=l2 filter=id@0 > 5",
                    SearchSettings::default_ef()
                )
                .as_str()
            ),
            "{plan}"
        );
        assert!(!plan.contains("SortExec"), "{plan}");
    });
}

/// Proves the rule leaves other plans alone: a function of another metric,
/// the wrong direction, another sort key, no LIMIT, a vector of another
/// dimension, or a volatile value between sort and scan keep DataFusion's
/// plan (and its answer).
#[test]
fn other_queries_keep_the_datafusion_plan() {
    let data = load("digits-l2", 300, 1);
    let (_tmp, engine) = engine_with(&data, &[("docs", Metric::L2)], &|i| i as u64, 10);
    let q = QueryEngine::new(Arc::clone(&engine));
    let lit = literal(&data.queries[0]);
    block_on(async {
        for sql in [
            format!("SELECT id FROM docs ORDER BY cosine_distance(vec, '{lit}') LIMIT 5"),
            format!("SELECT id FROM docs ORDER BY negative_inner_product(vec, '{lit}') LIMIT 5"),
            format!("SELECT id FROM docs ORDER BY l2(vec, '{lit}') DESC LIMIT 5"),
            format!("SELECT id FROM docs ORDER BY l2(vec, '{lit}'), tag LIMIT 5"),
            format!("SELECT id FROM docs ORDER BY l2(vec, '{lit}')"),
            "SELECT id FROM docs ORDER BY l2(vec, '[1, 2]') LIMIT 5".to_owned(),
            // A volatile value the filter and the output must share.
            format!(
                "SELECT id, r FROM (SELECT id, vec, random() AS r FROM docs) WHERE r < 0.5 \
                 ORDER BY l2(vec, '{lit}') LIMIT 5"
            ),
        ] {
            let plan = explain(&q, &sql, &GRAPH).await;
            assert!(knn_line(&plan).is_none(), "{sql}\n{plan}");
        }
        // The dimension mismatch is still reported by the function.
        let e = q
            .execute("SELECT id FROM docs ORDER BY l2(vec, '[1, 2]') LIMIT 5")
            .await
            .unwrap_err();
        assert!(matches!(e, QueryError::Vector(_)), "{e:?}");
    });
}

/// Proves the graph path on real sentence embeddings (WordNet glosses,
/// MiniLM, 19,000 × 384): recall@10 against the float ground truth is at
/// least 0.95 with the default ef, the plan says `path=hnsw`, and with
/// `exact` the same statement returns DataFusion's exact rows, whose order
/// is the ground truth's except for near-ties (float distances within
/// 1e-4) that Q16.16 rounding may swap. Also a tag
/// filter matching a quarter of the rows (graph path) and a residual
/// filter matching 2% (over-fetch): every row returned passes, k rows come
/// back, and recall against the exact filtered answer is high; a filter
/// matching exactly k rows returns all k through the graph.
#[test]
fn graph_recall_on_wordnet() {
    const QUERIES: usize = 100;
    const K: usize = 10;
    let data = load("wordnet-minilm20k-l2", usize::MAX, QUERIES);
    let (_tmp, engine) = engine_with(&data, &[("docs", Metric::L2)], &|i| i as u64, 4);
    let q = QueryEngine::new(Arc::clone(&engine));
    let reference = plain(&engine);
    block_on(async {
        let mut graph_recall = 0.0;
        let mut exact_recall = 0.0;
        let mut exact_in_order = 0;
        let mut max_swap_gap = 0.0f64;
        let mut tag_recall = 0.0;
        let mut residual_recall = 0.0;
        for (i, query) in data.queries.iter().enumerate() {
            let lit = literal(query);
            let sql = format!("SELECT id, l2(vec, '{lit}') AS d FROM docs ORDER BY d LIMIT {K}");
            let found = ids(&run(&q, &sql, &GRAPH).await);
            assert_eq!(found.len(), K);
            graph_recall += recall(&found, &data.truth[i], K);

            let exact = id_values(&run(&q, &sql, &EXACT).await);
            let exact_ids: Vec<u64> = exact.iter().map(|r| r.0).collect();
            exact_recall += recall(&exact_ids, &data.truth[i], K);
            let truth: Vec<u64> = data.truth[i].iter().take(K).map(|&r| r as u64).collect();
            if exact_ids == truth {
                exact_in_order += 1;
            } else {
                // Where the order differs from the float ground truth, the
                // float distances (plain f64 here) are a near-tie that
                // Q16.16 rounding may swap.
                let dist = |row: u64| -> f64 {
                    data.base[row as usize]
                        .iter()
                        .zip(query)
                        .map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2))
                        .sum::<f64>()
                        .sqrt()
                };
                for (got, want) in exact_ids.iter().zip(&truth) {
                    let gap = (dist(*got) - dist(*want)).abs();
                    max_swap_gap = max_swap_gap.max(gap);
                }
            }
            if i < 20 {
                let want = plain_rows(
                    &reference,
                    &format!("SELECT id, l2(vec, '{lit}') AS d FROM docs ORDER BY d, id LIMIT {K}"),
                )
                .await;
                assert_eq!(exact, want, "query {i}");
            }

            // A tag held by a quarter of the rows: the graph, filtered.
            let sql = format!(
                "SELECT id, tag FROM docs WHERE tag = 2 ORDER BY l2(vec, '{lit}') LIMIT {K}"
            );
            if i == 0 {
                let plan = explain(&q, &sql, &GRAPH).await;
                assert!(
                    knn_line(&plan).is_some_and(|l| l.contains(" tag=2 path=hnsw ")),
                    "{plan}"
                );
            }
            let found = run(&q, &sql, &GRAPH).await;
            let found_ids = ids(&found);
            assert_eq!(found_ids.len(), K);
            assert!(found_ids.iter().all(|id| id % 4 == 2), "{found_ids:?}");
            let want = ids(&run(&q, &sql, &EXACT).await);
            tag_recall += found_ids.iter().filter(|id| want.contains(id)).count() as f64 / K as f64;

            // A residual filter passing 2% of the rows: over-fetch.
            let sql = format!(
                "SELECT id FROM docs WHERE id % 50 = 7 ORDER BY l2(vec, '{lit}') LIMIT {K}"
            );
            let found = ids(&run(&q, &sql, &GRAPH).await);
            assert_eq!(found.len(), K);
            assert!(found.iter().all(|id| id % 50 == 7), "{found:?}");
            let want = ids(&run(&q, &sql, &EXACT).await);
            residual_recall +=
                found.iter().filter(|id| want.contains(id)).count() as f64 / K as f64;
        }
        let n = QUERIES as f64;
        let (graph_recall, exact_recall, tag_recall, residual_recall) = (
            graph_recall / n,
            exact_recall / n,
            tag_recall / n,
            residual_recall / n,
        );
        println!(
            "wordnet-minilm20k-l2, {QUERIES} queries, ef={}: recall@10 graph {graph_recall:.4}, exact {exact_recall:.4} \
             ({exact_in_order} in the ground truth's order, swaps within {max_swap_gap:.2e}); \
             vs exact filtered: tag (25%) {tag_recall:.4}, residual (2%) {residual_recall:.4}",
            SearchSettings::default_ef()
        );
        assert!(graph_recall >= 0.95, "{graph_recall}");
        // Q16.16 rounding may swap near-ties of the float ground truth.
        assert!(exact_recall >= 0.99, "{exact_recall}");
        // One Q16.16 step is 2^-16 ≈ 1.5e-5 per component.
        assert!(max_swap_gap < 1e-4, "{max_swap_gap}");
        assert!(tag_recall >= 0.9, "{tag_recall}");
        assert!(residual_recall >= 0.9, "{residual_recall}");

        // Exactly K rows match a residual filter (ids 7, 1907, …, 17107):
        // through the graph, the over-fetch still finds every one.
        let lit = literal(&data.queries[0]);
        let sql =
            format!("SELECT id FROM docs WHERE id % 1900 = 7 ORDER BY l2(vec, '{lit}') LIMIT {K}");
        let mut found = ids(&run(&q, &sql, &GRAPH).await);
        found.sort_unstable();
        let all: Vec<u64> = (0..data.base.len() as u64)
            .filter(|id| id % 1900 == 7)
            .collect();
        assert_eq!(all.len(), K);
        assert_eq!(found, all);

        let sql = format!("SELECT id FROM docs ORDER BY l2(vec, '{lit}') LIMIT {K}");
        let plan = explain(&q, &sql, &GRAPH).await;
        let expected = format!(
            "ValoriKnnExec: collection=docs k={K} ef={} path=hnsw distance=l2",
            SearchSettings::default_ef().max(K)
        );
        assert_eq!(
            knn_line(&plan).as_deref(),
            Some(expected.as_str()),
            "{plan}"
        );
        let wide = SearchSettings {
            ef_search: Some(200),
            exact: false,
        };
        let plan = explain(&q, &sql, &wide).await;
        assert!(
            knn_line(&plan).is_some_and(|l| l.contains("ef=200 path=hnsw")),
            "{plan}"
        );
    });
}

/// Proves per-call settings stay per call: many EXPLAINs with different
/// settings, in flight together on one `QueryEngine`, each show their own
/// ef and path.
#[test]
fn concurrent_calls_keep_their_settings() {
    let data = load("digits-l2", usize::MAX, 1);
    let (_tmp, engine) = engine_with(&data, &[("docs", Metric::L2)], &|i| i as u64, 10);
    let q = QueryEngine::new(Arc::clone(&engine));
    let lit = literal(&data.queries[0]);
    let sql = format!("SELECT id FROM docs ORDER BY l2(vec, '{lit}') LIMIT 10");
    block_on(async {
        let mut tasks = Vec::new();
        for i in 0..32usize {
            let q = q.clone();
            let sql = sql.clone();
            let settings = SearchSettings {
                ef_search: Some(16 + i),
                exact: i % 2 == 0,
            };
            tasks.push(tokio::spawn(async move {
                (settings, explain(&q, &sql, &settings).await)
            }));
        }
        for task in tasks {
            let (settings, plan) = task.await.unwrap();
            let line = knn_line(&plan).unwrap();
            let ef = settings.ef_search.unwrap().max(10);
            let path = if settings.exact { "exact" } else { "hnsw" };
            assert!(
                line.contains(&format!("ef={ef} path={path}")),
                "{settings:?}: {line}"
            );
        }
    });
}

/// Proves ties come in id order: four vectors at the same distance from
/// the query, inserted in an order unlike their ids.
#[test]
fn ties_are_ordered_by_id() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    create(&engine, "docs", 2, Metric::L2);
    // All at distance 1 from the origin; then one farther away.
    let rows: [(u64, [f32; 2]); 5] = [
        (40, [0.0, 1.0]),
        (10, [1.0, 0.0]),
        (30, [0.0, -1.0]),
        (20, [-1.0, 0.0]),
        (5, [2.0, 0.0]),
    ];
    for (id, v) in rows {
        engine
            .submit(Event::Insert {
                collection: name("docs"),
                record: Record {
                    id: RecordId(id),
                    vector: quantize_vector(&v).unwrap(),
                    tag: 0,
                    metadata: Vec::new(),
                },
            })
            .unwrap();
    }
    let q = QueryEngine::new(engine);
    block_on(async {
        for settings in [EXACT, GRAPH] {
            let got = id_values(
                &run(
                    &q,
                    "SELECT id, l2(vec, '[0, 0]') AS d FROM docs ORDER BY d LIMIT 3",
                    &settings,
                )
                .await,
            );
            assert_eq!(got, vec![(10, 1.0), (20, 1.0), (30, 1.0)]);
        }
    });
}

/// Proves the statement length limit: one byte over is refused as the
/// user's error before parsing, exactly the limit is accepted.
#[test]
fn statements_longer_than_the_limit_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    let q = QueryEngine::new(engine);
    block_on(async {
        let head = "SELECT 1 ";
        let at_limit = format!("{head}{}", " ".repeat(SQL_BYTES_MAX - head.len()));
        assert_eq!(at_limit.len(), SQL_BYTES_MAX);
        assert!(q.execute(&at_limit).await.is_ok());
        let over = format!("{at_limit} ");
        let e = q.execute(&over).await.unwrap_err();
        assert!(
            matches!(e, QueryError::TooLong { bytes, max } if bytes == SQL_BYTES_MAX + 1 && max == SQL_BYTES_MAX),
            "{e:?}"
        );
        assert!(e.is_user_error());
        // Session statements are the front end's business.
        let e = q.execute("SET valori.exact = true").await.unwrap_err();
        assert!(e.is_user_error(), "{e:?}");
    });
}

/// Proves the rule sees through the shapes DataFusion gives equivalent
/// queries — a distance used twice (a common subexpression), a table
/// alias, a subquery, an expression over the distance — and that each
/// rewritten query, with `exact`, returns exactly DataFusion's own rows
/// (all columns) ordered by `(d, id)`.
#[test]
fn equivalent_shapes_are_rewritten() {
    let data = load("digits-l2", usize::MAX, 3);
    let n = data.base.len();
    let (_tmp, engine) = engine_with(
        &data,
        &[("docs", Metric::L2)],
        &move |i| ((i * 7) % n) as u64 + 1,
        10,
    );
    let q = QueryEngine::new(Arc::clone(&engine));
    let reference = plain(&engine);
    block_on(async {
        for query in &data.queries {
            let lit = literal(query);
            let l2 = format!("l2(vec, '{lit}')");
            let shapes = [
                format!("SELECT id, {l2} + 1 AS d1, {l2} AS d FROM docs ORDER BY d{{id}} LIMIT 10"),
                format!(
                    "SELECT x.id, l2(x.vec, '{lit}') AS d FROM docs AS x WHERE x.tag = 3 ORDER BY d{{id}} LIMIT 10"
                ),
                format!(
                    "SELECT id, d FROM (SELECT id, tag, {l2} AS d FROM docs) WHERE tag = 3 OR tag = 4 ORDER BY d{{id}} LIMIT 10"
                ),
                format!(
                    "SELECT id, sqrt({l2}) AS s, {l2} AS d FROM docs WHERE id % 5 = 1 ORDER BY d{{id}} LIMIT 7 OFFSET 3"
                ),
            ];
            for shape in &shapes {
                let sql = shape.replace("{id}", "");
                let plan = explain(&q, &sql, &EXACT).await;
                assert!(knn_line(&plan).is_some(), "{sql}\n{plan}");
                let got = run(&q, &sql, &EXACT).await;
                let want = reference
                    .sql(&shape.replace("{id}", ", id"))
                    .await
                    .unwrap()
                    .collect()
                    .await
                    .unwrap();
                let text = |b: &[RecordBatch]| {
                    datafusion::arrow::util::pretty::pretty_format_batches(b)
                        .unwrap()
                        .to_string()
                };
                assert_eq!(text(&got), text(&want), "{sql}");
                assert!(!got.is_empty() && got.iter().map(|b| b.num_rows()).sum::<usize>() > 0);
            }
        }
    });
}

/// Proves bound placeholders are rewritten like literals: `l2(vec, $1)`
/// with `tag = $2` runs as the KNN node with the tag pushed into the
/// search, and returns exactly the rows of the same query written with
/// literals. Also proves the planned path follows the engine's rule for
/// selective tags: a tag held by a tenth of the rows is scanned exactly
/// even when the graph is allowed.
#[test]
fn bound_parameters_are_rewritten() {
    use datafusion::common::ScalarValue;
    let data = load("digits-l2", usize::MAX, 3);
    let (_tmp, engine) = engine_with(&data, &[("docs", Metric::L2)], &|i| i as u64, 10);
    let q = QueryEngine::new(Arc::clone(&engine));
    block_on(async {
        for query in &data.queries {
            let lit = literal(query);
            let params = || {
                vec![
                    ScalarValue::Utf8(Some(lit.clone())),
                    ScalarValue::UInt64(Some(3)),
                ]
            };
            let sql = "SELECT id, l2(vec, $1) AS d FROM docs WHERE tag = $2 ORDER BY d LIMIT 10";
            let plan = q
                .execute_with_params(&format!("EXPLAIN {sql}"), params(), &GRAPH)
                .await
                .unwrap();
            let plan = datafusion::arrow::util::pretty::pretty_format_batches(&plan.batches)
                .unwrap()
                .to_string();
            let line = knn_line(&plan).unwrap_or_else(|| panic!("{plan}"));
            assert!(line.contains(" tag=3 path=exact "), "{line}");
            let got = q.execute_with_params(sql, params(), &EXACT).await.unwrap();
            let want = run(
                &q,
                &format!(
                    "SELECT id, l2(vec, '{lit}') AS d FROM docs WHERE tag = 3 ORDER BY d LIMIT 10"
                ),
                &EXACT,
            )
            .await;
            assert_eq!(id_values(&got.batches), id_values(&want));
            assert_eq!(id_values(&want).len(), 10);
        }
    });
}

/// Proves the shape of the rewritten plan, as text: the sort and the
/// scan are gone, the node carries the tag and the residual filter and
/// emits only the columns read (not the vector the distance needed), the
/// rank sort is dropped by the physical optimizer (the node declares its
/// order), and the distance column takes the query's name.
#[test]
fn rewritten_plan_as_text() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    create(&engine, "docs", 2, Metric::L2);
    for id in 0..4u64 {
        engine
            .submit(Event::Insert {
                collection: name("docs"),
                record: Record {
                    id: RecordId(id),
                    vector: quantize_vector(&[id as f32, 0.0]).unwrap(),
                    tag: 7,
                    metadata: Vec::new(),
                },
            })
            .unwrap();
    }
    let q = QueryEngine::new(engine);
    block_on(async {
        let plan = explain(
            &q,
            "SELECT id, l2(vec, '[1,0]') AS d FROM docs WHERE tag = 7 AND id > 2 ORDER BY d LIMIT 3",
            &GRAPH,
        )
        .await;
        let lines: Vec<String> = plan
            .lines()
            .filter_map(|l| {
                let cell = l.split('|').nth(2)?.trim_end();
                (!cell.trim().is_empty() && !cell.contains("plan")).then(|| cell.to_owned())
            })
            .collect();
        let ef = SearchSettings::default_ef();
        // The node emits only the scan columns read above it or by the
        // filter (here `id`), then the distance (index 1) and the rank.
        let expected = [
            " Projection: docs.id, __valori_distance AS d".to_owned(),
            "   Sort: __valori_rank ASC NULLS LAST, fetch=3".to_owned(),
            format!(
                "     ValoriKnn: collection=docs distance=l2 k=3 ef={ef} tag=7 exact=false filter=docs.id > UInt64(2)"
            ),
            " ProjectionExec: expr=[id@0 as id, __valori_distance@1 as d]".to_owned(),
            "   GlobalLimitExec: skip=0, fetch=3".to_owned(),
            "     CooperativeExec".to_owned(),
            format!(
                "       ValoriKnnExec: collection=docs k=3 ef={ef} tag=7 path=exact distance=l2 filter=id@0 > 2"
            ),
        ];
        assert_eq!(lines, expected, "{plan}");
    });
}

/// Proves the filtered search on a declared column at every selectivity,
/// on 20,000 GloVe rows in a table as users declare one (`id bigint
/// PRIMARY KEY, category int, embedding vector(50)`, loaded with COPY),
/// `category = row % 1000`: for filters keeping 0.1%, 1%, 10%, 20%, 50%
/// and 90% of the rows, each query for k rows returns k rows, every one
/// passing the filter, and recall@10 through the graph against the exact
/// filtered answer computed here from the float vectors is at least 0.95.
/// (Selective filters are evaluated on every row and searched among the
/// rows they keep; the others are applied to over-fetched candidates.)
#[test]
fn filtered_recall_on_a_declared_column_at_every_selectivity() {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int64Type;
    use valori_query::session::Session;
    use valori_query::statement::{Access, Outcome};

    const ROWS: usize = 20_000;
    const QUERIES: usize = 30;
    const K: usize = 10;
    let data = load("glove50-100k-l2", ROWS, QUERIES);
    let tmp = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(tmp.path()).unwrap());
    let q = QueryEngine::new(Arc::clone(&engine));
    let category = |row: usize| (row % 1000) as i64;
    block_on(async {
        let statement = |sql: String| {
            let q = q.clone();
            async move {
                let mut session = Session::default();
                let prepared = q.prepare(&sql).await.unwrap();
                q.run(&prepared, Vec::new(), &mut session, Access::ReadWrite)
                    .await
                    .unwrap()
            }
        };
        statement(
            "CREATE TABLE items (id bigint PRIMARY KEY, category int, embedding vector(50))".into(),
        )
        .await;
        for start in (0..ROWS).step_by(5_000) {
            let mut text = String::new();
            for row in start..(start + 5_000).min(ROWS) {
                text.push_str(&format!(
                    "{row}\t{}\t{}\n",
                    category(row),
                    literal(&data.base[row])
                ));
            }
            let Outcome::CopyIn(copy) = statement("COPY items FROM STDIN".into()).await else {
                panic!("not a COPY");
            };
            q.copy_in(
                copy,
                text.into_bytes(),
                &mut valori_query::session::Session::default(),
            )
            .await
            .unwrap();
        }
        engine.wait_for_index().unwrap();

        let filtered_ids = |batches: &[RecordBatch]| -> Vec<i64> {
            batches
                .iter()
                .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
                .collect()
        };
        let mut report = Vec::new();
        for (filter, keeps) in [
            ("category = 7", &(|c: i64| c == 7) as &dyn Fn(i64) -> bool),
            ("category < 10", &|c| c < 10),
            ("category < 100", &|c| c < 100),
            ("category < 200", &|c| c < 200),
            ("category < 500", &|c| c < 500),
            ("category < 900", &|c| c < 900),
        ] {
            let mut recall_sum = 0.0;
            for query in &data.queries {
                let sql = format!(
                    "SELECT id FROM items WHERE {filter} ORDER BY embedding <-> '{}' LIMIT {K}",
                    literal(query)
                );
                let found = filtered_ids(&run(&q, &sql, &GRAPH).await);
                assert_eq!(found.len(), K, "{filter}");
                assert!(
                    found.iter().all(|&id| keeps(category(id as usize))),
                    "{filter}: {found:?}"
                );
                // The exact filtered answer, from the floats.
                let mut truth: Vec<(f64, usize)> = (0..ROWS)
                    .filter(|&row| keeps(category(row)))
                    .map(|row| {
                        let d: f64 = data.base[row]
                            .iter()
                            .zip(query)
                            .map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2))
                            .sum();
                        (d, row)
                    })
                    .collect();
                truth.sort_by(|a, b| a.partial_cmp(b).unwrap());
                let truth: Vec<i64> = truth.iter().take(K).map(|&(_, r)| r as i64).collect();
                recall_sum +=
                    found.iter().filter(|id| truth.contains(id)).count() as f64 / K as f64;
            }
            let recall = recall_sum / QUERIES as f64;
            report.push(format!("{filter}: {recall:.3}"));
            assert!(recall >= 0.95, "{filter}: recall@10 {recall}");
        }
        println!(
            "glove50 20k rows, declared column, recall@10 vs exact filtered: {}",
            report.join(", ")
        );
        // The 20 rows of one category are found by evaluating the filter
        // first: the search is made among them and returns k candidates,
        // rather than over-fetching from the whole graph until 10 pass.
        let sql = format!(
            "EXPLAIN ANALYZE SELECT id FROM items WHERE category = 7 ORDER BY embedding <-> '{}' LIMIT {K}",
            literal(&data.queries[0])
        );
        let plan =
            datafusion::arrow::util::pretty::pretty_format_batches(&run(&q, &sql, &GRAPH).await)
                .unwrap()
                .to_string();
        let line = knn_line(&plan).unwrap_or_else(|| panic!("{plan}"));
        assert!(line.contains(" path=filtered "), "{line}");
        assert!(
            line.contains(&format!("candidates={K}, filter_rows=20]")),
            "{line}"
        );
    });
}

/// Proves equality and `IN` filters on declared columns keep exactly the
/// rows SQL's `=` keeps: on a
/// table of 3,000 rows with `smallint`, `int`, `bigint` and `text`
/// columns, NULLs, deleted rows and updated values, each filter's
/// nearest 10 rows (exact search) equal the 10 nearest of the rows the
/// filter keeps, computed here; an `AND` with another condition, a NULL
/// in the list, an integer beyond the column's range and a text equal
/// only after trailing spaces are handled as SQL says. The plan shows
/// the filter evaluated first and searched among the rows it keeps.
#[test]
fn equality_filters_on_declared_columns() {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int64Type;

    const ROWS: i64 = 3_000;
    let tmp = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(tmp.path()).unwrap());
    let q = QueryEngine::new(Arc::clone(&engine));
    // Row r: s = r % 7 (NULL when r % 11 == 0), i = r % 100, b = r % 3 *
    // 10^10, t = 'k' || r % 50; vector (r % 17, r % 13).
    let s_of = |r: i64| (r % 11 != 0).then_some(r % 7);
    let i_of = |r: i64| {
        if (1000..1100).contains(&r) {
            555
        } else {
            r % 100
        }
    };
    let b_of = |r: i64| (r % 3) * 10_000_000_000;
    let t_of = |r: i64| format!("k{}", r % 50);
    let vector = |r: i64| [(r % 17) as f64, (r % 13) as f64];
    let deleted = |r: i64| r % 97 == 0;
    block_on(async {
        let exec = |sql: String| {
            let q = q.clone();
            async move {
                let mut session = valori_query::session::Session::default();
                let prepared = q.prepare(&sql).await.unwrap();
                q.run(
                    &prepared,
                    Vec::new(),
                    &mut session,
                    valori_query::statement::Access::ReadWrite,
                )
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
        };
        exec("CREATE TABLE f (id bigint PRIMARY KEY, s smallint, i int, b bigint, t text, embedding vector(2))".into()).await;
        for start in (0..ROWS).step_by(500) {
            let values: Vec<String> = (start..start + 500)
                .map(|r| {
                    let s = s_of(r).map_or("NULL".to_owned(), |v| v.to_string());
                    let [x, y] = vector(r);
                    format!(
                        "({r}, {s}, {}, {}, '{}', '[{x},{y}]')",
                        r % 100,
                        b_of(r),
                        t_of(r)
                    )
                })
                .collect();
            exec(format!("INSERT INTO f VALUES {}", values.join(", "))).await;
        }
        exec("UPDATE f SET i = 555 WHERE id >= 1000 AND id < 1100".into()).await;
        exec("DELETE FROM f WHERE id % 97 = 0".into()).await;

        let query = [3.0, 4.0];
        let nearest = |keeps: &dyn Fn(i64) -> bool| -> Vec<i64> {
            let mut rows: Vec<(f64, i64)> = (0..ROWS)
                .filter(|&r| !deleted(r) && keeps(r))
                .map(|r| {
                    let [x, y] = vector(r);
                    ((x - query[0]).powi(2) + (y - query[1]).powi(2), r)
                })
                .collect();
            rows.sort_by(|a, b| a.partial_cmp(b).unwrap());
            rows.iter().take(10).map(|&(_, r)| r).collect()
        };
        type Keeps = Box<dyn Fn(i64) -> bool>;
        let cases: Vec<(&str, Keeps)> = vec![
            ("s = 3", Box::new(move |r| s_of(r) == Some(3))),
            ("3 = s", Box::new(move |r| s_of(r) == Some(3))),
            ("i = 555", Box::new(move |r| i_of(r) == 555)),
            (
                "i IN (5, 42, NULL)",
                Box::new(move |r| [5, 42].contains(&i_of(r))),
            ),
            (
                "b = 20000000000",
                Box::new(move |r| b_of(r) == 20_000_000_000),
            ),
            ("i = 20000000000", Box::new(|_| false)),
            ("t = 'k7'", Box::new(move |r| t_of(r) == "k7")),
            ("t = 'k7 '", Box::new(|_| false)),
            (
                "t IN ('k7', 'k8') AND i > 50",
                Box::new(move |r| ["k7", "k8"].contains(&t_of(r).as_str()) && i_of(r) > 50),
            ),
            (
                "s = 3 AND id < 1500",
                Box::new(move |r| s_of(r) == Some(3) && r < 1500),
            ),
        ];
        for (filter, keeps) in &cases {
            let sql = format!(
                "SELECT id FROM f WHERE {filter} ORDER BY embedding <-> '[3,4]', id LIMIT 10"
            );
            let found: Vec<i64> = run(&q, &sql, &EXACT)
                .await
                .iter()
                .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
                .collect();
            let want = nearest(keeps.as_ref());
            // Ties at the 10th distance may be ordered either way: compare
            // the distances of the rows returned.
            let dist = |r: &i64| {
                let [x, y] = vector(*r);
                (x - query[0]).powi(2) + (y - query[1]).powi(2)
            };
            assert_eq!(found.len(), want.len(), "{filter}: {found:?} vs {want:?}");
            assert!(
                found.iter().all(|&r| keeps(r) && !deleted(r)),
                "{filter}: {found:?}"
            );
            let got: Vec<f64> = found.iter().map(dist).collect();
            let expected: Vec<f64> = want.iter().map(dist).collect();
            assert_eq!(got, expected, "{filter}");
        }
        let plan = datafusion::arrow::util::pretty::pretty_format_batches(
            &run(
                &q,
                "EXPLAIN ANALYZE SELECT id FROM f WHERE i = 555 ORDER BY embedding <-> '[3,4]' LIMIT 10",
                &EXACT,
            )
            .await,
        )
        .unwrap()
        .to_string();
        let line = knn_line(&plan).unwrap_or_else(|| panic!("{plan}"));
        assert!(line.contains("filter_rows=99]"), "{line}");
    });
}
