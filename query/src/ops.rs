//! The operations every front end offers outside SQL, in one place: REST
//! (`wire/src/rest`), Python (`python/src`) and the Postgres front end call
//! these instead of keeping their own copies, so the same input gets the
//! same answer, the same refusal and the same message through each.
//!
//! - Names: [`collection_name`], [`parse_metric`] (one table of metric
//!   spellings, [`METRIC_NAMES`]).
//! - Vectors from floats: [`quantize_f32`], [`quantize_f64`] and [`Rows`]
//!   (a batch), each naming the vector ([`VectorOrigin`]) and component
//!   that cannot be Q16.16.
//! - Search: [`SearchSpec::new`] checks `k` and `ef` against
//!   `valori_core::limits`, [`search`] runs it on one consistent state and
//!   returns [`Hit`]s.
//! - Writes: [`insert`], [`insert_batch`] (one atomic event),
//!   [`delete`], [`create_collection`], [`drop_collection`].
//! - Errors: [`OpsError`], and the [`Fault`] of every error type of the
//!   query layer ([`OpsError::fault`], [`QueryError::fault`],
//!   [`WriteError::fault`], [`DslError::fault`]; the engine's own
//!   `EngineError::fault`), from which each front end derives its status,
//!   exception class or SQLSTATE.

use valori_core::distance::{Distance, Metric};
use valori_core::event::{
    Batch, CollectionConfig, CollectionName, Event, IndexParams, NameError, Record, RecordId,
};
use valori_core::hnsw::SearchOptions;
use valori_core::limits;
use valori_core::q16::{self, QuantizeError};
use valori_core::state::{Collection, State};
use valori_engine::{Engine, EngineError, Receipt};

pub use valori_engine::Fault;

use crate::QueryError;
use crate::dsl::DslError;
use crate::functions::metric_distance;
use crate::write::WriteError;

/// Every spelling of a metric name that any front end accepts (REST
/// `"metric"`, Python `metric=`, SQL `WITH (metric = …)`), matched without
/// regard to ASCII case. The first spelling of each metric is its name
/// ([`Metric::name`]), which is what descriptions show.
pub const METRIC_NAMES: &[(&str, Metric)] = &[
    ("l2", Metric::L2),
    ("inner_product", Metric::InnerProduct),
    ("ip", Metric::InnerProduct),
    ("cosine", Metric::Cosine),
];

/// Why an operation failed. Each variant's [`Fault`] says whose fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpsError {
    /// A collection name that is not `[a-z][a-z0-9_]*` of at most
    /// `COLLECTION_NAME_BYTES_MAX` bytes.
    #[error("collection name {text:?}: {source}")]
    BadName { text: String, source: NameError },
    /// A metric spelling not in [`METRIC_NAMES`].
    #[error("metric {given:?} is not one of l2, inner_product (also ip), cosine")]
    UnknownMetric { given: String },
    /// `k` outside `1..=SEARCH_K_MAX`.
    #[error("k = {k} is outside 1..={max}", max = limits::SEARCH_K_MAX)]
    KOutOfRange { k: u64 },
    /// `ef` outside `1..=SEARCH_EF_MAX`.
    #[error("ef = {ef} is outside 1..={max}", max = limits::SEARCH_EF_MAX)]
    EfOutOfRange { ef: u64 },
    /// A component that is not a Q16.16 value.
    #[error("{origin}: {source}")]
    Component {
        origin: VectorOrigin,
        source: QuantizeError,
    },
    /// A query vector of another dimension than its collection.
    #[error("query vector has {got} components, collection {collection} has dimension {expected}")]
    QueryDimension {
        collection: CollectionName,
        expected: usize,
        got: usize,
    },
    /// A batch's vectors are not all of the first one's dimension.
    #[error("vector {row} of the batch has {got} components, vector 0 has {expected}")]
    RaggedBatch {
        row: u64,
        expected: usize,
        got: usize,
    },
    /// A batch of no records, or of more than `BATCH_RECORDS_MAX`.
    #[error("a batch holds 1..={max} records, this one {n}", max = limits::BATCH_RECORDS_MAX)]
    BatchSize { n: u64 },
    /// A per-record column of a batch whose length is not the batch's.
    #[error("{field} has {len} entries for {n} vectors")]
    ColumnLength {
        field: &'static str,
        len: u64,
        n: u64,
    },
    /// The metadata of a batch is larger than an event may be.
    #[error("the metadata of the batch, {bytes} bytes, exceeds {max} bytes", max = limits::EVENT_BYTES_MAX)]
    BatchMetadataTooLarge { bytes: u64 },
    /// The collection does not exist.
    #[error("collection {0} does not exist")]
    UnknownCollection(CollectionName),
    /// The search answered an id that has no row in its collection: a
    /// broken invariant of the engine, never the caller's fault.
    #[error("search of collection {collection} returned id {id} that has no row")]
    VanishedRow {
        collection: CollectionName,
        id: RecordId,
    },
    /// The engine refused the event or failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl OpsError {
    /// Who is at fault.
    pub fn fault(&self) -> Fault {
        match self {
            OpsError::BadName { .. }
            | OpsError::UnknownMetric { .. }
            | OpsError::KOutOfRange { .. }
            | OpsError::EfOutOfRange { .. }
            | OpsError::Component { .. }
            | OpsError::QueryDimension { .. }
            | OpsError::RaggedBatch { .. }
            | OpsError::ColumnLength { .. } => Fault::InvalidInput,
            // An empty batch is as wrong as an oversized one; both are
            // refused by the batch-size limit.
            OpsError::BatchSize { n } if *n == 0 => Fault::InvalidInput,
            OpsError::BatchSize { .. } | OpsError::BatchMetadataTooLarge { .. } => Fault::TooLarge,
            OpsError::UnknownCollection(_) => Fault::NotFound,
            OpsError::VanishedRow { .. } => Fault::Internal,
            OpsError::Engine(e) => e.fault(),
        }
    }
}

impl QueryError {
    /// Who is at fault. A statement over a size or shape limit, or one
    /// that needs more memory than the pool holds, exceeds a limit
    /// ([`Fault::TooLarge`]), as Postgres's `54000` says.
    pub fn fault(&self) -> Fault {
        match self {
            QueryError::Invalid(_) | QueryError::Vector(_) | QueryError::Cast(_) => {
                Fault::InvalidInput
            }
            QueryError::Conflict(_) => Fault::Conflict,
            QueryError::TooLong { .. }
            | QueryError::TooComplex(_)
            | QueryError::MemoryExhausted(_) => Fault::TooLarge,
            QueryError::Timeout { .. } => Fault::Timeout,
            QueryError::Engine(e) => e.fault(),
            QueryError::Write(w) => w.fault(),
            QueryError::Setting(crate::session::SettingError::TooLarge(_)) => Fault::TooLarge,
            // A read-role client's write: REST answers it as its
            // authorization layer does (403); the statement is refused.
            QueryError::Setting(_) | QueryError::Param(_) | QueryError::ReadOnly => {
                Fault::InvalidInput
            }
            _ => Fault::Internal,
        }
    }
}

impl WriteError {
    /// Who is at fault.
    pub fn fault(&self) -> Fault {
        match self {
            WriteError::Syntax(_)
            | WriteError::Unsupported(_)
            | WriteError::UndefinedColumn(_)
            | WriteError::DuplicateColumn(_)
            | WriteError::InvalidText(_)
            | WriteError::InvalidValue(_)
            | WriteError::NotNull(_)
            | WriteError::Cardinality(_)
            | WriteError::GeneratedAlways(_)
            | WriteError::InvalidForeignKey(_)
            | WriteError::DatatypeMismatch(_)
            | WriteError::InvalidReference(_)
            | WriteError::OutOfRange(_)
            | WriteError::Cast { .. }
            | WriteError::StringTooLong(_) => Fault::InvalidInput,
            WriteError::UndefinedTable(_)
            | WriteError::UndefinedIndex(_)
            | WriteError::UndefinedConstraint(_) => Fault::NotFound,
            WriteError::TableExists(_)
            | WriteError::IndexExists(_)
            | WriteError::Duplicate(_)
            | WriteError::ForeignKeyViolation(_)
            | WriteError::DependentObjects(_)
            | WriteError::Conflict(_) => Fault::Conflict,
            WriteError::TooLarge(_) => Fault::TooLarge,
            WriteError::Engine(e) => e.fault(),
        }
    }
}

impl DslError {
    /// Who is at fault.
    pub fn fault(&self) -> Fault {
        match self {
            DslError::Parse { .. } | DslError::Param(_) => Fault::InvalidInput,
            DslError::Query(e) => e.fault(),
        }
    }
}

/// `text` as a collection name.
pub fn collection_name(text: &str) -> Result<CollectionName, OpsError> {
    CollectionName::new(text).map_err(|source| OpsError::BadName {
        text: text.to_owned(),
        source,
    })
}

/// The metric spelled `text`: one of [`METRIC_NAMES`], in any ASCII case.
pub fn parse_metric(text: &str) -> Result<Metric, OpsError> {
    METRIC_NAMES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(text))
        .map(|&(_, metric)| metric)
        .ok_or_else(|| OpsError::UnknownMetric {
            given: text.to_owned(),
        })
}

/// Where a vector came from, to name it in an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VectorOrigin {
    /// The query vector of a search.
    Query,
    /// The vector of a single insert that lets the engine choose the id.
    Single,
    /// Vector number `i` of a batch (0-based position in the request).
    Row(u64),
    /// The vector of the record with this id.
    Record(u64),
}

impl std::fmt::Display for VectorOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VectorOrigin::Query => f.write_str("query vector"),
            VectorOrigin::Single => f.write_str("vector"),
            VectorOrigin::Row(i) => write!(f, "vector {i} of the batch"),
            VectorOrigin::Record(id) => write!(f, "record {id}"),
        }
    }
}

/// Appends the Q16.16 values of `values` to `out`; on error `out` is
/// unchanged.
pub fn quantize_f32(
    values: &[f32],
    origin: VectorOrigin,
    out: &mut Vec<i32>,
) -> Result<(), OpsError> {
    q16::quantize_into(values, out).map_err(|source| OpsError::Component { origin, source })
}

/// [`quantize_f32`] of doubles (JSON numbers, Python floats): each is
/// narrowed to `f32` first (round to nearest), as every entry point does,
/// so a number gives the same stored value through every front end.
pub fn quantize_f64(
    values: impl IntoIterator<Item = f64>,
    origin: VectorOrigin,
    out: &mut Vec<i32>,
) -> Result<(), OpsError> {
    let narrowed: Vec<f32> = values.into_iter().map(|x| x as f32).collect();
    quantize_f32(&narrowed, origin, out)
}

/// The rows of a batch insert as Q16.16, all of one dimension.
#[derive(Clone, Debug, Default)]
pub struct Rows {
    dim: Option<usize>,
    n: u64,
    values: Vec<i32>,
}

impl Rows {
    /// No rows yet; the first row sets the dimension.
    pub fn new() -> Rows {
        Rows::default()
    }

    /// No rows yet, room for `n` rows of `dim` components, and `dim` as the
    /// dimension (a 2-D array knows it before its first row).
    pub fn with_dim(n: usize, dim: usize) -> Rows {
        Rows {
            dim: Some(dim),
            n: 0,
            values: Vec::with_capacity(n.saturating_mul(dim)),
        }
    }

    fn check_dim(&mut self, got: usize) -> Result<(), OpsError> {
        let expected = *self.dim.get_or_insert(got);
        if got != expected {
            return Err(OpsError::RaggedBatch {
                row: self.n,
                expected,
                got,
            });
        }
        Ok(())
    }

    /// Appends one row of `f32`s.
    pub fn push_f32(&mut self, row: &[f32]) -> Result<(), OpsError> {
        self.check_dim(row.len())?;
        quantize_f32(row, VectorOrigin::Row(self.n), &mut self.values)?;
        self.n += 1;
        Ok(())
    }

    /// Appends one row of doubles, narrowed to `f32` first.
    pub fn push_f64(&mut self, row: impl ExactSizeIterator<Item = f64>) -> Result<(), OpsError> {
        self.check_dim(row.len())?;
        quantize_f64(row, VectorOrigin::Row(self.n), &mut self.values)?;
        self.n += 1;
        Ok(())
    }

    /// Appends one row of raw Q16.16 components, as an exact export gives
    /// them (every `i32` is a Q16.16 value, so nothing is converted).
    pub fn push_q16(&mut self, row: &[i32]) -> Result<(), OpsError> {
        self.check_dim(row.len())?;
        self.values.extend_from_slice(row);
        self.n += 1;
        Ok(())
    }

    /// How many rows.
    pub fn len(&self) -> u64 {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The dimension (0 before the first row of a batch without one).
    pub fn dim(&self) -> usize {
        self.dim.unwrap_or(0)
    }
}

/// The per-record columns of a batch beside its vectors; each, when given,
/// has one entry per row.
#[derive(Clone, Debug, Default)]
pub struct BatchColumns {
    /// Record ids; `None` lets the engine choose consecutive ids from the
    /// collection's next free id.
    pub ids: Option<Vec<u64>>,
    /// Tags; `None` is tag 0 for every record.
    pub tags: Option<Vec<u64>>,
    /// Canonical metadata bytes (`crate::metadata`); `None` is none.
    pub metadata: Option<Vec<Vec<u8>>>,
}

/// What an insert wrote.
#[derive(Clone, Debug)]
pub struct Inserted {
    /// The records' ids, in the order of the rows.
    pub ids: Vec<u64>,
    pub receipt: Receipt,
}

/// Submits the event `make` builds for `n` ids — `given`, or the next free
/// ids of `collection` chosen by the engine — and waits until it is
/// durable.
fn submit_records(
    engine: &Engine,
    collection: CollectionName,
    given: Option<Vec<u64>>,
    n: u64,
    make: impl FnOnce(CollectionName, &[u64]) -> Event,
) -> Result<Inserted, OpsError> {
    match given {
        Some(ids) => {
            let receipt = engine.submit(make(collection, &ids))?;
            Ok(Inserted { ids, receipt })
        }
        None => {
            let mut chosen = Vec::new();
            let receipt = engine.submit_with_next_id(&collection.clone(), |first| {
                chosen = (0..n).map(|i| first.saturating_add(i)).collect();
                make(collection, &chosen)
            })?;
            Ok(Inserted {
                ids: chosen,
                receipt,
            })
        }
    }
}

/// Inserts one record (`id: None` lets the engine choose the next free
/// id) and waits until it is durable.
pub fn insert(
    engine: &Engine,
    collection: CollectionName,
    vector: Vec<i32>,
    id: Option<u64>,
    tag: u64,
    metadata: Vec<u8>,
) -> Result<Inserted, OpsError> {
    submit_records(
        engine,
        collection,
        id.map(|id| vec![id]),
        1,
        |collection, ids| Event::Insert {
            collection,
            record: Record {
                id: RecordId(ids[0]),
                vector,
                tag,
                metadata,
            },
        },
    )
}

/// Inserts `rows` with `columns` as one atomic event (all or nothing) and
/// waits until it is durable. The batch holds `1..=BATCH_RECORDS_MAX`
/// records; each given column has one entry per row.
pub fn insert_batch(
    engine: &Engine,
    collection: CollectionName,
    rows: Rows,
    columns: BatchColumns,
) -> Result<Inserted, OpsError> {
    let n = rows.len();
    if n == 0 || n > u64::from(limits::BATCH_RECORDS_MAX) {
        return Err(OpsError::BatchSize { n });
    }
    for (field, len) in [
        ("ids", columns.ids.as_ref().map(Vec::len)),
        ("tags", columns.tags.as_ref().map(Vec::len)),
        ("metadata", columns.metadata.as_ref().map(Vec::len)),
    ] {
        if let Some(len) = len.map(|l| l as u64).filter(|&len| len != n) {
            return Err(OpsError::ColumnLength { field, len, n });
        }
    }
    // Metadata offsets are u32 in the event; anything near that is far
    // beyond the event size limit, so it is refused before it could wrap.
    let metadata_bytes: u64 = columns
        .metadata
        .iter()
        .flatten()
        .map(|m| m.len() as u64)
        .sum();
    if metadata_bytes > u64::from(limits::EVENT_BYTES_MAX) {
        return Err(OpsError::BatchMetadataTooLarge {
            bytes: metadata_bytes,
        });
    }
    let dim = rows.dim();
    // `dim` is at most the length of a request's row; an event dimension
    // is u32 and the state machine refuses anything above DIM_MAX.
    let dim32 = u32::try_from(dim).unwrap_or(u32::MAX);
    let BatchColumns {
        ids,
        tags,
        metadata,
    } = columns;
    submit_records(engine, collection, ids, n, move |collection, ids| {
        let mut batch = Batch::new(dim32);
        batch.ids = ids.iter().map(|&id| RecordId(id)).collect();
        batch.tags = tags.unwrap_or_else(|| vec![0; ids.len()]);
        batch.vectors = rows.values;
        batch.metadata_ends = Vec::with_capacity(ids.len());
        match metadata {
            Some(values) => {
                for m in values {
                    batch.metadata_bytes.extend_from_slice(&m);
                    // Bounded by EVENT_BYTES_MAX above.
                    batch.metadata_ends.push(batch.metadata_bytes.len() as u32);
                }
            }
            None => batch.metadata_ends.resize(ids.len(), 0),
        }
        Event::InsertBatch { collection, batch }
    })
}

/// Deletes record `id` of `collection`.
pub fn delete(engine: &Engine, collection: CollectionName, id: u64) -> Result<Receipt, OpsError> {
    Ok(engine.submit(Event::Delete {
        collection,
        id: RecordId(id),
    })?)
}

/// How a collection is created: the name and the metric as the caller
/// spelled them, the index parameters (`None` takes the defaults).
#[derive(Clone, Debug)]
pub struct NewCollection<'a> {
    pub name: &'a str,
    pub dim: u32,
    pub metric: &'a str,
    pub m: Option<u16>,
    pub ef_construction: Option<u16>,
    pub seed: Option<u64>,
}

/// Creates a collection and waits until the event is durable.
pub fn create_collection(engine: &Engine, new: &NewCollection<'_>) -> Result<Receipt, OpsError> {
    let name = collection_name(new.name)?;
    let defaults = IndexParams::default();
    let config = CollectionConfig {
        dim: new.dim,
        metric: parse_metric(new.metric)?,
        index: IndexParams {
            m: new.m.unwrap_or(defaults.m),
            ef_construction: new.ef_construction.unwrap_or(defaults.ef_construction),
            seed: new.seed.unwrap_or(defaults.seed),
        },
    };
    Ok(engine.submit(Event::CreateCollection { name, config })?)
}

/// Drops a collection and its records.
pub fn drop_collection(engine: &Engine, name: &str) -> Result<Receipt, OpsError> {
    let name = collection_name(name)?;
    Ok(engine.submit(Event::DropCollection { name })?)
}

/// What describes a collection through every front end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CollectionInfo {
    pub name: String,
    pub dim: u32,
    pub metric: &'static str,
    pub m: u16,
    pub ef_construction: u16,
    pub seed: u64,
    pub rows: u64,
    pub live: u64,
    pub indexed: u64,
}

impl CollectionInfo {
    pub fn of(c: &Collection) -> CollectionInfo {
        let config = c.config();
        CollectionInfo {
            name: c.name().as_str().to_owned(),
            dim: config.dim,
            metric: config.metric.name(),
            m: config.index.m,
            ef_construction: config.index.ef_construction,
            seed: config.index.seed,
            rows: c.rows() as u64,
            live: c.live() as u64,
            indexed: c.indexed_rows() as u64,
        }
    }
}

/// Every collection, in name order.
pub fn collections(engine: &Engine) -> Result<Vec<CollectionInfo>, OpsError> {
    Ok(engine.read(|s| s.collections().map(CollectionInfo::of).collect())?)
}

/// One collection's description.
pub fn describe(engine: &Engine, name: &str) -> Result<CollectionInfo, OpsError> {
    let name = collection_name(name)?;
    engine
        .read(|s| s.collection(&name).map(CollectionInfo::of))?
        .ok_or(OpsError::UnknownCollection(name))
}

/// A checked search: `k` and the engine's options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SearchSpec {
    pub k: usize,
    pub options: SearchOptions,
}

impl SearchSpec {
    /// Checks `k` (`1..=SEARCH_K_MAX`) and `ef` (`1..=SEARCH_EF_MAX`,
    /// default the engine's, never below `k`). Out of range is refused,
    /// never clamped.
    pub fn new(
        k: u64,
        ef: Option<u64>,
        tag: Option<u64>,
        exact: bool,
    ) -> Result<SearchSpec, OpsError> {
        if k == 0 || k > u64::from(limits::SEARCH_K_MAX) {
            return Err(OpsError::KOutOfRange { k });
        }
        if let Some(ef) = ef.filter(|&ef| ef == 0 || ef > u64::from(limits::SEARCH_EF_MAX)) {
            return Err(OpsError::EfOutOfRange { ef });
        }
        // Both are at most 10,000 here.
        let k = k as usize;
        let ef = ef.map_or(SearchOptions::default().ef, |ef| ef as usize);
        Ok(SearchSpec {
            k,
            options: SearchOptions {
                ef: ef.max(k),
                exact,
                tag,
            },
        })
    }
}

/// One search result.
#[derive(Clone, Debug, PartialEq)]
pub struct Hit {
    pub id: u64,
    /// The metric's SQL function of the exact distance
    /// ([`metric_distance`]).
    pub distance: f64,
    pub tag: u64,
    /// The stored metadata bytes.
    pub metadata: Vec<u8>,
}

/// The `spec.k` nearest live records of `collection` to `query` (Q16.16),
/// in the order `(distance, id)`, read from one consistent `state`.
pub fn search(
    state: &State,
    collection: &CollectionName,
    query: &[i32],
    spec: &SearchSpec,
) -> Result<Vec<Hit>, OpsError> {
    let c = state
        .collection(collection)
        .ok_or_else(|| OpsError::UnknownCollection(collection.clone()))?;
    if query.len() != c.dim() {
        return Err(OpsError::QueryDimension {
            collection: collection.clone(),
            expected: c.dim(),
            got: query.len(),
        });
    }
    // The search keeps a heap of k entries; it never answers more than
    // the live rows, so the heap need not be larger.
    let k = spec.k.min(c.live());
    hits(c, c.search(query, k, &spec.options))
}

/// The hits of `found` (what `Collection::search` answered) with their
/// tags and metadata. An id without a row is the engine's broken
/// invariant and fails the search; it is never answered with another
/// row's values.
pub fn hits(c: &Collection, found: Vec<(Distance, RecordId)>) -> Result<Vec<Hit>, OpsError> {
    let metric = c.config().metric;
    found
        .into_iter()
        .map(|(distance, id)| {
            let row = c.row_of(id).ok_or_else(|| OpsError::VanishedRow {
                collection: c.name().clone(),
                id,
            })? as usize;
            Ok(Hit {
                id: id.0,
                distance: metric_distance(metric, distance),
                tag: c.tags()[row],
                metadata: c.metadata(row).to_vec(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_with(ids: &[u64]) -> (State, CollectionName) {
        let name = collection_name("docs").expect("valid name");
        let mut state = State::new();
        state
            .apply(&Event::CreateCollection {
                name: name.clone(),
                config: CollectionConfig {
                    dim: 2,
                    metric: Metric::L2,
                    index: IndexParams::default(),
                },
            })
            .expect("create");
        for (i, &id) in ids.iter().enumerate() {
            state
                .apply(&Event::Insert {
                    collection: name.clone(),
                    record: Record {
                        id: RecordId(id),
                        vector: vec![i as i32 * 65536, 0],
                        tag: 100 + id,
                        metadata: format!("{{\"id\":{id}}}").into_bytes(),
                    },
                })
                .expect("insert");
        }
        (state, name)
    }

    /// Proves that a search answer naming an id without a row fails as an
    /// internal error instead of reporting row 0's tag and metadata for
    /// that id (what REST's search did).
    #[test]
    fn a_vanished_row_is_an_internal_error_not_row_zero() {
        let (state, name) = state_with(&[5, 7]);
        let c = state.collection(&name).expect("created");
        let found = vec![(Distance(0), RecordId(7)), (Distance(1), RecordId(99))];
        let err = hits(c, found).expect_err("id 99 has no row");
        assert!(
            matches!(
                err,
                OpsError::VanishedRow {
                    id: RecordId(99),
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.fault(), Fault::Internal);
        // The ids that have rows get their own row's values.
        let good = hits(c, vec![(Distance(4), RecordId(7))]).expect("row of 7");
        assert_eq!((good[0].id, good[0].tag), (7, 107));
        assert_eq!(good[0].metadata, b"{\"id\":7}");
    }

    /// Proves the one table of metric spellings: the documented names in
    /// any case, and nothing else.
    #[test]
    fn metric_spellings_are_exactly_the_table() {
        for (text, metric) in [
            ("l2", Metric::L2),
            ("L2", Metric::L2),
            ("inner_product", Metric::InnerProduct),
            ("IP", Metric::InnerProduct),
            ("ip", Metric::InnerProduct),
            ("Cosine", Metric::Cosine),
        ] {
            assert_eq!(parse_metric(text).ok(), Some(metric), "{text}");
        }
        for text in ["euclidean", "dot", "l1", "", "l2 ", "cos"] {
            let err = parse_metric(text).expect_err(text);
            assert_eq!(err.fault(), Fault::InvalidInput);
            assert!(err.to_string().contains("l2, inner_product"), "{err}");
        }
        // Each metric's own name is in the table.
        for m in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
            assert_eq!(parse_metric(m.name()).ok(), Some(m));
        }
    }

    /// Proves that k and ef are refused outside their ranges, never
    /// clamped, and that ef is widened to k.
    #[test]
    fn k_and_ef_are_refused_outside_their_limits() {
        let k_max = u64::from(limits::SEARCH_K_MAX);
        let ef_max = u64::from(limits::SEARCH_EF_MAX);
        for k in [0, k_max + 1, u64::MAX] {
            let err = SearchSpec::new(k, None, None, false).expect_err("k");
            assert_eq!(err.fault(), Fault::InvalidInput);
            assert_eq!(err.to_string(), format!("k = {k} is outside 1..=10000"));
        }
        for ef in [0, ef_max + 1] {
            let err = SearchSpec::new(10, Some(ef), None, false).expect_err("ef");
            assert_eq!(err.to_string(), format!("ef = {ef} is outside 1..=10000"));
        }
        let spec = SearchSpec::new(k_max, Some(16), Some(3), true).expect("at the limit");
        assert_eq!(spec.k, 10_000);
        assert_eq!(
            spec.options,
            SearchOptions {
                ef: 10_000,
                exact: true,
                tag: Some(3)
            }
        );
        let spec = SearchSpec::new(1, None, None, false).expect("k = 1");
        assert_eq!(spec.options.ef, SearchOptions::default().ef);
    }

    /// Proves that a search answers the rows' own values and refuses a
    /// query of the wrong dimension and an unknown collection.
    #[test]
    fn search_checks_dimension_and_collection() {
        let (state, name) = state_with(&[5, 7, 9]);
        let spec = SearchSpec::new(2, None, None, true).expect("spec");
        let found = search(&state, &name, &[2 * 65536, 0], &spec).expect("search");
        // Record 9 is at x = 2, record 7 at x = 1.
        assert_eq!(
            found
                .iter()
                .map(|h| (h.id, h.distance, h.tag))
                .collect::<Vec<_>>(),
            vec![(9, 0.0, 109), (7, 1.0, 107)]
        );
        let err = search(&state, &name, &[0], &spec).expect_err("dimension");
        assert_eq!(err.fault(), Fault::InvalidInput);
        let other = collection_name("nope").expect("name");
        let err = search(&state, &other, &[0, 0], &spec).expect_err("unknown");
        assert_eq!(err.fault(), Fault::NotFound);
    }

    /// Proves that a batch's rows must share the first row's dimension and
    /// that bad components are named by row and component.
    #[test]
    fn rows_name_the_bad_row() {
        let mut rows = Rows::new();
        rows.push_f64([1.0, 2.0].into_iter()).expect("row 0");
        let err = rows.push_f64([1.0].into_iter()).expect_err("ragged");
        assert_eq!(
            err.to_string(),
            "vector 1 of the batch has 1 components, vector 0 has 2"
        );
        let err = rows.push_f32(&[0.0, f32::NAN]).expect_err("NaN");
        assert!(
            err.to_string()
                .starts_with("vector 1 of the batch: component 1"),
            "{err}"
        );
        assert_eq!(rows.len(), 1);
    }

    /// Proves the fault of the query layer's size limits: a too-long or
    /// too-deep statement exceeds a limit, as Postgres's 54000 says.
    #[test]
    fn statement_limits_are_too_large() {
        let e = QueryError::TooLong {
            bytes: crate::SQL_BYTES_MAX + 1,
            max: crate::SQL_BYTES_MAX,
        };
        assert_eq!(e.fault(), Fault::TooLarge);
        let e = QueryError::Timeout {
            after: std::time::Duration::from_secs(1),
        };
        assert_eq!(e.fault(), Fault::Timeout);
    }
}
