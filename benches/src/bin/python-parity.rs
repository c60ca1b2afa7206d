//! The operations of `benches/python_bench.py`, in Rust, for its
//! Python-overhead ratios: a data set inserted into a fresh engine in the
//! same chunks as `Valori.insert_batch` cuts it, the wait for the index,
//! then every query searched in parallel on all cores (as
//! `Valori.search_many` does) at each `ef`.
//!
//!     cargo run --release -p valori-benches --bin python-parity -- \
//!         glove50-100k-l2 [QUERIES] [EF,EF,…]
//!
//! Prints one JSON object on stdout.

use std::time::Instant;

use valori_benches::{data_dir, read_fvecs, read_ivecs};
use valori_core::distance::Metric;
use valori_core::event::{Batch, CollectionConfig, CollectionName, Event, IndexParams, RecordId};
use valori_core::hnsw::SearchOptions;
use valori_core::q16;
use valori_engine::Engine;

/// `valori._client.CHUNK_BYTES_MAX` and its per-record estimate.
const CHUNK_BYTES_MAX: usize = 48 * 1024 * 1024;
const BATCH_RECORDS_MAX: usize = 100_000;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dataset = args.first().map_or("glove50-100k-l2", String::as_str);
    let queries_max: usize = args.get(1).map_or(Ok(1000), |s| s.parse())?;
    let efs: Vec<usize> = args
        .get(2)
        .map_or("64,128", String::as_str)
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let dir = data_dir().join(dataset);
    let base = read_fvecs(&dir.join("base.fvecs"))?;
    let queries = read_fvecs(&dir.join("query.fvecs"))?;
    let truth = read_ivecs(&dir.join("groundtruth.ivecs"))?;
    let nq = queries.rows.min(queries_max);
    let dim = base.dim;

    let tmp = tempfile::tempdir()?;
    let engine = Engine::open(tmp.path())?;
    let name = CollectionName::new("bench")?;
    engine.submit(Event::CreateCollection {
        name: name.clone(),
        config: CollectionConfig {
            dim: dim as u32,
            metric: Metric::L2,
            index: IndexParams::default(),
        },
    })?;

    // Insert: quantize and submit chunk by chunk, as the Python client does.
    let row_bytes = 24 * dim + 64;
    let rows_per_chunk = (CHUNK_BYTES_MAX / row_bytes).clamp(1, BATCH_RECORDS_MAX);
    let started = Instant::now();
    let mut chunks = 0;
    for start in (0..base.rows).step_by(rows_per_chunk) {
        let end = (start + rows_per_chunk).min(base.rows);
        let mut batch = Batch::new(dim as u32);
        batch.vectors = Vec::with_capacity((end - start) * dim);
        q16::quantize_into(&base.data[start * dim..end * dim], &mut batch.vectors)?;
        batch.ids = (start as u64..end as u64).map(RecordId).collect();
        batch.tags = vec![0; end - start];
        batch.metadata_ends = vec![0; end - start];
        engine.submit(Event::InsertBatch {
            collection: name.clone(),
            batch,
        })?;
        chunks += 1;
    }
    let insert_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    engine.wait_for_index()?;
    let index_s = started.elapsed().as_secs_f64();

    let mut raw_queries = Vec::with_capacity(nq * dim);
    q16::quantize_into(&queries.data[..nq * dim], &mut raw_queries)?;
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let mut search = Vec::new();
    for (label, opts) in efs
        .iter()
        .map(|&ef| {
            (
                format!("ef={ef}"),
                SearchOptions {
                    ef,
                    exact: false,
                    tag: None,
                },
            )
        })
        .chain(std::iter::once((
            "exact".to_owned(),
            SearchOptions {
                ef: 64,
                exact: true,
                tag: None,
            },
        )))
    {
        let started = Instant::now();
        let hits: Vec<Vec<u64>> = engine.read(|state| {
            let c = state
                .collection(&name)
                .expect("invariant: the collection was created above");
            let per = nq.div_ceil(threads);
            std::thread::scope(|s| {
                let handles: Vec<_> = raw_queries
                    .chunks(per * dim)
                    .map(|part| {
                        s.spawn(move || {
                            part.chunks(dim)
                                .map(|q| c.search(q, 10, &opts).iter().map(|h| h.1.0).collect())
                                .collect::<Vec<Vec<u64>>>()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().expect("invariant: a search thread does not panic"))
                    .collect()
            })
        })?;
        let secs = started.elapsed().as_secs_f64();
        let found: usize = hits
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let expected = &truth.row(i)[..10];
                row.iter()
                    .filter(|id| expected.contains(&(**id as i32)))
                    .count()
            })
            .sum();
        search.push(format!(
            "{{\"mode\": \"{label}\", \"qps\": {:.1}, \"recall\": {:.4}}}",
            nq as f64 / secs,
            found as f64 / (nq * 10) as f64
        ));
    }
    println!(
        "{{\"dataset\": \"{dataset}\", \"rows\": {}, \"dim\": {dim}, \"queries\": {nq}, \"threads\": {threads}, \
         \"chunks\": {chunks}, \"insert_s\": {insert_s:.4}, \"index_s\": {index_s:.3}, \"search\": [{}]}}",
        base.rows,
        search.join(", ")
    );
    Ok(())
}
