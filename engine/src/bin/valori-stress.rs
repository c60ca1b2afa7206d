//! `valori-stress`: writes atomic batches into a data directory as fast as
//! it can from several threads, printing `ack BATCH SEQ` for every batch
//! the engine acknowledged (after its fsync). Crash tests SIGKILL it at
//! random moments and check the recovered directory against the printed
//! acknowledgements; it is also the load of the soak test.
//!
//! usage: valori-stress DIR [--threads N] [--batch-size N] [--snapshot-every N] [--batches N]
//!
//! Batch `b` holds ids `b·size .. (b+1)·size`; its vectors and tag are a
//! pure function of `b` (see `valori_engine::stress`), so a checker can
//! rebuild it.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use valori_core::Metric;
use valori_core::event::{CollectionConfig, Event, IndexParams};
use valori_engine::Engine;
use valori_engine::stress::{DIM, batch, collection};

struct Args {
    dir: String,
    threads: u64,
    batch_size: u64,
    snapshot_every: u64,
    batches: u64,
}

fn parse() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or("usage: valori-stress DIR [--threads N] [--batch-size N] [--snapshot-every N] [--batches N]")?;
    let mut out = Args {
        dir,
        threads: 4,
        batch_size: 16,
        snapshot_every: 0,
        batches: u64::MAX,
    };
    while let Some(flag) = args.next() {
        let value: u64 = args
            .next()
            .ok_or(format!("{flag} needs a value"))?
            .parse()
            .map_err(|e| format!("{flag}: {e}"))?;
        match flag.as_str() {
            "--threads" => out.threads = value.max(1),
            "--batch-size" => out.batch_size = value.max(1),
            "--snapshot-every" => out.snapshot_every = value,
            "--batches" => out.batches = value,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(out)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("valori-stress: {e}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("valori-stress: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let engine = Arc::new(Engine::open(&args.dir)?);
    let name = collection();
    let exists = engine.read(|s| s.collection(&name).is_some())?;
    if !exists {
        let config = CollectionConfig {
            dim: DIM,
            metric: Metric::L2,
            index: IndexParams::default(),
        };
        engine.submit(Event::CreateCollection {
            name: name.clone(),
            config,
        })?;
    }
    // Continue after the highest batch present (acknowledged or not).
    let next = engine.read(|s| {
        s.collection(&name).map_or(0, |c| {
            c.ids()
                .iter()
                .map(|id| id.0 / args.batch_size + 1)
                .max()
                .unwrap_or(0)
        })
    })?;
    let counter = Arc::new(AtomicU64::new(next));
    let end = next.saturating_add(args.batches);
    let mut handles = Vec::new();
    for t in 0..args.threads {
        let engine = Arc::clone(&engine);
        let counter = Arc::clone(&counter);
        let name = name.clone();
        let (size, snapshot_every) = (args.batch_size, args.snapshot_every);
        handles.push(std::thread::spawn(move || -> Result<(), String> {
            loop {
                let b = counter.fetch_add(1, Ordering::Relaxed);
                if b >= end {
                    return Ok(());
                }
                let event = Event::InsertBatch {
                    collection: name.clone(),
                    batch: batch(b, size),
                };
                let receipt = engine.submit(event).map_err(|e| e.to_string())?;
                let mut out = std::io::stdout().lock();
                writeln!(out, "ack {b} {}", receipt.seq).map_err(|e| e.to_string())?;
                drop(out);
                if t == 0 && snapshot_every > 0 && b.is_multiple_of(snapshot_every) {
                    let info = engine.snapshot().map_err(|e| e.to_string())?;
                    println!("snapshot {}", info.events);
                }
            }
        }));
    }
    for h in handles {
        h.join().map_err(|_| "writer thread panicked")??;
    }
    engine.checkpoint()?;
    Ok(())
}
