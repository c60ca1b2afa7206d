//! The REST API against a server started in-process on free loopback
//! ports.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::PathBuf;

use serde_json::{Value, json};
use valori_wire::auth::User;
use valori_wire::config::ServeArgs;

#[path = "common/server.rs"]
mod server;
use server::Server;

impl Server {
    fn with(users: Vec<User>, body_bytes_max: Option<usize>) -> Server {
        Server::start(ServeArgs {
            users,
            body_bytes_max,
            ..ServeArgs::default()
        })
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Value) {
        let (status, text) = http(self.rest, method, path, key, body.map(str::as_bytes));
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: body is not JSON ({e}): {text:?}"));
        (status, value)
    }

    fn state_hash(&self) -> String {
        let (status, proof) = self.call("GET", "/v1/proof/state", Some(WRITE_KEY), None);
        assert_eq!(status, 200, "{proof}");
        proof["state_hash"].as_str().unwrap().to_owned()
    }
}

const WRITE_KEY: &str = "w-key-1";
const READ_KEY: &str = "r-key-2";

/// One HTTP/1.1 request on a fresh connection; the status and body.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&[u8]>,
) -> (u16, String) {
    let (status, body) = http_bytes(addr, method, path, key, body);
    (status, String::from_utf8(body).unwrap())
}

fn http_bytes(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&[u8]>,
) -> (u16, Vec<u8>) {
    let answer = valori_wire::client::request(&addr.to_string(), method, path, key, body).unwrap();
    (answer.status, answer.body)
}

fn users() -> Vec<User> {
    vec![
        format!("alice:{WRITE_KEY}:write").parse().unwrap(),
        format!("bob:{READ_KEY}:read").parse().unwrap(),
    ]
}

fn error_code(value: &Value) -> &str {
    value["error"]["code"].as_str().unwrap_or("")
}

/// Method, path, key, body, expected status and error code.
type Case<'a> = (
    &'a str,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    u16,
    &'a str,
);

/// Every kind of bad request gets a 4xx with a JSON error, and none of
/// them changes the state hash.
#[test]
fn bad_requests_get_json_errors_and_change_nothing() {
    let server = Server::with(users(), Some(256 * 1024));
    let k = Some(WRITE_KEY);
    let (status, _) = server.call(
        "POST",
        "/v1/collections",
        k,
        Some(r#"{"name":"docs","dim":3}"#),
    );
    assert_eq!(status, 201);
    let (status, _) = server.call(
        "POST",
        "/v1/collections/docs/records",
        k,
        Some(r#"{"id":5,"vector":[1,2,3],"tag":1}"#),
    );
    assert_eq!(status, 201);
    let before = server.state_hash();

    let big_metadata = format!(
        r#"{{"id":9,"vector":[1,2,3],"metadata":"{}"}}"#,
        "x".repeat(70 * 1024)
    );
    let oversized = format!(r#"{{"vector":[{}]}}"#, vec!["1"; 200_000].join(","));
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/v1/collections",
            k,
            Some(r#"{"name":"x","dim":3"#),
            400,
            "bad_request",
        ),
        ("POST", "/v1/collections", k, Some("[]"), 400, "bad_request"),
        ("POST", "/v1/collections", k, None, 400, "bad_request"),
        (
            "POST",
            "/v1/collections",
            k,
            Some(r#"{"name":"x","dim":"3"}"#),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/collections",
            k,
            Some(r#"{"name":"x","dim":3,"extra":1}"#),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/collections",
            k,
            Some(r#"{"name":"X","dim":3}"#),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/collections",
            k,
            Some(r#"{"name":"x","dim":0}"#),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/collections",
            k,
            Some(r#"{"name":"x","dim":3,"metric":"manhattan"}"#),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/collections",
            k,
            Some(r#"{"name":"docs","dim":3}"#),
            409,
            "conflict",
        ),
        (
            "POST",
            "/v1/collections/docs/records",
            k,
            Some(r#"{"vector":[1,2]}"#),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/collections/docs/records",
            k,
            Some(r#"{"vector":[1,2,1e9]}"#),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/collections/docs/records",
            k,
            Some(r#"{"vector":[1,2,1e999]}"#),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/collections/docs/records",
            k,
            Some(r#"{"id":-1,"vector":[1,2,3]}"#),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/collections/docs/records",
            k,
            Some(r#"{"id":5,"vector":[1,2,3]}"#),
            409,
            "conflict",
        ),
        (
            "POST",
            "/v1/collections/nope/records",
            k,
            Some(r#"{"vector":[1,2,3]}"#),
            404,
            "not_found",
        ),
        (
            "POST",
            "/v1/collections/docs/records",
            k,
            Some(&big_metadata),
            413,
            "payload_too_large",
        ),
        (
            "POST",
            "/v1/collections/docs/records",
            k,
            Some(&oversized),
            413,
            "payload_too_large",
        ),
        (
            "POST",
            "/v1/collections/docs/records/batch",
            k,
            Some(r#"{"vectors":[]}"#),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/collections/docs/records/batch",
            k,
            Some(r#"{"vectors":[[1,2,3],[1,2]]}"#),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/collections/docs/records/batch",
            k,
            Some(r#"{"ids":[7,7],"vectors":[[1,2,3],[1,2,4]]}"#),
            409,
            "conflict",
        ),
        (
            "POST",
            "/v1/collections/docs/records/batch",
            k,
            Some(r#"{"ids":[1],"vectors":[[1,2,3],[1,2,4]]}"#),
            400,
            "bad_request",
        ),
        (
            "PUT",
            "/v1/collections/docs/records/99/tag",
            k,
            Some(r#"{"tag":1}"#),
            404,
            "not_found",
        ),
        (
            "PUT",
            "/v1/collections/docs/records/5/tag",
            k,
            Some(r#"{"tag":"a"}"#),
            400,
            "bad_request",
        ),
        (
            "DELETE",
            "/v1/collections/docs/records/99",
            k,
            None,
            404,
            "not_found",
        ),
        (
            "DELETE",
            "/v1/collections/docs/records/abc",
            k,
            None,
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/collections/docs/search",
            k,
            Some(r#"{"vector":[1,2]}"#),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/collections/docs/search",
            k,
            Some(r#"{"vector":[1,2,3],"k":1000000}"#),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/collections/docs/search",
            k,
            Some(r#"{"vector":[1,2,3],"ef":0}"#),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/sql",
            k,
            Some(r#"{"query":"SELEC 1"}"#),
            400,
            "bad_request",
        ),
        // SQL writes run as over the Postgres protocol: refused for a key
        // with the read role, and for a table that does not exist.
        (
            "POST",
            "/v1/sql",
            Some(READ_KEY),
            Some(r#"{"query":"DROP TABLE docs"}"#),
            403,
            "forbidden",
        ),
        (
            "POST",
            "/v1/sql",
            k,
            Some(r#"{"query":"DROP TABLE nope"}"#),
            404,
            "not_found",
        ),
        (
            "POST",
            "/v1/sql",
            k,
            Some(r#"{"query":"SELECT id FROM docs WHERE id = $1","params":["x"]}"#),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/sql",
            k,
            Some(r#"{"query":"SELECT * FROM nope"}"#),
            400,
            "bad_request",
        ),
        ("DELETE", "/v1/graph/nodes/4", k, None, 404, "not_found"),
        (
            "POST",
            "/v1/graph/edges",
            k,
            Some(r#"{"from":1,"to":2}"#),
            404,
            "not_found",
        ),
        ("GET", "/v1/proof/event/99", k, None, 404, "not_found"),
        (
            "GET",
            "/v1/proof/consistency?from=5&to=2",
            k,
            None,
            400,
            "bad_request",
        ),
        (
            "GET",
            "/v1/proof/consistency?from=x",
            k,
            None,
            400,
            "bad_request",
        ),
        ("GET", "/v1/snapshots/12345", k, None, 404, "not_found"),
        ("GET", "/v1/nope", k, None, 404, "not_found"),
        ("GET", "/nope", k, None, 404, "not_found"),
        (
            "PATCH",
            "/v1/collections",
            k,
            None,
            405,
            "method_not_allowed",
        ),
        ("GET", "/v1/collections", None, None, 401, "unauthorized"),
        (
            "GET",
            "/v1/collections",
            Some("wrong"),
            None,
            401,
            "unauthorized",
        ),
        (
            "POST",
            "/v1/collections",
            Some(READ_KEY),
            Some(r#"{"name":"y","dim":3}"#),
            403,
            "forbidden",
        ),
        (
            "DELETE",
            "/v1/collections/docs",
            Some(READ_KEY),
            None,
            403,
            "forbidden",
        ),
        (
            "POST",
            "/v1/snapshots",
            Some(READ_KEY),
            None,
            403,
            "forbidden",
        ),
    ];
    for (method, path, key, body, status, code) in cases {
        let (got, value) = server.call(method, path, key, body);
        let shown = body.map_or(String::new(), |b| b.chars().take(60).collect());
        assert_eq!(got, status, "{method} {path} {shown}: {value}");
        assert_eq!(error_code(&value), code, "{method} {path} {shown}: {value}");
        let message = value["error"]["message"].as_str().unwrap();
        assert!(!message.is_empty(), "{method} {path}: empty message");
        assert_eq!(
            server.state_hash(),
            before,
            "{method} {path} {shown} changed the state"
        );
    }

    // The read role may read and search; health needs no key.
    let (status, _) = server.call("GET", "/health", None, None);
    assert_eq!(status, 200);
    let (status, hits) = server.call(
        "POST",
        "/v1/collections/docs/search",
        Some(READ_KEY),
        Some(r#"{"vector":[1,2,3],"k":3}"#),
    );
    assert_eq!(status, 200, "{hits}");
    assert_eq!(hits["hits"][0]["id"], 5);
    assert_eq!(server.state_hash(), before);
}

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/digits-l2")
}

/// Insert the digits data set in batches over REST, then check exact and
/// graph searches against distances computed here in f64 from the files,
/// ordered by (distance, id).
#[test]
fn digits_over_rest_match_an_independent_brute_force() {
    let base = valori_columnar::texmex::read_fvecs(&data_dir().join("base.fvecs")).unwrap();
    let queries = valori_columnar::texmex::read_fvecs(&data_dir().join("query.fvecs")).unwrap();
    let server = Server::with(Vec::new(), None);
    let (status, _) = server.call(
        "POST",
        "/v1/collections",
        None,
        Some(r#"{"name":"digits","dim":64}"#),
    );
    assert_eq!(status, 201);
    let rows: Vec<&[f32]> = (0..base.rows).map(|i| base.row(i)).collect();
    for (chunk_index, chunk) in rows.chunks(500).enumerate() {
        let first = chunk_index * 500;
        let body = json!({
            "vectors": chunk,
            "tags": (0..chunk.len()).map(|i| ((first + i) % 10) as u64).collect::<Vec<_>>(),
        });
        let (status, answer) = server.call(
            "POST",
            "/v1/collections/digits/records/batch",
            None,
            Some(&body.to_string()),
        );
        assert_eq!(status, 201, "{answer}");
        // Ids were chosen by the server: consecutive from 0.
        assert_eq!(answer["ids"][0], first as u64);
    }

    let mut graph_hits = 0;
    let mut total = 0;
    for qi in 0..50 {
        let q = queries.row(qi);
        let mut truth: Vec<(f64, u64)> = rows
            .iter()
            .enumerate()
            .map(|(id, r)| {
                let d: f64 = r
                    .iter()
                    .zip(q)
                    .map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2))
                    .sum();
                (d.sqrt(), id as u64)
            })
            .collect();
        truth.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let body = json!({ "vector": q, "k": 10, "exact": true }).to_string();
        let (status, exact) =
            server.call("POST", "/v1/collections/digits/search", None, Some(&body));
        assert_eq!(status, 200, "{exact}");
        let exact: Vec<(f64, u64)> = exact["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| (h["distance"].as_f64().unwrap(), h["id"].as_u64().unwrap()))
            .collect();
        assert_eq!(exact.len(), 10);
        for (got, want) in exact.iter().zip(&truth) {
            // Integer data: both sides take the square root of the same
            // exact sum, scaled differently; they agree to the last bits.
            assert_eq!(got.1, want.1, "query {qi}");
            assert!(
                (got.0 - want.0).abs() <= 1e-12 * want.0.max(1.0),
                "query {qi}"
            );
        }
        // Filtered by tag: every hit has the tag, in the same order as the
        // brute force over the matching rows.
        let tag = qi as u64 % 10;
        let body = json!({ "vector": q, "k": 5, "tag": tag }).to_string();
        let (_, filtered) = server.call("POST", "/v1/collections/digits/search", None, Some(&body));
        let want: Vec<u64> = truth
            .iter()
            .filter(|(_, id)| id % 10 == tag)
            .take(5)
            .map(|(_, id)| *id)
            .collect();
        let got: Vec<u64> = filtered["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["id"].as_u64().unwrap())
            .collect();
        assert_eq!(got, want, "query {qi} tag {tag}");
        // Through the graph (once the index has caught up).
        let body = json!({ "vector": q, "k": 10 }).to_string();
        let (_, graph) = server.call("POST", "/v1/collections/digits/search", None, Some(&body));
        let truth_ids: Vec<u64> = truth.iter().take(10).map(|t| t.1).collect();
        for hit in graph["hits"].as_array().unwrap() {
            total += 1;
            if truth_ids.contains(&hit["id"].as_u64().unwrap()) {
                graph_hits += 1;
            }
        }
    }
    assert_eq!(total, 500);
    assert!(graph_hits >= 475, "recall@10 {graph_hits}/500");

    // The same rows through SQL.
    let q = queries.row(0);
    let sql = format!(
        "SELECT id FROM digits ORDER BY l2(vec, [{}]) LIMIT 3",
        q.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    let (status, rows_json) = server.call(
        "POST",
        "/v1/sql",
        None,
        Some(&json!({ "query": sql }).to_string()),
    );
    assert_eq!(status, 200, "{rows_json}");
    let (_, exact) = server.call(
        "POST",
        "/v1/collections/digits/search",
        None,
        Some(&json!({ "vector": q, "k": 3, "exact": true }).to_string()),
    );
    let via_sql: Vec<u64> = rows_json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_u64().unwrap())
        .collect();
    let via_search: Vec<u64> = exact["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_u64().unwrap())
        .collect();
    assert_eq!(via_sql, via_search);
}

/// Records, tags, metadata, graph, proofs and snapshots: what a write
/// returns is what a read sees, and the proofs check out.
#[test]
fn records_graph_proofs_and_snapshots() {
    let server = Server::with(Vec::new(), None);
    let call = |m, p, b: Option<&str>| server.call(m, p, None, b);
    assert_eq!(
        call(
            "POST",
            "/v1/collections",
            Some(r#"{"name":"notes","dim":2,"metric":"cosine","m":8}"#)
        )
        .0,
        201
    );
    let (_, described) = call("GET", "/v1/collections/notes", None);
    assert_eq!(described["metric"], "cosine");
    assert_eq!(described["m"], 8);
    let (status, inserted) = call(
        "POST",
        "/v1/collections/notes/records",
        Some(r#"{"id":10,"vector":[0.5,-0.25],"metadata":{"z":1,"a":"x"}}"#),
    );
    assert_eq!(status, 201);
    assert_eq!(inserted["id"], 10);
    let (_, next) = call(
        "POST",
        "/v1/collections/notes/records",
        Some(r#"{"vector":[1,1]}"#),
    );
    assert_eq!(next["id"], 11, "the next free id follows the largest");
    assert_eq!(
        call(
            "PUT",
            "/v1/collections/notes/records/10/tag",
            Some(r#"{"tag":42}"#)
        )
        .0,
        200
    );
    assert_eq!(
        call(
            "PUT",
            "/v1/collections/notes/records/11/metadata",
            Some(r#"{"metadata":[1,2]}"#)
        )
        .0,
        200
    );
    let (_, record) = call("GET", "/v1/collections/notes/records/10", None);
    assert_eq!(
        record,
        json!({"id":10,"vector":[0.5,-0.25],"tag":42,"metadata":{"a":"x","z":1}})
    );
    let (_, record) = call("GET", "/v1/collections/notes/records/11", None);
    assert_eq!(record["metadata"], json!([1, 2]));
    assert_eq!(
        call("DELETE", "/v1/collections/notes/records/11", None).0,
        200
    );
    assert_eq!(call("GET", "/v1/collections/notes/records/11", None).0, 404);

    assert_eq!(
        call("POST", "/v1/graph/nodes", Some(r#"{"id":1,"label":7}"#)).0,
        201
    );
    assert_eq!(call("POST", "/v1/graph/nodes", Some(r#"{"id":2}"#)).0, 201);
    assert_eq!(
        call(
            "POST",
            "/v1/graph/edges",
            Some(r#"{"from":1,"to":2,"label":3}"#)
        )
        .0,
        201
    );
    let (_, edges) = call("GET", "/v1/graph/nodes/1/edges", None);
    assert_eq!(
        edges,
        json!({"node":1,"label":7,"out":[{"to":2,"label":3}],"in":[]})
    );
    let (_, edges) = call("GET", "/v1/graph/nodes/2/edges", None);
    assert_eq!(edges["in"], json!([{"from":1,"label":3}]));
    assert_eq!(call("DELETE", "/v1/graph/edges/1/2/3", None).0, 200);
    assert_eq!(call("DELETE", "/v1/graph/nodes/2", None).0, 200);

    // Inclusion proof of event 1: recompute the root from the leaf and the
    // path (RFC 6962 hashing, done here with blake3 directly).
    let (_, proof) = call("GET", "/v1/proof/state", None);
    let size = proof["log_size"].as_u64().unwrap();
    // create, 2 inserts, tag, metadata, delete, 2 nodes, edge, edge and
    // node deleted.
    assert_eq!(size, 11);
    let (_, inclusion) = call("GET", "/v1/proof/event/1", None);
    let event = unhex(inclusion["event"].as_str().unwrap());
    let leaf = blake3_leaf(&event);
    assert_eq!(hexs(&leaf), inclusion["leaf"].as_str().unwrap());
    let path: Vec<[u8; 32]> = inclusion["path"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| unhex(h.as_str().unwrap()).try_into().unwrap())
        .collect();
    let root = root_from_inclusion(1, size, leaf, &path);
    assert_eq!(hexs(&root), proof["log_root"].as_str().unwrap());
    let (status, consistency) = call("GET", "/v1/proof/consistency?from=3", None);
    assert_eq!(status, 200);
    assert_eq!(consistency["new_root"], proof["log_root"]);

    let (status, snapshot) = call("POST", "/v1/snapshots", None);
    assert_eq!(status, 201);
    assert_eq!(snapshot["state_hash"], proof["state_hash"]);
    let (status, bytes) = http_bytes(
        server.rest,
        "GET",
        &format!("/v1/snapshots/{}", snapshot["events"]),
        None,
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(bytes.len() as u64, snapshot["bytes"].as_u64().unwrap());

    let (_, metrics) = http(server.rest, "GET", "/metrics", None, None);
    assert!(
        metrics.contains("valori_events_committed_total 11\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("valori_commit_seconds_count 11\n"),
        "{metrics}"
    );
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn hexs(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn blake3_leaf(data: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(&[0x00]);
    h.update(data);
    *h.finalize().as_bytes()
}

fn blake3_node(l: &[u8; 32], r: &[u8; 32]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(&[0x01]);
    h.update(l);
    h.update(r);
    *h.finalize().as_bytes()
}

/// RFC 9162 §2.1.3.2: the root from a leaf's audit path.
fn root_from_inclusion(index: u64, size: u64, leaf: [u8; 32], path: &[[u8; 32]]) -> [u8; 32] {
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = leaf;
    for p in path {
        if f_n & 1 == 1 || f_n == s_n {
            r = blake3_node(p, &r);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            r = blake3_node(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    r
}

/// `valori verify --url`'s checks against a live server: a genuine event
/// and snapshot pass; an altered event fails, naming the claim.
#[test]
fn live_audit_checks_event_and_snapshot() {
    use valori_wire::audit::{AuditRequest, Claim, audit};
    let server = Server::with(Vec::new(), None);
    let call = |m, p, b: Option<&str>| server.call(m, p, None, b);
    call("POST", "/v1/collections", Some(r#"{"name":"a","dim":2}"#));
    for i in 0..5 {
        let body = format!(r#"{{"vector":[{i},1],"tag":{i}}}"#);
        assert_eq!(
            call("POST", "/v1/collections/a/records", Some(&body)).0,
            201
        );
    }
    let url = format!("http://{}", server.rest);
    let (_, proof) = call("GET", "/v1/proof/event/3", None);
    let event = unhex(proof["event"].as_str().unwrap());

    // No snapshot yet: the log is replayed alone, and the report says so.
    let request = AuditRequest {
        url: url.clone(),
        event: Some((3, event.clone())),
        ..AuditRequest::default()
    };
    let report = audit(&request).unwrap();
    assert!(report.is_ok(), "{:?}", report.checks);
    assert!(report.notes.iter().any(|n| n.contains("no snapshot")));
    assert!(
        report
            .checks
            .iter()
            .any(|c| c.claim == Claim::GivenEvent { seq: 3 } && c.ok)
    );

    assert_eq!(call("POST", "/v1/snapshots", None).0, 201);
    // More writes after the snapshot: checked by a consistency proof.
    assert_eq!(
        call(
            "POST",
            "/v1/collections/a/records",
            Some(r#"{"vector":[9,9]}"#)
        )
        .0,
        201
    );
    let report = audit(&request).unwrap();
    assert!(report.is_ok(), "{:?}", report.checks);
    assert_eq!(report.log_size, 7);
    assert!(
        report
            .checks
            .iter()
            .any(|c| c.claim == Claim::SnapshotStateHash { events: 6 } && c.ok),
        "{:?}",
        report.checks
    );

    let mut altered = event;
    let last = altered.len() - 1;
    altered[last] ^= 1;
    let report = audit(&AuditRequest {
        url,
        event: Some((3, altered)),
        ..AuditRequest::default()
    })
    .unwrap();
    assert_eq!(
        report.failed(),
        [&Claim::GivenEvent { seq: 3 }],
        "{:?}",
        report.checks
    );
}

/// The query DSL over REST (`/v1/query`) and as a search `filter`: only
/// matching rows, nearest first; a parse error names line and column.
#[test]
fn dsl_query_and_filtered_search() {
    let server = Server::with(Vec::new(), None);
    let call = |m, p, b: &str| server.call(m, p, None, Some(b));
    call("POST", "/v1/collections", r#"{"name":"docs","dim":2}"#);
    // Rows on a line: row i at (i, 0); even ids English, odd German.
    let vectors: Vec<Value> = (0..20).map(|i| json!([i, 0])).collect();
    let metadata: Vec<Value> = (0..20)
        .map(|i| json!({"lang": if i % 2 == 0 { "en" } else { "de" }, "n": i}))
        .collect();
    let tags: Vec<u64> = (0..20).map(|i| i % 3).collect();
    let body = json!({ "vectors": vectors, "metadata": metadata, "tags": tags });
    let (status, _) = call(
        "POST",
        "/v1/collections/docs/records/batch",
        &body.to_string(),
    );
    assert_eq!(status, 201);
    let before = server.state_hash();

    // Nearest to (7.2, 0) among English rows: 8, 6, 10, 4.
    let (status, rows) = call(
        "POST",
        "/v1/query",
        r#"{"query": "FROM docs NEAREST $q K 4 WHERE meta.lang = 'en'", "params": {"q": [7.2, 0]}}"#,
    );
    assert_eq!(status, 200, "{rows}");
    let names: Vec<&str> = rows["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    let id_col = names.iter().position(|n| *n == "id").unwrap();
    let ids: Vec<u64> = rows["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[id_col].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [8, 6, 10, 4]);

    // As a search filter, combined with a tag: English rows with tag 0
    // (ids 0, 6, 12, 18), nearest to (13, 0): 12, 18, 6, 0.
    let (status, hits) = call(
        "POST",
        "/v1/collections/docs/search",
        r#"{"vector": [13, 0], "k": 10, "tag": 0, "filter": "meta.lang = 'en'"}"#,
    );
    assert_eq!(status, 200, "{hits}");
    let ids: Vec<u64> = hits["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [12, 18, 6, 0]);
    assert_eq!(hits["hits"][0]["metadata"]["n"], 12);
    assert!((hits["hits"][1]["distance"].as_f64().unwrap() - 5.0).abs() < 1e-9);

    let (status, err) = call("POST", "/v1/query", r#"{"query": "FROM docs NEAREST K 4"}"#);
    assert_eq!(status, 400, "{err}");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("line 1, column "), "{message}");
    let (status, err) = call(
        "POST",
        "/v1/query",
        r#"{"query": "FROM docs NEAREST $q K 4"}"#,
    );
    assert_eq!(status, 400, "{err}");
    assert!(
        err["error"]["message"].as_str().unwrap().contains("$q"),
        "{err}"
    );
    let (status, _) = call(
        "POST",
        "/v1/collections/docs/search",
        r#"{"vector": [1, 0], "filter": "meta.lang = "}"#,
    );
    assert_eq!(status, 400);
    assert_eq!(server.state_hash(), before);
}

/// Proves that REST accepts exactly the metric spellings the docs promise
/// (`l2`, `inner_product`, `ip`, `cosine`, in any case) — the ones Python
/// and SQL accept — and refuses others (`euclidean`, `dot`) by naming the
/// accepted ones.
#[test]
fn metric_spellings_are_the_documented_ones() {
    let server = Server::with(Vec::new(), None);
    for (i, metric) in ["l2", "inner_product", "ip", "IP", "cosine"]
        .iter()
        .enumerate()
    {
        let body = json!({"name": format!("m{i}"), "dim": 2, "metric": metric}).to_string();
        let (status, answer) = server.call("POST", "/v1/collections", None, Some(&body));
        assert_eq!(status, 201, "{metric}: {answer}");
    }
    let before = server.state_hash();
    for metric in ["euclidean", "dot", "manhattan"] {
        let body = json!({"name": "other", "dim": 2, "metric": metric}).to_string();
        let (status, answer) = server.call("POST", "/v1/collections", None, Some(&body));
        assert_eq!(
            (status, error_code(&answer)),
            (400, "bad_request"),
            "{metric}: {answer}"
        );
        assert_eq!(
            answer["error"]["message"],
            format!("metric {metric:?} is not one of l2, inner_product (also ip), cosine"),
        );
    }
    assert_eq!(server.state_hash(), before);
}

/// Proves that `k` is refused outside 1..=SEARCH_K_MAX, never clamped and
/// never answered with nothing, with the same message with and without a
/// DSL filter (a filtered search runs as a DSL query).
#[test]
fn search_k_is_refused_the_same_way_with_and_without_a_filter() {
    let server = Server::with(Vec::new(), None);
    let call = |b: &str| server.call("POST", "/v1/collections/docs/search", None, Some(b));
    server.call(
        "POST",
        "/v1/collections",
        None,
        Some(r#"{"name":"docs","dim":2}"#),
    );
    server.call(
        "POST",
        "/v1/collections/docs/records",
        None,
        Some(r#"{"id":1,"vector":[1,0],"tag":3}"#),
    );
    for (k, message) in [
        (0u64, "k = 0 is outside 1..=10000"),
        (10_001, "k = 10001 is outside 1..=10000"),
    ] {
        for filter in [None, Some("tag = 3")] {
            let mut body = json!({"vector": [1, 0], "k": k});
            if let Some(f) = filter {
                body["filter"] = json!(f);
            }
            let (status, answer) = call(&body.to_string());
            assert_eq!(
                (status, error_code(&answer)),
                (400, "bad_request"),
                "k = {k}, filter {filter:?}: {answer}"
            );
            assert_eq!(answer["error"]["message"], message, "filter {filter:?}");
        }
    }
    // At the limit, with fewer rows than k: every row, nothing refused.
    let (status, answer) = call(r#"{"vector": [1, 0], "k": 10000}"#);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["hits"].as_array().map(Vec::len), Some(1));
}

/// Proves that a search filter longer than the statement limit is
/// refused as a limit (413 `payload_too_large`, as Postgres answers
/// `54000` and Python raises `TooLarge`), not as a malformed request, and
/// changes nothing.
#[test]
fn a_too_long_filter_exceeds_a_limit() {
    let server = Server::with(Vec::new(), None);
    server.call(
        "POST",
        "/v1/collections",
        None,
        Some(r#"{"name":"docs","dim":2}"#),
    );
    let before = server.state_hash();
    let max = valori_core::limits::SQL_BYTES_MAX as usize;
    let filter = format!("tag = 1{}", " ".repeat(max));
    let body = json!({"vector": [1, 0], "filter": filter}).to_string();
    let (status, answer) = server.call("POST", "/v1/collections/docs/search", None, Some(&body));
    assert_eq!(
        (status, error_code(&answer)),
        (413, "payload_too_large"),
        "{answer}"
    );
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("exceeds the limit of {max} bytes")),
        "{answer}"
    );
    assert_eq!(server.state_hash(), before);
}

/// Proves that REST answers every bad input exactly as the shared
/// operations of `valori_query::ops` classify it (the layer Python calls
/// too): the HTTP status and code of the error's fault and the same
/// message, for each kind of refusal; and that none changes the state.
#[test]
fn rest_refuses_as_the_shared_operations_do() {
    use valori_query::ops::{self, BatchColumns, NewCollection, Rows, SearchSpec, VectorOrigin};
    use valori_wire::rest::ApiError;

    let server = Server::with(Vec::new(), None);
    let engine = &server.engine;
    let call = |method: &str, path: &str, body: &str| server.call(method, path, None, Some(body));
    call("POST", "/v1/collections", r#"{"name":"docs","dim":2}"#);
    call(
        "POST",
        "/v1/collections/docs/records",
        r#"{"id":1,"vector":[1,0],"tag":3}"#,
    );
    let docs = ops::collection_name("docs").unwrap();
    let new = |name, dim, metric| NewCollection {
        name,
        dim,
        metric,
        m: None,
        ef_construction: None,
        seed: None,
    };
    let search = |name: &str, query: &[i32], k: u64, ef: Option<u64>| {
        let spec = SearchSpec::new(k, ef, None, false)?;
        let name = ops::collection_name(name)?;
        engine.read(|s| ops::search(s, &name, query, &spec))?
    };
    let big = "x".repeat(valori_core::limits::METADATA_BYTES_MAX as usize);
    let too_long = format!(
        "tag = 3{}",
        " ".repeat(valori_core::limits::SQL_BYTES_MAX as usize)
    );
    let dsl_text = format!("FROM docs NEAREST $q K 10 WHERE ({too_long})");
    let before = server.state_hash();

    // (what, REST method, path, body, the shared layer's error)
    let cases: Vec<(&str, &str, String, String, ApiError)> = vec![
        (
            "unknown metric",
            "POST",
            "/v1/collections".into(),
            r#"{"name":"m","dim":2,"metric":"euclidean"}"#.into(),
            ops::create_collection(engine, &new("m", 2, "euclidean"))
                .unwrap_err()
                .into(),
        ),
        (
            "dimension 0",
            "POST",
            "/v1/collections".into(),
            r#"{"name":"m","dim":0}"#.into(),
            ops::create_collection(engine, &new("m", 0, "l2"))
                .unwrap_err()
                .into(),
        ),
        (
            "bad name",
            "POST",
            "/v1/collections".into(),
            r#"{"name":"Bad","dim":2}"#.into(),
            ops::create_collection(engine, &new("Bad", 2, "l2"))
                .unwrap_err()
                .into(),
        ),
        (
            "existing collection",
            "POST",
            "/v1/collections".into(),
            r#"{"name":"docs","dim":2}"#.into(),
            ops::create_collection(engine, &new("docs", 2, "l2"))
                .unwrap_err()
                .into(),
        ),
        (
            "k 0",
            "POST",
            "/v1/collections/docs/search".into(),
            r#"{"vector":[1,0],"k":0}"#.into(),
            search("docs", &[65536, 0], 0, None).unwrap_err().into(),
        ),
        (
            "ef above the limit",
            "POST",
            "/v1/collections/docs/search".into(),
            r#"{"vector":[1,0],"ef":10001}"#.into(),
            search("docs", &[65536, 0], 10, Some(10_001))
                .unwrap_err()
                .into(),
        ),
        (
            "query dimension",
            "POST",
            "/v1/collections/docs/search".into(),
            r#"{"vector":[1]}"#.into(),
            search("docs", &[65536], 10, None).unwrap_err().into(),
        ),
        (
            "unknown collection",
            "POST",
            "/v1/collections/nope/search".into(),
            r#"{"vector":[1,0]}"#.into(),
            search("nope", &[65536, 0], 10, None).unwrap_err().into(),
        ),
        (
            "component out of range",
            "POST",
            "/v1/collections/docs/records".into(),
            r#"{"id":5,"vector":[1e6,0]}"#.into(),
            ops::quantize_f64([1e6, 0.0], VectorOrigin::Record(5), &mut Vec::new())
                .unwrap_err()
                .into(),
        ),
        (
            "duplicate id",
            "POST",
            "/v1/collections/docs/records".into(),
            r#"{"id":1,"vector":[1,0]}"#.into(),
            ops::insert(engine, docs.clone(), vec![65536, 0], Some(1), 0, Vec::new())
                .unwrap_err()
                .into(),
        ),
        (
            "metadata too large",
            "POST",
            "/v1/collections/docs/records".into(),
            json!({"id": 2, "vector": [1, 0], "metadata": big}).to_string(),
            ops::insert(
                engine,
                docs.clone(),
                vec![65536, 0],
                Some(2),
                0,
                valori_query::metadata::to_bytes(&json!(big)),
            )
            .unwrap_err()
            .into(),
        ),
        (
            "ragged batch",
            "POST",
            "/v1/collections/docs/records/batch".into(),
            r#"{"vectors":[[1,0],[1]]}"#.into(),
            {
                let mut rows = Rows::new();
                rows.push_f64([1.0, 0.0].into_iter()).unwrap();
                rows.push_f64([1.0].into_iter()).unwrap_err().into()
            },
        ),
        (
            "ids of another length",
            "POST",
            "/v1/collections/docs/records/batch".into(),
            r#"{"vectors":[[1,0],[0,1]],"ids":[7]}"#.into(),
            {
                let mut rows = Rows::new();
                rows.push_f64([1.0, 0.0].into_iter()).unwrap();
                rows.push_f64([0.0, 1.0].into_iter()).unwrap();
                let columns = BatchColumns {
                    ids: Some(vec![7]),
                    ..BatchColumns::default()
                };
                ops::insert_batch(engine, docs.clone(), rows, columns)
                    .unwrap_err()
                    .into()
            },
        ),
        (
            "unknown record",
            "DELETE",
            "/v1/collections/docs/records/99".into(),
            String::new(),
            ops::delete(engine, docs.clone(), 99).unwrap_err().into(),
        ),
        (
            "describe an unknown collection",
            "GET",
            "/v1/collections/nope".into(),
            String::new(),
            ops::describe(engine, "nope").unwrap_err().into(),
        ),
        (
            "filter too long",
            "POST",
            "/v1/collections/docs/search".into(),
            json!({"vector": [1, 0], "filter": too_long}).to_string(),
            valori_query::dsl::parse(&dsl_text).unwrap_err().into(),
        ),
    ];
    for (what, method, path, body, expected) in cases {
        let body = (!body.is_empty()).then_some(body);
        let (status, answer) = server.call(method, &path, None, body.as_deref());
        assert_eq!(
            (
                status,
                error_code(&answer),
                answer["error"]["message"].as_str()
            ),
            (
                expected.status.as_u16(),
                expected.code,
                Some(expected.message.as_str())
            ),
            "{what}"
        );
    }
    assert_eq!(server.state_hash(), before);
}
