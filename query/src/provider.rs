//! Collections as DataFusion tables: a thin adapter over the engine's
//! columns.
//!
//! [`ValoriSchema`] is the `public` schema of a session: it lists the
//! engine's collections as they are when a query is planned (a collection
//! created after the session started is visible to the next query) and
//! hands out one [`CollectionTable`] per collection. A collection of
//! dimension `d` has the columns
//!
//! | column | type | |
//! |---|---|---|
//! | `id` | `UInt64` | the record id |
//! | `vec` | `FixedSizeList<Float32, d>` | the vector as users see it: `raw / 65536`, rounded to `f32` |
//! | `vec_q16` | `FixedSizeList<Int32, d>` | the stored raw Q16.16 integers, exact |
//! | `tag` | `UInt64` | |
//! | `metadata` | `Binary` | |
//!
//! A table created with declared columns (`crate::declared`) has those
//! columns instead, in declared order, as [`collection_schema`] gives
//! them: the vector column as `FixedSizeList<Float32, d>` (no Q16.16
//! sibling), scalar columns with their Arrow types and nullability; no
//! filter is pushed into its scans, and [`Roles`] tells the KNN rewrite
//! which column is its vector.
//!
//! No column is nullable. `vec` is exact for every value that entered
//! through `quantize` (from an `f32`) and for any raw value up to 2^24 in
//! magnitude; only a raw integer above 2^24 stored directly (without an
//! `f32` behind it) shows rounded. `vec_q16` is always exact. The `vec` field carries the metadata
//! `valori.exact_column = vec_q16`, which lets the distance functions use
//! the exact column instead (see [`crate::functions`]); `vec_q16` carries
//! `valori.encoding = q16.16`.
//!
//! A scan ([`CollectionScanExec`]) takes one consistent snapshot under
//! [`Engine::read`] each time the plan is executed — not when it is
//! built, so a prepared plan run again reads the rows as they are then:
//! the live rows, in row order, converted by
//! [`valori_columnar::arrow::record_batch`] in batches of up to
//! [`SCAN_BATCH_ROWS`] rows. It computes only the projected columns, and
//! applies these pushed-down operations itself:
//!
//! - `tag = <integer literal>` (either side), exactly: the scan returns
//!   only matching rows, so DataFusion need not filter again;
//! - `LIMIT n`: the scan stops after `n` matching rows.
//!
//! A vector `ORDER BY … LIMIT` never reaches the scan: the KNN rewrite
//! ([`crate::knn`]) answers it with one engine search and fetches only the
//! rows it returns (`rows_batch`).
//!
//! Not done yet: the snapshot copies the columns while holding the
//! engine's read lock (writers wait for it; shared column segments would
//! make it zero-copy).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, FixedSizeListArray, Float32Array, Int32Array, RecordBatch,
    RecordBatchOptions, UInt64Array,
};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{
    BinaryExpr, Expr, Operator, TableProviderFilterPushDown, TableType,
};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning,
    PhysicalExpr, PlanProperties, ReplaceChildrenOptions, SendableRecordBatchStream,
};
use valori_columnar::arrow as columnar;
use valori_core::event::CollectionName;
use valori_core::state::Collection;
use valori_engine::{Engine, EngineError};

use crate::index_scan::RowSource;

/// Column names, in schema order.
pub const ID_COLUMN: &str = "id";
pub const VEC_COLUMN: &str = "vec";
pub const VEC_Q16_COLUMN: &str = "vec_q16";
pub const TAG_COLUMN: &str = "tag";
pub const METADATA_COLUMN: &str = "metadata";

/// Field metadata key on `vec` naming its exact sibling column.
pub const VALORI_EXACT_COLUMN_KEY: &str = "valori.exact_column";
/// Field metadata key on `vec_q16` naming its encoding.
pub const VALORI_ENCODING_KEY: &str = "valori.encoding";
/// The value of [`VALORI_ENCODING_KEY`] for raw Q16.16 integers.
pub const Q16_ENCODING: &str = "q16.16";

/// Rows (live or deleted) converted per Arrow batch.
pub const SCAN_BATCH_ROWS: usize = 4096;

/// The columnar export's column behind each of this table's columns, in
/// schema order.
const SOURCE_COLUMNS: [&str; 5] = [
    columnar::ID_COLUMN,
    columnar::VECTOR_F32_COLUMN,
    columnar::VECTOR_COLUMN,
    columnar::TAG_COLUMN,
    columnar::METADATA_COLUMN,
];
pub(crate) const ID_INDEX: usize = 0;
pub(crate) const VEC_INDEX: usize = 1;
pub(crate) const VEC_Q16_INDEX: usize = 2;
pub(crate) const TAG_INDEX: usize = 3;
pub(crate) const METADATA_INDEX: usize = 4;

/// The table schema of a collection of dimension `dim` (see the module
/// documentation). The field types are the columnar export's, renamed.
pub fn table_schema(dim: u32) -> SchemaRef {
    let source = columnar::schema(dim, true);
    let field = |name: &str| -> Field {
        // The columnar schema with its f32 view has every source column.
        source
            .field_with_name(name)
            .cloned()
            .expect("invariant: the columnar schema has every source column")
    };
    let vec = field(columnar::VECTOR_F32_COLUMN)
        .with_name(VEC_COLUMN)
        .with_metadata(
            [(
                VALORI_EXACT_COLUMN_KEY.to_owned(),
                VEC_Q16_COLUMN.to_owned(),
            )]
            .into_iter()
            .collect(),
        );
    let vec_q16 = field(columnar::VECTOR_COLUMN)
        .with_name(VEC_Q16_COLUMN)
        .with_metadata(
            [(VALORI_ENCODING_KEY.to_owned(), Q16_ENCODING.to_owned())]
                .into_iter()
                .collect(),
        );
    Arc::new(Schema::new(vec![
        field(columnar::ID_COLUMN).with_name(ID_COLUMN),
        vec,
        vec_q16,
        field(columnar::TAG_COLUMN).with_name(TAG_COLUMN),
        field(columnar::METADATA_COLUMN).with_name(METADATA_COLUMN),
    ]))
}

/// Why a scan could not take its snapshot.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScanError {
    /// The collection was dropped (or dropped and created again) between
    /// planning and the scan: the plan's schema may no longer hold.
    #[error("collection {0} was dropped or re-created while the query was planned; run it again")]
    CollectionChanged(CollectionName),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<ScanError> for DataFusionError {
    fn from(e: ScanError) -> Self {
        DataFusionError::External(Box::new(e))
    }
}

/// Which tags a scan keeps, from its pushed-down `tag = n` filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TagFilter {
    Any,
    Only(u64),
    /// Two different `tag = n` conjuncts: nothing matches.
    Nothing,
}

impl TagFilter {
    fn and(self, tag: u64) -> TagFilter {
        match self {
            TagFilter::Any => TagFilter::Only(tag),
            TagFilter::Only(t) if t == tag => self,
            TagFilter::Only(_) | TagFilter::Nothing => TagFilter::Nothing,
        }
    }

    fn keeps(self, tag: u64) -> bool {
        match self {
            TagFilter::Any => true,
            TagFilter::Only(t) => t == tag,
            TagFilter::Nothing => false,
        }
    }
}

/// The tag `expr` asks for, when it is `tag = <integer literal>` (or the
/// mirror image) with a literal a `u64` can hold.
pub(crate) fn tag_equality(expr: &Expr) -> Option<u64> {
    let Expr::BinaryExpr(BinaryExpr {
        left,
        op: Operator::Eq,
        right,
    }) = expr
    else {
        return None;
    };
    let (column, literal) = match (left.as_ref(), right.as_ref()) {
        (Expr::Column(c), Expr::Literal(v, _)) | (Expr::Literal(v, _), Expr::Column(c)) => (c, v),
        _ => return None,
    };
    if column.name != TAG_COLUMN {
        return None;
    }
    u64_literal(literal)
}

/// An integer literal's value, when a `u64` holds it.
pub(crate) fn u64_literal(literal: &ScalarValue) -> Option<u64> {
    let value: i128 = match literal {
        ScalarValue::Int8(Some(v)) => i128::from(*v),
        ScalarValue::Int16(Some(v)) => i128::from(*v),
        ScalarValue::Int32(Some(v)) => i128::from(*v),
        ScalarValue::Int64(Some(v)) => i128::from(*v),
        ScalarValue::UInt8(Some(v)) => i128::from(*v),
        ScalarValue::UInt16(Some(v)) => i128::from(*v),
        ScalarValue::UInt32(Some(v)) => i128::from(*v),
        ScalarValue::UInt64(Some(v)) => i128::from(*v),
        ScalarValue::Decimal128(Some(v), _, 0) => *v,
        _ => return None,
    };
    u64::try_from(value).ok()
}

/// The SQL schema of a collection: [`table_schema`] for a collection
/// with the fixed columns, its declared columns in declared order
/// ([`columnar::declared_field`]) for a table created with its own.
pub fn collection_schema(collection: &Collection) -> SchemaRef {
    let dim = collection.config().dim;
    match collection.table() {
        None => table_schema(dim),
        Some(table) => Arc::new(Schema::new(
            table
                .schema()
                .columns
                .iter()
                .map(|c| columnar::declared_field(c, dim))
                .collect::<Vec<Field>>(),
        )),
    }
}

/// Which columns of a table play which part in a search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Roles {
    /// The vector column users write, as `FixedSizeList<Float32>`.
    pub vector: usize,
    /// Its exact Q16.16 sibling, when the table has one.
    pub vector_q16: Option<usize>,
    /// The column that holds the record id (ties in a search break by it).
    pub id: Option<usize>,
    /// The column the engine's tag lists index.
    pub tag: Option<usize>,
}

impl Roles {
    fn of(collection: &Collection) -> Roles {
        match collection.table() {
            None => Roles {
                vector: VEC_INDEX,
                vector_q16: Some(VEC_Q16_INDEX),
                id: Some(ID_INDEX),
                tag: Some(TAG_INDEX),
            },
            Some(table) => Roles {
                // No column is the vector column of a table without one.
                vector: table.schema().vector_column().unwrap_or(usize::MAX),
                vector_q16: None,
                id: None,
                tag: None,
            },
        }
    }

    /// Whether `column` is the vector column or its exact sibling.
    pub fn is_vector(&self, column: usize) -> bool {
        column == self.vector || Some(column) == self.vector_q16
    }
}

/// One collection as a table. The schema is fixed when the table is
/// looked up; a scan checks that the collection is still the same one.
#[derive(Clone, Debug)]
pub struct CollectionTable {
    engine: Arc<Engine>,
    name: CollectionName,
    /// Which creation of the name the schema was made for.
    incarnation: u64,
    schema: SchemaRef,
    roles: Roles,
}

impl CollectionTable {
    pub fn new(engine: Arc<Engine>, collection: &Collection) -> CollectionTable {
        CollectionTable {
            engine,
            name: collection.name().clone(),
            incarnation: collection.incarnation(),
            schema: collection_schema(collection),
            roles: Roles::of(collection),
        }
    }

    /// Which columns are the vector, the id and the tag.
    pub fn roles(&self) -> Roles {
        self.roles
    }

    pub fn name(&self) -> &CollectionName {
        &self.name
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Which creation of the name this table was looked up for.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// The live rows matching `tags`, at most `limit` of them, in row
    /// order, as batches of the `projection` columns: one consistent
    /// snapshot under the engine's read lock.
    fn snapshot(
        &self,
        projection: &[usize],
        tags: TagFilter,
        index: Option<&RowSource>,
        limit: Option<usize>,
    ) -> Result<Vec<RecordBatch>> {
        let schema = Arc::new(self.schema.project(projection)?);
        let with_f32 = projection.contains(&VEC_INDEX);
        let read = self.engine.read(|state| -> Result<Vec<RecordBatch>> {
            let collection = state
                .collection(&self.name)
                .filter(|c| c.incarnation() == self.incarnation)
                .ok_or_else(|| ScanError::CollectionChanged(self.name.clone()))?;
            let mut remaining = limit.unwrap_or(usize::MAX);
            let mut batches = Vec::new();
            let mut start = 0;
            if collection.table().is_some() {
                // Declared columns: the live rows of each window, column
                // by column (no tag filter reaches such a scan); only the
                // rows the indexes give when a filter names indexed
                // columns (the filter is applied above the scan).
                if let Some(rows) = index.and_then(|source| source.rows(collection)) {
                    let mut rows: Vec<usize> = rows.into_iter().map(|r| r as usize).collect();
                    rows.truncate(remaining);
                    for chunk in rows.chunks(SCAN_BATCH_ROWS) {
                        batches.push(rows_batch(collection, chunk, projection, &schema)?);
                    }
                    return Ok(batches);
                }
                while start < collection.rows() && remaining > 0 {
                    let end = (start + SCAN_BATCH_ROWS).min(collection.rows());
                    let mut rows: Vec<usize> =
                        (start..end).filter(|&r| !collection.deleted()[r]).collect();
                    rows.truncate(remaining);
                    if !rows.is_empty() {
                        remaining -= rows.len();
                        batches.push(rows_batch(collection, &rows, projection, &schema)?);
                    }
                    start = end;
                }
                return Ok(batches);
            }
            while start < collection.rows() && remaining > 0 {
                let end = (start + SCAN_BATCH_ROWS).min(collection.rows());
                let (live, keep) = select_rows(collection, start..end, tags);
                if keep.true_count() > 0 {
                    let mut batch = columnar::record_batch(collection, start..end, with_f32)?;
                    debug_assert_eq!(batch.num_rows(), live);
                    if keep.true_count() < live {
                        batch = filter_record_batch(&batch, &keep)?;
                    }
                    if batch.num_rows() > remaining {
                        batch = batch.slice(0, remaining);
                    }
                    remaining -= batch.num_rows();
                    batches.push(project(&batch, projection, &schema)?);
                }
                start = end;
            }
            Ok(batches)
        });
        read.map_err(ScanError::from)?
    }
}

/// The `projection` columns of the given `rows` (in that order, live or
/// not: the caller chose them) as one batch of `schema`, which must be the
/// table schema projected by `projection`. Used by the KNN node, which
/// fetches its rows by id rather than by scanning.
pub(crate) fn rows_batch(
    collection: &Collection,
    rows: &[usize],
    projection: &[usize],
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    let dim = collection.config().dim;
    let size = i32::try_from(dim)
        .map_err(|_| DataFusionError::Internal(format!("dimension {dim} exceeds i32")))?;
    let raw = || -> Vec<i32> {
        let mut values = Vec::with_capacity(rows.len() * collection.dim());
        for &row in rows {
            values.extend_from_slice(collection.vector(row));
        }
        values
    };
    let list = |values: ArrayRef, field: &Field| -> Result<ArrayRef> {
        let DataType::FixedSizeList(item, _) = field.data_type() else {
            return Err(DataFusionError::Internal(format!(
                "column {} is not a vector",
                field.name()
            )));
        };
        Ok(Arc::new(FixedSizeListArray::try_new(
            Arc::clone(item),
            size,
            values,
            None,
        )?))
    };
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(projection.len());
    if collection.table().is_some() {
        for &column in projection {
            columns.push(columnar::declared_array(collection, column, rows)?);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(rows.len()));
        return Ok(RecordBatch::try_new_with_options(
            Arc::clone(schema),
            columns,
            &options,
        )?);
    }
    for (&column, field) in projection.iter().zip(schema.fields()) {
        let array: ArrayRef = match column {
            ID_INDEX => Arc::new(UInt64Array::from_iter_values(
                rows.iter().map(|&r| collection.ids()[r].0),
            )),
            // The f32 view is defined as `raw / 65536` rounded to f32, as in
            // the columnar export: `raw as f32` rounds once, the division
            // by a power of two is exact.
            VEC_INDEX => list(
                Arc::new(Float32Array::from_iter_values(
                    raw().into_iter().map(|r| r as f32 / 65536.0),
                )),
                field,
            )?,
            VEC_Q16_INDEX => list(Arc::new(Int32Array::from(raw())), field)?,
            TAG_INDEX => Arc::new(UInt64Array::from_iter_values(
                rows.iter().map(|&r| collection.tags()[r]),
            )),
            METADATA_INDEX => Arc::new(BinaryArray::from_iter_values(
                rows.iter().map(|&r| collection.metadata(r)),
            )),
            other => {
                return Err(DataFusionError::Internal(format!(
                    "column {other} is not a column of a collection table"
                )));
            }
        };
        columns.push(array);
    }
    let options = RecordBatchOptions::new().with_row_count(Some(rows.len()));
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(schema),
        columns,
        &options,
    )?)
}

/// For the live rows among `rows`, in row order: how many there are, and
/// which of them `tags` keeps.
fn select_rows(
    collection: &Collection,
    rows: std::ops::Range<usize>,
    tags: TagFilter,
) -> (usize, BooleanArray) {
    let deleted = &collection.deleted()[rows.clone()];
    let all_tags = &collection.tags()[rows];
    let keep: BooleanArray = deleted
        .iter()
        .zip(all_tags)
        .filter(|(d, _)| !**d)
        .map(|(_, &t)| Some(tags.keeps(t)))
        .collect();
    (keep.len(), keep)
}

/// The `projection` columns of a columnar export, under this table's
/// names.
fn project(batch: &RecordBatch, projection: &[usize], schema: &SchemaRef) -> Result<RecordBatch> {
    let columns = projection
        .iter()
        .map(|&i| {
            let source = SOURCE_COLUMNS.get(i).copied().unwrap_or_default();
            batch.column_by_name(source).cloned().ok_or_else(|| {
                DataFusionError::Internal(format!(
                    "column {source} missing from the columnar export"
                ))
            })
        })
        .collect::<Result<Vec<ArrayRef>>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(schema),
        columns,
        &options,
    )?)
}

#[async_trait]
impl TableProvider for CollectionTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Only the fixed `tag` column has the engine's tag lists behind it;
        // a declared column of that name is filtered by DataFusion. A
        // declared table's scan reads only the rows its indexes give for
        // a filter on indexed columns, which DataFusion still applies.
        if self.roles.tag.is_some() {
            return Ok(filters
                .iter()
                .map(|f| match tag_equality(f) {
                    Some(_) => TableProviderFilterPushDown::Exact,
                    _ => TableProviderFilterPushDown::Unsupported,
                })
                .collect());
        }
        let answerable = |f: &Expr| {
            RowSource::of_filters([f]).is_some_and(|source| {
                self.engine
                    .read(|state| {
                        state
                            .collection(&self.name)
                            .filter(|c| c.incarnation() == self.incarnation)
                            .is_some_and(|c| source.answerable(c))
                    })
                    .unwrap_or(false)
            })
        };
        Ok(filters
            .iter()
            .map(|f| {
                if answerable(f) {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let projection: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        // Only filters this table declared Exact (tags) or Inexact (index
        // lookups, applied again above the scan) arrive here; anything
        // else would be a planner bug, and ignoring it would return wrong
        // rows.
        let mut tags = TagFilter::Any;
        let index = if self.roles.tag.is_none() {
            RowSource::of_filters(filters)
        } else {
            None
        };
        for filter in filters.iter().filter(|_| self.roles.tag.is_some()) {
            let tag = tag_equality(filter).ok_or_else(|| {
                DataFusionError::Internal(format!(
                    "filter {filter} was pushed into a scan of {} that cannot apply it",
                    self.name
                ))
            })?;
            tags = tags.and(tag);
        }
        let schema = Arc::new(self.schema.project(&projection)?);
        Ok(Arc::new(CollectionScanExec {
            properties: Arc::new(PlanProperties::new(
                EquivalenceProperties::new(Arc::clone(&schema)),
                Partitioning::UnknownPartitioning(1),
                EmissionType::Final,
                Boundedness::Bounded,
            )),
            table: self.clone(),
            projection,
            tags,
            index,
            limit,
            schema,
        }))
    }
}

/// A scan of one collection: its snapshot is taken when the plan is
/// executed (see the [module documentation](self)).
#[derive(Debug)]
pub struct CollectionScanExec {
    table: CollectionTable,
    projection: Vec<usize>,
    tags: TagFilter,
    /// The rows to read, from the indexes named by pushed filters.
    index: Option<RowSource>,
    limit: Option<usize>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl DisplayAs for CollectionScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let columns: Vec<&str> = self
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        write!(
            f,
            "CollectionScanExec: collection={} columns=[{}]",
            self.table.name,
            columns.join(", ")
        )?;
        match self.tags {
            TagFilter::Any => {}
            TagFilter::Only(tag) => write!(f, " tag={tag}")?,
            TagFilter::Nothing => write!(f, " tag=none")?,
        }
        if let Some(index) = &self.index {
            write!(f, " index=[{index}]")?;
        }
        if let Some(limit) = self.limit {
            write!(f, " limit={limit}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for CollectionScanExec {
    fn name(&self) -> &'static str {
        "CollectionScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !children.is_empty() {
            return Err(DataFusionError::Internal(
                "CollectionScanExec has no children".to_owned(),
            ));
        }
        Ok(self)
    }

    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "CollectionScanExec has one partition, not {partition}"
            )));
        }
        let batches =
            self.table
                .snapshot(&self.projection, self.tags, self.index.as_ref(), self.limit)?;
        Ok(Box::pin(MemoryStream::try_new(
            batches,
            Arc::clone(&self.schema),
            None,
        )?))
    }
}

/// The engine's collections as a DataFusion schema.
#[derive(Debug)]
pub struct ValoriSchema {
    engine: Arc<Engine>,
}

impl ValoriSchema {
    pub fn new(engine: Arc<Engine>) -> ValoriSchema {
        ValoriSchema { engine }
    }
}

#[async_trait]
impl SchemaProvider for ValoriSchema {
    fn table_names(&self) -> Vec<String> {
        // A failed engine lists nothing; queries against it report the
        // failure when they look a table up.
        self.engine
            .read(|state| {
                state
                    .collections()
                    .map(|c| c.name().as_str().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let Ok(name) = CollectionName::new(name) else {
            return Ok(None);
        };
        let table = self
            .engine
            .read(|state| {
                state
                    .collection(&name)
                    .map(|c| CollectionTable::new(Arc::clone(&self.engine), c))
            })
            .map_err(ScanError::from)?;
        Ok(table.map(|t| Arc::new(t) as Arc<dyn TableProvider>))
    }

    fn table_exist(&self, name: &str) -> bool {
        let Ok(name) = CollectionName::new(name) else {
            return false;
        };
        self.engine
            .read(|state| state.collection(&name).is_some())
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    /// Proves which filters the scan takes over: `tag = n` in either order
    /// with any integer literal a u64 holds, and nothing else.
    #[test]
    fn tag_equality_recognises_only_exact_tag_filters() {
        assert_eq!(tag_equality(&col("tag").eq(lit(7u64))), Some(7));
        assert_eq!(tag_equality(&lit(7i64).eq(col("tag"))), Some(7));
        assert_eq!(tag_equality(&col("tag").eq(lit(0i32))), Some(0));
        assert_eq!(tag_equality(&col("tag").eq(lit(u64::MAX))), Some(u64::MAX));
        assert_eq!(tag_equality(&col("tag").eq(lit(-1i64))), None);
        assert_eq!(tag_equality(&col("tag").eq(lit(7.0f64))), None);
        assert_eq!(
            tag_equality(&col("tag").eq(lit(ScalarValue::UInt64(None)))),
            None
        );
        assert_eq!(tag_equality(&col("tag").not_eq(lit(7u64))), None);
        assert_eq!(tag_equality(&col("tag").gt(lit(7u64))), None);
        assert_eq!(tag_equality(&col("id").eq(lit(7u64))), None);
        assert_eq!(tag_equality(&col("tag").eq(col("id"))), None);
    }

    /// Proves conjunctions of tag filters: equal tags keep one, different
    /// tags keep nothing.
    #[test]
    fn tag_filters_intersect() {
        assert_eq!(TagFilter::Any.and(3), TagFilter::Only(3));
        assert_eq!(TagFilter::Only(3).and(3), TagFilter::Only(3));
        assert_eq!(TagFilter::Only(3).and(4), TagFilter::Nothing);
        assert_eq!(TagFilter::Nothing.and(3), TagFilter::Nothing);
        assert!(!TagFilter::Nothing.keeps(3));
        assert!(TagFilter::Any.keeps(3));
    }

    /// Proves the schema's names, types and the metadata the distance
    /// functions rely on.
    #[test]
    fn schema_columns_and_metadata() {
        let schema = table_schema(3);
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["id", "vec", "vec_q16", "tag", "metadata"]);
        assert_eq!(schema.field(0).data_type(), &DataType::UInt64);
        assert!(matches!(schema.field(1).data_type(),
            DataType::FixedSizeList(item, 3) if item.data_type() == &DataType::Float32));
        assert!(matches!(schema.field(2).data_type(),
            DataType::FixedSizeList(item, 3) if item.data_type() == &DataType::Int32));
        assert_eq!(schema.field(3).data_type(), &DataType::UInt64);
        assert_eq!(schema.field(4).data_type(), &DataType::Binary);
        assert!(schema.fields().iter().all(|f| !f.is_nullable()));
        assert_eq!(
            schema
                .field(1)
                .metadata()
                .get(VALORI_EXACT_COLUMN_KEY)
                .map(String::as_str),
            Some(VEC_Q16_COLUMN)
        );
        assert_eq!(
            schema
                .field(2)
                .metadata()
                .get(VALORI_ENCODING_KEY)
                .map(String::as_str),
            Some(Q16_ENCODING)
        );
    }
}
