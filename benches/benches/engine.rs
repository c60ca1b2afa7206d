//! Durability benchmarks, each next to the raw disk doing the same work in
//! the same run:
//!
//! - durable ingest of glove50-100k and wordnet-minilm20k in atomic batches
//!   of 1,000 (one fsync per batch, single writer) vs sequential write +
//!   fsync of the same bytes in the same chunks;
//! - recovery (open = replay the log) and snapshot save/load at 100k and
//!   1M vectors vs raw file write + fsync and read of the same size;
//! - the cost of asking for the state hash at 1M vectors.
//!
//! `cargo bench -p valori-benches --bench engine` (data in `../shared/data`;
//! scratch files in `$VALORI_BENCH_DIR` or the system temp directory).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use valori_benches::{best_time, data_dir, read_fvecs};
use valori_core::Metric;
use valori_core::event::{Batch, CollectionConfig, CollectionName, Event, IndexParams, RecordId};
use valori_core::q16::quantize_vector;
use valori_engine::Engine;

const BATCH: usize = 1000;

fn scratch() -> std::io::Result<tempfile::TempDir> {
    match std::env::var_os("VALORI_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// Writes `chunks` chunks of `chunk` bytes with an fsync after each; returns
/// the elapsed time.
fn raw_write_fsync(path: &Path, chunk: usize, chunks: usize) -> std::io::Result<Duration> {
    let buf = vec![0x5au8; chunk];
    let mut f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)?;
    let start = Instant::now();
    for _ in 0..chunks {
        f.write_all(&buf)?;
        f.sync_data()?;
    }
    Ok(start.elapsed())
}

fn batches(name: &CollectionName, q16: &[i32], dim: usize, id_offset: u64) -> Vec<Event> {
    let rows = q16.len() / dim;
    (0..rows.div_ceil(BATCH))
        .map(|b| {
            let mut batch = Batch::new(dim as u32);
            for r in b * BATCH..((b + 1) * BATCH).min(rows) {
                batch.push(
                    RecordId(id_offset + r as u64),
                    &q16[r * dim..(r + 1) * dim],
                    (r % 10) as u64,
                    &[],
                );
            }
            Event::InsertBatch {
                collection: name.clone(),
                batch,
            }
        })
        .collect()
}

fn create(name: &CollectionName, dim: usize) -> Event {
    Event::CreateCollection {
        name: name.clone(),
        config: CollectionConfig {
            dim: dim as u32,
            metric: Metric::L2,
            index: IndexParams::default(),
        },
    }
}

/// Rounds of the ingest comparison; Valori and the raw disk alternate and
/// the best of each is kept, so that a noisy virtual disk affects both.
const INGEST_ROUNDS: usize = 5;

fn ingest(label: &str, folder: &str) -> Result<(), Box<dyn std::error::Error>> {
    let base = read_fvecs(&data_dir().join(folder).join("base.fvecs"))?;
    let q16 = quantize_vector(&base.data)?;
    let name = CollectionName::new("bench")?;
    let mut best_ours = Duration::MAX;
    let mut best_raw = Duration::MAX;
    let mut index_catch_up = Duration::MAX;
    let mut log_bytes = 0;
    let mut count = 0;
    for _ in 0..INGEST_ROUNDS {
        let events = batches(&name, &q16, base.dim, 0);
        count = events.len();
        let tmp = scratch()?;
        let engine = Engine::open(tmp.path().join("db"))?;
        engine.submit(create(&name, base.dim))?;
        let before = engine.log_size();
        let start = Instant::now();
        for e in events {
            engine.submit(e)?;
        }
        let acknowledged = start.elapsed();
        assert_eq!(engine.log_size(), before + count as u64);
        // The graph is built in the background; how long after the last
        // acknowledgement it holds every complete block.
        engine.wait_for_index()?;
        if acknowledged < best_ours {
            index_catch_up = start.elapsed() - acknowledged;
        }
        best_ours = best_ours.min(acknowledged);
        drop(engine);
        // The bytes the log holds for these batches (frames included).
        log_bytes = std::fs::read_dir(tmp.path().join("db").join("wal"))?
            .map(|e| e.and_then(|e| e.metadata()).map(|m| m.len()).unwrap_or(0))
            .sum::<u64>();
        let chunk = (log_bytes / count as u64) as usize;
        best_raw = best_raw.min(raw_write_fsync(&tmp.path().join("raw"), chunk, count)?);
    }
    let ours = mb(log_bytes) / best_ours.as_secs_f64();
    let disk = mb(log_bytes) / best_raw.as_secs_f64();
    println!(
        "| {label} | {} vectors, {count} batches | {:.0} vectors/s | {ours:.1} MB/s | {disk:.1} MB/s | {:.2} | {:.1} s |",
        base.rows,
        base.rows as f64 / best_ours.as_secs_f64(),
        ours / disk,
        index_catch_up.as_secs_f64()
    );
    Ok(())
}

/// Builds a database of `copies` × glove50-100k (new ids per copy) without
/// timing it, then measures recovery, snapshot save, snapshot load and the
/// state hash.
fn recovery(copies: u64) -> Result<(), Box<dyn std::error::Error>> {
    let base = read_fvecs(&data_dir().join("glove50-100k-l2").join("base.fvecs"))?;
    let q16 = quantize_vector(&base.data)?;
    let name = CollectionName::new("bench")?;
    let tmp = scratch()?;
    let dir = tmp.path().join("db");
    let vectors = copies * base.rows as u64;
    {
        let engine = Engine::open(&dir)?;
        engine.submit(create(&name, base.dim))?;
        for c in 0..copies {
            for e in batches(&name, &q16, base.dim, c * base.rows as u64) {
                engine.submit(e)?;
            }
        }
    }
    let log_bytes: u64 = std::fs::read_dir(dir.join("wal"))?
        .map(|e| {
            e.map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
                .unwrap_or(0)
        })
        .sum();

    let start = Instant::now();
    let engine = Engine::open(&dir)?;
    let replay = start.elapsed();

    // Best of three for each side, alternating, against a noisy disk. The
    // same state gives the same snapshot file each time.
    let raw_path = tmp.path().join("raw");
    let (mut save, mut load, mut raw_w, mut raw_r) =
        (Duration::MAX, Duration::MAX, Duration::MAX, Duration::MAX);
    let mut engine = engine;
    let mut snap = None;
    for _ in 0..3 {
        let start = Instant::now();
        let info = engine.snapshot()?;
        save = save.min(start.elapsed());
        drop(engine);
        // Load = open from the snapshot; the log after it is empty.
        let start = Instant::now();
        engine = Engine::open(&dir)?;
        load = load.min(start.elapsed());
        assert_eq!(engine.recovery_report().snapshot_events, info.events);
        raw_w = raw_w.min(raw_write_fsync(&raw_path, info.bytes as usize, 1)?);
        let start = Instant::now();
        let mut buf = Vec::with_capacity(info.bytes as usize);
        File::open(&raw_path)?.read_to_end(&mut buf)?;
        raw_r = raw_r.min(start.elapsed());
        snap = Some(info);
    }
    let snap = snap.ok_or("no snapshot")?;

    println!(
        "| {vectors} | replay {:.2} s ({:.0} MB/s log) | save {:.2} s ({:.0} MB/s) | load {:.2} s ({:.0} MB/s) | raw write+fsync {:.0} MB/s, raw read {:.0} MB/s | save/raw {:.2}, load/raw {:.2} |",
        replay.as_secs_f64(),
        mb(log_bytes) / replay.as_secs_f64(),
        save.as_secs_f64(),
        mb(snap.bytes) / save.as_secs_f64(),
        load.as_secs_f64(),
        mb(snap.bytes) / load.as_secs_f64(),
        mb(snap.bytes) / raw_w.as_secs_f64(),
        mb(snap.bytes) / raw_r.as_secs_f64(),
        raw_w.as_secs_f64() / save.as_secs_f64(),
        raw_r.as_secs_f64() / load.as_secs_f64(),
    );

    if copies >= 10 {
        // The proof endpoint's cost: a copy of the hashes maintained at
        // every commit.
        let proof = best_time(3, Duration::from_millis(200), || {
            std::hint::black_box(engine.proof().ok());
        });
        // One more write, then the hash again (what a commit pays).
        let v = &q16[..base.dim];
        let start = Instant::now();
        engine.submit(Event::Insert {
            collection: name.clone(),
            record: valori_core::event::Record {
                id: RecordId(u64::MAX),
                vector: v.to_vec(),
                tag: 0,
                metadata: vec![],
            },
        })?;
        let write_and_rehash = start.elapsed();
        let uncached = engine.read(|s| {
            let start = Instant::now();
            std::hint::black_box(s.state_hash_uncached());
            start.elapsed()
        })?;
        println!(
            "\nstate hash at {vectors} vectors: proof() {:.3} µs; one insert incl. fsync and incremental re-hash {:.2} ms; full re-hash from scratch {:.0} ms",
            proof.as_secs_f64() * 1e6,
            write_and_rehash.as_secs_f64() * 1e3,
            uncached.as_secs_f64() * 1e3
        );
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _: PathBuf = data_dir();
    println!(
        "durable ingest, batches of {BATCH}, one writer, fsync per batch; ratio = Valori MB/s / raw MB/s\n"
    );
    println!(
        "| data | size | Valori (acknowledged) | Valori MB/s (log bytes) | raw write+fsync MB/s | ratio | index complete after |"
    );
    println!("|---|---|---|---|---|---|---|");
    ingest("glove50-100k", "glove50-100k-l2")?;
    ingest("wordnet-minilm20k", "wordnet-minilm20k-l2")?;
    println!("\nrecovery and snapshots (glove50 repeated with new ids)\n");
    println!("| vectors | recovery (log replay) | snapshot save | snapshot load | raw | ratios |");
    println!("|---|---|---|---|---|---|");
    recovery(1)?;
    recovery(10)?;
    Ok(())
}
