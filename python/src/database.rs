//! `Database`: one engine opened in-process, with the operations of the
//! REST API as methods. Defaults, automatic collection creation and batch
//! splitting live in the Python half (`valori/_client.py`), shared with the
//! remote mode, so that both modes issue the same events.

// The methods mirror Python signatures with keyword arguments (`k`, `tag`,
// `ef`, `exact`, …); a config struct would only move them into a dict.
#![allow(clippy::too_many_arguments)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use numpy::PyReadonlyArray2;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use pyo3_arrow::PyTable;
use valori_core::event::{CollectionName, Event, NodeId, RecordId};
use valori_core::hash::Hash32;
use valori_core::state::State;
use valori_engine::{Engine, EngineError, Receipt};
use valori_query::QueryEngine;
use valori_query::ops::{
    self, BatchColumns, CollectionInfo, Fault, Hit, NewCollection, OpsError, Rows, SearchSpec,
    VectorOrigin,
};

use crate::convert::quantize_into;
use crate::errors::{self, error};

/// Engines open in this process, by canonical data directory: a second
/// `Database` on the same directory shares the first one's engine instead
/// of opening the log twice.
static OPEN: Mutex<BTreeMap<PathBuf, Weak<Engine>>> = Mutex::new(BTreeMap::new());

/// What a method works on: the engine and, once SQL is used, the query
/// layer and the runtime that drives it.
struct Handle {
    engine: Arc<Engine>,
    sql: OnceLock<(QueryEngine, tokio::runtime::Runtime)>,
}

/// An embedded Valori database (the engine in this process).
#[pyclass(module = "valori._native", frozen)]
pub struct Database {
    dir: PathBuf,
    handle: Mutex<Option<Arc<Handle>>>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database").field("dir", &self.dir).finish()
    }
}

fn name(text: &str) -> PyResult<CollectionName> {
    ops::collection_name(text).map_err(errors::ops)
}

fn canonical_metadata(json: Option<&str>, origin: VectorOrigin) -> PyResult<Vec<u8>> {
    match json {
        None => Ok(Vec::new()),
        Some(text) => valori_query::metadata::from_json_text(text).map_err(|e| {
            error(
                Fault::InvalidInput,
                format!("{origin}: metadata is not JSON: {e}"),
            )
        }),
    }
}

fn unknown_collection(name: &CollectionName) -> PyErr {
    errors::ops(OpsError::UnknownCollection(name.clone()))
}

pub(crate) fn hex(h: &Hash32) -> String {
    h.to_string()
}

fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

pub(crate) fn parse_hash(text: &str) -> PyResult<Hash32> {
    Hash32::from_hex(text).ok_or_else(|| {
        error(
            Fault::InvalidInput,
            format!("{text:?} is not a hash of 64 hex digits"),
        )
    })
}

fn receipt<'py>(py: Python<'py>, r: Receipt) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("seq", r.seq)?;
    d.set_item("log_root", hex(&r.log_root))?;
    Ok(d)
}

fn collection_info<'py>(py: Python<'py>, c: &CollectionInfo) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("name", &c.name)?;
    d.set_item("dim", c.dim)?;
    d.set_item("metric", c.metric)?;
    d.set_item("m", c.m)?;
    d.set_item("ef_construction", c.ef_construction)?;
    d.set_item("seed", c.seed)?;
    d.set_item("rows", c.rows)?;
    d.set_item("live", c.live)?;
    d.set_item("indexed", c.indexed)?;
    Ok(d)
}

fn hits_to_py<'py>(py: Python<'py>, hits: Vec<Hit>) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for hit in hits {
        list.append((
            hit.id,
            hit.distance,
            hit.tag,
            PyBytes::new(py, &hit.metadata),
        ))?;
    }
    Ok(list)
}

impl Database {
    fn handle(&self) -> PyResult<Arc<Handle>> {
        self.handle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| {
                error(
                    Fault::InvalidInput,
                    format!("the database at {} is closed", self.dir.display()),
                )
            })
    }

    fn engine(&self) -> PyResult<Arc<Engine>> {
        Ok(Arc::clone(&self.handle()?.engine))
    }

    /// Submits `event` with the GIL released (the write waits for fsync).
    fn submit(&self, py: Python<'_>, event: Event) -> PyResult<Receipt> {
        let engine = self.engine()?;
        py.detach(move || engine.submit(event))
            .map_err(errors::engine)
    }

    fn read<R: Send>(&self, py: Python<'_>, f: impl FnOnce(&State) -> R + Send) -> PyResult<R> {
        let engine = self.engine()?;
        py.detach(move || engine.read(f)).map_err(errors::engine)
    }

    /// One atomic batch of `rows` (quantized already) with its columns.
    fn insert_rows<'py>(
        &self,
        py: Python<'py>,
        collection: &str,
        rows: Rows,
        ids: Option<Vec<u64>>,
        tags: Option<Vec<u64>>,
        metadata: Option<Vec<Option<String>>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let collection = name(collection)?;
        let metadata = match metadata {
            None => None,
            Some(values) => Some(
                values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| canonical_metadata(v.as_deref(), VectorOrigin::Row(i as u64)))
                    .collect::<PyResult<Vec<_>>>()?,
            ),
        };
        let columns = BatchColumns {
            ids,
            tags,
            metadata,
        };
        let engine = self.engine()?;
        let n = rows.len();
        let inserted = py
            .detach(move || ops::insert_batch(&engine, collection, rows, columns))
            .map_err(errors::ops)?;
        let d = receipt(py, inserted.receipt)?;
        d.set_item("first_id", inserted.ids.first().copied())?;
        d.set_item("count", n)?;
        Ok(d)
    }
}

#[pymethods]
impl Database {
    /// Opens (or creates) the database in directory `path`, recovering
    /// whatever the log holds.
    #[new]
    fn new(py: Python<'_>, path: PathBuf) -> PyResult<Database> {
        std::fs::create_dir_all(&path).map_err(|e| {
            error(
                Fault::Internal,
                format!("cannot create data directory {}: {e}", path.display()),
            )
        })?;
        let dir = path.canonicalize().map_err(|e| {
            error(
                Fault::Internal,
                format!("cannot open data directory {}: {e}", path.display()),
            )
        })?;
        let engine = py.detach(|| open_shared(&dir)).map_err(errors::engine)?;
        Ok(Database {
            dir,
            handle: Mutex::new(Some(Arc::new(Handle {
                engine,
                sql: OnceLock::new(),
            }))),
        })
    }

    /// The data directory.
    #[getter]
    fn path(&self) -> PathBuf {
        self.dir.clone()
    }

    /// Records a checkpoint and releases this handle's engine (the engine
    /// closes when no other handle in the process shares it).
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let handle = self.handle.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(handle) = handle {
            py.detach(move || {
                let result = handle.engine.checkpoint();
                drop(handle);
                result
            })
            .map_err(errors::engine)?;
        }
        Ok(())
    }

    #[pyo3(signature = (name, dim, metric = "l2", m = 16, ef_construction = 64, seed = None))]
    fn create_collection<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        dim: u32,
        metric: &str,
        m: u16,
        ef_construction: u16,
        seed: Option<u64>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let engine = self.engine()?;
        let r = py
            .detach(move || {
                ops::create_collection(
                    &engine,
                    &NewCollection {
                        name,
                        dim,
                        metric,
                        m: Some(m),
                        ef_construction: Some(ef_construction),
                        seed,
                    },
                )
            })
            .map_err(errors::ops)?;
        receipt(py, r)
    }

    fn drop_collection<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyDict>> {
        let engine = self.engine()?;
        let r = py
            .detach(move || ops::drop_collection(&engine, name))
            .map_err(errors::ops)?;
        receipt(py, r)
    }

    /// Every collection, in name order.
    fn collections<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let engine = self.engine()?;
        let infos = py
            .detach(move || ops::collections(&engine))
            .map_err(errors::ops)?;
        let list = PyList::empty(py);
        for info in &infos {
            list.append(collection_info(py, info)?)?;
        }
        Ok(list)
    }

    fn collection<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyDict>> {
        let engine = self.engine()?;
        let info = py
            .detach(move || ops::describe(&engine, name))
            .map_err(errors::ops)?;
        collection_info(py, &info)
    }

    /// Inserts one record; `id=None` lets the engine choose the next free
    /// id. Returns the receipt with the id.
    #[pyo3(signature = (collection, vector, id = None, tag = 0, metadata = None))]
    fn insert<'py>(
        &self,
        py: Python<'py>,
        collection: &str,
        vector: Vec<f64>,
        id: Option<u64>,
        tag: u64,
        metadata: Option<&str>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let collection = name(collection)?;
        let origin = id.map_or(VectorOrigin::Single, VectorOrigin::Record);
        let mut raw = Vec::with_capacity(vector.len());
        quantize_into(vector, origin, &mut raw)?;
        let metadata = canonical_metadata(metadata, origin)?;
        let engine = self.engine()?;
        let inserted = py
            .detach(move || ops::insert(&engine, collection, raw, id, tag, metadata))
            .map_err(errors::ops)?;
        let d = receipt(py, inserted.receipt)?;
        d.set_item("id", inserted.ids.first().copied())?;
        Ok(d)
    }

    /// One atomic batch from a C-contiguous (or any) `float32` array.
    #[pyo3(signature = (collection, vectors, ids = None, tags = None, metadata = None))]
    fn insert_batch_f32<'py>(
        &self,
        py: Python<'py>,
        collection: &str,
        vectors: PyReadonlyArray2<'py, f32>,
        ids: Option<Vec<u64>>,
        tags: Option<Vec<u64>>,
        metadata: Option<Vec<Option<String>>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let view = vectors.as_array();
        let (n, dim) = view.dim();
        let mut rows = Rows::with_dim(n, dim);
        for row in view.outer_iter() {
            match row.as_slice() {
                // A C-contiguous row: quantized straight from NumPy's buffer.
                Some(slice) => rows.push_f32(slice),
                None => rows.push_f64(row.iter().map(|&x| f64::from(x))),
            }
            .map_err(errors::ops)?;
        }
        self.insert_rows(py, collection, rows, ids, tags, metadata)
    }

    /// One atomic batch from a `float64` array.
    #[pyo3(signature = (collection, vectors, ids = None, tags = None, metadata = None))]
    fn insert_batch_f64<'py>(
        &self,
        py: Python<'py>,
        collection: &str,
        vectors: PyReadonlyArray2<'py, f64>,
        ids: Option<Vec<u64>>,
        tags: Option<Vec<u64>>,
        metadata: Option<Vec<Option<String>>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let view = vectors.as_array();
        let (n, dim) = view.dim();
        let mut rows = Rows::with_dim(n, dim);
        for row in view.outer_iter() {
            rows.push_f64(row.iter().copied()).map_err(errors::ops)?;
        }
        self.insert_rows(py, collection, rows, ids, tags, metadata)
    }

    /// One atomic batch from a sequence of sequences of numbers.
    #[pyo3(signature = (collection, vectors, ids = None, tags = None, metadata = None))]
    fn insert_batch_lists<'py>(
        &self,
        py: Python<'py>,
        collection: &str,
        vectors: Vec<Vec<f64>>,
        ids: Option<Vec<u64>>,
        tags: Option<Vec<u64>>,
        metadata: Option<Vec<Option<String>>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let mut rows = Rows::new();
        for v in &vectors {
            rows.push_f64(v.iter().copied()).map_err(errors::ops)?;
        }
        self.insert_rows(py, collection, rows, ids, tags, metadata)
    }

    /// The record `id`: `(id, vector, tag, metadata bytes)`. The vector is
    /// the stored Q16.16 values as exact floats.
    fn get<'py>(
        &self,
        py: Python<'py>,
        collection: &str,
        id: u64,
    ) -> PyResult<(u64, Vec<f64>, u64, Bound<'py, PyBytes>)> {
        let collection = name(collection)?;
        let found = self.read(py, |state| {
            let c = state.collection(&collection)?;
            let row = c.row_of(RecordId(id))? as usize;
            Some((
                c.vector(row)
                    .iter()
                    .map(|&r| f64::from(r) / 65536.0)
                    .collect::<Vec<f64>>(),
                c.tags()[row],
                c.metadata(row).to_vec(),
            ))
        })?;
        match found {
            Some((vector, tag, metadata)) => Ok((id, vector, tag, PyBytes::new(py, &metadata))),
            None => {
                let exists = self.read(py, |state| state.collection(&collection).is_some())?;
                Err(if exists {
                    error(
                        Fault::NotFound,
                        format!("record {id} does not exist in collection {collection}"),
                    )
                } else {
                    unknown_collection(&collection)
                })
            }
        }
    }

    fn delete<'py>(
        &self,
        py: Python<'py>,
        collection: &str,
        id: u64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let collection = name(collection)?;
        let engine = self.engine()?;
        let r = py
            .detach(move || ops::delete(&engine, collection, id))
            .map_err(errors::ops)?;
        receipt(py, r)
    }

    fn set_tag<'py>(
        &self,
        py: Python<'py>,
        collection: &str,
        id: u64,
        tag: u64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let r = self.submit(
            py,
            Event::SetTag {
                collection: name(collection)?,
                id: RecordId(id),
                tag,
            },
        )?;
        receipt(py, r)
    }

    #[pyo3(signature = (collection, id, metadata))]
    fn set_metadata<'py>(
        &self,
        py: Python<'py>,
        collection: &str,
        id: u64,
        metadata: Option<&str>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let metadata = canonical_metadata(metadata, VectorOrigin::Record(id))?;
        let r = self.submit(
            py,
            Event::SetMetadata {
                collection: name(collection)?,
                id: RecordId(id),
                metadata,
            },
        )?;
        receipt(py, r)
    }

    /// The `k` nearest live records as `(id, distance, tag, metadata
    /// bytes)`, ordered by `(distance, id)`. The GIL is released while the
    /// engine searches.
    #[pyo3(signature = (collection, vector, k = 10, tag = None, ef = None, exact = false))]
    fn search<'py>(
        &self,
        py: Python<'py>,
        collection: &str,
        vector: Vec<f64>,
        k: u64,
        tag: Option<u64>,
        ef: Option<u64>,
        exact: bool,
    ) -> PyResult<Bound<'py, PyList>> {
        let collection = name(collection)?;
        let spec = SearchSpec::new(k, ef, tag, exact).map_err(errors::ops)?;
        let mut query = Vec::with_capacity(vector.len());
        quantize_into(vector, VectorOrigin::Query, &mut query)?;
        let hits = self
            .read(py, |state| ops::search(state, &collection, &query, &spec))?
            .map_err(errors::ops)?;
        hits_to_py(py, hits)
    }

    /// One search per row of a `float32` array, run in parallel with the
    /// GIL released; a list of hit lists.
    #[pyo3(signature = (collection, queries, k = 10, tag = None, ef = None, exact = false))]
    fn search_many<'py>(
        &self,
        py: Python<'py>,
        collection: &str,
        queries: PyReadonlyArray2<'py, f32>,
        k: u64,
        tag: Option<u64>,
        ef: Option<u64>,
        exact: bool,
    ) -> PyResult<Bound<'py, PyList>> {
        use rayon::prelude::*;
        let collection = name(collection)?;
        let spec = SearchSpec::new(k, ef, tag, exact).map_err(errors::ops)?;
        let view = queries.as_array();
        let (n, dim) = view.dim();
        let mut raw = Vec::with_capacity(n * dim);
        for (i, row) in view.outer_iter().enumerate() {
            let origin = VectorOrigin::Row(i as u64);
            match row.as_slice() {
                Some(slice) => ops::quantize_f32(slice, origin, &mut raw),
                None => ops::quantize_f64(row.iter().map(|&x| f64::from(x)), origin, &mut raw),
            }
            .map_err(errors::ops)?;
        }
        let results = self.read(py, |state| {
            if dim == 0 {
                return Ok(vec![Vec::new(); n]);
            }
            raw.par_chunks(dim)
                .map(|q| ops::search(state, &collection, q, &spec))
                .collect::<Result<Vec<_>, _>>()
        })?;
        let results = results.map_err(errors::ops)?;
        let list = PyList::empty(py);
        for hits in results {
            list.append(hits_to_py(py, hits)?)?;
        }
        Ok(list)
    }

    /// The state hash, its parts, and the log's size and root.
    fn proof<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let engine = self.engine()?;
        let p = engine.proof().map_err(errors::engine)?;
        let d = PyDict::new(py);
        d.set_item("state_hash", hex(&p.hashes.state))?;
        d.set_item("log_size", p.log_size)?;
        d.set_item("log_root", hex(&p.log_root))?;
        d.set_item("graph_hash", hex(&p.hashes.graph))?;
        let collections = PyList::empty(py);
        for (name, hash) in &p.hashes.collections {
            let c = PyDict::new(py);
            c.set_item("name", name.as_str())?;
            c.set_item("hash", hex(hash))?;
            let index = p
                .hashes
                .indexes
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, h)| hex(h));
            c.set_item("index_hash", index)?;
            collections.append(c)?;
        }
        d.set_item("collections", collections)?;
        Ok(d)
    }

    /// Inclusion proof of event `seq` in the current log, with the event's
    /// canonical bytes (hex).
    fn inclusion_proof<'py>(&self, py: Python<'py>, seq: u64) -> PyResult<Bound<'py, PyDict>> {
        let engine = self.engine()?;
        let (p, entries) = py
            .detach(move || {
                let p = engine.inclusion_proof(seq, None)?;
                let entries = engine.read_log(seq, 1)?;
                Ok::<_, EngineError>((p, entries))
            })
            .map_err(errors::engine)?;
        let event = entries
            .into_iter()
            .find(|e| e.seq == seq)
            .ok_or_else(|| error(Fault::NotFound, format!("event {seq} is not in the log")))?;
        let d = PyDict::new(py);
        d.set_item("seq", p.seq)?;
        d.set_item("size", p.size)?;
        d.set_item("leaf", hex(&p.leaf))?;
        d.set_item("root", hex(&p.root))?;
        d.set_item("path", p.path.iter().map(hex).collect::<Vec<_>>())?;
        d.set_item("event", to_hex(&event.event))?;
        Ok(d)
    }

    /// Consistency proof between the log at `old_size` and at `new_size`.
    fn consistency_proof<'py>(
        &self,
        py: Python<'py>,
        old_size: u64,
        new_size: u64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let engine = self.engine()?;
        let p = py
            .detach(move || engine.consistency_proof(old_size, new_size))
            .map_err(errors::engine)?;
        let d = PyDict::new(py);
        d.set_item("old_size", p.old_size)?;
        d.set_item("new_size", p.new_size)?;
        d.set_item("old_root", hex(&p.old_root))?;
        d.set_item("new_root", hex(&p.new_root))?;
        d.set_item("path", p.path.iter().map(hex).collect::<Vec<_>>())?;
        Ok(d)
    }

    /// Writes a snapshot of the current state (every complete index block
    /// built first, so the file depends on the log alone).
    fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let engine = self.engine()?;
        let s = py
            .detach(move || engine.snapshot())
            .map_err(errors::engine)?;
        let d = PyDict::new(py);
        d.set_item("events", s.events)?;
        d.set_item(
            "file",
            s.path.file_name().map(|f| f.to_string_lossy().into_owned()),
        )?;
        d.set_item("bytes", s.bytes)?;
        d.set_item("state_hash", hex(&s.state_hash))?;
        d.set_item("log_root", hex(&s.log_root))?;
        Ok(d)
    }

    /// Audits the data directory's files, read-only (`valori verify`):
    /// frames, replay, snapshots, checkpoint, proofs; with `indexes`, also
    /// rebuilds every graph. Returns `(ok, events, state_hash, log_root,
    /// findings)` with findings as `(ok, message)`.
    #[pyo3(signature = (indexes = false))]
    #[allow(clippy::type_complexity)]
    fn verify_files(
        &self,
        py: Python<'_>,
        indexes: bool,
    ) -> PyResult<(
        bool,
        u64,
        Option<String>,
        Option<String>,
        Vec<(bool, String)>,
    )> {
        let dir = self.dir.clone();
        // Hold the handle so the engine stays open while its files are read.
        let _handle = self.handle()?;
        let report = py.detach(move || {
            valori_engine::verify::verify_dir_with(
                &valori_engine::storage::FsStorage,
                &dir,
                valori_engine::verify::VerifyOptions { indexes },
            )
        });
        Ok((
            report.is_ok(),
            report.events,
            report.state_hash.as_ref().map(hex),
            report.log_root.as_ref().map(hex),
            report
                .findings
                .into_iter()
                .map(|f| (f.ok, f.message))
                .collect(),
        ))
    }

    /// Blocks until every complete block of rows is in its collection's
    /// graph. Searches are correct before that too (rows not yet in the
    /// graph are scanned exactly); this makes approximate answers depend
    /// on the log alone.
    fn wait_for_index(&self, py: Python<'_>) -> PyResult<()> {
        let engine = self.engine()?;
        py.detach(move || engine.wait_for_index())
            .map_err(errors::engine)
    }

    #[pyo3(signature = (node, label = 0))]
    fn create_node<'py>(
        &self,
        py: Python<'py>,
        node: u64,
        label: u64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let r = self.submit(
            py,
            Event::CreateNode {
                node: NodeId(node),
                label,
            },
        )?;
        receipt(py, r)
    }

    fn delete_node<'py>(&self, py: Python<'py>, node: u64) -> PyResult<Bound<'py, PyDict>> {
        let r = self.submit(py, Event::DeleteNode { node: NodeId(node) })?;
        receipt(py, r)
    }

    #[pyo3(signature = (from_node, to_node, label = 0))]
    fn create_edge<'py>(
        &self,
        py: Python<'py>,
        from_node: u64,
        to_node: u64,
        label: u64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let r = self.submit(
            py,
            Event::CreateEdge {
                from: NodeId(from_node),
                to: NodeId(to_node),
                label,
            },
        )?;
        receipt(py, r)
    }

    fn delete_edge<'py>(
        &self,
        py: Python<'py>,
        from_node: u64,
        to_node: u64,
        label: u64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let r = self.submit(
            py,
            Event::DeleteEdge {
                from: NodeId(from_node),
                to: NodeId(to_node),
                label,
            },
        )?;
        receipt(py, r)
    }

    /// A node's label and its edges: `{"node", "label", "out": [{"to",
    /// "label"}], "in": [{"from", "label"}]}`.
    fn edges<'py>(&self, py: Python<'py>, node: u64) -> PyResult<Bound<'py, PyDict>> {
        #[allow(clippy::type_complexity)]
        let found: Option<(u64, Vec<(u64, u64)>, Vec<(u64, u64)>)> = self.read(py, |state| {
            let graph = state.graph();
            let label = graph.node_label(NodeId(node))?;
            Some((
                label,
                graph
                    .edges_from(NodeId(node))
                    .map(|(to, l)| (to.0, l))
                    .collect(),
                graph
                    .edges_to(NodeId(node))
                    .map(|(from, l)| (from.0, l))
                    .collect(),
            ))
        })?;
        let (label, out, inc) = found
            .ok_or_else(|| error(Fault::NotFound, format!("graph node {node} does not exist")))?;
        let d = PyDict::new(py);
        d.set_item("node", node)?;
        d.set_item("label", label)?;
        let out_list = PyList::empty(py);
        for (to, l) in out {
            let e = PyDict::new(py);
            e.set_item("to", to)?;
            e.set_item("label", l)?;
            out_list.append(e)?;
        }
        let in_list = PyList::empty(py);
        for (from, l) in inc {
            let e = PyDict::new(py);
            e.set_item("from", from)?;
            e.set_item("label", l)?;
            in_list.append(e)?;
        }
        d.set_item("out", out_list)?;
        d.set_item("in", in_list)?;
        Ok(d)
    }

    /// The whole collection as a `pyarrow.Table` with the columns of an
    /// Arrow Flight export (`id`, `vector` (Q16.16), `tag`, `metadata`,
    /// `vector_f32`; with `deleted`, also the deleted rows and a `deleted`
    /// column), in row order, read under one read lock of the state, with
    /// the state's log size, log root, state hash, collection hash and the
    /// collection's description as schema metadata (docs/flight.md).
    #[pyo3(signature = (collection, deleted = false))]
    fn export<'py>(
        &self,
        py: Python<'py>,
        collection: &str,
        deleted: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        use valori_columnar::arrow as columns;
        let name = name(collection)?;
        let engine = self.engine()?;
        let batch = py.detach(move || {
            engine.read(|state| {
                let c = state
                    .collection(&name)
                    .ok_or_else(|| unknown_collection(&name))?;
                let proof = engine.proof().map_err(errors::engine)?;
                let collection_hash = proof
                    .hashes
                    .collections
                    .iter()
                    .find(|(n, _)| n == &name)
                    .map(|(_, h)| hex(h))
                    .unwrap_or_default();
                let mut metadata: std::collections::HashMap<String, String> = [
                    (columns::LOG_SIZE_KEY, proof.log_size.to_string()),
                    (columns::LOG_ROOT_KEY, hex(&proof.log_root)),
                    (columns::STATE_HASH_KEY, hex(&proof.hashes.state)),
                    (columns::COLLECTION_HASH_KEY, collection_hash),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
                metadata.extend(columns::collection_metadata(c));
                let dim = c.config().dim;
                let tombstones = c.deleted();
                let rows: Vec<usize> = (0..c.rows())
                    .filter(|&r| deleted || !tombstones[r])
                    .collect();
                let mut vectors = Vec::with_capacity(rows.len() * dim as usize);
                let mut offsets: Vec<i32> = vec![0];
                let mut bytes = Vec::new();
                for &r in &rows {
                    vectors.extend_from_slice(c.vector(r));
                    bytes.extend_from_slice(c.metadata(r));
                    let end = i32::try_from(bytes.len()).map_err(|_| {
                        error(
                            Fault::TooLarge,
                            format!(
                                "collection {name}: its metadata exceeds the 2 GiB one Arrow column holds"
                            ),
                        )
                    })?;
                    offsets.push(end);
                }
                let arrow = |e: valori_query::datafusion::arrow::error::ArrowError| {
                    error(Fault::Internal, format!("export of {name}: {e}"))
                };
                let meta = valori_query::datafusion::arrow::array::BinaryArray::try_new(
                    valori_query::datafusion::arrow::buffer::OffsetBuffer::new(
                        valori_query::datafusion::arrow::buffer::ScalarBuffer::from(offsets),
                    ),
                    valori_query::datafusion::arrow::buffer::Buffer::from_vec(bytes),
                    None,
                )
                .map_err(arrow)?;
                let base = columns::schema(dim, true)
                    .as_ref()
                    .clone()
                    .with_metadata(metadata);
                let parts = columns::Columns {
                    dim,
                    ids: rows.iter().map(|&r| c.ids()[r].0).collect(),
                    vectors,
                    tags: rows.iter().map(|&r| c.tags()[r]).collect(),
                    metadata: meta,
                };
                let batch = columns::assemble(std::sync::Arc::new(base.clone()), parts)
                    .map_err(arrow)?;
                if deleted {
                    let flags = rows.iter().map(|&r| tombstones[r]).collect();
                    columns::add_deleted(columns::with_deleted(&base), batch, flags)
                        .map_err(arrow)
                } else {
                    Ok(batch)
                }
            })
        });
        let batch = batch.map_err(errors::engine)??;
        let schema = batch.schema();
        PyTable::try_new(vec![batch], schema)?.into_pyarrow(py)
    }

    /// Runs one SQL statement through the statement layer (the same one
    /// the Postgres and REST front ends use), with the values of `$1`,
    /// `$2`, … given as JSON text (`params_json`); the result as a
    /// `pyarrow.Table` (a command or write answers one row of `command`
    /// and `rows`). The GIL is released while it runs.
    #[pyo3(signature = (query, params_json=None))]
    fn sql<'py>(
        &self,
        py: Python<'py>,
        query: &str,
        params_json: Option<&str>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let handle = self.handle()?;
        let query = query.to_owned();
        let params: Vec<serde_json::Value> = match params_json {
            Some(text) => serde_json::from_str(text)
                .map_err(|e| error(Fault::InvalidInput, format!("params: {e}")))?,
            None => Vec::new(),
        };
        let output = py.detach(move || {
            let (engine, runtime) = sql_runtime(&handle)?;
            let values = params
                .iter()
                .enumerate()
                .map(|(i, v)| valori_query::statement::json_param(i + 1, v))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| SqlFailure::Query(e.into()))?;
            let mut session = valori_query::session::Session::default();
            runtime
                .block_on(async {
                    engine
                        .run_sql(
                            &query,
                            values,
                            &mut session,
                            valori_query::statement::Access::ReadWrite,
                        )
                        .await?
                        .into_output()
                        .await
                })
                .map_err(SqlFailure::Query)
        });
        let output = output.map_err(sql_failure)?;
        PyTable::try_new(output.batches, output.schema)?.into_pyarrow(py)
    }

    /// Runs one query-DSL statement (`POST /v1/query`) with its vector
    /// parameters; the result as a `pyarrow.Table`.
    fn query<'py>(
        &self,
        py: Python<'py>,
        text: &str,
        params: BTreeMap<String, Vec<f64>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let handle = self.handle()?;
        let text = text.to_owned();
        // Narrowed to f32 as every vector input is.
        let params: BTreeMap<String, Vec<f32>> = params
            .into_iter()
            .map(|(name, v)| (name, v.into_iter().map(|x| x as f32).collect()))
            .collect();
        let output = py.detach(move || {
            let (engine, runtime) = sql_runtime(&handle)?;
            runtime
                .block_on(valori_query::dsl::run(engine, &text, &params))
                .map_err(SqlFailure::Dsl)
        });
        let output = output.map_err(sql_failure)?;
        PyTable::try_new(output.batches, output.schema)?.into_pyarrow(py)
    }
}

/// The query layer and the runtime that drives it, started on first use.
fn sql_runtime(handle: &Handle) -> Result<&(QueryEngine, tokio::runtime::Runtime), SqlFailure> {
    if let Some(pair) = handle.sql.get() {
        return Ok(pair);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("valori-sql")
        .build()
        .map_err(SqlFailure::Runtime)?;
    let engine = QueryEngine::new(Arc::clone(&handle.engine));
    // Another thread may have set it meanwhile; either works.
    let _ = handle.sql.set((engine, runtime));
    handle.sql.get().ok_or(SqlFailure::Missing)
}

fn sql_failure(e: SqlFailure) -> PyErr {
    match e {
        SqlFailure::Query(e) => errors::query(e),
        SqlFailure::Dsl(e) => errors::dsl(e),
        SqlFailure::Runtime(e) => error(
            Fault::Internal,
            format!("cannot start the SQL runtime: {e}"),
        ),
        SqlFailure::Missing => error(Fault::Internal, "the SQL runtime is missing"),
    }
}

/// Why `sql` or `query` failed before it had a result.
enum SqlFailure {
    Dsl(valori_query::dsl::DslError),
    Runtime(std::io::Error),
    Missing,
    Query(valori_query::QueryError),
}

/// Opens `dir`'s engine, or shares the one already open in this process.
fn open_shared(dir: &Path) -> Result<Arc<Engine>, EngineError> {
    let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
    open.retain(|_, weak| weak.strong_count() > 0);
    if let Some(engine) = open.get(dir).and_then(Weak::upgrade) {
        return Ok(engine);
    }
    let engine = Arc::new(Engine::open(dir)?);
    open.insert(dir.to_path_buf(), Arc::downgrade(&engine));
    Ok(engine)
}
