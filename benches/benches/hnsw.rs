//! Valori's HNSW index on real data, the Rust half of the side-by-side
//! comparison with hnswlib and faiss (`benches/hnsw_compare.py` runs both
//! halves in one run and prints the ratios).
//!
//! For each data set of `../shared/data`:
//!
//! - build: the base set inserted as `InsertBatch` events of 10,000 rows
//!   through `State::apply_with` and a `RayonPlanner` of T threads, timed;
//!   built once per thread count of {1, 2, T}, and the index hashes of all
//!   of them must be equal (asserted, after printing them);
//! - search: per query one call of `Collection::search` on one thread
//!   (queries quantised to Q16.16 like the base), recall@10 against the
//!   float ground truth and queries per second, for every ef of the sweep;
//! - filtered search: every row carries one tag, chosen from its id so
//!   that four disjoint tags match 50%, 10%, 1% and 0.1% of the rows; per
//!   tag and ef, recall@10 against the exact filtered top 10
//!   (`SearchOptions { exact: true, tag }`), rows returned, and mean latency
//!   next to the unfiltered search at the same ef. `Collection::search`
//!   scans the matching rows instead of walking the graph when they are at
//!   most 1/`FILTER_EXACT_RATIO` of the live rows; for those filters the
//!   graph walk is measured as well (`filtered_graph_forced`), at the
//!   smallest ef whose unfiltered recall@10 reaches 0.95;
//! - memory (`memory`): the resident set of the process (`VmRSS`) before the
//!   base is read, once it and the queries are read and quantised, after
//!   the build, and after the inputs (the floats and
//!   their Q16.16 copy; each insert event is dropped once applied) are
//!   dropped, so that only the
//!   state is left; next to it the bytes of the collection's parts
//!   computed from their lengths (vectors, compact copy, graph, per-row
//!   columns, hashes). Meaningful as "memory of one index" only with
//!   `--no-hash-check`, where a single build runs in the process;
//! - many queries at once (`multicore`): the query set, repeated
//!   `--mc-repeat` times, searched by `Collection::search` in parallel on a
//!   rayon pool of each thread count of `--mc-threads` (as Python's
//!   `search_many` does), at the smallest swept ef whose recall@10 reaches
//!   0.95; next to it the same pools running a fixed integer loop that
//!   touches no memory (`machine_scaling`): the scaling the machine itself
//!   gives at that moment (on a shared machine, less than the cores).
//!
//! `--data-dir` reads the data sets from another folder than the shared
//! one (`benches/hnsw_compare.py` writes its size-sweep sets there);
//! `--no-hash-check` builds only with `--threads` (large sets: the 1- and
//! 2-thread determinism check doubles the build time); `--no-exact` skips
//! the exact-search recall; `--state-cache DIR` keeps the built state as a
//! snapshot file in DIR and reads it back on the next run with the same
//! data set and parameters instead of building (no build time then: for
//! search experiments on the large sets).
//!
//! Output: one JSON object per measurement on stdout, a summary on stderr.
//!
//! `cargo bench -p valori-benches --bench hnsw -- --dataset glove50-100k-l2
//! --m 16 --ef-construction 200 --threads 2 --ef 10,16,32,64`

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use valori_benches::{Matrix, data_dir, read_fvecs, read_ivecs};
use valori_columnar::snapshot::{SnapshotMeta, read_snapshot, write_snapshot};
use valori_core::Metric;
use valori_core::distance::max_abs;
use valori_core::event::{Batch, CollectionConfig, CollectionName, Event, IndexParams, RecordId};
use valori_core::hash::{CHUNK_ROWS, Hash32};
use valori_core::hnsw::{BLOCK_ROWS, INDEX_CHUNK_NODES, SearchOptions, SearchScratch};
use valori_core::merkle::{MerkleLog, leaf_hash};
use valori_core::q16::quantize_vector;
use valori_core::state::{Collection, FILTER_EXACT_RATIO, State};
use valori_engine::index::RayonPlanner;

/// For filters that `Collection::search` scans, the graph walk is also
/// measured at the smallest swept ef whose unfiltered recall@10 reaches
/// this.
const GRAPH_FILTER_RECALL: f64 = 0.95;

/// Rows per `InsertBatch` event.
const BATCH_ROWS: usize = 10_000;
const K: usize = 10;
/// The index seed of every build; the level of a node is a function of it
/// and the record id.
const SEED: u64 = 0x5641_4c4f_5249_0001;

/// One filter of the sweep: rows with `tag` make up `selectivity` of the
/// collection. The tags are disjoint, so one tag column serves all four.
struct Filter {
    tag: u64,
    selectivity: f64,
}

const FILTERS: [Filter; 4] = [
    Filter {
        tag: 1,
        selectivity: 0.5,
    },
    Filter {
        tag: 2,
        selectivity: 0.1,
    },
    Filter {
        tag: 3,
        selectivity: 0.01,
    },
    Filter {
        tag: 4,
        selectivity: 0.001,
    },
];

/// The tag of record `id`, by `r = id mod 1000`: odd `r` → 1 (500 of 1000),
/// `r mod 10 == 2` → 2 (100), `r mod 100 == 50` → 3 (10), `r == 0` → 4 (1),
/// else 0. The four conditions never hold together (1 is odd, 2, 3 and 4
/// even and different mod 10 or mod 100), so the fractions are exact for a
/// multiple of 1,000 rows.
fn tag_of(id: u64) -> u64 {
    let r = id % 1000;
    if r % 2 == 1 {
        1
    } else if r % 10 == 2 {
        2
    } else if r % 100 == 50 {
        3
    } else if r == 0 {
        4
    } else {
        0
    }
}

struct Args {
    datasets: Vec<String>,
    m: u16,
    ef_construction: u16,
    threads: usize,
    efs: Vec<usize>,
    rounds: usize,
    /// Skip the filtered sweep (for quick runs).
    filtered: bool,
    /// Build with 1 and 2 threads as well and compare the index hashes.
    hash_check: bool,
    /// Measure the recall of exact search.
    exact: bool,
    /// Thread counts of the many-queries-at-once measurement.
    mc_threads: Vec<usize>,
    /// How many times the query set is repeated in that measurement.
    mc_repeat: usize,
    /// Where the data sets are, instead of `data_dir()`.
    data_dir: Option<PathBuf>,
    /// Folder of built states kept between runs (snapshots), so that search
    /// experiments at 400k–1M rows skip the build.
    state_cache: Option<PathBuf>,
}

fn parse_list<T: std::str::FromStr>(s: &str) -> Result<Vec<T>, String> {
    s.split(',')
        .map(|x| {
            x.trim()
                .parse()
                .map_err(|_| format!("bad list element {x:?}"))
        })
        .collect()
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        datasets: vec![
            "glove50-100k-l2".into(),
            "wordnet-minilm20k-l2".into(),
            "mnist5k-l2".into(),
        ],
        m: 16,
        ef_construction: 200,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        efs: vec![10, 16, 24, 32, 48, 64, 96, 128, 192, 256],
        rounds: 3,
        filtered: true,
        hash_check: true,
        exact: true,
        mc_threads: vec![1, 2],
        mc_repeat: 5,
        data_dir: None,
        state_cache: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        // `cargo bench` passes `--bench` to every bench binary.
        if flag == "--bench" {
            continue;
        }
        match flag.as_str() {
            "--no-filtered" => {
                args.filtered = false;
                continue;
            }
            "--no-hash-check" => {
                args.hash_check = false;
                continue;
            }
            "--no-exact" => {
                args.exact = false;
                continue;
            }
            _ => {}
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |_| format!("bad value {value:?} for {flag}");
        match flag.as_str() {
            "--dataset" => args.datasets = parse_list(&value)?,
            "--m" => args.m = value.parse().map_err(bad)?,
            "--ef-construction" => args.ef_construction = value.parse().map_err(bad)?,
            "--threads" => args.threads = value.parse().map_err(bad)?,
            "--ef" => args.efs = parse_list(&value)?,
            "--rounds" => args.rounds = value.parse().map_err(bad)?,
            "--mc-threads" => args.mc_threads = parse_list(&value)?,
            "--mc-repeat" => args.mc_repeat = value.parse().map_err(bad)?,
            "--data-dir" => args.data_dir = Some(PathBuf::from(&value)),
            "--state-cache" => args.state_cache = Some(PathBuf::from(&value)),
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    if args.threads == 0
        || args.rounds == 0
        || args.efs.is_empty()
        || args.mc_repeat == 0
        || args.mc_threads.contains(&0)
    {
        return Err("threads, rounds, mc-repeat and the ef list must be non-zero".into());
    }
    Ok(args)
}

/// A JSON object written by hand (the benches crate has no serde).
struct Json(String);

impl Json {
    fn new(kind: &str, dataset: &str) -> Json {
        Json(format!("{{\"kind\":\"{kind}\",\"dataset\":\"{dataset}\""))
    }
    fn str(mut self, key: &str, v: &str) -> Json {
        let _ = write!(self.0, ",\"{key}\":\"{v}\"");
        self
    }
    fn num(mut self, key: &str, v: f64) -> Json {
        let _ = write!(
            self.0,
            ",\"{key}\":{}",
            if v.is_finite() { v } else { -1.0 }
        );
        self
    }
    fn int(mut self, key: &str, v: u64) -> Json {
        let _ = write!(self.0, ",\"{key}\":{v}");
        self
    }
    fn bool(mut self, key: &str, v: bool) -> Json {
        let _ = write!(self.0, ",\"{key}\":{v}");
        self
    }
    fn emit(mut self) {
        self.0.push('}');
        println!("{}", self.0);
    }
}

/// Best wall time of `rounds` runs of `f` (the VM is shared: noise only
/// ever slows a run down), with the result of the last run.
fn best_of<R>(rounds: usize, mut f: impl FnMut() -> R) -> (Duration, R) {
    let mut best = Duration::MAX;
    let mut out = None;
    for _ in 0..rounds {
        let start = Instant::now();
        let r = f();
        best = best.min(start.elapsed());
        out = Some(r);
    }
    (best, out.expect("invariant: rounds > 0"))
}

/// The `b`-th `InsertBatch` event of the base set (`BATCH_ROWS` rows).
fn insert_event(name: &CollectionName, q16: &[i32], dim: usize, b: usize) -> Event {
    let rows = q16.len() / dim;
    let mut batch = Batch::new(dim as u32);
    for r in b * BATCH_ROWS..((b + 1) * BATCH_ROWS).min(rows) {
        let id = r as u64;
        batch.push(RecordId(id), &q16[r * dim..(r + 1) * dim], tag_of(id), &[]);
    }
    Event::InsertBatch {
        collection: name.clone(),
        batch,
    }
}

/// Builds the collection with `threads` planner threads; returns the state
/// and the wall time of the inserts alone. Each event is made just before
/// it is applied and dropped after (outside the timed part), so that the
/// inputs never hold a second copy of the whole base set.
fn build(
    name: &CollectionName,
    config: CollectionConfig,
    q16: &[i32],
    threads: usize,
) -> Result<(State, Duration), Box<dyn std::error::Error>> {
    let dim = config.dim as usize;
    let planner = RayonPlanner::new(threads);
    let mut state = State::new();
    state.apply(&Event::CreateCollection {
        name: name.clone(),
        config,
    })?;
    let events = (q16.len() / dim).div_ceil(BATCH_ROWS);
    let mut took = Duration::ZERO;
    for b in 0..events {
        let event = insert_event(name, q16, dim, b);
        let start = Instant::now();
        state.apply_with(&event, &planner)?;
        took += start.elapsed();
        // A large build takes minutes: say that it is alive.
        if (b + 1) % 10 == 0 && b + 1 < events {
            eprintln!(
                "  {} of {} rows inserted, {:.0} s",
                (b + 1) * BATCH_ROWS,
                q16.len() / dim,
                took.as_secs_f64()
            );
        }
    }
    Ok((state, took))
}

/// Builds with every thread count of the run (1 and 2 as well, for the
/// determinism check, unless `--no-hash-check`), prints each build's time
/// and index hash, asserts the hashes equal, and returns the `--threads`
/// build.
fn build_all(
    args: &Args,
    dataset: &str,
    name: &CollectionName,
    config: CollectionConfig,
    q16: &[i32],
    rows: usize,
) -> Result<State, Box<dyn std::error::Error>> {
    let dim = config.dim as usize;
    // Thread counts to build with: 1 and 2 for the determinism check, and
    // T; the T-thread build is the one timed against the peers and searched.
    let mut thread_counts = if args.hash_check {
        vec![1, 2, args.threads]
    } else {
        vec![args.threads]
    };
    thread_counts.sort_unstable();
    thread_counts.dedup();
    let mut hashes = Vec::new();
    let mut kept = None;
    for &t in &thread_counts {
        let (state, took) = build(name, config, q16, t)?;
        let c = state
            .collection(name)
            .expect("invariant: the collection was created");
        assert_eq!(c.rows(), rows);
        // The graph takes whole aligned blocks; the rows of an incomplete
        // last block are scanned exactly by every search.
        assert_eq!(
            c.indexed_rows(),
            rows / BLOCK_ROWS * BLOCK_ROWS,
            "invariant: every complete block is indexed"
        );
        let h = c.index_hash_uncached();
        eprintln!(
            "{dataset}: build {} x {dim}, M={} efc={}, {t} thread(s): {:.2} s, index hash {h}",
            rows,
            args.m,
            args.ef_construction,
            took.as_secs_f64()
        );
        Json::new("build", dataset)
            .int("rows", rows as u64)
            .int("dim", dim as u64)
            .int("m", u64::from(args.m))
            .int("ef_construction", u64::from(args.ef_construction))
            .int("threads", t as u64)
            .num("build_s", took.as_secs_f64())
            .str("index_hash", &h.to_string())
            .int("indexed_rows", c.indexed_rows() as u64)
            .int("max_level", u64::from(c.index().max_level()))
            .emit();
        hashes.push((t, h));
        if t == args.threads {
            kept = Some(state);
        }
    }
    let all_equal = hashes.iter().all(|(_, h)| *h == hashes[0].1);
    let mut check = Json::new("hash_check", dataset);
    for (t, h) in &hashes {
        check = check.str(&format!("hash_t{t}"), &h.to_string());
    }
    check
        .bool("equal", all_equal)
        .bool("checked", args.hash_check)
        .emit();
    assert!(
        all_equal,
        "{dataset}: index hashes differ between thread counts: {hashes:?}"
    );
    Ok(kept.expect("invariant: T is among the thread counts"))
}

/// Keeps a built state for later runs, as a snapshot file. The log of the
/// bench is not kept: the leaves stand for its events, one per applied
/// event, so that the file reads back like any snapshot.
fn save_state(
    state: &mut State,
    rows: usize,
    path: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    // The collection's creation, then one insert per batch.
    let events = 1 + rows.div_ceil(BATCH_ROWS) as u64;
    let log_leaves: Vec<Hash32> = (0..events).map(|i| leaf_hash(&i.to_le_bytes())).collect();
    let hashes = state.hashes();
    let meta = SnapshotMeta {
        events,
        state_hash: hashes.state,
        index_hash: hashes.index,
        log_root: MerkleLog::from_leaves(log_leaves.clone()).root(),
        log_leaves,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    write_snapshot(state, &meta, &mut out)?;
    out.into_inner()?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    eprintln!("  state kept in {}", path.display());
    Ok(())
}

/// Reads a state kept by [`save_state`]. The snapshot reader checks the
/// graph against the index hash recorded with it; the caller prints the
/// collection's index hash, so that runs from the cache can be matched
/// with the build they came from.
fn load_state(path: &Path) -> Result<State, Box<dyn std::error::Error>> {
    let bytes = std::fs::read(path)?;
    Ok(read_snapshot(&bytes)?.0)
}

/// Fraction of `truth` ids (per query, its first `K`, or fewer when fewer
/// exist) found in `found`.
fn recall(found: &[Vec<u64>], truth: &[Vec<u64>]) -> f64 {
    let mut hits = 0usize;
    let mut total = 0usize;
    for (f, t) in found.iter().zip(truth) {
        let t: HashSet<u64> = t.iter().take(K).copied().collect();
        hits += f.iter().take(K).filter(|id| t.contains(id)).count();
        total += t.len();
    }
    if total == 0 {
        1.0
    } else {
        hits as f64 / total as f64
    }
}

fn ids(hits: &[(valori_core::Distance, RecordId)]) -> Vec<u64> {
    hits.iter().map(|(_, id)| id.0).collect()
}

/// A fixed amount of integer work (a few microseconds) that touches no
/// memory: the control for the scaling of many queries on a pool.
fn spin(seed: u64) -> u64 {
    let mut x = seed | 1;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    x
}

/// Resident memory of this process in bytes (`VmRSS` of
/// `/proc/self/status`), or 0 where that file does not exist.
fn rss_bytes() -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Bytes of the parts of a collection, computed from their lengths (the
/// state does not report its own size): what the RSS growth is made of.
/// Capacity beyond the lengths, the id → row map and allocator overhead
/// are not counted; they are in the difference to the RSS.
struct Parts {
    /// Q16.16 vectors, 4 bytes per component.
    vectors: u64,
    /// The 16-bit copy the walks read, rows padded to whole SIMD lanes.
    compact: u64,
    /// Layer-0 slots (2·M per node, full or not), their lengths, levels,
    /// layer-0 in-degrees, and the upper layers' lists.
    graph: u64,
    /// Ids, tags, tombstones, metadata offsets and the per-tag row lists.
    columns: u64,
    /// Cached chunk hashes of the rows and of the graph.
    hashes: u64,
}

fn parts(c: &Collection) -> Parts {
    let n = c.rows() as u64;
    let indexed = c.indexed_rows() as u64;
    let view = c.view(0);
    let compact = view.compact.map_or(0, |k| {
        if k.is_empty() {
            0
        } else {
            k.len() as u64 * k.row(0).len() as u64 * 2
        }
    });
    let graph = c.index().held_bytes();
    let hash = size_of::<Option<Hash32>>() as u64;
    Parts {
        vectors: n * c.dim() as u64 * 4,
        compact,
        graph,
        // ids (8), tags (8), tombstone (1), metadata start (8) and length
        // (4), one entry in one tag's row list (4).
        columns: n * (8 + 8 + 1 + 8 + 4 + 4),
        hashes: (n.div_ceil(CHUNK_ROWS as u64) + indexed.div_ceil(INDEX_CHUNK_NODES as u64)) * hash,
    }
}

fn run(args: &Args, dataset: &str) -> Result<(), Box<dyn std::error::Error>> {
    let dir = args.data_dir.clone().unwrap_or_else(data_dir).join(dataset);
    let rss_start = rss_bytes();
    let base = read_fvecs(&dir.join("base.fvecs"))?;
    let queries: Matrix<f32> = read_fvecs(&dir.join("query.fvecs"))?;
    let gt = read_ivecs(&dir.join("groundtruth.ivecs"))?;
    assert_eq!(
        base.dim, queries.dim,
        "{dataset}: base and query dimensions differ"
    );
    assert!(
        gt.rows == queries.rows && gt.dim >= K,
        "{dataset}: ground truth does not match"
    );
    let dim = base.dim;
    let q16 = quantize_vector(&base.data)?;
    let qq = quantize_vector(&queries.data)?;
    let rss_loaded = rss_bytes();
    let query = |i: usize| &qq[i * dim..(i + 1) * dim];
    let nq = queries.rows;
    let truth: Vec<Vec<u64>> = (0..nq)
        .map(|i| gt.row(i)[..K].iter().map(|&x| x as u64).collect())
        .collect();

    let name = CollectionName::new("bench")?;
    let config = CollectionConfig {
        dim: dim as u32,
        metric: Metric::L2,
        index: IndexParams {
            m: args.m,
            ef_construction: args.ef_construction,
            seed: SEED,
        },
    };

    let cache = args.state_cache.as_ref().map(|d| {
        d.join(format!(
            "{dataset}-{}x{dim}-m{}-efc{}-seed{SEED:x}.snap",
            base.rows, args.m, args.ef_construction
        ))
    });
    let state = match cache.as_ref().filter(|p| p.exists()) {
        Some(path) => {
            let state = load_state(path)?;
            let c = state
                .collection(&name)
                .ok_or("the kept state has no collection \"bench\"")?;
            eprintln!(
                "{dataset}: state read from {} (no build), index hash {}",
                path.display(),
                c.index_hash_uncached()
            );
            state
        }
        None => {
            let mut state = build_all(args, dataset, &name, config, &q16, base.rows)?;
            if let Some(path) = &cache {
                save_state(&mut state, base.rows, path)?;
            }
            state
        }
    };
    let c = state
        .collection(&name)
        .expect("invariant: the collection was created");

    // Memory: drop every input so that only the state is left.
    let rss_built = rss_bytes();
    let rows = base.rows;
    drop(q16);
    drop(base);
    let rss_index = rss_bytes();
    let p = parts(c);
    let sum = p.vectors + p.compact + p.graph + p.columns + p.hashes;
    let per = |b: u64| b as f64 / rows as f64;
    eprintln!(
        "{dataset}: RSS {:.1} MiB before loading, {:.1} MiB loaded, {:.1} MiB built, {:.1} MiB with inputs dropped: \
         {:.1} bytes/vector (parts {:.1}: vectors {:.1}, compact {:.1}, graph {:.1}, columns {:.1}, hashes {:.2})",
        rss_start as f64 / 1048576.0,
        rss_loaded as f64 / 1048576.0,
        rss_built as f64 / 1048576.0,
        rss_index as f64 / 1048576.0,
        per(rss_index.saturating_sub(rss_start)),
        per(sum),
        per(p.vectors),
        per(p.compact),
        per(p.graph),
        per(p.columns),
        per(p.hashes),
    );
    Json::new("memory", dataset)
        .int("rows", rows as u64)
        .bool("single_build", !args.hash_check)
        .int("rss_start", rss_start)
        .int("rss_loaded", rss_loaded)
        .int("rss_built", rss_built)
        .int("rss_index", rss_index)
        .int("vectors", p.vectors)
        .int("compact", p.compact)
        .int("graph", p.graph)
        .int("columns", p.columns)
        .int("hashes", p.hashes)
        .emit();

    // Exact search: how much Q16.16 rounding alone costs against the float
    // ground truth (the ceiling of the graph's recall).
    if args.exact {
        let exact = SearchOptions {
            ef: K,
            exact: true,
            tag: None,
        };
        let (t_exact, found) = best_of(1, || {
            (0..nq)
                .map(|i| ids(&c.search(query(i), K, &exact)))
                .collect::<Vec<_>>()
        });
        let r_exact = recall(&found, &truth);
        eprintln!(
            "{dataset}: exact search recall@10 {r_exact:.4}, {:.0} queries/s",
            nq as f64 / t_exact.as_secs_f64()
        );
        Json::new("exact", dataset)
            .num("recall", r_exact)
            .num("qps", nq as f64 / t_exact.as_secs_f64())
            .emit();
    }

    let mut unfiltered_latency = Vec::new();
    let mut unfiltered_recall = Vec::new();
    let mut ef_target = None;
    for &ef in &args.efs {
        let opts = SearchOptions {
            ef,
            exact: false,
            tag: None,
        };
        let (t, found) = best_of(args.rounds, || {
            (0..nq)
                .map(|i| ids(&c.search(query(i), K, &opts)))
                .collect::<Vec<_>>()
        });
        let r = recall(&found, &truth);
        if ef_target.is_none() && r >= GRAPH_FILTER_RECALL {
            ef_target = Some(ef);
        }
        let short = found.iter().filter(|f| f.len() < K).count();
        let qps = nq as f64 / t.as_secs_f64();
        let latency_us = t.as_secs_f64() / nq as f64 * 1e6;
        unfiltered_latency.push(latency_us);
        unfiltered_recall.push(r);
        eprintln!("{dataset}: ef={ef:4} recall@10 {r:.4}  {qps:9.0} q/s");
        Json::new("search", dataset)
            .int("ef", ef as u64)
            .num("recall", r)
            .num("qps", qps)
            .num("mean_latency_us", latency_us)
            .int("short_results", short as u64)
            .emit();
    }

    // Many queries at once on a pool of each thread count, at the smallest
    // swept ef that reaches recall@10 0.95 (or the largest ef).
    let ef_mc = ef_target.unwrap_or(args.efs[args.efs.len() - 1]);
    let r_mc = unfiltered_recall[args.efs.iter().position(|&e| e == ef_mc).unwrap_or(0)];
    let opts = SearchOptions {
        ef: ef_mc,
        exact: false,
        tag: None,
    };
    let total = nq * args.mc_repeat;
    for &t in &args.mc_threads {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build()?;
        let (took, found) = best_of(args.rounds, || {
            pool.install(|| {
                (0..total)
                    .into_par_iter()
                    .map(|j| ids(&c.search(query(j % nq), K, &opts)))
                    .collect::<Vec<_>>()
            })
        });
        // The answers do not depend on the thread count.
        let r = recall(&found[..nq], &truth);
        assert!(
            (r - r_mc).abs() < 1e-12,
            "{dataset}: recall on {t} threads {r} differs from one thread {r_mc}"
        );
        let qps = total as f64 / took.as_secs_f64();
        eprintln!("{dataset}: {total} queries at once, ef={ef_mc}, {t} thread(s): {qps:9.0} q/s");
        Json::new("multicore", dataset)
            .int("threads", t as u64)
            .int("ef", ef_mc as u64)
            .int("queries", total as u64)
            .num("recall", r)
            .num("qps", qps)
            .emit();
    }
    // The same pools on work that needs no memory: what the machine gives.
    for &t in &args.mc_threads {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build()?;
        let (took, sum) = best_of(args.rounds, || {
            pool.install(|| (0..total as u64).into_par_iter().map(spin).sum::<u64>())
        });
        let per_s = total as f64 / took.as_secs_f64();
        eprintln!(
            "{dataset}: fixed integer loop, {total} items, {t} thread(s): {per_s:9.0} items/s"
        );
        Json::new("machine_scaling", dataset)
            .int("threads", t as u64)
            .int("items", total as u64)
            .int("checksum", sum & 0xffff)
            .num("per_s", per_s)
            .emit();
    }

    if !args.filtered {
        return Ok(());
    }
    let live = c.live() as u64;
    for f in &FILTERS {
        let matching = c.tag_count(f.tag);
        // The same rule as `Collection::search_with`: whether this filter
        // walks the graph or scans the matching rows.
        let path = if c.index().is_empty()
            || matching <= K as u64
            || matching.saturating_mul(FILTER_EXACT_RATIO) <= live
        {
            "exact-scan"
        } else {
            "graph"
        };
        let exact = SearchOptions {
            ef: K,
            exact: true,
            tag: Some(f.tag),
        };
        let ftruth: Vec<Vec<u64>> = (0..nq)
            .map(|i| ids(&c.search(query(i), K, &exact)))
            .collect();
        let expected = (matching as usize).min(K);
        for (&ef, &unf_us) in args.efs.iter().zip(&unfiltered_latency) {
            let opts = SearchOptions {
                ef,
                exact: false,
                tag: Some(f.tag),
            };
            let (t, found) = best_of(args.rounds, || {
                (0..nq)
                    .map(|i| c.search(query(i), K, &opts))
                    .collect::<Vec<_>>()
            });
            let wrong_tag = found
                .iter()
                .flatten()
                .filter(|(_, id)| tag_of(id.0) != f.tag)
                .count();
            let found: Vec<Vec<u64>> = found.iter().map(|h| ids(h)).collect();
            let r = recall(&found, &ftruth);
            let returned_min = found.iter().map(Vec::len).min().unwrap_or(0);
            let returned_mean = found.iter().map(Vec::len).sum::<usize>() as f64 / nq as f64;
            let short = found.iter().filter(|h| h.len() < expected).count();
            let latency_us = t.as_secs_f64() / nq as f64 * 1e6;
            eprintln!(
                "{dataset}: tag {} ({:5.1}%, {matching} rows, {path}) ef={ef:4} recall@10 {r:.4} \
                 returned min {returned_min} mean {returned_mean:.2}, {latency_us:8.1} µs vs {unf_us:8.1} µs unfiltered ({:.2}x)",
                f.tag,
                f.selectivity * 100.0,
                latency_us / unf_us
            );
            Json::new("filtered", dataset)
                .int("ef", ef as u64)
                .num("selectivity", f.selectivity)
                .int("tag", f.tag)
                .int("matching", matching)
                .int("live", live)
                .str("path", path)
                .num("recall", r)
                .int("returned_min", returned_min as u64)
                .num("returned_mean", returned_mean)
                .int("short_results", short as u64)
                .int("wrong_tag", wrong_tag as u64)
                .num("mean_latency_us", latency_us)
                .num("unfiltered_latency_us", unf_us)
                .num("latency_ratio", latency_us / unf_us)
                .emit();
        }
        // What the graph walk alone would give for a filter that `search`
        // sends to the scan, at one ef: the evidence for or against the
        // scan threshold.
        if path == "exact-scan" && matching > K as u64 {
            let ef = ef_target.unwrap_or(args.efs[args.efs.len() - 1]);
            let unf_us = unfiltered_latency[args.efs.iter().position(|&e| e == ef).unwrap_or(0)];
            let mut scratch = SearchScratch::new();
            let (t, found) = best_of(1, || {
                (0..nq)
                    .map(|i| ids(&graph_filtered(c, query(i), ef, f.tag, &mut scratch)))
                    .collect::<Vec<_>>()
            });
            let r = recall(&found, &ftruth);
            let returned_min = found.iter().map(Vec::len).min().unwrap_or(0);
            let latency_us = t.as_secs_f64() / nq as f64 * 1e6;
            eprintln!(
                "{dataset}: tag {} ({:5.1}%) forced graph walk ef={ef:4} recall@10 {r:.4} \
                 returned min {returned_min}, {latency_us:8.1} µs vs {unf_us:8.1} µs unfiltered ({:.2}x)",
                f.tag,
                f.selectivity * 100.0,
                latency_us / unf_us
            );
            Json::new("filtered_graph_forced", dataset)
                .int("ef", ef as u64)
                .num("selectivity", f.selectivity)
                .int("tag", f.tag)
                .int("matching", matching)
                .num("recall", r)
                .int("returned_min", returned_min as u64)
                .num("mean_latency_us", latency_us)
                .num("unfiltered_latency_us", unf_us)
                .num("latency_ratio", latency_us / unf_us)
                .emit();
        }
    }
    Ok(())
}

/// The filtered search `Collection::search_with` would run if it did not
/// switch to a scan: the graph walk admitting only rows with `tag`, plus
/// the exact scan of the rows of an incomplete last block, which are not
/// in the graph yet.
fn graph_filtered(
    c: &Collection,
    query: &[i32],
    ef: usize,
    tag: u64,
    scratch: &mut SearchScratch,
) -> Vec<(valori_core::Distance, RecordId)> {
    let view = c.view(max_abs(query));
    let accept = |r: u32| !view.deleted[r as usize] && view.tags[r as usize] == tag;
    let mut hits: Vec<(valori_core::Distance, RecordId)> = c
        .index()
        .search(&view, query, ef.max(K), scratch, accept)
        .into_iter()
        .map(|(d, r)| (d, c.ids()[r as usize]))
        .collect();
    for r in c.indexed_rows()..c.rows() {
        if accept(r as u32) {
            hits.push((view.distance(query, r as u32), c.ids()[r]));
        }
    }
    hits.sort_unstable();
    hits.truncate(K);
    hits
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // As `valori serve` does: large rows and graphs on huge pages.
    valori_engine::huge_pages::restart_with_huge_pages();
    let args = parse_args().map_err(|e| {
        format!(
            "{e}\nusage: hnsw [--dataset a,b] [--m 16] [--ef-construction 200] [--threads T] \
             [--ef 10,16,..] [--rounds 3] [--no-filtered] [--no-hash-check] [--no-exact] \
             [--mc-threads 1,2] [--mc-repeat 5] [--data-dir DIR] [--state-cache DIR]"
        )
    })?;
    for dataset in &args.datasets {
        run(&args, dataset)?;
    }
    Ok(())
}
