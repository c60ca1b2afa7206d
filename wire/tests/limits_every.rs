//! Every documented limit of `nostd-core/src/limits.rs` (and the REST body
//! limit) exercised at the limit and one past it, on every entry point that
//! accepts it: at the limit the write is accepted and the state changes;
//! one past, REST answers a 4xx JSON error naming the limit, Postgres a
//! SQLSTATE, and the state hash is unchanged. Limits only the engine API
//! can reach (the event size, the number of collections) are tested there,
//! on simulated storage. The expression limits are tested in
//! query/tests/query/bounds.rs and wire/tests/limits.rs.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio_postgres::{Client, NoTls};
use valori_core::Metric;
use valori_core::event::{Batch, CollectionConfig, CollectionName, Event, IndexParams, RecordId};
use valori_core::limits;
use valori_engine::{Engine, EngineError, EngineOptions};
use valori_wire::config::ServeArgs;

#[path = "common/server.rs"]
mod server;
use server::Server;

impl Server {
    fn with(body_bytes_max: Option<usize>) -> Server {
        Server::start(ServeArgs {
            body_bytes_max,
            ..ServeArgs::default()
        })
    }

    fn call(&self, method: &str, path: &str, body: &str) -> (u16, Value) {
        let answer = valori_wire::client::request(
            &self.rest.to_string(),
            method,
            path,
            None,
            Some(body.as_bytes()),
        )
        .unwrap();
        let value = answer
            .json()
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        (answer.status, value)
    }

    fn hash(&self) -> [u8; 32] {
        self.engine.proof().unwrap().hashes.state.0
    }

    /// The request is accepted and changes the state.
    fn accepts(&self, method: &str, path: &str, body: &str, status: u16) -> Value {
        let before = self.hash();
        let (got, value) = self.call(method, path, body);
        assert_eq!(got, status, "{method} {path}: {value}");
        if method != "GET" && path != "/v1/sql" && path != "/v1/query" {
            assert_ne!(self.hash(), before, "{method} {path} changed nothing");
        }
        value
    }

    /// The request is refused with `status` and `code`, the message names
    /// `limit`, and the state hash is unchanged.
    fn refuses(&self, method: &str, path: &str, body: &str, status: u16, code: &str, limit: &str) {
        let before = self.hash();
        let (got, value) = self.call(method, path, body);
        assert_eq!(got, status, "{method} {path}: {value}");
        assert_eq!(value["error"]["code"], code, "{value}");
        let message = value["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(limit),
            "{method} {path}: {message:?} does not name {limit}"
        );
        assert_eq!(
            self.hash(),
            before,
            "{method} {path}: refused, yet the state changed"
        );
    }

    async fn pg(&self) -> Client {
        let config = format!(
            "host=127.0.0.1 port={} user=t dbname=valori",
            self.pg.port()
        );
        let (client, connection) = tokio_postgres::connect(&config, NoTls).await.unwrap();
        tokio::spawn(connection);
        client
    }
}

/// The statement runs and changes the state.
async fn pg_accepts(server: &Server, client: &Client, sql: &str) {
    let before = server.hash();
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{}: {e:?}", &sql[..sql.len().min(120)]));
    assert_ne!(
        server.hash(),
        before,
        "{} changed nothing",
        &sql[..sql.len().min(120)]
    );
}

/// The statement fails with `sqlstate`, its message names `limit`, and
/// the state hash is unchanged.
async fn pg_refuses(server: &Server, client: &Client, sql: &str, sqlstate: &str, limit: &str) {
    let before = server.hash();
    let short = &sql[..sql.len().min(120)];
    let e = client.simple_query(sql).await.expect_err(short);
    let db = e.as_db_error().unwrap_or_else(|| panic!("{short}: {e:?}"));
    assert_eq!(db.code().code(), sqlstate, "{short}: {}", db.message());
    assert!(
        db.message().contains(limit),
        "{short}: {:?} does not name {limit}",
        db.message()
    );
    assert_eq!(
        server.hash(),
        before,
        "{short}: refused, yet the state changed"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Dimension, collection name, HNSW parameters: at the limit a collection
/// is created; one past, nothing is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collection_limits_on_rest_and_postgres() {
    let server = Server::with(None);
    let client = server.pg().await;
    let dim = limits::DIM_MAX;
    let name_max = limits::COLLECTION_NAME_BYTES_MAX as usize;
    let m = limits::HNSW_M_MAX;
    let ef = limits::HNSW_EF_CONSTRUCTION_MAX;

    // DIM_MAX, with a record of that many components written and read back.
    server.accepts(
        "POST",
        "/v1/collections",
        &json!({"name": "wide", "dim": dim}).to_string(),
        201,
    );
    let vector: Vec<f32> = (0..dim).map(|i| (i % 7) as f32).collect();
    server.accepts(
        "POST",
        "/v1/collections/wide/records",
        &json!({"id": 1, "vector": vector}).to_string(),
        201,
    );
    let (status, record) = server.call("GET", "/v1/collections/wide/records/1", "");
    assert_eq!(status, 200);
    assert_eq!(record["vector"].as_array().unwrap().len(), dim as usize);
    let past = (dim + 1).to_string();
    server.refuses(
        "POST",
        "/v1/collections",
        &json!({"name": "wider", "dim": dim + 1}).to_string(),
        400,
        "bad_request",
        &dim.to_string(),
    );
    pg_accepts(
        &server,
        &client,
        &format!("CREATE TABLE pwide (id BIGINT, vec VECTOR({dim}))"),
    )
    .await;
    pg_refuses(
        &server,
        &client,
        &format!("CREATE TABLE pwider (id BIGINT, vec VECTOR({past}))"),
        "22023",
        &dim.to_string(),
    )
    .await;

    // COLLECTION_NAME_BYTES_MAX.
    let at = format!("n{}", "a".repeat(name_max - 1));
    let over = format!("n{}", "a".repeat(name_max));
    server.accepts(
        "POST",
        "/v1/collections",
        &json!({"name": at, "dim": 2}).to_string(),
        201,
    );
    server.refuses(
        "POST",
        "/v1/collections",
        &json!({"name": over, "dim": 2}).to_string(),
        400,
        "bad_request",
        &name_max.to_string(),
    );
    let at = format!("p{}", "a".repeat(name_max - 1));
    let over = format!("p{}", "a".repeat(name_max));
    pg_accepts(
        &server,
        &client,
        &format!("CREATE TABLE {at} (id BIGINT, vec VECTOR(2))"),
    )
    .await;
    pg_refuses(
        &server,
        &client,
        &format!("CREATE TABLE {over} (id BIGINT, vec VECTOR(2))"),
        "22023",
        &name_max.to_string(),
    )
    .await;

    // HNSW_M_MAX and HNSW_EF_CONSTRUCTION_MAX.
    server.accepts(
        "POST",
        "/v1/collections",
        &json!({"name": "graph_max", "dim": 2, "m": m, "ef_construction": ef}).to_string(),
        201,
    );
    let (_, info) = server.call("GET", "/v1/collections/graph_max", "");
    assert_eq!(
        (info["m"].as_u64(), info["ef_construction"].as_u64()),
        (Some(m.into()), Some(ef.into()))
    );
    for (field, value, limit) in [
        ("m", u32::from(m) + 1, m),
        ("ef_construction", u32::from(ef) + 1, ef),
    ] {
        server.refuses(
            "POST",
            "/v1/collections",
            &json!({"name": "graph_past", "dim": 2, field: value}).to_string(),
            400,
            "bad_request",
            &limit.to_string(),
        );
        pg_refuses(
            &server,
            &client,
            &format!("CREATE TABLE graph_past (id BIGINT, vec VECTOR(2)) WITH ({field} = {value})"),
            "22023",
            &limit.to_string(),
        )
        .await;
    }
    pg_accepts(
        &server,
        &client,
        &format!("CREATE TABLE pgraph_max (id BIGINT, vec VECTOR(2)) WITH (m = {m}, ef_construction = {ef})"),
    )
    .await;
}

/// Metadata of exactly METADATA_BYTES_MAX bytes is stored by every write
/// that carries metadata; one byte more is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_limit_on_every_write() {
    let server = Server::with(None);
    let client = server.pg().await;
    let max = limits::METADATA_BYTES_MAX as usize;
    let name = max.to_string();
    server.accepts("POST", "/v1/collections", r#"{"name":"docs","dim":2}"#, 201);
    // A JSON string is stored with its two quotes.
    let string = |len: usize| Value::String("x".repeat(len - 2));
    let records = "/v1/collections/docs/records";

    server.accepts(
        "POST",
        records,
        &json!({"id": 1, "vector": [1, 2], "metadata": string(max)}).to_string(),
        201,
    );
    let (_, record) = server.call("GET", &format!("{records}/1"), "");
    assert_eq!(record["metadata"], string(max));
    server.refuses(
        "POST",
        records,
        &json!({"id": 2, "vector": [1, 2], "metadata": string(max + 1)}).to_string(),
        413,
        "payload_too_large",
        &name,
    );
    let batch = |meta: Value| {
        json!({"ids": [10, 11], "vectors": [[1, 2], [3, 4]], "metadata": [{"a": 1}, meta]})
            .to_string()
    };
    server.refuses(
        "POST",
        &format!("{records}/batch"),
        &batch(string(max + 1)),
        413,
        "payload_too_large",
        &name,
    );
    server.accepts(
        "POST",
        &format!("{records}/batch"),
        &batch(string(max)),
        201,
    );
    let put = |len: usize| json!({"metadata": string(len)}).to_string();
    server.refuses(
        "PUT",
        &format!("{records}/10/metadata"),
        &put(max + 1),
        413,
        "payload_too_large",
        &name,
    );
    server.accepts("PUT", &format!("{records}/10/metadata"), &put(max), 200);

    // Postgres: raw bytes as bytea hex, in INSERT and UPDATE.
    let bytes = |len: usize| format!("'\\x{}'", hex(&vec![0xab; len]));
    pg_refuses(
        &server,
        &client,
        &format!(
            "INSERT INTO docs (id, vec, metadata) VALUES (20, '[1,2]', {})",
            bytes(max + 1)
        ),
        "54000",
        &name,
    )
    .await;
    pg_accepts(
        &server,
        &client,
        &format!(
            "INSERT INTO docs (id, vec, metadata) VALUES (20, '[1,2]', {})",
            bytes(max)
        ),
    )
    .await;
    pg_refuses(
        &server,
        &client,
        &format!(
            "UPDATE docs SET metadata = {} WHERE id IN (1, 20)",
            bytes(max + 1)
        ),
        "54000",
        &name,
    )
    .await;
    pg_accepts(
        &server,
        &client,
        &format!(
            "UPDATE docs SET metadata = {} WHERE id IN (1, 20)",
            bytes(max)
        ),
    )
    .await;
    for id in [1i64, 20] {
        let row = client
            .query_one("SELECT metadata FROM docs WHERE id = $1", &[&id])
            .await
            .unwrap();
        assert_eq!(row.get::<_, Vec<u8>>(0), vec![0xab; max], "id {id}");
    }
}

/// The largest f32 below COMPONENT_ABS_LIMIT is stored (exactly, as
/// Q16.16); the limit itself is refused, on both signs and both fronts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn component_limit_on_rest_and_postgres() {
    let server = Server::with(None);
    let client = server.pg().await;
    let limit = limits::COMPONENT_ABS_LIMIT;
    let below = f32::from_bits(limit.to_bits() - 1);
    server.accepts("POST", "/v1/collections", r#"{"name":"docs","dim":2}"#, 201);
    let records = "/v1/collections/docs/records";
    server.accepts(
        "POST",
        records,
        &json!({"id": 1, "vector": [below, -below]}).to_string(),
        201,
    );
    let row = client
        .query_one("SELECT vec_q16 FROM docs WHERE id = 1", &[])
        .await
        .unwrap();
    let q: Vec<i32> = row.get(0);
    // 32767.998046875 * 65536 = 2^31 - 128, exactly.
    assert_eq!(q, [i32::MAX - 127, -(i32::MAX - 127)]);
    for v in [limit, -limit] {
        server.refuses(
            "POST",
            records,
            &json!({"id": 2, "vector": [1, v]}).to_string(),
            400,
            "bad_request",
            "32768",
        );
        pg_refuses(
            &server,
            &client,
            &format!("INSERT INTO docs VALUES (2, '[1,{v}]')"),
            "22023",
            "32768",
        )
        .await;
    }
    pg_accepts(
        &server,
        &client,
        &format!("INSERT INTO docs VALUES (3, '[{below},{}]')", -below),
    )
    .await;
}

/// A statement of exactly SQL_BYTES_MAX bytes runs over Postgres, REST
/// `/v1/sql` and `/v1/query`; one byte more is refused before parsing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_length_limit_on_every_front() {
    let server = Server::with(None);
    let client = server.pg().await;
    let max = limits::SQL_BYTES_MAX as usize;
    let name = max.to_string();
    server.accepts("POST", "/v1/collections", r#"{"name":"docs","dim":2}"#, 201);
    // Spaces inside the statement (trailing ones are cut before the check,
    // as they end the statement).
    let pad = |text: &str, len: usize| {
        let (first, rest) = text.split_once(' ').unwrap();
        format!("{first}{}{rest}", " ".repeat(len - text.len() + 1))
    };

    let insert = "INSERT INTO docs VALUES (1, '[1,2]')";
    pg_refuses(&server, &client, &pad(insert, max + 1), "54000", &name).await;
    pg_accepts(&server, &client, &pad(insert, max)).await;

    let select = |len: usize| json!({"query": pad("SELECT id FROM docs", len)}).to_string();
    let (_, rows) = server.call("POST", "/v1/sql", &select(max));
    assert_eq!(rows["rows"], json!([[1]]), "{rows}");
    server.refuses(
        "POST",
        "/v1/sql",
        &select(max + 1),
        413,
        "payload_too_large",
        &name,
    );

    let dsl = |len: usize| {
        json!({"query": pad("FROM docs NEAREST $q K 1", len), "params": {"q": [1, 2]}}).to_string()
    };
    let (status, rows) = server.call("POST", "/v1/query", &dsl(max));
    assert_eq!(status, 200, "{rows}");
    assert_eq!(rows["rows"][0][0], 1, "{rows}");
    server.refuses(
        "POST",
        "/v1/query",
        &dsl(max + 1),
        413,
        "payload_too_large",
        &name,
    );
}

/// A REST batch and a Postgres COPY of BATCH_RECORDS_MAX records are one
/// event each; one more is refused whole. (An INSERT of that many rows
/// exceeds SQL_BYTES_MAX first.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_limit_on_rest_and_copy() {
    let server = Server::with(None);
    let max = limits::BATCH_RECORDS_MAX as usize;
    server.accepts(
        "POST",
        "/v1/collections",
        r#"{"name":"docs","dim":1,"m":2,"ef_construction":1}"#,
        201,
    );
    let batch = |n: usize| format!(r#"{{"vectors":[{}]}}"#, vec!["[1]"; n].join(","));
    let path = "/v1/collections/docs/records/batch";
    server.refuses(
        "POST",
        path,
        &batch(max + 1),
        413,
        "payload_too_large",
        &max.to_string(),
    );
    let log = server.engine.log_size();
    let answer = server.accepts("POST", path, &batch(max), 201);
    assert_eq!(answer["ids"].as_array().unwrap().len(), max);
    assert_eq!(server.engine.log_size(), log + 1, "one event");

    // COPY over Postgres: the same bound, one event.
    let client = server.pg().await;
    pg_accepts(
        &server,
        &client,
        "CREATE TABLE pdocs (id BIGINT, vec VECTOR(1)) WITH (m = 2, ef_construction = 1)",
    )
    .await;
    let copy = |n: usize| {
        let client = &client;
        async move {
            use futures::SinkExt;
            let data: String = (0..n).map(|id| format!("{id}\t[1]\n")).collect();
            let sink = client
                .copy_in("COPY pdocs (id, vec) FROM STDIN")
                .await
                .unwrap();
            let mut sink = Box::pin(sink);
            sink.send(bytes::Bytes::from(data)).await.unwrap();
            sink.as_mut().finish().await
        }
    };
    let before = (server.hash(), server.engine.log_size());
    let e = copy(max + 1).await.unwrap_err();
    let db = e.as_db_error().unwrap();
    assert_eq!(db.code().code(), "54000", "{}", db.message());
    assert!(db.message().contains(&max.to_string()), "{}", db.message());
    assert_eq!((server.hash(), server.engine.log_size()), before);
    assert_eq!(copy(max).await.unwrap(), max as u64);
    assert_eq!(server.engine.log_size(), before.1 + 1, "one event");
    assert_ne!(server.hash(), before.0);
}

/// `--body-bytes-max`: a body of exactly that many bytes is read; one more
/// is refused with 413 before it is parsed.
#[test]
fn body_limit_on_rest() {
    let max = 1024;
    let server = Server::with(Some(max));
    server.accepts("POST", "/v1/collections", r#"{"name":"docs","dim":2}"#, 201);
    let body = |len: usize| {
        let text = r#"{"id":1,"vector":[1,2]}"#;
        format!("{text}{}", " ".repeat(len - text.len()))
    };
    server.refuses(
        "POST",
        "/v1/collections/docs/records",
        &body(max + 1),
        413,
        "payload_too_large",
        "1024",
    );
    server.accepts("POST", "/v1/collections/docs/records", &body(max), 201);
}

/// Postgres session settings: a name of SESSION_SETTING_NAME_BYTES_MAX
/// bytes and a value of SESSION_SETTING_VALUE_BYTES_MAX bytes are stored;
/// one byte more of either is refused with 54000 and the session keeps
/// what it had. (The count limit is in pg.rs.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_setting_sizes_on_postgres() {
    let server = Server::with(None);
    let client = server.pg().await;
    let name_max = limits::SESSION_SETTING_NAME_BYTES_MAX as usize;
    let value_max = limits::SESSION_SETTING_VALUE_BYTES_MAX as usize;
    let name = format!("a.{}", "n".repeat(name_max - 2));
    let value = "v".repeat(value_max);
    client
        .batch_execute(&format!("SET {name} = '{value}'"))
        .await
        .unwrap();
    let rows = client.simple_query(&format!("SHOW {name}")).await.unwrap();
    let shown = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    });
    assert_eq!(shown.as_deref(), Some(value.as_str()));
    for sql in [
        format!("SET {name}n = 1"),
        format!("SET {name} = '{value}v'"),
    ] {
        let e = client.simple_query(&sql).await.unwrap_err();
        let db = e.as_db_error().unwrap();
        assert_eq!(db.code().code(), "54000", "{}", db.message());
    }
    let rows = client.simple_query(&format!("SHOW {name}")).await.unwrap();
    let shown = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    });
    assert_eq!(shown.as_deref(), Some(value.as_str()));
}

/// `GET /v1/proof/log` pages hold at most LOG_PAGE_EVENTS_MAX events: a
/// `limit` of exactly that is honoured, one more is cut to it.
#[test]
fn log_page_event_limit_on_rest() {
    let server = Server::with(None);
    let max = limits::LOG_PAGE_EVENTS_MAX as u64;
    let name = CollectionName::new("docs").unwrap();
    server
        .engine
        .submit(Event::CreateCollection {
            name: name.clone(),
            config: CollectionConfig {
                dim: 1,
                metric: Metric::L2,
                index: IndexParams::default(),
            },
        })
        .unwrap();
    for id in 0..max + 1 {
        let mut batch = Batch::new(1);
        batch.push(RecordId(id), &[1], 0, &[]);
        server
            .engine
            .submit(Event::InsertBatch {
                collection: name.clone(),
                batch,
            })
            .unwrap();
    }
    assert_eq!(server.engine.log_size(), max + 2);
    for limit in [max, max + 1] {
        let (status, page) = server.call("GET", &format!("/v1/proof/log?from=0&limit={limit}"), "");
        assert_eq!(status, 200, "{page}");
        assert_eq!(
            page["events"].as_array().unwrap().len() as u64,
            max,
            "limit={limit}"
        );
    }
}

fn sim_engine() -> Engine {
    let options = EngineOptions {
        index_threads: 1,
        ..EngineOptions::default()
    };
    Engine::open_with(
        Arc::new(valori_engine::storage::sim::SimStorage::new()),
        Path::new("/db"),
        options,
    )
    .unwrap()
}

/// COLLECTIONS_MAX collections can be created (and dropped in one event);
/// one more is refused and changes nothing. Engine API on simulated
/// storage: 4096 REST requests would each wait for an fsync.
#[test]
fn collection_count_limit_in_the_engine() {
    let engine = sim_engine();
    let max = limits::COLLECTIONS_MAX;
    let config = CollectionConfig {
        dim: 1,
        metric: Metric::L2,
        index: IndexParams::default(),
    };
    let names: Vec<CollectionName> = (0..max)
        .map(|i| CollectionName::new(&format!("c{i}")).unwrap())
        .collect();
    for name in &names {
        engine
            .submit(Event::CreateCollection {
                name: name.clone(),
                config,
            })
            .unwrap();
    }
    let before = engine.proof().unwrap().hashes.state;
    let e = engine
        .submit(Event::CreateCollection {
            name: CollectionName::new("one_more").unwrap(),
            config,
        })
        .unwrap_err();
    assert!(e.to_string().contains(&max.to_string()), "{e}");
    assert_eq!(engine.proof().unwrap().hashes.state, before);
    engine.submit(Event::DropCollections { names }).unwrap();
    assert_ne!(engine.proof().unwrap().hashes.state, before);
}

/// An event of exactly EVENT_BYTES_MAX encoded bytes is written; one byte
/// more is refused with `EventTooLarge` and nothing is written. Only the
/// engine API reaches it: REST bodies stop at `--body-bytes-max` (64 MiB)
/// and SQL at SQL_BYTES_MAX first, COPY at its own data bound.
#[test]
fn event_size_limit_in_the_engine() {
    let engine = sim_engine();
    let max = limits::EVENT_BYTES_MAX as usize;
    let dim = limits::DIM_MAX;
    let name = CollectionName::new("big").unwrap();
    let config = CollectionConfig {
        dim,
        metric: Metric::L2,
        index: IndexParams::default(),
    };
    engine
        .submit(Event::CreateCollection {
            name: name.clone(),
            config,
        })
        .unwrap();
    let vector = vec![1i32; dim as usize];
    let meta_max = limits::METADATA_BYTES_MAX as usize;
    // Records of a full vector and full metadata, then one whose metadata
    // makes the event exactly `len` bytes.
    let event_of = |len: usize| {
        let build = |last_meta: usize, n: usize| {
            let mut batch = Batch::new(dim);
            for i in 0..n {
                batch.push(RecordId(i as u64), &vector, 0, &vec![7; meta_max]);
            }
            batch.push(RecordId(n as u64), &vector, 0, &vec![7; last_meta]);
            Event::InsertBatch {
                collection: name.clone(),
                batch,
            }
        };
        let one = build(0, 0).encode().len();
        let full = build(0, 1).encode().len() - one;
        let n = (len - one) / full;
        let rest = len - one - n * full;
        assert!(rest <= meta_max, "{rest}");
        let event = build(rest, n);
        assert_eq!(event.encode().len(), len);
        event
    };
    let before = engine.proof().unwrap().hashes.state;
    match engine.submit(event_of(max + 1)) {
        Err(EngineError::EventTooLarge { len, max: m }) => {
            assert_eq!((len, m), (max as u64 + 1, max as u64))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(engine.proof().unwrap().hashes.state, before);
    assert_eq!(engine.log_size(), 1);
    engine.submit(event_of(max)).unwrap();
    assert_eq!(engine.log_size(), 2);
}
