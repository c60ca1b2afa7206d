//! Crash test with real processes: `valori-stress` writes batches from
//! several threads and prints each acknowledged batch; the test SIGKILLs it
//! at random moments, reopens the directory and checks that every
//! acknowledged batch is present, that no batch is half-applied, and that
//! the state hash equals a replay of exactly the recovered log.
//!
//! `VALORI_CRASH_CYCLES` sets the number of kill cycles (default 50; the
//! soak is 1000) and `VALORI_CRASH_SEED` the seed of the kill times.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use valori_core::rng::SplitMix64;
use valori_engine::Engine;
use valori_engine::stress;
use valori_engine::verify::{VerifyOptions, verify_dir_with};

const BATCH: u64 = 16;

fn env_u64(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn sigkill_under_concurrent_load() {
    let cycles = env_u64("VALORI_CRASH_CYCLES", 50);
    let seed = env_u64("VALORI_CRASH_SEED", 0x5eed);
    eprintln!("crash test: {cycles} cycles, VALORI_CRASH_SEED={seed}");
    let mut rng = SplitMix64::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut acked: BTreeSet<u64> = BTreeSet::new();
    let mut total_acks = 0usize;
    for cycle in 0..cycles {
        let mut child = Command::new(env!("CARGO_BIN_EXE_valori-stress"))
            .arg(dir.path())
            .args([
                "--threads",
                "4",
                "--batch-size",
                &BATCH.to_string(),
                "--snapshot-every",
                "97",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            while r.read_line(&mut line).unwrap_or(0) > 0 {
                // A line cut by the kill has no newline: not an ack.
                if let Some(rest) = line.strip_suffix('\n').and_then(|l| l.strip_prefix("ack ")) {
                    let b: u64 = rest.split(' ').next().unwrap().parse().unwrap();
                    out.push(b);
                }
                line.clear();
            }
            out
        });
        std::thread::sleep(Duration::from_millis(30 + rng.below(150)));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        let acks = reader.join().unwrap();
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert!(
            !status.success() && stderr.is_empty(),
            "cycle {cycle} (seed {seed}): child failed: {stderr}"
        );
        total_acks += acks.len();
        acked.extend(acks);

        let engine =
            Engine::open(dir.path()).unwrap_or_else(|e| panic!("cycle {cycle} (seed {seed}): {e}"));
        let batches: BTreeMap<u64, u64> = engine
            .read(|s| {
                let mut per_batch = BTreeMap::new();
                if let Some(c) = s.collection(&stress::collection()) {
                    for (row, id) in c.ids().iter().enumerate() {
                        assert!(!c.deleted()[row]);
                        *per_batch.entry(id.0 / BATCH).or_insert(0) += 1;
                        let b = id.0 / BATCH;
                        let want = stress::batch(b, BATCH);
                        let i = (id.0 % BATCH) as usize;
                        assert_eq!(c.vector(row), want.vector(i), "batch {b} record {i}");
                    }
                }
                per_batch
            })
            .unwrap();
        for (b, n) in &batches {
            assert_eq!(
                *n, BATCH,
                "cycle {cycle} (seed {seed}): batch {b} is half-applied ({n} records)"
            );
        }
        for b in &acked {
            assert!(
                batches.contains_key(b),
                "cycle {cycle} (seed {seed}): acknowledged batch {b} is missing"
            );
        }
        // The recovered state equals a replay of exactly the log.
        let proof = engine.proof().unwrap();
        drop(engine);
        // The graph is not what this test is about; rebuilding it every
        // cycle would dominate the run.
        let report = verify_dir_with(
            &valori_engine::storage::FsStorage,
            dir.path(),
            VerifyOptions { indexes: false },
        );
        assert!(
            report.is_ok(),
            "cycle {cycle} (seed {seed}): {:?}",
            report.findings
        );
        assert_eq!(
            report.state_hash,
            Some(proof.hashes.state),
            "cycle {cycle} (seed {seed})"
        );
        assert_eq!(report.events, proof.log_size);
        // A soak runs for many minutes: say how far it is (shown with
        // `--nocapture`).
        if (cycle + 1) % 50 == 0 && cycle + 1 < cycles {
            eprintln!(
                "crash test: {} of {cycles} cycles, {total_acks} acknowledged batches so far, {} events in the log",
                cycle + 1,
                report.events
            );
        }
    }
    assert!(
        total_acks as u64 > cycles,
        "the child must make progress: {total_acks} acks in {cycles} cycles"
    );
    eprintln!("crash test: {cycles} cycles, {total_acks} acknowledged batches, all present");
}
