//! Distance kernel throughput: Valori's exact integer kernels next to f32
//! kernels doing the same work, in the same run, on real data.
//!
//! `cargo bench -p valori-benches --bench kernels`
//!
//! For each data set (50-d GloVe, 384-d MiniLM, 784-d MNIST) one query is
//! compared against (a) a cache-resident block of 256 base vectors and (b)
//! the whole base set, which streams from memory. Reported: million
//! distances per second and the ratio of each kernel to the f32 AVX2+FMA
//! kernel.

use std::hint::black_box;
use std::time::Duration;

use valori_benches::{Matrix, best_time, data_dir, read_fvecs};
use valori_core::distance::{Kernel, Path, l2_squared_on, max_abs};
use valori_core::q16::quantize_vector;

/// The f32 kernel a compiler vectorizes: eight independent accumulators
/// (a plain `sum +=` loop is not vectorized, float addition is not
/// associative).
fn l2_f32_autovec(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            let d = x[l] - y[l];
            acc[l] += d * d;
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += (x - y) * (x - y);
    }
    s
}

/// A hand-written AVX2+FMA f32 kernel: four 8-lane accumulators.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn l2_f32_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    // SAFETY: loads stay below n.
    unsafe {
        while i + 32 <= n {
            for (k, slot) in acc.iter_mut().enumerate() {
                let d = _mm256_sub_ps(
                    _mm256_loadu_ps(pa.add(i + 8 * k)),
                    _mm256_loadu_ps(pb.add(i + 8 * k)),
                );
                *slot = _mm256_fmadd_ps(d, d, *slot);
            }
            i += 32;
        }
        while i + 8 <= n {
            let d = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
            acc[0] = _mm256_fmadd_ps(d, d, acc[0]);
            i += 8;
        }
    }
    let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut lanes = [0f32; 8];
    // SAFETY: lanes has 8 floats.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), v) };
    let mut s: f32 = lanes.iter().sum();
    for j in i..n {
        s += (a[j] - b[j]) * (a[j] - b[j]);
    }
    s
}

struct Set {
    name: &'static str,
    f32s: Matrix<f32>,
    q16: Vec<i32>,
}

fn load(name: &'static str, folder: &str) -> std::io::Result<Set> {
    let f32s = read_fvecs(&data_dir().join(folder).join("base.fvecs"))?;
    let q16 = quantize_vector(&f32s.data)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
    Ok(Set { name, f32s, q16 })
}

/// Million distances per second of `kernel` from row 0 to rows `0..rows`.
fn mdps(rows: usize, dim: usize, mut kernel: impl FnMut(usize) -> u64) -> f64 {
    let t = best_time(3, Duration::from_millis(300), || {
        let mut acc = 0u64;
        for r in 0..rows {
            acc = acc.wrapping_add(kernel(r * dim));
        }
        black_box(acc);
    });
    let _ = dim;
    rows as f64 / t.as_secs_f64() / 1e6
}

fn main() -> std::io::Result<()> {
    let sets = [
        load("glove50 (50-d)", "glove50-100k-l2")?,
        load("wordnet-minilm (384-d)", "wordnet-minilm20k-l2")?,
        load("mnist (784-d)", "mnist5k-l2")?,
    ];
    let avx2 = cfg!(target_arch = "x86_64")
        && std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("fma");
    println!(
        "distance kernels, L2 squared, one query against N base vectors; Mdist/s = million distances per second"
    );
    println!("ratio = kernel / f32 AVX2+FMA in the same run\n");
    println!(
        "| data | N | f32 avx2+fma Mdist/s | f32 autovec | i32 exact (dispatched: path) | i32 portable | ratio exact/f32-avx2 | ratio exact/f32-autovec |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for set in &sets {
        let dim = set.f32s.dim;
        let q = &set.q16[..dim];
        let qf = &set.f32s.data[..dim];
        let kernel = Kernel::new(dim, max_abs(&set.q16), max_abs(q));
        for rows in [256usize, set.f32s.rows] {
            let base = &set.q16[..rows * dim];
            let basef = &set.f32s.data[..rows * dim];
            let f_avx = if avx2 {
                // SAFETY: AVX2 and FMA were detected.
                #[cfg(target_arch = "x86_64")]
                let v = mdps(rows, dim, |o| {
                    unsafe { l2_f32_avx2(black_box(qf), &basef[o..o + dim]) }.to_bits() as u64
                });
                #[cfg(not(target_arch = "x86_64"))]
                let v = f64::NAN;
                v
            } else {
                f64::NAN
            };
            let f_auto = mdps(rows, dim, |o| {
                l2_f32_autovec(black_box(qf), &basef[o..o + dim]).to_bits() as u64
            });
            let exact = mdps(rows, dim, |o| {
                kernel.l2_squared(black_box(q), &base[o..o + dim]) as u64
            });
            let portable = mdps(rows, dim, |o| {
                l2_squared_on(Path::Portable, black_box(q), &base[o..o + dim]).unwrap_or(0) as u64
            });
            println!(
                "| {} | {rows} | {f_avx:.1} | {f_auto:.1} | {exact:.1} ({}) | {portable:.1} | {:.2} | {:.2} |",
                set.name,
                kernel.path().name(),
                exact / f_avx,
                exact / f_auto
            );
        }
    }
    Ok(())
}
