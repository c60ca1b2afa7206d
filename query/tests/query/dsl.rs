//! The query DSL against a real engine: DSL queries return exactly the
//! rows of the equivalent SQL (DataFusion's own plan, ordered by
//! `(distance, id)`), every row satisfies the condition as computed here
//! from the metadata each row was given, and the settings, projection and
//! errors reach the caller.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::UInt64Type;
use datafusion::arrow::util::pretty::pretty_format_batches;
use valori_core::distance::Metric;
use valori_core::event::{Batch, Event, RecordId};
use valori_core::q16::quantize_vector;
use valori_engine::Engine;
use valori_query::dsl::{self, DslError, ParamError};
use valori_query::settings::SearchSettings;
use valori_query::{QueryEngine, QueryError, datafusion};

use super::knn::{Data, explain, knn_line, load, plain};
use super::{block_on, create, ids, literal, name};

const LANGS: [&str; 3] = ["en", "fr", "de"];

/// The metadata of row `i`.
fn metadata_of(i: usize) -> String {
    format!(
        r#"{{"even":{},"lang":"{}","n":{i},"nested":{{"v":{}}}}}"#,
        i.is_multiple_of(2),
        LANGS[i % 3],
        i % 7
    )
}

/// Row `i` has id `i + 1` and tag `i % 10`.
fn row_of(id: u64) -> usize {
    id as usize - 1
}

fn engine_with_metadata(data: &Data) -> (tempfile::TempDir, Arc<Engine>) {
    let tmp = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(tmp.path()).unwrap());
    let dim = data.base[0].len() as u32;
    for (collection, metric) in [("docs", Metric::L2), ("docs_ip", Metric::InnerProduct)] {
        create(&engine, collection, dim, metric);
        let mut batch = Batch::new(dim);
        for (i, v) in data.base.iter().enumerate() {
            let vector = quantize_vector(v).unwrap();
            let meta = valori_query::metadata::from_json_text(&metadata_of(i)).unwrap();
            batch.push(RecordId(i as u64 + 1), &vector, i as u64 % 10, &meta);
        }
        engine
            .submit(Event::InsertBatch {
                collection: name(collection),
                batch,
            })
            .unwrap();
    }
    engine.wait_for_index().unwrap();
    (tmp, engine)
}

fn params(v: &[f32]) -> BTreeMap<String, Vec<f32>> {
    [("q".to_owned(), v.to_vec())].into_iter().collect()
}

fn text(batches: &[RecordBatch]) -> String {
    pretty_format_batches(batches).unwrap().to_string()
}

/// Proves DSL queries with every kind of condition return exactly the
/// rows (ids, distances, tags, metadata, in order) of the equivalent SQL
/// run by DataFusion without the KNN rewrite, and that each row satisfies
/// the condition evaluated here on the row's known metadata, with as many
/// rows as K when that many match.
#[test]
fn dsl_equals_sql() {
    let data = load("digits-l2", usize::MAX, 5);
    let (_tmp, engine) = engine_with_metadata(&data);
    let q = QueryEngine::new(Arc::clone(&engine));
    let reference = plain(&engine);
    type Check = fn(usize) -> bool;
    let cases: [(&str, &str, Check); 6] = [
        ("", "", |_| true),
        (
            "WHERE tag IN (3, 7) AND meta.lang = 'en'",
            "WHERE tag IN (3, 7) AND meta_get(metadata, 'lang') = 'en'",
            |i| (i % 10 == 3 || i % 10 == 7) && i % 3 == 0,
        ),
        (
            "WHERE meta.n >= 100 AND meta.n < 900 AND NOT meta.even = true",
            "WHERE meta_num(metadata, 'n') >= 100 AND meta_num(metadata, 'n') < 900 \
             AND NOT meta_bool(metadata, 'even') = true",
            |i| (100..900).contains(&i) && i % 2 == 1,
        ),
        (
            "WHERE meta.nested.v IN (1, 2) OR id < 50",
            "WHERE meta_num(metadata, 'nested', 'v') IN (1, 2) OR id < 50",
            |i| i % 7 == 1 || i % 7 == 2 || i + 1 < 50,
        ),
        (
            "WHERE (tag = 1 OR tag = 2) AND id NOT IN (2, 3, 12) AND meta.lang != 'fr'",
            "WHERE (tag = 1 OR tag = 2) AND id NOT IN (2, 3, 12) \
             AND meta_get(metadata, 'lang') <> 'fr'",
            |i| (i % 10 == 1 || i % 10 == 2) && ![2, 3, 12].contains(&(i + 1)) && i % 3 != 1,
        ),
        (
            "WHERE meta.lang = 'de' AND tag >= 8 AND id <= 300",
            "WHERE meta_get(metadata, 'lang') = 'de' AND tag >= 8 AND id <= 300",
            |i| i % 3 == 2 && i % 10 >= 8 && i < 300,
        ),
    ];
    block_on(async {
        for query in &data.queries {
            let lit = literal(query);
            for (dsl_where, sql_where, check) in cases {
                for k in [1, 10, 40] {
                    let text_dsl = format!("FROM docs NEAREST $q K {k} {dsl_where} EXACT");
                    // Every case is answered by the KNN node (also where
                    // DataFusion factors repeated expressions out).
                    let lowered =
                        dsl::lower(&q, &text_dsl, &params(query), &SearchSettings::default())
                            .unwrap();
                    let plan = explain(&q, &lowered.sql, &lowered.settings).await;
                    assert!(knn_line(&plan).is_some(), "{text_dsl}\n{plan}");
                    let got = match dsl::run(&q, &text_dsl, &params(query)).await {
                        Ok(out) => out.batches,
                        Err(e) => panic!("{text_dsl}: {e}"),
                    };
                    let sql = format!(
                        "SELECT id, l2(vec, '{lit}') AS distance, tag, metadata FROM docs \
                         {sql_where} ORDER BY distance, id LIMIT {k}"
                    );
                    let want = reference.sql(&sql).await.unwrap().collect().await.unwrap();
                    assert_eq!(text(&got), text(&want), "{text_dsl}");
                    let found = ids(&got);
                    let matching = (0..data.base.len()).filter(|&i| check(i)).count();
                    assert_eq!(found.len(), k.min(matching), "{text_dsl}");
                    assert!(
                        found.iter().all(|&id| check(row_of(id))),
                        "{text_dsl}: {found:?}"
                    );
                    // And through the graph: the same conditions hold, as
                    // many rows come back.
                    let text_graph = text_dsl.replace(" EXACT", "");
                    let graph = dsl::run(&q, &text_graph, &params(query)).await.unwrap();
                    let found = ids(&graph.batches);
                    assert_eq!(found.len(), k.min(matching), "{text_graph}");
                    assert!(found.iter().all(|&id| check(row_of(id))), "{text_graph}");
                }
            }
        }
    });
}

/// Proves projection (columns, names, metadata paths), EF and EXACT
/// reaching the plan, the inner-product distance, and `meta_get` from SQL.
#[test]
fn dsl_projection_settings_and_metrics() {
    let data = load("digits-l2", usize::MAX, 1);
    let (_tmp, engine) = engine_with_metadata(&data);
    let q = QueryEngine::new(Arc::clone(&engine));
    let reference = plain(&engine);
    let query = &data.queries[0];
    let lit = literal(query);
    block_on(async {
        let out = dsl::run(
            &q,
            &format!("SELECT id, meta.lang, distance FROM docs NEAREST {lit} K 5 EF 32"),
            &BTreeMap::new(),
        )
        .await
        .unwrap();
        let names: Vec<&str> = out
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(names, ["id", "meta.lang", "distance"]);
        for b in &out.batches {
            let ids = b.column(0).as_primitive::<UInt64Type>();
            let langs = b.column(1).as_string::<i32>();
            for r in 0..b.num_rows() {
                assert_eq!(langs.value(r), LANGS[row_of(ids.value(r)) % 3]);
            }
        }

        let lowered = dsl::lower(
            &q,
            "FROM docs NEAREST $q K 5 WHERE tag = 4 EF 32",
            &params(query),
            &SearchSettings::default(),
        )
        .unwrap();
        assert_eq!(
            lowered.settings,
            SearchSettings {
                ef_search: Some(32),
                exact: false
            }
        );
        let plan = explain(&q, &lowered.sql, &lowered.settings).await;
        let line = knn_line(&plan).unwrap();
        assert!(
            line.starts_with("ValoriKnnExec: collection=docs k=5 ef=32 tag=4 path="),
            "{line}"
        );
        let lowered = dsl::lower(
            &q,
            "FROM docs NEAREST $q K 5 EXACT",
            &params(query),
            &SearchSettings::default(),
        )
        .unwrap();
        let plan = explain(&q, &lowered.sql, &lowered.settings).await;
        assert!(knn_line(&plan).unwrap().contains("path=exact"), "{plan}");

        // Inner product: NEAREST orders by negative_inner_product.
        let got = dsl::run(
            &q,
            "SELECT id, distance FROM docs_ip NEAREST $q K 10 EXACT",
            &params(query),
        )
        .await
        .unwrap();
        let want = reference
            .sql(&format!(
                "SELECT id, negative_inner_product(vec, '{lit}') AS distance FROM docs_ip \
                 ORDER BY distance, id LIMIT 10"
            ))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(text(&got.batches), text(&want));

        // meta_get and friends from SQL.
        let out = q
            .execute(
                "SELECT id, meta_get(metadata, 'lang'), meta_num(metadata, 'nested', 'v'), \
                 meta_bool(metadata, 'even'), meta_get(metadata, 'nested'), meta_get(metadata, 'none') \
                 FROM docs WHERE id <= 3 ORDER BY id",
            )
            .await
            .unwrap();
        let want: Vec<String> = (0..3usize)
            .map(|i| {
                format!(
                    "| {} | {} | {:?} | {} | {{\"v\":{}}} | |",
                    i + 1,
                    LANGS[i % 3],
                    (i % 7) as f64,
                    i % 2 == 0,
                    i % 7
                )
            })
            .collect();
        let printed = text(&out.batches);
        let rows: Vec<String> = printed
            .lines()
            .filter(|l| l.starts_with("| ") && !l.contains("meta_get"))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        assert_eq!(rows, want, "{printed}");
    });
}

/// Proves errors reach the caller as the right kind: parse errors with a
/// position, parameter errors naming the parameter, and query errors
/// (an unknown collection) as the user's.
#[test]
fn dsl_errors() {
    let data = load("digits-l2", 50, 1);
    let (_tmp, engine) = engine_with_metadata(&data);
    let q = QueryEngine::new(engine);
    block_on(async {
        let e = dsl::run(&q, "FROM docs NEAREST K 10", &BTreeMap::new())
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                DslError::Parse {
                    line: 1,
                    column: 19,
                    ..
                }
            ),
            "{e:?}"
        );
        let e = dsl::run(&q, "FROM docs NEAREST $v K 10", &params(&[1.0]))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, DslError::Param(ParamError::Missing { name }) if name == "v"),
            "{e:?}"
        );
        let e = dsl::run(&q, "FROM nothing NEAREST [1, 2] K 10", &BTreeMap::new())
            .await
            .unwrap_err();
        assert!(
            matches!(e, DslError::Query(QueryError::Invalid(_))),
            "{e:?}"
        );
        assert!(e.is_user_error());
        let long = format!(
            "FROM docs NEAREST [1] K 1 {}",
            " ".repeat(valori_query::SQL_BYTES_MAX)
        );
        let e = dsl::run(&q, &long, &BTreeMap::new()).await.unwrap_err();
        assert!(
            matches!(e, DslError::Query(QueryError::TooLong { .. })),
            "{e:?}"
        );
    });
}
