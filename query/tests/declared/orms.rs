//! Writes as ORMs send them (drizzle, Sequelize, kysely, knex, SQLAlchemy),
//! with the answers PostgreSQL 16 gives: `DEFAULT` among an `INSERT`'s
//! values and `DEFAULT VALUES`, an upsert that sets the key to
//! `EXCLUDED.key`, `timestamptz` text with the offset forms clients
//! print, and DDL with named HNSW indexes inside a transaction block.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::common::ScalarValue;
use valori_engine::Engine;
use valori_query::session::Session;
use valori_query::statement::{Access, Outcome};
use valori_query::write::WriteError;
use valori_query::{QueryEngine, QueryError, datafusion};

use super::{block_on, cells, run, run_with, state_hash};

async fn rows(q: &QueryEngine, sql: &str) -> Vec<String> {
    cells(&run(q, sql).await.unwrap_or_else(|e| panic!("{sql}: {e}")))
}

async fn error(q: &QueryEngine, sql: &str) -> QueryError {
    match run(q, sql).await {
        Ok(_) => panic!("{sql}: accepted"),
        Err(e) => e,
    }
}

fn engine() -> (tempfile::TempDir, Arc<Engine>, QueryEngine) {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    let q = QueryEngine::new(Arc::clone(&engine));
    (dir, engine, q)
}

/// `DEFAULT` in `VALUES` (drizzle, Sequelize and kysely send it for every
/// column not set) gives the column's default — its sequence, `now()`, a
/// literal, or NULL — as leaving the column out does; so does `DEFAULT
/// VALUES`. A `GENERATED ALWAYS` identity column takes `DEFAULT`, a NOT
/// NULL column without a default refuses it (23502), and a parameter
/// beside `DEFAULT` is typed by its own column. The expected rows are
/// PostgreSQL 16's for the same statements.
#[test]
fn default_in_values_takes_the_columns_default() {
    let (_dir, engine, q) = engine();
    block_on(async {
        rows(
            &q,
            "CREATE TABLE t (id bigserial PRIMARY KEY, embedding vector(3), content text, \
             category int DEFAULT 7, created timestamptz DEFAULT now())",
        )
        .await;
        assert_eq!(
            rows(
                &q,
                "INSERT INTO t (id, embedding, content, category) \
                 VALUES (DEFAULT, '[1,2,3]', 'a', DEFAULT) RETURNING id, content, category"
            )
            .await,
            ["1|a|7"]
        );
        assert_eq!(
            rows(
                &q,
                "INSERT INTO t (id, embedding, content, category) \
                 VALUES (DEFAULT, '[1,2,3]', 'b', DEFAULT), (default, NULL, DEFAULT, 3) \
                 RETURNING id, content, category, embedding"
            )
            .await,
            ["2|b|7|[1.0, 2.0, 3.0]", "3|NULL|3|NULL"]
        );
        assert_eq!(
            rows(
                &q,
                "INSERT INTO t DEFAULT VALUES RETURNING id, content, category, embedding"
            )
            .await,
            ["4|NULL|7|NULL"]
        );
        assert_eq!(
            rows(
                &q,
                "INSERT INTO t VALUES (DEFAULT, DEFAULT, 'x') RETURNING id, content, category"
            )
            .await,
            ["5|x|7"]
        );
        // drizzle's form: parameters among the DEFAULTs.
        let (_, batches) = run_with(
            &q,
            "INSERT INTO t (id, embedding, content, category) \
             VALUES (DEFAULT, $1, $2, DEFAULT) RETURNING id, content, category",
            vec![
                ScalarValue::Utf8(Some("[4,5,6]".into())),
                ScalarValue::Utf8(Some("p".into())),
            ],
        )
        .await
        .unwrap();
        assert_eq!(cells(&batches), ["6|p|7"]);
        assert_eq!(
            rows(&q, "SELECT count(*) FROM t WHERE created IS NOT NULL").await,
            ["6"]
        );

        rows(
            &q,
            "CREATE TABLE g (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, n text)",
        )
        .await;
        assert_eq!(
            rows(
                &q,
                "INSERT INTO g (id, n) VALUES (DEFAULT, 'a'), (DEFAULT, 'b') RETURNING id, n"
            )
            .await,
            ["1|a", "2|b"]
        );

        rows(&q, "CREATE TABLE nn (id int PRIMARY KEY, c text NOT NULL)").await;
        let before = state_hash(&engine);
        for sql in [
            "INSERT INTO nn VALUES (1, DEFAULT)",
            "INSERT INTO nn DEFAULT VALUES",
        ] {
            let e = error(&q, sql).await;
            assert!(
                matches!(e, QueryError::Write(WriteError::NotNull(_))),
                "{sql}: {e:?}"
            );
        }
        assert_eq!(state_hash(&engine), before);
    });
}

/// The fixed `id/vec/tag/metadata` tables have no defaults to give `id`
/// and `vec`: `DEFAULT` there is refused, naming how to get `tag`'s and
/// `metadata`'s, and nothing is written.
#[test]
fn default_in_a_fixed_table_is_refused_clearly() {
    let (_dir, engine, q) = engine();
    block_on(async {
        rows(&q, "CREATE TABLE f (id bigint PRIMARY KEY, vec vector(2))").await;
        let before = state_hash(&engine);
        for sql in [
            "INSERT INTO f VALUES (1, '[1,2]', DEFAULT)",
            "INSERT INTO f DEFAULT VALUES",
        ] {
            let e = error(&q, sql).await;
            assert!(
                matches!(&e, QueryError::Write(WriteError::Unsupported(m)) if m.contains("leave tag and metadata out")),
                "{sql}: {e:?}"
            );
        }
        assert_eq!(state_hash(&engine), before);
    });
}

/// knex's `onConflict('id').merge()` and Sequelize's `upsert()` set the
/// conflict column to `EXCLUDED` of itself: the row updated holds that
/// key already, so PostgreSQL changes nothing there, and neither does
/// Valori. Setting the key to anything else, or through another conflict
/// column, stays refused, with nothing written.
#[test]
fn upsert_may_set_the_key_to_its_excluded_value() {
    let (_dir, engine, q) = engine();
    block_on(async {
        rows(
            &q,
            "CREATE TABLE up (id int PRIMARY KEY, content text, email text UNIQUE)",
        )
        .await;
        rows(&q, "INSERT INTO up VALUES (1, 'a', 'a@x'), (2, 'b', 'b@x')").await;
        assert_eq!(
            rows(
                &q,
                "INSERT INTO up (id, content, email) VALUES (1, 'A', 'a@x'), (3, 'c', 'c@x') \
                 ON CONFLICT (id) DO UPDATE SET id = EXCLUDED.id, content = EXCLUDED.content \
                 RETURNING id, content"
            )
            .await,
            ["1|A", "3|c"]
        );
        assert_eq!(
            rows(&q, "SELECT * FROM up ORDER BY id").await,
            ["1|A|a@x", "2|b|b@x", "3|c|c@x"]
        );
        let before = state_hash(&engine);
        for sql in [
            "INSERT INTO up VALUES (1, 'Z', 'a@x') ON CONFLICT (id) DO UPDATE SET id = 5",
            "INSERT INTO up VALUES (9, 'B', 'b@x') ON CONFLICT (email) DO UPDATE SET id = EXCLUDED.id",
        ] {
            let e = error(&q, sql).await.to_string();
            assert!(e.contains("the primary key is not updated"), "{sql}: {e}");
        }
        assert_eq!(state_hash(&engine), before);
    });
}

/// `timestamptz` text as clients print it — Sequelize's `'… +00:00'`
/// with a blank before the offset, `+HH`, `+HHMM`, `-HH:MM`,
/// `-HH:MM:SS`, `Z`, `UTC`, `GMT` — is read as PostgreSQL reads it, in a
/// literal and in a parameter; a `timestamp` column checks the zone and
/// keeps the wall-clock time; a displacement beyond 15:59:59, a zone it
/// cannot read and a second zone are refused with nothing written. Each
/// expected instant is PostgreSQL 16's for the same text.
#[test]
fn timestamps_with_offsets_as_postgres_reads_them() {
    let (_dir, engine, q) = engine();
    let accepted = [
        ("2026-12-07 22:05:58.359 +00:00", "2026-12-07T22:05:58.359Z"),
        ("2026-12-07 22:05:58.359+00", "2026-12-07T22:05:58.359Z"),
        ("2026-12-07 22:05:58.359 +0530", "2026-12-07T16:35:58.359Z"),
        ("2026-12-07 22:05:58.359-08:00", "2026-12-08T06:05:58.359Z"),
        ("2026-12-07 22:05:58.359Z", "2026-12-07T22:05:58.359Z"),
        ("2026-12-07 22:05:58.359 UTC", "2026-12-07T22:05:58.359Z"),
        ("2026-12-07T22:05:58 +05", "2026-12-07T17:05:58Z"),
        ("2026-12-07 22:05:58 -08:00:30", "2026-12-08T06:06:28Z"),
        ("2026-12-07 22:05:58 gmt", "2026-12-07T22:05:58Z"),
        ("2026-12-07 22:05:58 z", "2026-12-07T22:05:58Z"),
        ("2026-12-07 22:05:58 +5:30", "2026-12-07T16:35:58Z"),
        ("2026-12-07 22:05:58 -00:30", "2026-12-07T22:35:58Z"),
        ("2026-12-07 +05", "2026-12-06T19:00:00Z"),
        ("2026-12-07 22:05:58.1234567", "2026-12-07T22:05:58.123457Z"),
        ("2026-12-07 22:05:58.0000005+00", "2026-12-07T22:05:58Z"),
        (
            "2026-12-07 22:05:58.0000015+00",
            "2026-12-07T22:05:58.000002Z",
        ),
        ("2026-12-07 22:05:58.99999951+00", "2026-12-07T22:05:59Z"),
    ];
    block_on(async {
        rows(
            &q,
            "CREATE TABLE ts (id int PRIMARY KEY, at timestamptz, wall timestamp)",
        )
        .await;
        for (i, (text, _)) in accepted.iter().enumerate() {
            rows(
                &q,
                &format!("INSERT INTO ts (id, at) VALUES ({i}, '{text}')"),
            )
            .await;
        }
        let expected: Vec<String> = accepted
            .iter()
            .enumerate()
            .map(|(i, (_, at))| format!("{i}|{at}"))
            .collect();
        assert_eq!(
            rows(&q, "SELECT id, at FROM ts ORDER BY id").await,
            expected
        );
        // Sequelize's UPDATE, the value a parameter.
        let (tag, _) = run_with(
            &q,
            "UPDATE ts SET at = $1 WHERE id = 0",
            vec![ScalarValue::Utf8(Some(
                "2026-12-07 23:05:58.359 +01:00".into(),
            ))],
        )
        .await
        .unwrap();
        assert_eq!(tag, "UPDATE 1");
        assert_eq!(
            rows(&q, "SELECT at FROM ts WHERE id = 0").await,
            ["2026-12-07T22:05:58.359Z"]
        );
        // A timestamp keeps the time written; its zone is checked.
        rows(
            &q,
            "UPDATE ts SET wall = '2026-12-07 22:05:58 +0530' WHERE id = 1",
        )
        .await;
        rows(
            &q,
            "UPDATE ts SET wall = '2026-12-07 22:05:58+05:30' WHERE id = 2",
        )
        .await;
        assert_eq!(
            rows(&q, "SELECT wall FROM ts WHERE id IN (1, 2) ORDER BY id").await,
            ["2026-12-07T22:05:58", "2026-12-07T22:05:58"]
        );
        let before = state_hash(&engine);
        for (column, text) in [
            ("at", "2026-12-07 22:05:58+16"),
            ("at", "2026-12-07 22:05:58 +00:60"),
            ("at", "2026-12-07 22:05:58 +053012"),
            ("at", "2026-12-07 22:05:58 xyz"),
            ("at", "2026-12-07 22:05:58 +05 +05"),
            ("wall", "2026-12-07 22:05:58 +99"),
        ] {
            let sql = format!("UPDATE ts SET {column} = '{text}' WHERE id = 3");
            let e = error(&q, &sql).await.to_string();
            assert!(e.contains("invalid input syntax for type"), "{sql}: {e}");
        }
        assert_eq!(state_hash(&engine), before);
    });
}

/// `sql` statements run in order on one session (a transaction block).
async fn in_block(q: &QueryEngine, statements: &[&str]) -> Vec<RecordBatch> {
    let mut session = Session::default();
    let mut last = Vec::new();
    for sql in statements {
        let prepared = q.prepare_for(&session, sql).await.unwrap();
        last = match q
            .run(&prepared, Vec::new(), &mut session, Access::ReadWrite)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
        {
            Outcome::Rows(rows) => rows.collect().await.unwrap().batches,
            _ => Vec::new(),
        };
    }
    last
}

/// A transaction block that creates a table, names its HNSW index with
/// another metric and parameters (a write that is itself a `Transaction`
/// of a re-index and the name), adds a btree index and rows, and upserts
/// (another such write), commits as one event: the table, its indexes
/// and rows exist afterwards as in PostgreSQL, and the state is,
/// hash for hash, the one the same statements give outside a block.
/// SQLAlchemy's `create_all` with pgvector's documented `Index(…,
/// postgresql_using='hnsw', postgresql_with={'m': 16, 'ef_construction':
/// 64}, postgresql_ops={'embedding': 'vector_cosine_ops'})` commits too.
#[test]
fn a_block_with_named_hnsw_indexes_commits_as_one_event() {
    let block = [
        "CREATE TABLE txd (id int PRIMARY KEY, e vector(3), c int)",
        "CREATE INDEX txd_h ON txd USING hnsw (e vector_l2_ops) WITH (m = 32)",
        "CREATE INDEX txd_c ON txd (c)",
        "INSERT INTO txd VALUES (1, '[1,0,0]', 5), (2, '[0,1,0]', 6)",
        "INSERT INTO txd VALUES (2, '[0,1,0]', 7), (3, '[0,0,1]', 8) \
         ON CONFLICT (id) DO UPDATE SET c = EXCLUDED.c",
    ];
    let (_dir, engine, q) = engine();
    let (_other, reference, r) = self::engine();
    block_on(async {
        for sql in block {
            rows(&r, sql).await;
        }
        let before = engine.log_size();
        let mut statements = vec!["BEGIN"];
        statements.extend(block);
        statements.push("COMMIT");
        in_block(&q, &statements).await;
        assert_eq!(engine.log_size(), before + 1);
        assert_eq!(state_hash(&engine), state_hash(&reference));
        assert_eq!(
            rows(
                &q,
                "SELECT indexname FROM pg_indexes WHERE tablename = 'txd' ORDER BY indexname"
            )
            .await,
            ["txd_c", "txd_h", "txd_pkey"]
        );
        assert_eq!(
            rows(
                &q,
                "SELECT id, c FROM txd ORDER BY e <-> '[0,0.9,0]' LIMIT 1"
            )
            .await,
            ["2|7"]
        );

        in_block(
            &q,
            &[
                "BEGIN",
                "CREATE TABLE sq (id serial PRIMARY KEY, embedding vector(3))",
                "CREATE INDEX ix ON sq USING hnsw (embedding vector_cosine_ops) \
                 WITH (m = 16, ef_construction = 64)",
                "COMMIT",
            ],
        )
        .await;
        assert_eq!(
            rows(
                &q,
                "SELECT indexname FROM pg_indexes WHERE tablename = 'sq' ORDER BY indexname"
            )
            .await,
            ["ix", "sq_pkey"]
        );
    });
}

/// `ALTER COLUMN … DROP DEFAULT` and `SET DEFAULT value` (knex's
/// `.alter()`, Sequelize's `changeColumn`): later inserts take the new
/// default (or NULL), the catalog shows it, rows held keep their values,
/// and the change is an event the log replays. `DEFAULT NULL` is no
/// default; dropping a default the column does not have writes nothing.
/// An identity column refuses it (42601), a value not of the column's
/// type is refused (22P02), an unknown column is 42703 — each with
/// nothing changed. Rows and catalog values are PostgreSQL 16's.
#[test]
fn alter_column_sets_and_drops_defaults() {
    let (dir, engine, q) = engine();
    block_on(async {
        rows(
            &q,
            "CREATE TABLE d (id int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, s serial, \
             c int DEFAULT 5, t text DEFAULT 'x', e vector(2), ts timestamptz DEFAULT now())",
        )
        .await;
        rows(&q, "ALTER TABLE d ALTER COLUMN c DROP DEFAULT").await;
        let before = engine.log_size();
        rows(&q, "ALTER TABLE d ALTER COLUMN c DROP DEFAULT").await;
        assert_eq!(engine.log_size(), before);
        rows(&q, "ALTER TABLE d ALTER COLUMN t SET DEFAULT 'y'").await;
        rows(&q, "ALTER TABLE d ALTER COLUMN ts SET DEFAULT NULL").await;
        assert_eq!(
            rows(
                &q,
                "SELECT column_name, column_default FROM information_schema.columns \
                 WHERE table_name = 'd' AND column_name IN ('c', 't', 'ts') \
                 ORDER BY ordinal_position"
            )
            .await,
            ["c|NULL", "t|'y'::text", "ts|NULL"]
        );
        assert_eq!(
            rows(
                &q,
                "INSERT INTO d (e) VALUES ('[1,2]') RETURNING id, s, c, t, ts"
            )
            .await,
            ["1|1|NULL|y|NULL"]
        );
        rows(
            &q,
            "ALTER TABLE d ALTER COLUMN c SET DEFAULT 9, ALTER COLUMN t DROP DEFAULT",
        )
        .await;
        assert_eq!(
            rows(
                &q,
                "INSERT INTO d (e) VALUES ('[1,2]') RETURNING id, s, c, t, ts"
            )
            .await,
            ["2|2|9|NULL|NULL"]
        );
        let hash = state_hash(&engine);
        for (sql, code) in [
            ("ALTER TABLE d ALTER COLUMN id DROP DEFAULT", "42601"),
            ("ALTER TABLE d ALTER COLUMN c SET DEFAULT 'abc'", "22P02"),
            ("ALTER TABLE d ALTER COLUMN nope DROP DEFAULT", "42703"),
        ] {
            let e = error(&q, sql).await;
            let matched = match code {
                "42601" => matches!(e, QueryError::Write(WriteError::Syntax(_))),
                "22P02" => e
                    .to_string()
                    .contains("invalid input syntax for type integer: \"abc\""),
                _ => matches!(e, QueryError::Write(WriteError::UndefinedColumn(_))),
            };
            assert!(matched, "{sql}: {e:?}");
        }
        assert_eq!(state_hash(&engine), hash);
    });
    let hash = state_hash(&engine);
    drop(q);
    drop(engine);
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    assert_eq!(state_hash(&engine), hash);
    let q = QueryEngine::new(engine);
    block_on(async {
        assert_eq!(
            rows(
                &q,
                "SELECT column_name, column_default FROM information_schema.columns \
                 WHERE table_name = 'd' AND column_name IN ('c', 't') ORDER BY ordinal_position"
            )
            .await,
            ["c|9", "t|NULL"]
        );
    });
}
