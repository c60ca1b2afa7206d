//! Statements shaped to exhaust a thread's stack, sent through every
//! front end of one server (REST `/v1/sql`, `/v1/query` and the search
//! `filter` field; the Postgres simple and extended protocols): each is
//! refused with a clear 413 or SQLSTATE 54000, the deepest shapes the
//! limits admit are answered, the server stays up and the state hash does
//! not change. The server runs on a runtime with Tokio's default 2 MiB
//! worker stacks, as `valori serve` does.
#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use tokio_postgres::NoTls;
use valori_core::limits::{
    EXPRESSION_NESTING_MAX, EXPRESSION_TERM_TOKENS_MAX, EXPRESSION_TOKENS_MAX,
};
use valori_wire::config::ServeArgs;

#[path = "common/server.rs"]
mod server;
use server::Server;

const TOKENS: usize = EXPRESSION_TOKENS_MAX as usize;
const NESTING: usize = EXPRESSION_NESTING_MAX as usize;
const TERM_TOKENS: usize = EXPRESSION_TERM_TOKENS_MAX as usize;

impl Server {
    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let body = body.to_string();
        let answer = valori_wire::client::request(
            &self.rest.to_string(),
            "POST",
            path,
            None,
            Some(body.as_bytes()),
        )
        .unwrap();
        (answer.status, serde_json::from_slice(&answer.body).unwrap())
    }

    fn state_hash(&self) -> String {
        let answer = valori_wire::client::request(
            &self.rest.to_string(),
            "GET",
            "/v1/proof/state",
            None,
            None,
        )
        .unwrap();
        assert_eq!(answer.status, 200);
        let proof: Value = serde_json::from_slice(&answer.body).unwrap();
        proof["state_hash"].as_str().unwrap().to_owned()
    }
}

fn assert_refused(server: &Server, path: &str, body: Value) {
    let (status, answer) = server.post(path, &body);
    // A statement past a shape limit exceeds a limit: 413, as Postgres
    // answers 54000.
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (413, Some("payload_too_large")),
        "{path}: {answer}"
    );
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("nested more than") || message.contains("chain longer than"),
        "{path}: {message}"
    );
}

/// The DSL filters of the issue: 20,000 nested parentheses, 50,000 NOTs
/// and 20,000 ORs.
fn deep_filters() -> [String; 3] {
    [
        format!("{}id = 1{}", "(".repeat(20_000), ")".repeat(20_000)),
        format!("{}id = 1", "NOT ".repeat(50_000)),
        vec!["id = 1"; 20_000].join(" OR "),
    ]
}

/// Proves every front end refuses the shapes that used to abort the
/// server, answers the deepest admitted ones, and loses nothing.
#[test]
fn deep_statements_through_every_front_end() {
    let server = Server::start(ServeArgs::default());
    let (status, answer) = server.post("/v1/collections", &json!({"name": "docs", "dim": 2}));
    assert_eq!(status, 201, "{answer}");
    let (status, answer) = server.post(
        "/v1/collections/docs/records/batch",
        &json!({"vectors": [[1, 0], [0, 1], [1, 1]], "tags": [1, 2, 1]}),
    );
    assert_eq!(status, 201, "{answer}");
    let before = server.state_hash();

    // REST: the DSL, the search filter and SQL.
    for filter in deep_filters() {
        assert_refused(
            &server,
            "/v1/query",
            json!({"query": format!("FROM docs NEAREST [1, 0] K 2 WHERE {filter}")}),
        );
        assert_refused(
            &server,
            "/v1/collections/docs/search",
            json!({"vector": [1, 0], "k": 2, "filter": filter}),
        );
    }
    let or_10k = format!("SELECT 1 WHERE {}", vec!["1=1"; 10_000].join(" OR "));
    assert_refused(&server, "/v1/sql", json!({ "query": or_10k }));

    // The deepest admitted: an OR chain at the token limit over REST SQL,
    // and a DSL filter at the nesting limit.
    // `SELECT 1 AS one WHERE` is 5 tokens, each `1=1` 3, each `OR` 1.
    let terms = (TOKENS - 8) / 4 + 1;
    let at_limit = format!("SELECT 1 AS one WHERE {}", vec!["1=1"; terms].join(" OR "));
    let (status, answer) = server.post("/v1/sql", &json!({ "query": at_limit }));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["rows"], json!([[1]]), "{answer}");
    let nested = format!(
        "{}tag = 2{}",
        "(".repeat(NESTING - 1),
        ")".repeat(NESTING - 1)
    );
    let (status, answer) = server.post(
        "/v1/collections/docs/search",
        &json!({"vector": [0, 1], "k": 3, "filter": nested}),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["hits"].as_array().unwrap().len(), 1, "{answer}");

    // Postgres, simple and extended protocol.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let config = format!(
            "host=127.0.0.1 port={} user=tester dbname=valori",
            server.pg.port()
        );
        let (client, connection) = tokio_postgres::connect(&config, NoTls).await.unwrap();
        tokio::spawn(connection);
        let casts_past = format!("SELECT 7{}", "::bigint".repeat(20_000));
        let nots_past = format!("SELECT {}true", "NOT ".repeat(50_000));
        for sql in [&or_10k, &casts_past, &nots_past] {
            let e = client.simple_query(sql).await.unwrap_err();
            assert_eq!(e.code().map(|c| c.code()), Some("54000"), "{e}");
            let e = client.query(sql.as_str(), &[]).await.unwrap_err();
            assert_eq!(e.code().map(|c| c.code()), Some("54000"), "{e}");
        }
        // A deep statement the limits admit, prepared (planned at Parse)
        // and run: OR terms of 41 nested casts each, as many as the chain
        // limit allows (`SELECT` and `WHERE` end a term; `7`, each
        // `::bigint` and `= 7` count, 1, 3 and 2 tokens).
        let casts = |n: usize| format!("7{} = 7", "::bigint".repeat(n));
        let n = (TERM_TOKENS - 3) / 3;
        let deep = format!(
            "SELECT 7 AS seven WHERE {}",
            vec![casts(n); (TOKENS - 6) / (3 * n + 4)].join(" OR ")
        );
        let rows = client.query(deep.as_str(), &[]).await.unwrap();
        assert_eq!(rows[0].get::<_, i64>(0), 7);
        let e = client
            .query(format!("SELECT {}", casts(n + 1)).as_str(), &[])
            .await
            .unwrap_err();
        assert_eq!(e.code().map(|c| c.code()), Some("54000"), "{e}");
        // The connection is still usable.
        let rows = client
            .query("SELECT count(*) FROM docs", &[])
            .await
            .unwrap();
        assert_eq!(rows[0].get::<_, i64>(0), 3);
    });
    assert_eq!(server.state_hash(), before);
}

/// Proves `--statement-timeout` and `--query-memory-bytes` bound every
/// front end: a statement that would run for hours is cancelled (408 over
/// REST SQL and the DSL's planner path, 57014 over Postgres), one that
/// needs more memory than the pool fails (413, 53200), and the server
/// goes on answering with its state unchanged.
#[test]
fn statement_timeout_and_memory_pool_on_every_front_end() {
    let server = Server::start(ServeArgs {
        statement_timeout: Some(1),
        query_memory_bytes: Some(16 << 20),
        ..ServeArgs::default()
    });
    let (status, answer) = server.post("/v1/collections", &json!({"name": "docs", "dim": 2}));
    assert_eq!(status, 201, "{answer}");
    let before = server.state_hash();
    let forever = "SELECT count(*) FROM generate_series(1, 1000000000000)";
    let hungry = "SELECT array_agg(generate_series) FROM generate_series(1, 50000000)";
    let (status, answer) = server.post("/v1/sql", &json!({ "query": forever }));
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (408, Some("timeout")),
        "{answer}"
    );
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("statement timeout"),
        "{answer}"
    );
    let (status, answer) = server.post("/v1/sql", &json!({ "query": hungry }));
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (413, Some("payload_too_large")),
        "{answer}"
    );
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("memory limit"),
        "{answer}"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let config = format!(
            "host=127.0.0.1 port={} user=tester dbname=valori",
            server.pg.port()
        );
        let (client, connection) = tokio_postgres::connect(&config, NoTls).await.unwrap();
        tokio::spawn(connection);
        let e = client.simple_query(forever).await.unwrap_err();
        assert_eq!(e.code().map(|c| c.code()), Some("57014"), "{e}");
        let e = client.query(hungry, &[]).await.unwrap_err();
        assert_eq!(e.code().map(|c| c.code()), Some("53200"), "{e}");
        let rows = client
            .query("SELECT count(*) FROM docs", &[])
            .await
            .unwrap();
        assert_eq!(rows[0].get::<_, i64>(0), 0);
    });
    assert_eq!(server.state_hash(), before);
}
