//! Bad input is a clear error and changes nothing: not the log, not the
//! state hash, not the files.

use valori_core::event::{Event, RecordId};
use valori_core::limits::METADATA_BYTES_MAX;
use valori_core::q16::{QuantizeErrorKind, quantize_vector};
use valori_core::state::ApplyError;
use valori_engine::EngineError;
use valori_engine::storage::sim::SimStorage;

use crate::common::*;

/// Wrong dimension, NaN, oversized metadata, unknown collection and a
/// duplicate id are each rejected with an error naming the cause; the log
/// size, the state proof and the log's bytes are unchanged afterwards.
#[test]
fn each_bad_input_is_named_and_changes_nothing() {
    let storage = SimStorage::new();
    let engine = open_sim(&storage).unwrap();
    engine.submit(create("docs", 3)).unwrap();
    engine.submit(insert("docs", 1, vec![1, 2, 3], 0)).unwrap();
    let before = engine.proof().unwrap();
    let segment = std::path::Path::new(DIR)
        .join("wal")
        .join(valori_engine::wal::segment_name(0));
    let log_bytes = storage.written(&segment).unwrap();

    let wrong_dim = engine.submit(insert("docs", 2, vec![1, 2], 0)).unwrap_err();
    assert!(
        matches!(
            wrong_dim,
            EngineError::Rejected(ApplyError::DimensionMismatch {
                expected: 3,
                got: 2,
                ..
            })
        ),
        "{wrong_dim}"
    );
    assert!(wrong_dim.is_user_error());

    // NaN never becomes an event: the one conversion rejects it, naming
    // the component.
    let nan = quantize_vector(&[0.5, f32::NAN, 1.0]).unwrap_err();
    assert_eq!((nan.component, nan.kind), (1, QuantizeErrorKind::NaN));
    assert!(nan.to_string().contains("component 1"));

    let big = Event::SetMetadata {
        collection: name("docs"),
        id: RecordId(1),
        metadata: vec![0; METADATA_BYTES_MAX as usize + 1],
    };
    let err = engine.submit(big).unwrap_err();
    assert!(
        matches!(
            err,
            EngineError::Rejected(ApplyError::MetadataTooLarge { .. })
        ),
        "{err}"
    );

    let err = engine
        .submit(insert("nope", 1, vec![1, 2, 3], 0))
        .unwrap_err();
    assert!(
        matches!(err, EngineError::Rejected(ApplyError::UnknownCollection(_))),
        "{err}"
    );
    assert!(err.to_string().contains("nope"));

    let err = engine
        .submit(insert("docs", 1, vec![4, 5, 6], 0))
        .unwrap_err();
    assert!(
        matches!(err, EngineError::Rejected(ApplyError::DuplicateId { .. })),
        "{err}"
    );

    assert_eq!(engine.proof().unwrap(), before);
    assert_eq!(storage.written(&segment).unwrap(), log_bytes);
    // And the engine still takes good writes.
    engine.submit(insert("docs", 2, vec![7, 8, 9], 0)).unwrap();
    assert_eq!(engine.log_size(), before.log_size + 1);
}
