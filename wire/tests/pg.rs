//! The Postgres front end, started in-process on 127.0.0.1:0 and driven by
//! tokio-postgres: simple and extended protocols, pgvector's binary
//! vectors, writes, COPY, SQLSTATEs, SCRAM logins and roles, settings,
//! timeouts and cancellation.
#![allow(clippy::unwrap_used)]

use std::error::Error;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use tokio_postgres::types::{FromSql, IsNull, Kind, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};
use valori_engine::Engine;
use valori_query::QueryEngine;
use valori_wire::auth::{Auth, User};

/// A running server and its engine.
struct Server {
    port: u16,
    engine: Arc<Engine>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start(users: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let engine = Arc::new(Engine::open(dir.path()).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let users: Vec<User> = users.iter().map(|u| u.parse().unwrap()).collect();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let done = tokio::spawn(valori_wire::pg::serve(
            listener,
            QueryEngine::new(Arc::clone(&engine)),
            Arc::new(Auth::new(users)),
            async {
                let _ = stopped.await;
            },
        ));
        Server {
            port,
            engine,
            stop: Some(stop),
            done,
            _dir: dir,
        }
    }

    async fn login(&self, user: &str, password: &str) -> Result<Client, tokio_postgres::Error> {
        let config = format!(
            "host=127.0.0.1 port={} user={user} password={password} dbname=valori",
            self.port
        );
        let (client, connection) = tokio_postgres::connect(&config, NoTls).await?;
        tokio::spawn(connection);
        Ok(client)
    }

    async fn client(&self) -> Client {
        self.login("tester", "").await.unwrap()
    }

    fn state_hash(&self) -> [u8; 32] {
        self.engine.proof().unwrap().hashes.state.0
    }

    /// Stops the server, then opens its directory again: the state hash
    /// the log alone rebuilds.
    async fn stop_and_replay(mut self) -> [u8; 32] {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.done).await.unwrap().unwrap();
        let Server { engine, _dir, .. } = self;
        drop(engine);
        let reopened = Engine::open(_dir.path()).unwrap();
        reopened.proof().unwrap().hashes.state.0
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.done).await.unwrap().unwrap();
    }
}

/// pgvector's `vector` on the client side, in its binary form.
#[derive(Debug, Clone, PartialEq)]
struct Vector(Vec<f32>);

impl ToSql for Vector {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        out.put_u16(u16::try_from(self.0.len())?);
        out.put_u16(0);
        for x in &self.0 {
            out.put_f32(*x);
        }
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        ty.name() == "vector"
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for Vector {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Vector, Box<dyn Error + Sync + Send>> {
        let dim = usize::from(u16::from_be_bytes([raw[0], raw[1]]));
        assert_eq!(raw.len(), 4 + 4 * dim, "pgvector binary length");
        Ok(Vector(
            raw[4..]
                .chunks_exact(4)
                .map(|c| f32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ))
    }

    fn accepts(ty: &Type) -> bool {
        ty.name() == "vector"
    }
}

/// Bytes sent as a binary parameter of any type.
#[derive(Debug)]
struct Garbage(Vec<u8>);

impl ToSql for Garbage {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        out.put_slice(&self.0);
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn vector_type() -> Type {
    Type::new("vector".into(), 50_001, Kind::Simple, "public".into())
}

/// The rows of a simple query, as text.
async fn simple_rows(client: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    client
        .simple_query(sql)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// The SQLSTATE of a failed statement.
fn code(e: &tokio_postgres::Error) -> String {
    e.code()
        .map(|c| c.code().to_owned())
        .unwrap_or_else(|| format!("no SQLSTATE: {e}"))
}

const DOCS: &str =
    "CREATE TABLE docs (id BIGINT PRIMARY KEY, vec VECTOR(3), tag BIGINT, metadata JSONB)";

/// The fixture rows: (id, vector, tag).
const ROWS: [(i64, [f64; 3], i64); 5] = [
    (1, [1.0, 0.0, 0.0], 7),
    (2, [0.0, 1.0, 0.0], 7),
    (3, [0.0, 0.0, 1.0], 8),
    (4, [1.0, 1.0, 0.0], 7),
    (5, [3.0, 4.0, 0.0], 9),
];

async fn seed(client: &Client) {
    client.batch_execute(DOCS).await.unwrap();
    let values: Vec<String> = ROWS
        .iter()
        .map(|(id, v, tag)| {
            format!(
                "({id}, '[{},{},{}]', {tag}, '{{\"n\": {id}}}')",
                v[0], v[1], v[2]
            )
        })
        .collect();
    let n = client
        .execute(
            &format!("INSERT INTO docs VALUES {}", values.join(", ")),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(n, ROWS.len() as u64);
}

fn l2(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt()
}

/// Proves reads over both protocols: a simple query's text rows, and an
/// extended query with an integer parameter and typed binary results.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_and_extended_reads() {
    let server = Server::start(&[]).await;
    let client = server.client().await;
    seed(&client).await;

    let rows = simple_rows(
        &client,
        "SELECT id, tag, metadata FROM docs WHERE tag = 7 ORDER BY id",
    )
    .await;
    let expected: Vec<Vec<Option<String>>> = ROWS
        .iter()
        .filter(|r| r.2 == 7)
        .map(|(id, _, tag)| {
            // Metadata is stored canonical (compact JSON) and shown as bytea hex.
            let json = format!("{{\"n\":{id}}}");
            let hex: String = json.bytes().map(|b| format!("{b:02x}")).collect();
            vec![
                Some(id.to_string()),
                Some(tag.to_string()),
                Some(format!("\\x{hex}")),
            ]
        })
        .collect();
    assert_eq!(rows, expected);

    let rows = client
        .query(
            "SELECT id, tag FROM docs WHERE tag = $1 ORDER BY id",
            &[&7i64],
        )
        .await
        .unwrap();
    let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, [1, 2, 4]);
    assert!(rows.iter().all(|r| r.get::<_, i64>(1) == 7));

    // Several statements in one simple query run in order.
    let rows = simple_rows(&client, "SELECT 1; SELECT count(*) FROM docs").await;
    assert_eq!(rows, vec![vec![Some("1".into())], vec![Some("5".into())]]);
    server.stop().await;
}

/// Proves pgvector's operators with a text parameter and a binary vector
/// parameter, against distances computed here in f64, and that `vec`
/// reads back in pgvector's binary form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vector_parameters_and_operators() {
    let server = Server::start(&[]).await;
    let client = server.client().await;
    seed(&client).await;
    let q = [1.0, 2.0, 0.5];
    let mut expected: Vec<(f64, i64)> = ROWS.iter().map(|(id, v, _)| (l2(v, &q), *id)).collect();
    expected.sort_by(|a, b| a.partial_cmp(b).unwrap());

    // The server infers `vector` for an untyped argument of `<->`.
    let statement = client
        .prepare("SELECT id, vec <-> $1 AS d FROM docs ORDER BY d, id LIMIT 3")
        .await
        .unwrap();
    assert_eq!(statement.params()[0].name(), "vector");
    // A text parameter, typed so by the client, in pgvector's text form.
    let statement = client
        .prepare_typed(
            "SELECT id, vec <-> $1 AS d FROM docs ORDER BY d, id LIMIT 3",
            &[Type::TEXT],
        )
        .await
        .unwrap();
    let rows = client.query(&statement, &[&"[1, 2, 0.5]"]).await.unwrap();
    let got: Vec<(f64, i64)> = rows.iter().map(|r| (r.get(1), r.get(0))).collect();
    assert_eq!(got.len(), 3);
    for ((d, id), (ed, eid)) in got.iter().zip(&expected) {
        assert_eq!(id, eid);
        assert!((d - ed).abs() < 1e-9, "{d} vs {ed}");
    }

    // Binary vector parameter, typed by the client.
    let statement = client
        .prepare_typed(
            "SELECT id, vec FROM docs ORDER BY vec <-> $1, id LIMIT 2",
            &[vector_type()],
        )
        .await
        .unwrap();
    let rows = client
        .query(&statement, &[&Vector(vec![1.0, 2.0, 0.5])])
        .await
        .unwrap();
    let got: Vec<(i64, Vector)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let want: Vec<i64> = expected.iter().take(2).map(|e| e.1).collect();
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), want);
    for (id, v) in &got {
        let stored = ROWS.iter().find(|r| r.0 == *id).unwrap().1;
        assert_eq!(v.0, stored.iter().map(|x| *x as f32).collect::<Vec<_>>());
    }

    // Negative inner product and cosine distance, one row checked each.
    let row = client
        .query_one(
            "SELECT vec <#> '[1,2,0.5]', vec <=> '[1,2,0.5]' FROM docs WHERE id = 5",
            &[],
        )
        .await
        .unwrap();
    let v5 = [3.0, 4.0, 0.0];
    let dot: f64 = v5.iter().zip(&q).map(|(a, b)| a * b).sum();
    assert_eq!(row.get::<_, f64>(0), -dot);
    let cos = dot / (l2(&v5, &[0.0; 3]) * l2(&q, &[0.0; 3]));
    // Valori's cosine uses integer square roots of the raw Q16.16 norms
    // (docs/format.md), within 2^-16 of the real value here.
    let got: f64 = row.get(1);
    assert!((got - (1.0 - cos)).abs() < 1e-4, "{got} vs {}", 1.0 - cos);
    server.stop().await;
}

/// Proves writes: multi-row INSERT, engine-chosen ids, UPDATE, DELETE,
/// COPY in text and CSV form, DROP; and that each is visible to the next
/// statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_and_copy() {
    let server = Server::start(&[]).await;
    let client = server.client().await;
    seed(&client).await;

    let n = client
        .execute(
            "UPDATE docs SET tag = $1, metadata = '[1,2]' WHERE id IN (1, 2, 99)",
            &[&11i64],
        )
        .await
        .unwrap();
    assert_eq!(n, 2);
    let n = client
        .execute("DELETE FROM docs WHERE id = $1 OR id = 3", &[&5i64])
        .await
        .unwrap();
    assert_eq!(n, 2);
    let rows = simple_rows(&client, "SELECT id, tag FROM docs ORDER BY id").await;
    let rows: Vec<(String, String)> = rows
        .into_iter()
        .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
        .collect();
    assert_eq!(
        rows,
        [
            ("1".into(), "11".into()),
            ("2".into(), "11".into()),
            ("4".into(), "7".into())
        ]
    );

    // Without an id column the engine chooses ids after the largest the
    // table has held (5, although deleted).
    client
        .execute(
            "INSERT INTO docs (vec) VALUES ('[0,0,0]'), ('[1,1,1]')",
            &[],
        )
        .await
        .unwrap();
    let ids = simple_rows(&client, "SELECT id FROM docs WHERE id > 4 ORDER BY id").await;
    assert_eq!(ids, vec![vec![Some("6".into())], vec![Some("7".into())]]);

    // COPY, text format.
    let sink = client
        .copy_in("COPY docs (id, vec, tag, metadata) FROM STDIN")
        .await
        .unwrap();
    let data = "10\t[1,0,1]\t3\t{\"b\": 1, \"a\": 2}\n11\t[0,1,1]\t3\t\\N\n";
    use futures::SinkExt;
    let mut sink = Box::pin(sink);
    sink.send(bytes::Bytes::from(data)).await.unwrap();
    let copied = sink.as_mut().finish().await.unwrap();
    assert_eq!(copied, 2);
    // COPY, CSV with a header.
    let sink = client
        .copy_in("COPY docs (id, vec, tag) FROM STDIN WITH (FORMAT csv, HEADER)")
        .await
        .unwrap();
    let mut sink = Box::pin(sink);
    sink.send(bytes::Bytes::from("id,vec,tag\n12,\"[2,2,2]\",4\n"))
        .await
        .unwrap();
    assert_eq!(sink.as_mut().finish().await.unwrap(), 1);
    let rows = simple_rows(
        &client,
        "SELECT id, tag, metadata FROM docs WHERE id >= 10 ORDER BY id",
    )
    .await;
    // Metadata keys are stored sorted and compact.
    let canonical: String = "{\"a\":2,\"b\":1}"
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        rows,
        vec![
            vec![
                Some("10".into()),
                Some("3".into()),
                Some(format!("\\x{canonical}"))
            ],
            vec![Some("11".into()), Some("3".into()), Some("\\x".into())],
            vec![Some("12".into()), Some("4".into()), Some("\\x".into())],
        ]
    );

    client
        .batch_execute("CREATE INDEX ON docs USING hnsw (vec vector_l2_ops) WITH (m = 16)")
        .await
        .unwrap();
    client.batch_execute("DROP TABLE docs").await.unwrap();
    let e = client.simple_query("SELECT * FROM docs").await.unwrap_err();
    assert_eq!(code(&e), "42P01");
    server.stop().await;
}

/// Proves the SQLSTATE of each kind of bad statement, and that none of
/// them changes the state hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_have_sqlstates_and_change_nothing() {
    let server = Server::start(&[]).await;
    let client = server.client().await;
    seed(&client).await;
    let before = server.state_hash();
    let cases = [
        ("SELEKT 1", "42601"),
        ("INSERT INTO docs VALUES (", "42601"),
        ("SELECT * FROM nope", "42P01"),
        ("INSERT INTO nope (id, vec) VALUES (1, '[1,2,3]')", "42P01"),
        // The missing table is named, not a column of the fixed ones.
        ("INSERT INTO nope (embedding) VALUES ('[1,2,3]')", "42P01"),
        ("INSERT INTO nope VALUES (1)", "42P01"),
        ("SELECT nope FROM docs", "42703"),
        ("SELECT no_such_function(1)", "42883"),
        ("INSERT INTO docs (id, nope) VALUES (1, 2)", "42703"),
        ("SELECT l2(vec, '[1,2') FROM docs", "22P02"),
        ("INSERT INTO docs (id, vec) VALUES (9, '[1,x,3]')", "22P02"),
        ("INSERT INTO docs (id, vec) VALUES (9, '[1,2]')", "22023"),
        (
            "INSERT INTO docs (id, vec) VALUES (9, '[1,2,40000]')",
            "22023",
        ),
        (
            "INSERT INTO docs (id, vec) VALUES (9, '[1,2,NaN]')",
            "22023",
        ),
        ("INSERT INTO docs (id, vec) VALUES (1, '[1,2,3]')", "23505"),
        // The whole batch is refused when one row is bad: 9 is not written.
        (
            "INSERT INTO docs (id, vec) VALUES (9, '[1,2,3]'), (2, '[1,2,3]')",
            "23505",
        ),
        (
            "INSERT INTO docs (id, vec) VALUES (9, '[1,2,3]'), (9, '[1,2,3]')",
            "23505",
        ),
        (
            "INSERT INTO docs (id, vec, metadata) VALUES (9, '[1,2,3]', 'not json')",
            "22P02",
        ),
        (DOCS, "42P07"),
        ("DELETE FROM docs", "0A000"),
        ("UPDATE docs SET vec = '[1,2,3]' WHERE id = 1", "0A000"),
    ];
    for (sql, want) in cases {
        let e = client.simple_query(sql).await.unwrap_err();
        assert_eq!(code(&e), want, "{sql}: {e:?}");
        // The extended protocol reports the same code.
        let e = client.query(sql, &[]).await.unwrap_err();
        assert_eq!(code(&e), want, "{sql} (extended): {e:?}");
    }
    // Malformed binary parameters: wrong lengths for int8 and vector.
    let by_id = client
        .prepare_typed("SELECT id FROM docs WHERE id = $1", &[Type::INT8])
        .await
        .unwrap();
    let e = client
        .query(&by_id, &[&Garbage(vec![1, 2, 3])])
        .await
        .unwrap_err();
    assert_eq!(code(&e), "22P03");
    let insert = client
        .prepare_typed(
            "INSERT INTO docs (id, vec) VALUES (77, $1)",
            &[vector_type()],
        )
        .await
        .unwrap();
    for garbage in [vec![], vec![0, 3, 0, 0, 1], vec![0xff; 9]] {
        let e = client
            .execute(&insert, &[&Garbage(garbage)])
            .await
            .unwrap_err();
        assert_eq!(code(&e), "22P03");
    }
    // Text that looks like SQL stays a value.
    let as_text = client
        .prepare_typed("SELECT id FROM docs WHERE id = $1", &[Type::TEXT])
        .await
        .unwrap();
    let e = client
        .query(&as_text, &[&"1; DROP TABLE docs"])
        .await
        .unwrap_err();
    assert!(e.code().is_some(), "a server error: {e:?}");
    let rows = client
        .query(
            "SELECT count(*) FROM docs WHERE metadata = $1",
            &[&"x'); DROP TABLE docs; --".as_bytes()],
        )
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, i64>(0), 0);
    assert_eq!(server.state_hash(), before);
    // The connection still works.
    let count: i64 = client
        .query_one("SELECT count(*) FROM docs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, ROWS.len() as i64);
    server.stop().await;
}

/// Proves SCRAM logins: the right key logs in, a wrong one gets 28P01;
/// a read-role user reads but gets 25006 for every kind of write, and
/// the state does not change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_logins_and_roles() {
    let server = Server::start(&["alice:s3cret:write", "bob:r3ad:read"]).await;
    let alice = server.login("alice", "s3cret").await.unwrap();
    seed(&alice).await;
    let e = server.login("alice", "wrong").await.unwrap_err();
    assert_eq!(code(&e), "28P01");
    let e = server.login("carol", "s3cret").await.unwrap_err();
    assert_eq!(code(&e), "28P01");

    let bob = server.login("bob", "r3ad").await.unwrap();
    let count: i64 = bob
        .query_one("SELECT count(*) FROM docs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, ROWS.len() as i64);
    let before = server.state_hash();
    for sql in [
        "INSERT INTO docs (id, vec) VALUES (9, '[1,2,3]')",
        "DELETE FROM docs WHERE id = 1",
        "UPDATE docs SET tag = 1 WHERE id = 1",
        "DROP TABLE docs",
        "CREATE TABLE other (id BIGINT, vec VECTOR(2))",
        "COPY docs FROM STDIN",
    ] {
        let e = bob.simple_query(sql).await.unwrap_err();
        assert_eq!(code(&e), "25006", "{sql}");
    }
    assert_eq!(server.state_hash(), before);
    server.stop().await;
}

/// Proves per-connection settings: SET and SHOW of valori.ef_search and
/// valori.exact (and pgvector's hnsw.ef_search, hnsw.iterative_scan and
/// ivfflat.probes), refusal of bad values,
/// and that another connection keeps its own values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_settings() {
    let server = Server::start(&[]).await;
    let a = server.client().await;
    let b = server.client().await;
    a.batch_execute("SET valori.ef_search = 96; SET valori.exact TO on")
        .await
        .unwrap();
    assert_eq!(
        simple_rows(&a, "SHOW valori.ef_search").await,
        vec![vec![Some("96".into())]]
    );
    assert_eq!(
        simple_rows(&a, "SHOW valori.exact").await,
        vec![vec![Some("on".into())]]
    );
    // The other session has the engine's default, 64.
    assert_eq!(
        simple_rows(&b, "SHOW valori.ef_search").await,
        vec![vec![Some("64".into())]]
    );
    // The settings reach the query engine: EXPLAIN of a nearest-neighbour
    // query shows this session's values, and the other session's defaults.
    a.batch_execute(DOCS).await.unwrap();
    let explain = "EXPLAIN SELECT id FROM docs ORDER BY vec <-> '[1,1,1]' LIMIT 3";
    let plan = |rows: Vec<Vec<Option<String>>>| -> String {
        rows.into_iter()
            .flatten()
            .flatten()
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mine = plan(simple_rows(&a, explain).await);
    assert!(mine.contains("ef=96 exact=true"), "{mine}");
    let theirs = plan(simple_rows(&b, explain).await);
    assert!(theirs.contains("exact=false"), "{theirs}");
    let e = a
        .simple_query("SET valori.ef_search = -3")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "22023");
    // pgvector's name for it reaches the search too (within pgvector's
    // range); its other index settings are checked and shown.
    b.batch_execute("SET hnsw.ef_search = 123").await.unwrap();
    let theirs = plan(simple_rows(&b, explain).await);
    assert!(theirs.contains("ef=123 exact=false"), "{theirs}");
    let e = b
        .simple_query("SET hnsw.ef_search = 1001")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "22023");
    let e = b
        .simple_query("SET hnsw.iterative_scan = on")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "22023");
    assert_eq!(
        simple_rows(&b, "SHOW ivfflat.probes").await,
        vec![vec![Some("1".into())]]
    );
    // pgvector's iterative index scans: its three values are accepted and
    // SHOW answers the one set (pgvector's `off` by default).
    assert_eq!(
        simple_rows(&b, "SHOW hnsw.iterative_scan").await,
        vec![vec![Some("off".into())]]
    );
    for value in ["relaxed_order", "strict_order", "off"] {
        b.batch_execute(&format!("SET hnsw.iterative_scan = {value}"))
            .await
            .unwrap();
        assert_eq!(
            simple_rows(&b, "SHOW hnsw.iterative_scan").await,
            vec![vec![Some(value.into())]],
            "{value}"
        );
    }
    // ivfflat.probes in pgvector's range (1 to 32768) is kept and shown.
    b.batch_execute("SET ivfflat.probes = 10").await.unwrap();
    assert_eq!(
        simple_rows(&b, "SHOW ivfflat.probes").await,
        vec![vec![Some("10".into())]]
    );
    let e = b.simple_query("SET ivfflat.probes = 0").await.unwrap_err();
    assert_eq!(code(&e), "22023");
    // BEGIN/COMMIT are answered; each statement is already durable.
    a.batch_execute("BEGIN; SELECT 1; COMMIT").await.unwrap();
    server.stop().await;
}

/// Proves a prepared nearest-neighbour statement is answered by one
/// engine search for every form in which drivers send the query vector:
/// text typed `text` or `varchar` (JDBC's `setString`), pgvector's binary
/// `vector` (pgvector-python with `register_vector`, asyncpg), `float4[]`
/// and `float8[]` arrays, and a type left for the server to infer (then
/// bound as the `vector` it inferred); each with and without `::vector`,
/// unfiltered and with `tag = $2`. Its plan has the KNN node and no table
/// scan or sort (so its cost does not grow with the table), and its rows
/// are the exact nearest ones, computed here in f64.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_knn_statements_search_for_every_parameter_form() {
    let server = Server::start(&[]).await;
    let client = server.client().await;
    seed(&client).await;
    let q = [1.0, 2.0, 0.5];
    let nearest = |tag: Option<i64>| -> Vec<i64> {
        let mut d: Vec<(f64, i64)> = ROWS
            .iter()
            .filter(|r| tag.is_none_or(|t| r.2 == t))
            .map(|(id, v, _)| (l2(v, &q), *id))
            .collect();
        d.sort_by(|a, b| a.partial_cmp(b).unwrap());
        d.iter().take(2).map(|e| e.1).collect()
    };
    let text = "[1, 2, 0.5]";
    let binary = Vector(vec![1.0, 2.0, 0.5]);
    let f4: Vec<f32> = vec![1.0, 2.0, 0.5];
    let f8: Vec<f64> = q.to_vec();
    // (form, the type the client declares, the value); `None`: the client
    // declares no type and binds the type the server inferred.
    let forms: [(&str, Option<Type>, &(dyn ToSql + Sync)); 6] = [
        ("text", Some(Type::TEXT), &text),
        ("varchar", Some(Type::VARCHAR), &text),
        ("binary vector", Some(vector_type()), &binary),
        ("float4[]", Some(Type::FLOAT4_ARRAY), &f4),
        ("float8[]", Some(Type::FLOAT8_ARRAY), &f8),
        ("inferred", None, &binary),
    ];
    for cast in ["", "::vector"] {
        for filtered in [false, true] {
            let sql = if filtered {
                format!("SELECT id FROM docs WHERE tag = $2 ORDER BY vec <-> $1{cast} LIMIT 2")
            } else {
                format!("SELECT id FROM docs ORDER BY vec <-> $1{cast} LIMIT 2")
            };
            let want = nearest(filtered.then_some(7));
            for (form, ty, value) in &forms {
                let what = format!("{form} in {sql}");
                let types: Vec<Type> = match (ty, filtered) {
                    (Some(t), false) => vec![t.clone()],
                    (Some(t), true) => vec![t.clone(), Type::INT8],
                    (None, _) => Vec::new(),
                };
                let mut params: Vec<&(dyn ToSql + Sync)> = vec![*value];
                if filtered {
                    params.push(&7i64);
                }
                let explain = client
                    .prepare_typed(&format!("EXPLAIN {sql}"), &types)
                    .await
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                let statement = client
                    .prepare_typed(&sql, &types)
                    .await
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                // Each execution of the prepared statement binds its vector
                // and is answered the same way.
                for _ in 0..2 {
                    let plan: String = client
                        .query(&explain, &params)
                        .await
                        .unwrap_or_else(|e| panic!("{what}: {e}"))
                        .iter()
                        .map(|r| r.get::<_, String>(1))
                        .collect::<Vec<_>>()
                        .join("\n");
                    assert!(
                        plan.contains("ValoriKnnExec: collection=docs k=2"),
                        "{what}: {plan}"
                    );
                    if filtered {
                        assert!(plan.contains(" tag=7 "), "{what}: {plan}");
                    }
                    for scan in [
                        "TableScan",
                        "CollectionScanExec",
                        "DataSourceExec",
                        "SortExec",
                        "FilterExec",
                    ] {
                        assert!(!plan.contains(scan), "{what}: {scan} in {plan}");
                    }
                    let rows = client
                        .query(&statement, &params)
                        .await
                        .unwrap_or_else(|e| panic!("{what}: {e}"));
                    let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
                    assert_eq!(ids, want, "{what}");
                }
            }
        }
    }
    server.stop().await;
}

/// Proves statement_timeout and cancel requests end a long query with
/// 57014, and the connection stays usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_and_cancel() {
    let server = Server::start(&[]).await;
    let client = server.client().await;
    let slow = "SELECT count(*) FROM generate_series(1, 2000000000) a";
    client
        .batch_execute("SET statement_timeout = 200")
        .await
        .unwrap();
    let e = client.simple_query(slow).await.unwrap_err();
    assert_eq!(code(&e), "57014");
    client
        .batch_execute("SET statement_timeout = 0")
        .await
        .unwrap();

    let token = client.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        token.cancel_query(NoTls).await.unwrap();
    });
    let e = client.simple_query(slow).await.unwrap_err();
    assert_eq!(code(&e), "57014");
    canceller.await.unwrap();
    let one: i32 = client.query_one("SELECT 1::INT", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);

    // The timeout (and the search settings) given at connection time, as
    // libpq's PGOPTIONS does.
    let config = format!(
        "host=127.0.0.1 port={} user=tester dbname=valori options='-c statement_timeout=200 -c valori.exact=on'",
        server.port
    );
    let (configured, connection) = tokio_postgres::connect(&config, NoTls).await.unwrap();
    tokio::spawn(connection);
    assert_eq!(
        simple_rows(&configured, "SHOW statement_timeout").await,
        vec![vec![Some("200ms".into())]]
    );
    assert_eq!(
        simple_rows(&configured, "SHOW valori.exact").await,
        vec![vec![Some("on".into())]]
    );
    let e = configured.simple_query(slow).await.unwrap_err();
    assert_eq!(code(&e), "57014");
    server.stop().await;
}

/// Reads the rows of a simple query until it fails: how many arrived,
/// and the error. With `cancel_after`, a cancel request is sent once that
/// many rows have arrived.
async fn read_until_error(
    client: &Client,
    sql: &str,
    cancel_after: Option<u64>,
) -> (u64, tokio_postgres::Error) {
    use futures::StreamExt;
    let rows = client.simple_query_raw(sql).await.unwrap();
    futures::pin_mut!(rows);
    let mut read = 0_u64;
    loop {
        match rows.next().await {
            Some(Ok(SimpleQueryMessage::Row(_))) => {
                read += 1;
                if Some(read) == cancel_after {
                    client.cancel_token().cancel_query(NoTls).await.unwrap();
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return (read, e),
            None => panic!("the statement ended after {read} rows"),
        }
    }
}

/// Proves answers are streamed over the protocol, not collected first: a
/// portal over a series of 10^12 rows (collecting it would take hours)
/// answers its first chunks of 1,000 rows in order, as server-side
/// cursors and psql's FETCH_COUNT read them; as a simple query, the same
/// series streams rows until the statement timeout ends it with 57014,
/// or a cancel request sent while rows arrive does; the connection stays
/// usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_answers_are_streamed() {
    let server = Server::start(&[]).await;
    let mut client = server.client().await;
    let endless = "SELECT generate_series FROM generate_series(1, 1000000000000)";
    client
        .batch_execute("SET statement_timeout = 5000")
        .await
        .unwrap();
    let tx = client.transaction().await.unwrap();
    let statement = tx.prepare(endless).await.unwrap();
    let portal = tx.bind(&statement, &[]).await.unwrap();
    let mut next = 1_i64;
    for _ in 0..3 {
        let rows = tx.query_portal(&portal, 1000).await.unwrap();
        assert_eq!(rows.len(), 1000);
        for row in rows {
            assert_eq!(row.get::<_, i64>(0), next);
            next += 1;
        }
    }
    drop(portal);
    tx.rollback().await.unwrap();

    client
        .batch_execute("SET statement_timeout = 300")
        .await
        .unwrap();
    let (read, ended) = read_until_error(&client, endless, None).await;
    assert_eq!(code(&ended), "57014");
    assert!(read > 0, "rows arrived before the timeout");

    client
        .batch_execute("SET statement_timeout = 0")
        .await
        .unwrap();
    let (read, ended) = read_until_error(&client, endless, Some(10_000)).await;
    assert_eq!(code(&ended), "57014");
    let message = ended.as_db_error().unwrap().message();
    assert!(message.contains("user request"), "{message}");
    assert!(read >= 10_000);
    let one: i32 = client.query_one("SELECT 1::INT", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    server.stop().await;
}

/// Proves many connections at once each see their own writes and the
/// total is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_connections() {
    let server = Server::start(&[]).await;
    server.client().await.batch_execute(DOCS).await.unwrap();
    let mut tasks = Vec::new();
    for c in 0..16i64 {
        let client = server.client().await;
        tasks.push(tokio::spawn(async move {
            for i in 0..5i64 {
                let id = c * 100 + i;
                client
                    .execute(
                        "INSERT INTO docs (id, vec, tag) VALUES ($1, '[1,2,3]', $2)",
                        &[&id, &c],
                    )
                    .await
                    .unwrap();
            }
            let n: i64 = client
                .query_one("SELECT count(*) FROM docs WHERE tag = $1", &[&c])
                .await
                .unwrap()
                .get(0);
            assert_eq!(n, 5);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let n: i64 = server
        .client()
        .await
        .query_one("SELECT count(*) FROM docs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 80);
    server.stop().await;
}

/// Proves shutdown: a statement running when shutdown starts is answered,
/// then `serve` returns, the connection is closed and no new connection
/// is accepted.
///
/// The statement goes as a simple query, which holds the shutdown gate
/// from the moment the server reads it (an extended-protocol statement
/// takes it only at Execute, after planning: on a loaded machine it may
/// not have started when shutdown does, and then it is not run at all).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_running_statements() {
    let mut server = Server::start(&[]).await;
    let client = server.client().await;
    let n = 100_000_000i64;
    let running = tokio::spawn(async move {
        let sql = format!("SELECT count(*) FROM generate_series(1, {n})");
        let answer = client.simple_query(sql.as_str()).await.unwrap();
        let count = answer.iter().find_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        });
        (count, std::time::Instant::now(), client)
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let stopped_at = std::time::Instant::now();
    let _ = server.stop.take().unwrap().send(());
    let (count, answered_at, client) = running.await.unwrap();
    assert_eq!(count, Some(n.to_string()));
    // The statement was still running when shutdown began.
    assert!(answered_at > stopped_at);
    (&mut server.done).await.unwrap().unwrap();
    assert!(client.simple_query("SELECT 1").await.is_err());
    assert!(server.login("tester", "").await.is_err());
}

/// The events in the server's log.
fn log_size(server: &Server) -> u64 {
    server.engine.log_size()
}

/// Proves that each multi-record or multi-table statement is one event,
/// so all or nothing: `DELETE … IN (…)`, `UPDATE` of tag and metadata of
/// several records and `DROP TABLE a, b` each add exactly one event to the
/// log (they used to add one per id, field or table); and that such a
/// statement with a bad element in the middle or at the end reports the
/// error and leaves the state hash and the log as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_record_statements_are_one_event() {
    let server = Server::start(&[]).await;
    let client = server.client().await;
    seed(&client).await;
    client
        .batch_execute(
            "CREATE TABLE a (id BIGINT, vec VECTOR(2)); CREATE TABLE b (id BIGINT, vec VECTOR(2))",
        )
        .await
        .unwrap();

    let before = (server.state_hash(), log_size(&server));
    for (sql, want) in [
        ("DELETE FROM docs WHERE id IN (1, 'x', 2)", "22P02"),
        ("DELETE FROM docs WHERE id IN (1, 2, -1)", "22023"),
        (
            "UPDATE docs SET tag = 1, metadata = 'not json' WHERE id IN (1, 2, 3)",
            "22P02",
        ),
        ("UPDATE docs SET tag = 1 WHERE id IN (1, 2, 'x')", "22P02"),
        ("DROP TABLE a, nope, b", "42P01"),
        ("DROP TABLE a, b, nope", "42P01"),
    ] {
        let e = client.simple_query(sql).await.unwrap_err();
        assert_eq!(code(&e), want, "{sql}: {e:?}");
        assert_eq!(
            (server.state_hash(), log_size(&server)),
            before,
            "{sql} changed the state"
        );
    }

    let n = client
        .execute("DELETE FROM docs WHERE id IN (1, 2, 99, 3)", &[])
        .await
        .unwrap();
    assert_eq!(n, 3);
    assert_eq!(log_size(&server), before.1 + 1, "DELETE of 3 ids");
    let n = client
        .execute(
            "UPDATE docs SET tag = 40, metadata = '{\"u\": 1}' WHERE id IN (4, 5, 77)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(log_size(&server), before.1 + 2, "UPDATE of 2 ids, 2 fields");
    let rows = simple_rows(&client, "SELECT id, tag, metadata FROM docs ORDER BY id").await;
    let meta: String = "{\"u\":1}".bytes().map(|b| format!("{b:02x}")).collect();
    let want: Vec<Vec<Option<String>>> = [4, 5]
        .iter()
        .map(|id| {
            vec![
                Some(id.to_string()),
                Some("40".into()),
                Some(format!("\\x{meta}")),
            ]
        })
        .collect();
    assert_eq!(rows, want);
    client.batch_execute("DROP TABLE a, b").await.unwrap();
    assert_eq!(log_size(&server), before.1 + 3, "DROP TABLE of 2 tables");
    for table in ["a", "b"] {
        let e = client
            .simple_query(&format!("SELECT * FROM {table}"))
            .await
            .unwrap_err();
        assert_eq!(code(&e), "42P01");
    }
    server.stop().await;
}

/// Sends `data` as one `COPY docs (id, vec) FROM STDIN`.
async fn copy_docs(client: &Client, data: String) -> Result<u64, tokio_postgres::Error> {
    use futures::SinkExt;
    let sink = client
        .copy_in("COPY docs (id, vec) FROM STDIN")
        .await
        .unwrap();
    let mut sink = Box::pin(sink);
    sink.send(bytes::Bytes::from(data)).await.unwrap();
    sink.as_mut().finish().await
}

/// Proves one COPY is one atomic event: a COPY whose last row repeats
/// its first id writes nothing (23505), and a COPY of BATCH_RECORDS_MAX
/// + 1 rows is refused whole with 54000 naming the limit (it used to make
/// the first 100,000 rows durable and then report 23505 for the rest).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_is_all_or_nothing() {
    let server = Server::start(&[]).await;
    let client = server.client().await;
    seed(&client).await;
    let before = (server.state_hash(), log_size(&server));
    let rows = |n: u64| -> String {
        let mut data: String = (100..100 + n - 1)
            .map(|id| format!("{id}\t[1,2,3]\n"))
            .collect();
        // The last row repeats the first id.
        data.push_str("100\t[1,2,3]\n");
        data
    };
    let e = copy_docs(&client, rows(10)).await.unwrap_err();
    assert_eq!(code(&e), "23505", "{e:?}");
    assert_eq!((server.state_hash(), log_size(&server)), before);

    let max = u64::from(valori_core::limits::BATCH_RECORDS_MAX);
    let e = copy_docs(&client, rows(max + 1)).await.unwrap_err();
    assert_eq!(code(&e), "54000", "{e:?}");
    let message = e.as_db_error().unwrap().message().to_owned();
    assert!(message.contains("100000"), "{message}");
    assert_eq!((server.state_hash(), log_size(&server)), before);
    let count: i64 = client
        .query_one("SELECT count(*) FROM docs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, ROWS.len() as i64);
    server.stop().await;
}

/// Proves a binary array parameter whose element count is far beyond the
/// bytes sent is refused with 22P03 and the server keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_array_count_beyond_its_bytes_is_refused() {
    let server = Server::start(&[]).await;
    let client = server.client().await;
    seed(&client).await;
    let before = server.state_hash();
    let mut claim = Vec::new();
    for word in [1i32, 0, 700, i32::MAX, 1] {
        claim.extend_from_slice(&word.to_be_bytes());
    }
    let statement = client
        .prepare_typed(
            "INSERT INTO docs (id, vec) VALUES (50, $1)",
            &[Type::FLOAT4_ARRAY],
        )
        .await
        .unwrap();
    let e = client
        .execute(&statement, &[&Garbage(claim)])
        .await
        .unwrap_err();
    assert_eq!(code(&e), "22P03", "{e:?}");
    assert_eq!(server.state_hash(), before);
    let one: i64 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    server.stop().await;
}

/// Proves statements with multi-byte Unicode whitespace where Postgres
/// allows only ASCII whitespace (a separator before the statement's first
/// word used to make the server slice inside a character and panic,
/// dropping the connection) are refused as syntax errors, as Postgres
/// refuses them, on a connection that stays up; that the same settings
/// written with ASCII spaces are set and shown; and that stored settings
/// are bounded with 54000.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_with_unicode_whitespace_and_limits() {
    let server = Server::start(&[]).await;
    let client = server.client().await;
    for (i, sp) in ['\u{3000}', '\u{2003}', '\u{a0}', '\u{2028}']
        .into_iter()
        .enumerate()
    {
        for sql in [
            format!("({sp}SET{sp}app.x{i}{sp}={sp}'v{i}'"),
            format!("SET{sp}app.x{i} = 'v{i}'"),
            format!("SHOW{sp}app.x{i}"),
        ] {
            let e = client.simple_query(&sql).await.unwrap_err();
            assert_eq!(code(&e), "42601", "{sql:?}: {e:?}");
        }
        client
            .batch_execute(&format!("SET app.x{i} = 'v{i}'"))
            .await
            .unwrap();
        assert_eq!(
            simple_rows(&client, &format!("SHOW app.x{i}")).await,
            vec![vec![Some(format!("v{i}"))]]
        );
    }
    let big = "v".repeat(valori_core::limits::SESSION_SETTING_VALUE_BYTES_MAX as usize + 1);
    let e = client
        .simple_query(&format!("SET application_name = '{big}'"))
        .await
        .unwrap_err();
    assert_eq!(code(&e), "54000");
    for i in 4..valori_core::limits::SESSION_SETTINGS_MAX {
        client
            .batch_execute(&format!("SET app.x{i} = 1"))
            .await
            .unwrap();
    }
    let e = client
        .simple_query("SET app.one_too_many = 1")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "54000");
    assert_eq!(
        simple_rows(&client, "SHOW app.x0").await,
        vec![vec![Some("v0".into())]]
    );
    server.stop().await;
}

/// What a raw SCRAM login attempt saw: each backend message as (tag,
/// authentication code or SQLSTATE), the server-first message's salt and
/// iteration count, and the error message.
#[derive(Debug, PartialEq)]
struct ScramTrace {
    messages: Vec<(u8, String)>,
    salt: String,
    iterations: String,
    error: String,
}

/// Logs in as `user` over a raw socket with SCRAM-SHA-256 and a proof
/// that cannot be right, recording every message of the exchange.
async fn scram_attempt(port: u16, user: &str) -> ScramTrace {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut startup = Vec::new();
    startup.extend_from_slice(&196_608i32.to_be_bytes());
    for part in ["user", user, "database", "valori", ""] {
        startup.extend_from_slice(part.as_bytes());
        startup.push(0);
    }
    let mut message = ((startup.len() + 4) as i32).to_be_bytes().to_vec();
    message.extend_from_slice(&startup);
    socket.write_all(&message).await.unwrap();

    async fn read(socket: &mut tokio::net::TcpStream) -> (u8, Vec<u8>) {
        let tag = socket.read_u8().await.unwrap();
        let len = socket.read_i32().await.unwrap() as usize;
        let mut body = vec![0; len - 4];
        socket.read_exact(&mut body).await.unwrap();
        (tag, body)
    }
    async fn send(socket: &mut tokio::net::TcpStream, body: &[u8]) {
        let mut message = vec![b'p'];
        message.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        message.extend_from_slice(body);
        socket.write_all(&message).await.unwrap();
    }
    let mut trace = ScramTrace {
        messages: Vec::new(),
        salt: String::new(),
        iterations: String::new(),
        error: String::new(),
    };
    let client_nonce = "rOprNGfwEbeRWgbNEkqO";
    let mut server_nonce = String::new();
    for step in 0..3 {
        let (tag, body) = read(&mut socket).await;
        if tag == b'E' {
            let mut code = String::new();
            for field in body.split(|b| *b == 0).filter(|f| !f.is_empty()) {
                let text = String::from_utf8_lossy(&field[1..]).into_owned();
                match field[0] {
                    b'C' => code = text,
                    b'M' => trace.error = text,
                    _ => {}
                }
            }
            trace.messages.push((tag, code));
            break;
        }
        assert_eq!(tag, b'R', "step {step}: {body:?}");
        let auth = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        trace.messages.push((tag, auth.to_string()));
        match auth {
            10 => {
                let first = format!("n,,n=,r={client_nonce}");
                let mut body = b"SCRAM-SHA-256\0".to_vec();
                body.extend_from_slice(&(first.len() as i32).to_be_bytes());
                body.extend_from_slice(first.as_bytes());
                send(&mut socket, &body).await;
            }
            11 => {
                let server_first = String::from_utf8(body[4..].to_vec()).unwrap();
                for part in server_first.split(',') {
                    match part.split_at(2) {
                        ("r=", v) => server_nonce = v.to_owned(),
                        ("s=", v) => trace.salt = v.to_owned(),
                        ("i=", v) => trace.iterations = v.to_owned(),
                        _ => {}
                    }
                }
                assert!(server_nonce.starts_with(client_nonce), "{server_first}");
                let proof = format!("{}=", "A".repeat(43));
                let last = format!("c=biws,r={server_nonce},p={proof}");
                send(&mut socket, last.as_bytes()).await;
            }
            other => panic!("unexpected authentication request {other}"),
        }
    }
    trace
}

/// Proves an unknown Postgres user cannot be told from a known one with a
/// wrong key: both get the SCRAM challenge (a salt of the same length,
/// stable per name, and the same iteration count) and then the same
/// 28P01 error with the same message (unknown users used to be refused
/// right after the first SCRAM message, before any challenge).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_users_look_like_wrong_keys() {
    let server = Server::start(&["alice:s3cret:write"]).await;
    let known = scram_attempt(server.port, "alice").await;
    let unknown = scram_attempt(server.port, "mallory").await;
    let want = vec![
        (b'R', "10".to_owned()),
        (b'R', "11".to_owned()),
        (b'E', "28P01".to_owned()),
    ];
    assert_eq!(known.messages, want, "{known:?}");
    assert_eq!(unknown.messages, want, "{unknown:?}");
    assert_eq!(unknown.error, known.error);
    assert_eq!(unknown.iterations, known.iterations);
    assert_eq!(unknown.salt.len(), known.salt.len());
    assert_ne!(unknown.salt, known.salt);
    // A name's salt is the same at every attempt, for known and unknown
    // names alike.
    assert_eq!(
        scram_attempt(server.port, "mallory").await.salt,
        unknown.salt
    );
    assert_eq!(scram_attempt(server.port, "alice").await.salt, known.salt);
    // Through a real client: the same SQLSTATE and message.
    let wrong = server.login("alice", "wrong").await.unwrap_err();
    let nobody = server.login("mallory", "wrong").await.unwrap_err();
    assert_eq!(code(&wrong), "28P01");
    assert_eq!(
        nobody
            .as_db_error()
            .map(|e| (e.code().clone(), e.message().to_owned())),
        wrong
            .as_db_error()
            .map(|e| (e.code().clone(), e.message().to_owned()))
    );
    server.stop().await;
}

/// Every message of a `COPY … TO STDOUT`, one per row as Postgres sends
/// them.
async fn copy_out_messages(client: &Client, sql: &str) -> Vec<Vec<u8>> {
    use futures::TryStreamExt;
    let stream = client.copy_out(sql).await.unwrap();
    let messages: Vec<bytes::Bytes> = Box::pin(stream).try_collect().await.unwrap();
    messages.into_iter().map(|m| m.to_vec()).collect()
}

/// The declared table of the COPY tests.
const ITEMS: &str =
    "CREATE TABLE items (id bigint PRIMARY KEY, content text, n int, embedding vector(2))";

/// A row of `items`: id, content, n, embedding.
type ItemRow = (i64, Option<&'static str>, Option<i32>, [f32; 2]);

/// The rows of the COPY tests: text with a tab, a backslash, a newline,
/// the csv delimiter and quotes, and NULLs; components exact in Q16.16.
const ITEM_ROWS: [ItemRow; 4] = [
    (1, Some("tab\there"), Some(5), [1.0, 2.0]),
    (2, Some("back\\slash\nnewline"), None, [0.5, -3.0]),
    (3, Some("a,b \"q\""), Some(7), [0.0, 0.0]),
    (4, None, Some(8), [0.125, 100.0]),
];

/// Inserts [`ITEM_ROWS`] with INSERT and bound parameters.
async fn insert_items(client: &Client) {
    for (id, content, n, v) in ITEM_ROWS {
        client
            .execute(
                "INSERT INTO items VALUES ($1, $2, $3, $4)",
                &[&id, &content, &n, &Vector(v.to_vec())],
            )
            .await
            .unwrap();
    }
}

/// Proves `COPY … TO STDOUT` in text, csv and binary format, over the
/// extended protocol (tokio-postgres): one message per row; values in the
/// text forms a SELECT sends, vectors as `[x,y]`; tab, backslash and
/// newline escaped and NULL as `\N` in text; csv quoting of the
/// delimiter, quotes and the empty string, NULL as an empty unquoted
/// field, HEADER, DELIMITER and NULL options; a query as the source;
/// the binary PGCOPY stream read by tokio-postgres's binary reader into
/// int8, text and pgvector's binary vectors. Expected values are written
/// out from the inserted rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_to_stdout_in_every_format() {
    let server = Server::start(&[]).await;
    let client = server.client().await;
    client.batch_execute(ITEMS).await.unwrap();
    insert_items(&client).await;

    let mut lines: Vec<String> = copy_out_messages(&client, "COPY items TO STDOUT")
        .await
        .into_iter()
        .map(|m| String::from_utf8(m).unwrap())
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "1\ttab\\there\t5\t[1,2]\n",
            "2\tback\\\\slash\\nnewline\t\\N\t[0.5,-3]\n",
            "3\ta,b \"q\"\t7\t[0,0]\n",
            "4\t\\N\t8\t[0.125,100]\n",
        ]
    );

    let csv: Vec<String> = copy_out_messages(
        &client,
        "COPY (SELECT id, content, n FROM items ORDER BY id DESC) TO STDOUT WITH (FORMAT csv, HEADER)",
    )
    .await
    .into_iter()
    .map(|m| String::from_utf8(m).unwrap())
    .collect();
    assert_eq!(
        csv,
        [
            "id,content,n\n",
            "4,,8\n",
            "3,\"a,b \"\"q\"\"\",7\n",
            "2,\"back\\slash\nnewline\",\n",
            "1,tab\there,5\n",
        ]
    );
    // Another delimiter and NULL string; an empty string is quoted only
    // where it reads as NULL.
    client
        .batch_execute("INSERT INTO items VALUES (5, '', NULL, '[1,1]')")
        .await
        .unwrap();
    let csv = copy_out_messages(
        &client,
        "COPY (SELECT id, content, n FROM items WHERE id >= 4 ORDER BY id) TO STDOUT WITH (FORMAT csv, DELIMITER ';', NULL 'nil')",
    )
    .await;
    assert_eq!(csv, [b"4;nil;8\n".to_vec(), b"5;;nil\n".to_vec()]);
    let csv = copy_out_messages(
        &client,
        "COPY (SELECT id, content FROM items WHERE id = 5) TO STDOUT WITH (FORMAT csv)",
    )
    .await;
    assert_eq!(csv, [b"5,\"\"\n".to_vec()]);
    // Floats as Postgres prints them (`SELECT 1e-7::float8` is `1e-07`).
    let floats = copy_out_messages(
        &client,
        "COPY (SELECT 1e-7::float8, 0.00001::real, 1e20::float8, 0.5::real) TO STDOUT",
    )
    .await;
    assert_eq!(floats, [b"1e-07\t1e-05\t1e+20\t0.5\n".to_vec()]);
    // A column list on a table.
    let text = copy_out_messages(&client, "COPY items (embedding, id) TO STDOUT").await;
    assert!(text.contains(&b"[0.5,-3]\t2\n".to_vec()), "{text:?}");

    // Binary: tokio-postgres checks the signature, each row's field count
    // and the trailer.
    use futures::TryStreamExt;
    let stream = client
        .copy_out(
            "COPY (SELECT id, content, embedding FROM items ORDER BY id) TO STDOUT (FORMAT binary)",
        )
        .await
        .unwrap();
    let rows: Vec<tokio_postgres::binary_copy::BinaryCopyOutRow> =
        Box::pin(tokio_postgres::binary_copy::BinaryCopyOutStream::new(
            stream,
            &[Type::INT8, Type::TEXT, vector_type()],
        ))
        .try_collect()
        .await
        .unwrap();
    let read: Vec<(i64, Option<String>, Vector)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        read,
        [
            (1, Some("tab\there".to_owned()), Vector(vec![1.0, 2.0])),
            (
                2,
                Some("back\\slash\nnewline".to_owned()),
                Vector(vec![0.5, -3.0])
            ),
            (3, Some("a,b \"q\"".to_owned()), Vector(vec![0.0, 0.0])),
            (4, None, Vector(vec![0.125, 100.0])),
            (5, Some(String::new()), Vector(vec![1.0, 1.0])),
        ]
    );
    // No rows: the signature and the trailer in one message.
    let empty = copy_out_messages(
        &client,
        "COPY (SELECT id FROM items WHERE id > 99) TO STDOUT (FORMAT binary)",
    )
    .await;
    let mut expected = b"PGCOPY\n\xff\r\n\0".to_vec();
    expected.extend_from_slice(&[0; 8]);
    expected.extend_from_slice(&[0xff, 0xff]);
    assert_eq!(empty, [expected]);

    // A table with the fixed columns copies id, vec, tag and metadata.
    seed(&client).await;
    let docs = copy_out_messages(&client, "COPY (SELECT * FROM docs WHERE id = 5) TO STDOUT").await;
    assert_eq!(docs.len(), 1);
    let docs = copy_out_messages(&client, "COPY docs TO STDOUT").await;
    let mut docs: Vec<String> = docs
        .into_iter()
        .map(|m| String::from_utf8(m).unwrap())
        .collect();
    docs.sort();
    // The metadata column is bytes (its canonical JSON), in bytea's hex
    // text form with its backslash escaped.
    let expected: Vec<String> = ROWS
        .iter()
        .map(|(id, v, tag)| {
            let hex: String = format!("{{\"n\":{id}}}")
                .bytes()
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("{id}\t[{},{},{}]\t{tag}\t\\\\x{hex}\n", v[0], v[1], v[2])
        })
        .collect();
    assert_eq!(docs, expected);

    // Options Postgres refuses, and a server file, are refused.
    for (sql, state) in [
        ("COPY items TO STDOUT (FORMAT binary, HEADER)", "22023"),
        ("COPY items TO STDOUT (FORMAT csv, DELIMITER '\"')", "22023"),
        ("COPY items TO '/tmp/x'", "0A000"),
        ("COPY nope TO STDOUT", "42P01"),
    ] {
        let e = client.copy_out(sql).await.map(|_| ()).unwrap_err();
        assert_eq!(code(&e), state, "{sql}: {e:?}");
    }
    server.stop().await;
}

/// A binary COPY stream built by hand: the header, `rows` and the
/// trailer.
fn pgcopy(rows: &[Vec<u8>]) -> Vec<u8> {
    let mut data = b"PGCOPY\n\xff\r\n\0".to_vec();
    data.extend_from_slice(&[0; 8]);
    for row in rows {
        data.extend_from_slice(row);
    }
    data.extend_from_slice(&(-1i16).to_be_bytes());
    data
}

/// Proves `COPY … FROM STDIN (FORMAT binary)`: tokio-postgres's binary
/// writer loads int8, text, int4 and pgvector-binary vectors (and NULLs)
/// into a declared table, as one event; a SELECT reads back the values
/// written; the state hash is the one the log alone rebuilds. Malformed
/// streams (a bad signature, a field count that does not match, a field
/// length past the end, a vector field of the wrong size) are refused
/// with 22P04 or 22P03 and write nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_from_stdin_binary() {
    let server = Server::start(&[]).await;
    let client = server.client().await;
    client.batch_execute(ITEMS).await.unwrap();
    let sink = client
        .copy_in("COPY items (id, content, n, embedding) FROM STDIN (FORMAT binary)")
        .await
        .unwrap();
    let writer = tokio_postgres::binary_copy::BinaryCopyInWriter::new(
        sink,
        &[Type::INT8, Type::TEXT, Type::INT4, vector_type()],
    );
    let mut writer = Box::pin(writer);
    let inputs: [ItemRow; 3] = [
        (10, Some("tab\there, \"quoted\""), Some(3), [1.5, -2.0]),
        (11, None, None, [0.0, 0.125]),
        (12, Some(""), Some(-7), [100.0, 0.25]),
    ];
    for (id, content, n, v) in &inputs {
        let vector = Vector(v.to_vec());
        writer
            .as_mut()
            .write(&[id, content, n, &vector])
            .await
            .unwrap();
    }
    assert_eq!(writer.as_mut().finish().await.unwrap(), 3);
    let log_after_copy = log_size(&server);
    let rows = client
        .query(
            "SELECT id, content, n, embedding FROM items ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let read: Vec<(i64, Option<String>, Option<i32>, Vector)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let expected: Vec<(i64, Option<String>, Option<i32>, Vector)> = inputs
        .iter()
        .map(|(id, c, n, v)| (*id, c.map(str::to_owned), *n, Vector(v.to_vec())))
        .collect();
    assert_eq!(read, expected);

    // Malformed streams: nothing written, the connection keeps working.
    let before = (server.state_hash(), log_size(&server));
    let field = |bytes: &[u8]| -> Vec<u8> {
        let mut f = (bytes.len() as i32).to_be_bytes().to_vec();
        f.extend_from_slice(bytes);
        f
    };
    let good_row = [
        2i16.to_be_bytes().to_vec(),
        field(&20i64.to_be_bytes()),
        field(&[0, 2, 0, 0, 0x3f, 0x80, 0, 0, 0x40, 0, 0, 0]),
    ]
    .concat();
    let bad_vector = [
        2i16.to_be_bytes().to_vec(),
        field(&21i64.to_be_bytes()),
        field(&[0, 3, 0, 0, 0x3f, 0x80, 0, 0, 0x40, 0, 0, 0]),
    ]
    .concat();
    let mut past_end = 2i16.to_be_bytes().to_vec();
    past_end.extend_from_slice(&field(&22i64.to_be_bytes()));
    past_end.extend_from_slice(&1000i32.to_be_bytes());
    let mut not_pgcopy = b"20\t[1]\n".to_vec();
    not_pgcopy.resize(30, 0);
    for (data, state) in [
        (not_pgcopy, "22P04"),
        (pgcopy(&[good_row.clone(), good_row[..2].to_vec()]), "22P04"),
        (
            pgcopy(&[[3i16.to_be_bytes().to_vec(), good_row[2..].to_vec()].concat()]),
            "22P04",
        ),
        (pgcopy(&[good_row.clone(), past_end]), "22P04"),
        (pgcopy(&[good_row.clone(), bad_vector]), "22P03"),
    ] {
        use futures::SinkExt;
        let sink = client
            .copy_in("COPY items (id, embedding) FROM STDIN WITH (FORMAT binary)")
            .await
            .unwrap();
        let mut sink = Box::pin(sink);
        sink.send(bytes::Bytes::from(data)).await.unwrap();
        let e = sink.as_mut().finish().await.unwrap_err();
        assert_eq!(code(&e), state, "{e:?}");
        assert_eq!((server.state_hash(), log_size(&server)), before);
    }
    // The well-formed row alone loads.
    {
        use futures::SinkExt;
        let sink = client
            .copy_in("COPY items (id, embedding) FROM STDIN WITH (FORMAT binary)")
            .await
            .unwrap();
        let mut sink = Box::pin(sink);
        sink.send(bytes::Bytes::from(pgcopy(&[good_row])))
            .await
            .unwrap();
        assert_eq!(sink.as_mut().finish().await.unwrap(), 1);
    }
    assert!(log_size(&server) > log_after_copy);
    let v: Vector = client
        .query_one("SELECT embedding FROM items WHERE id = 20", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, Vector(vec![1.0, 2.0]));
    let hash = server.state_hash();
    assert_eq!(server.stop_and_replay().await, hash);
}

/// Proves a `COPY … TO STDOUT` whose client stops reading does not keep
/// the server from shutting down: its rows are sent outside the gate that
/// shutdown waits on, as a query's rows are (it used to hold the gate
/// while blocked on the socket, and shutdown waited for ever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_copy_out_does_not_block_shutdown() {
    use futures::SinkExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start(&[]).await;
    let client = server.client().await;
    client
        .batch_execute("CREATE TABLE big (id bigint PRIMARY KEY, body text)")
        .await
        .unwrap();
    // 64 rows of 512 KiB: far more than the sockets' buffers hold.
    let body = "x".repeat(512 * 1024);
    let data: String = (0..64).map(|i| format!("{i}\t{body}\n")).collect();
    let sink = client.copy_in("COPY big FROM STDIN").await.unwrap();
    let mut sink = Box::pin(sink);
    sink.send(bytes::Bytes::from(data)).await.unwrap();
    assert_eq!(sink.as_mut().finish().await.unwrap(), 64);

    // A raw client: start up, wait for ReadyForQuery, ask for the rows,
    // then read nothing more.
    let mut raw = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let mut startup = Vec::new();
    startup.extend_from_slice(&196_608i32.to_be_bytes());
    startup.extend_from_slice(b"user\0tester\0database\0valori\0\0");
    let mut message = ((startup.len() + 4) as i32).to_be_bytes().to_vec();
    message.extend_from_slice(&startup);
    raw.write_all(&message).await.unwrap();
    loop {
        let kind = raw.read_u8().await.unwrap();
        let len = raw.read_i32().await.unwrap();
        let mut body = vec![0; usize::try_from(len - 4).unwrap()];
        raw.read_exact(&mut body).await.unwrap();
        if kind == b'Z' {
            break;
        }
    }
    let sql = b"COPY big TO STDOUT\0";
    let mut query = vec![b'Q'];
    query.extend_from_slice(&((sql.len() + 4) as i32).to_be_bytes());
    query.extend_from_slice(sql);
    raw.write_all(&query).await.unwrap();
    // Let the server fill the socket and block on it.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    drop(client);
    let stopped = tokio::time::timeout(std::time::Duration::from_secs(30), server.stop()).await;
    assert!(
        stopped.is_ok(),
        "shutdown waited for a client that reads nothing"
    );
    drop(raw);
}

/// Proves arrays of text and booleans are sent as Postgres's `text[]` and
/// `bool[]` (binary: read as `Vec` by tokio-postgres; text: Postgres's
/// array text form, which quotes an element holding a comma, a quote,
/// a space or nothing, as `array_out` does: `{a,"b,c","d \"e\"",""}`),
/// and the catalog's `int2vector` `indkey` as `int2vector`, whose text
/// form separates elements by spaces (`1`), not braces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_arrays_and_int2vectors() {
    let server = Server::start(&[]).await;
    let client = server.client().await;
    let array = "SELECT make_array('a', 'b,c', 'd \"e\"', '') AS t, make_array(true, false) AS b";
    let row = client.query_one(array, &[]).await.unwrap();
    assert_eq!(row.columns()[0].type_(), &Type::TEXT_ARRAY);
    assert_eq!(row.columns()[1].type_(), &Type::BOOL_ARRAY);
    assert_eq!(
        row.get::<_, Vec<String>>(0),
        vec!["a", "b,c", "d \"e\"", ""]
    );
    assert_eq!(row.get::<_, Vec<bool>>(1), vec![true, false]);
    assert_eq!(
        simple_rows(&client, array).await,
        vec![vec![
            Some(r#"{a,"b,c","d \"e\"",""}"#.to_owned()),
            Some("{t,f}".to_owned())
        ]]
    );

    client
        .simple_query("CREATE TABLE keyed (id bigserial PRIMARY KEY, body text)")
        .await
        .unwrap();
    let indkey = "SELECT indkey FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid WHERE c.relname = 'keyed_pkey'";
    assert_eq!(
        simple_rows(&client, indkey).await,
        vec![vec![Some("1".to_owned())]]
    );
    let row = client.query_one(indkey, &[]).await.unwrap();
    assert_eq!(row.columns()[0].type_(), &Type::INT2_VECTOR);
    assert_eq!(row.get::<_, Vec<i16>>(0), vec![1]);
    server.stop().await;
}

/// The ids in `table`, in order, as one connection sees them.
async fn ids(client: &Client, table: &str) -> Vec<i64> {
    client
        .query(&format!("SELECT id FROM {table} ORDER BY id"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, i64>(0))
        .collect()
}

/// Proves a transaction block is one: its writes are seen by its own
/// statements and by no other connection until COMMIT; ROLLBACK leaves
/// the state hash as it was before BEGIN; a committed block is one event
/// in the log and leaves the state hash that the same statements give
/// run one by one on another server; an error aborts the block (25P02
/// until its end, COMMIT answered as ROLLBACK, nothing written); a block
/// survives a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_block_is_all_or_nothing() {
    let setup = "CREATE TABLE items (id bigint PRIMARY KEY, embedding vector(2), note text);
                 INSERT INTO items VALUES (1, '[1,1]', 'a')";
    let block = [
        "INSERT INTO items VALUES (2, '[2,2]', 'b'), (3, '[3,3]', 'c')",
        "UPDATE items SET note = 'changed' WHERE id = 1",
        "DELETE FROM items WHERE id = 3",
        "CREATE TABLE more (id bigint PRIMARY KEY, v vector(2))",
        "INSERT INTO more VALUES (7, '[0,1]')",
    ];
    let server = Server::start(&[]).await;
    let (one, other) = (server.client().await, server.client().await);
    one.batch_execute(setup).await.unwrap();
    let before = server.state_hash();
    let log_before = server.engine.log_size();

    // Seen inside, not outside; ROLLBACK undoes everything.
    one.batch_execute("BEGIN").await.unwrap();
    for statement in block {
        one.batch_execute(statement).await.unwrap();
    }
    assert_eq!(ids(&one, "items").await, vec![1, 2]);
    assert_eq!(ids(&one, "more").await, vec![7]);
    assert_eq!(ids(&other, "items").await, vec![1]);
    let missing = other.query("SELECT id FROM more", &[]).await.unwrap_err();
    assert_eq!(code(&missing), "42P01");
    one.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(ids(&one, "items").await, vec![1]);
    assert_eq!(
        server.state_hash(),
        before,
        "ROLLBACK leaves the state as it was"
    );
    assert_eq!(server.engine.log_size(), log_before);

    // COMMIT: one event, and the state of the statements run one by one.
    one.batch_execute("BEGIN").await.unwrap();
    for statement in block {
        one.batch_execute(statement).await.unwrap();
    }
    one.batch_execute("COMMIT").await.unwrap();
    assert_eq!(server.engine.log_size(), log_before + 1);
    assert_eq!(ids(&other, "items").await, vec![1, 2]);
    let note: String = other
        .query_one("SELECT note FROM items WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(note, "changed");
    let reference = Server::start(&[]).await;
    let plain = reference.client().await;
    plain.batch_execute(setup).await.unwrap();
    for statement in block {
        plain.batch_execute(statement).await.unwrap();
    }
    assert_eq!(server.state_hash(), reference.state_hash());
    reference.stop().await;

    // An error aborts the block; its end is a rollback.
    let committed = server.state_hash();
    one.batch_execute("BEGIN").await.unwrap();
    one.batch_execute("INSERT INTO items VALUES (4, '[4,4]', 'd')")
        .await
        .unwrap();
    let duplicate = one
        .batch_execute("INSERT INTO items VALUES (1, '[9,9]', 'dup')")
        .await
        .unwrap_err();
    assert_eq!(code(&duplicate), "23505");
    let refused = one.query("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(code(&refused), "25P02");
    let ended = one.simple_query("COMMIT").await.unwrap();
    assert!(
        matches!(&ended[0], SimpleQueryMessage::CommandComplete(0)),
        "{ended:?}"
    );
    assert_eq!(ids(&one, "items").await, vec![1, 2]);
    assert_eq!(server.state_hash(), committed);

    assert_eq!(
        server.stop_and_replay().await,
        committed,
        "replayed from the log"
    );
}

/// Proves savepoints undo what follows them: ROLLBACK TO SAVEPOINT drops
/// the writes made after it and keeps those before, it also ends an
/// error of the block, RELEASE forgets a savepoint, and an unknown one is
/// refused with 3B001; outside a block SAVEPOINT is refused with 25P01.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn savepoints_undo_what_follows_them() {
    let server = Server::start(&[]).await;
    let mut client = server.client().await;
    client
        .batch_execute("CREATE TABLE items (id bigint PRIMARY KEY, embedding vector(2))")
        .await
        .unwrap();
    let outside = client.batch_execute("SAVEPOINT s").await.unwrap_err();
    assert_eq!(code(&outside), "25P01");

    let mut tx = client.transaction().await.unwrap();
    tx.execute("INSERT INTO items VALUES (1, '[1,1]')", &[])
        .await
        .unwrap();
    {
        let inner = tx.savepoint("s").await.unwrap();
        inner
            .execute("INSERT INTO items VALUES (2, '[2,2]')", &[])
            .await
            .unwrap();
        assert_eq!(
            inner
                .query("SELECT id FROM items", &[])
                .await
                .unwrap()
                .len(),
            2
        );
        inner.rollback().await.unwrap();
    }
    {
        // An error inside the savepoint, undone by rolling back to it.
        let inner = tx.savepoint("t").await.unwrap();
        let duplicate = inner
            .execute("INSERT INTO items VALUES (1, '[5,5]')", &[])
            .await
            .unwrap_err();
        assert_eq!(code(&duplicate), "23505");
        inner.rollback().await.unwrap();
    }
    tx.execute("INSERT INTO items VALUES (3, '[3,3]')", &[])
        .await
        .unwrap();
    let unknown = tx
        .batch_execute("RELEASE SAVEPOINT nope")
        .await
        .unwrap_err();
    assert_eq!(code(&unknown), "3B001");
    tx.rollback().await.unwrap();

    let mut tx = client.transaction().await.unwrap();
    tx.execute("INSERT INTO items VALUES (1, '[1,1]')", &[])
        .await
        .unwrap();
    {
        let inner = tx.savepoint("s").await.unwrap();
        inner
            .execute("INSERT INTO items VALUES (2, '[2,2]')", &[])
            .await
            .unwrap();
        inner.rollback().await.unwrap();
    }
    tx.execute("INSERT INTO items VALUES (3, '[3,3]')", &[])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(ids(&client, "items").await, vec![1, 3]);
    server.stop().await;
}

/// Proves a block of several writes commits only on the state it read:
/// when another connection commits a write first, COMMIT fails with 40001
/// and nothing of the block is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_overtaken_by_another_write_fails_with_40001() {
    let server = Server::start(&[]).await;
    let (one, other) = (server.client().await, server.client().await);
    one.batch_execute("CREATE TABLE items (id bigint PRIMARY KEY, embedding vector(2))")
        .await
        .unwrap();
    one.batch_execute(
        "BEGIN; INSERT INTO items VALUES (1, '[1,1]'); INSERT INTO items VALUES (2, '[2,2]')",
    )
    .await
    .unwrap();
    other
        .batch_execute("INSERT INTO items VALUES (3, '[3,3]')")
        .await
        .unwrap();
    let after_other = server.state_hash();
    let conflict = one.batch_execute("COMMIT").await.unwrap_err();
    assert_eq!(code(&conflict), "40001");
    assert_eq!(server.state_hash(), after_other);
    assert_eq!(ids(&one, "items").await, vec![3]);
    server.stop().await;
}

/// Proves integer arrays of narrow Arrow items are sent in binary at the
/// width of their Postgres type: `smallint[]` items (Int16) announced as
/// `int4[]` arrive as 4-byte integers that tokio-postgres decodes, equal
/// to their text form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn narrow_integer_arrays_are_sent_at_their_width() {
    let server = Server::start(&[]).await;
    let client = server.client().await;
    let row = client
        .query_one(
            "SELECT ARRAY[CAST(1 AS SMALLINT), CAST(-2 AS SMALLINT), CAST(300 AS SMALLINT)] AS a",
            &[],
        )
        .await
        .unwrap();
    let binary: Vec<i32> = row.get(0);
    assert_eq!(binary, vec![1, -2, 300]);
    let text = client
        .simple_query(
            "SELECT ARRAY[CAST(1 AS SMALLINT), CAST(-2 AS SMALLINT), CAST(300 AS SMALLINT)] AS a",
        )
        .await
        .unwrap();
    let SimpleQueryMessage::Row(row) = &text[1] else {
        panic!("{text:?}")
    };
    assert_eq!(row.get(0), Some("{1,-2,300}"));
    server.stop().await;
}

/// The first value of a one-row, one-column answer, as text.
async fn one_text(client: &Client, sql: &str) -> Option<String> {
    simple_rows(client, sql).await[0][0].clone()
}

/// Proves advisory locks exclude other sessions as in Postgres and touch
/// no state: a transaction-level lock is held to the block's end (and
/// only to the statement's end outside a block), a session-level lock
/// until unlocked or the connection closes, a blocked `pg_advisory_lock`
/// goes on when the holder releases and fails with 55P03 at the
/// statement timeout; LangChain's two-statement query runs as sent. The
/// log and the state hash are as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advisory_locks_exclude_other_sessions() {
    let server = Server::start(&[]).await;
    let (one, other) = (server.client().await, server.client().await);
    let (hash, events) = (server.state_hash(), log_size(&server));
    one.batch_execute("BEGIN; SELECT pg_advisory_xact_lock(1573678846307946496)")
        .await
        .unwrap();
    let try_big = "SELECT pg_try_advisory_lock(1573678846307946496)";
    assert_eq!(one_text(&other, try_big).await.as_deref(), Some("f"));
    // The (int, int) key space is another one.
    assert_eq!(
        one_text(&other, "SELECT pg_try_advisory_xact_lock(1, 2)")
            .await
            .as_deref(),
        Some("t")
    );
    other
        .batch_execute("SET statement_timeout = 300")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let timed_out = other
        .batch_execute("SELECT pg_advisory_lock(1573678846307946496)")
        .await
        .unwrap_err();
    assert_eq!(code(&timed_out), "55P03", "{timed_out:?}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    other
        .batch_execute("RESET statement_timeout")
        .await
        .unwrap();
    one.batch_execute("COMMIT").await.unwrap();
    assert_eq!(one_text(&other, try_big).await.as_deref(), Some("t"));
    assert_eq!(
        one_text(&other, "SELECT pg_advisory_unlock(1573678846307946496)")
            .await
            .as_deref(),
        Some("t")
    );

    // Outside a block a transaction-level lock ends with its statement.
    one.batch_execute("SELECT pg_advisory_xact_lock(77)")
        .await
        .unwrap();
    assert_eq!(
        one_text(&other, "SELECT pg_try_advisory_xact_lock(77)")
            .await
            .as_deref(),
        Some("t")
    );

    // A waiter goes on when the holder unlocks.
    one.batch_execute("SELECT pg_advisory_lock(5)")
        .await
        .unwrap();
    let waiting = tokio::spawn({
        let port = server.port;
        async move {
            let (client, connection) = tokio_postgres::connect(
                &format!("host=127.0.0.1 port={port} user=valori dbname=valori"),
                NoTls,
            )
            .await
            .unwrap();
            tokio::spawn(connection);
            client
                .batch_execute("SELECT pg_advisory_lock(5)")
                .await
                .unwrap();
            client
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!waiting.is_finished());
    assert_eq!(
        one_text(&one, "SELECT pg_advisory_unlock(5)")
            .await
            .as_deref(),
        Some("t")
    );
    assert_eq!(
        one_text(&one, "SELECT pg_advisory_unlock(5)")
            .await
            .as_deref(),
        Some("f")
    );
    let waiter = tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
        .await
        .expect("the waiter got the lock")
        .unwrap();
    assert_eq!(
        one_text(&one, "SELECT pg_try_advisory_lock(5)")
            .await
            .as_deref(),
        Some("f")
    );
    // Closing the connection releases its session-level locks.
    drop(waiter);
    let mut freed = false;
    for _ in 0..100 {
        if one_text(&one, "SELECT pg_try_advisory_lock(5)")
            .await
            .as_deref()
            == Some("t")
        {
            freed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(freed, "the closed connection's lock was released");

    // LangChain's statement, as it sends it.
    one.batch_execute(
        "SELECT pg_advisory_xact_lock(1573678846307946496);CREATE EXTENSION IF NOT EXISTS vector;",
    )
    .await
    .unwrap();
    let bad = one
        .batch_execute("SELECT pg_advisory_lock(NULL)")
        .await
        .unwrap_err();
    assert_eq!(code(&bad), "22023", "{bad:?}");
    let shared = one
        .batch_execute("SELECT pg_advisory_lock_shared(1)")
        .await
        .unwrap_err();
    assert!(
        shared.to_string().contains("pg_advisory_lock_shared")
            || format!("{shared:?}").contains("pg_advisory_lock_shared"),
        "{shared:?}"
    );
    assert_eq!((server.state_hash(), log_size(&server)), (hash, events));
    server.stop().await;
}

/// Proves the session commands connection pools send: asyncpg's reset
/// query (`pg_advisory_unlock_all`, `CLOSE ALL`, `UNLISTEN *`, `RESET
/// ALL`) runs as sent; `DISCARD ALL` resets the settings, releases the
/// session's advisory locks and removes its named statements, and is
/// refused in a block (25001); `DEALLOCATE ALL` removes the named
/// statements (and a name never prepared is 26000); a connection keeps at
/// most PG_NAMED_STATEMENTS_MAX named statements.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_reset_commands() {
    let server = Server::start(&[]).await;
    let (one, other) = (server.client().await, server.client().await);
    one.batch_execute("SET valori.ef_search = 77; SELECT pg_advisory_lock(9)")
        .await
        .unwrap();
    one.batch_execute("SELECT pg_advisory_unlock_all();\nCLOSE ALL;\nUNLISTEN *;\nRESET ALL;")
        .await
        .unwrap();
    assert_eq!(
        one_text(&one, "SHOW valori.ef_search").await.as_deref(),
        Some("64")
    );
    assert_eq!(
        one_text(&other, "SELECT pg_try_advisory_xact_lock(9)")
            .await
            .as_deref(),
        Some("t")
    );
    let e = one.batch_execute("CLOSE some_cursor").await.unwrap_err();
    assert_eq!(code(&e), "0A000", "{e:?}");

    // DISCARD ALL: settings, locks and named statements.
    one.batch_execute("SET valori.ef_search = 77; SELECT pg_advisory_lock(10)")
        .await
        .unwrap();
    let statement = one.prepare("SELECT 1 + 1").await.unwrap();
    assert_eq!(
        one.query_one(&statement, &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        2
    );
    let e = one.batch_execute("BEGIN; DISCARD ALL").await.unwrap_err();
    assert_eq!(code(&e), "25001", "{e:?}");
    one.batch_execute("ROLLBACK").await.unwrap();
    one.batch_execute("DISCARD ALL").await.unwrap();
    assert_eq!(
        one_text(&one, "SHOW valori.ef_search").await.as_deref(),
        Some("64")
    );
    assert_eq!(
        one_text(&other, "SELECT pg_try_advisory_xact_lock(10)")
            .await
            .as_deref(),
        Some("t")
    );
    let gone = one.query_one(&statement, &[]).await.unwrap_err();
    assert!(
        format!("{gone:?}").contains("does not exist") || code(&gone) == "26000",
        "{gone:?}"
    );

    // DEALLOCATE ALL (DEALLOCATE of one name is exercised by psycopg,
    // which names its statements: tests/clients/test_psycopg.py).
    let b = one.prepare("SELECT 3").await.unwrap();
    assert_eq!(one.query_one(&b, &[]).await.unwrap().get::<_, i64>(0), 3);
    let e = one
        .batch_execute("DEALLOCATE never_prepared")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "26000", "{e:?}");
    one.batch_execute("DEALLOCATE ALL").await.unwrap();
    assert!(one.query_one(&b, &[]).await.is_err());

    // At most PG_NAMED_STATEMENTS_MAX named statements, and a closed one
    // no longer counts.
    let max = valori_core::limits::PG_NAMED_STATEMENTS_MAX as usize;
    let mut kept = Vec::with_capacity(max);
    for _ in 0..max {
        kept.push(one.prepare("SELECT 4").await.unwrap());
    }
    let e = one.prepare("SELECT 4").await.unwrap_err();
    assert_eq!(code(&e), "54000", "{e:?}");
    drop(kept.pop());
    // tokio-postgres closes a dropped statement with the next request.
    one.batch_execute("SELECT 1").await.unwrap();
    let again = one.prepare("SELECT 5").await.unwrap();
    assert_eq!(
        one.query_one(&again, &[]).await.unwrap().get::<_, i64>(0),
        5
    );
    server.stop().await;
}

/// Proves named portals are bounded and end with their transaction: in a
/// block a connection binds PG_NAMED_PORTALS_MAX portals and the next is
/// refused (54000); after the block ends, the same number can be bound
/// again while the first ones were never closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_portals_are_bounded_and_end_with_their_transaction() {
    let server = Server::start(&[]).await;
    let mut client = server.client().await;
    let max = valori_core::limits::PG_NAMED_PORTALS_MAX as usize;
    let mut kept = Vec::with_capacity(2 * max);
    {
        let tx = client.transaction().await.unwrap();
        let statement = tx.prepare("SELECT 1").await.unwrap();
        for _ in 0..max {
            kept.push(tx.bind(&statement, &[]).await.unwrap());
        }
        let Err(e) = tx.bind(&statement, &[]).await else {
            panic!("a portal past the limit was bound");
        };
        assert_eq!(code(&e), "54000", "{e:?}");
        tx.rollback().await.unwrap();
    }
    let tx = client.transaction().await.unwrap();
    let statement = tx.prepare("SELECT 1").await.unwrap();
    for _ in 0..max {
        kept.push(tx.bind(&statement, &[]).await.unwrap());
    }
    let rows = tx.query_portal(kept.last().unwrap(), 0).await.unwrap();
    assert_eq!(rows[0].get::<_, i64>(0), 1);
    tx.commit().await.unwrap();
    server.stop().await;
}

/// A value's bytes as the server sent them (binary results).
struct RawValue(Vec<u8>);

impl<'a> FromSql<'a> for RawValue {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<RawValue, Box<dyn Error + Sync + Send>> {
        Ok(RawValue(raw.to_vec()))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Proves an untyped `NULL` (`SELECT NULL`, a column of Arrow's `Null`
/// type) is sent as NULL over both protocols, as PostgreSQL sends it,
/// not as an empty string.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untyped_null_is_sent_as_null() {
    let server = Server::start(&[]).await;
    let client = server.client().await;
    assert_eq!(
        simple_rows(&client, "SELECT NULL, 1").await,
        [[None, Some("1".to_owned())]]
    );
    let row = client
        .query_one("SELECT NULL AS a, 1::int AS b", &[])
        .await
        .unwrap();
    assert!(row.get::<_, Option<RawValue>>(0).is_none());
    assert_eq!(
        row.get::<_, Option<RawValue>>(1).map(|v| v.0),
        Some(1i32.to_be_bytes().to_vec())
    );
    server.stop().await;
}

/// Proves `current_user`, `session_user` and `user` answer the name each
/// session logged in with, as PostgreSQL does: the
/// same statement text, prepared once and kept by the server for every
/// session, answers `alice` to alice and `bob` to bob.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn current_user_is_the_sessions_login_name() {
    let server = Server::start(&["alice:s3cret:write", "bob:r3ad:read"]).await;
    let sql = "SELECT current_user, session_user, user";
    for name in ["alice", "bob", "alice"] {
        let key = if name == "alice" { "s3cret" } else { "r3ad" };
        let client = server.login(name, key).await.unwrap();
        let row = client.query_one(sql, &[]).await.unwrap();
        for i in 0..3 {
            assert_eq!(row.get::<_, String>(i), name, "column {i}");
        }
        assert_eq!(
            simple_rows(&client, sql).await,
            [vec![Some(name.to_owned()); 3]]
        );
    }
    server.stop().await;
}

/// Proves `now()` and `current_time` reach a driver as PostgreSQL sends
/// them: `timestamptz` and `time` at microsecond resolution, read by
/// tokio-postgres in binary as the current time and written in text as
/// `YYYY-MM-DD HH:MM:SS.ffffff+00` (they went out in Arrow's display
/// form, `2026-12-07T19:26:10.264282577`, which drivers refuse).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn now_is_a_timestamptz_drivers_read() {
    let server = Server::start(&[]).await;
    let client = server.client().await;
    let before = std::time::SystemTime::now();
    let row = client
        .query_one("SELECT now(), current_timestamp, now()::timestamp", &[])
        .await
        .unwrap();
    let after = std::time::SystemTime::now();
    assert_eq!(row.columns()[0].type_(), &Type::TIMESTAMPTZ);
    assert_eq!(row.columns()[2].type_(), &Type::TIMESTAMP);
    for i in 0..3 {
        let t: std::time::SystemTime = row.get(i);
        // Microseconds: at most half of one earlier than `before`.
        let slack = std::time::Duration::from_micros(1);
        assert!(
            t + slack >= before && t <= after + slack,
            "column {i}: {t:?}"
        );
    }
    let text = simple_rows(&client, "SELECT now(), current_time").await;
    let now = text[0][0].clone().unwrap();
    let (date_time, zone) = now.split_at(now.len() - 3);
    assert_eq!(zone, "+00", "{now}");
    let (date, time) = date_time.split_once(' ').unwrap();
    assert_eq!(date.len(), 10, "{now}");
    assert!(time.len() <= 15 && time.as_bytes()[2] == b':', "{now}");
    let clock = text[0][1].clone().unwrap();
    assert!(clock.len() <= 15 && !clock.contains('T'), "{clock}");
    server.stop().await;
}

/// Proves values are typed as PostgreSQL 16 types them where
/// DataFusion's rules differ: `pg_typeof` answers a `regtype` (OID 2206),
/// sent in text as the type's name and in binary as its OID (23 for
/// `integer`, `vector`'s, 1700 for the `numeric` constant `1.5`); a cast
/// of a `numeric` column to `int` is an `int4` (the cast's type, not the
/// column's) and rounds half away from zero (`2.5` is 3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn casts_and_pg_typeof_are_typed_as_postgres_types_them() {
    let server = Server::start(&[]).await;
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, n numeric, e vector(2)); \
             INSERT INTO t VALUES (1, 2.5, '[1,2]')",
        )
        .await
        .unwrap();
    let statement = client
        .prepare("SELECT pg_typeof(id), n::int, pg_typeof(e), pg_typeof(1.5) FROM t")
        .await
        .unwrap();
    let types: Vec<&Type> = statement.columns().iter().map(|c| c.type_()).collect();
    assert_eq!(
        types,
        [&Type::REGTYPE, &Type::INT4, &Type::REGTYPE, &Type::REGTYPE]
    );
    let row = client.query_one(&statement, &[]).await.unwrap();
    assert_eq!(row.get::<_, RawValue>(0).0, 23u32.to_be_bytes());
    assert_eq!(row.get::<_, i32>(1), 3);
    assert_eq!(row.get::<_, RawValue>(2).0, 50_001u32.to_be_bytes());
    assert_eq!(row.get::<_, RawValue>(3).0, 1700u32.to_be_bytes());
    assert_eq!(
        simple_rows(
            &client,
            "SELECT pg_typeof(id), pg_typeof(e), pg_typeof(1.5) FROM t"
        )
        .await,
        [[
            Some("integer".to_owned()),
            Some("vector".to_owned()),
            Some("numeric".to_owned())
        ]]
    );
    server.stop().await;
}

/// Proves result columns are named as PostgreSQL 16 names them, and that
/// the names may repeat (PostgreSQL names an output column by its alias,
/// its column's or function's name, a cast by its type (`int4`) unless it
/// casts a column, and allows duplicates): `SELECT id, id` has two columns
/// `id`, as `*` beside a column it covers does, described so over the
/// extended protocol and sent so over the simple one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_columns_may_share_a_name() {
    let server = Server::start(&[]).await;
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, n numeric, e vector(2)); \
             INSERT INTO t VALUES (1, 2.5, '[1,2]')",
        )
        .await
        .unwrap();
    for (sql, names) in [
        ("SELECT id, id FROM t", &["id", "id"][..]),
        ("SELECT 1 AS a, 2 AS a", &["a", "a"]),
        ("SELECT *, id FROM t", &["id", "n", "e", "id"]),
        ("SELECT n, n, id FROM t ORDER BY n", &["n", "n", "id"]),
        ("SELECT NULL, NULL", &["?column?", "?column?"]),
        ("SELECT count(*), count(*) FROM t", &["count", "count"]),
        // DataFusion names a cast by what it casts.
        (
            "SELECT 1::int, 1::bigint, id FROM t",
            &["int4", "int8", "id"],
        ),
        ("SELECT *, n::int FROM t", &["id", "n", "e", "n"]),
    ] {
        let statement = client.prepare(sql).await.unwrap();
        let described: Vec<&str> = statement.columns().iter().map(|c| c.name()).collect();
        assert_eq!(described, names, "{sql}");
        let simple = client.simple_query(sql).await.unwrap();
        let Some(SimpleQueryMessage::Row(row)) = simple
            .iter()
            .find(|m| matches!(m, SimpleQueryMessage::Row(_)))
        else {
            panic!("{sql}: no row");
        };
        let sent: Vec<&str> = row.columns().iter().map(|c| c.name()).collect();
        assert_eq!(sent, names, "{sql}");
    }
    assert_eq!(
        simple_rows(&client, "SELECT id, id FROM t").await,
        [[Some("1".to_owned()), Some("1".to_owned())]]
    );
    server.stop().await;
}
