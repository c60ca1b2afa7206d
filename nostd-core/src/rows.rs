//! Fixed-width rows kept in segments that never move.
//!
//! A column held in one `Vec` doubles when it fills, copying every row it
//! holds: at tens of megabytes that copy (and the page faults of the new
//! buffer) stalls the one write that triggers it for milliseconds. Rows
//! here live in segments of [`SEGMENT_ROWS`] rows; a full segment is never
//! touched again by an append, so an append copies only its own rows. The
//! first segment grows like a `Vec`, so a small collection stays small.

use alloc::vec::Vec;

/// Rows per segment, a power of two so that finding a row is a shift and
/// a mask.
pub const SEGMENT_ROWS: usize = 1 << SEGMENT_ROWS_LOG2;
const SEGMENT_ROWS_LOG2: u32 = 10;

/// Rows of `width` values each, in row order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rows<T> {
    width: usize,
    len: usize,
    /// Every segment but the last holds exactly `SEGMENT_ROWS` rows.
    segments: Vec<Vec<T>>,
}

impl<T: Copy + Default> Rows<T> {
    /// No rows of `width` values (`width` ≥ 1).
    pub fn new(width: usize) -> Rows<T> {
        assert!(width > 0, "invariant: rows hold at least one value");
        Rows {
            width,
            len: 0,
            segments: Vec::new(),
        }
    }

    /// Values per row.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Row `row`; panics past the end.
    #[inline]
    pub fn row(&self, row: usize) -> &[T] {
        let segment = &self.segments[row >> SEGMENT_ROWS_LOG2];
        let start = (row & (SEGMENT_ROWS - 1)) * self.width;
        &segment[start..start + self.width]
    }

    /// Row `row`, or `None` past the end.
    #[inline]
    pub fn get(&self, row: usize) -> Option<&[T]> {
        (row < self.len).then(|| self.row(row))
    }

    /// The segment that takes the next row, started if the last is full.
    fn open_segment(&mut self) -> &mut Vec<T> {
        // Every segment but the last is full: all are when the rows fill
        // them exactly (or there are none).
        if self.len == self.segments.len() * SEGMENT_ROWS {
            // The first segment grows as rows come; later ones are
            // allocated whole, once.
            let capacity = if self.segments.is_empty() {
                0
            } else {
                SEGMENT_ROWS * self.width
            };
            self.segments.push(Vec::with_capacity(capacity));
        }
        let last = self.segments.len() - 1;
        &mut self.segments[last]
    }

    /// Appends rows given row-major (`values.len()` a multiple of the
    /// width).
    pub fn extend_from_slice(&mut self, mut values: &[T]) {
        assert!(
            values.len().is_multiple_of(self.width),
            "invariant: whole rows only"
        );
        while !values.is_empty() {
            let room = SEGMENT_ROWS - (self.len & (SEGMENT_ROWS - 1));
            let rows = room.min(values.len() / self.width);
            let (head, rest) = values.split_at(rows * self.width);
            self.open_segment().extend_from_slice(head);
            self.len += rows;
            values = rest;
        }
    }

    /// Appends one row of default values and returns it to be filled in.
    pub fn push_default(&mut self) -> &mut [T] {
        let width = self.width;
        let segment = self.open_segment();
        let start = segment.len();
        segment.resize(start + width, T::default());
        let last = self.segments.len() - 1;
        self.len += 1;
        &mut self.segments[last][start..]
    }

    /// Drops every row.
    pub fn clear(&mut self) {
        self.segments.clear();
        self.len = 0;
    }

    /// Rows `range`, as contiguous row-major runs in row order.
    pub fn runs(&self, range: core::ops::Range<usize>) -> impl Iterator<Item = &[T]> + '_ {
        assert!(
            range.start <= range.end && range.end <= self.len,
            "invariant: rows within the column"
        );
        let width = self.width;
        let mut row = range.start;
        let end = range.end;
        core::iter::from_fn(move || {
            if row >= end {
                return None;
            }
            let segment = &self.segments[row >> SEGMENT_ROWS_LOG2];
            let first = row & (SEGMENT_ROWS - 1);
            let rows = (SEGMENT_ROWS - first).min(end - row);
            row += rows;
            Some(&segment[first * width..(first + rows) * width])
        })
    }

    /// Every row, as contiguous row-major runs in row order.
    pub fn all_runs(&self) -> impl Iterator<Item = &[T]> + '_ {
        self.runs(0..self.len)
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    use super::{Rows, SEGMENT_ROWS};

    /// Appends of every size, across segment boundaries, keep every row
    /// where a flat `Vec` keeps it.
    #[test]
    fn rows_read_back_as_a_flat_column() {
        let width = 3;
        let mut rows: Rows<i32> = Rows::new(width);
        let mut flat: Vec<i32> = Vec::new();
        let mut next = 0i32;
        for size in [
            1usize,
            5,
            SEGMENT_ROWS - 7,
            1,
            SEGMENT_ROWS,
            2 * SEGMENT_ROWS + 3,
            0,
            9,
        ] {
            let values: Vec<i32> = (0..size * width)
                .map(|_| {
                    next += 1;
                    next
                })
                .collect();
            rows.extend_from_slice(&values);
            flat.extend_from_slice(&values);
            if size == 1 {
                let row = rows.push_default();
                row.copy_from_slice(&[-1, -2, -3]);
                flat.extend_from_slice(&[-1, -2, -3]);
            }
        }
        assert_eq!(rows.len() * width, flat.len());
        for (r, expected) in flat.chunks_exact(width).enumerate() {
            assert_eq!(rows.row(r), expected, "row {r}");
        }
        assert_eq!(rows.get(rows.len()), None);
        let joined: Vec<i32> = rows.all_runs().flatten().copied().collect();
        assert_eq!(joined, flat);
        let (a, b) = (SEGMENT_ROWS - 2, 2 * SEGMENT_ROWS + 5);
        let part: Vec<i32> = rows.runs(a..b).flatten().copied().collect();
        assert_eq!(part, flat[a * width..b * width]);
        assert_eq!(rows.runs(a..b).count(), 3);
    }

    /// A full segment keeps its allocation: rows already stored never move.
    #[test]
    fn full_segments_never_move() {
        let mut rows: Rows<u8> = Rows::new(2);
        rows.extend_from_slice(&[7; 4 * SEGMENT_ROWS]);
        let before = rows.row(0).as_ptr();
        let second = rows.row(SEGMENT_ROWS).as_ptr();
        for _ in 0..3 {
            rows.extend_from_slice(&[1; 2 * SEGMENT_ROWS]);
        }
        assert_eq!(rows.row(0).as_ptr(), before);
        assert_eq!(rows.row(SEGMENT_ROWS).as_ptr(), second);
        rows.clear();
        assert!(rows.is_empty());
        assert_eq!(rows.all_runs().count(), 0);
    }
}
