//! Shared helpers of the benchmarks: reading the TEXMEX data sets of
//! `../shared/data` (`*.fvecs`, `*.ivecs`) and timing loops.

use std::path::{Path, PathBuf};

use std::time::{Duration, Instant};
pub use valori_columnar::texmex::{Matrix, read_fvecs, read_ivecs};

/// Where the shared data sets live: `$VALORI_DATA` or `../shared/data`
/// relative to the workspace root.
pub fn data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("VALORI_DATA") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data")
}

/// Runs `f` repeatedly for at least `min` and returns the best time of one
/// call over `rounds` rounds.
pub fn best_time(rounds: usize, min: Duration, mut f: impl FnMut()) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..rounds {
        let start = Instant::now();
        let mut calls = 0u32;
        while start.elapsed() < min {
            f();
            calls += 1;
        }
        best = best.min(start.elapsed() / calls);
    }
    best
}
