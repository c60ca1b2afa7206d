//! Tables as users declare them, through the statement layer: pgvector's
//! README flow, every scalar type with NULLs and defaults, catalogs that
//! describe the columns, bad values refused with the state unchanged, and
//! the state rebuilt from the log alone.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use valori_engine::Engine;
use valori_query::session::Session;
use valori_query::statement::{Access, Outcome};
use valori_query::{QueryEngine, QueryError, datafusion};

#[path = "declared/btree.rs"]
mod btree;
#[path = "declared/foreign_keys.rs"]
mod foreign_keys;
#[path = "declared/frameworks.rs"]
mod frameworks;
#[path = "declared/orms.rs"]
mod orms;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

async fn run(q: &QueryEngine, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
    let mut session = Session::default();
    let prepared = q.prepare(sql).await?;
    match q
        .run(&prepared, Vec::new(), &mut session, Access::ReadWrite)
        .await?
    {
        Outcome::Rows(rows) | Outcome::Returning { rows, .. } => Ok(rows.collect().await?.batches),
        _ => Ok(Vec::new()),
    }
}

/// `sql` with parameter values, and its command tag.
async fn run_with(
    q: &QueryEngine,
    sql: &str,
    params: Vec<datafusion::common::ScalarValue>,
) -> Result<(String, Vec<RecordBatch>), QueryError> {
    let mut session = Session::default();
    let prepared = q.prepare(sql).await?;
    match q
        .run(&prepared, params, &mut session, Access::ReadWrite)
        .await?
    {
        Outcome::Returning { tag, rows } => Ok((tag, rows.collect().await?.batches)),
        Outcome::Done { tag, rows, .. } => Ok((format!("{tag} {}", rows.unwrap_or(0)), Vec::new())),
        _ => Ok((String::new(), Vec::new())),
    }
}

/// The rows of `sql` run through the plan cache (`prepare_cached`), as
/// [`cells`].
async fn cached_rows(q: &QueryEngine, sql: &str) -> Vec<String> {
    let mut session = Session::default();
    let prepared = q.prepare_cached(sql).await.unwrap();
    match q
        .run(&prepared, Vec::new(), &mut session, Access::ReadOnly)
        .await
        .unwrap()
    {
        Outcome::Rows(rows) => cells(&rows.collect().await.unwrap().batches),
        _ => panic!("expected rows"),
    }
}

/// Every row as `|`-joined cells in Arrow's display form (`NULL` shown).
fn cells(batches: &[RecordBatch]) -> Vec<String> {
    let options = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for batch in batches {
        let formatters: Vec<ArrayFormatter> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for row in 0..batch.num_rows() {
            let cells: Vec<String> = formatters
                .iter()
                .map(|f| f.value(row).to_string())
                .collect();
            out.push(cells.join("|"));
        }
    }
    out
}

/// pgvector's README, step by step: a table with a `bigserial` key and a
/// vector column named `embedding`, two rows inserted by the vector only,
/// and the nearest neighbours of `[3,1,2]`. Distances by hand: `[1,2,3]`
/// is √6 ≈ 2.449 away, `[4,5,6]` √33 ≈ 5.745.
#[test]
fn pgvector_readme_flow() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    let q = QueryEngine::new(Arc::clone(&engine));
    block_on(async {
        run(
            &q,
            "CREATE TABLE items (id bigserial PRIMARY KEY, embedding vector(3))",
        )
        .await
        .unwrap();
        run(
            &q,
            "INSERT INTO items (embedding) VALUES ('[1,2,3]'), ('[4,5,6]')",
        )
        .await
        .unwrap();
        let rows = run(
            &q,
            "SELECT * FROM items ORDER BY embedding <-> '[3,1,2]' LIMIT 5",
        )
        .await
        .unwrap();
        assert_eq!(cells(&rows), ["1|[1.0, 2.0, 3.0]", "2|[4.0, 5.0, 6.0]"]);
        let rows = run(
            &q,
            "SELECT id, embedding <-> '[3,1,2]' AS d FROM items ORDER BY d LIMIT 1",
        )
        .await
        .unwrap();
        let d: f64 = cells(&rows)[0].split('|').nth(1).unwrap().parse().unwrap();
        assert!((d - 6f64.sqrt()).abs() < 1e-4, "{d}");
        // The sequence goes on after the rows it gave.
        run(&q, "INSERT INTO items (embedding) VALUES ('[0,0,1]')")
            .await
            .unwrap();
        let rows = run(
            &q,
            "SELECT id FROM items ORDER BY embedding <-> '[0,0,1]' LIMIT 1",
        )
        .await
        .unwrap();
        assert_eq!(cells(&rows), ["3"]);
        // pgvector's index statements: the vector column takes HNSW (or
        // IVFFlat's spelling), a scalar column a btree; other columns and
        // writes not supported yet are refused naming what.
        run(
            &q,
            "CREATE INDEX ON items USING hnsw (embedding vector_l2_ops)",
        )
        .await
        .unwrap();
        run(
            &q,
            "CREATE INDEX ON items USING ivfflat (embedding vector_l2_ops) WITH (lists = 100)",
        )
        .await
        .unwrap();
        run(&q, "CREATE INDEX ON items (id)").await.unwrap();
        for (sql, expected) in [
            (
                "CREATE INDEX ON items USING hnsw (id)",
                "only the vector column",
            ),
            (
                "CREATE INDEX ON items USING gin (embedding)",
                "vectors take USING hnsw",
            ),
            ("CREATE INDEX ON items USING hnsw (nope)", "does not exist"),
            (
                "UPDATE items SET embedding = '[1,1]' WHERE id = 1",
                "expected 3 dimensions",
            ),
            (
                "UPDATE items SET id = 2 WHERE id = 1",
                "record 2 already exists",
            ),
        ] {
            let err = run(&q, sql).await.unwrap_err().to_string();
            assert!(err.contains(expected), "{sql}: {err}");
        }
        // The plan is the engine's search, not a sort of every row.
        let plan = run(
            &q,
            "EXPLAIN SELECT id FROM items ORDER BY embedding <-> '[3,1,2]' LIMIT 5",
        )
        .await
        .unwrap();
        assert!(
            cells(&plan).iter().any(|l| l.contains("ValoriKnnExec")),
            "{:?}",
            cells(&plan)
        );
    });
}

/// Proves `EXPLAIN` shows the plan the query it explains runs with: a
/// vector's and a float's cast to text run as Valori's text cast (which
/// writes PostgreSQL's forms), and `EXPLAIN` showed DataFusion's `CAST`.
#[test]
fn explain_shows_the_plan_the_query_runs() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    let q = QueryEngine::new(Arc::clone(&engine));
    block_on(async {
        run(
            &q,
            "CREATE TABLE t (id int PRIMARY KEY, e vector(2), r real)",
        )
        .await
        .unwrap();
        run(&q, "INSERT INTO t VALUES (1, '[1,2]', 1e6)")
            .await
            .unwrap();
        let rows = run(&q, "SELECT e::text, r::text FROM t").await.unwrap();
        assert_eq!(cells(&rows), ["[1,2]|1e+06"]);
        let plan = cells(
            &run(&q, "EXPLAIN SELECT e::text, r::text FROM t")
                .await
                .unwrap(),
        );
        assert!(
            plan.iter().any(|l| l.contains("valori_text_cast")),
            "{plan:?}"
        );
        assert!(!plan.iter().any(|l| l.contains("CAST(")), "{plan:?}");
    });
}

/// Every scalar type, NULLs, literal and computed defaults, a text key;
/// values read back in their canonical form; filters on the columns;
/// catalogs that describe them.
#[test]
fn declared_types_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    let q = QueryEngine::new(Arc::clone(&engine));
    block_on(async {
        run(
            &q,
            "CREATE TABLE docs (
                slug varchar(12) PRIMARY KEY,
                embedding vector(2),
                content text NOT NULL,
                category_id integer,
                small smallint DEFAULT 7,
                score double precision,
                ratio real,
                price numeric(10, 2),
                active boolean DEFAULT true,
                uid uuid DEFAULT gen_random_uuid(),
                day date,
                at timestamp,
                created_at timestamptz DEFAULT now(),
                source jsonb,
                raw json,
                blob bytea,
                labels text[],
                counts integer[]
            )",
        )
        .await
        .unwrap();
        run(
            &q,
            "INSERT INTO docs (slug, embedding, content, category_id, score, ratio, price, day, at, source, raw, blob, labels, counts) VALUES
             ('a', '[1,0]', 'first', 123, 0.5, 1.25, '12.50', '2024-02-29', '2024-03-01 12:34:56.5', '{\"b\": 1, \"a\": [1, 2]}', '{\"b\":1}', '\\x0102', '{x,\"y z\",NULL}', ARRAY[1, 2]),
             ('b', '[0,1]', 'second', NULL, -1e3, NULL, '-0.010', NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
        )
        .await
        .unwrap();
        let rows = run(
            &q,
            "SELECT slug, content, category_id, small, score, ratio, price, active, day, at, source, raw, blob, labels, counts FROM docs ORDER BY slug",
        )
        .await
        .unwrap();
        assert_eq!(
            cells(&rows),
            [
                "a|first|123|7|0.5|1.25|12.5|true|2024-02-29|2024-03-01T12:34:56.500|{\"a\": [1, 2], \"b\": 1}|{\"b\":1}|0102|[x, y z, NULL]|[1, 2]",
                "b|second|NULL|7|-1000.0|NULL|-0.01|true|NULL|NULL|NULL|NULL|NULL|NULL|NULL",
            ]
        );
        // Computed defaults: a version-4 uuid and the time of the insert.
        let rows = run(&q, "SELECT uid, created_at FROM docs WHERE slug = 'a'")
            .await
            .unwrap();
        let row = &cells(&rows)[0];
        let (uid, created) = row.split_once('|').unwrap();
        assert_eq!(uid.len(), 36, "{uid}");
        assert_eq!(&uid[14..15], "4", "{uid}");
        assert!(created.starts_with("20"), "{created}");
        // Filters on declared columns, with and without a vector search.
        let rows = run(
            &q,
            "SELECT slug FROM docs WHERE category_id = 123 ORDER BY embedding <-> '[0,1]' LIMIT 5",
        )
        .await
        .unwrap();
        assert_eq!(cells(&rows), ["a"]);
        let rows = run(&q, "SELECT slug FROM docs WHERE category_id IS NULL")
            .await
            .unwrap();
        assert_eq!(cells(&rows), ["b"]);
        // The catalogs describe the declared columns as Postgres would.
        let rows = run(
            &q,
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE table_name = 'docs' ORDER BY ordinal_position",
        )
        .await
        .unwrap();
        assert_eq!(
            cells(&rows),
            [
                "slug|character varying|NO",
                "embedding|USER-DEFINED|YES",
                "content|text|NO",
                "category_id|integer|YES",
                "small|smallint|YES",
                "score|double precision|YES",
                "ratio|real|YES",
                "price|numeric|YES",
                "active|boolean|YES",
                "uid|uuid|YES",
                "day|date|YES",
                "at|timestamp without time zone|YES",
                "created_at|timestamp with time zone|YES",
                "source|jsonb|YES",
                "raw|json|YES",
                "blob|bytea|YES",
                "labels|ARRAY|YES",
                "counts|ARRAY|YES",
            ]
        );
    });
}

/// Proves `char(n)` is PostgreSQL's `character(n)` (PostgreSQL 16's
/// rules, docs/sql.md "character(n)"): a value is stored and sent padded
/// with blanks to n characters (`'ab'` in a `char(3)` is `ab `, 3
/// octets), trailing blanks beyond n are dropped, other characters
/// beyond n refuse the statement (`value too long for type
/// character(3)`, changing nothing), `char` alone is `char(1)`; `length`
/// and `||` read the value without its trailing blanks (`bpcharlen`, the
/// cast to `text`: 2 and `ab|`), and `=` ignores them (`bpchareq`). The
/// padded values are what the log holds: reopening the directory gives
/// the same state hash and rows.
#[test]
fn char_n_is_blank_padded_as_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let before_reopen;
    {
        let engine = Arc::new(Engine::open(dir.path()).unwrap());
        let q = QueryEngine::new(Arc::clone(&engine));
        before_reopen = block_on(async {
            run(
                &q,
                "CREATE TABLE c (id int PRIMARY KEY, a char(3), b character(2), d char)",
            )
            .await
            .unwrap();
            run(
                &q,
                "INSERT INTO c VALUES (1, 'ab', 'xy', 'z'), (2, 'abc   ', 'x', ' ')",
            )
            .await
            .unwrap();
            let before = engine.proof().unwrap().hashes.state;
            for bad in [
                "INSERT INTO c VALUES (3, 'abcd', 'x', 'z')",
                "INSERT INTO c VALUES (3, 'ab', 'xyz', 'z')",
                "INSERT INTO c VALUES (3, 'ab', 'x', 'zz')",
                "UPDATE c SET a = 'abcd' WHERE id = 1",
            ] {
                let e = run(&q, bad).await.unwrap_err().to_string();
                assert!(
                    e.contains("value too long for type character("),
                    "{bad}: {e}"
                );
            }
            assert_eq!(engine.proof().unwrap().hashes.state, before);
            before
        });
    }
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    assert_eq!(engine.proof().unwrap().hashes.state, before_reopen);
    let q = QueryEngine::new(Arc::clone(&engine));
    block_on(async {
        let rows = run(
            &q,
            "SELECT id, a, octet_length(a), length(a), a || '|', b, d, a = 'ab', a = 'ab ' \
             FROM c ORDER BY id",
        )
        .await
        .unwrap();
        assert_eq!(
            cells(&rows),
            [
                "1|ab |3|2|ab||xy|z|true|true",
                "2|abc|3|3|abc||x | |false|false"
            ]
        );
    });
}

/// Bad writes are refused with a message naming the cause, and change
/// nothing: a duplicate key, NULL in a NOT NULL column, a value of the
/// wrong form, a second vector column, an unknown column; after them the
/// state hash is the one before, and reopening the directory (the log
/// alone) gives the same hash and the same rows.
#[test]
fn bad_writes_change_nothing_and_the_log_rebuilds_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let before;
    {
        let engine = Arc::new(Engine::open(dir.path()).unwrap());
        let q = QueryEngine::new(Arc::clone(&engine));
        before = block_on(async {
            run(
                &q,
                "CREATE TABLE t (id integer PRIMARY KEY, embedding vector(2), name text NOT NULL, n int)",
            )
            .await
            .unwrap();
            run(
                &q,
                "INSERT INTO t VALUES (1, '[1,1]', 'one', 1), (2, '[2,2]', 'two', NULL)",
            )
            .await
            .unwrap();
            run(
                &q,
                "CREATE TABLE fixed (id bigint, vec vector(2), tag bigint)",
            )
            .await
            .unwrap();
            let hash = engine.proof().unwrap().hashes.state;
            let refused = [
                (
                    "INSERT INTO t VALUES (1, '[3,3]', 'again', 3)",
                    "duplicate key",
                ),
                (
                    "INSERT INTO t (id, embedding) VALUES (3, '[3,3]')",
                    "not-null",
                ),
                (
                    "INSERT INTO t VALUES (3, '[3,3]', 'x', 'many')",
                    "invalid input syntax for type integer",
                ),
                (
                    "INSERT INTO t VALUES (3, '[3,3,3]', 'x', 1)",
                    "expected 2 dimensions",
                ),
                ("INSERT INTO t (id, nope) VALUES (3, 1)", "does not exist"),
                (
                    "INSERT INTO t VALUES (3, '[3,3]', 'x', 99999999999)",
                    "out of range",
                ),
                (
                    "CREATE TABLE u (a vector(2), b vector(2))",
                    "one vector column",
                ),
                ("CREATE TABLE u (a vector(2), b money)", "column type money"),
                // A table with the fixed columns takes at most four values.
                (
                    "INSERT INTO fixed VALUES (1, '[1,1]', 2, '{}', 5)",
                    "has 4 columns",
                ),
                // A table that does not exist is named as missing.
                (
                    "INSERT INTO missing VALUES (1, '[1,1]', 2, '{}', 5)",
                    "table \"missing\" does not exist",
                ),
            ];
            for (sql, expected) in refused {
                let err = run(&q, sql).await.unwrap_err().to_string();
                assert!(err.contains(expected), "{sql}: {err}");
                assert_eq!(engine.proof().unwrap().hashes.state, hash, "{sql}");
            }
            hash
        });
    }
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    assert_eq!(engine.proof().unwrap().hashes.state, before);
    let q = QueryEngine::new(engine);
    block_on(async {
        let rows = run(&q, "SELECT id, name, n FROM t ORDER BY id")
            .await
            .unwrap();
        assert_eq!(cells(&rows), ["1|one|1", "2|two|NULL"]);
        // UPDATE by the integer key: existing rows change, others match
        // nothing; a NOT NULL column refuses NULL, nothing written.
        run(&q, "UPDATE t SET n = 5, name = 'uno' WHERE id IN (1, 3)")
            .await
            .unwrap();
        let err = run(&q, "UPDATE t SET name = NULL WHERE id = 2")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("not-null"), "{err}");
        let rows = run(&q, "SELECT id, name, n FROM t ORDER BY id")
            .await
            .unwrap();
        assert_eq!(cells(&rows), ["1|uno|5", "2|two|NULL"]);
    });
}

/// A statement kept in the plan cache for a table that was dropped and
/// created again is planned again for the new table, not failed with
/// "re-created while the query was planned".
#[test]
fn kept_plans_follow_a_recreated_table() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    let q = QueryEngine::new(Arc::clone(&engine));
    block_on(async {
        let knn = "SELECT id FROM items ORDER BY embedding <-> '[1,1]' LIMIT 2";
        let cached = |q: QueryEngine| async move { cached_rows(&q, knn).await };
        run(
            &q,
            "CREATE TABLE items (id int PRIMARY KEY, embedding vector(2))",
        )
        .await
        .unwrap();
        run(&q, "INSERT INTO items VALUES (1, '[1,1]'), (2, '[5,5]')")
            .await
            .unwrap();
        assert_eq!(cached(q.clone()).await, ["1", "2"]);
        run(&q, "DROP TABLE items").await.unwrap();
        run(
            &q,
            "CREATE TABLE items (id int PRIMARY KEY, embedding vector(2))",
        )
        .await
        .unwrap();
        run(&q, "INSERT INTO items VALUES (7, '[1,2]')")
            .await
            .unwrap();
        assert_eq!(cached(q.clone()).await, ["7"]);
    });
}

/// `INSERT … ON CONFLICT`, `RETURNING` and `INSERT … SELECT` as Postgres
/// defines them: `DO NOTHING` leaves a row whose key is taken (and a
/// later row of the same statement with a key an earlier one took);
/// `DO UPDATE` assigns to the existing row, `EXCLUDED` being the row
/// proposed (with its defaults); one statement may not update a row
/// twice (21000); the target must be a unique column (42P10); a refused
/// statement writes nothing. `RETURNING` answers with the rows as stored,
/// defaults and serial values included. Each proposed row takes the next
/// serial value, as in Postgres; a value taken by a row that was not
/// inserted is not kept, so a later statement takes it again (Postgres
/// leaves a gap). The log alone rebuilds the same state.
#[test]
fn upserts_returning_and_insert_select() {
    let dir = tempfile::tempdir().unwrap();
    let (hash, expected) = {
        let engine = Arc::new(Engine::open(dir.path()).unwrap());
        let q = QueryEngine::new(Arc::clone(&engine));
        let hash = block_on(async {
            run(
                &q,
                "CREATE TABLE docs (id bigserial PRIMARY KEY, slug text UNIQUE, body text, \
                 n int DEFAULT 7, embedding vector(2))",
            )
            .await
            .unwrap();
            // Serial values 1 and 2, the default 7.
            let (tag, rows) = run_with(
                &q,
                "INSERT INTO docs (slug, body, embedding) VALUES ('a', 'first', '[1,1]'), \
                 ('b', 'second', '[2,2]') RETURNING id, slug, n AS count, embedding",
                Vec::new(),
            )
            .await
            .unwrap();
            assert_eq!(tag, "INSERT 0");
            assert_eq!(cells(&rows), ["1|a|7|[1.0, 1.0]", "2|b|7|[2.0, 2.0]"]);
            // `a` is taken: nothing inserted, nothing returned.
            let (_, rows) = run_with(
                &q,
                "INSERT INTO docs (slug, body, embedding) VALUES ('a', 'again', '[3,3]') \
                 ON CONFLICT (slug) DO NOTHING RETURNING *",
                Vec::new(),
            )
            .await
            .unwrap();
            assert!(cells(&rows).is_empty());
            // Without RETURNING the tag counts the rows written: `c` is
            // new, the second `c` conflicts with it and is left.
            let (tag, _) = run_with(
                &q,
                "INSERT INTO docs (slug, body, embedding) VALUES ('c', 'third', '[3,3]'), \
                 ('c', 'twice', '[9,9]') ON CONFLICT DO NOTHING",
                Vec::new(),
            )
            .await
            .unwrap();
            assert_eq!(tag, "INSERT 1");
            // `a` exists: updated from EXCLUDED and a parameter; `d` is
            // inserted with serial 5 (the proposed `a` took 4). Both
            // returned, in the statement's order.
            let (_, rows) = run_with(
                &q,
                "INSERT INTO docs (slug, body, embedding) VALUES ('a', 'again', '[5,5]'), \
                 ('d', 'fourth', '[4,4]') ON CONFLICT (slug) DO UPDATE SET body = EXCLUDED.body, \
                 n = $1 RETURNING id, slug, body, n, embedding",
                vec![datafusion::common::ScalarValue::Int64(Some(9))],
            )
            .await
            .unwrap();
            assert_eq!(
                cells(&rows),
                ["1|a|again|9|[1.0, 1.0]", "5|d|fourth|7|[4.0, 4.0]"]
            );
            let hash = engine.proof().unwrap().hashes.state;
            let refused = [
                (
                    "INSERT INTO docs (slug, embedding) VALUES ('a', '[1,1]'), ('a', '[2,2]') \
                     ON CONFLICT (slug) DO UPDATE SET body = EXCLUDED.body",
                    "cannot affect row a second time",
                ),
                (
                    "INSERT INTO docs (slug, embedding) VALUES ('z', '[1,1]') \
                     ON CONFLICT (body) DO NOTHING",
                    "no unique or exclusion constraint",
                ),
                (
                    "INSERT INTO docs (slug, embedding) VALUES ('a', '[1,1]')",
                    "Key (slug)=(a) already exists",
                ),
                (
                    "INSERT INTO docs (slug, embedding) VALUES ('b', '[1,1]') \
                     ON CONFLICT (slug) DO UPDATE SET nope = 1",
                    "does not exist",
                ),
                (
                    "INSERT INTO docs (slug, embedding) VALUES ('y', '[1,1]') \
                     ON CONFLICT (slug) DO UPDATE SET embedding = EXCLUDED.body",
                    "the vector takes the vector",
                ),
                (
                    "INSERT INTO docs (slug, embedding) SELECT slug, embedding FROM docs",
                    "already exists",
                ),
            ];
            for (sql, expected) in refused {
                let err = run(&q, sql).await.unwrap_err().to_string();
                assert!(err.contains(expected), "{sql}: {err}");
                assert_eq!(engine.proof().unwrap().hashes.state, hash, "{sql}");
            }
            // INSERT … SELECT with a parameter: the query's rows, computed
            // from the table itself, inserted as new rows 6 and 7.
            let (_, rows) = run_with(
                &q,
                "INSERT INTO docs (slug, body, embedding) SELECT 'x' || slug, upper(body), embedding \
                 FROM docs WHERE id <= $1 ORDER BY id RETURNING id, slug, body",
                vec![datafusion::common::ScalarValue::Int64(Some(2))],
            )
            .await
            .unwrap();
            assert_eq!(cells(&rows), ["6|xa|AGAIN", "7|xb|SECOND"]);
            engine.proof().unwrap().hashes.state
        });
        let rows = block_on(run(&q, "SELECT id, slug, body, n FROM docs ORDER BY id")).unwrap();
        (hash, cells(&rows))
    };
    assert_eq!(
        expected,
        [
            "1|a|again|9",
            "2|b|second|7",
            "3|c|third|7",
            "5|d|fourth|7",
            "6|xa|AGAIN|7",
            "7|xb|SECOND|7"
        ]
    );
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    assert_eq!(engine.proof().unwrap().hashes.state, hash);
    let q = QueryEngine::new(engine);
    let rows = block_on(run(&q, "SELECT id, slug, body, n FROM docs ORDER BY id")).unwrap();
    assert_eq!(cells(&rows), expected);
}

/// `RETURNING`, `ON CONFLICT` and a `WHERE` other than `id = … / id IN
/// (…)` on a table with the fixed columns are refused naming what is
/// supported, and write nothing.
#[test]
fn returning_on_fixed_tables_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    let q = QueryEngine::new(Arc::clone(&engine));
    block_on(async {
        run(&q, "CREATE TABLE f (id bigint PRIMARY KEY, vec vector(2))")
            .await
            .unwrap();
        let hash = engine.proof().unwrap().hashes.state;
        for (sql, expected) in [
            (
                "INSERT INTO f VALUES (1, '[1,1]') RETURNING id",
                "declared columns",
            ),
            (
                "INSERT INTO f VALUES (1, '[1,1]') ON CONFLICT DO NOTHING",
                "declared columns",
            ),
            ("DELETE FROM f", "id IN (…)"),
            (
                "DELETE FROM f WHERE id = 1 RETURNING id",
                "declared columns",
            ),
            (
                "UPDATE f SET tag = 1 WHERE id = 1 RETURNING id",
                "declared columns",
            ),
            ("UPDATE f SET tag = 1 WHERE tag = 2", "id IN (…)"),
        ] {
            let err = run(&q, sql).await.unwrap_err().to_string();
            assert!(err.contains(expected), "{sql}: {err}");
            assert_eq!(engine.proof().unwrap().hashes.state, hash, "{sql}");
        }
    });
}

/// `UPDATE … SET embedding = …` and `ON CONFLICT … DO UPDATE SET
/// embedding = EXCLUDED.embedding` replace the rows' vectors: the nearest
/// neighbours follow the new vectors (the index holds the new rows, the
/// old ones are gone), the other columns keep their values unless
/// assigned, the keys stay, and the log alone rebuilds the same state.
/// Distances by hand from [0,0]: [3,4] is 5, [6,8] is 10, [0,1] is 1.
#[test]
fn vectors_are_updated_and_reindexed() {
    let dir = tempfile::tempdir().unwrap();
    let hash = {
        let engine = Arc::new(Engine::open(dir.path()).unwrap());
        let q = QueryEngine::new(Arc::clone(&engine));
        block_on(async {
            run(
                &q,
                "CREATE TABLE items (id bigint PRIMARY KEY, slug text UNIQUE, n int, embedding vector(2))",
            )
            .await
            .unwrap();
            run(
                &q,
                "INSERT INTO items VALUES (1, 'a', 10, '[3,4]'), (2, 'b', 20, '[6,8]'), (3, 'c', 30, '[9,9]')",
            )
            .await
            .unwrap();
            let nearest = "SELECT id, embedding <-> '[0,0]' AS d FROM items ORDER BY embedding <-> '[0,0]' LIMIT 2";
            assert_eq!(cells(&run(&q, nearest).await.unwrap()), ["1|5.0", "2|10.0"]);
            // Row 2 moves next to the origin; its other columns stay.
            let (tag, _) = run_with(
                &q,
                "UPDATE items SET embedding = '[0,1]' WHERE id = 2",
                Vec::new(),
            )
            .await
            .unwrap();
            assert_eq!(tag, "UPDATE 1");
            assert_eq!(cells(&run(&q, nearest).await.unwrap()), ["2|1.0", "1|5.0"]);
            // Vector and a scalar at once, by a parameter.
            run_with(
                &q,
                "UPDATE items SET embedding = $1, n = 31 WHERE id = 3",
                vec![datafusion::common::ScalarValue::Utf8(Some("[0,2]".into()))],
            )
            .await
            .unwrap();
            // Upsert: row 1 gets the proposed vector, its slug stays.
            let (_, rows) = run_with(
                &q,
                "INSERT INTO items (id, slug, embedding) VALUES (1, 'a', '[0,3]') \
                 ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding RETURNING id, slug, n, embedding",
                Vec::new(),
            )
            .await
            .unwrap();
            assert_eq!(cells(&rows), ["1|a|10|[0.0, 3.0]"]);
            let all = "SELECT id, slug, n, embedding FROM items ORDER BY id";
            assert_eq!(
                cells(&run(&q, all).await.unwrap()),
                [
                    "1|a|10|[0.0, 3.0]",
                    "2|b|20|[0.0, 1.0]",
                    "3|c|31|[0.0, 2.0]"
                ]
            );
            assert_eq!(cells(&run(&q, nearest).await.unwrap()), ["2|1.0", "3|2.0"]);
            // A vector of the wrong dimension is refused, nothing written
            // (NULL: `null_vectors_are_stored_and_never_searched`).
            let before = engine.proof().unwrap().hashes.state;
            for (sql, expected) in [(
                "UPDATE items SET embedding = '[1,2,3]' WHERE id = 1",
                "dimensions",
            )] {
                let err = run(&q, sql).await.unwrap_err().to_string();
                assert!(err.contains(expected), "{sql}: {err}");
                assert_eq!(engine.proof().unwrap().hashes.state, before, "{sql}");
            }
            before
        })
    };
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    assert_eq!(engine.proof().unwrap().hashes.state, hash);
    let q = QueryEngine::new(engine);
    let rows = block_on(run(&q, "SELECT id, n, embedding FROM items ORDER BY id")).unwrap();
    assert_eq!(
        cells(&rows),
        ["1|10|[0.0, 3.0]", "2|20|[0.0, 1.0]", "3|31|[0.0, 2.0]"]
    );
}

/// `UPDATE` and `DELETE` with any `WHERE` the query engine evaluates —
/// ranges, `LIKE`, `IS NULL`, boolean combinations, a distance, a
/// parameter — on a table keyed by text: the rows that match change,
/// the others do not, by hand: of (a, 1, NULL), (b, 2, 'x'), (c, 3, 'y'),
/// (d, 4, 'x'), `n >= 2 AND tag = 'x'` is b and d; `slug LIKE 'c%' OR
/// tag IS NULL` is a and c. A table without a primary key is refused,
/// nothing written, and the log alone rebuilds the same state.
#[test]
fn update_and_delete_with_any_where() {
    let dir = tempfile::tempdir().unwrap();
    let hash = {
        let engine = Arc::new(Engine::open(dir.path()).unwrap());
        let q = QueryEngine::new(Arc::clone(&engine));
        block_on(async {
            run(
                &q,
                "CREATE TABLE docs (slug text PRIMARY KEY, n int, tag text, embedding vector(2))",
            )
            .await
            .unwrap();
            run(
                &q,
                "INSERT INTO docs VALUES ('a', 1, NULL, '[0,0]'), ('b', 2, 'x', '[1,0]'), \
                 ('c', 3, 'y', '[5,5]'), ('d', 4, 'x', '[9,9]')",
            )
            .await
            .unwrap();
            // An assignment naming an unknown column is refused naming
            // it, nothing written.
            let before = engine.proof().unwrap().hashes.state;
            let err = run_with(
                &q,
                "UPDATE docs SET n = n0 WHERE n >= 2 AND tag = $1",
                vec![datafusion::common::ScalarValue::Utf8(Some("x".into()))],
            )
            .await
            .unwrap_err()
            .to_string();
            assert!(err.contains("n0"), "{err}");
            assert_eq!(engine.proof().unwrap().hashes.state, before);
            let (tag, _) = run_with(
                &q,
                "UPDATE docs SET n = 20 WHERE n >= 2 AND tag = $1",
                vec![datafusion::common::ScalarValue::Utf8(Some("x".into()))],
            )
            .await
            .unwrap();
            assert_eq!(tag, "UPDATE 2");
            // The vector too, found by a distance.
            let (tag, _) = run_with(
                &q,
                "UPDATE docs SET embedding = '[7,7]' WHERE embedding <-> '[0,0]' > 10",
                Vec::new(),
            )
            .await
            .unwrap();
            assert_eq!(tag, "UPDATE 1");
            let (tag, _) = run_with(
                &q,
                "DELETE FROM docs WHERE slug LIKE 'c%' OR tag IS NULL",
                Vec::new(),
            )
            .await
            .unwrap();
            assert_eq!(tag, "DELETE 2");
            assert_eq!(
                cells(
                    &run(&q, "SELECT slug, n, tag, embedding FROM docs ORDER BY slug")
                        .await
                        .unwrap()
                ),
                ["b|20|x|[1.0, 0.0]", "d|20|x|[7.0, 7.0]"]
            );
            // By the text key itself, and matching nothing.
            let (tag, _) = run_with(&q, "DELETE FROM docs WHERE slug = 'zz'", Vec::new())
                .await
                .unwrap();
            assert_eq!(tag, "DELETE 0");
            run(&q, "CREATE TABLE loose (n int, embedding vector(2))")
                .await
                .unwrap();
            run(&q, "INSERT INTO loose VALUES (1, '[1,1]')")
                .await
                .unwrap();
            let before = engine.proof().unwrap().hashes.state;
            let err = run(&q, "DELETE FROM loose WHERE n = 1")
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains("primary key"), "{err}");
            assert_eq!(engine.proof().unwrap().hashes.state, before);
            // Every row, without WHERE.
            let (tag, _) = run_with(&q, "DELETE FROM docs", Vec::new()).await.unwrap();
            assert_eq!(tag, "DELETE 2");
            engine.proof().unwrap().hashes.state
        })
    };
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    assert_eq!(engine.proof().unwrap().hashes.state, hash);
}

/// Tables without a vector column, as frameworks create beside their
/// vector tables (LangChain's collection table: a uuid key computed by
/// `gen_random_uuid()`, a unique name, JSON metadata): rows are inserted,
/// upserted, read, updated and deleted like any other table's, and the
/// log alone rebuilds the same state.
#[test]
fn tables_without_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let hash = {
        let engine = Arc::new(Engine::open(dir.path()).unwrap());
        let q = QueryEngine::new(Arc::clone(&engine));
        block_on(async {
            run(
                &q,
                "CREATE TABLE collections (uuid uuid PRIMARY KEY DEFAULT gen_random_uuid(), \
                 name varchar NOT NULL UNIQUE, cmetadata json)",
            )
            .await
            .unwrap();
            let (_, rows) = run_with(
                &q,
                "INSERT INTO collections (name, cmetadata) VALUES ('docs', '{\"a\": 1}'), ('notes', NULL) \
                 RETURNING name",
                Vec::new(),
            )
            .await
            .unwrap();
            assert_eq!(cells(&rows), ["docs", "notes"]);
            let (tag, _) = run_with(
                &q,
                "INSERT INTO collections (name, cmetadata) VALUES ('docs', '{\"a\": 2}') \
                 ON CONFLICT (name) DO UPDATE SET cmetadata = EXCLUDED.cmetadata",
                Vec::new(),
            )
            .await
            .unwrap();
            assert_eq!(tag, "INSERT 1");
            let (tag, _) = run_with(
                &q,
                "DELETE FROM collections WHERE name = 'notes'",
                Vec::new(),
            )
            .await
            .unwrap();
            assert_eq!(tag, "DELETE 1");
            let rows = run(
                &q,
                "SELECT name, cmetadata, length(CAST(uuid AS VARCHAR)) FROM collections",
            )
            .await
            .unwrap();
            assert_eq!(cells(&rows), ["docs|{\"a\": 2}|36"]);
            // A vector search names no vector column here.
            let err = run(
                &q,
                "SELECT name FROM collections ORDER BY name <-> '[1]' LIMIT 1",
            )
            .await
            .unwrap_err()
            .to_string();
            assert!(!err.is_empty());
            engine.proof().unwrap().hashes.state
        })
    };
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    assert_eq!(engine.proof().unwrap().hashes.state, hash);
    let q = QueryEngine::new(engine);
    let rows = block_on(run(&q, "SELECT name FROM collections")).unwrap();
    assert_eq!(cells(&rows), ["docs"]);
}

/// `COPY … FROM STDIN` into a table with declared columns, in text and
/// csv: the named columns filled from each line (`\N` and an empty csv
/// field are NULL), the others from their defaults and sequence; a bad
/// line refuses the whole COPY, nothing written.
#[test]
fn copy_into_declared_tables() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    let q = QueryEngine::new(Arc::clone(&engine));
    block_on(async {
        run(
            &q,
            "CREATE TABLE items (id bigserial PRIMARY KEY, content text, n int DEFAULT 5, embedding vector(2))",
        )
        .await
        .unwrap();
        let copy = |sql: &'static str, data: &'static str| {
            let q = q.clone();
            async move {
                let mut session = Session::default();
                let prepared = q.prepare(sql).await?;
                let Outcome::CopyIn(copy) = q
                    .run(&prepared, Vec::new(), &mut session, Access::ReadWrite)
                    .await?
                else {
                    panic!("{sql}: not a COPY");
                };
                match q
                    .copy_in(copy, data.as_bytes().to_vec(), &mut Session::default())
                    .await?
                {
                    Outcome::Done { rows, .. } => Ok::<_, QueryError>(rows.unwrap_or(0)),
                    _ => panic!("{sql}: no count"),
                }
            }
        };
        let n = copy(
            "COPY items (content, embedding) FROM STDIN",
            "a\t[1,2]\n\\N\t[3,4]\n",
        )
        .await
        .unwrap();
        assert_eq!(n, 2);
        let n = copy(
            "COPY items (id, content, n, embedding) FROM STDIN WITH (FORMAT csv)",
            "10,\"b, c\",,\"[5,6]\"\n",
        )
        .await
        .unwrap();
        assert_eq!(n, 1);
        let before = engine.proof().unwrap().hashes.state;
        for (sql, data, expected) in [
            (
                "COPY items (content, embedding) FROM STDIN",
                "x\t[1,2]\ny\t[1,2,3]\n",
                "dimensions",
            ),
            ("COPY items (content, nope) FROM STDIN", "x\t1\n", "nope"),
            (
                "COPY items (content, embedding) FROM STDIN",
                "x\n",
                "1 fields for 2",
            ),
        ] {
            let err = copy(sql, data).await.unwrap_err().to_string();
            assert!(err.contains(expected), "{sql}: {err}");
            assert_eq!(engine.proof().unwrap().hashes.state, before, "{sql}");
        }
        let rows = run(
            &q,
            "SELECT id, content, n, embedding FROM items ORDER BY id",
        )
        .await
        .unwrap();
        assert_eq!(
            cells(&rows),
            [
                "1|a|5|[1.0, 2.0]",
                "2|NULL|5|[3.0, 4.0]",
                "10|b, c|NULL|[5.0, 6.0]"
            ]
        );
    });
}

/// `TRUNCATE` deletes every row in one event and keeps the table and its
/// sequence (the next serial value continues after the largest held, as
/// Postgres's `CONTINUE IDENTITY`, its default); `RESTART IDENTITY`,
/// `CASCADE` and several tables are refused, nothing written.
#[test]
fn truncate_deletes_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    let q = QueryEngine::new(Arc::clone(&engine));
    block_on(async {
        run(
            &q,
            "CREATE TABLE items (id bigserial PRIMARY KEY, content text, embedding vector(2))",
        )
        .await
        .unwrap();
        run(
            &q,
            "INSERT INTO items (content, embedding) VALUES ('a', '[1,1]'), ('b', '[2,2]')",
        )
        .await
        .unwrap();
        let before = engine.proof().unwrap().hashes.state;
        for (sql, expected) in [
            ("TRUNCATE items RESTART IDENTITY", "RESTART IDENTITY"),
            ("TRUNCATE items CASCADE", "CASCADE"),
            ("TRUNCATE items, other", "several tables"),
            ("TRUNCATE missing", "does not exist"),
        ] {
            let err = run(&q, sql).await.unwrap_err().to_string();
            assert!(err.contains(expected), "{sql}: {err}");
            assert_eq!(engine.proof().unwrap().hashes.state, before, "{sql}");
        }
        let (tag, _) = run_with(&q, "TRUNCATE TABLE items", Vec::new())
            .await
            .unwrap();
        assert_eq!(tag, "TRUNCATE TABLE 0");
        assert!(cells(&run(&q, "SELECT id FROM items").await.unwrap()).is_empty());
        let (_, rows) = run_with(
            &q,
            "INSERT INTO items (content, embedding) VALUES ('c', '[3,3]') RETURNING id",
            Vec::new(),
        )
        .await
        .unwrap();
        assert_eq!(cells(&rows), ["3"]);
    });
}

/// `UPDATE … RETURNING` answers with the rows as the update left them
/// (the assigned columns changed, the others as they were), `DELETE …
/// RETURNING` with the rows as they were; by the integer key and by any
/// `WHERE`; the tag counts the rows.
#[test]
fn update_and_delete_returning() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    let q = QueryEngine::new(Arc::clone(&engine));
    block_on(async {
        run(
            &q,
            "CREATE TABLE items (id bigint PRIMARY KEY, content text, n int, embedding vector(2))",
        )
        .await
        .unwrap();
        run(
            &q,
            "INSERT INTO items VALUES (1, 'a', 1, '[1,1]'), (2, 'b', 2, '[2,2]'), (3, 'c', 3, '[3,3]')",
        )
        .await
        .unwrap();
        let (tag, rows) = run_with(
            &q,
            "UPDATE items SET n = 10 WHERE id IN (1, 2) RETURNING id, content, n",
            Vec::new(),
        )
        .await
        .unwrap();
        assert_eq!(tag, "UPDATE");
        assert_eq!(cells(&rows), ["1|a|10", "2|b|10"]);
        let (_, rows) = run_with(
            &q,
            "UPDATE items SET embedding = '[9,9]' WHERE content = 'c' RETURNING *",
            Vec::new(),
        )
        .await
        .unwrap();
        assert_eq!(cells(&rows), ["3|c|3|[9.0, 9.0]"]);
        let (tag, rows) = run_with(
            &q,
            "DELETE FROM items WHERE n = 10 RETURNING id, embedding",
            Vec::new(),
        )
        .await
        .unwrap();
        assert_eq!(tag, "DELETE");
        assert_eq!(cells(&rows), ["1|[1.0, 1.0]", "2|[2.0, 2.0]"]);
        let (_, rows) = run_with(
            &q,
            "DELETE FROM items WHERE id = 3 RETURNING content",
            Vec::new(),
        )
        .await
        .unwrap();
        assert_eq!(cells(&rows), ["c"]);
        assert!(cells(&run(&q, "SELECT id FROM items").await.unwrap()).is_empty());
    });
}

/// Postgres's JSON operators on a `jsonb` column, as LlamaIndex and
/// LangChain filter by metadata: `->>` (text), `->` (jsonb, canonical),
/// `@>` (containment) in the select list, in filters, and as the filter
/// of a nearest-neighbour search; a missing field is NULL; text that is
/// not JSON is an error naming the operator. By hand: of the rows
/// 1 {"doc": "x", "n": 1}, 2 {"doc": "y", "tags": ["a", "b"]} and
/// 3 {"doc": "x", "tags": ["b"]}, `->> 'doc' = 'x'` is 1 and 3,
/// `@> '{"tags": ["b"]}'` is 2 and 3; nearest [0,0] among doc x: 1 then 3.
#[test]
fn json_operators_filter_rows() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    let q = QueryEngine::new(Arc::clone(&engine));
    block_on(async {
        run(
            &q,
            "CREATE TABLE docs (id bigint PRIMARY KEY, meta jsonb, embedding vector(2))",
        )
        .await
        .unwrap();
        run(
            &q,
            "INSERT INTO docs VALUES (1, '{\"doc\": \"x\", \"n\": 1}', '[1,0]'), \
             (2, '{\"doc\": \"y\", \"tags\": [\"a\", \"b\"]}', '[0,1]'), \
             (3, '{\"doc\": \"x\", \"tags\": [\"b\"]}', '[3,3]')",
        )
        .await
        .unwrap();
        let rows = run(
            &q,
            "SELECT id, meta ->> 'doc', meta -> 'tags', meta -> 'tags' ->> 0 FROM docs ORDER BY id",
        )
        .await
        .unwrap();
        assert_eq!(
            cells(&rows),
            ["1|x|NULL|NULL", "2|y|[\"a\", \"b\"]|a", "3|x|[\"b\"]|b"]
        );
        let rows = run(
            &q,
            "SELECT id FROM docs WHERE meta ->> 'doc' = 'x' ORDER BY id",
        )
        .await
        .unwrap();
        assert_eq!(cells(&rows), ["1", "3"]);
        let rows = run(
            &q,
            "SELECT id FROM docs WHERE meta @> '{\"tags\": [\"b\"]}' ORDER BY id",
        )
        .await
        .unwrap();
        assert_eq!(cells(&rows), ["2", "3"]);
        let rows = run(
            &q,
            "SELECT id FROM docs WHERE meta ->> 'doc' = 'x' ORDER BY embedding <-> '[0,0]' LIMIT 5",
        )
        .await
        .unwrap();
        assert_eq!(cells(&rows), ["1", "3"]);
        let err = run(&q, "SELECT 'nope' ->> 'a'")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("->>"), "{err}");
    });
}

/// `COPY … TO STDOUT` through the statement layer: a table (all its
/// declared columns, or those named) and a query are prepared as the
/// query whose rows are copied, with no result columns of their own, and
/// run as the rows with the format the options give; options Postgres
/// refuses in binary are refused. A binary `COPY … FROM STDIN` takes
/// values decoded by the front end (a vector as its components) as one
/// event, read back with SELECT; the log alone rebuilds the same state.
#[test]
fn copy_to_stdout_and_binary_copy_in() {
    use datafusion::common::ScalarValue;
    let dir = tempfile::tempdir().unwrap();
    let hash;
    {
        let engine = Arc::new(Engine::open(dir.path()).unwrap());
        let q = QueryEngine::new(Arc::clone(&engine));
        hash = block_on(async {
            run(
                &q,
                "CREATE TABLE items (id bigint PRIMARY KEY, content text, embedding vector(2))",
            )
            .await
            .unwrap();
            let mut session = Session::default();
            let prepared = q
                .prepare("COPY items (id, embedding) FROM STDIN WITH (FORMAT binary)")
                .await
                .unwrap();
            let Outcome::CopyIn(copy) = q
                .run(&prepared, Vec::new(), &mut session, Access::ReadWrite)
                .await
                .unwrap()
            else {
                panic!("not a COPY FROM");
            };
            assert!(copy.format.binary);
            let names: Vec<&str> = copy.fields.iter().map(|f| f.name().as_str()).collect();
            assert_eq!(names, ["id", "embedding"]);
            let rows = vec![
                vec![
                    ScalarValue::Int64(Some(1)),
                    valori_query::statement::vector_param(vec![1.5, -2.0]),
                ],
                vec![
                    ScalarValue::Int64(Some(2)),
                    valori_query::statement::vector_param(vec![0.25, 4.0]),
                ],
            ];
            let Outcome::Done { rows: Some(2), .. } = q
                .copy_in_values(copy.clone(), rows, &mut Session::default())
                .await
                .unwrap()
            else {
                panic!("no count of 2");
            };
            // A row of the wrong width or dimension writes nothing.
            let before = engine.proof().unwrap().hashes.state;
            for bad in [
                vec![ScalarValue::Int64(Some(3))],
                vec![
                    ScalarValue::Int64(Some(3)),
                    valori_query::statement::vector_param(vec![1.0, 2.0, 3.0]),
                ],
            ] {
                assert!(
                    q.copy_in_values(copy.clone(), vec![bad], &mut Session::default())
                        .await
                        .is_err()
                );
                assert_eq!(engine.proof().unwrap().hashes.state, before);
            }
            // Binary data is the front end's to decode.
            let e = q
                .copy_in(copy, b"PGCOPY".to_vec(), &mut Session::default())
                .await
                .unwrap_err();
            assert!(e.to_string().contains("binary"), "{e}");
            run(&q, "INSERT INTO items VALUES (3, 'x\ty', '[0,1]')")
                .await
                .unwrap();

            for (sql, columns, csv, header, delimiter, null) in [
                ("COPY items TO STDOUT", 3, false, false, '\t', "\\N"),
                (
                    "COPY items (embedding, id) TO STDOUT (FORMAT binary)",
                    2,
                    false,
                    false,
                    '\t',
                    "\\N",
                ),
                (
                    "COPY (SELECT id FROM items WHERE id > 1) TO STDOUT WITH (FORMAT csv, HEADER, DELIMITER ';', NULL 'x')",
                    1,
                    true,
                    true,
                    ';',
                    "x",
                ),
            ] {
                let prepared = q.prepare(sql).await.unwrap();
                assert!(prepared.schema().fields().is_empty(), "{sql}");
                assert!(!prepared.is_write(), "{sql}");
                let Outcome::CopyOut(out) = q
                    .run(&prepared, Vec::new(), &mut session, Access::ReadOnly)
                    .await
                    .unwrap()
                else {
                    panic!("{sql}: not a COPY TO");
                };
                assert_eq!(out.rows.schema().fields().len(), columns, "{sql}");
                let f = &out.format;
                assert_eq!(
                    (f.csv, f.header, f.delimiter, f.null.as_str()),
                    (csv, header, delimiter, null),
                    "{sql}"
                );
                assert_eq!(f.binary, sql.contains("binary"), "{sql}");
                let batches = out.rows.collect().await.unwrap().batches;
                let mut got = cells(&batches);
                got.sort();
                let want: Vec<&str> = match columns {
                    3 => vec![
                        "1|NULL|[1.5, -2.0]",
                        "2|NULL|[0.25, 4.0]",
                        "3|x\ty|[0.0, 1.0]",
                    ],
                    2 => vec!["[0.0, 1.0]|3", "[0.25, 4.0]|2", "[1.5, -2.0]|1"],
                    _ => vec!["2", "3"],
                };
                assert_eq!(got, want, "{sql}");
            }
            for (sql, says) in [
                (
                    "COPY items TO STDOUT (FORMAT binary, DELIMITER ',')",
                    "DELIMITER in BINARY",
                ),
                (
                    "COPY items TO STDOUT (FORMAT binary, NULL 'x')",
                    "NULL in BINARY",
                ),
                (
                    "COPY items TO STDOUT (FORMAT csv, DELIMITER '\"')",
                    "delimiter",
                ),
                (
                    "COPY items TO STDOUT (FORMAT parquet)",
                    "text, csv or binary",
                ),
                ("COPY items TO '/etc/passwd'", "STDOUT"),
            ] {
                let e = q.prepare(sql).await.unwrap_err().to_string();
                assert!(e.contains(says), "{sql}: {e}");
            }
            engine.proof().unwrap().hashes.state
        });
    }
    let reopened = Engine::open(dir.path()).unwrap();
    assert_eq!(reopened.proof().unwrap().hashes.state, hash);
}

/// Proves `UPDATE … SET col = expression` is evaluated per row on the
/// state it changes: `n = n + 1`, `s = s || 'x'` (NULL stays NULL, as in
/// Postgres), two assignments at once with RETURNING, the vector
/// (`embedding + '[1,1]'`, re-indexed: the nearest rows follow it), a
/// clock reading (`now()`, between the readings before and after), a
/// placeholder inside the expression; a computed NULL in a NOT NULL column
/// is refused with nothing written; the log alone rebuilds the state.
#[test]
fn update_assigns_expressions_per_row() {
    use datafusion::common::ScalarValue;
    let dir = tempfile::tempdir().unwrap();
    let hash = {
        let engine = Arc::new(Engine::open(dir.path()).unwrap());
        let q = QueryEngine::new(Arc::clone(&engine));
        block_on(async {
            run(
                &q,
                "CREATE TABLE items (id bigint PRIMARY KEY, n int NOT NULL, s text, \
                 embedding vector(2), at timestamptz)",
            )
            .await
            .unwrap();
            run(
                &q,
                "INSERT INTO items (id, n, s, embedding) VALUES (1, 1, 'a', '[1,1]'), \
                 (2, 2, 'b', '[2,2]'), (3, 3, NULL, '[3,3]')",
            )
            .await
            .unwrap();
            let (tag, _) = run_with(&q, "UPDATE items SET n = n + 1 WHERE id = 1", Vec::new())
                .await
                .unwrap();
            assert_eq!(tag, "UPDATE 1");
            let (tag, returned) = run_with(
                &q,
                "UPDATE items SET s = s || 'x', n = n * 10 WHERE n >= 2 RETURNING id, n, s",
                Vec::new(),
            )
            .await
            .unwrap();
            assert_eq!(tag, "UPDATE");
            let mut returned = cells(&returned);
            returned.sort();
            assert_eq!(returned, ["1|20|ax", "2|20|bx", "3|30|NULL"]);
            run(
                &q,
                "UPDATE items SET embedding = embedding + '[1,1]' WHERE id = 1",
            )
            .await
            .unwrap();
            assert_eq!(
                cells(
                    &run(
                        &q,
                        "SELECT id FROM items ORDER BY embedding <-> '[2,2]', id LIMIT 2"
                    )
                    .await
                    .unwrap()
                ),
                ["1", "2"]
            );
            let before = std::time::SystemTime::now();
            run(&q, "UPDATE items SET at = now() WHERE id = 3")
                .await
                .unwrap();
            let after = std::time::SystemTime::now();
            let micros = |t: std::time::SystemTime| {
                t.duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64
            };
            let at = run(
                &q,
                "SELECT CAST(extract(epoch FROM at) * 1000000 AS BIGINT) FROM items WHERE id = 3",
            )
            .await
            .unwrap();
            let at: i64 = cells(&at)[0].parse().unwrap();
            assert!(
                micros(before) - 1 <= at && at <= micros(after) + 1,
                "{} <= {at} <= {}",
                micros(before),
                micros(after)
            );
            let (tag, _) = run_with(
                &q,
                "UPDATE items SET n = n + $1 WHERE id = $2",
                vec![ScalarValue::Int64(Some(5)), ScalarValue::Int64(Some(2))],
            )
            .await
            .unwrap();
            assert_eq!(tag, "UPDATE 1");
            let state = engine.proof().unwrap().hashes.state;
            let err = run(
                &q,
                "UPDATE items SET n = CASE WHEN id = 3 THEN NULL ELSE n END",
            )
            .await
            .unwrap_err()
            .to_string();
            assert!(err.contains("not-null"), "{err}");
            assert_eq!(engine.proof().unwrap().hashes.state, state);
            assert_eq!(
                cells(
                    &run(&q, "SELECT id, n, s, embedding FROM items ORDER BY id")
                        .await
                        .unwrap()
                ),
                [
                    "1|20|ax|[2.0, 2.0]",
                    "2|25|bx|[2.0, 2.0]",
                    "3|30|NULL|[3.0, 3.0]"
                ]
            );
            engine.proof().unwrap().hashes.state
        })
    };
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    assert_eq!(engine.proof().unwrap().hashes.state, hash);
}

/// Proves an `UPDATE` may change the primary key. An integer key is the
/// record id, so its rows move to new ids (one event; the rows read as
/// those of a table into which they were inserted under their new keys,
/// the old rows kept as tombstones);
/// `SET id = id + 10` of every row works, a new key that collides with a
/// row not moved is refused with nothing written, and the moved rows are
/// found by the index under their new keys. A text key is changed in
/// place, its uniqueness checked.
#[test]
fn update_changes_the_primary_key() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    let q = QueryEngine::new(Arc::clone(&engine));
    block_on(async {
        for table in ["moved", "direct"] {
            run(
                &q,
                &format!(
                    "CREATE TABLE {table} (id bigint PRIMARY KEY, s text, embedding vector(2))"
                ),
            )
            .await
            .unwrap();
        }
        run(
            &q,
            "INSERT INTO moved VALUES (1, 'a', '[1,0]'), (2, 'b', '[2,0]'), (3, 'c', '[3,0]')",
        )
        .await
        .unwrap();
        let (tag, _) = run_with(&q, "UPDATE moved SET id = 20 WHERE id = 2", Vec::new())
            .await
            .unwrap();
        assert_eq!(tag, "UPDATE 1");
        let (tag, _) = run_with(&q, "UPDATE moved SET id = id + 10", Vec::new())
            .await
            .unwrap();
        assert_eq!(tag, "UPDATE 3");
        let state = engine.proof().unwrap().hashes.state;
        let err = run(&q, "UPDATE moved SET id = 13 WHERE id = 11")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("13"), "{err}");
        assert_eq!(engine.proof().unwrap().hashes.state, state);
        assert_eq!(
            cells(
                &run(&q, "SELECT id, s FROM moved ORDER BY id")
                    .await
                    .unwrap()
            ),
            ["11|a", "13|c", "30|b"]
        );
        assert_eq!(
            cells(
                &run(
                    &q,
                    "SELECT id FROM moved ORDER BY embedding <-> '[2,0]' LIMIT 1"
                )
                .await
                .unwrap()
            ),
            ["30"]
        );
        // The same rows inserted under their new keys directly.
        run(
            &q,
            "INSERT INTO direct VALUES (11, 'a', '[1,0]'), (30, 'b', '[2,0]'), (13, 'c', '[3,0]')",
        )
        .await
        .unwrap();
        let hashes = engine.proof().unwrap().hashes;
        let of = |name: &str| {
            hashes
                .collections
                .iter()
                .find(|(n, _)| n.as_str() == name)
                .map(|(_, h)| *h)
                .unwrap()
        };
        let rows = |table: &'static str| {
            let q = q.clone();
            async move {
                cells(
                    &run(
                        &q,
                        &format!("SELECT id, s, embedding FROM {table} ORDER BY id"),
                    )
                    .await
                    .unwrap(),
                )
            }
        };
        assert_eq!(rows("moved").await, rows("direct").await);
        assert_ne!(
            of("moved"),
            of("direct"),
            "moved rows keep their tombstones"
        );

        run(
            &q,
            "CREATE TABLE slugs (slug text PRIMARY KEY, embedding vector(2))",
        )
        .await
        .unwrap();
        run(
            &q,
            "INSERT INTO slugs VALUES ('a', '[1,1]'), ('b', '[2,2]')",
        )
        .await
        .unwrap();
        run(&q, "UPDATE slugs SET slug = 'z' WHERE slug = 'a'")
            .await
            .unwrap();
        let err = run(&q, "UPDATE slugs SET slug = 'b' WHERE slug = 'z'")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("slug"), "{err}");
        assert_eq!(
            cells(
                &run(&q, "SELECT slug FROM slugs ORDER BY slug")
                    .await
                    .unwrap()
            ),
            ["b", "z"]
        );
    });
}

/// The state hash an engine proves now.
fn state_hash(engine: &Engine) -> String {
    engine.proof().unwrap().hashes.state.to_string()
}

/// `ALTER TABLE` adds, drops and renames columns and renames the table:
/// old rows read an added column's DEFAULT (and new rows get it too), a
/// dropped column is gone, the catalog shows the new shape at once, and
/// the state hash equals that of a second database where the table was
/// created in its final shape, under its final name, and given the same
/// rows — an independent check of the canonical encoding.
#[test]
fn alter_table_reshapes_a_table_as_if_created_so() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    let q = QueryEngine::new(Arc::clone(&engine));
    let other = tempfile::tempdir().unwrap();
    let reference = Arc::new(Engine::open(other.path()).unwrap());
    let r = QueryEngine::new(Arc::clone(&reference));
    block_on(async {
        for sql in [
            "CREATE TABLE items (id bigint PRIMARY KEY, embedding vector(3), content text, extra int)",
            "INSERT INTO items VALUES (1, '[1,2,3]', 'a', 10), (2, '[4,5,6]', 'b', 20), (3, '[7,8,9]', NULL, 30)",
            "DELETE FROM items WHERE id = 2",
        ] {
            run(&q, sql).await.unwrap();
        }
        let (tag, _) = run_with(
            &q,
            "ALTER TABLE items ADD COLUMN score int DEFAULT 5",
            Vec::new(),
        )
        .await
        .unwrap();
        assert_eq!(tag, "ALTER TABLE 0");
        let rows = run(&q, "SELECT id, score FROM items ORDER BY id")
            .await
            .unwrap();
        assert_eq!(cells(&rows), ["1|5", "3|5"]);
        run(
            &q,
            "INSERT INTO items (id, embedding, content, extra) VALUES (4, '[0,0,1]', 'd', 40)",
        )
        .await
        .unwrap();
        let columns = "SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE table_name = 'items' ORDER BY ordinal_position";
        assert_eq!(
            cells(&run(&q, columns).await.unwrap()),
            [
                "id|bigint|NO",
                "embedding|USER-DEFINED|YES",
                "content|text|YES",
                "extra|integer|YES",
                "score|integer|YES"
            ]
        );
        // Several actions in one statement, then a rename of the table.
        run(
            &q,
            "ALTER TABLE items DROP COLUMN extra, RENAME COLUMN content TO body",
        )
        .await
        .unwrap();
        run(&q, "ALTER TABLE items RENAME TO docs").await.unwrap();
        assert!(run(&q, "SELECT * FROM items").await.is_err());
        let rows = run(&q, "SELECT * FROM docs ORDER BY id").await.unwrap();
        assert_eq!(
            cells(&rows),
            [
                "1|[1.0, 2.0, 3.0]|a|5",
                "3|[7.0, 8.0, 9.0]|NULL|5",
                "4|[0.0, 0.0, 1.0]|d|5"
            ]
        );
        assert_eq!(
            cells(
                &run(
                    &q,
                    "SELECT column_name FROM information_schema.columns WHERE table_name = 'docs' ORDER BY ordinal_position"
                )
                .await
                .unwrap()
            ),
            ["id", "embedding", "body", "score"]
        );
        // The same rows in a table created in the final shape.
        for sql in [
            "CREATE TABLE docs (id bigint PRIMARY KEY, embedding vector(3), body text, score int DEFAULT 5)",
            "INSERT INTO docs VALUES (1, '[1,2,3]', 'a', 5), (2, '[4,5,6]', 'b', 5), (3, '[7,8,9]', NULL, 5)",
            "DELETE FROM docs WHERE id = 2",
            "INSERT INTO docs VALUES (4, '[0,0,1]', 'd', 5)",
        ] {
            run(&r, sql).await.unwrap();
        }
        assert_eq!(state_hash(&engine), state_hash(&reference));
        // A search reads the renamed table's vectors.
        let rows = run(
            &q,
            "SELECT id FROM docs ORDER BY embedding <-> '[1,2,3]' LIMIT 1",
        )
        .await
        .unwrap();
        assert_eq!(cells(&rows), ["1"]);
    });
}

/// A refused `ALTER TABLE` writes nothing: each is refused with the
/// error Postgres's SQLSTATE follows from (0A000 for forms not supported,
/// 42703, 42701, 23502, 42P07, 42P01) and the state hash is unchanged; a
/// statement whose first action is valid and second is not adds nothing.
#[test]
fn refused_alters_change_nothing() {
    use valori_query::write::WriteError;
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    let q = QueryEngine::new(Arc::clone(&engine));
    block_on(async {
        for sql in [
            "CREATE TABLE items (id bigserial PRIMARY KEY, embedding vector(2), content text)",
            "INSERT INTO items (embedding, content) VALUES ('[1,1]', 'a'), ('[2,2]', 'b')",
            "CREATE TABLE fixed (id bigint, vec vector(2), tag bigint, metadata jsonb)",
            "CREATE TABLE other (id int PRIMARY KEY, v vector(2))",
        ] {
            run(&q, sql).await.unwrap();
        }
        let hash = state_hash(&engine);
        let long = "c".repeat(64);
        type Refusal = (String, fn(&WriteError) -> bool, &'static str);
        let refused: Vec<Refusal> = vec![
            (
                "ALTER TABLE items DROP COLUMN embedding".into(),
                |e| matches!(e, WriteError::Unsupported(_)),
                "vector column",
            ),
            (
                "ALTER TABLE items DROP COLUMN id".into(),
                |e| matches!(e, WriteError::Unsupported(_)),
                "primary key",
            ),
            (
                "ALTER TABLE items ALTER COLUMN content TYPE bigint".into(),
                |e| matches!(e, WriteError::Unsupported(_)),
                "ALTER COLUMN content",
            ),
            (
                "ALTER TABLE items ADD CONSTRAINT c CHECK (id > 0)".into(),
                |e| matches!(e, WriteError::Unsupported(_)),
                "ADD CONSTRAINT",
            ),
            (
                "ALTER TABLE items ADD COLUMN e2 vector(2)".into(),
                |e| matches!(e, WriteError::Unsupported(_)),
                "vector column",
            ),
            (
                "ALTER TABLE items ADD COLUMN k int UNIQUE".into(),
                |e| matches!(e, WriteError::Unsupported(_)),
                "UNIQUE",
            ),
            (
                "ALTER TABLE items ADD COLUMN u uuid DEFAULT gen_random_uuid()".into(),
                |e| matches!(e, WriteError::Unsupported(_)),
                "differs per row",
            ),
            (
                "ALTER TABLE fixed ADD COLUMN x int".into(),
                |e| matches!(e, WriteError::Unsupported(_)),
                "fixed columns",
            ),
            (
                "ALTER TABLE items ADD COLUMN content text".into(),
                |e| matches!(e, WriteError::DuplicateColumn(_)),
                "already exists",
            ),
            (
                "ALTER TABLE items RENAME COLUMN content TO id".into(),
                |e| matches!(e, WriteError::DuplicateColumn(_)),
                "already exists",
            ),
            (
                "ALTER TABLE items DROP COLUMN nope".into(),
                |e| matches!(e, WriteError::UndefinedColumn(_)),
                "does not exist",
            ),
            (
                "ALTER TABLE items ADD COLUMN a int, DROP COLUMN nope".into(),
                |e| matches!(e, WriteError::UndefinedColumn(_)),
                "does not exist",
            ),
            (
                "ALTER TABLE items ADD COLUMN note text NOT NULL".into(),
                |e| matches!(e, WriteError::NotNull(_)),
                "null values",
            ),
            (
                "ALTER TABLE items RENAME TO other".into(),
                |e| matches!(e, WriteError::TableExists(_)),
                "exists",
            ),
            (
                "ALTER TABLE nope ADD COLUMN a int".into(),
                |e| matches!(e, WriteError::UndefinedTable(_)),
                "nope",
            ),
            (
                format!("ALTER TABLE items ADD COLUMN {long} int"),
                |e| matches!(e, WriteError::InvalidValue(_)),
                "longer than 63",
            ),
        ];
        for (sql, kind, expected) in &refused {
            match run(&q, sql).await {
                Err(QueryError::Write(e)) => {
                    assert!(kind(&e), "{sql}: {e:?}");
                    assert!(e.to_string().contains(expected), "{sql}: {e}");
                }
                other => panic!("{sql}: {other:?}"),
            }
            assert_eq!(state_hash(&engine), hash, "{sql}");
        }
        // IF EXISTS / IF NOT EXISTS that find nothing to do write nothing.
        for sql in [
            "ALTER TABLE IF EXISTS nope ADD COLUMN a int",
            "ALTER TABLE items ADD COLUMN IF NOT EXISTS content text",
            "ALTER TABLE items DROP COLUMN IF EXISTS nope",
        ] {
            run(&q, sql).await.unwrap();
            assert_eq!(state_hash(&engine), hash, "{sql}");
        }
        let rows = run(&q, "SELECT * FROM items ORDER BY id").await.unwrap();
        assert_eq!(cells(&rows), ["1|[1.0, 1.0]|a", "2|[2.0, 2.0]|b"]);
        // A NOT NULL column with a DEFAULT is added to the rows there are.
        run(
            &q,
            "ALTER TABLE items ADD COLUMN note text NOT NULL DEFAULT 'x'",
        )
        .await
        .unwrap();
        let rows = run(&q, "SELECT id, note FROM items ORDER BY id")
            .await
            .unwrap();
        assert_eq!(cells(&rows), ["1|x", "2|x"]);
    });
}

/// An altered table survives a restart: replayed from the log, and
/// loaded from a snapshot taken after the alter (then written to again),
/// with the same state hash and the same rows; `valori verify` finds the
/// directory consistent.
#[test]
fn altered_tables_survive_restart_and_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let expect = ["1|a|7", "3|c|7"];
    let hash;
    {
        let engine = Arc::new(Engine::open(dir.path()).unwrap());
        let q = QueryEngine::new(Arc::clone(&engine));
        block_on(async {
            for sql in [
                "CREATE TABLE items (id int PRIMARY KEY, embedding vector(2), content text, gone jsonb)",
                "INSERT INTO items VALUES (1, '[1,1]', 'a', '{}'), (2, '[2,2]', 'b', NULL), (3, '[3,3]', 'c', '[1]')",
                "DELETE FROM items WHERE id = 2",
                "ALTER TABLE items DROP COLUMN gone, ADD COLUMN n bigint NOT NULL DEFAULT 7",
                "ALTER TABLE items RENAME TO things",
            ] {
                run(&q, sql).await.unwrap();
            }
        });
        hash = state_hash(&engine);
    }
    let select = "SELECT id, content, n FROM things ORDER BY id";
    {
        let engine = Arc::new(Engine::open(dir.path()).unwrap());
        assert_eq!(state_hash(&engine), hash);
        let q = QueryEngine::new(Arc::clone(&engine));
        block_on(async {
            assert_eq!(cells(&run(&q, select).await.unwrap()), expect);
        });
        engine.snapshot().unwrap();
        block_on(async {
            run(
                &q,
                "INSERT INTO things (id, embedding, content) VALUES (4, '[4,4]', 'd')",
            )
            .await
            .unwrap();
        });
    }
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    assert!(
        engine.recovery_report().snapshot.is_some(),
        "{:?}",
        engine.recovery_report()
    );
    let q = QueryEngine::new(Arc::clone(&engine));
    block_on(async {
        assert_eq!(
            cells(&run(&q, select).await.unwrap()),
            ["1|a|7", "3|c|7", "4|d|7"]
        );
    });
    drop(q);
    drop(engine);
    let report = valori_engine::verify::verify_dir(&valori_engine::storage::FsStorage, dir.path());
    assert!(report.is_ok(), "{:#?}", report.findings);
}

/// A statement kept in the plan cache by its text is planned again after
/// an `ALTER TABLE`: it answers with the new shape, not the old one.
#[test]
fn kept_plans_follow_an_altered_table() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    let q = QueryEngine::new(Arc::clone(&engine));
    block_on(async {
        let select = "SELECT * FROM items ORDER BY id";
        let cached = |q: QueryEngine| async move { cached_rows(&q, select).await };
        run(
            &q,
            "CREATE TABLE items (id int PRIMARY KEY, embedding vector(2), a text)",
        )
        .await
        .unwrap();
        run(&q, "INSERT INTO items VALUES (1, '[1,1]', 'x')")
            .await
            .unwrap();
        assert_eq!(cached(q.clone()).await, ["1|[1.0, 1.0]|x"]);
        run(
            &q,
            "ALTER TABLE items ADD COLUMN b int DEFAULT 2, DROP COLUMN a",
        )
        .await
        .unwrap();
        assert_eq!(cached(q.clone()).await, ["1|[1.0, 1.0]|2"]);
        run(&q, "ALTER TABLE items RENAME COLUMN b TO c")
            .await
            .unwrap();
        let columns = "SELECT c FROM items";
        assert_eq!(cells(&run(&q, columns).await.unwrap()), ["2"]);
    });
}

/// pgvector's README adds the vector column to a new table: `CREATE
/// TABLE items (id bigserial PRIMARY KEY)` then `ALTER TABLE items ADD
/// COLUMN embedding vector(3)`; rows and searches then work as on a
/// table created with it. A table that has held rows refuses a vector
/// column (0A000), unchanged.
#[test]
fn pgvector_readme_adds_the_vector_column() {
    use valori_query::write::WriteError;
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    let q = QueryEngine::new(Arc::clone(&engine));
    block_on(async {
        for sql in [
            "CREATE TABLE items (id bigserial PRIMARY KEY)",
            "ALTER TABLE items ADD COLUMN embedding vector(3)",
            "INSERT INTO items (embedding) VALUES ('[1,2,3]'), ('[4,5,6]')",
            "CREATE TABLE notes (id bigserial PRIMARY KEY, body text)",
            "INSERT INTO notes (body) VALUES ('x')",
        ] {
            run(&q, sql).await.unwrap();
        }
        let rows = run(
            &q,
            "SELECT id, embedding <-> '[3,1,2]' AS d FROM items ORDER BY embedding <-> '[3,1,2]' LIMIT 5",
        )
        .await
        .unwrap();
        // √6 and √33, by hand.
        assert_eq!(cells(&rows), ["1|2.449489742783178", "2|5.744562646538029"]);
        let hash = state_hash(&engine);
        match run(&q, "ALTER TABLE notes ADD COLUMN embedding vector(3)").await {
            Err(QueryError::Write(WriteError::Unsupported(e))) => {
                assert!(e.contains("never held rows"), "{e}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(state_hash(&engine), hash);
    });
}

/// `ALTER TABLE` inside a transaction block: the block's later statements
/// see the new shape, `COMMIT` leaves the state a second database reaches
/// with the same statements outside a block, and `ROLLBACK` leaves the
/// table as it was.
#[test]
fn alter_table_inside_a_transaction_block() {
    async fn in_block(q: &QueryEngine, statements: &[&str]) -> Vec<RecordBatch> {
        let mut session = Session::default();
        let mut last = Vec::new();
        for sql in statements {
            let prepared = q.prepare_for(&session, sql).await.unwrap();
            last = match q
                .run(&prepared, Vec::new(), &mut session, Access::ReadWrite)
                .await
                .unwrap()
            {
                Outcome::Rows(rows) => rows.collect().await.unwrap().batches,
                _ => Vec::new(),
            };
        }
        last
    }
    let setup = [
        "CREATE TABLE items (id int PRIMARY KEY, embedding vector(2), a text)",
        "INSERT INTO items VALUES (1, '[1,1]', 'x')",
    ];
    let block = [
        "ALTER TABLE items ADD COLUMN score int DEFAULT 1",
        "INSERT INTO items (id, embedding, score) VALUES (2, '[2,2]', 9)",
        "ALTER TABLE items DROP COLUMN a",
    ];
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    let q = QueryEngine::new(Arc::clone(&engine));
    let other = tempfile::tempdir().unwrap();
    let reference = Arc::new(Engine::open(other.path()).unwrap());
    let r = QueryEngine::new(Arc::clone(&reference));
    block_on(async {
        for sql in setup.iter().chain(&block) {
            run(&r, sql).await.unwrap();
        }
        for sql in setup {
            run(&q, sql).await.unwrap();
        }
        let before = state_hash(&engine);
        let mut rolled_back = vec!["BEGIN"];
        rolled_back.extend(block);
        rolled_back.push("SELECT * FROM items ORDER BY id");
        let seen = in_block(&q, &rolled_back).await;
        assert_eq!(cells(&seen), ["1|[1.0, 1.0]|1", "2|[2.0, 2.0]|9"]);
        in_block(&q, &["BEGIN", block[0], "ROLLBACK"]).await;
        assert_eq!(state_hash(&engine), before);
        let mut committed = vec!["BEGIN"];
        committed.extend(block);
        committed.push("COMMIT");
        in_block(&q, &committed).await;
        assert_eq!(state_hash(&engine), state_hash(&reference));
        let rows = run(&q, "SELECT * FROM items ORDER BY id").await.unwrap();
        assert_eq!(cells(&rows), ["1|[1.0, 1.0]|1", "2|[2.0, 2.0]|9"]);
    });
}

/// Proves `CREATE INDEX … USING hnsw (embedding vector_cosine_ops) WITH
/// (m = 24)` on a table loaded under `l2` gives the table that metric:
/// `<=>` is then answered by the engine's search (EXPLAIN shows it) with
/// the nearest rows by cosine computed here in f64, and the database is,
/// hash for hash (state and index), the one where the table was created
/// `WITH (metric = 'cosine', m = 24)` and given the same rows. The same
/// CREATE INDEX again writes nothing.
#[test]
fn create_index_gives_the_table_its_metric() {
    let rows: Vec<(i64, [f64; 2])> = (0..700)
        .map(|i| {
            let a = f64::from(i) * 0.37;
            (
                i64::from(i),
                [a.cos() * (1.0 + f64::from(i % 7)), a.sin() * 2.0],
            )
        })
        .collect();
    let values = rows
        .iter()
        .map(|(id, v)| format!("({id}, '[{},{}]')", v[0], v[1]))
        .collect::<Vec<_>>()
        .join(", ");
    let load = |with: &'static str, index: bool| {
        let values = values.clone();
        async move {
            let dir = tempfile::tempdir().unwrap();
            let engine = Arc::new(Engine::open(dir.path()).unwrap());
            let q = QueryEngine::new(Arc::clone(&engine));
            run(
                &q,
                &format!("CREATE TABLE items (id bigint PRIMARY KEY, embedding vector(2)){with}"),
            )
            .await
            .unwrap();
            run(&q, &format!("INSERT INTO items VALUES {values}"))
                .await
                .unwrap();
            if index {
                let create = "CREATE INDEX ON items USING hnsw (embedding vector_cosine_ops) \
                              WITH (m = 24)";
                run(&q, create).await.unwrap();
                let log = engine.log_size();
                run(&q, create).await.unwrap();
                assert_eq!(
                    engine.log_size(),
                    log,
                    "the same index again writes nothing"
                );
            }
            engine.wait_for_index().unwrap();
            (dir, engine, q)
        }
    };
    block_on(async {
        let (_a, reindexed, q) = load("", true).await;
        let (_b, created, _) = load(" WITH (metric = 'cosine', m = 24)", false).await;
        let (x, y) = (reindexed.proof().unwrap(), created.proof().unwrap());
        assert_eq!(x.hashes.state, y.hashes.state);
        assert_eq!(x.hashes.index, y.hashes.index);
        let query = [0.3, -1.0];
        let plan = cells(
            &run(
                &q,
                "EXPLAIN SELECT id FROM items ORDER BY embedding <=> '[0.3,-1]' LIMIT 5",
            )
            .await
            .unwrap(),
        )
        .join("\n");
        assert!(plan.contains("distance=cosine"), "{plan}");
        let cosine = |v: &[f64; 2]| {
            let dot = v[0] * query[0] + v[1] * query[1];
            1.0 - dot
                / ((v[0] * v[0] + v[1] * v[1]).sqrt()
                    * (query[0] * query[0] + query[1] * query[1]).sqrt())
        };
        let mut expected: Vec<(f64, i64)> = rows.iter().map(|(id, v)| (cosine(v), *id)).collect();
        expected.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let want: Vec<String> = expected[..5].iter().map(|(_, id)| id.to_string()).collect();
        let got = cells(
            &run(
                &q,
                "SELECT id FROM items ORDER BY embedding <=> '[0.3,-1]' LIMIT 5",
            )
            .await
            .unwrap(),
        );
        assert_eq!(got, want);
    });
}

/// A vector column takes NULL unless declared NOT NULL, as in pgvector:
/// such rows are stored, read back as NULL (and a distance to them is
/// NULL), are never returned by a nearest-neighbour search (through the
/// graph, exactly, or with a filter on another column), get and lose
/// their vector by UPDATE and by an upsert, and the log rebuilds them.
/// The expected neighbours are computed here from the vectors the test
/// wrote.
#[test]
fn null_vectors_are_stored_and_never_searched() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    let q = QueryEngine::new(Arc::clone(&engine));
    // Row i (1..=300): [i % 17, i % 13], NULL when i % 4 == 0.
    let vector = |i: i64| [(i % 17) as f64, (i % 13) as f64];
    let null = |i: i64| i % 4 == 0;
    let nearest = |query: [f64; 2], k: usize, with: &dyn Fn(i64) -> bool| -> Vec<String> {
        let mut d: Vec<(f64, i64)> = (1..=300)
            .filter(|&i| with(i))
            .map(|i| {
                let v = vector(i);
                ((v[0] - query[0]).powi(2) + (v[1] - query[1]).powi(2), i)
            })
            .collect();
        d.sort_by(|a, b| a.partial_cmp(b).unwrap());
        d.into_iter().take(k).map(|(_, i)| i.to_string()).collect()
    };
    block_on(async {
        run(
            &q,
            "CREATE TABLE items (id bigserial PRIMARY KEY, embedding vector(2), content text)",
        )
        .await
        .unwrap();
        let values: Vec<String> = (1..=300)
            .map(|i| match null(i) {
                true => format!("(NULL, 'row {i}')"),
                false => {
                    let v = vector(i);
                    format!("('[{},{}]', 'row {i}')", v[0], v[1])
                }
            })
            .collect();
        run(
            &q,
            &format!(
                "INSERT INTO items (embedding, content) VALUES {}",
                values.join(", ")
            ),
        )
        .await
        .unwrap();
        // A row inserted without the column has a NULL vector too.
        let (_, returned) = run_with(
            &q,
            "INSERT INTO items (content) VALUES ('later') RETURNING id, embedding",
            Vec::new(),
        )
        .await
        .unwrap();
        assert_eq!(cells(&returned), ["301|NULL"]);
        let count = |sql: &'static str| {
            let q = &q;
            async move { cells(&run(q, sql).await.unwrap()) }
        };
        assert_eq!(
            count("SELECT count(*) FROM items WHERE embedding IS NULL").await,
            ["76"]
        );
        let rows = count(
            "SELECT id, embedding, embedding <-> '[0,0]' FROM items WHERE id IN (4, 5) ORDER BY id",
        )
        .await;
        assert_eq!(rows[0], "4|NULL|NULL");
        let five: Vec<&str> = rows[1].split('|').collect();
        assert_eq!(five[..2], ["5", "[5.0, 5.0]"]);
        let d: f64 = five[2].parse().unwrap();
        assert!((d - 50f64.sqrt()).abs() < 1e-9, "{d}");
        // Exactly and through the graph (ef 300 reaches every row), the
        // search returns only rows with a vector.
        for (setting, query) in [("true", [0.0, 0.0]), ("false", [7.0, 3.0])] {
            let sql = format!(
                "SELECT id FROM items ORDER BY embedding <-> '[{},{}]' LIMIT 10",
                query[0], query[1]
            );
            let mut session = Session::default();
            for set in [
                format!("SET valori.exact = {setting}"),
                "SET hnsw.ef_search = 300".into(),
            ] {
                let p = q.prepare(&set).await.unwrap();
                q.run(&p, Vec::new(), &mut session, Access::ReadWrite)
                    .await
                    .unwrap();
            }
            let p = q.prepare(&sql).await.unwrap();
            let got = match q
                .run(&p, Vec::new(), &mut session, Access::ReadOnly)
                .await
                .unwrap()
            {
                Outcome::Rows(rows) => cells(&rows.collect().await.unwrap().batches),
                _ => panic!("expected rows"),
            };
            assert_eq!(got, nearest(query, 10, &|i| !null(i)), "exact = {setting}");
        }
        // A filter that keeps 6 rows, two of them NULL: 4 rows, not 6.
        let rows = run(
            &q,
            "SELECT id FROM items WHERE id <= 6 ORDER BY embedding <-> '[0,0]' LIMIT 10",
        )
        .await
        .unwrap();
        assert_eq!(
            cells(&rows),
            nearest([0.0, 0.0], 10, &|i| i <= 6 && !null(i))
        );

        // UPDATE gives row 4 a vector and takes row 1's away; an upsert
        // takes row 2's away and gives row 8 one.
        run(&q, "UPDATE items SET embedding = '[0,0]' WHERE id = 4")
            .await
            .unwrap();
        run(&q, "UPDATE items SET embedding = NULL WHERE id = 1")
            .await
            .unwrap();
        run(
            &q,
            "INSERT INTO items (id, embedding, content) VALUES (2, NULL, 'two'), (8, '[0,1]', 'eight') \
             ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding",
        )
        .await
        .unwrap();
        let now_null = |i: i64| (null(i) && i != 4 && i != 8) || i == 1 || i == 2;
        let rows = run(
            &q,
            "SELECT id FROM items WHERE id <= 12 ORDER BY embedding <-> '[0,0]' LIMIT 20",
        )
        .await
        .unwrap();
        let mut expected: Vec<(f64, i64)> = (1..=12)
            .filter(|&i| !now_null(i))
            .map(|i| {
                let v = match i {
                    4 => [0.0, 0.0],
                    8 => [0.0, 1.0],
                    _ => vector(i),
                };
                (v[0] * v[0] + v[1] * v[1], i)
            })
            .collect();
        expected.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let expected: Vec<String> = expected.iter().map(|(_, i)| i.to_string()).collect();
        assert_eq!(cells(&rows), expected);

        // A NOT NULL vector column refuses NULL, by omission or by value.
        run(
            &q,
            "CREATE TABLE strict (id int PRIMARY KEY, embedding vector(2) NOT NULL)",
        )
        .await
        .unwrap();
        run(&q, "INSERT INTO strict VALUES (2, '[1,1]')")
            .await
            .unwrap();
        let before = state_hash(&engine);
        for sql in [
            "INSERT INTO strict (id) VALUES (1)",
            "INSERT INTO strict VALUES (1, NULL)",
            "UPDATE strict SET embedding = NULL WHERE id = 2",
        ] {
            let err = run(&q, sql).await.unwrap_err();
            assert!(
                err.to_string().contains("violates not-null constraint"),
                "{err}"
            );
            assert_eq!(state_hash(&engine), before);
        }
    });
    let before = state_hash(&engine);
    drop(q);
    drop(engine);
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    assert_eq!(state_hash(&engine), before);
    let q = QueryEngine::new(engine);
    block_on(async {
        let rows = run(&q, "SELECT count(*) FROM items WHERE embedding IS NULL")
            .await
            .unwrap();
        assert_eq!(cells(&rows), ["76"]);
    });
}

/// Identity columns as Django and SQLAlchemy declare them: `GENERATED BY
/// DEFAULT AS IDENTITY` numbers rows from 1 and takes values given;
/// `GENERATED ALWAYS` refuses values given and updates (428C9); the
/// catalogs describe them as Postgres does. Client-side bound values
/// labelled with their types (`'…'::timestamptz`, `'{…}'::integer[]`)
/// are read as those types, also through `UNNEST` in an `INSERT …
/// SELECT`, as Django's bulk insert sends it.
#[test]
fn identity_columns_and_typed_literals() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    let q = QueryEngine::new(Arc::clone(&engine));
    block_on(async {
        run(
            &q,
            "CREATE TABLE labels (id bigint NOT NULL PRIMARY KEY GENERATED BY DEFAULT AS IDENTITY, \
             name varchar(10) NOT NULL UNIQUE, weight integer, at timestamp with time zone)",
        )
        .await
        .unwrap();
        let (_, rows) = run_with(
            &q,
            "INSERT INTO labels (name, weight, at) VALUES ('a', 1, '2024-03-01 12:00:00+02:00'::timestamptz) \
             RETURNING labels.id",
            Vec::new(),
        )
        .await
        .unwrap();
        assert_eq!(cells(&rows), ["1"]);
        run(&q, "INSERT INTO labels (id, name) VALUES (10, 'b')")
            .await
            .unwrap();
        let (_, rows) = run_with(
            &q,
            "INSERT INTO labels (name, weight) SELECT * FROM UNNEST(('{c,\"d e\"}')::varchar[], \
             ('{3,NULL}')::integer[]) RETURNING id, name, weight",
            Vec::new(),
        )
        .await
        .unwrap();
        // The sequence continues after the largest value the column holds.
        assert_eq!(cells(&rows), ["11|c|3", "12|d e|NULL"]);
        let rows = run(&q, "SELECT at FROM labels WHERE id = 1").await.unwrap();
        assert_eq!(cells(&rows), ["2024-03-01T10:00:00Z"]);
        let rows = run(&q, "SELECT '{1,2,3}'::integer[], ('{x,NULL}')::text[]")
            .await
            .unwrap();
        assert_eq!(cells(&rows), ["[1, 2, 3]|[x, NULL]"]);

        run(
            &q,
            "CREATE TABLE fixed (id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY, n integer)",
        )
        .await
        .unwrap();
        run(&q, "INSERT INTO fixed (n) VALUES (5)").await.unwrap();
        let before = state_hash(&engine);
        for (sql, expected) in [
            (
                "INSERT INTO fixed (id, n) VALUES (7, 1)",
                "cannot insert a non-DEFAULT value into column \"id\"",
            ),
            (
                "UPDATE fixed SET id = 3 WHERE n = 5",
                "column \"id\" can only be updated to DEFAULT",
            ),
            (
                "CREATE TABLE bad (t text GENERATED BY DEFAULT AS IDENTITY)",
                "must be smallint, integer or bigint",
            ),
            (
                "CREATE TABLE bad (i int DEFAULT 1 GENERATED BY DEFAULT AS IDENTITY)",
                "both default and identity",
            ),
            (
                "CREATE TABLE bad (i int GENERATED BY DEFAULT AS IDENTITY (START WITH 10))",
                "starts at 1 and counts by 1",
            ),
            (
                "CREATE TABLE bad (i int, j int GENERATED ALWAYS AS (i * 2) STORED)",
                "computed from an expression",
            ),
        ] {
            let err = run(&q, sql).await.unwrap_err().to_string();
            assert!(err.contains(expected), "{sql}: {err}");
            assert_eq!(state_hash(&engine), before, "{sql}");
        }
        let rows = run(
            &q,
            "SELECT table_name, column_name, is_identity, identity_generation, column_default \
             FROM information_schema.columns WHERE table_name IN ('labels', 'fixed') \
             AND column_name = 'id' ORDER BY table_name",
        )
        .await
        .unwrap();
        assert_eq!(
            cells(&rows),
            ["fixed|id|YES|ALWAYS|NULL", "labels|id|YES|BY DEFAULT|NULL"]
        );
        let rows = run(
            &q,
            "SELECT a.attname, a.attidentity, format_type(a.atttypid, a.atttypmod) \
             FROM pg_attribute a JOIN pg_class c ON a.attrelid = c.oid \
             WHERE c.relname = 'labels' AND a.attnum > 0 ORDER BY a.attnum",
        )
        .await
        .unwrap();
        assert_eq!(
            cells(&rows),
            [
                "id|d|bigint",
                "name||character varying(10)",
                "weight||integer",
                "at||timestamp with time zone"
            ]
        );
    });
    let before = state_hash(&engine);
    drop(q);
    drop(engine);
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    assert_eq!(state_hash(&engine), before);
}

/// `PREPARE` keeps a statement in the session under a name and `EXECUTE`
/// runs it with constants for its placeholders, read as a client's text
/// parameters are: an insert of a vector and a text, and a filtered
/// nearest-neighbour query whose rows are checked against distances
/// computed here. Another session does not see the name; `DEALLOCATE`
/// forgets it; a second `PREPARE` of a name, an unknown name, a wrong
/// number of values and a non-constant value are refused, the state
/// unchanged.
#[test]
fn prepare_and_execute_in_sql() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    let q = QueryEngine::new(Arc::clone(&engine));
    block_on(async {
        run(
            &q,
            "CREATE TABLE items (id bigserial PRIMARY KEY, embedding vector(2), kind text)",
        )
        .await
        .unwrap();
        let mut session = Session::default();
        let session = &mut session;
        assert_eq!(
            in_session(
                &q,
                session,
                "PREPARE ins (vector, text) AS INSERT INTO items (embedding, kind) VALUES ($1, $2)"
            )
            .await
            .unwrap(),
            ["PREPARE"]
        );
        let points = [
            (1, 1, "a"),
            (2, 5, "b"),
            (-3, 4, "a"),
            (0, -2, "a"),
            (7, 7, "b"),
        ];
        for (x, y, kind) in points {
            let out = in_session(&q, session, &format!("EXECUTE ins('[{x},{y}]', '{kind}')"))
                .await
                .unwrap();
            assert_eq!(out, ["INSERT"]);
        }
        in_session(&q, session, "PREPARE near AS SELECT id FROM items WHERE kind = $2 ORDER BY embedding <-> $1 LIMIT 2")
            .await
            .unwrap();
        let got = in_session(&q, session, "EXECUTE near('[0,0]', 'a')")
            .await
            .unwrap();
        // Squared distances to [0,0] among kind a: id 1 → 2, id 3 → 25,
        // id 4 → 4.
        let mut want: Vec<(i64, usize)> = points
            .iter()
            .enumerate()
            .filter(|(_, p)| p.2 == "a")
            .map(|(i, p)| (i64::from(p.0 * p.0 + p.1 * p.1), i + 1))
            .collect();
        want.sort_unstable();
        let want: Vec<String> = want.iter().take(2).map(|(_, id)| id.to_string()).collect();
        assert_eq!(got, want);
        assert_eq!(got, ["1", "4"]);

        let hash = state_hash(&engine);
        for (text, expected) in [
            ("PREPARE near AS SELECT 1", "already exists"),
            ("EXECUTE nothing(1)", "does not exist"),
            ("EXECUTE near('[0,0]')", "parameters"),
            ("EXECUTE ins(now(), 'a')", "EXECUTE argument"),
        ] {
            let err = in_session(&q, session, text).await.unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
        assert_eq!(state_hash(&engine), hash);
        // Names belong to the session.
        let err = run(&q, "EXECUTE near('[0,0]', 'a')")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
        assert_eq!(
            in_session(&q, session, "DEALLOCATE near").await.unwrap(),
            ["DEALLOCATE"]
        );
        let err = in_session(&q, session, "EXECUTE near('[0,0]', 'a')")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
        assert_eq!(
            in_session(&q, session, "DEALLOCATE ALL").await.unwrap(),
            ["DEALLOCATE ALL"]
        );
        let err = in_session(&q, session, "EXECUTE ins('[1,1]', 'a')")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
    });
}

/// `sql` run in `session` (one connection's), as [`cells`]; a command
/// gives its tag.
async fn in_session(
    q: &QueryEngine,
    session: &mut Session,
    sql: &str,
) -> Result<Vec<String>, QueryError> {
    let prepared = q.prepare(sql).await?;
    match q
        .run(&prepared, Vec::new(), session, Access::ReadWrite)
        .await?
    {
        Outcome::Rows(rows) | Outcome::Returning { rows, .. } => {
            Ok(cells(&rows.collect().await?.batches))
        }
        Outcome::Done { tag, .. } => Ok(vec![tag]),
        _ => Ok(Vec::new()),
    }
}

/// A vector column declared without a dimension (`embedding vector`, as
/// LangChain declares it): the catalog shows `vector`; a search of the
/// empty table answers no row; a first row without a vector is refused,
/// naming why; the first `INSERT` gives the column the length of its
/// vectors (the catalog then shows `vector(3)`), and rows of another
/// length are refused. The table then hashes as one declared
/// `vector(3)` and given the same rows, in another database, and the log
/// rebuilds it.
#[test]
fn untyped_vector_column_takes_its_first_rows_dimension() {
    let dir = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let hash;
    {
        let engine = Arc::new(Engine::open(dir.path()).unwrap());
        let q = QueryEngine::new(Arc::clone(&engine));
        block_on(async {
            run(
                &q,
                "CREATE TABLE items (id varchar PRIMARY KEY, embedding vector, document text)",
            )
            .await
            .unwrap();
            let typed = "SELECT format_type(atttypid, atttypmod) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid WHERE c.relname = 'items' AND a.attname = 'embedding'";
            assert_eq!(cells(&run(&q, typed).await.unwrap()), ["vector"]);
            let near = "SELECT id FROM items ORDER BY embedding <=> '[1,0,0]' LIMIT 2";
            assert!(cells(&run(&q, near).await.unwrap()).is_empty());
            let before = state_hash(&engine);
            let err = run(
                &q,
                "INSERT INTO items (id, document) VALUES ('x', 'no vector')",
            )
            .await
            .unwrap_err()
            .to_string();
            assert!(err.contains("no dimension yet"), "{err}");
            assert_eq!(state_hash(&engine), before);
            run(
                &q,
                "INSERT INTO items VALUES ('a', '[1,0,0]', 'one'), ('b', '[0,2,0]', 'two'), ('c', '[1,1,0]', 'three')",
            )
            .await
            .unwrap();
            assert_eq!(cells(&run(&q, typed).await.unwrap()), ["vector(3)"]);
            let hash = state_hash(&engine);
            let err = run(&q, "INSERT INTO items VALUES ('d', '[1,2]', 'short')")
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains("expected 3 dimensions"), "{err}");
            assert_eq!(state_hash(&engine), hash);
            // Cosine distances to [1,0,0]: a 0, c 1 - 1/√2, b 1.
            assert_eq!(cells(&run(&q, near).await.unwrap()), ["a", "c"]);
        });
        hash = state_hash(&engine);
    }
    let reference = Arc::new(Engine::open(other.path()).unwrap());
    let r = QueryEngine::new(Arc::clone(&reference));
    block_on(async {
        run(
            &r,
            "CREATE TABLE items (id varchar PRIMARY KEY, embedding vector(3), document text)",
        )
        .await
        .unwrap();
        run(
            &r,
            "INSERT INTO items VALUES ('a', '[1,0,0]', 'one'), ('b', '[0,2,0]', 'two'), ('c', '[1,1,0]', 'three')",
        )
        .await
        .unwrap();
    });
    assert_eq!(state_hash(&reference), hash);
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    assert_eq!(state_hash(&engine), hash);
}

/// pgvector's index DDL for `halfvec` and L1, and `CREATE UNLOGGED
/// TABLE`: `halfvec_cosine_ops` gives a `halfvec` table the cosine metric
/// (EXPLAIN shows the engine's search for `<=>`), `vector_l1_ops` and
/// `halfvec_l1_ops` are accepted with a NOTICE and change nothing (the
/// state hash is the same; `<+>` is an exact scan, whose nearest row is
/// checked here), an unknown operator class is refused; an unlogged table
/// is an ordinary, logged one.
#[test]
fn halfvec_and_l1_operator_classes_and_unlogged_tables() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    let q = QueryEngine::new(Arc::clone(&engine));
    block_on(async {
        run(
            &q,
            "CREATE UNLOGGED TABLE t (id bigint PRIMARY KEY, val halfvec(3))",
        )
        .await
        .unwrap();
        run(
            &q,
            "INSERT INTO t VALUES (1, '[1,2,3]'), (2, '[3,3,3]'), (3, '[-1,0,4]')",
        )
        .await
        .unwrap();
        run(&q, "CREATE INDEX ON t USING hnsw (val halfvec_cosine_ops)")
            .await
            .unwrap();
        let plan = cells(
            &run(
                &q,
                "EXPLAIN SELECT id FROM t ORDER BY val <=> '[1,1,1]' LIMIT 1",
            )
            .await
            .unwrap(),
        )
        .join("\n");
        assert!(
            plan.contains("ValoriKnnExec") && plan.contains("distance=cosine"),
            "{plan}"
        );
        let hash = state_hash(&engine);
        for sql in [
            "CREATE INDEX ON t USING hnsw (val vector_l1_ops)",
            "CREATE INDEX ON t USING hnsw (val halfvec_l1_ops)",
        ] {
            let (_, notices) = frameworks::run(&q, sql).await.unwrap();
            assert!(
                notices.iter().any(|n| n.contains("L1")),
                "{sql}: {notices:?}"
            );
        }
        assert_eq!(state_hash(&engine), hash);
        // L1 distances to [3,3,2]: row 1 → 2+1+1 = 4, row 2 → 1, row 3 → 9.
        assert_eq!(
            cells(
                &run(&q, "SELECT id FROM t ORDER BY val <+> '[3,3,2]' LIMIT 1")
                    .await
                    .unwrap()
            ),
            ["2"]
        );
        let err = run(&q, "CREATE INDEX ON t USING hnsw (val bit_hamming_ops)")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("operator class bit_hamming_ops"), "{err}");
    });
    drop(q);
    drop(engine);
    let engine = Engine::open(dir.path()).unwrap();
    assert_eq!(engine.read(|s| s.collections().count()).unwrap(), 1);
}

/// A statement prepared once and executed many times (as a driver keeps
/// it) is planned again when a table it reads changes under it, as
/// Postgres does: after `CREATE INDEX` and `ADD COLUMN` it answers the
/// same rows (a filtered nearest-neighbour query and a scan), and it is
/// refused, naming why, only when its result columns would change
/// (`SELECT *` after a column was added).
#[test]
fn prepared_statements_are_planned_again_after_a_table_changes() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    let q = QueryEngine::new(Arc::clone(&engine));
    block_on(async {
        run(
            &q,
            "CREATE TABLE items (id int PRIMARY KEY, embedding vector(2), category int)",
        )
        .await
        .unwrap();
        run(
            &q,
            "INSERT INTO items VALUES (1, '[1,1]', 7), (2, '[5,5]', 7), (3, '[1,2]', 8), (4, '[0,0]', 7)",
        )
        .await
        .unwrap();
        let knn = q
            .prepare("SELECT id FROM items WHERE category = $1 ORDER BY embedding <-> $2 LIMIT 2")
            .await
            .unwrap();
        let star = q.prepare("SELECT * FROM items WHERE id = 3").await.unwrap();
        let params = || {
            vec![
                datafusion::common::ScalarValue::Int64(Some(7)),
                datafusion::common::ScalarValue::Utf8(Some("[1,1]".into())),
            ]
        };
        let rows = |prepared, params| {
            let q = &q;
            async move {
                let mut session = Session::default();
                match q
                    .run(prepared, params, &mut session, Access::ReadOnly)
                    .await?
                {
                    Outcome::Rows(rows) => Ok(cells(&rows.collect().await?.batches)),
                    _ => panic!("expected rows"),
                }
            }
        };
        // Squared distances to [1,1] in category 7: id 1 → 0, id 4 → 2,
        // id 2 → 32.
        assert_eq!(rows(&knn, params()).await.unwrap(), ["1", "4"]);
        assert_eq!(rows(&star, Vec::new()).await.unwrap(), ["3|[1.0, 2.0]|8"]);
        run(&q, "CREATE INDEX ON items (category)").await.unwrap();
        for _ in 0..2 {
            assert_eq!(rows(&knn, params()).await.unwrap(), ["1", "4"]);
            assert_eq!(rows(&star, Vec::new()).await.unwrap(), ["3|[1.0, 2.0]|8"]);
        }
        run(&q, "ALTER TABLE items ADD COLUMN note text")
            .await
            .unwrap();
        assert_eq!(rows(&knn, params()).await.unwrap(), ["1", "4"]);
        let err: QueryError = rows(&star, Vec::new()).await.unwrap_err();
        assert!(
            err.to_string().contains("must not change result type"),
            "{err}"
        );
    });
}

/// A filtered nearest-neighbour statement whose filter takes parameters
/// (`WHERE category = $1 AND score < $3 ORDER BY embedding <-> $2 LIMIT
/// 3`) is planned once: each execution binds the values into the filter
/// (and the index lookup) without planning again. Every execution's rows
/// are the nearest of the matching rows computed here, for indexed and
/// unindexed filter columns, and a NULL value matches nothing.
#[test]
fn filtered_search_with_parameters_is_planned_once() {
    use datafusion::common::ScalarValue;
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    let q = QueryEngine::new(Arc::clone(&engine));
    let vector = |i: i64| [(i * 7) % 13, (i * 5) % 11];
    block_on(async {
        run(
            &q,
            "CREATE TABLE items (id int PRIMARY KEY, embedding vector(2), category int, score int)",
        )
        .await
        .unwrap();
        let values: Vec<String> = (0..400i64)
            .map(|i| {
                let v = vector(i);
                format!("({i}, '[{},{}]', {}, {})", v[0], v[1], i % 9, i % 100)
            })
            .collect();
        run(
            &q,
            &format!("INSERT INTO items VALUES {}", values.join(", ")),
        )
        .await
        .unwrap();
        run(&q, "CREATE INDEX ON items (category)").await.unwrap();
        let prepared = q
            .prepare(
                "SELECT id FROM items WHERE category = $1 AND score < $3 \
                 ORDER BY embedding <-> $2 LIMIT 3",
            )
            .await
            .unwrap();
        assert!(prepared.is_planned_once());
        for (category, query, below) in [
            (4i64, [3i64, 3i64], 50i64),
            (0, [12, 0], 100),
            (8, [0, 10], 20),
        ] {
            let mut session = Session::default();
            let params = vec![
                ScalarValue::Int64(Some(category)),
                ScalarValue::Utf8(Some(format!("[{},{}]", query[0], query[1]))),
                ScalarValue::Int64(Some(below)),
            ];
            let Outcome::Rows(rows) = q
                .run(&prepared, params, &mut session, Access::ReadOnly)
                .await
                .unwrap()
            else {
                panic!("expected rows");
            };
            let got = cells(&rows.collect().await.unwrap().batches);
            let mut want: Vec<(i64, i64)> = (0..400i64)
                .filter(|i| i % 9 == category && i % 100 < below)
                .map(|i| {
                    let v = vector(i);
                    ((v[0] - query[0]).pow(2) + (v[1] - query[1]).pow(2), i)
                })
                .collect();
            want.sort_unstable();
            let want: Vec<String> = want.iter().take(3).map(|(_, i)| i.to_string()).collect();
            assert_eq!(got, want, "category {category}");
        }
        let mut session = Session::default();
        let Outcome::Rows(rows) = q
            .run(
                &prepared,
                vec![
                    ScalarValue::Null,
                    ScalarValue::Utf8(Some("[1,1]".into())),
                    ScalarValue::Int64(Some(50)),
                ],
                &mut session,
                Access::ReadOnly,
            )
            .await
            .unwrap()
        else {
            panic!("expected rows");
        };
        assert!(
            rows.collect()
                .await
                .unwrap()
                .batches
                .iter()
                .all(|b| b.num_rows() == 0)
        );
    });
}

/// An upsert that updates some rows and inserts others is one event in
/// the log (so a crash keeps all of it or none), and it leaves the rows
/// the statement says: the updated row's new values, the inserted row,
/// the others as they were.
#[test]
fn an_upsert_that_updates_and_inserts_is_one_event() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    let q = QueryEngine::new(Arc::clone(&engine));
    block_on(async {
        run(
            &q,
            "CREATE TABLE items (id int PRIMARY KEY, embedding vector(2), note text)",
        )
        .await
        .unwrap();
        run(
            &q,
            "INSERT INTO items VALUES (1, '[1,1]', 'a'), (2, '[2,2]', 'b')",
        )
        .await
        .unwrap();
        let before = engine.log_size();
        run(
            &q,
            "INSERT INTO items VALUES (2, '[3,3]', 'B'), (3, '[4,4]', 'c') \
             ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding, note = EXCLUDED.note",
        )
        .await
        .unwrap();
        assert_eq!(engine.log_size(), before + 1);
        assert_eq!(
            cells(
                &run(&q, "SELECT id, embedding, note FROM items ORDER BY id")
                    .await
                    .unwrap()
            ),
            ["1|[1.0, 1.0]|a", "2|[3.0, 3.0]|B", "3|[4.0, 4.0]|c"]
        );
    });
    let hash = state_hash(&engine);
    drop(q);
    drop(engine);
    assert_eq!(state_hash(&Engine::open(dir.path()).unwrap()), hash);
}

/// Proves `CREATE INDEX items_embedding_idx ON items USING hnsw …` (the
/// name Postgres gives an unnamed index, which SQLAlchemy, Django and
/// Alembic write out) names the table's graph on a table that has no
/// HNSW index declared yet, as it would create it in Postgres; the name
/// is then taken (a second index under it is refused), and the catalog
/// lists the one index once.
#[test]
fn hnsw_index_under_postgres_default_name() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    let q = QueryEngine::new(Arc::clone(&engine));
    block_on(async {
        run(
            &q,
            "CREATE TABLE items (id bigserial PRIMARY KEY, n int, embedding vector(3))",
        )
        .await
        .unwrap();
        run(
            &q,
            "CREATE INDEX items_embedding_idx ON items USING hnsw (embedding vector_l2_ops)",
        )
        .await
        .unwrap();
        let e = run(&q, "CREATE INDEX items_embedding_idx ON items (n)")
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("items_embedding_idx"), "{e}");
        let rows = run(
            &q,
            "SELECT indexname FROM pg_indexes WHERE tablename = 'items' ORDER BY indexname",
        )
        .await
        .unwrap();
        assert_eq!(cells(&rows), ["items_embedding_idx", "items_pkey"]);
    });
}
