//! The `valori` command line, run as a process.

use std::process::Command;

use valori_core::Metric;
use valori_core::event::{CollectionConfig, CollectionName, Event, IndexParams, Record, RecordId};
use valori_engine::Engine;

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
