//! One script through every front end: the Postgres protocol (simple and
//! extended), REST `/v1/sql` and the statement layer in process, each on
//! its own fresh server or engine. Every statement gives the same rows or
//! the same error message on each, and the state hash after the script is
//! the same.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use serde_json::{Value, json};
use tokio_postgres::{NoTls, SimpleQueryMessage};
use valori_engine::Engine;
use valori_query::QueryEngine;
use valori_query::datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use valori_query::session::Session;
use valori_query::statement::{Access, Outcome};
use valori_wire::config::ServeArgs;

#[path = "common/server.rs"]
mod server;
use server::Server;

/// Statements of every kind, some of them wrong on purpose.
const SCRIPT: &[&str] = &[
    "CREATE TABLE items (id BIGINT PRIMARY KEY, vec VECTOR(3), tag BIGINT, metadata JSONB)",
    "INSERT INTO items (id, vec, tag, metadata) VALUES (1, '[1,0,0]', 7, '{\"a\": 1}'), \
     (2, '[0,1,0]', 7, '{\"a\": 2}'), (3, '[0,0,1]', 8, '{}'), (4, '[1,1,0]', 7, '{}')",
    "INSERT INTO items (id, vec) VALUES (1, '[1,1,1]')",
    "SELECT id, tag FROM items ORDER BY id",
    "SELECT id FROM items ORDER BY vec <-> '[0.9, 0.1, 0]' LIMIT 2",
    "SELECT id, round(vec <-> '[1,0,0]', 4) AS d FROM items WHERE tag = 7 ORDER BY d LIMIT 5",
    "SELECT id FROM items WHERE tag = 7 AND id > 1 ORDER BY l2(vec, '[1,0,0]'), id LIMIT 2",
    "UPDATE items SET tag = 9 WHERE id = 3",
    "DELETE FROM items WHERE id = 2",
    "SELECT count(*) AS n, sum(tag) AS t FROM items",
    "SELECT id FROM missing",
    "SELECT id FROM items ORDER BY vec <-> '[1,2]' LIMIT 1",
    "INSERT INTO items (id, vec) VALUES (9, '[1,2]')",
    "SET valori.ef_search = 0",
    "SHOW valori.exact",
    "DROP TABLE nothing",
    "CREATE TABLE other (id BIGINT PRIMARY KEY, vec VECTOR(2))",
    "INSERT INTO other (vec) VALUES ('[0.5, 0.25]'), ('[1, 2]')",
    "SELECT vec FROM other ORDER BY id",
    "DROP TABLE other",
];

/// What one statement answered, comparable across front ends.
#[derive(Debug, PartialEq)]
enum Answer {
    Rows(Vec<Vec<String>>),
    Done,
    Error(String),
}

/// Numbers compared by value (`1` and `1.0` are the same), the rest as
/// text.
fn norm(text: &str) -> String {
    if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        let parts: Vec<String> = inner.split(',').map(|p| norm(p.trim())).collect();
        return format!("[{}]", parts.join(","));
    }
    match text.parse::<f64>() {
        Ok(x) => format!("{x:.6}"),
        Err(_) => text.to_owned(),
    }
}

async fn over_postgres(server: &Server) -> Vec<Answer> {
    let (client, connection) = tokio_postgres::connect(
        &format!(
            "host={} port={} user=u dbname=valori",
            server.pg.ip(),
            server.pg.port()
        ),
        NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let mut answers = Vec::new();
    for sql in SCRIPT {
        answers.push(match client.simple_query(sql).await {
            Err(e) => Answer::Error(e.as_db_error().unwrap().message().to_owned()),
            Ok(messages) => {
                let mut rows = Vec::new();
                let mut described = false;
                for m in messages {
                    match m {
                        SimpleQueryMessage::Row(row) => rows.push(
                            (0..row.len())
                                .map(|i| norm(row.get(i).unwrap_or("NULL")))
                                .collect(),
                        ),
                        SimpleQueryMessage::RowDescription(_) => described = true,
                        _ => {}
                    }
                }
                if described || !rows.is_empty() {
                    Answer::Rows(rows)
                } else {
                    Answer::Done
                }
            }
        });
    }
    answers
}

fn json_text(v: &Value) -> String {
    match v {
        Value::Null => "NULL".to_owned(),
        Value::String(s) => norm(s),
        Value::Number(n) => norm(&n.to_string()),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(|i| i.to_string()).collect();
            norm(&format!("[{}]", parts.join(",")))
        }
        other => other.to_string(),
    }
}

fn over_rest(server: &Server) -> Vec<Answer> {
    SCRIPT
        .iter()
        .map(|sql| {
            let body = json!({ "query": sql }).to_string();
            let answer = valori_wire::client::request(
                &server.rest.to_string(),
                "POST",
                "/v1/sql",
                None,
                Some(body.as_bytes()),
            )
            .unwrap();
            let value: Value = serde_json::from_slice(&answer.body).unwrap();
            if answer.status != 200 {
                return Answer::Error(value["error"]["message"].as_str().unwrap().to_owned());
            }
            let columns: Vec<&str> = value["columns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["name"].as_str().unwrap())
                .collect();
            if columns == ["command", "rows"] {
                return Answer::Done;
            }
            Answer::Rows(
                value["rows"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|row| row.as_array().unwrap().iter().map(json_text).collect())
                    .collect(),
            )
        })
        .collect()
}

async fn in_process(query: &QueryEngine) -> Vec<Answer> {
    let mut session = Session::default();
    let mut answers = Vec::new();
    for sql in SCRIPT {
        let outcome = query
            .run_sql(sql, Vec::new(), &mut session, Access::ReadWrite)
            .await;
        answers.push(match outcome {
            Err(e) => Answer::Error(e.to_string()),
            Ok(Outcome::Rows(streamed)) => {
                let output = streamed.collect().await.unwrap();
                let mut rows = Vec::new();
                for batch in &output.batches {
                    let formatters: Vec<ArrayFormatter> = batch
                        .columns()
                        .iter()
                        .map(|c| ArrayFormatter::try_new(c.as_ref(), &FormatOptions::default()))
                        .collect::<Result<_, _>>()
                        .unwrap();
                    for r in 0..batch.num_rows() {
                        rows.push(
                            formatters
                                .iter()
                                .map(|f| norm(&f.value(r).to_string()))
                                .collect(),
                        );
                    }
                }
                Answer::Rows(rows)
            }
            Ok(_) => Answer::Done,
        });
    }
    answers
}

fn state_hash(server: &Server) -> String {
    let answer = valori_wire::client::request(
        &server.rest.to_string(),
        "GET",
        "/v1/proof/state",
        None,
        None,
    )
    .unwrap();
    let proof: Value = serde_json::from_slice(&answer.body).unwrap();
    proof["state_hash"].as_str().unwrap().to_owned()
}

/// Proves the script gives the same answers (rows, or the same error
/// message) and the same final state hash over the Postgres protocol,
/// REST `/v1/sql` and the statement layer in process; and that the
/// answers are the ones the script's data implies (checked by hand below
/// for the queries whose rows follow from the inserted vectors).
#[test]
fn one_script_through_every_front_end() {
    let pg_server = Server::start(ServeArgs::default());
    let rest_server = Server::start(ServeArgs::default());
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path()).unwrap());
    let query = QueryEngine::new(Arc::clone(&engine));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pg = rt.block_on(over_postgres(&pg_server));
    let rest = over_rest(&rest_server);
    let local = rt.block_on(in_process(&query));
    for (i, sql) in SCRIPT.iter().enumerate() {
        assert_eq!(pg[i], rest[i], "Postgres vs REST: {sql}");
        assert_eq!(pg[i], local[i], "Postgres vs in-process: {sql}");
    }
    let rows = |i: usize| match &pg[i] {
        Answer::Rows(r) => r.clone(),
        other => panic!("{}: {other:?}", SCRIPT[i]),
    };
    let n = |x: f64| format!("{x:.6}");
    // Inserted rows and their tags, in id order.
    assert_eq!(
        rows(3),
        [[1, 7], [2, 7], [3, 8], [4, 7]]
            .iter()
            .map(|r| vec![n(f64::from(r[0])), n(f64::from(r[1]))])
            .collect::<Vec<_>>()
    );
    // Nearest to [0.9, 0.1, 0]: [1,0,0] (0.141), then [1,1,0] (0.906).
    assert_eq!(rows(4), vec![vec![n(1.0)], vec![n(4.0)]]);
    // Tag 7 by distance to [1,0,0]: 0, 1, sqrt(2).
    assert_eq!(
        rows(5),
        vec![
            vec![n(1.0), n(0.0)],
            vec![n(4.0), n(1.0)],
            vec![
                n(2.0),
                n((std::f64::consts::SQRT_2 * 10_000.0).round() / 10_000.0)
            ],
        ]
    );
    assert_eq!(rows(6), vec![vec![n(4.0)], vec![n(2.0)]]);
    // After the update and delete: ids 1, 3, 4 with tags 7, 9, 7.
    assert_eq!(rows(9), vec![vec![n(3.0), n(23.0)]]);
    for i in [2, 10, 11, 12, 13, 15] {
        assert!(
            matches!(pg[i], Answer::Error(_)),
            "{}: {:?}",
            SCRIPT[i],
            pg[i]
        );
    }
    assert_eq!(rows(14), vec![vec!["off".to_owned()]]);
    let engine_hash = engine.proof().unwrap().hashes.state.to_string();
    let pg_hash = state_hash(&pg_server);
    assert_eq!(pg_hash, state_hash(&rest_server));
    assert_eq!(pg_hash, engine_hash);
}
