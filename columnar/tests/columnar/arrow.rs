//! Arrow views: schema, live rows in row order, values equal to the
//! collection's accessors, and the f32 view computed independently.

use arrow_array::{
    Array, BinaryArray, FixedSizeListArray, Float32Array, Int32Array, RecordBatch, UInt64Array,
};
use arrow_schema::DataType;
use valori_columnar::arrow::{record_batch, schema};
use valori_core::state::Collection;

use crate::common::{golden_state, small_state};

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> &'a T {
    batch
        .column_by_name(name)
        .unwrap()
        .as_any()
        .downcast_ref::<T>()
        .unwrap()
}

fn list_values<T: 'static>(list: &FixedSizeListArray) -> &T {
    list.values().as_any().downcast_ref::<T>().unwrap()
}

/// Checks a batch exported from `rows` of `c` against the accessors.
fn check_batch(c: &Collection, rows: std::ops::Range<usize>, batch: &RecordBatch, with_f32: bool) {
    let live: Vec<usize> = rows.filter(|&r| !c.deleted()[r]).collect();
    let dim = c.dim();
    assert_eq!(batch.num_rows(), live.len());
    assert_eq!(batch.schema(), schema(c.config().dim, with_f32));

    let ids = column::<UInt64Array>(batch, "id");
    let tags = column::<UInt64Array>(batch, "tag");
    let metadata = column::<BinaryArray>(batch, "metadata");
    let vectors = column::<FixedSizeListArray>(batch, "vector");
    assert_eq!(vectors.value_length() as usize, dim);
    let raw = list_values::<Int32Array>(vectors).values();
    for (i, &row) in live.iter().enumerate() {
        assert_eq!(ids.value(i), c.ids()[row].0);
        assert_eq!(tags.value(i), c.tags()[row]);
        assert_eq!(metadata.value(i), c.metadata(row));
        assert_eq!(&raw[i * dim..(i + 1) * dim], c.vector(row));
    }

    if with_f32 {
        let view = column::<FixedSizeListArray>(batch, "vector_f32");
        let floats = list_values::<Float32Array>(view).values();
        for (i, &row) in live.iter().enumerate() {
            for (j, &r) in c.vector(row).iter().enumerate() {
                // Exact in f64, then one rounding to f32.
                let expected = (f64::from(r) / 65536.0) as f32;
                assert_eq!(floats[i * dim + j].to_bits(), expected.to_bits());
            }
        }
    } else {
        assert!(batch.column_by_name("vector_f32").is_none());
    }
}

/// The schema names the columns and types of the brief, none nullable.
#[test]
fn schema_shape() {
    let s = schema(50, true);
    let names: Vec<&str> = s.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["id", "vector", "tag", "metadata", "vector_f32"]);
    assert!(s.fields().iter().all(|f| !f.is_nullable()));
    assert_eq!(s.field(0).data_type(), &DataType::UInt64);
    match s.field(1).data_type() {
        DataType::FixedSizeList(item, 50) => assert_eq!(item.data_type(), &DataType::Int32),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.field(2).data_type(), &DataType::UInt64);
    assert_eq!(s.field(3).data_type(), &DataType::Binary);
    match s.field(4).data_type() {
        DataType::FixedSizeList(item, 50) => assert_eq!(item.data_type(), &DataType::Float32),
        other => panic!("{other:?}"),
    }
    assert_eq!(schema(7, false).fields().len(), 4);
}

/// Whole collections of the golden workload and of the small state export
/// their live rows, with and without the f32 view.
#[test]
fn whole_collections_export_live_rows() {
    for (state, _) in [golden_state(), small_state()] {
        for c in state.collections() {
            for with_f32 in [false, true] {
                let batch = record_batch(c, 0..c.rows(), with_f32).unwrap();
                check_batch(c, 0..c.rows(), &batch, with_f32);
                assert_eq!(batch.num_rows(), c.live());
            }
        }
    }
}

/// Exporting in row ranges gives, range by range, the same rows as one
/// export; ranges are exported on their own and checked against the
/// accessors.
#[test]
fn row_ranges_partition_the_export() {
    let (state, _) = golden_state();
    for c in state.collections() {
        let whole = record_batch(c, 0..c.rows(), false).unwrap();
        let whole_ids = column::<UInt64Array>(&whole, "id");
        let mut seen = Vec::new();
        let mut start: usize = 0;
        for step in [1, 7, 256, 1000, usize::MAX] {
            let end = start.saturating_add(step).min(c.rows());
            let part = record_batch(c, start..end, true).unwrap();
            check_batch(c, start..end, &part, true);
            seen.extend(column::<UInt64Array>(&part, "id").values().iter().copied());
            start = end;
        }
        assert_eq!(start, c.rows());
        assert_eq!(seen, whole_ids.values().to_vec());
    }
}

/// Ranges outside the collection are errors, not panics; an empty range is
/// an empty batch.
#[test]
fn bad_ranges_are_errors() {
    let (state, _) = small_state();
    let c = state.collections().next().unwrap();
    assert!(record_batch(c, 0..c.rows() + 1, false).is_err());
    #[allow(clippy::reversed_empty_ranges)]
    let reversed = 3..1;
    assert!(record_batch(c, reversed, false).is_err());
    assert_eq!(record_batch(c, 2..2, true).unwrap().num_rows(), 0);
}
