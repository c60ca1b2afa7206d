//! The workload of `valori-stress` and of the crash tests: atomic batches
//! whose content is a pure function of the batch number, so a checker can
//! rebuild any batch it was told was acknowledged.

use valori_core::event::{Batch, CollectionName, RecordId};
use valori_core::rng::mix64;

/// Dimension of the stress collection.
pub const DIM: u32 = 8;

/// Name of the stress collection.
pub fn collection() -> CollectionName {
    CollectionName::new("stress").expect("invariant: a valid literal name")
}

/// Batch number `b` of `size` records: ids `b·size .. (b+1)·size`, tag
/// `b mod 7`, metadata the id's little-endian bytes.
pub fn batch(b: u64, size: u64) -> Batch {
    let mut out = Batch::new(DIM);
    for i in 0..size {
        let id = b * size + i;
        let v: Vec<i32> = (0..u64::from(DIM))
            .map(|j| (mix64(id * 31 + j) % (1 << 20)) as i32 - (1 << 19))
            .collect();
        out.push(RecordId(id), &v, b % 7, &id.to_le_bytes());
    }
    out
}
