//! A deterministic HNSW index (Malkov and Yashunin, 2016) over a
//! collection's Q16.16 columns.
//!
//! The graph is a pure function of the log:
//!
//! - a node's level comes from its record id and the collection's seed
//!   ([`level_of`]), never from a random number generator;
//! - every comparison orders by `(distance, row)`, with exact integer
//!   distances, so ties break the same way everywhere;
//! - nodes are linked in row order, which is log order.
//!
//! The graph grows by aligned blocks of [`BLOCK_ROWS`] rows, in two phases
//! so that it can use every core and still be the same for any thread
//! count: for every row of a block the candidate neighbours are searched
//! against the graph as it was before the block (a pure function, run in
//! parallel by a [`Planner`]), together with the exact distances to the
//! block's earlier rows; then the rows are linked one by one in row order.
//! Rows of an incomplete last block are not in the graph yet; searches scan
//! them exactly.
//!
//! Deleted rows stay in the graph as waypoints: searches walk through them
//! but never return them. Building ignores tombstones, so the graph does
//! not depend on when deletes happened, and deleting never makes a live
//! node unreachable.

mod compact;
mod search;
#[cfg(test)]
mod tests;

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

use crate::distance::{Distance, Kernel, Metric};
use crate::event::{IndexParams, RecordId};
use crate::hash::Hash32;
use crate::rng::mix64;
use crate::rows::Rows;

pub use compact::{Compact, L2Bounds, shift_for};
pub use search::{SearchOptions, SearchScratch, with_scratch};

/// Highest level a node can have.
pub const LEVEL_MAX: u8 = 15;

/// Rows planned against one frozen graph before they are linked. Blocks
/// are aligned: rows `64·b .. 64·(b+1)` form block `b`, and a block joins
/// the graph only when it is complete, so the graph does not depend on how
/// the rows arrived or when the index caught up.
pub const BLOCK_ROWS: usize = 64;

/// Domain byte of the index hash (the state hash uses 0x01..=0x04).
pub const INDEX_HASH_DOMAIN: u8 = 0x05;

/// Nodes per hashed chunk of the index.
pub const INDEX_CHUNK_NODES: usize = 256;

/// A node's level: the number of consecutive "heads" of a coin that comes
/// up heads with probability `1/m`, drawn from the id and the seed.
pub fn level_of(id: RecordId, seed: u64, m: u16) -> u8 {
    let m = u64::from(m.max(2));
    let mut h = mix64(seed ^ mix64(id.0));
    let mut level = 0u8;
    while level < LEVEL_MAX && h.is_multiple_of(m) {
        level += 1;
        h = mix64(h ^ u64::from(level));
    }
    level
}

/// The columns a graph operation reads.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    pub dim: usize,
    pub metric: Metric,
    /// The vectors of every row.
    pub vectors: &'a Rows<i32>,
    pub deleted: &'a [bool],
    pub tags: &'a [u64],
    /// Exact for any pair of stored vectors and the query.
    pub kernel: Kernel,
    /// The compact copy of the indexed rows, when graph walks may use it
    /// (see [`Compact`]); `None` walks with exact distances.
    pub compact: Option<&'a Compact>,
    /// Rows with this tag take no part in the graph: a node without
    /// links, never linked to, never the entry (a table's NULL vectors,
    /// [`crate::table::NULL_VECTOR_TAG`]).
    pub unlinked: Option<u64>,
}

impl View<'_> {
    /// Whether `row` takes part in the graph (see [`View::unlinked`]).
    #[inline]
    pub fn linked(&self, row: u32) -> bool {
        self.unlinked.is_none_or(|t| self.tags[row as usize] != t)
    }

    #[inline]
    pub fn vector(&self, row: u32) -> &[i32] {
        self.vectors.row(row as usize)
    }

    #[inline]
    pub fn distance(&self, query: &[i32], row: u32) -> Distance {
        self.kernel.distance(self.metric, query, self.vector(row))
    }
}

/// The neighbours one new node chooses, found against a frozen graph.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodePlan {
    pub row: u32,
    /// Per layer `0..=level`: the chosen neighbours, nearest first.
    pub chosen: Vec<Vec<u32>>,
}

/// Runs the pure planning function over the rows of a chunk, in any order
/// and on any number of threads; the results must come back in index order.
pub trait Planner: Sync {
    fn plan(&self, count: usize, job: &(dyn Fn(usize) -> NodePlan + Sync)) -> Vec<NodePlan>;
}

/// Plans on the calling thread.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sequential;

impl Planner for Sequential {
    fn plan(&self, count: usize, job: &(dyn Fn(usize) -> NodePlan + Sync)) -> Vec<NodePlan> {
        (0..count).map(job).collect()
    }
}

/// The graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hnsw {
    params: IndexParams,
    /// Level of every row.
    levels: Vec<u8>,
    /// Layer-0 links: `m0` slots per row.
    links0: Vec<u32>,
    /// Used slots per row in `links0`.
    len0: Vec<u16>,
    /// Links of layers 1..=level for rows above layer 0.
    upper: BTreeMap<u32, Vec<Vec<u32>>>,
    entry: Option<u32>,
    max_level: u8,
    /// Layer-0 links into each row (derived from `links0`).
    indeg0: Vec<u32>,
    /// Rows whose layer-0 in-degree fell to zero during the current link.
    orphans: Vec<u32>,
    /// Cached hashes of node chunks; `None` when changed.
    chunk_hashes: Vec<Option<Hash32>>,
}

impl Hnsw {
    pub fn new(params: IndexParams) -> Hnsw {
        Hnsw {
            params,
            levels: Vec::new(),
            links0: Vec::new(),
            len0: Vec::new(),
            upper: BTreeMap::new(),
            entry: None,
            max_level: 0,
            indeg0: Vec::new(),
            orphans: Vec::new(),
            chunk_hashes: Vec::new(),
        }
    }

    pub fn params(&self) -> &IndexParams {
        &self.params
    }

    /// Links per node on layers above 0.
    pub fn m(&self) -> usize {
        usize::from(self.params.m)
    }

    /// Links per node on layer 0.
    pub fn m0(&self) -> usize {
        2 * usize::from(self.params.m)
    }

    /// Rows known to the graph (linked).
    pub fn len(&self) -> usize {
        self.levels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    pub fn entry(&self) -> Option<u32> {
        self.entry
    }

    pub fn max_level(&self) -> u8 {
        self.max_level
    }

    pub fn level(&self, row: u32) -> u8 {
        self.levels[row as usize]
    }

    /// The bytes the graph holds for its rows: per row its level (1), slot
    /// count (2), `m0` layer-0 slots of 4 bytes and layer-0 in-degree (4);
    /// per node above layer 0 its map key (4), the header of its list of
    /// layers and, per layer, a list header and 4 bytes per link. Capacity
    /// beyond the lengths, the map's own nodes and the chunk hashes are not
    /// counted.
    pub fn held_bytes(&self) -> u64 {
        let header = core::mem::size_of::<Vec<u32>>() as u64;
        let upper: u64 = self
            .upper
            .values()
            .map(|layers| {
                4 + header
                    + layers
                        .iter()
                        .map(|l| header + 4 * l.len() as u64)
                        .sum::<u64>()
            })
            .sum();
        self.len() as u64 * (1 + 2 + 4 * self.m0() as u64 + 4) + upper
    }

    /// Links of `row` on `layer`.
    pub fn links(&self, row: u32, layer: u8) -> &[u32] {
        if layer == 0 {
            let m0 = self.m0();
            let start = row as usize * m0;
            &self.links0[start..start + usize::from(self.len0[row as usize])]
        } else {
            self.upper
                .get(&row)
                .and_then(|layers| layers.get(usize::from(layer) - 1))
                .map_or(&[], Vec::as_slice)
        }
    }

    /// Hints the CPU to load the links of `row` on `layer` (on layer 0:
    /// its slot count and all its slots).
    #[inline(always)]
    pub(crate) fn prefetch_links(&self, row: u32, layer: u8) {
        if layer == 0 {
            let m0 = self.m0();
            prefetch(self.len0[row as usize..].as_ptr().cast(), 1);
            prefetch(
                self.links0[row as usize * m0..].as_ptr().cast(),
                (m0 * 4).div_ceil(64),
            );
        } else {
            prefetch(self.links(row, layer).as_ptr().cast(), 1);
        }
    }

    fn set_links(&mut self, row: u32, layer: u8, links: &[u32]) {
        if layer == 0 {
            let m0 = self.m0();
            debug_assert!(links.len() <= m0);
            let start = row as usize * m0;
            let old = start..start + usize::from(self.len0[row as usize]);
            for i in old {
                let target = self.links0[i] as usize;
                self.indeg0[target] -= 1;
                if self.indeg0[target] == 0 {
                    self.orphans.push(target as u32);
                }
            }
            for &l in links {
                self.indeg0[l as usize] += 1;
            }
            self.links0[start..start + links.len()].copy_from_slice(links);
            self.len0[row as usize] = links.len() as u16;
        } else {
            let level = self.levels[row as usize];
            let layers = self
                .upper
                .entry(row)
                .or_insert_with(|| vec![Vec::new(); usize::from(level)]);
            layers[usize::from(layer) - 1] = links.to_vec();
        }
        self.dirty(row);
    }

    fn dirty(&mut self, row: u32) {
        let chunk = row as usize / INDEX_CHUNK_NODES;
        if chunk >= self.chunk_hashes.len() {
            self.chunk_hashes.resize(chunk + 1, None);
        }
        self.chunk_hashes[chunk] = None;
    }

    /// Adds `rows` new nodes (rows `len()..len() + rows`) with levels from
    /// their ids, unlinked; they are linked by [`Hnsw::link`].
    fn grow(&mut self, ids: &[RecordId]) {
        for id in ids {
            self.levels
                .push(level_of(*id, self.params.seed, self.params.m));
            self.len0.push(0);
            self.indeg0.push(0);
        }
        self.links0.resize(self.levels.len() * self.m0(), 0);
    }

    /// Plans the block of rows `len()..len() + ids.len()` (already in the
    /// columns of `view`) against this graph, which stays frozen; `planner`
    /// may run it on several threads. Pure: the plans depend only on the
    /// graph, the vectors and the ids.
    pub fn plan_block(
        &self,
        view: &View<'_>,
        ids: &[RecordId],
        planner: &dyn Planner,
    ) -> Vec<NodePlan> {
        self.plan_rows(view, ids, 0..ids.len(), planner)
    }

    /// Plans the rows `rows` (offsets into `ids`) of the block that starts
    /// at `len()`. Planning a block in several calls gives the same plans
    /// as one call, as long as the graph is not changed in between.
    pub fn plan_rows(
        &self,
        view: &View<'_>,
        ids: &[RecordId],
        rows: core::ops::Range<usize>,
        planner: &dyn Planner,
    ) -> Vec<NodePlan> {
        let start = self.len() as u32;
        let ef = usize::from(self.params.ef_construction).max(self.m0());
        let first = rows.start;
        planner.plan(rows.len(), &|i| {
            self.plan_node(view, start, ids, first + i, ef)
        })
    }

    /// Links a planned block in row order.
    pub fn link_block(&mut self, view: &View<'_>, ids: &[RecordId], plans: Vec<NodePlan>) {
        let start = self.len() as u32;
        assert!(
            plans.len() == ids.len()
                && plans
                    .iter()
                    .enumerate()
                    .all(|(i, p)| p.row == start + i as u32),
            "invariant: a block is linked right after it was planned, in row order"
        );
        self.grow(ids);
        for plan in plans {
            self.link(view, plan);
        }
    }

    /// Plans and links one block; see [`Hnsw::plan_block`].
    pub fn insert_block(&mut self, view: &View<'_>, ids: &[RecordId], planner: &dyn Planner) {
        let plans = self.plan_block(view, ids, planner);
        self.link_block(view, ids, plans);
    }

    /// Plans the row at offset `offset` of the block starting at row
    /// `block_start` (whose ids are `ids`) against this frozen graph: the
    /// candidates found by searching each of its layers, plus the exact
    /// distances to the block's earlier rows, and the neighbours the
    /// heuristic chooses among them. Deleted rows are candidates like any
    /// other, so the graph does not depend on when deletes happened
    /// relative to the build. Choosing needs only distances, so it happens
    /// here, in parallel, rather than in the sequential link.
    pub fn plan_node(
        &self,
        view: &View<'_>,
        block_start: u32,
        ids: &[RecordId],
        offset: usize,
        ef: usize,
    ) -> NodePlan {
        let (seed, m) = (self.params.seed, self.params.m);
        let row = block_start + offset as u32;
        let level = level_of(ids[offset], seed, m);
        if !view.linked(row) {
            return NodePlan {
                row,
                chosen: vec![Vec::new(); usize::from(level) + 1],
            };
        }
        let query = view.vector(row);
        let layers = if self.entry.is_some() {
            search::with_scratch(|scratch| self.walk(view, query, level, ef, |_| true, scratch))
        } else {
            Vec::new()
        };
        let mut peers: Vec<(Distance, u32, u8)> = (0..offset)
            .filter(|&p| view.linked(block_start + p as u32))
            .map(|p| {
                (
                    view.distance(query, block_start + p as u32),
                    block_start + p as u32,
                    level_of(ids[p], seed, m),
                )
            })
            .collect();
        peers.sort_unstable();
        peers.truncate(ef);
        let chosen = (0..=level)
            .map(|lc| {
                let mut candidates: Vec<(Distance, u32)> =
                    layers.get(usize::from(lc)).cloned().unwrap_or_default();
                candidates.extend(peers.iter().filter(|p| p.2 >= lc).map(|p| (p.0, p.1)));
                candidates.sort_unstable();
                candidates.dedup_by_key(|c| c.1);
                self.select(view, &candidates, self.m())
            })
            .collect();
        NodePlan { row, chosen }
    }

    /// Links a planned node: chooses its neighbours on each of its layers
    /// by the heuristic and adds the reverse links, pruning neighbours that
    /// exceed their capacity.
    pub fn link(&mut self, view: &View<'_>, plan: NodePlan) {
        let row = plan.row;
        let level = self.levels[row as usize];
        debug_assert_eq!(plan.chosen.len(), usize::from(level) + 1);
        for (lc, chosen) in (0..=level).zip(plan.chosen) {
            self.set_links(row, lc, &chosen);
            let cap = if lc == 0 { self.m0() } else { self.m() };
            for &n in &chosen {
                let mut links: Vec<u32> = self.links(n, lc).to_vec();
                links.push(row);
                if links.len() > cap {
                    let base = view.vector(n);
                    let mut scored: Vec<(Distance, u32)> =
                        links.iter().map(|&l| (view.distance(base, l), l)).collect();
                    scored.sort_unstable();
                    links = self.select(view, &scored, cap);
                }
                self.set_links(n, lc, &links);
            }
        }
        let old_entry = self.entry;
        if !view.linked(row) {
            return;
        }
        if self.entry.is_none() || level > self.max_level {
            self.entry = Some(row);
            self.max_level = level;
        }
        // Pruning can take a row's last way in: give every such row, the
        // new row included, a link back so that it stays reachable.
        let mut orphans = core::mem::take(&mut self.orphans);
        orphans.push(row);
        orphans.extend(old_entry);
        orphans.sort_unstable();
        orphans.dedup();
        for x in orphans {
            if self.indeg0[x as usize] == 0 && Some(x) != self.entry {
                self.rescue(view, x);
            }
        }
        self.orphans.clear();
    }

    /// Links `x`, which no row links to on layer 0, from the nearest of its
    /// own neighbours: into a free slot if one has room, else in place of
    /// that neighbour's farthest link to a row that has other ways in.
    fn rescue(&mut self, view: &View<'_>, x: u32) {
        let base = view.vector(x);
        let mut near: Vec<(Distance, u32)> = self
            .links(x, 0)
            .iter()
            .map(|&y| (view.distance(base, y), y))
            .collect();
        near.sort_unstable();
        for &(_, y) in &near {
            if usize::from(self.len0[y as usize]) < self.m0() {
                let mut links = self.links(y, 0).to_vec();
                links.push(x);
                self.set_links(y, 0, &links);
                return;
            }
        }
        for &(_, y) in &near {
            let yv = view.vector(y);
            let replace = self
                .links(y, 0)
                .iter()
                .enumerate()
                .filter(|&(_, &z)| z != x && self.indeg0[z as usize] >= 2)
                .map(|(i, &z)| ((view.distance(yv, z), z), i))
                .max();
            if let Some((_, i)) = replace {
                let mut links = self.links(y, 0).to_vec();
                links[i] = x;
                self.set_links(y, 0, &links);
                return;
            }
        }
    }

    /// The neighbour selection heuristic (Malkov and Yashunin, algorithm 4):
    /// walk candidates nearest first and keep one unless an already kept
    /// neighbour is strictly nearer to it than the base is. `candidates` is
    /// sorted by `(distance to the base, row)`.
    fn select(&self, view: &View<'_>, candidates: &[(Distance, u32)], m: usize) -> Vec<u32> {
        let mut kept: Vec<u32> = Vec::with_capacity(m);
        for &(d, c) in candidates {
            if kept.len() >= m {
                break;
            }
            let cv = view.vector(c);
            if kept.iter().all(|&k| view.distance(cv, k) >= d) {
                kept.push(c);
            }
        }
        kept
    }

    /// The hash of the graph, refreshing dirty chunks; see docs/format.md.
    pub fn hash(&mut self) -> Hash32 {
        for chunk in 0..self.chunk_hashes.len() {
            if self.chunk_hashes[chunk].is_none() {
                self.chunk_hashes[chunk] = Some(self.chunk_hash(chunk));
            }
        }
        let chunks: Vec<Hash32> = self.chunk_hashes.iter().flatten().copied().collect();
        self.hash_of(&chunks)
    }

    /// The hash from scratch.
    pub fn hash_uncached(&self) -> Hash32 {
        let chunks: Vec<Hash32> = (0..self.len().div_ceil(INDEX_CHUNK_NODES))
            .map(|c| self.chunk_hash(c))
            .collect();
        self.hash_of(&chunks)
    }

    fn hash_of(&self, chunks: &[Hash32]) -> Hash32 {
        let mut h = blake3::Hasher::new();
        h.update(&[INDEX_HASH_DOMAIN]);
        h.update(&self.params.m.to_le_bytes());
        h.update(&self.params.ef_construction.to_le_bytes());
        h.update(&self.params.seed.to_le_bytes());
        h.update(&(self.len() as u64).to_le_bytes());
        h.update(&self.entry.unwrap_or(u32::MAX).to_le_bytes());
        h.update(&[self.max_level]);
        h.update(&(chunks.len() as u64).to_le_bytes());
        for c in chunks {
            h.update(c.as_bytes());
        }
        h.finalize().into()
    }

    fn chunk_hash(&self, chunk: usize) -> Hash32 {
        let start = chunk * INDEX_CHUNK_NODES;
        let end = (start + INDEX_CHUNK_NODES).min(self.len());
        let mut bytes = Vec::new();
        bytes.push(INDEX_HASH_DOMAIN);
        bytes.extend_from_slice(&(chunk as u64).to_le_bytes());
        for row in start..end {
            let row = row as u32;
            let level = self.levels[row as usize];
            bytes.push(level);
            for lc in 0..=level {
                let links = self.links(row, lc);
                bytes.extend_from_slice(&(links.len() as u16).to_le_bytes());
                for l in links {
                    bytes.extend_from_slice(&l.to_le_bytes());
                }
            }
        }
        blake3::hash(&bytes).into()
    }

    /// The graph's parts, for snapshots: levels, layer-0 lengths and slots,
    /// upper links, entry and max level.
    pub fn parts(&self) -> HnswParts<'_> {
        HnswParts {
            levels: &self.levels,
            len0: &self.len0,
            links0: &self.links0,
            upper: &self.upper,
            entry: self.entry,
            max_level: self.max_level,
        }
    }

    /// Rebuilds a graph from stored parts over `rows` rows whose ids are
    /// `ids`, checking every invariant the insert path keeps.
    pub fn from_parts(
        params: IndexParams,
        ids: &[RecordId],
        len0: Vec<u16>,
        links0: Vec<u32>,
        upper: BTreeMap<u32, Vec<Vec<u32>>>,
        entry: Option<u32>,
    ) -> Result<Hnsw, IndexError> {
        let rows = ids.len();
        let mut g = Hnsw::new(params);
        g.grow(ids);
        let m0 = g.m0();
        if len0.len() != rows || links0.len() != rows * m0 {
            return Err(IndexError::Shape);
        }
        for r in 0..rows {
            let n = usize::from(len0[r]);
            if n > m0
                || links0[r * m0..r * m0 + n]
                    .iter()
                    .any(|&l| l as usize >= rows)
            {
                return Err(IndexError::BadLinks { row: r as u32 });
            }
        }
        let above = g.levels.iter().filter(|&&l| l > 0).count();
        if above != upper.len() {
            return Err(IndexError::Shape);
        }
        for (&row, layers) in &upper {
            let level = *g
                .levels
                .get(row as usize)
                .ok_or(IndexError::BadLinks { row })?;
            if layers.len() != usize::from(level)
                || layers
                    .iter()
                    .any(|l| l.len() > g.m() || l.iter().any(|&x| x as usize >= rows))
            {
                return Err(IndexError::BadLinks { row });
            }
        }
        g.indeg0 = vec![0; rows];
        for r in 0..rows {
            for &l in &links0[r * m0..r * m0 + usize::from(len0[r])] {
                g.indeg0[l as usize] += 1;
            }
        }
        g.len0 = len0;
        g.links0 = links0;
        g.upper = upper;
        match entry {
            Some(e) if (e as usize) < rows => {
                g.max_level = g.levels[e as usize];
                if g.levels.iter().any(|&l| l > g.max_level) {
                    return Err(IndexError::BadEntry);
                }
                g.entry = Some(e);
            }
            None if rows == 0 => {}
            _ => return Err(IndexError::BadEntry),
        }
        g.chunk_hashes = vec![None; rows.div_ceil(INDEX_CHUNK_NODES)];
        Ok(g)
    }

    /// Rows reachable from the entry point through any layer's links, as a
    /// bit per row. A test of the "no live node becomes unreachable" rule.
    pub fn reachable(&self) -> Vec<bool> {
        let mut seen = vec![false; self.len()];
        let Some(entry) = self.entry else {
            return seen;
        };
        let mut stack = vec![entry];
        seen[entry as usize] = true;
        while let Some(r) = stack.pop() {
            for lc in 0..=self.levels[r as usize] {
                for &n in self.links(r, lc) {
                    if !seen[n as usize] {
                        seen[n as usize] = true;
                        stack.push(n);
                    }
                }
            }
        }
        seen
    }
}

/// Borrowed parts of a graph, for snapshots.
#[derive(Clone, Copy, Debug)]
pub struct HnswParts<'a> {
    pub levels: &'a [u8],
    pub len0: &'a [u16],
    pub links0: &'a [u32],
    pub upper: &'a BTreeMap<u32, Vec<Vec<u32>>>,
    pub entry: Option<u32>,
    pub max_level: u8,
}

/// Why stored graph parts are not a valid graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    #[error("index columns do not match the rows")]
    Shape,
    #[error("node {row} has invalid links")]
    BadLinks { row: u32 },
    #[error("the entry point is missing or not on the top level")]
    BadEntry,
}

/// Hints the CPU to load `lines` cache lines from `ptr`; no effect on
/// results.
#[inline(always)]
pub(crate) fn prefetch(ptr: *const u8, lines: usize) {
    #[cfg(target_arch = "x86_64")]
    for i in 0..lines {
        // SAFETY: a prefetch is a hint; it never faults, whatever the
        // address, and `wrapping_add` never dereferences.
        unsafe {
            core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
                ptr.wrapping_add(i * 64).cast(),
            );
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (ptr, lines);
}
