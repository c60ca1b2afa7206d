//! Exact integer distances between Q16.16 vectors.
//!
//! Every kernel returns the exact mathematical value of its sum; there is no
//! rounding anywhere, so the scalar, portable and SIMD paths cannot disagree.
//! Two families exist:
//!
//! - **wide** paths accumulate in 128 bits and are exact for every input the
//!   data model admits (any `i32` component, dimension up to
//!   [`DIM_MAX`](crate::limits::DIM_MAX));
//! - **narrow** paths accumulate in 64 bits and are used only when a
//!   [`Headroom`] check, made once per query from the largest component
//!   magnitudes on both sides, proves that no partial sum can overflow.
//!
//! The choice between them changes speed, never the result.
//!
//! Metrics and their ordering keys (smaller is nearer):
//!
//! - `L2`: `Σ (a_i − b_i)²` in raw units (2^-32 of the real squared distance).
//! - `InnerProduct`: `−Σ a_i·b_i` (pgvector's `<#>`: the negative inner
//!   product), in raw units.
//! - `Cosine`: `⌊2^32 · (den − a·b) / den⌋` with
//!   `den = ⌊√(a·a)⌋ · ⌊√(b·b)⌋`, i.e. `1 − cos(a, b)` in Q32.32 with
//!   integer square roots, rounded towards −∞ (Euclidean division). A zero
//!   vector has distance exactly `2^32` (cosine 0) to everything.

#[cfg(target_arch = "aarch64")]
mod aarch64;
pub mod compact;
mod portable;
mod wide;
#[cfg(target_arch = "x86_64")]
mod x86_64;

use core::fmt;

/// Distance metric of a collection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Metric {
    L2 = 1,
    InnerProduct = 2,
    Cosine = 3,
}

impl Metric {
    /// The metric's byte in the canonical encoding.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// Inverse of [`Metric::code`].
    pub const fn from_code(code: u8) -> Option<Metric> {
        match code {
            1 => Some(Metric::L2),
            2 => Some(Metric::InnerProduct),
            3 => Some(Metric::Cosine),
            _ => None,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Metric::L2 => "l2",
            Metric::InnerProduct => "inner_product",
            Metric::Cosine => "cosine",
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An exact ordering key; smaller is nearer. Results are always ordered by
/// `(Distance, RecordId)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Distance(pub i128);

/// Cosine distance key for a zero vector: cosine taken as 0.
pub const COSINE_ZERO_VECTOR: i128 = 1 << 32;

/// Largest absolute component of a vector, as `u32` (|i32::MIN| = 2^31).
pub fn max_abs(v: &[i32]) -> u32 {
    v.iter().fold(0u32, |m, &x| m.max(x.unsigned_abs()))
}

/// Proof, made once per query, that 64-bit accumulation is exact for vectors
/// of `dim` components whose magnitudes are bounded by the two maxima.
///
/// Narrow L2 needs `|a_i| + |b_i|` to fit an `i32` (the SIMD paths subtract
/// in 32 bits) and `dim · (max_a + max_b)² ≤ i64::MAX`; narrow dot products
/// need `dim · max_a · max_b ≤ i64::MAX`, which the first condition implies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Headroom {
    narrow: bool,
}

impl Headroom {
    pub fn new(dim: usize, max_abs_a: u32, max_abs_b: u32) -> Headroom {
        let sum = u128::from(max_abs_a) + u128::from(max_abs_b);
        let narrow = sum <= i32::MAX as u128 && (dim as u128) * sum * sum <= i64::MAX as u128;
        Headroom { narrow }
    }

    /// Whether 64-bit accumulation is exact.
    pub const fn is_narrow(self) -> bool {
        self.narrow
    }
}

/// One implementation of the kernels. All of them return identical values;
/// they exist for speed and are all tested against an i128 reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// 128-bit scalar accumulation, exact for every input.
    Wide,
    /// 64-bit scalar accumulation, four lanes, for any target.
    Portable,
    /// 64-bit accumulation in AVX2 lanes (x86-64).
    Avx2,
    /// 64-bit accumulation in NEON lanes (aarch64).
    Neon,
}

impl Path {
    /// Every path, for tests and benchmarks.
    pub const ALL: [Path; 4] = [Path::Wide, Path::Portable, Path::Avx2, Path::Neon];

    /// Whether this CPU can run the path.
    pub fn is_available(self) -> bool {
        match self {
            Path::Wide | Path::Portable => true,
            Path::Avx2 => avx2_available(),
            Path::Neon => cfg!(all(target_arch = "aarch64", target_feature = "neon")),
        }
    }

    /// Whether the path accumulates in 64 bits and needs narrow headroom.
    pub const fn is_narrow(self) -> bool {
        !matches!(self, Path::Wide)
    }

    /// The fastest narrow path this CPU runs.
    pub fn best_narrow() -> Path {
        if Path::Avx2.is_available() {
            Path::Avx2
        } else if Path::Neon.is_available() {
            Path::Neon
        } else {
            Path::Portable
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Path::Wide => "wide",
            Path::Portable => "portable",
            Path::Avx2 => "avx2",
            Path::Neon => "neon",
        }
    }
}

#[cfg(all(target_arch = "x86_64", feature = "std"))]
fn avx2_available() -> bool {
    std::is_x86_feature_detected!("avx2")
}

#[cfg(all(target_arch = "x86_64", not(feature = "std")))]
fn avx2_available() -> bool {
    cfg!(target_feature = "avx2")
}

#[cfg(not(target_arch = "x86_64"))]
fn avx2_available() -> bool {
    false
}

/// Exact squared L2 on a given path, or `None` when the path cannot run here
/// or lacks the headroom for these inputs.
pub fn l2_squared_on(path: Path, a: &[i32], b: &[i32]) -> Option<u128> {
    assert_eq!(
        a.len(),
        b.len(),
        "invariant: distance operands have one dimension"
    );
    if !path.is_available() {
        return None;
    }
    if path.is_narrow() && !Headroom::new(a.len(), max_abs(a), max_abs(b)).is_narrow() {
        return None;
    }
    Some(match path {
        Path::Wide => wide::l2_squared(a, b),
        Path::Portable => u128::from(portable::l2_squared(a, b)),
        // SAFETY (both arms): availability was checked above and headroom
        // was proven for these inputs.
        #[cfg(target_arch = "x86_64")]
        Path::Avx2 => u128::from(unsafe { x86_64::l2_squared(a, b) }),
        #[cfg(target_arch = "aarch64")]
        Path::Neon => u128::from(unsafe { aarch64::l2_squared(a, b) }),
        #[allow(unreachable_patterns)]
        _ => return None,
    })
}

/// Exact dot product on a given path; see [`l2_squared_on`].
pub fn dot_on(path: Path, a: &[i32], b: &[i32]) -> Option<i128> {
    assert_eq!(
        a.len(),
        b.len(),
        "invariant: distance operands have one dimension"
    );
    if !path.is_available() {
        return None;
    }
    if path.is_narrow() && !Headroom::new(a.len(), max_abs(a), max_abs(b)).is_narrow() {
        return None;
    }
    Some(match path {
        Path::Wide => wide::dot(a, b),
        Path::Portable => i128::from(portable::dot(a, b)),
        // SAFETY (both arms): as in l2_squared_on.
        #[cfg(target_arch = "x86_64")]
        Path::Avx2 => i128::from(unsafe { x86_64::dot(a, b) }),
        #[cfg(target_arch = "aarch64")]
        Path::Neon => i128::from(unsafe { aarch64::dot(a, b) }),
        #[allow(unreachable_patterns)]
        _ => return None,
    })
}

/// A kernel bound to one query: the path is chosen once from the headroom
/// of the query and of the collection it is compared against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kernel {
    path: Path,
}

impl Kernel {
    /// Chooses the fastest exact path for vectors of `dim` components whose
    /// magnitudes are at most `max_abs_a` and `max_abs_b`.
    pub fn new(dim: usize, max_abs_a: u32, max_abs_b: u32) -> Kernel {
        let path = if Headroom::new(dim, max_abs_a, max_abs_b).is_narrow() {
            Path::best_narrow()
        } else {
            Path::Wide
        };
        Kernel { path }
    }

    /// A kernel that is exact for any input (128-bit accumulation).
    pub const fn wide() -> Kernel {
        Kernel { path: Path::Wide }
    }

    pub const fn path(self) -> Path {
        self.path
    }

    /// Exact `Σ (a_i − b_i)²`. Inputs must respect the bounds the kernel was
    /// made for.
    #[inline]
    pub fn l2_squared(self, a: &[i32], b: &[i32]) -> u128 {
        assert_eq!(
            a.len(),
            b.len(),
            "invariant: distance operands have one dimension"
        );
        match self.path {
            Path::Wide => wide::l2_squared(a, b),
            Path::Portable => u128::from(portable::l2_squared(a, b)),
            // SAFETY (both arms): the path was chosen by Kernel::new after
            // checking availability and headroom.
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => u128::from(unsafe { x86_64::l2_squared(a, b) }),
            #[cfg(target_arch = "aarch64")]
            Path::Neon => u128::from(unsafe { aarch64::l2_squared(a, b) }),
            #[allow(unreachable_patterns)]
            _ => wide::l2_squared(a, b),
        }
    }

    /// Exact `Σ a_i · b_i`.
    #[inline]
    pub fn dot(self, a: &[i32], b: &[i32]) -> i128 {
        assert_eq!(
            a.len(),
            b.len(),
            "invariant: distance operands have one dimension"
        );
        match self.path {
            Path::Wide => wide::dot(a, b),
            Path::Portable => i128::from(portable::dot(a, b)),
            // SAFETY (both arms): as in l2_squared.
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => i128::from(unsafe { x86_64::dot(a, b) }),
            #[cfg(target_arch = "aarch64")]
            Path::Neon => i128::from(unsafe { aarch64::dot(a, b) }),
            #[allow(unreachable_patterns)]
            _ => wide::dot(a, b),
        }
    }

    /// The ordering key of `metric` between `a` and `b`.
    #[inline]
    pub fn distance(self, metric: Metric, a: &[i32], b: &[i32]) -> Distance {
        match metric {
            Metric::L2 => Distance(self.l2_squared(a, b) as i128),
            Metric::InnerProduct => Distance(-self.dot(a, b)),
            Metric::Cosine => {
                let dot = self.dot(a, b);
                let norm_a = self.dot(a, a);
                let norm_b = self.dot(b, b);
                cosine_distance(dot, norm_a as u128, norm_b as u128)
            }
        }
    }
}

/// `⌊2^32 · (den − dot) / den⌋` with `den = ⌊√norm_a⌋ · ⌊√norm_b⌋`; see the
/// module documentation.
pub fn cosine_distance(dot: i128, norm_a_sq: u128, norm_b_sq: u128) -> Distance {
    // norm ≤ DIM_MAX · 2^62 < 2^76, so each root < 2^38 and den < 2^76;
    // |dot| < 2^76, so (den − dot) · 2^32 < 2^110: no overflow in i128.
    let den = (norm_a_sq.isqrt() * norm_b_sq.isqrt()) as i128;
    if den == 0 {
        return Distance(COSINE_ZERO_VECTOR);
    }
    Distance(((den - dot) << 32).div_euclid(den))
}

/// Exact squared L2 for any input, choosing the path from the inputs
/// themselves. For repeated use against one query, build a [`Kernel`].
pub fn l2_squared(a: &[i32], b: &[i32]) -> u128 {
    Kernel::new(a.len(), max_abs(a), max_abs(b)).l2_squared(a, b)
}

/// Exact dot product for any input; see [`l2_squared`].
pub fn dot(a: &[i32], b: &[i32]) -> i128 {
    Kernel::new(a.len(), max_abs(a), max_abs(b)).dot(a, b)
}

/// The ordering key of `metric` for any input; see [`l2_squared`].
pub fn distance(metric: Metric, a: &[i32], b: &[i32]) -> Distance {
    Kernel::new(a.len(), max_abs(a), max_abs(b)).distance(metric, a, b)
}

#[cfg(test)]
mod tests;
