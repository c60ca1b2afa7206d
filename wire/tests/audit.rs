//! `valori verify --url` against lying servers. A small HTTP proxy in
//! front of a real server serves the real database's answers with one
//! thing altered — a snapshot edited with its state hash and trailer
//! recomputed, an event edited, a proof path edited, the root forked, the
//! log truncated, a claimed hash changed — and the audit must refuse each,
//! naming the claim that is false; the honest proxy and the real server
//! pass.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::{Value, json};
use valori_columnar::snapshot::{SNAPSHOT_TRAILER_BYTES, SnapshotError, read_snapshot};
use valori_core::hash::Hash32;
use valori_wire::audit::{AuditReport, AuditRequest, Claim, TrustedHead, audit};
use valori_wire::config::ServeArgs;

#[path = "common/server.rs"]
mod server;
use server::Server;

impl Server {
    fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let answer = valori_wire::client::request(
            &self.rest.to_string(),
            method,
            path,
            None,
            body.map(str::as_bytes),
        )
        .unwrap();
        (answer.status, serde_json::from_slice(&answer.body).unwrap())
    }

    fn url(&self) -> String {
        format!("http://{}", self.rest)
    }

    /// The head (size, root) the server reports now.
    fn head(&self) -> TrustedHead {
        let (_, proof) = self.call("GET", "/v1/proof/state", None);
        TrustedHead {
            size: proof["log_size"].as_u64().unwrap(),
            root: Hash32::from_hex(proof["log_root"].as_str().unwrap()).unwrap(),
        }
    }
}

/// Rewrites an answer: (path and query, status, body) to (status, body).
type Lie = Arc<dyn Fn(&str, u16, Vec<u8>) -> (u16, Vec<u8>) + Send + Sync>;

/// A proxy on a free loopback port that forwards every GET to `upstream`
/// and hands the answer to its lie; stopped on drop.
struct Proxy {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    fn start(upstream: SocketAddr, lie: Lie) -> Proxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
                    let lie = Arc::clone(&lie);
                    async move {
                        let path = uri
                            .path_and_query()
                            .map(|p| p.as_str().to_owned())
                            .unwrap_or_default();
                        let (status, body) = tokio::task::spawn_blocking(move || {
                            let answer = valori_wire::client::request(
                                &upstream.to_string(),
                                "GET",
                                &path,
                                None,
                                None,
                            )
                            .unwrap();
                            lie(&path, answer.status, answer.body)
                        })
                        .await
                        .unwrap();
                        (axum::http::StatusCode::from_u16(status).unwrap(), body)
                    }
                });
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        Proxy {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A lie that edits the JSON answers of paths starting with `prefix`.
fn json_lie(prefix: &'static str, edit: impl Fn(&mut Value) + Send + Sync + 'static) -> Lie {
    Arc::new(move |path, status, body| {
        if status != 200 || !path.starts_with(prefix) {
            return (status, body);
        }
        let mut value: Value = serde_json::from_slice(&body).unwrap();
        edit(&mut value);
        (status, serde_json::to_vec(&value).unwrap())
    })
}

fn flip_hex(text: &str, at: usize) -> String {
    let mut bytes = text.as_bytes().to_vec();
    bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
    String::from_utf8(bytes).unwrap()
}

/// Collection `docs` (dimension 2) with 70 rows in one batch (one block in
/// the graph), a few single inserts, a snapshot, and more writes after it.
/// Returns the snapshot's event count.
fn fill(server: &Server, seed: i64) -> u64 {
    assert_eq!(
        server
            .call(
                "POST",
                "/v1/collections",
                Some(r#"{"name":"docs","dim":2}"#)
            )
            .0,
        201
    );
    let vectors: Vec<Value> = (0..70)
        .map(|i| json!([(i * 37 + seed) % 101, (i * 11) % 53]))
        .collect();
    let body = json!({ "vectors": vectors }).to_string();
    assert_eq!(
        server
            .call("POST", "/v1/collections/docs/records/batch", Some(&body))
            .0,
        201
    );
    for i in 0..3 {
        let body = format!(r#"{{"vector":[{i},{seed}]}}"#);
        assert_eq!(
            server
                .call("POST", "/v1/collections/docs/records", Some(&body))
                .0,
            201
        );
    }
    let (status, snap) = server.call("POST", "/v1/snapshots", None);
    assert_eq!(status, 201, "{snap}");
    for i in 0..2 {
        let body = format!(r#"{{"vector":[{seed},{i}]}}"#);
        server.call("POST", "/v1/collections/docs/records", Some(&body));
    }
    snap["events"].as_u64().unwrap()
}

fn run(url: String, trusted: Option<TrustedHead>) -> AuditReport {
    audit(&AuditRequest {
        url,
        trusted,
        ..AuditRequest::default()
    })
    .unwrap()
}

fn assert_refused(report: &AuditReport, claim: &Claim, case: &str) {
    assert!(!report.is_ok(), "{case}: accepted: {:#?}", report.checks);
    assert_eq!(
        report.failed().first().copied(),
        Some(claim),
        "{case}: {:#?}",
        report.checks
    );
    let line = report
        .findings()
        .into_iter()
        .find(|f| !f.ok)
        .unwrap()
        .message;
    assert!(line.starts_with(&claim.to_string()), "{case}: {line}");
}

/// The honest server and the honest proxy pass every check, from a
/// trusted head held before the latest writes; the audit replays every
/// event and compares the snapshot and the claimed hashes.
#[test]
fn honest_server_passes() {
    let server = Server::start(ServeArgs::default());
    let snapshot = fill(&server, 1);
    let trusted = TrustedHead {
        size: 3,
        root: {
            let (_, p) = server.call("GET", "/v1/proof/consistency?from=3&to=3", None);
            Hash32::from_hex(p["new_root"].as_str().unwrap()).unwrap()
        },
    };
    let proxy = Proxy::start(server.rest, Arc::new(|_, s, b| (s, b)));
    for url in [server.url(), proxy.url()] {
        let report = run(url, Some(trusted));
        assert!(report.is_ok(), "{:#?}", report.checks);
        for claim in [
            Claim::ConsistencyFromTrustedHead,
            Claim::SnapshotStateHash { events: snapshot },
            Claim::SnapshotIndexHash { events: snapshot },
            Claim::SnapshotLogLeaves { events: snapshot },
            Claim::StateHash,
            Claim::IndexHash {
                collection: "docs".into(),
            },
            Claim::LogSize,
        ] {
            assert!(
                report.checks.iter().any(|c| c.claim == claim && c.ok),
                "{claim} not checked: {:#?}",
                report.checks
            );
        }
        assert_eq!(report.log_size, server.head().size);
    }
}

/// A snapshot whose vector was edited, with its state hash and trailer
/// recomputed so that the file itself is consistent and loads, is refused:
/// "snapshot state hash".
#[test]
fn edited_snapshot_is_refused() {
    let server = Server::start(ServeArgs::default());
    let events = fill(&server, 2);
    let lie: Lie = Arc::new(move |path, status, mut body| {
        if status != 200 || !path.starts_with("/v1/snapshots/") {
            return (status, body);
        }
        let (state, meta) = read_snapshot(&body).unwrap();
        // The first vector component of `docs`, from docs/format.md
        // section 6: header, then name, configuration, row count, ids,
        // tags and tombstones of the one collection.
        let rows = state.collections().next().unwrap().rows();
        let at = 8 + 4 + 8 + 32 + 32 + 32 + 8 + 32 * meta.events as usize + 4;
        let at = at + 4 + 4 + 4 + 1 + 2 + 2 + 8 + 8 + rows * (8 + 8 + 1);
        body[at] ^= 1;
        let reseal = |b: &mut Vec<u8>| {
            let end = b.len() - SNAPSHOT_TRAILER_BYTES;
            let trailer = blake3::hash(&b[..end]);
            b[end..].copy_from_slice(trailer.as_bytes());
        };
        reseal(&mut body);
        let Err(SnapshotError::StateHashMismatch { computed, .. }) = read_snapshot(&body) else {
            panic!("the edit must change the state hash");
        };
        body[20..52].copy_from_slice(computed.as_bytes());
        reseal(&mut body);
        assert!(read_snapshot(&body).is_ok(), "the forged file loads");
        (status, body)
    });
    let proxy = Proxy::start(server.rest, lie);
    let report = run(proxy.url(), None);
    assert_refused(
        &report,
        &Claim::SnapshotStateHash { events },
        "edited snapshot",
    );
}

/// Every single byte of the snapshot changed (without resealing) is
/// refused as "snapshot at N events", naming what the reader found.
#[test]
fn every_snapshot_byte_is_checked() {
    let server = Server::start(ServeArgs::default());
    let events = fill(&server, 3);
    let len = valori_wire::client::request(
        &server.rest.to_string(),
        "GET",
        &format!("/v1/snapshots/{events}"),
        None,
        None,
    )
    .unwrap()
    .body
    .len();
    // A stride prime to every field width still visits every field.
    for at in (0..len).step_by(23) {
        let lie: Lie = Arc::new(move |path, status, mut body| {
            if status == 200 && path.starts_with("/v1/snapshots/") {
                body[at] ^= 0x10;
            }
            (status, body)
        });
        let proxy = Proxy::start(server.rest, lie);
        let report = run(proxy.url(), None);
        assert_refused(&report, &Claim::Snapshot { events }, &format!("byte {at}"));
    }
}

/// Each event edited in the served log (one byte), and each hash of each
/// event's inclusion path edited, is refused as "event N inclusion".
#[test]
fn every_event_and_path_hash_is_checked() {
    let server = Server::start(ServeArgs::default());
    fill(&server, 4);
    let size = server.head().size;
    let (_, page) = server.call("GET", "/v1/proof/log?from=0", None);
    let paths: Vec<usize> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_array().unwrap().len())
        .collect();
    assert_eq!(paths.len() as u64, size);
    for seq in 0..size {
        // The last hex digit: the end of the event's last field.
        let lie = json_lie("/v1/proof/log", move |page| {
            for e in page["events"].as_array_mut().unwrap() {
                if e["seq"] == seq {
                    let text = e["event"].as_str().unwrap().to_owned();
                    e["event"] = json!(flip_hex(&text, text.len() - 1));
                }
            }
        });
        let proxy = Proxy::start(server.rest, lie);
        let report = run(proxy.url(), None);
        assert_refused(
            &report,
            &Claim::EventInclusion { seq },
            &format!("event {seq}"),
        );
        for i in 0..paths[seq as usize] {
            let lie = json_lie("/v1/proof/log", move |page| {
                for e in page["events"].as_array_mut().unwrap() {
                    if e["seq"] == seq {
                        let text = e["path"][i].as_str().unwrap().to_owned();
                        e["path"][i] = json!(flip_hex(&text, 5));
                    }
                }
            });
            let proxy = Proxy::start(server.rest, lie);
            let report = run(proxy.url(), None);
            assert_refused(
                &report,
                &Claim::EventInclusion { seq },
                &format!("event {seq} path hash {i}"),
            );
        }
    }
}

/// A server whose log forked from the one the auditor trusts — a real
/// database with a different history, and a proxy that reports a changed
/// root — is refused: "consistency from trusted head".
#[test]
fn forked_root_is_refused() {
    let honest = Server::start(ServeArgs::default());
    fill(&honest, 5);
    let trusted = honest.head();
    let forked = Server::start(ServeArgs::default());
    fill(&forked, 6);
    assert_eq!(forked.head().size, trusted.size);
    let report = run(forked.url(), Some(trusted));
    assert_refused(
        &report,
        &Claim::ConsistencyFromTrustedHead,
        "forked database",
    );

    // The forked database, one write further: a consistency proof is
    // fetched and fails.
    forked.call(
        "POST",
        "/v1/collections/docs/records",
        Some(r#"{"vector":[1,1]}"#),
    );
    let report = run(forked.url(), Some(trusted));
    assert_refused(
        &report,
        &Claim::ConsistencyFromTrustedHead,
        "forked, longer",
    );

    // Each byte of the root the honest server claims, changed.
    for at in [0, 17, 63] {
        let lie = json_lie("/v1/proof/state", move |v| {
            let root = v["log_root"].as_str().unwrap().to_owned();
            v["log_root"] = json!(flip_hex(&root, at));
        });
        let proxy = Proxy::start(honest.rest, lie);
        let report = run(proxy.url(), Some(trusted));
        assert_refused(
            &report,
            &Claim::ConsistencyFromTrustedHead,
            &format!("root digit {at}"),
        );
    }
}

/// A log truncated below the trusted head (the head of a shorter log,
/// with its genuine root) is refused as "log size"; so is a server that
/// reports its full size but serves fewer events.
#[test]
fn truncated_log_is_refused() {
    let server = Server::start(ServeArgs::default());
    fill(&server, 7);
    let trusted = server.head();
    let short = trusted.size - 2;
    let (_, proof) = server.call(
        "GET",
        &format!("/v1/proof/consistency?from={short}&to={short}"),
        None,
    );
    let short_root = proof["old_root"].as_str().unwrap().to_owned();
    let lie = json_lie("/v1/proof/state", move |v| {
        v["log_size"] = json!(short);
        v["log_root"] = json!(short_root.clone());
    });
    let proxy = Proxy::start(server.rest, lie);
    let report = run(proxy.url(), Some(trusted));
    assert_refused(&report, &Claim::LogSize, "head of a shorter log");

    let last = trusted.size - 1;
    let lie = json_lie("/v1/proof/log", move |page| {
        page["events"]
            .as_array_mut()
            .unwrap()
            .retain(|e| e["seq"].as_u64().unwrap() < last);
    });
    let proxy = Proxy::start(server.rest, lie);
    let report = run(proxy.url(), Some(trusted));
    assert_refused(&report, &Claim::LogSize, "events withheld");
}

/// The state hash and the index hash the server claims, each changed, are
/// refused by the replay, naming which.
#[test]
fn claimed_hashes_are_checked_against_the_replay() {
    let server = Server::start(ServeArgs::default());
    fill(&server, 8);
    let trusted = server.head();
    for at in [0, 31, 63] {
        let lie = json_lie("/v1/proof/state", move |v| {
            let hash = v["state_hash"].as_str().unwrap().to_owned();
            v["state_hash"] = json!(flip_hex(&hash, at));
        });
        let proxy = Proxy::start(server.rest, lie);
        let report = run(proxy.url(), Some(trusted));
        assert_refused(
            &report,
            &Claim::StateHash,
            &format!("state hash digit {at}"),
        );

        let lie = json_lie("/v1/proof/state", move |v| {
            let hash = v["collections"][0]["index_hash"]
                .as_str()
                .unwrap()
                .to_owned();
            v["collections"][0]["index_hash"] = json!(flip_hex(&hash, at));
        });
        let proxy = Proxy::start(server.rest, lie);
        let report = run(proxy.url(), Some(trusted));
        assert_refused(
            &report,
            &Claim::IndexHash {
                collection: "docs".into(),
            },
            &format!("index hash digit {at}"),
        );
    }
}

/// Every answer is bounded: an audit allowed fewer bytes than the
/// snapshot stops with a clear error instead of reading it.
#[test]
fn downloads_are_bounded() {
    let server = Server::start(ServeArgs::default());
    fill(&server, 9);
    let err = audit(&AuditRequest {
        url: server.url(),
        limits: valori_wire::audit::AuditLimits {
            download_bytes_max: 2_000,
            ..Default::default()
        },
        ..AuditRequest::default()
    })
    .unwrap_err();
    assert!(
        matches!(
            err,
            valori_wire::audit::AuditError::DownloadBound { limit: 2_000, .. }
        ),
        "{err}"
    );
    let err = audit(&AuditRequest {
        url: server.url(),
        limits: valori_wire::audit::AuditLimits {
            events_max: 3,
            ..Default::default()
        },
        ..AuditRequest::default()
    })
    .unwrap_err();
    assert!(
        matches!(
            err,
            valori_wire::audit::AuditError::EventsBound { limit: 3, .. }
        ),
        "{err}"
    );
}

/// `valori verify --url` with `--trusted-size` and `--trusted-root`, run
/// as a process: the honest server passes and the command prints the head
/// to pin next time; a trusted root the server's log does not extend
/// exits 1 naming "consistency from trusted head"; a malformed root is a
/// usage error.
#[test]
fn cli_pins_a_trusted_head() {
    let server = Server::start(ServeArgs::default());
    fill(&server, 10);
    let head = server.head();
    let valori = |root: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_valori"))
            .args([
                "verify",
                "--url",
                &server.url(),
                "--trusted-size",
                &head.size.to_string(),
                "--trusted-root",
                root,
            ])
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, text) = valori(&head.root.to_string());
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("verified: no differences"), "{text}");
    assert!(text.contains(&format!("log_root {}", head.root)), "{text}");

    let (code, text) = valori(&flip_hex(&head.root.to_string(), 10));
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("MISMATCH consistency from trusted head"),
        "{text}"
    );

    let (code, text) = valori("not-hex");
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("--trusted-root"), "{text}");
}

/// Each hash of the consistency proof the server serves, changed, and a
/// head that claims one event more than the log holds, are refused:
/// "consistency from trusted head" (no proof verifies, or the server can
/// give none).
#[test]
fn every_consistency_hash_and_the_size_are_checked() {
    let server = Server::start(ServeArgs::default());
    fill(&server, 11);
    let head = server.head();
    let trusted = TrustedHead {
        size: 3,
        root: {
            let (_, p) = server.call("GET", "/v1/proof/consistency?from=3&to=3", None);
            Hash32::from_hex(p["new_root"].as_str().unwrap()).unwrap()
        },
    };
    let (_, proof) = server.call(
        "GET",
        &format!("/v1/proof/consistency?from=3&to={}", head.size),
        None,
    );
    let hashes = proof["path"].as_array().unwrap().len();
    assert!(hashes > 0);
    for i in 0..hashes {
        let lie = json_lie("/v1/proof/consistency", move |p| {
            let text = p["path"][i].as_str().unwrap().to_owned();
            p["path"][i] = json!(flip_hex(&text, 40));
        });
        let proxy = Proxy::start(server.rest, lie);
        let report = run(proxy.url(), Some(trusted));
        assert_refused(
            &report,
            &Claim::ConsistencyFromTrustedHead,
            &format!("consistency hash {i}"),
        );
    }
    let lie = json_lie("/v1/proof/state", move |v| {
        v["log_size"] = json!(head.size + 1);
    });
    let proxy = Proxy::start(server.rest, lie);
    let report = run(proxy.url(), Some(trusted));
    assert_refused(&report, &Claim::ConsistencyFromTrustedHead, "size + 1");
    // Without a trusted head the same lie fails on the log itself.
    let report = run(proxy.url(), None);
    assert_refused(&report, &Claim::LogSize, "size + 1, no trusted head");
}

/// `GET /v1/proof/log`: pages of at most `limit` events, each with a path
/// that verifies against the page's root; a size beyond the log, or a
/// start after the size, is a 400 naming the field; an empty page at the
/// end of the log.
#[test]
fn log_route_pages_and_refuses_bad_ranges() {
    use valori_core::merkle::{leaf_hash, verify_inclusion};
    let server = Server::start(ServeArgs::default());
    fill(&server, 12);
    let size = server.head().size;
    let (status, page) = server.call("GET", "/v1/proof/log?from=1&limit=2&size=5", None);
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["size"], 5);
    let root = Hash32::from_hex(page["root"].as_str().unwrap()).unwrap();
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    for (e, seq) in events.iter().zip(1u64..) {
        assert_eq!(e["seq"], seq);
        let hex = e["event"].as_str().unwrap();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let path: Vec<Hash32> = e["path"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| Hash32::from_hex(h.as_str().unwrap()).unwrap())
            .collect();
        assert!(verify_inclusion(&leaf_hash(&bytes), seq, 5, &path, &root));
    }
    let (status, err) = server.call(
        "GET",
        &format!("/v1/proof/log?from=0&size={}", size + 1),
        None,
    );
    assert_eq!(status, 400, "{err}");
    assert!(err.to_string().contains("size"), "{err}");
    let (status, err) = server.call("GET", "/v1/proof/log?from=4&size=3", None);
    assert_eq!(status, 400, "{err}");
    assert!(err.to_string().contains("from"), "{err}");
    let (status, page) = server.call("GET", &format!("/v1/proof/log?from={size}"), None);
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["events"].as_array().unwrap().len(), 0);
}
