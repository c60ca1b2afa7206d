//! The statement layer: classification from the syntax tree, plans made
//! once and run with new values, values never spliced into text.

use std::sync::Arc;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::UInt64Type;
use datafusion::common::ScalarValue;
use valori_core::distance::Metric;
use valori_engine::Engine;
use valori_query::session::Session;
use valori_query::statement::{Access, Command, Kind, Outcome, ParamType, Prepared, vector_param};
use valori_query::{QueryEngine, QueryError};

use super::{K, QUERIES, block_on, create, exact, glove, ids, literal, name};

fn utf8(s: &str) -> ScalarValue {
    ScalarValue::Utf8(Some(s.to_owned()))
}

async fn rows(
    q: &QueryEngine,
    p: &Prepared,
    params: Vec<ScalarValue>,
    s: &mut Session,
) -> Vec<u64> {
    match q.run(p, params, s, Access::ReadOnly).await.unwrap() {
        Outcome::Rows(rows) => ids(&rows.collect().await.unwrap().batches),
        other => panic!("expected rows, got {other:?}"),
    }
}

/// Proves statements are classified from their syntax tree: transaction
/// control, each SET spelling, SHOW, RESET, CREATE EXTENSION, writes,
/// COPY and queries, with comments before them; and that another
/// extension is refused.
#[test]
fn statements_are_classified_from_the_tree() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    create(&engine, "t", 2, Metric::L2);
    let q = QueryEngine::new(engine);
    block_on(async {
        let kind = |sql: &'static str| {
            let q = q.clone();
            async move { q.prepare(sql).await.map(|p| format!("{:?}", p.kind())) }
        };
        let command = |c: Command| format!("{:?}", Kind::Command(c));
        let set = |n: &str, v: &str| {
            command(Command::Set {
                name: n.into(),
                value: v.into(),
            })
        };
        assert_eq!(kind("BEGIN").await.unwrap(), command(Command::Begin));
        assert_eq!(
            kind("start transaction isolation level serializable")
                .await
                .unwrap(),
            command(Command::Begin)
        );
        assert_eq!(
            kind("ROLLBACK TO SAVEPOINT A").await.unwrap(),
            command(Command::RollbackTo("a".into()))
        );
        assert_eq!(
            kind("savepoint \"B\"").await.unwrap(),
            command(Command::Savepoint("B".into()))
        );
        assert_eq!(
            kind("RELEASE SAVEPOINT b").await.unwrap(),
            command(Command::Release("b".into()))
        );
        assert_eq!(kind("rollback").await.unwrap(), command(Command::Rollback));
        assert_eq!(kind("COMMIT").await.unwrap(), command(Command::Commit));
        assert_eq!(
            kind("SET valori.ef_search = 40").await.unwrap(),
            set("valori.ef_search", "40")
        );
        assert_eq!(
            kind("set session statement_timeout to '1s'").await.unwrap(),
            set("statement_timeout", "1s")
        );
        assert_eq!(
            kind("SET LOCAL valori.exact = on").await.unwrap(),
            set("valori.exact", "on")
        );
        assert_eq!(
            kind("-- x\nSET TIME ZONE 'UTC'").await.unwrap(),
            set("timezone", "UTC")
        );
        assert_eq!(
            kind("SHOW valori.exact").await.unwrap(),
            command(Command::Show("valori.exact".into()))
        );
        assert_eq!(
            kind("RESET ALL").await.unwrap(),
            command(Command::Reset("all".into()))
        );
        assert_eq!(
            kind("CREATE EXTENSION IF NOT EXISTS vector").await.unwrap(),
            command(Command::Noop("CREATE EXTENSION"))
        );
        let e = kind("CREATE EXTENSION postgis").await.unwrap_err();
        assert!(e.to_string().contains("postgis"), "{e}");
        assert!(e.is_user_error());
        assert!(
            kind("/* app */ -- note\nINSERT INTO t (id, vec) VALUES (1, '[1,2]')")
                .await
                .unwrap()
                .starts_with("Write(Insert")
        );
        assert!(
            kind("COPY t FROM STDIN")
                .await
                .unwrap()
                .starts_with("Write(CopyFrom")
        );
        assert!(kind("SELECT 1").await.unwrap().starts_with("Query("));
        assert_eq!(kind("  -- nothing\n").await.unwrap(), "Empty");
        let e = kind("INSERT INTO t VALUES (").await.unwrap_err();
        assert!(e.is_user_error(), "{e:?}");
        // Odd spellings are refused or read, never a panic.
        for sql in ["SET", "SET x", "SHOW", "SET x T 1", "SET\u{3000}x = 1"] {
            let _ = kind(sql).await;
        }
    });
}

/// Proves a prepared nearest-neighbour statement is planned once and
/// searches with the vector and tag bound at each run: with `exact` set,
/// every run returns exactly the engine's exact top-k for that vector
/// (computed independently by `search_exact`), rows written after the
/// statement was prepared are found, and pgvector's operator and the
/// distance function spellings agree.
#[test]
fn prepared_knn_binds_each_run() {
    let g = glove();
    let q = &g.query;
    block_on(async {
        let unfiltered = q
            .prepare(&format!(
                "SELECT id FROM docs ORDER BY vec <-> $1 LIMIT {K}"
            ))
            .await
            .unwrap();
        assert!(unfiltered.is_planned_once(), "{:?}", unfiltered.kind());
        assert_eq!(unfiltered.params(), &[ParamType::Vector]);
        let filtered = q
            .prepare(&format!(
                "SELECT id FROM docs WHERE tag = $2 ORDER BY l2(vec, $1) LIMIT {K}"
            ))
            .await
            .unwrap();
        assert!(filtered.is_planned_once(), "{:?}", filtered.kind());
        let mut session = Session::default();
        session.set("valori.exact", "on").unwrap();
        for v in &g.queries[..QUERIES] {
            let expected: Vec<u64> = exact(&g, "docs", v, None)
                .iter()
                .map(|(_, id)| id.0)
                .collect();
            let got = rows(q, &unfiltered, vec![utf8(&literal(v))], &mut session).await;
            assert_eq!(got, expected);
            // The same vector bound as its components (binary parameters).
            let got = rows(q, &unfiltered, vec![vector_param(v.clone())], &mut session).await;
            assert_eq!(got, expected, "bound as a list");
            for tag in [3u64, 7] {
                let expected: Vec<u64> = exact(&g, "docs", v, Some(tag))
                    .iter()
                    .map(|(_, id)| id.0)
                    .collect();
                let got = rows(
                    q,
                    &filtered,
                    vec![utf8(&literal(v)), ScalarValue::Int64(Some(tag as i64))],
                    &mut session,
                )
                .await;
                assert_eq!(got, expected, "tag {tag}");
            }
        }
        // A row written after prepare, equal to the query: found first.
        let v = &g.queries[0];
        let mut write = Session::default();
        let insert = q
            .prepare("INSERT INTO docs (id, vec, tag) VALUES ($1, $2, 3)")
            .await
            .unwrap();
        q.run(
            &insert,
            vec![ScalarValue::Int64(Some(1)), utf8(&literal(v))],
            &mut write,
            Access::ReadWrite,
        )
        .await
        .unwrap();
        let got = rows(q, &unfiltered, vec![utf8(&literal(v))], &mut session).await;
        assert_eq!(got.first(), Some(&1));
        // A vector of the wrong dimension or no vector at all is refused.
        let e = q
            .run(
                &unfiltered,
                vec![utf8("[1,2]")],
                &mut session,
                Access::ReadOnly,
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains("dimensions"), "{e}");
        let e = q
            .run(
                &unfiltered,
                vec![vector_param(vec![1.0, 2.0])],
                &mut session,
                Access::ReadOnly,
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains("dimensions"), "{e}");
        let e = q
            .run(&unfiltered, Vec::new(), &mut session, Access::ReadOnly)
            .await
            .unwrap_err();
        assert!(matches!(e, QueryError::Param(_)), "{e:?}");
    });
}

/// Proves parameter values are bound as values, never spliced into the
/// statement: metadata holding quotes, a comment and a statement
/// separator is stored as exactly those bytes, and a text parameter
/// compared with a column matches only itself.
#[test]
fn values_are_never_spliced() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    create(&engine, "t", 2, Metric::L2);
    let q = QueryEngine::new(Arc::clone(&engine));
    let hostile = "\"x'); DROP TABLE t; --\"";
    block_on(async {
        let mut s = Session::default();
        let insert = q
            .prepare("INSERT INTO t (id, vec, metadata) VALUES ($1, $2, $3)")
            .await
            .unwrap();
        q.run(
            &insert,
            vec![ScalarValue::Int64(Some(5)), utf8("[1,2]"), utf8(hostile)],
            &mut s,
            Access::ReadWrite,
        )
        .await
        .unwrap();
        let stored = engine
            .read(|state| {
                let c = state.collection(&name("t")).unwrap();
                c.metadata(c.row_of(valori_core::event::RecordId(5)).unwrap() as usize)
                    .to_vec()
            })
            .unwrap();
        assert_eq!(
            valori_query::metadata::to_value(&stored).unwrap(),
            serde_json::Value::String("x'); DROP TABLE t; --".into())
        );
        let select = q.prepare("SELECT id FROM t WHERE id = $1").await.unwrap();
        assert_eq!(
            select.params(),
            &[ParamType::Typed(
                datafusion::arrow::datatypes::DataType::UInt64
            )]
        );
        let found = match q
            .run(
                &select,
                vec![ScalarValue::Int64(Some(5))],
                &mut s,
                Access::ReadOnly,
            )
            .await
            .unwrap()
        {
            Outcome::Rows(rows) => rows
                .collect()
                .await
                .unwrap()
                .batches
                .iter()
                .flat_map(|b| b.column(0).as_primitive::<UInt64Type>().values().to_vec())
                .collect::<Vec<u64>>(),
            other => panic!("{other:?}"),
        };
        assert_eq!(found, vec![5]);
        let e = q
            .run(&select, vec![utf8("5 OR 1=1")], &mut s, Access::ReadOnly)
            .await
            .unwrap_err();
        assert!(matches!(e, QueryError::Param(_)), "{e:?}");
        // A read-only client cannot write.
        let e = q
            .run(
                &insert,
                vec![ScalarValue::Int64(Some(6)), utf8("[1,2]"), utf8("{}")],
                &mut s,
                Access::ReadOnly,
            )
            .await
            .unwrap_err();
        assert!(matches!(e, QueryError::ReadOnly), "{e:?}");
    });
}

/// Proves a kept plan made for a table that is then dropped and created
/// again (with another dimension) is not used again: the next run of the
/// same text plans it anew and answers from the new table.
#[test]
fn a_plan_for_a_recreated_table_is_made_again() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    let q = QueryEngine::new(engine);
    block_on(async {
        let mut s = Session::default();
        let run = |sql: &'static str, params: Vec<ScalarValue>| {
            let q = q.clone();
            let mut session = s.clone();
            async move {
                match q
                    .run_sql(sql, params, &mut session, Access::ReadWrite)
                    .await
                {
                    Ok(outcome) => outcome.into_output().await,
                    Err(e) => Err(e),
                }
            }
        };
        let knn = "SELECT id FROM t ORDER BY vec <-> $1 LIMIT 1";
        run(
            "CREATE TABLE t (id BIGINT PRIMARY KEY, vec VECTOR(2))",
            vec![],
        )
        .await
        .unwrap();
        run("INSERT INTO t (id, vec) VALUES (1, '[1,0]')", vec![])
            .await
            .unwrap();
        let first = run(knn, vec![utf8("[1,0]")]).await.unwrap();
        assert_eq!(ids(&first.batches), vec![1]);
        run("DROP TABLE t", vec![]).await.unwrap();
        run(
            "CREATE TABLE t (id BIGINT PRIMARY KEY, vec VECTOR(3))",
            vec![],
        )
        .await
        .unwrap();
        run("INSERT INTO t (id, vec) VALUES (2, '[0,0,1]')", vec![])
            .await
            .unwrap();
        let again = run(knn, vec![utf8("[0,0,1]")]).await.unwrap();
        assert_eq!(ids(&again.batches), vec![2]);
        s.set("valori.exact", "on").unwrap();
    });
}

/// Proves a catalog query's placeholder compared with an object id is
/// typed as the object id column (`UInt32`, Postgres's `oid`), as
/// tokio-postgres's type lookup binds it.
#[test]
fn catalog_placeholders_take_the_oid_type() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    let q = QueryEngine::new(engine);
    block_on(async {
        let p = q
            .prepare(
                "SELECT t.typname, t.typtype, t.typelem, r.rngsubtype, t.typbasetype, n.nspname, t.typrelid \
                 FROM pg_catalog.pg_type t \
                 LEFT OUTER JOIN pg_catalog.pg_range r ON r.rngtypid = t.oid \
                 INNER JOIN pg_catalog.pg_namespace n ON t.typnamespace = n.oid \
                 WHERE t.oid = $1",
            )
            .await
            .unwrap();
        assert_eq!(
            p.params(),
            &[ParamType::Typed(
                datafusion::arrow::datatypes::DataType::UInt32
            )]
        );
    });
}

/// The values of the first column of a batch of `generate_series`.
fn series_values(batch: &datafusion::arrow::array::RecordBatch) -> Vec<i64> {
    batch
        .column(0)
        .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
        .values()
        .to_vec()
}

/// The rows of a series of 10^12 values, started.
async fn endless_series(q: &QueryEngine, s: &mut Session) -> valori_query::rows::Rows {
    let outcome = q
        .run_sql(
            "SELECT generate_series FROM generate_series(1, 1000000000000)",
            vec![],
            s,
            Access::ReadOnly,
        )
        .await
        .unwrap();
    match outcome {
        Outcome::Rows(rows) => rows,
        other => panic!("expected rows, got {other:?}"),
    }
}

/// Proves a query's answer is streamed, not collected: `run` returns on
/// the first batch of a series of 10^12 rows (collecting it would take
/// hours and terabytes), and the batches read next continue the series
/// where the previous one stopped.
#[test]
fn a_query_answer_streams_batch_by_batch() {
    use futures::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let q = QueryEngine::new(Arc::new(Engine::open(dir.path()).unwrap()));
    block_on(async {
        let mut s = Session::default();
        let mut rows = endless_series(&q, &mut s).await;
        assert_eq!(rows.schema().field(0).name(), "generate_series");
        let mut next = 1_i64;
        for _ in 0..4 {
            let batch = rows.next().await.unwrap().unwrap();
            let values = series_values(&batch);
            assert!(!values.is_empty());
            let expected: Vec<i64> = (next..next + values.len() as i64).collect();
            assert_eq!(values, expected);
            next += values.len() as i64;
        }
        assert!(next > 4, "four batches of the series were read");
    });
}

/// Proves the statement timeout covers the whole streamed answer, not only
/// its start: with `statement_timeout` 300 ms, the first batch of an
/// endless series arrives, and reading on ends with `QueryError::Timeout`
/// and then the end of the stream; the engine answers the next statement.
#[test]
fn the_statement_timeout_ends_a_stream_that_outlives_it() {
    use futures::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let q = QueryEngine::new(Arc::new(Engine::open(dir.path()).unwrap()));
    block_on(async {
        let mut s = Session::default();
        s.set("statement_timeout", "300ms").unwrap();
        let mut rows = endless_series(&q, &mut s).await;
        let first = rows.next().await.unwrap().unwrap();
        assert_eq!(series_values(&first)[0], 1);
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        let ended = loop {
            match rows.next().await {
                Some(Ok(_)) => continue,
                Some(Err(e)) => break e,
                None => panic!("the series ended before its timeout"),
            }
        };
        assert!(
            matches!(ended, QueryError::Timeout { after } if after.as_millis() == 300),
            "{ended:?}"
        );
        assert!(rows.next().await.is_none());
        let answer = q
            .run_sql("SELECT 41 + 1 AS x", vec![], &mut s, Access::ReadOnly)
            .await
            .unwrap()
            .into_output()
            .await
            .unwrap();
        let x = answer.batches[0]
            .column(0)
            .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
            .value(0);
        assert_eq!(x, 42);
    });
}
