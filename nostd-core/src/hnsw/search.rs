//! Searching the graph: greedy descent through the upper layers, then a
//! best-first search of layer 0 that walks through every node but only
//! admits accepted ones (live, and matching the filter) to the results.

use alloc::collections::BinaryHeap;
use alloc::vec::Vec;
use core::cmp::Reverse;

use super::{Hnsw, View};
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
/// an epoch instead of writing every mark.
#[derive(Clone, Debug, Default)]
pub struct SearchScratch {
    marks: Vec<u32>,
    epoch: u32,
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
            self.marks.iter_mut().for_each(|m| *m = 0);
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

impl Hnsw {
    /// Greedy walk on `layer` from `ep` to a local minimum.
    pub(super) fn greedy(
        &self,
        view: &View<'_>,
        query: &[i32],
        ep: (Distance, u32),
        layer: u8,
    ) -> (Distance, u32) {
        let mut best = ep;
        loop {
            let mut moved = false;
            for &n in self.links(best.1, layer) {
                let cand = (view.distance(query, n), n);
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
    /// `(distance, row)`.
    pub(super) fn search_layer<A: Fn(u32) -> bool>(
        &self,
        view: &View<'_>,
        query: &[i32],
        eps: &[(Distance, u32)],
        on: LayerSearch<A>,
        scratch: &mut SearchScratch,
    ) -> Vec<(Distance, u32)> {
        // Narrow kernels and the cosine key never leave i64: heap entries
        // of 16 bytes instead of 32 move faster, with the same order.
        if view.kernel.path().is_narrow() || view.metric == Metric::Cosine {
            self.search_layer_keyed::<i64, A>(view, query, eps, on, scratch)
        } else {
            self.search_layer_keyed::<i128, A>(view, query, eps, on, scratch)
        }
    }

    fn search_layer_keyed<K: HeapKey, A: Fn(u32) -> bool>(
        &self,
        view: &View<'_>,
        query: &[i32],
        eps: &[(Distance, u32)],
        on: LayerSearch<A>,
        scratch: &mut SearchScratch,
    ) -> Vec<(Distance, u32)> {
        let LayerSearch { ef, layer, accept } = on;
        scratch.start(self.len());
        let mut candidates: BinaryHeap<Reverse<(K, u32)>> = BinaryHeap::new();
        let mut results: BinaryHeap<(K, u32)> = BinaryHeap::with_capacity(ef + 1);
        for &(d, row) in eps {
            let ep = (K::of(d), row);
            if scratch.visit(row) {
                candidates.push(Reverse(ep));
                if accept(row) {
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
            let links = self.links(current.1, layer);
            // Ask for every neighbour's vector before the first distance:
            // they are scattered rows, and the loads then overlap.
            for &n in links {
                prefetch(view.vector(n).as_ptr());
            }
            for &n in links {
                if !scratch.visit(n) {
                    continue;
                }
                let cand = (K::of(view.distance(query, n)), n);
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
        }
        results
            .into_sorted_vec()
            .into_iter()
            .map(|(k, row)| (k.back(), row))
            .collect()
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
        let Some(entry) = self.entry else {
            return Vec::new();
        };
        let mut ep = (view.distance(query, entry), entry);
        let mut layer = self.max_level;
        while layer > 0 {
            ep = self.greedy(view, query, ep, layer);
            layer -= 1;
        }
        self.search_layer(
            view,
            query,
            &[ep],
            LayerSearch {
                ef,
                layer: 0,
                accept,
            },
            scratch,
        )
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

/// Hints the CPU to load the cache line at `ptr`; no effect on results.
#[inline(always)]
fn prefetch(ptr: *const i32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it never faults, whatever the address.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(ptr.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}
