//! The state machine: collections stored as parallel columns, a graph of
//! labelled nodes and edges, and `apply`, the only function that changes
//! them.
//!
//! A record is a dense row index; its id, vector, tag, metadata and
//! tombstone are components in parallel columns (struct of arrays). Rows are
//! only appended: a delete sets the tombstone, an update rewrites the row's
//! tag or metadata in place, and re-inserting a deleted id appends a new
//! row. Every rejected event is checked in full before anything is touched,
//! so a rejected event changes nothing.

mod graph;
mod references;

use alloc::collections::{BTreeMap, BinaryHeap};
use alloc::vec::Vec;

use crate::distance::compact::CompactKernel;
use crate::distance::{self, Distance, Kernel, Metric};
use crate::event::{Batch, CollectionConfig, CollectionName, Event, NodeId, RecordId};
use crate::hash::{self, CHUNK_ROWS, Hash32, RowView};
use crate::hnsw::{
    BLOCK_ROWS, Compact, Hnsw, IndexError, NodePlan, Planner, SearchOptions, SearchScratch, View,
};

/// A tag filter matching at most one row in this many is searched exactly:
/// scanning the matching rows is then cheaper than walking the graph past
/// the rows the filter rejects, and exact.
pub const FILTER_EXACT_RATIO: u64 = 8;
use crate::limits;
use crate::rows::Rows;
use crate::table::{
    AlterAction, ColumnValues, NULL_VECTOR_TAG, RowCounts, RowError, SchemaError, Table,
};

pub use graph::Graph;
pub use references::ReferenceError;

/// Why an event was rejected. Every variant is the event's fault (the
/// caller's), never the state's: the state is unchanged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    #[error("collection {0} does not exist")]
    UnknownCollection(CollectionName),
    #[error("collection {0} already exists")]
    CollectionExists(CollectionName),
    #[error("a database holds at most {max} collections", max = limits::COLLECTIONS_MAX)]
    TooManyCollections,
    #[error("dimension {0} is outside 1..={max}", max = limits::DIM_MAX)]
    BadDimension(u32),
    #[error("HNSW m = {m} must be in 2..={m_max} and ef_construction = {ef} in 1..={ef_max}", m_max = limits::HNSW_M_MAX, ef_max = limits::HNSW_EF_CONSTRUCTION_MAX)]
    BadIndexParams { m: u16, ef: u16 },
    #[error(
        "record {id}: vector has {got} components, collection {collection} has dimension {expected}"
    )]
    DimensionMismatch {
        collection: CollectionName,
        id: RecordId,
        expected: u32,
        got: u64,
    },
    #[error("record {id}: metadata of {len} bytes exceeds {max}", max = limits::METADATA_BYTES_MAX)]
    MetadataTooLarge { id: RecordId, len: u64 },
    #[error("record {id} already exists in collection {collection}")]
    DuplicateId {
        collection: CollectionName,
        id: RecordId,
    },
    #[error("record {id} does not exist in collection {collection}")]
    UnknownRecord {
        collection: CollectionName,
        id: RecordId,
    },
    #[error("batch is empty or holds more than {max} records", max = limits::BATCH_RECORDS_MAX)]
    BadBatchSize,
    #[error("record {id} appears twice in one event on collection {collection}")]
    RepeatedId {
        collection: CollectionName,
        id: RecordId,
    },
    #[error("an update sets neither a tag nor metadata")]
    EmptyUpdate,
    #[error("{count} collection names in one event is outside 1..={max}", max = limits::COLLECTIONS_MAX)]
    BadNameCount { count: u64 },
    #[error("collection {0} appears twice in one event")]
    RepeatedCollection(CollectionName),
    #[error("batch columns disagree in length")]
    MalformedBatch,
    #[error("table {collection}: {source}")]
    Schema {
        collection: CollectionName,
        source: SchemaError,
    },
    #[error("table {collection}: {source}")]
    Row {
        collection: CollectionName,
        source: alloc::boxed::Box<RowError>,
    },
    #[error("{count} writes in one transaction is outside 2..={max}", max = limits::TRANSACTION_EVENTS_MAX)]
    BadTransactionSize { count: u64 },
    #[error("a transaction holds another transaction")]
    NestedTransaction,
    #[error("write {index} of the transaction: {source}")]
    InTransaction {
        index: u64,
        source: alloc::boxed::Box<ApplyError>,
    },
    #[error("{0}")]
    Reference(alloc::boxed::Box<ReferenceError>),
    #[error("collection {0} has declared columns: write it with table events")]
    TableNeedsColumns(CollectionName),
    #[error("collection {0} has no declared columns")]
    NotATable(CollectionName),
    #[error("graph node {0} already exists")]
    NodeExists(NodeId),
    #[error("graph node {0} does not exist")]
    UnknownNode(NodeId),
    #[error("graph edge {from} -> {to} (label {label}) already exists")]
    EdgeExists {
        from: NodeId,
        to: NodeId,
        label: u64,
    },
    #[error("graph edge {from} -> {to} (label {label}) does not exist")]
    UnknownEdge {
        from: NodeId,
        to: NodeId,
        label: u64,
    },
}

/// What `apply` did, for callers that keep side structures (the index).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Applied {
    /// Rows `first_row..first_row + count` were appended to `collection`.
    Appended {
        collection: CollectionName,
        first_row: u32,
        count: u32,
    },
    /// Row `row` of `collection` was tombstoned.
    Deleted {
        collection: CollectionName,
        row: u32,
    },
    /// Collections were created or dropped, rows' tags or metadata were
    /// updated, several rows were tombstoned at once, or the graph changed.
    Other,
}

/// One collection's columns.
#[derive(Clone, Debug)]
pub struct Collection {
    name: CollectionName,
    config: CollectionConfig,
    ids: Vec<RecordId>,
    /// Q16.16 raw components, one row of `dim` per record; appends never
    /// move stored rows.
    vectors: Rows<i32>,
    tags: Vec<u64>,
    /// Metadata of row `r` is `metadata_heap[start[r]..start[r] + len[r]]`.
    /// Updates append to the heap; snapshots write it compacted.
    metadata_start: Vec<u64>,
    metadata_len: Vec<u32>,
    metadata_heap: Vec<u8>,
    deleted: Vec<bool>,
    /// Live id → row.
    rows_by_id: BTreeMap<RecordId, u32>,
    /// Largest |component| ever stored; picks the distance kernel path.
    max_abs: u32,
    /// Cached chunk hashes; `None` when the chunk changed since.
    chunk_hashes: Vec<Option<Hash32>>,
    /// Live rows per tag, to choose between graph and exact filtered search.
    tag_counts: BTreeMap<u64, u64>,
    /// Rows per tag, ascending, deleted ones included (searches skip
    /// them): what a filtered scan reads instead of every row.
    tag_rows: BTreeMap<u64, Vec<u32>>,
    /// The HNSW graph over every row (deleted rows stay as waypoints).
    index: Hnsw,
    /// The compact copy of the indexed rows that graph walks read (derived
    /// from the vectors; not part of any hash).
    compact: Compact,
    /// Which creation of this name this is (not part of the hash): lets a
    /// background builder tell a dropped and re-created collection apart.
    incarnation: u64,
    /// Declared columns, for collections created by `CreateTable`.
    table: Option<Table>,
}

impl Collection {
    fn new(name: CollectionName, config: CollectionConfig, incarnation: u64) -> Collection {
        Collection {
            name,
            config,
            ids: Vec::new(),
            vectors: Rows::new(config.dim as usize),
            tags: Vec::new(),
            metadata_start: Vec::new(),
            metadata_len: Vec::new(),
            metadata_heap: Vec::new(),
            deleted: Vec::new(),
            rows_by_id: BTreeMap::new(),
            max_abs: 0,
            chunk_hashes: Vec::new(),
            tag_counts: BTreeMap::new(),
            tag_rows: BTreeMap::new(),
            index: Hnsw::new(config.index),
            compact: Compact::new(config.dim as usize),
            incarnation,
            table: None,
        }
    }

    /// The declared columns, when the collection was created as a table.
    pub fn table(&self) -> Option<&Table> {
        self.table.as_ref()
    }

    /// Restores the scalar values of the row just restored by
    /// [`Collection::restore_row`], as snapshot loading does.
    pub fn restore_table_row(&mut self, values: &[Option<&[u8]>]) -> Result<(), ApplyError> {
        let row = self.rows() - 1;
        let (id, deleted) = (self.ids[row].0, self.deleted[row]);
        let name = self.name.clone();
        let table = self
            .table
            .as_mut()
            .ok_or_else(|| ApplyError::NotATable(name.clone()))?;
        table
            .restore_row(row as u32, id, values, deleted)
            .map_err(|source| ApplyError::Row {
                collection: name,
                source: alloc::boxed::Box::new(source),
            })
    }

    /// Restores a table's sequences after its rows.
    pub fn restore_sequences(&mut self, sequences: &[i64]) -> bool {
        self.table
            .as_mut()
            .is_some_and(|t| t.restore_sequences(sequences))
    }

    /// Which creation of this collection's name this is, in this process.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    pub fn name(&self) -> &CollectionName {
        &self.name
    }

    pub fn config(&self) -> &CollectionConfig {
        &self.config
    }

    pub fn dim(&self) -> usize {
        self.config.dim as usize
    }

    /// Rows, live and deleted.
    pub fn rows(&self) -> usize {
        self.ids.len()
    }

    /// Live records.
    pub fn live(&self) -> usize {
        self.rows_by_id.len()
    }

    pub fn ids(&self) -> &[RecordId] {
        &self.ids
    }

    /// All vectors, one row per record.
    pub fn vectors(&self) -> &Rows<i32> {
        &self.vectors
    }

    pub fn vector(&self, row: usize) -> &[i32] {
        self.vectors.row(row)
    }

    pub fn tags(&self) -> &[u64] {
        &self.tags
    }

    pub fn metadata(&self, row: usize) -> &[u8] {
        let start = self.metadata_start[row] as usize;
        &self.metadata_heap[start..start + self.metadata_len[row] as usize]
    }

    /// Tombstones, one per row.
    pub fn deleted(&self) -> &[bool] {
        &self.deleted
    }

    pub fn row_of(&self, id: RecordId) -> Option<u32> {
        self.rows_by_id.get(&id).copied()
    }

    pub fn max_abs(&self) -> u32 {
        self.max_abs
    }

    /// A kernel that is exact for `query` against every stored vector.
    pub fn kernel_for(&self, query: &[i32]) -> Kernel {
        Kernel::new(self.dim(), self.max_abs, distance::max_abs(query))
    }

    /// Appends a stored row, live or deleted, as snapshot loading does.
    /// Rows must come in row order. Checks what `apply` would check, so a
    /// damaged snapshot cannot build a state no log could have built.
    pub fn restore_row(
        &mut self,
        id: RecordId,
        vector: &[i32],
        tag: u64,
        metadata: &[u8],
        deleted: bool,
    ) -> Result<(), ApplyError> {
        self.check_record(id, vector.len() as u64, metadata.len() as u64)?;
        self.push_row(id, vector, tag, metadata);
        if deleted {
            let row = self.rows() as u32 - 1;
            self.deleted[row as usize] = true;
            self.rows_by_id.remove(&id);
            self.count_tag(tag, false);
        }
        Ok(())
    }

    /// Installs a stored graph after every row was restored.
    pub fn restore_index(&mut self, index: Hnsw) -> Result<(), IndexError> {
        if index.len() > self.rows()
            || !index.len().is_multiple_of(BLOCK_ROWS)
            || index.params() != &self.config.index
        {
            return Err(IndexError::Shape);
        }
        self.index = index;
        self.compact.clear();
        for run in self.vectors.runs(0..self.index.len()) {
            self.compact.extend(run);
        }
        Ok(())
    }

    /// Rebuilds the graph of restored rows by inserting them in row order,
    /// for states restored without a stored graph.
    pub fn rebuild_index(&mut self, planner: &dyn Planner) {
        self.index = Hnsw::new(self.config.index);
        self.compact.clear();
        self.build_index(planner);
    }

    /// Rows in the graph (whole blocks); rows after them are searched
    /// exactly.
    pub fn indexed_rows(&self) -> usize {
        self.index.len()
    }

    /// Whether a complete block of rows waits to join the graph. A table
    /// without a vector column has no graph: its vectors are all [0].
    pub fn index_pending(&self) -> bool {
        self.index.len() + BLOCK_ROWS <= self.rows()
            && self
                .table
                .as_ref()
                .is_none_or(|t| t.schema().vector_column().is_some())
    }

    /// Plans the next complete block of rows against the current graph,
    /// without changing anything (callers may hold only a shared borrow,
    /// and run it while others read). `None` when no block is complete.
    pub fn plan_index_block(&self, planner: &dyn Planner) -> Option<Vec<NodePlan>> {
        if !self.index_pending() {
            return None;
        }
        let start = self.index.len();
        let ids = &self.ids[start..start + BLOCK_ROWS];
        Some(self.index.plan_block(&self.build_view(), ids, planner))
    }

    /// Plans rows `offset..offset + count` of the next complete block (see
    /// [`Collection::plan_index_block`]), so that a block can be planned in
    /// pieces, each under a short shared borrow.
    pub fn plan_index_rows(
        &self,
        offset: usize,
        count: usize,
        planner: &dyn Planner,
    ) -> Option<Vec<NodePlan>> {
        if !self.index_pending() || offset >= BLOCK_ROWS {
            return None;
        }
        let start = self.index.len();
        let ids = &self.ids[start..start + BLOCK_ROWS];
        let end = (offset + count).min(BLOCK_ROWS);
        Some(
            self.index
                .plan_rows(&self.build_view(), ids, offset..end, planner),
        )
    }

    /// Links a block planned by [`Collection::plan_index_block`] on this
    /// same graph. Only index building changes the graph, so a plan made
    /// under a shared borrow is still valid under the exclusive one.
    pub fn link_index_block(&mut self, plans: Vec<NodePlan>) {
        let start = self.index.len();
        debug_assert_eq!(self.compact.len(), start);
        for run in self.vectors.runs(start..start + plans.len()) {
            self.compact.extend(run);
        }
        let view = View {
            dim: self.config.dim as usize,
            metric: self.config.metric,
            vectors: &self.vectors,
            deleted: &self.deleted,
            tags: &self.tags,
            kernel: Kernel::new(self.config.dim as usize, self.max_abs, self.max_abs),
            compact: None,
            unlinked: self.unlinked_tag(),
        };
        self.index
            .link_block(&view, &self.ids[start..start + plans.len()], plans);
    }

    /// Builds every complete block into the graph. Returns the blocks added.
    pub fn build_index(&mut self, planner: &dyn Planner) -> usize {
        let mut blocks = 0;
        while let Some(plans) = self.plan_index_block(planner) {
            self.link_index_block(plans);
            blocks += 1;
        }
        blocks
    }

    fn build_view(&self) -> View<'_> {
        self.view(self.max_abs)
    }

    /// The HNSW graph.
    pub fn index(&self) -> &Hnsw {
        &self.index
    }

    /// The index hash, refreshing dirty chunks.
    pub fn index_hash(&mut self) -> Hash32 {
        self.index.hash()
    }

    /// The index hash from scratch.
    pub fn index_hash_uncached(&self) -> Hash32 {
        self.index.hash_uncached()
    }

    /// Moves `row` from the row list of tag `old` to that of `new`.
    fn move_tag_row(&mut self, row: u32, old: u64, new: u64) {
        if let Some(rows) = self.tag_rows.get_mut(&old)
            && let Ok(i) = rows.binary_search(&row)
        {
            rows.remove(i);
            if rows.is_empty() {
                self.tag_rows.remove(&old);
            }
        }
        let rows = self.tag_rows.entry(new).or_default();
        let at = rows.partition_point(|&r| r < row);
        rows.insert(at, row);
    }

    fn count_tag(&mut self, tag: u64, add: bool) {
        let n = self.tag_counts.entry(tag).or_insert(0);
        if add {
            *n += 1;
        } else {
            *n -= 1;
            if *n == 0 {
                self.tag_counts.remove(&tag);
            }
        }
    }

    /// Live rows with `tag`.
    pub fn tag_count(&self, tag: u64) -> u64 {
        self.tag_counts.get(&tag).copied().unwrap_or(0)
    }

    /// The columns as the graph reads them, with a kernel exact for every
    /// stored vector and a query of magnitude `query_max_abs`.
    pub fn view(&self, query_max_abs: u32) -> View<'_> {
        View {
            dim: self.dim(),
            metric: self.config.metric,
            vectors: &self.vectors,
            deleted: &self.deleted,
            tags: &self.tags,
            kernel: Kernel::new(self.dim(), self.max_abs, query_max_abs),
            compact: Some(&self.compact),
            unlinked: self.unlinked_tag(),
        }
    }

    /// The tag of rows kept out of the graph: a table's NULL vectors.
    fn unlinked_tag(&self) -> Option<u64> {
        self.table.is_some().then_some(NULL_VECTOR_TAG)
    }

    /// The `k` nearest live rows to `query` by `(distance, id)`: through the
    /// graph, or exactly when asked, when the graph does not cover every
    /// row, or when a tag filter matches few enough rows that scanning them
    /// is cheaper and exact.
    pub fn search(
        &self,
        query: &[i32],
        k: usize,
        opts: &SearchOptions,
    ) -> Vec<(Distance, RecordId)> {
        crate::hnsw::with_scratch(|scratch| self.search_with(query, k, opts, scratch))
    }

    /// [`Collection::search`] with reusable scratch memory.
    pub fn search_with(
        &self,
        query: &[i32],
        k: usize,
        opts: &SearchOptions,
        scratch: &mut SearchScratch,
    ) -> Vec<(Distance, RecordId)> {
        assert_eq!(
            query.len(),
            self.dim(),
            "invariant: callers check the query dimension"
        );
        let Some(tag) = self.search_tag(opts.tag) else {
            return Vec::new();
        };
        if k == 0 {
            return Vec::new();
        }
        let live = self.live() as u64;
        let matching = tag.map_or(live, |t| self.tag_count(t));
        let exact = opts.exact
            || self.index.is_empty()
            || matching <= k as u64
            || matching.saturating_mul(FILTER_EXACT_RATIO) <= live;
        if exact {
            return self.scan_rows(query, k, tag, 0..self.rows());
        }
        let view = self.view(distance::max_abs(query));
        // With no row deleted every row of the graph is live, and the walk
        // reads no deleted flag: at a million rows each read is a cache
        // miss of its own.
        let none_deleted = self.live() == self.rows();
        let accept = |r: u32| {
            (none_deleted || !view.deleted[r as usize])
                && tag.is_none_or(|t| view.tags[r as usize] == t)
        };
        let found = self
            .index
            .search(&view, query, opts.ef.max(k), scratch, accept);
        let mut hits: Vec<(Distance, RecordId)> = found
            .into_iter()
            .map(|(d, r)| (d, self.ids[r as usize]))
            .collect();
        // Rows not yet in the graph are scanned exactly.
        hits.extend(self.scan_rows(query, k, tag, self.index.len()..self.rows()));
        hits.sort_unstable();
        hits.truncate(k);
        hits
    }

    /// The `k` nearest live rows to `query` among `allowed` (row numbers,
    /// ascending, as a filter evaluated on this state selects them), by
    /// `(distance, id)`. As for a tag filter: exact over the allowed rows
    /// when asked, when the graph is empty, or when they are at most one
    /// live row in [`FILTER_EXACT_RATIO`] (or at most `k`); otherwise a
    /// walk of the graph that keeps only allowed rows, with `opts.ef`, and
    /// an exact scan of the allowed rows the graph does not hold yet.
    /// `opts.tag` is ignored: the caller folds tags into `allowed`.
    pub fn search_among(
        &self,
        query: &[i32],
        k: usize,
        opts: &SearchOptions,
        allowed: &[u32],
    ) -> Vec<(Distance, RecordId)> {
        assert_eq!(
            query.len(),
            self.dim(),
            "invariant: callers check the query dimension"
        );
        debug_assert!(
            allowed.windows(2).all(|w| w[0] < w[1]),
            "invariant: allowed rows are ascending"
        );
        if k == 0 || allowed.is_empty() {
            return Vec::new();
        }
        // A table's rows with a NULL vector are never candidates.
        let candidate = |r: usize| !self.deleted[r] && self.has_vector(r);
        let live = self.live() as u64;
        let matching = allowed.len() as u64;
        let exact = opts.exact
            || self.index.is_empty()
            || matching <= k as u64
            || matching.saturating_mul(FILTER_EXACT_RATIO) <= live;
        let kernel = self.kernel_for(query);
        let metric: Metric = self.config.metric;
        let mut top = TopK::new(k);
        let mut scan = |rows: &[u32]| {
            for &row in rows {
                let r = row as usize;
                if r < self.rows() && candidate(r) {
                    top.offer((kernel.distance(metric, query, self.vector(r)), self.ids[r]));
                }
            }
        };
        if exact {
            scan(allowed);
            return top.into_sorted();
        }
        let indexed = self.index.len() as u32;
        let view = self.view(distance::max_abs(query));
        let accept = |r: u32| candidate(r as usize) && allowed.binary_search(&r).is_ok();
        let found = crate::hnsw::with_scratch(|scratch| {
            self.index
                .search(&view, query, opts.ef.max(k), scratch, accept)
        });
        // Rows not yet in the graph are scanned exactly.
        scan(&allowed[allowed.partition_point(|&r| r < indexed)..]);
        for (d, r) in found {
            top.offer((d, self.ids[r as usize]));
        }
        top.into_sorted()
    }

    fn push_row(&mut self, id: RecordId, vector: &[i32], tag: u64, metadata: &[u8]) {
        let row = self.ids.len() as u32;
        self.ids.push(id);
        self.vectors.extend_from_slice(vector);
        self.max_abs = self.max_abs.max(distance::max_abs(vector));
        self.tags.push(tag);
        self.metadata_start.push(self.metadata_heap.len() as u64);
        self.metadata_len.push(metadata.len() as u32);
        self.metadata_heap.extend_from_slice(metadata);
        self.deleted.push(false);
        self.rows_by_id.insert(id, row);
        self.count_tag(tag, true);
        self.tag_rows.entry(tag).or_default().push(row);
        self.dirty(row);
    }

    /// Appends a checked batch column by column: the same rows as
    /// `push_row` for each record, with bulk copies.
    fn push_batch(&mut self, batch: &Batch) {
        let first = self.ids.len() as u32;
        self.ids.extend_from_slice(&batch.ids);
        self.vectors.extend_from_slice(&batch.vectors);
        self.max_abs = self.max_abs.max(distance::max_abs(&batch.vectors));
        self.tags.extend_from_slice(&batch.tags);
        let heap_start = self.metadata_heap.len() as u64;
        let mut start = 0u32;
        for &end in &batch.metadata_ends {
            self.metadata_start.push(heap_start + u64::from(start));
            self.metadata_len.push(end - start);
            start = end;
        }
        self.metadata_heap.extend_from_slice(&batch.metadata_bytes);
        self.deleted.resize(self.deleted.len() + batch.len(), false);
        for (i, id) in batch.ids.iter().enumerate() {
            self.rows_by_id.insert(*id, first + i as u32);
        }
        for &tag in &batch.tags {
            self.count_tag(tag, true);
        }
        // Runs of one tag are common (often the whole batch): one lookup
        // per run.
        let mut row = first;
        for run in batch.tags.chunk_by(|a, b| a == b) {
            let rows = self.tag_rows.entry(run[0]).or_default();
            rows.extend(row..row + run.len() as u32);
            row += run.len() as u32;
        }
        if !batch.is_empty() {
            let last = first + batch.len() as u32 - 1;
            for chunk in (first as usize / CHUNK_ROWS)..=(last as usize / CHUNK_ROWS) {
                self.dirty((chunk * CHUNK_ROWS) as u32);
            }
        }
    }

    fn dirty(&mut self, row: u32) {
        let chunk = row as usize / CHUNK_ROWS;
        if chunk >= self.chunk_hashes.len() {
            self.chunk_hashes.resize(chunk + 1, None);
        }
        self.chunk_hashes[chunk] = None;
    }

    /// Checks that `ids` is a valid set of live records for a batch
    /// event: 1 to `BATCH_RECORDS_MAX` of them, each live, none twice.
    fn check_live_ids(&self, ids: &[RecordId]) -> Result<(), ApplyError> {
        if ids.is_empty() || ids.len() > limits::BATCH_RECORDS_MAX as usize {
            return Err(ApplyError::BadBatchSize);
        }
        for id in ids {
            self.live_row(*id)?;
        }
        let mut sorted = ids.to_vec();
        sorted.sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(ApplyError::RepeatedId {
                collection: self.name.clone(),
                id: w[0],
            });
        }
        Ok(())
    }

    /// Tombstones the live record `id`.
    fn delete_record(&mut self, id: RecordId) -> Result<u32, ApplyError> {
        let row = self.live_row(id)?;
        self.deleted[row as usize] = true;
        self.rows_by_id.remove(&id);
        if let Some(table) = &mut self.table {
            table.delete(row);
        }
        let tag = self.tags[row as usize];
        self.count_tag(tag, false);
        self.dirty(row);
        Ok(row)
    }

    /// Rewrites the tag of the live record `id`.
    fn set_tag(&mut self, id: RecordId, tag: u64) -> Result<(), ApplyError> {
        let row = self.live_row(id)?;
        let old = self.tags[row as usize];
        self.count_tag(old, false);
        self.count_tag(tag, true);
        self.move_tag_row(row, old, tag);
        self.tags[row as usize] = tag;
        self.dirty(row);
        Ok(())
    }

    /// Rewrites the metadata of the live record `id`.
    fn set_metadata(&mut self, id: RecordId, metadata: &[u8]) -> Result<(), ApplyError> {
        let row = self.live_row(id)?;
        self.metadata_start[row as usize] = self.metadata_heap.len() as u64;
        self.metadata_len[row as usize] = metadata.len() as u32;
        self.metadata_heap.extend_from_slice(metadata);
        self.dirty(row);
        Ok(())
    }

    fn table_or_refuse(&self) -> Result<&Table, ApplyError> {
        self.table
            .as_ref()
            .ok_or_else(|| ApplyError::NotATable(self.name.clone()))
    }

    fn row_error(&self, source: RowError) -> ApplyError {
        ApplyError::Row {
            collection: self.name.clone(),
            source: alloc::boxed::Box::new(source),
        }
    }

    fn live_row(&self, id: RecordId) -> Result<u32, ApplyError> {
        self.row_of(id).ok_or_else(|| ApplyError::UnknownRecord {
            collection: self.name.clone(),
            id,
        })
    }

    fn check_record(&self, id: RecordId, dim: u64, metadata_len: u64) -> Result<(), ApplyError> {
        self.check_shape(id, dim, metadata_len)?;
        if self.rows_by_id.contains_key(&id) {
            return Err(ApplyError::DuplicateId {
                collection: self.name.clone(),
                id,
            });
        }
        Ok(())
    }

    /// The checks of [`Collection::check_record`] that do not look at
    /// other records.
    fn check_shape(&self, id: RecordId, dim: u64, metadata_len: u64) -> Result<(), ApplyError> {
        if dim != u64::from(self.config.dim) {
            return Err(ApplyError::DimensionMismatch {
                collection: self.name.clone(),
                id,
                expected: self.config.dim,
                got: dim,
            });
        }
        if metadata_len > u64::from(limits::METADATA_BYTES_MAX) {
            return Err(ApplyError::MetadataTooLarge {
                id,
                len: metadata_len,
            });
        }
        Ok(())
    }

    /// The checks of [`Collection::check_batch`] that do not look at
    /// other records (a `ReplaceRows` batch holds live ids on purpose;
    /// the caller checked them).
    fn check_batch_shape(&self, batch: &Batch) -> Result<(), ApplyError> {
        if batch.is_empty() || batch.len() > limits::BATCH_RECORDS_MAX as usize {
            return Err(ApplyError::BadBatchSize);
        }
        if !batch.is_well_formed() {
            return Err(ApplyError::MalformedBatch);
        }
        for i in 0..batch.len() {
            self.check_shape(
                batch.ids[i],
                u64::from(batch.dim),
                batch.metadata(i).len() as u64,
            )?;
        }
        Ok(())
    }

    /// Checks the tags and metadata of records written to a table: no
    /// metadata, and tag 0, or [`NULL_VECTOR_TAG`] with the zero vector
    /// when the table's vector column takes NULL.
    fn check_table_tags(&self, table: &Table, batch: &Batch) -> Result<(), ApplyError> {
        if !batch.metadata_bytes.is_empty() {
            return Err(self.row_error(RowError::TagOrMetadata));
        }
        let dim = batch.dim as usize;
        for (i, &tag) in batch.tags.iter().enumerate() {
            match tag {
                0 => {}
                NULL_VECTOR_TAG => {
                    let schema = table.schema();
                    let column = schema.vector_column().map(|v| &schema.columns[v]);
                    let Some(column) = column else {
                        return Err(self.row_error(RowError::TagOrMetadata));
                    };
                    if column.not_null() {
                        return Err(self.row_error(RowError::Null {
                            column: column.name.clone(),
                        }));
                    }
                    if batch.vectors[i * dim..(i + 1) * dim]
                        .iter()
                        .any(|&x| x != 0)
                    {
                        return Err(self.row_error(RowError::TagOrMetadata));
                    }
                }
                _ => return Err(self.row_error(RowError::TagOrMetadata)),
            }
        }
        Ok(())
    }

    fn check_batch(&self, batch: &Batch) -> Result<(), ApplyError> {
        if batch.is_empty() || batch.len() > limits::BATCH_RECORDS_MAX as usize {
            return Err(ApplyError::BadBatchSize);
        }
        if !batch.is_well_formed() {
            return Err(ApplyError::MalformedBatch);
        }
        let mut sorted: Vec<RecordId> = batch.ids.clone();
        sorted.sort_unstable();
        // Ids above every stored one (the usual append) cannot clash with
        // a stored record: one comparison instead of a lookup per id.
        let above_all = self
            .rows_by_id
            .last_key_value()
            .is_none_or(|(&max, _)| sorted.first().is_some_and(|&first| first > max));
        for i in 0..batch.len() {
            let (id, dim, metadata_len) = (
                batch.ids[i],
                u64::from(batch.dim),
                batch.metadata(i).len() as u64,
            );
            if above_all {
                self.check_shape(id, dim, metadata_len)?;
            } else {
                self.check_record(id, dim, metadata_len)?;
            }
        }
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(ApplyError::DuplicateId {
                collection: self.name.clone(),
                id: w[0],
            });
        }
        Ok(())
    }

    fn row_view(&self, row: usize) -> RowView<'_> {
        RowView {
            id: self.ids[row].0,
            deleted: self.deleted[row],
            tag: self.tags[row],
            vector: self.vector(row),
            metadata: self.metadata(row),
        }
    }

    fn compute_chunk_hash(&self, chunk: usize) -> Hash32 {
        let start = chunk * CHUNK_ROWS;
        let end = (start + CHUNK_ROWS).min(self.rows());
        let mut bytes = Vec::with_capacity((end - start) * (21 + 4 * self.dim()));
        for row in start..end {
            hash::encode_row(&mut bytes, self.row_view(row));
            if let Some(table) = &self.table {
                table.encode_row(&mut bytes, row);
            }
        }
        hash::chunk_hash(chunk as u64, (end - start) as u32, &bytes)
    }

    /// The collection hash, refreshing dirty chunks.
    pub fn hash(&mut self) -> Hash32 {
        for chunk in 0..self.chunk_hashes.len() {
            if self.chunk_hashes[chunk].is_none() {
                self.chunk_hashes[chunk] = Some(self.compute_chunk_hash(chunk));
            }
        }
        let chunks: Vec<Hash32> = self.chunk_hashes.iter().flatten().copied().collect();
        hash::collection_hash(
            &self.name,
            &self.config,
            self.rows() as u64,
            self.live() as u64,
            &chunks,
            self.table.as_ref().map(Table::descriptor).as_deref(),
        )
    }

    /// The collection hash from scratch, ignoring every cache.
    pub fn hash_uncached(&self) -> Hash32 {
        let chunks: Vec<Hash32> = (0..self.rows().div_ceil(CHUNK_ROWS))
            .map(|c| self.compute_chunk_hash(c))
            .collect();
        hash::collection_hash(
            &self.name,
            &self.config,
            self.rows() as u64,
            self.live() as u64,
            &chunks,
            self.table.as_ref().map(Table::descriptor).as_deref(),
        )
    }

    /// Exact top-`k` live records nearest to `query`, optionally only those
    /// whose tag equals `tag`, ordered by `(distance, id)`.
    pub fn search_exact(
        &self,
        query: &[i32],
        k: usize,
        tag: Option<u64>,
    ) -> Vec<(Distance, RecordId)> {
        assert_eq!(
            query.len(),
            self.dim(),
            "invariant: callers check the query dimension"
        );
        let Some(tag) = self.search_tag(tag) else {
            return Vec::new();
        };
        if k == 0 {
            return Vec::new();
        }
        self.scan_rows(query, k, tag, 0..self.rows())
    }

    /// Whether row `r` has a vector: every row but a table's rows whose
    /// vector is NULL (tag [`NULL_VECTOR_TAG`]).
    #[inline]
    pub fn has_vector(&self, r: usize) -> bool {
        self.table.is_none() || self.tags[r] != NULL_VECTOR_TAG
    }

    /// The tag filter a search of `tag` applies. A table's records with
    /// a NULL vector (tag [`NULL_VECTOR_TAG`]) are never candidates: while
    /// a table has any, a search without a tag keeps the rows of tag 0,
    /// and a search for their tag finds nothing (`None`).
    pub fn search_tag(&self, tag: Option<u64>) -> Option<Option<u64>> {
        if self.table.is_none() {
            return Some(tag);
        }
        match tag {
            Some(NULL_VECTOR_TAG) => None,
            None if self.tag_count(NULL_VECTOR_TAG) > 0 => Some(Some(0)),
            tag => Some(tag),
        }
    }

    /// Exact top-`k` over the live rows of `rows` matching `tag`. Rows
    /// the compact copy holds are first ranked by compact distance when
    /// that can be bounded (L2, a faithful copy, a query in its range), and
    /// only rows whose bounds leave them a chance get an exact distance;
    /// the result is the exact top `k` either way.
    fn scan_rows(
        &self,
        query: &[i32],
        k: usize,
        tag: Option<u64>,
        rows: core::ops::Range<usize>,
    ) -> Vec<(Distance, RecordId)> {
        let kernel = self.kernel_for(query);
        let metric: Metric = self.config.metric;
        let mut top = TopK::new(k);
        let mut exact = |row: u32| {
            let row = row as usize;
            top.offer((
                kernel.distance(metric, query, self.vector(row)),
                self.ids[row],
            ));
        };
        let code = (metric == Metric::L2 && self.compact.is_faithful())
            .then(|| self.compact.encode(query))
            .flatten();
        let mut start = rows.start;
        if let Some(code) = code {
            let split = rows.end.min(self.compact.len()).max(start);
            for row in self.bounded_candidates(&code, k, tag, start..split) {
                exact(row);
            }
            start = split;
        }
        self.for_each_match(tag, start..rows.end, &mut exact);
        top.into_sorted()
    }

    /// The rows of `rows` matching `tag` that may be among the `k` nearest
    /// to the query whose compact form is `code`; see
    /// [`Compact::l2_bounds`].
    fn bounded_candidates(
        &self,
        code: &[i16],
        k: usize,
        tag: Option<u64>,
        rows: core::ops::Range<usize>,
    ) -> Vec<u32> {
        let ck = CompactKernel::best();
        let bounds = self.compact.l2_bounds();
        // The k smallest compact distances so far; rows at compact
        // distance `prune` or more are farther than k rows already seen.
        let mut nearest: BinaryHeap<u64> = BinaryHeap::with_capacity(k + 1);
        let mut prune = u64::MAX;
        let mut kept: Vec<(u64, u32)> = Vec::new();
        let compact = &self.compact;
        self.for_each_match_ahead(tag, rows, &mut |row, ahead| {
            if let Some(next) = ahead {
                compact.prefetch(next);
            }
            let d = ck.l2_squared(code, compact.row(row));
            if d >= prune {
                return;
            }
            kept.push((d, row));
            if nearest.len() < k {
                nearest.push(d);
            } else if nearest.peek().is_some_and(|&worst| d < worst) {
                nearest.pop();
                nearest.push(d);
            } else {
                return;
            }
            if nearest.len() == k
                && let Some(&worst) = nearest.peek()
            {
                prune = bounds.prune_from(bounds.upper(worst));
            }
        });
        kept.into_iter()
            .filter(|&(d, _)| d < prune)
            .map(|(_, row)| row)
            .collect()
    }

    /// Calls `f` for every live row of `rows` whose tag is `tag` (any tag
    /// when `None`), in row order.
    fn for_each_match(
        &self,
        tag: Option<u64>,
        rows: core::ops::Range<usize>,
        f: &mut impl FnMut(u32),
    ) {
        self.for_each_match_ahead(tag, rows, &mut |row, _| f(row));
    }

    /// [`Collection::for_each_match`], also passing a matching row a few
    /// places ahead (or `None`), to be loaded early.
    fn for_each_match_ahead(
        &self,
        tag: Option<u64>,
        rows: core::ops::Range<usize>,
        f: &mut impl FnMut(u32, Option<u32>),
    ) {
        // About 32 cache lines in flight: enough to hide the latency of
        // scattered rows, few enough not to evict what is being read.
        let ahead = (32 / self.compact.row_lines()).clamp(2, 16);
        match tag {
            Some(t) => {
                let list = self.tag_rows.get(&t).map_or(&[][..], Vec::as_slice);
                let from = list.partition_point(|&r| (r as usize) < rows.start);
                let to = list.partition_point(|&r| (r as usize) < rows.end);
                let list = &list[from..to];
                for (i, &row) in list.iter().enumerate() {
                    if !self.deleted[row as usize] {
                        f(row, list.get(i + ahead).copied());
                    }
                }
            }
            None => {
                for row in rows.clone() {
                    if !self.deleted[row] {
                        let next = row + ahead;
                        f(row as u32, (next < rows.end).then_some(next as u32));
                    }
                }
            }
        }
    }
}

/// The `k` smallest keys offered, by `(distance, id)`.
struct TopK {
    k: usize,
    heap: BinaryHeap<(Distance, RecordId)>,
}

impl TopK {
    fn new(k: usize) -> TopK {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    #[inline]
    fn offer(&mut self, key: (Distance, RecordId)) {
        if self.heap.len() < self.k {
            self.heap.push(key);
        } else if self.heap.peek().is_some_and(|worst| key < *worst) {
            self.heap.pop();
            self.heap.push(key);
        }
    }

    fn into_sorted(self) -> Vec<(Distance, RecordId)> {
        self.heap.into_sorted_vec()
    }
}

/// The state hash and the hashes it is made of.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct StateHashes {
    pub state: Hash32,
    /// Per collection, in name order.
    pub collections: Vec<(CollectionName, Hash32)>,
    pub graph: Hash32,
    /// Per collection, in name order: the HNSW index hash.
    pub indexes: Vec<(CollectionName, Hash32)>,
    /// The combined index hash over `indexes` ([`hash::indexes_hash`]).
    pub index: Hash32,
}

impl StateHashes {
    /// Recomputes [`StateHashes::index`] after an entry of `indexes`
    /// changed.
    pub fn refresh_index(&mut self) {
        self.index = hash::indexes_hash(self.indexes.iter().map(|(n, h)| (n, h)));
    }
}

/// The collections `event` names (creates, changes or drops) and whether
/// it changes the graph; a nested transaction is refused.
fn named(event: &Event) -> Result<(Vec<&CollectionName>, bool), ApplyError> {
    Ok(match event {
        Event::CreateCollection { name, .. }
        | Event::DropCollection { name }
        | Event::CreateTable { name, .. } => (alloc::vec![name], false),
        Event::Insert { collection, .. }
        | Event::InsertBatch { collection, .. }
        | Event::Delete { collection, .. }
        | Event::SetTag { collection, .. }
        | Event::SetMetadata { collection, .. }
        | Event::DeleteBatch { collection, .. }
        | Event::UpdateBatch { collection, .. }
        | Event::InsertRows { collection, .. }
        | Event::UpdateRows { collection, .. }
        | Event::ReplaceRows { collection, .. } => (alloc::vec![collection], false),
        Event::DropCollections { names } => (names.iter().collect(), false),
        // A new name is named too: the scratch copy must know whether it
        // is taken.
        Event::AlterTable {
            collection,
            actions,
        } => (
            core::iter::once(collection)
                .chain(actions.iter().filter_map(|a| match a {
                    AlterAction::RenameTable { to } => Some(to),
                    _ => None,
                }))
                .collect(),
            false,
        ),
        Event::CreateNode { .. }
        | Event::DeleteNode { .. }
        | Event::CreateEdge { .. }
        | Event::DeleteEdge { .. } => (Vec::new(), true),
        Event::Reindex { collection, .. } => (alloc::vec![collection], false),
        Event::Transaction { .. } => return Err(ApplyError::NestedTransaction),
    })
}

/// Refuses HNSW parameters outside the limits.
fn check_index_params(config: &CollectionConfig) -> Result<(), ApplyError> {
    let (m, ef) = (config.index.m, config.index.ef_construction);
    if !(2..=limits::HNSW_M_MAX).contains(&m)
        || !(1..=limits::HNSW_EF_CONSTRUCTION_MAX).contains(&ef)
    {
        return Err(ApplyError::BadIndexParams { m, ef });
    }
    Ok(())
}

/// The whole database state.
#[derive(Clone, Debug, Default)]
pub struct State {
    collections: BTreeMap<CollectionName, Collection>,
    graph: Graph,
    /// Collections created so far (not part of the hash).
    created: u64,
    /// Collections of the state that this one stands in for but does not
    /// hold: the scratch copy a transaction is checked on holds only the
    /// collections it names, and still counts the others against
    /// [`limits::COLLECTIONS_MAX`]. Zero in every real state.
    absent_collections: usize,
}

impl State {
    pub fn new() -> State {
        State::default()
    }

    pub fn collection(&self, name: &CollectionName) -> Option<&Collection> {
        self.collections.get(name)
    }

    /// Collections in name order.
    pub fn collections(&self) -> impl ExactSizeIterator<Item = &Collection> {
        self.collections.values()
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    fn collection_ref(&self, name: &CollectionName) -> Result<&Collection, ApplyError> {
        self.collections
            .get(name)
            .ok_or_else(|| ApplyError::UnknownCollection(name.clone()))
    }

    fn collection_mut(&mut self, name: &CollectionName) -> Result<&mut Collection, ApplyError> {
        self.collections
            .get_mut(name)
            .ok_or_else(|| ApplyError::UnknownCollection(name.clone()))
    }

    /// Checks `event` against the current state without changing it.
    pub fn check(&self, event: &Event) -> Result<(), ApplyError> {
        match event {
            Event::CreateTable {
                name,
                config,
                schema,
            } => {
                self.check(&Event::CreateCollection {
                    name: name.clone(),
                    config: *config,
                })?;
                schema
                    .check(config.dim)
                    .map_err(|source| ApplyError::Schema {
                        collection: name.clone(),
                        source,
                    })?;
                for (_, column, key) in schema.foreign_keys() {
                    self.check_key_definition(name, schema, column, key)?;
                }
                Ok(())
            }
            Event::InsertRows {
                collection,
                batch,
                columns,
            }
            | Event::ReplaceRows {
                collection,
                batch,
                columns,
            } => {
                let c = self.collection_ref(collection)?;
                let table = c.table_or_refuse()?;
                // A replacement names live rows (each once); an insert new ids.
                let replaced: Vec<u32> = if matches!(event, Event::ReplaceRows { .. }) {
                    c.check_live_ids(&batch.ids)?;
                    c.check_batch_shape(batch)?;
                    batch.ids.iter().filter_map(|id| c.row_of(*id)).collect()
                } else {
                    c.check_batch(batch)?;
                    Vec::new()
                };
                c.check_table_tags(table, batch)?;
                let ids: Vec<u64> = batch.ids.iter().map(|id| id.0).collect();
                table
                    .check_replace(&replaced, &ids, columns)
                    .map_err(|e| c.row_error(e))?;
                let written: Vec<(usize, &ColumnValues)> = columns.iter().enumerate().collect();
                self.check_present(c, &written, &replaced)?;
                self.check_update_keys(c, &replaced, &written)
            }
            Event::UpdateRows {
                collection,
                ids,
                columns,
            } => {
                let c = self.collection_ref(collection)?;
                let table = c.table_or_refuse()?;
                c.check_live_ids(ids)?;
                let rows: Vec<u32> = ids.iter().filter_map(|id| c.row_of(*id)).collect();
                table
                    .check_update(&rows, columns)
                    .map_err(|e| c.row_error(e))?;
                let written: Vec<(usize, &ColumnValues)> = columns
                    .iter()
                    .map(|(column, values)| (usize::from(*column), values))
                    .collect();
                self.check_present(c, &written, &rows)?;
                self.check_update_keys(c, &rows, &written)
            }
            Event::AlterTable {
                collection,
                actions,
            } => {
                let c = self.collection_ref(collection)?;
                let table = c.table_or_refuse()?;
                let schema_error = |source| ApplyError::Schema {
                    collection: collection.clone(),
                    source,
                };
                if actions.is_empty() || actions.len() > limits::ALTER_ACTIONS_MAX as usize {
                    return Err(schema_error(SchemaError::ActionCount(actions.len())));
                }
                // The actions are checked on a copy of the schema, in
                // order, and the shape they leave is checked whole.
                let mut schema = table.schema().clone();
                let mut renamed = false;
                for action in actions {
                    if let AlterAction::RenameTable { to } = action {
                        if renamed {
                            return Err(schema_error(SchemaError::RenameTwice));
                        }
                        renamed = true;
                        if self.collections.contains_key(to) {
                            return Err(ApplyError::CollectionExists(to.clone()));
                        }
                    }
                    let rows = RowCounts {
                        live: c.live() as u64,
                        stored: c.rows() as u64,
                    };
                    schema.alter(action, rows).map_err(schema_error)?;
                }
                // An added vector column, or the first dimension of one
                // declared without, gives the collection its dimension.
                let dim = schema
                    .vector_column()
                    .map_or(c.config.dim, |_| schema.dim());
                if dim == 0 || dim > limits::DIM_MAX {
                    return Err(ApplyError::BadDimension(dim));
                }
                schema.check(dim).map_err(schema_error)?;
                self.check_alter_keys(c, actions, &schema)?;
                // What the rows must satisfy, read from the table as it is:
                // a column changed here must exist before the event.
                for action in actions {
                    let known = |column: &str| {
                        table
                            .schema()
                            .scalar_position(column)
                            .map(|_| ())
                            .ok_or_else(|| schema_error(SchemaError::UnknownColumn(column.into())))
                    };
                    let checked = match action {
                        AlterAction::AddUnique { set } => {
                            if set.columns.iter().any(|n| known(n).is_err()) {
                                return Err(schema_error(SchemaError::UniqueColumns(
                                    set.name.clone(),
                                )));
                            }
                            table.check_unique_set(&set.name, &set.columns, &c.deleted)
                        }
                        AlterAction::SetTypeMod { column, type_mod } => {
                            known(column)?;
                            let bound = (*type_mod != 0).then_some(*type_mod);
                            table.check_column_change(column, bound, false, &c.deleted)
                        }
                        AlterAction::SetNotNull { column, not_null } => {
                            known(column)?;
                            table.check_column_change(column, None, *not_null, &c.deleted)
                        }
                        _ => Ok(()),
                    };
                    checked.map_err(|e| c.row_error(e))?;
                }
                Ok(())
            }
            Event::Insert { collection, .. }
            | Event::InsertBatch { collection, .. }
            | Event::SetTag { collection, .. }
            | Event::SetMetadata { collection, .. }
            | Event::UpdateBatch { collection, .. }
                if self
                    .collections
                    .get(collection)
                    .is_some_and(|c| c.table.is_some()) =>
            {
                Err(ApplyError::TableNeedsColumns(collection.clone()))
            }
            Event::CreateCollection { name, config } => {
                if self.collections.contains_key(name) {
                    return Err(ApplyError::CollectionExists(name.clone()));
                }
                if self.collections.len() + self.absent_collections
                    >= limits::COLLECTIONS_MAX as usize
                {
                    return Err(ApplyError::TooManyCollections);
                }
                if config.dim == 0 || config.dim > limits::DIM_MAX {
                    return Err(ApplyError::BadDimension(config.dim));
                }
                check_index_params(config)
            }
            Event::DropCollection { name } => {
                self.collection_ref(name)?;
                self.check_drop(&[name])
            }
            Event::Insert { collection, record } => self.collection_ref(collection)?.check_record(
                record.id,
                record.vector.len() as u64,
                record.metadata.len() as u64,
            ),
            Event::InsertBatch { collection, batch } => {
                self.collection_ref(collection)?.check_batch(batch)
            }
            Event::Delete { collection, id } => {
                let row = self.collection_ref(collection)?.live_row(*id)?;
                self.plan_delete(collection, &[row]).map(|_| ())
            }
            Event::SetTag { collection, id, .. } => {
                self.collection_ref(collection)?.live_row(*id).map(|_| ())
            }
            Event::SetMetadata {
                collection,
                id,
                metadata,
            } => {
                let c = self.collection_ref(collection)?;
                c.live_row(*id)?;
                if metadata.len() > limits::METADATA_BYTES_MAX as usize {
                    return Err(ApplyError::MetadataTooLarge {
                        id: *id,
                        len: metadata.len() as u64,
                    });
                }
                Ok(())
            }
            Event::DeleteBatch { collection, ids } => {
                let c = self.collection_ref(collection)?;
                c.check_live_ids(ids)?;
                let rows: Vec<u32> = ids.iter().filter_map(|id| c.row_of(*id)).collect();
                self.plan_delete(collection, &rows).map(|_| ())
            }
            Event::UpdateBatch {
                collection,
                ids,
                tag,
                metadata,
            } => {
                let c = self.collection_ref(collection)?;
                if tag.is_none() && metadata.is_none() {
                    return Err(ApplyError::EmptyUpdate);
                }
                c.check_live_ids(ids)?;
                if let Some(metadata) = metadata
                    && metadata.len() > limits::METADATA_BYTES_MAX as usize
                {
                    return Err(ApplyError::MetadataTooLarge {
                        id: ids[0],
                        len: metadata.len() as u64,
                    });
                }
                Ok(())
            }
            Event::DropCollections { names } => {
                if names.is_empty() || names.len() > limits::COLLECTIONS_MAX as usize {
                    return Err(ApplyError::BadNameCount {
                        count: names.len() as u64,
                    });
                }
                for name in names {
                    self.collection_ref(name)?;
                }
                let mut sorted: Vec<&CollectionName> = names.iter().collect();
                sorted.sort_unstable();
                if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
                    return Err(ApplyError::RepeatedCollection(w[0].clone()));
                }
                self.check_drop(&sorted)
            }
            Event::CreateNode { node, .. } => self.graph.check_create_node(*node),
            Event::DeleteNode { node } => self.graph.check_delete_node(*node),
            Event::CreateEdge { from, to, label } => {
                self.graph.check_create_edge(*from, *to, *label)
            }
            Event::DeleteEdge { from, to, label } => {
                self.graph.check_delete_edge(*from, *to, *label)
            }
            Event::Transaction { events } => self.check_transaction(events),
            Event::Reindex { collection, config } => {
                let c = self.collection_ref(collection)?;
                if config.dim != c.config.dim {
                    return Err(ApplyError::BadDimension(config.dim));
                }
                check_index_params(config)
            }
        }
    }

    /// Checks a transaction's events in order, each against the state the
    /// ones before it left, on a scratch copy of only what they name: the
    /// collections (and the graph if they change it). The real state is
    /// not touched, so a refused transaction changes nothing.
    fn check_transaction(&self, events: &[Event]) -> Result<(), ApplyError> {
        if !(2..=limits::TRANSACTION_EVENTS_MAX as usize).contains(&events.len()) {
            return Err(ApplyError::BadTransactionSize {
                count: events.len() as u64,
            });
        }
        let mut scratch = State {
            created: self.created,
            ..State::default()
        };
        let mut graph = false;
        for event in events {
            let (mut names, changes_graph) = named(event)?;
            graph |= changes_graph;
            let neighbours = self.key_neighbours(event, &names);
            names.extend(neighbours.iter());
            for name in names {
                if let Some(c) = self.collections.get(name)
                    && !scratch.collections.contains_key(name)
                {
                    scratch.collections.insert(name.clone(), c.clone());
                }
            }
        }
        if graph {
            scratch.graph = self.graph.clone();
        }
        scratch.absent_collections =
            self.collections.len() + self.absent_collections - scratch.collections.len();
        for (index, event) in events.iter().enumerate() {
            scratch
                .apply(event)
                .map_err(|source| ApplyError::InTransaction {
                    index: index as u64,
                    source: alloc::boxed::Box::new(source),
                })?;
        }
        Ok(())
    }

    /// Applies one event. On error nothing changed. Inserted rows join
    /// their collection's graph later, by whole blocks
    /// ([`State::build_indexes`]); until then searches scan them exactly.
    pub fn apply(&mut self, event: &Event) -> Result<Applied, ApplyError> {
        self.check(event)?;
        self.apply_checked(event)
    }

    /// [`State::apply`], then every complete block of rows built into its
    /// collection's graph by `planner` (for example on several threads).
    /// The graph is the same for every planner.
    pub fn apply_with(
        &mut self,
        event: &Event,
        planner: &dyn Planner,
    ) -> Result<Applied, ApplyError> {
        let applied = self.apply(event)?;
        self.build_indexes(planner);
        Ok(applied)
    }

    /// Builds every complete block of every collection into its graph.
    pub fn build_indexes(&mut self, planner: &dyn Planner) -> usize {
        self.collections
            .values_mut()
            .map(|c| c.build_index(planner))
            .sum()
    }

    /// Whether some collection has a complete block waiting for its graph.
    pub fn index_pending(&self) -> bool {
        self.collections.values().any(Collection::index_pending)
    }

    /// Names of the collections with a complete block waiting for the graph.
    pub fn collections_pending_index(&self) -> Vec<CollectionName> {
        self.collections
            .values()
            .filter(|c| c.index_pending())
            .map(|c| c.name.clone())
            .collect()
    }

    /// Applies an event that [`State::check`] accepted against exactly this
    /// state, without checking it again. The engine uses it to apply an
    /// event while its log frame is being fsynced. An event that was not
    /// checked may be applied in part.
    pub fn apply_checked(&mut self, event: &Event) -> Result<Applied, ApplyError> {
        Ok(match event {
            Event::Transaction { events } => {
                for event in events {
                    self.apply_checked(event)?;
                }
                Applied::Other
            }
            Event::CreateTable {
                name,
                config,
                schema,
            } => {
                self.created += 1;
                let mut c = Collection::new(name.clone(), *config, self.created);
                c.table = Some(Table::new(schema.clone()));
                self.collections.insert(name.clone(), c);
                Applied::Other
            }
            Event::InsertRows {
                collection,
                batch,
                columns,
            }
            | Event::ReplaceRows {
                collection,
                batch,
                columns,
            } => {
                let c = self.collection_mut(collection)?;
                if matches!(event, Event::ReplaceRows { .. }) {
                    for id in &batch.ids {
                        c.delete_record(*id)?;
                    }
                }
                let first_row = c.rows() as u32;
                c.push_batch(batch);
                c.table
                    .as_mut()
                    .ok_or_else(|| ApplyError::NotATable(collection.clone()))?
                    .push(first_row, columns);
                Applied::Appended {
                    collection: collection.clone(),
                    first_row,
                    count: batch.len() as u32,
                }
            }
            Event::UpdateRows {
                collection,
                ids,
                columns,
            } => {
                let c = self.collection_mut(collection)?;
                let rows: Vec<u32> = ids.iter().filter_map(|id| c.row_of(*id)).collect();
                for &row in &rows {
                    c.dirty(row);
                }
                c.table
                    .as_mut()
                    .ok_or_else(|| ApplyError::NotATable(collection.clone()))?
                    .update(&rows, columns);
                Applied::Other
            }
            Event::AlterTable {
                collection,
                actions,
            } => {
                let mut c = self
                    .collections
                    .remove(collection)
                    .ok_or_else(|| ApplyError::UnknownCollection(collection.clone()))?;
                let mut reshaped = false;
                for action in actions {
                    match action {
                        AlterAction::RenameTable { to } => c.name = to.clone(),
                        AlterAction::AddColumn { .. } | AlterAction::DropColumn { .. } => {
                            reshaped = true;
                        }
                        _ => {}
                    }
                    if let Some(table) = c.table.as_mut() {
                        table.alter(action, &c.deleted);
                    }
                }
                if reshaped {
                    // Every row's encoding gained or lost a value.
                    c.chunk_hashes.iter_mut().for_each(|h| *h = None);
                }
                if let Some(schema) = c.table.as_ref().map(Table::schema)
                    && schema.vector_column().is_some()
                    && schema.dim() != c.config.dim
                {
                    // A vector column was added to a table that never
                    // held a row, or given its first dimension: the
                    // collection starts again, empty, at the column's
                    // dimension.
                    let config = CollectionConfig {
                        dim: schema.dim(),
                        ..c.config
                    };
                    let mut fresh = Collection::new(c.name.clone(), config, c.incarnation);
                    fresh.table = c.table.take();
                    c = fresh;
                }
                // A new shape counts as a new creation: plans and scans
                // made for the old one see that it changed.
                self.created += 1;
                c.incarnation = self.created;
                self.collections.insert(c.name.clone(), c);
                Applied::Other
            }
            Event::Reindex { collection, config } => {
                let c = self.collection_mut(collection)?;
                c.config = *config;
                // The graph and its compact copy start again; the index
                // builder links every block of rows anew.
                c.index = Hnsw::new(config.index);
                c.compact = Compact::new(config.dim as usize);
                // Plans made for the old metric see that it changed.
                self.created += 1;
                let created = self.created;
                if let Some(c) = self.collections.get_mut(collection) {
                    c.incarnation = created;
                }
                Applied::Other
            }
            Event::CreateCollection { name, config } => {
                self.created += 1;
                self.collections.insert(
                    name.clone(),
                    Collection::new(name.clone(), *config, self.created),
                );
                Applied::Other
            }
            Event::DropCollection { name } => {
                self.collections.remove(name);
                Applied::Other
            }
            Event::Insert { collection, record } => {
                let c = self.collection_mut(collection)?;
                let first_row = c.rows() as u32;
                c.push_row(record.id, &record.vector, record.tag, &record.metadata);
                Applied::Appended {
                    collection: collection.clone(),
                    first_row,
                    count: 1,
                }
            }
            Event::InsertBatch { collection, batch } => {
                let c = self.collection_mut(collection)?;
                let first_row = c.rows() as u32;
                c.push_batch(batch);
                Applied::Appended {
                    collection: collection.clone(),
                    first_row,
                    count: batch.len() as u32,
                }
            }
            Event::Delete { collection, id } => {
                let c = self.collection_ref(collection)?;
                let plan = self.plan_delete(collection, &[c.live_row(*id)?])?;
                let row = self.collection_mut(collection)?.delete_record(*id)?;
                self.apply_cascade(plan)?;
                Applied::Deleted {
                    collection: collection.clone(),
                    row,
                }
            }
            Event::SetTag {
                collection,
                id,
                tag,
            } => {
                self.collection_mut(collection)?.set_tag(*id, *tag)?;
                Applied::Other
            }
            Event::SetMetadata {
                collection,
                id,
                metadata,
            } => {
                self.collection_mut(collection)?
                    .set_metadata(*id, metadata)?;
                Applied::Other
            }
            Event::DeleteBatch { collection, ids } => {
                let c = self.collection_ref(collection)?;
                let rows: Vec<u32> = ids.iter().filter_map(|id| c.row_of(*id)).collect();
                let plan = self.plan_delete(collection, &rows)?;
                let c = self.collection_mut(collection)?;
                for id in ids {
                    c.delete_record(*id)?;
                }
                self.apply_cascade(plan)?;
                Applied::Other
            }
            Event::UpdateBatch {
                collection,
                ids,
                tag,
                metadata,
            } => {
                let c = self.collection_mut(collection)?;
                for id in ids {
                    if let Some(tag) = tag {
                        c.set_tag(*id, *tag)?;
                    }
                    if let Some(metadata) = metadata {
                        c.set_metadata(*id, metadata)?;
                    }
                }
                Applied::Other
            }
            Event::DropCollections { names } => {
                for name in names {
                    self.collections.remove(name);
                }
                Applied::Other
            }
            Event::CreateNode { node, label } => {
                self.graph.create_node(*node, *label);
                Applied::Other
            }
            Event::DeleteNode { node } => {
                self.graph.delete_node(*node);
                Applied::Other
            }
            Event::CreateEdge { from, to, label } => {
                self.graph.create_edge(*from, *to, *label);
                Applied::Other
            }
            Event::DeleteEdge { from, to, label } => {
                self.graph.delete_edge(*from, *to, *label);
                Applied::Other
            }
        })
    }

    /// Mutable access to a collection, for snapshot loading
    /// ([`Collection::restore_row`]); every other change goes through
    /// [`State::apply`].
    pub fn collection_for_restore(&mut self, name: &CollectionName) -> Option<&mut Collection> {
        self.collections.get_mut(name)
    }

    /// The state hash, refreshing only what changed since the last call.
    pub fn state_hash(&mut self) -> Hash32 {
        self.hashes().state
    }

    /// The state hash with its parts: each collection's hash (in name
    /// order) and the graph hash. Refreshes only what changed.
    pub fn hashes(&mut self) -> StateHashes {
        let collections: Vec<(CollectionName, Hash32)> = self
            .collections
            .values_mut()
            .map(|c| (c.name.clone(), c.hash()))
            .collect();
        let graph = self.graph.hash();
        let state = hash::state_hash(collections.iter().map(|(_, h)| h), &graph);
        let indexes: Vec<(CollectionName, Hash32)> = self
            .collections
            .values_mut()
            .map(|c| (c.name.clone(), c.index_hash()))
            .collect();
        let index = hash::indexes_hash(indexes.iter().map(|(n, h)| (n, h)));
        StateHashes {
            state,
            collections,
            graph,
            indexes,
            index,
        }
    }

    /// The combined index hash of the graphs as they are now (see
    /// [`hash::indexes_hash`]), refreshing dirty chunks only.
    pub fn index_hash(&mut self) -> Hash32 {
        let indexes: Vec<(CollectionName, Hash32)> = self
            .collections
            .values_mut()
            .map(|c| (c.name.clone(), c.index_hash()))
            .collect();
        hash::indexes_hash(indexes.iter().map(|(n, h)| (n, h)))
    }

    /// [`State::index_hash`] from scratch, ignoring every cache.
    pub fn index_hash_uncached(&self) -> Hash32 {
        let indexes: Vec<Hash32> = self
            .collections
            .values()
            .map(Collection::index_hash_uncached)
            .collect();
        hash::indexes_hash(self.collections.keys().zip(indexes.iter()))
    }

    /// The state hash from scratch, ignoring every cache.
    pub fn state_hash_uncached(&self) -> Hash32 {
        let collection_hashes: Vec<Hash32> = self
            .collections
            .values()
            .map(Collection::hash_uncached)
            .collect();
        hash::state_hash(collection_hashes.iter(), &self.graph.hash_uncached())
    }
}

#[cfg(test)]
mod tests;
