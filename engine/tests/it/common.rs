//! Helpers shared by the engine tests.

use std::path::Path;
use std::sync::Arc;

use valori_core::Metric;
use valori_core::event::{CollectionConfig, CollectionName, Event, IndexParams, Record, RecordId};
use valori_core::state::State;
use valori_engine::storage::sim::SimStorage;
use valori_engine::{Engine, EngineOptions};

pub fn name(s: &str) -> CollectionName {
    CollectionName::new(s).unwrap()
}

pub fn create(collection: &str, dim: u32) -> Event {
    Event::CreateCollection {
        name: name(collection),
        config: CollectionConfig {
            dim,
            metric: Metric::L2,
            index: IndexParams::default(),
        },
    }
}

pub fn insert(collection: &str, id: u64, vector: Vec<i32>, tag: u64) -> Event {
    Event::Insert {
        collection: name(collection),
        record: Record {
            id: RecordId(id),
            vector,
            tag,
            metadata: id.to_le_bytes().to_vec(),
        },
    }
}

/// The golden workload's events, applied or not, in order.
pub fn golden_events() -> Vec<Event> {
    let mut events = Vec::new();
    let mut scratch = State::new();
    valori_core::golden::apply_workload(&mut scratch, |bytes, _| {
        events.push(Event::decode(bytes).unwrap())
    });
    events
}

pub const DIR: &str = "/db";

pub fn open_sim(storage: &SimStorage) -> Result<Engine, valori_engine::EngineError> {
    Engine::open_with(
        Arc::new(storage.clone()),
        Path::new(DIR),
        EngineOptions::default(),
    )
}

pub fn open_sim_small_segments(storage: &SimStorage) -> Engine {
    let options = EngineOptions {
        wal_segment_bytes_max: 4096,
        ..EngineOptions::default()
    };
    Engine::open_with(Arc::new(storage.clone()), Path::new(DIR), options).unwrap()
}
