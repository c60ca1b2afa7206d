//! Searching the graph: greedy descent through the upper layers, then a
//! best-first search of layer 0 that walks through every node but only
//! admits accepted ones (live, and matching the filter) to the results.

use alloc::collections::BinaryHeap;
use alloc::vec;
use alloc::vec::Vec;
use core::cmp::Reverse;
use core::marker::PhantomData;

use super::{Compact, Hnsw, View, prefetch};
use crate::distance::compact::CompactKernel;
use crate::distance::{Distance, Metric};

/// How a search runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SearchOptions {
    /// Size of the layer-0 result list (at least `k`).
    pub ef: usize,
    /// Brute force over every row instead of the graph.
    pub exact: bool,
    /// Only rows whose tag equals this.
    pub tag: Option<u64>,
}

impl Default for SearchOptions {
    fn default() -> Self {
        SearchOptions {
            ef: 64,
            exact: false,
            tag: None,
        }
    }
}

/// Reusable memory of a search: a visited mark per row, cleared by bumping
/// an epoch instead of writing every mark. A mark is one byte, so that the
/// marks of a million rows (1 MiB) stay in a core's cache as the walk
/// reads them at random; the marks are written to zero once every 255
/// searches, when the epoch wraps.
#[derive(Clone, Debug, Default)]
pub struct SearchScratch {
    marks: Vec<u8>,
    epoch: u8,
    /// The neighbours of one node not visited before.
    fresh: Vec<u32>,
}

/// Runs `f` with this thread's reusable scratch (std builds), or a fresh
/// one. A fresh scratch per search would zero a mark for every row of the
/// collection each time.
pub fn with_scratch<R>(f: impl FnOnce(&mut SearchScratch) -> R) -> R {
    #[cfg(feature = "std")]
    {
        std::thread_local! {
            static SCRATCH: core::cell::RefCell<SearchScratch> =
                core::cell::RefCell::new(SearchScratch::new());
        }
        SCRATCH.with(|s| match s.try_borrow_mut() {
            Ok(mut scratch) => f(&mut scratch),
            Err(_) => f(&mut SearchScratch::new()),
        })
    }
    #[cfg(not(feature = "std"))]
    {
        f(&mut SearchScratch::new())
    }
}

impl SearchScratch {
    pub fn new() -> SearchScratch {
        SearchScratch::default()
    }

    fn start(&mut self, rows: usize) {
        if self.marks.len() < rows {
            self.marks.resize(rows, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.marks.fill(0);
            self.epoch = 1;
        }
    }

    /// Marks `row`; returns whether it was unmarked.
    #[inline]
    fn visit(&mut self, row: u32) -> bool {
        let slot = &mut self.marks[row as usize];
        let fresh = *slot != self.epoch;
        *slot = self.epoch;
        fresh
    }
}

/// What one layer search keeps: the `ef` nearest rows of `layer` that
/// `accept` admits.
pub(super) struct LayerSearch<A: Fn(u32) -> bool> {
    pub ef: usize,
    pub layer: u8,
    pub accept: A,
}

/// The distances one walk orders nodes by: exact, or those of the compact
/// copy. Keys order like the distances they stand for.
pub(super) trait Scorer {
    type Key: Ord + Copy;
    fn key(&self, row: u32) -> Self::Key;
    /// Hints the CPU to load what [`Scorer::key`] will read for `row`.
    fn prefetch(&self, row: u32);
    /// The exact distance of a row whose key is `key`.
    fn exact(&self, key: Self::Key, row: u32) -> Distance;
    /// Hints the CPU to load what [`Scorer::exact`] will read for `row`
    /// beyond what [`Scorer::key`] read.
    fn prefetch_exact(&self, row: u32);
}

/// Exact distances, kept as `K` in the heaps.
struct ExactScorer<'a, K> {
    view: &'a View<'a>,
    query: &'a [i32],
    key: PhantomData<K>,
}

impl<K: HeapKey> Scorer for ExactScorer<'_, K> {
    type Key = K;

    #[inline(always)]
    fn key(&self, row: u32) -> K {
        K::of(self.view.distance(self.query, row))
    }

    #[inline(always)]
    fn prefetch(&self, row: u32) {
        prefetch(self.view.vector(row).as_ptr().cast(), 1);
    }

    #[inline(always)]
    fn exact(&self, key: K, _row: u32) -> Distance {
        key.back()
    }

    #[inline(always)]
    fn prefetch_exact(&self, _row: u32) {}
}

/// Distances of the compact copy; the exact one only for rows kept.
struct CompactScorer<'a> {
    view: &'a View<'a>,
    compact: &'a Compact,
    kernel: CompactKernel,
    query: &'a [i32],
    code: Vec<i16>,
    /// Cache lines of one compact row.
    lines: usize,
}

impl<'a> CompactScorer<'a> {
    /// A compact walk for `query`, when the view's compact copy covers the
    /// `rows` rows of the graph, no row of it was clamped (distances to a
    /// clamped row could mislead the walk as far as the clamping went), the
    /// metric has a compact form and the query fits the copy's range.
    fn new(view: &'a View<'a>, query: &'a [i32], rows: usize) -> Option<CompactScorer<'a>> {
        let compact = view.compact?;
        if compact.len() < rows || !compact.is_faithful() || view.metric == Metric::Cosine {
            return None;
        }
        let code = compact.encode(query)?;
        let lines = (code.len() * 2).div_ceil(64);
        Some(CompactScorer {
            view,
            compact,
            kernel: CompactKernel::best(),
            query,
            code,
            lines,
        })
    }
}

impl Scorer for CompactScorer<'_> {
    type Key = i64;

    #[inline(always)]
    fn key(&self, row: u32) -> i64 {
        let r = self.compact.row(row);
        match self.view.metric {
            Metric::L2 => self.kernel.l2_squared(&self.code, r) as i64,
            _ => -self.kernel.dot(&self.code, r),
        }
    }

    #[inline(always)]
    fn prefetch(&self, row: u32) {
        prefetch(self.compact.row(row).as_ptr().cast(), self.lines);
    }

    #[inline(always)]
    fn exact(&self, _key: i64, row: u32) -> Distance {
        self.view.distance(self.query, row)
    }

    #[inline(always)]
    fn prefetch_exact(&self, row: u32) {
        let v = self.view.vector(row);
        prefetch(v.as_ptr().cast(), (v.len() * 4).div_ceil(64));
    }
}

impl Hnsw {
    /// Greedy walk on `layer` from `ep` to a local minimum.
    fn greedy<S: Scorer>(&self, s: &S, ep: (S::Key, u32), layer: u8) -> (S::Key, u32) {
        let mut best = ep;
        loop {
            let mut moved = false;
            for &n in self.links(best.1, layer) {
                let cand = (s.key(n), n);
                if cand < best {
                    best = cand;
                    moved = true;
                }
            }
            if !moved {
                return best;
            }
        }
    }

    /// Best-first search of one layer from the entry points `eps`, keeping
    /// the `ef` nearest rows that `accept` admits, ordered by
    /// `(key, row)`.
    fn search_layer<S: Scorer, A: Fn(u32) -> bool>(
        &self,
        s: &S,
        eps: &[(S::Key, u32)],
        on: LayerSearch<A>,
        scratch: &mut SearchScratch,
    ) -> Vec<(S::Key, u32)> {
        let LayerSearch { ef, layer, accept } = on;
        scratch.start(self.len());
        let mut candidates: BinaryHeap<Reverse<(S::Key, u32)>> = BinaryHeap::new();
        let mut results: BinaryHeap<(S::Key, u32)> = BinaryHeap::with_capacity(ef + 1);
        for &ep in eps {
            if scratch.visit(ep.1) {
                candidates.push(Reverse(ep));
                if accept(ep.1) {
                    results.push(ep);
                    if results.len() > ef {
                        results.pop();
                    }
                }
            }
        }
        while let Some(Reverse(current)) = candidates.pop() {
            if results.len() >= ef && results.peek().is_some_and(|worst| current > *worst) {
                break;
            }
            // Mark the unvisited neighbours and ask for their vectors
            // before the first distance: they are scattered rows, and the
            // loads then overlap.
            let mut fresh = core::mem::take(&mut scratch.fresh);
            fresh.clear();
            for &n in self.links(current.1, layer) {
                if scratch.visit(n) {
                    s.prefetch(n);
                    fresh.push(n);
                }
            }
            for &n in &fresh {
                let cand = (s.key(n), n);
                let full = results.len() >= ef;
                if !full || results.peek().is_some_and(|worst| cand < *worst) {
                    candidates.push(Reverse(cand));
                    if accept(n) {
                        results.push(cand);
                        if results.len() > ef {
                            results.pop();
                        }
                    }
                }
            }
            scratch.fresh = fresh;
            // The next node to expand is most likely the nearest candidate:
            // ask for its links while the heap work goes on.
            if let Some(Reverse(next)) = candidates.peek() {
                self.prefetch_links(next.1, layer);
            }
        }
        results.into_sorted_vec()
    }

    /// One walk for `query`: greedy descent through the layers above
    /// `level`, then a search of `ef` nodes on each layer from
    /// `min(level, max_level)` down to 0, layer 0 admitting only what
    /// `accept` admits. Returns the nodes found on each of those layers
    /// (index = layer) with their exact distances, ordered by
    /// `(distance, row)`.
    pub(super) fn walk(
        &self,
        view: &View<'_>,
        query: &[i32],
        level: u8,
        ef: usize,
        accept: impl Fn(u32) -> bool,
        scratch: &mut SearchScratch,
    ) -> Vec<Vec<(Distance, u32)>> {
        if let Some(s) = CompactScorer::new(view, query, self.len()) {
            return self.walk_with(&s, level, ef, accept, scratch);
        }
        // Narrow kernels and the cosine key never leave i64: heap entries
        // of 16 bytes instead of 32 move faster, with the same order.
        if view.kernel.path().is_narrow() || view.metric == Metric::Cosine {
            let s = ExactScorer::<i64> {
                view,
                query,
                key: PhantomData,
            };
            self.walk_with(&s, level, ef, accept, scratch)
        } else {
            let s = ExactScorer::<i128> {
                view,
                query,
                key: PhantomData,
            };
            self.walk_with(&s, level, ef, accept, scratch)
        }
    }

    fn walk_with<S: Scorer>(
        &self,
        s: &S,
        level: u8,
        ef: usize,
        accept: impl Fn(u32) -> bool,
        scratch: &mut SearchScratch,
    ) -> Vec<Vec<(Distance, u32)>> {
        let Some(entry) = self.entry else {
            return Vec::new();
        };
        let mut ep = (s.key(entry), entry);
        let mut layer = self.max_level;
        while layer > level {
            ep = self.greedy(s, ep, layer);
            layer -= 1;
        }
        let top = level.min(self.max_level);
        let mut layers = vec![Vec::new(); usize::from(top) + 1];
        let mut eps = vec![ep];
        for lc in (0..=top).rev() {
            let found = if lc == 0 {
                let on = LayerSearch {
                    ef,
                    layer: 0,
                    accept: &accept,
                };
                self.search_layer(s, &eps, on, scratch)
            } else {
                let on = LayerSearch {
                    ef,
                    layer: lc,
                    accept: |_: u32| true,
                };
                self.search_layer(s, &eps, on, scratch)
            };
            // The rows kept are scattered: ask for all of them before the
            // first exact distance.
            for &(_, row) in &found {
                s.prefetch_exact(row);
            }
            let mut exact: Vec<(Distance, u32)> = found
                .iter()
                .map(|&(k, row)| (s.exact(k, row), row))
                .collect();
            exact.sort_unstable();
            layers[usize::from(lc)] = exact;
            if !found.is_empty() {
                eps = found;
            }
        }
        layers
    }

    /// The `ef` nearest accepted rows found by the graph, by
    /// `(distance, row)`.
    pub fn search(
        &self,
        view: &View<'_>,
        query: &[i32],
        ef: usize,
        scratch: &mut SearchScratch,
        accept: impl Fn(u32) -> bool,
    ) -> Vec<(Distance, u32)> {
        self.walk(view, query, 0, ef, accept, scratch)
            .into_iter()
            .next()
            .unwrap_or_default()
    }
}

/// A distance as kept in the search heaps; the order is that of
/// [`Distance`].
trait HeapKey: Ord + Copy {
    fn of(d: Distance) -> Self;
    fn back(self) -> Distance;
}

impl HeapKey for i64 {
    #[inline(always)]
    fn of(d: Distance) -> i64 {
        debug_assert!(
            i64::try_from(d.0).is_ok(),
            "invariant: narrow distances fit i64"
        );
        d.0 as i64
    }

    #[inline(always)]
    fn back(self) -> Distance {
        Distance(i128::from(self))
    }
}

impl HeapKey for i128 {
    #[inline(always)]
    fn of(d: Distance) -> i128 {
        d.0
    }

    #[inline(always)]
    fn back(self) -> Distance {
        Distance(self)
    }
}
