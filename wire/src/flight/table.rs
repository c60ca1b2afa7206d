//! The export of a table with declared columns (`CREATE TABLE` with its
//! own columns, docs/sql.md): its declared columns with their Arrow
//! types, as `SELECT *` answers them, then the extra columns that make
//! the export exact and verifiable.
//!
//! | column | type | |
//! |---|---|---|
//! | each declared column | its Arrow type (`columnar::arrow::declared_field`); the vector column as `FixedSizeList<Float32, dim>` | in declared order |
//! | `{vector}_q16` | `FixedSizeList<Int32, dim>` | the vector column's stored Q16.16 components, exact (only when the table has a vector column) |
//! | `record_id` | `UInt64` | the record id (only in an export with deleted rows) |
//! | `deleted` | `Boolean` | the tombstone (only in an export with deleted rows) |
//!
//! An extra column whose name a declared column already has takes `_`
//! suffixes until it is free; each extra column says what it is in its
//! field metadata ([`ROLE_KEY`]). Each declared column's field metadata
//! carries its declaration as the hash encodes it ([`TYPE_KEY`],
//! [`TYPE_MOD_KEY`], [`FLAGS_KEY`], [`DEFAULT_KEY`]) and the schema
//! metadata the serial sequences ([`SEQUENCES_KEY`]), so that the export
//! alone is enough to recompute the collection hash (docs/format.md
//! section 3).

use std::collections::HashMap;
use std::sync::Arc;

use valori_columnar::arrow as columns;
use valori_core::state::Collection;
use valori_core::table::{ColumnType, Table, TableSchema};
use valori_query::datafusion::arrow::array::{ArrayRef, BooleanArray, UInt64Array};
use valori_query::datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use valori_query::datafusion::arrow::error::ArrowError;

/// Field metadata of an extra column: what it holds.
pub const ROLE_KEY: &str = "valori.role";
pub const ROLE_VECTOR_Q16: &str = "vector_q16";
pub const ROLE_RECORD_ID: &str = "record_id";
pub const ROLE_DELETED: &str = "deleted";
/// Field metadata of a declared column: its type code as the schema
/// encodes it (0 `vector`, 0x80 `halfvec`, else the scalar type's code).
pub const TYPE_KEY: &str = "valori.type";
pub const TYPE_MOD_KEY: &str = "valori.type_mod";
pub const FLAGS_KEY: &str = "valori.flags";
/// Present only when the column has a `DEFAULT` (its SQL text).
pub const DEFAULT_KEY: &str = "valori.default";
/// Schema metadata: each scalar column's sequence, comma-separated.
pub const SEQUENCES_KEY: &str = "valori.sequences";

/// Which columns of a table's export are which.
#[derive(Clone, Debug)]
pub struct Layout {
    /// The declared vector column, when the table has one.
    pub vector: Option<usize>,
    /// Whether the export keeps deleted rows (and has `record_id` and
    /// `deleted`).
    pub deleted: bool,
    pub schema: SchemaRef,
}

/// The type code of a declared column in the schema's encoding.
fn type_code(ty: ColumnType) -> u8 {
    match ty {
        ColumnType::Vector { half: false } => 0,
        ColumnType::Vector { half: true } => 0x80,
        ColumnType::Scalar(t) => t.code(),
    }
}

/// `base`, or `base` with `_` appended until no name of `taken` has it.
fn free_name(base: &str, taken: &[String]) -> String {
    let mut name = base.to_owned();
    while taken.contains(&name) {
        name.push('_');
    }
    name
}

/// The export's schema of table `table` of collection `c`, with
/// `metadata` (provenance and the collection's description) and the
/// sequences added to it.
pub fn layout(
    c: &Collection,
    table: &Table,
    mut metadata: HashMap<String, String>,
    deleted: bool,
) -> Layout {
    let dim = c.config().dim;
    let declared = &table.schema().columns;
    let mut taken: Vec<String> = declared.iter().map(|d| d.name.clone()).collect();
    let mut fields: Vec<Field> = declared
        .iter()
        .map(|d| {
            let field = columns::declared_field(d, dim);
            let mut meta = field.metadata().clone();
            meta.insert(TYPE_KEY.to_owned(), type_code(d.ty).to_string());
            meta.insert(TYPE_MOD_KEY.to_owned(), d.type_mod.to_string());
            meta.insert(FLAGS_KEY.to_owned(), d.flags.to_string());
            if let Some(default) = &d.default {
                meta.insert(DEFAULT_KEY.to_owned(), default.clone());
            }
            field.with_metadata(meta)
        })
        .collect();
    let mut extra = |base: &str, data_type: DataType, role: &str| {
        let name = free_name(base, &taken);
        taken.push(name.clone());
        Field::new(name, data_type, false)
            .with_metadata([(ROLE_KEY.to_owned(), role.to_owned())].into())
    };
    let vector = table.schema().vector_column();
    if let Some(v) = vector {
        // The exact type of the fixed layout's `vector` column.
        let q16 = columns::schema(dim, false).field(1).data_type().clone();
        fields.push(extra(
            &format!("{}_q16", declared[v].name),
            q16,
            ROLE_VECTOR_Q16,
        ));
    }
    if deleted {
        fields.push(extra("record_id", DataType::UInt64, ROLE_RECORD_ID));
        fields.push(extra("deleted", DataType::Boolean, ROLE_DELETED));
    }
    let sequences: Vec<String> = table.sequences().iter().map(i64::to_string).collect();
    metadata.insert(SEQUENCES_KEY.to_owned(), sequences.join(","));
    Layout {
        vector,
        deleted,
        schema: Arc::new(Schema::new_with_metadata(fields, metadata)),
    }
}

/// Every scalar column's values of the exported `rows` (row numbers),
/// by declared column index (`None` for the vector column): what a later
/// write may change in place, so read under the same lock as the proof.
pub fn scalar_arrays(c: &Collection, rows: &[usize]) -> Result<Vec<Option<ArrayRef>>, ArrowError> {
    let Some(table) = c.table() else {
        return Ok(Vec::new());
    };
    table
        .schema()
        .columns
        .iter()
        .enumerate()
        .map(|(i, d)| match d.ty {
            ColumnType::Vector { .. } => Ok(None),
            ColumnType::Scalar(_) => columns::declared_array(c, i, rows).map(Some),
        })
        .collect()
}

/// One batch of a table's export: the scalar arrays sliced to `range`
/// (positions among the exported rows), the vectors of those rows
/// (`dim` raw components each, copied by the caller) in both views (the
/// declared column NULL where the row's tag says so; the exact one holds
/// the stored zeros), and the ids and tombstones when the layout has
/// them.
#[allow(clippy::too_many_arguments)]
pub fn batch(
    layout: &Layout,
    declared: &TableSchema,
    dim: u32,
    scalars: &[Option<ArrayRef>],
    range: std::ops::Range<usize>,
    vectors: Vec<i32>,
    tags: &[u64],
    ids: &[u64],
    deleted: &[bool],
) -> Result<valori_query::datafusion::arrow::array::RecordBatch, ArrowError> {
    let n = range.len();
    let mut out: Vec<ArrayRef> = Vec::with_capacity(layout.schema.fields().len());
    for (i, d) in declared.columns.iter().enumerate() {
        match &scalars[i] {
            Some(array) => out.push(array.slice(range.start, range.len())),
            None => out.push(columns::declared_values(
                d,
                dim,
                &[],
                &vectors,
                &tags[range.clone()],
            )?),
        }
    }
    if layout.vector.is_some() {
        out.push(Arc::new(columns::vector_array(vectors, dim)?));
    }
    if layout.deleted {
        out.push(Arc::new(UInt64Array::from(ids[range.clone()].to_vec())));
        out.push(Arc::new(BooleanArray::from(deleted[range].to_vec())));
    }
    let options =
        valori_query::datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(n));
    valori_query::datafusion::arrow::array::RecordBatch::try_new_with_options(
        Arc::clone(&layout.schema),
        out,
        &options,
    )
}
