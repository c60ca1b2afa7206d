//! Statements that LlamaIndex's and LangChain's Postgres vector stores
//! send (through SQLAlchemy), as Postgres answers them: `RETURNING` of
//! schema- and table-qualified columns, indexes on expressions and `USING
//! gin`, casts to `json` / `jsonb` / `jsonpath` in queries,
//! `jsonb_path_match` and `jsonb_exists`, `set_config` as asyncpg calls
//! it; and the refusals that name what is unsupported.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use valori_engine::Engine;
use valori_query::session::Session;
use valori_query::statement::{Access, Outcome};
use valori_query::{QueryEngine, QueryError, datafusion};

use super::{block_on, cells};

/// `sql`'s rows (or a write's `RETURNING` rows) and its notices.
pub(super) async fn run(
    q: &QueryEngine,
    sql: &str,
) -> Result<(Vec<RecordBatch>, Vec<String>), QueryError> {
    let mut session = Session::default();
    let prepared = q.prepare(sql).await?;
    match q
        .run(&prepared, Vec::new(), &mut session, Access::ReadWrite)
        .await?
    {
        Outcome::Rows(rows) | Outcome::Returning { rows, .. } => {
            Ok((rows.collect().await?.batches, Vec::new()))
        }
        Outcome::Done { notices, .. } => Ok((Vec::new(), notices)),
        _ => Ok((Vec::new(), Vec::new())),
    }
}

async fn rows(q: &QueryEngine, sql: &str) -> Vec<String> {
    cells(&run(q, sql).await.unwrap_or_else(|e| panic!("{sql}: {e}")).0)
}

async fn error(q: &QueryEngine, sql: &str) -> String {
    match run(q, sql).await {
        Ok(_) => panic!("{sql}: accepted"),
        Err(e) => e.to_string(),
    }
}

/// LlamaIndex's table and writes: its btree index on
/// `(metadata_ ->> 'ref_doc_id')` is accepted with a notice (an
/// expression over a missing column is refused), as is LangChain's `USING
/// gin (cmetadata jsonb_path_ops)`; SQLAlchemy's `INSERT … SELECT … FROM
/// (VALUES …) … RETURNING public.t.id, public.t.id AS id__1` answers the
/// new serial ids in both columns, and `RETURNING` of another table's
/// column is refused as Postgres refuses it; casts to `json` in that
/// query check the text.
#[test]
fn llamaindex_table_and_insert() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    let q = QueryEngine::new(Arc::clone(&engine));
    block_on(async {
        rows(
            &q,
            "CREATE TABLE public.data_nodes (id BIGSERIAL NOT NULL, text VARCHAR NOT NULL, \
             metadata_ JSON, node_id VARCHAR, embedding VECTOR(2), PRIMARY KEY (id))",
        )
        .await;
        let (_, notices) = run(
            &q,
            "CREATE INDEX nodes_idx_1 ON public.data_nodes USING btree ((metadata_ ->> 'ref_doc_id'))",
        )
        .await
        .unwrap();
        assert_eq!(notices.len(), 1, "{notices:?}");
        assert!(notices[0].contains("no separate index"), "{notices:?}");
        let e = error(
            &q,
            "CREATE INDEX bad ON data_nodes USING btree ((missing ->> 'k'))",
        )
        .await;
        assert!(
            e.contains("\"missing\"") && e.contains("does not exist"),
            "{e}"
        );
        let (_, notices) = run(
            &q,
            "CREATE INDEX ix_gin ON data_nodes USING gin (metadata_ jsonb_path_ops)",
        )
        .await
        .unwrap();
        assert_eq!(notices.len(), 1, "{notices:?}");
        let e = error(&q, "CREATE INDEX bad ON data_nodes USING gin (embedding)").await;
        assert!(e.contains("vector column embedding"), "{e}");

        let returned = rows(
            &q,
            "INSERT INTO public.data_nodes (text, metadata_, node_id, embedding) \
             SELECT p0::VARCHAR, p1::JSON, p2::VARCHAR, p3::VECTOR(2) FROM (VALUES \
             ('a', '{\"k\": 1}'::JSON, 'n0', '[1,0]', 0), ('b', '{\"k\": 2}'::JSON, 'n1', '[0,1]', 1)) \
             AS imp_sen(p0, p1, p2, p3, sen_counter) ORDER BY sen_counter \
             RETURNING public.data_nodes.id, public.data_nodes.id AS id__1",
        )
        .await;
        assert_eq!(returned, ["1|1", "2|2"]);
        assert_eq!(
            rows(
                &q,
                "SELECT node_id, metadata_ ->> 'k' FROM data_nodes ORDER BY id"
            )
            .await,
            ["n0|1", "n1|2"]
        );
        let e = error(
            &q,
            "INSERT INTO data_nodes (text, embedding) VALUES ('c', '[1,1]') RETURNING other.id",
        )
        .await;
        assert!(e.contains("\"other\""), "{e}");
        let e = error(
            &q,
            "INSERT INTO data_nodes (text, metadata_, embedding) \
             SELECT 'c', CAST('{not json' AS JSON), '[1,1]'",
        )
        .await;
        assert!(e.contains("invalid input syntax for type json"), "{e}");
        // Nothing of the refused statements was written.
        assert_eq!(rows(&q, "SELECT count(*) FROM data_nodes").await, ["2"]);
    });
}

/// LangChain's filters: `jsonb_path_match(m, CAST(p AS JSONPATH),
/// CAST(v AS JSONB))` selects exactly the rows whose metadata satisfy the
/// comparison (as Postgres's lax mode does: a missing field or a string
/// compared with a number does not match), `jsonb_exists` the rows with
/// the key; `::jsonb` answers the canonical text; a path outside the
/// supported subset is an error naming it.
#[test]
fn langchain_filters_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    let q = QueryEngine::new(Arc::clone(&engine));
    block_on(async {
        rows(
            &q,
            "CREATE TABLE e (id VARCHAR PRIMARY KEY, cmetadata JSONB, embedding VECTOR(2))",
        )
        .await;
        rows(
            &q,
            "INSERT INTO e VALUES ('a', '{\"n\": 1, \"k\": \"x\"}', '[1,0]'), \
             ('b', '{\"n\": 2.5, \"k\": \"y\"}', '[0,1]'), ('c', '{\"n\": \"3\"}', '[1,1]'), \
             ('d', '{\"k\": \"x\", \"tags\": [\"p\", \"q\"]}', '[2,1]')",
        )
        .await;
        let matching = |path: &'static str, value: &'static str| {
            let q = &q;
            async move {
                rows(
                    q,
                    &format!(
                        "SELECT id FROM e WHERE jsonb_path_match(cmetadata, \
                         CAST('{path}' AS JSONPATH), CAST('{{\"value\": {value}}}' AS JSONB)) ORDER BY id"
                    ),
                )
                .await
            }
        };
        assert_eq!(matching("$.k == $value", "\"x\"").await, ["a", "d"]);
        assert_eq!(matching("$.k != $value", "\"x\"").await, ["b"]);
        assert_eq!(matching("$.n >= $value", "2").await, ["b"]);
        assert_eq!(matching("$.n < $value", "2.5").await, ["a"]);
        assert_eq!(matching("$.tags == $value", "\"q\"").await, ["d"]);
        assert_eq!(
            rows(
                &q,
                "SELECT id FROM e WHERE jsonb_exists(cmetadata, 'n') ORDER BY id"
            )
            .await,
            ["a", "b", "c"]
        );
        assert_eq!(
            rows(&q, "SELECT '{\"bb\": 1, \"a\": [1,2]}'::jsonb").await,
            ["{\"a\": [1, 2], \"bb\": 1}"]
        );
        let e = error(
            &q,
            "SELECT id FROM e WHERE jsonb_path_match(cmetadata, '$.tags[0] == \"p\"')",
        )
        .await;
        assert!(e.contains("jsonpath") && e.contains("supported"), "{e}");
    });
}

/// asyncpg's type lookup: `current_setting('jit')` is `off` (Valori
/// compiles no query code) and `set_config('jit', 'off', false)`
/// restates it; `set_config` of another value, or of a setting the
/// server does not fix, is refused naming SET.
#[test]
fn set_config_restates_fixed_settings() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    let q = QueryEngine::new(Arc::clone(&engine));
    block_on(async {
        assert_eq!(
            rows(
                &q,
                "SELECT current_setting('jit') AS cur, set_config('jit', 'off', false) AS new"
            )
            .await,
            ["off|off"]
        );
        let e = error(&q, "SELECT set_config('jit', 'on', false)").await;
        assert!(e.contains("fixed"), "{e}");
        let e = error(&q, "SELECT set_config('work_mem', '1MB', false)").await;
        assert!(e.contains("use SET"), "{e}");
    });
}
