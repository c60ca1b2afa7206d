//! The compact copy of the indexed rows that graph walks read.
//!
//! Walking the graph costs one distance per visited node, most of them to
//! nodes that never make the results. The walk therefore reads a copy of
//! every indexed vector in 16 bits — each Q16.16 component shifted right
//! by one per-collection amount and clamped to `±COMPACT_MAX` — at a
//! quarter of the arithmetic and half the memory traffic of the exact
//! kernel, and every node the walk keeps is then re-ranked with the exact
//! distance. Results are ordered by exact distance; which nodes the walk
//! finds depends on the compact copy, which is a pure function of the
//! rows, so it is the same on every machine.
//!
//! The shift is fixed once per collection, from the rows of the first
//! block: the smallest one that brings their largest magnitude to at most
//! `COMPACT_MAX / 2`, leaving a factor of two for later rows before they
//! clamp. It depends only on those rows, never on when the index was
//! built, so a restored or rebuilt index has the same copy.

use alloc::vec::Vec;
use core::fmt;

use super::BLOCK_ROWS;
use crate::distance::compact::{COMPACT_LANES, COMPACT_MAX};
use crate::distance::max_abs;
use crate::rows::Rows;

/// The compact copy of the first `len()` rows of a collection.
#[derive(Clone, PartialEq, Eq)]
pub struct Compact {
    dim: usize,
    /// Fixed by the first rows added.
    shift: Option<u8>,
    /// Whether some component of some row was clamped.
    clamped: bool,
    /// One row per indexed row, `dim` rounded up to a multiple of
    /// `COMPACT_LANES` (zero-padded).
    data: Rows<i16>,
}

impl fmt::Debug for Compact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compact")
            .field("dim", &self.dim)
            .field("shift", &self.shift)
            .field("clamped", &self.clamped)
            .field("rows", &self.len())
            .finish()
    }
}

/// The smallest shift that brings `max_abs` to at most `COMPACT_MAX / 2`.
pub fn shift_for(max_abs: u32) -> u8 {
    let mut shift = 0u8;
    while (max_abs >> shift) > (COMPACT_MAX / 2) as u32 {
        shift += 1;
    }
    shift
}

impl Compact {
    pub fn new(dim: usize) -> Compact {
        let stride = dim.div_ceil(COMPACT_LANES).max(1) * COMPACT_LANES;
        Compact {
            dim,
            shift: None,
            clamped: false,
            data: Rows::new(stride),
        }
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The shift, once rows were added.
    pub fn shift(&self) -> Option<u8> {
        self.shift
    }

    /// Drops every row and the shift.
    pub fn clear(&mut self) {
        self.shift = None;
        self.clamped = false;
        self.data.clear();
    }

    /// Appends rows, row-major. The first call fixes the shift from its
    /// first `BLOCK_ROWS` rows, which are the collection's first rows.
    pub fn extend(&mut self, vectors: &[i32]) {
        let dim = self.dim;
        let shift = *self.shift.get_or_insert_with(|| {
            let head = vectors.len().min(BLOCK_ROWS * dim);
            shift_for(max_abs(&vectors[..head]))
        });
        let limit = COMPACT_MAX as u32;
        for v in vectors.chunks_exact(dim) {
            self.clamped |= v.iter().any(|&x| (x >> shift).unsigned_abs() > limit);
            let row = self.data.push_default();
            for (c, &x) in row.iter_mut().zip(v) {
                *c = clamp(x >> shift);
            }
        }
    }

    /// Whether every stored component is its vector's component shifted
    /// right, unclamped: then walks may use the copy, and exact distances
    /// can be bounded from compact ones (see [`Compact::l2_bounds`]). Once
    /// a row clamps (rows far larger than the first block), walks use
    /// exact distances.
    pub fn is_faithful(&self) -> bool {
        !self.clamped
    }

    /// Bounds on exact squared L2 distances from compact ones, for a
    /// faithful copy and a query that encodes. With `x = (x >> s)·2^s + r`,
    /// `0 ≤ r < 2^s`, every exact difference vector is `2^s` times the
    /// compact one plus a vector shorter than `2^s·√dim`, so the exact
    /// distance `e` and the compact one `q = √d` satisfy
    /// `|e − 2^s·q| < 2^s·√dim`.
    pub fn l2_bounds(&self) -> L2Bounds {
        let dim = self.dim as u64;
        let mut root = dim.isqrt();
        if root * root < dim {
            root += 1;
        }
        L2Bounds { root_dim: root }
    }

    /// The compact form of a query, or `None` when a component would clamp
    /// (the walk is then made with exact distances) or no shift is fixed.
    pub fn encode(&self, query: &[i32]) -> Option<Vec<i16>> {
        let shift = self.shift?;
        let limit = COMPACT_MAX as u32;
        if query.len() != self.dim || query.iter().any(|&x| (x >> shift).unsigned_abs() > limit) {
            return None;
        }
        let mut out: Vec<i16> = query.iter().map(|&x| (x >> shift) as i16).collect();
        out.resize(self.data.width(), 0);
        Some(out)
    }

    /// Cache lines one row spans.
    pub fn row_lines(&self) -> usize {
        (self.data.width() * 2).div_ceil(64)
    }

    /// Hints the CPU to load row `row`.
    #[inline(always)]
    pub fn prefetch(&self, row: u32) {
        if let Some(row) = self.data.get(row as usize) {
            super::prefetch(row.as_ptr().cast(), self.row_lines());
        }
    }

    /// Row `row`, padded.
    #[inline]
    pub fn row(&self, row: u32) -> &[i16] {
        self.data.row(row as usize)
    }
}

#[inline]
fn clamp(x: i32) -> i16 {
    x.clamp(-COMPACT_MAX, COMPACT_MAX) as i16
}

/// Bounds between compact and exact squared L2 distances, in compact units
/// (an exact distance is `2^(2·shift)` times larger).
#[derive(Clone, Copy, Debug)]
pub struct L2Bounds {
    /// `⌈√dim⌉`.
    root_dim: u64,
}

impl L2Bounds {
    /// An upper bound of the exact distance of a row at compact distance
    /// `d`: `(⌈√d⌉ + ⌈√dim⌉)²`.
    pub fn upper(self, d: u64) -> u64 {
        let mut root = d.isqrt();
        if root * root < d {
            root += 1;
        }
        (root + self.root_dim).pow(2)
    }

    /// The smallest compact distance whose lower bound exceeds `t`: a row
    /// at compact distance `d ≥ prune_from(t)` is certainly farther than
    /// `t` (its lower bound `(⌊√d⌋ − ⌈√dim⌉)²` is above `t`).
    pub fn prune_from(self, t: u64) -> u64 {
        (self.root_dim + t.isqrt() + 1).pow(2)
    }
}
