//! The `valori` command line, run as a process.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use valori_core::Metric;
use valori_core::event::{CollectionConfig, CollectionName, Event, IndexParams, Record, RecordId};
use valori_engine::Engine;
use valori_wire::config::ServeArgs;

#[path = "common/server.rs"]
mod server;
use server::Server;

fn valori(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_valori"))
        .args(args)
        .output()
        .expect("run valori");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// `valori verify` passes a healthy directory and prints the same state
/// hash and log root the engine reports; after one flipped byte in the
/// log it exits 1 and names the segment and the offset of the damage.
#[test]
fn verify_reports_health_and_damage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let name = CollectionName::new("docs").expect("name");
    let proof = {
        let engine = Engine::open(dir.path()).expect("open");
        let config = CollectionConfig {
            dim: 2,
            metric: Metric::L2,
            index: IndexParams::default(),
        };
        engine
            .submit(Event::CreateCollection {
                name: name.clone(),
                config,
            })
            .expect("create");
        for id in 0..20u64 {
            let record = Record {
                id: RecordId(id),
                vector: vec![id as i32, 1],
                tag: 0,
                metadata: vec![],
            };
            engine
                .submit(Event::Insert {
                    collection: name.clone(),
                    record,
                })
                .expect("insert");
        }
        engine.snapshot().expect("snapshot");
        engine.proof().expect("proof")
    };
    let (code, text) = valori(&["verify", dir.path().to_str().expect("utf-8 path")]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!("state_hash {}", proof.hashes.state)),
        "{text}"
    );
    assert!(
        text.contains(&format!("log_root {}", proof.log_root)),
        "{text}"
    );
    assert!(text.contains("verified: no differences"), "{text}");

    let segment = dir
        .path()
        .join("wal")
        .join(valori_engine::wal::segment_name(0));
    let mut bytes = std::fs::read(&segment).expect("read segment");
    let at = valori_engine::wal::SEGMENT_HEADER_BYTES + valori_engine::wal::FRAME_HEADER_BYTES + 2;
    bytes[at] ^= 0xff;
    std::fs::write(&segment, bytes).expect("write segment");
    let (code, text) = valori(&["verify", dir.path().to_str().expect("utf-8 path")]);
    assert_eq!(code, 1, "{text}");
    let offset = valori_engine::wal::SEGMENT_HEADER_BYTES;
    assert!(
        text.contains("MISMATCH") && text.contains(&format!("corrupt frame at offset {offset}")),
        "{text}"
    );
    assert!(text.contains(&segment.display().to_string()), "{text}");
}

/// Unknown commands and missing arguments are usage errors (exit 2).
#[test]
fn usage_errors() {
    assert_eq!(valori(&["frobnicate"]).0, 2);
    assert_eq!(valori(&["verify"]).0, 2);
    let (code, text) = valori(&["verify", "/nonexistent/valori"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("not a directory"));
}

/// `valori cluster promote` and `remove` refuse clearly where no cluster
/// change can be made, and exit 1: a server that is not a node of a
/// cluster says so (and its log is unchanged), a server that cannot be
/// reached is named; a URL that is not `http://` and a missing node id
/// are usage errors (exit 2).
#[test]
fn cluster_changes_are_refused_outside_a_cluster() {
    let standalone = Server::start(ServeArgs::default());
    let url = format!("http://{}", standalone.rest);
    let events = standalone.engine.log_size();
    for verb in ["promote", "remove"] {
        let (code, text) = valori(&["cluster", verb, "2", "--url", &url]);
        assert_eq!(code, 1, "{text}");
        assert!(
            text.contains(&format!(
                "valori cluster {verb} 2: {url} refused (HTTP 404): this server is not a node of a cluster"
            )),
            "{text}"
        );
    }
    assert_eq!(standalone.engine.log_size(), events);

    // Port 1 is privileged; nothing listens on it here.
    let (code, text) = valori(&["cluster", "promote", "2", "--url", "http://127.0.0.1:1"]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("valori cluster promote 2: cannot reach http://127.0.0.1:1"),
        "{text}"
    );
    let (code, text) = valori(&["cluster", "remove", "2", "--url", "https://127.0.0.1:1"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("only http:// URLs are supported"), "{text}");
    let (code, text) = valori(&["cluster", "promote", "--url", &url]);
    assert_eq!(code, 2, "{text}");
}
