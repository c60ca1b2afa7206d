"""The embedded backend: the engine in this process, through the native
module. Same methods, arguments and results as ``_remote.RemoteBackend``."""

from __future__ import annotations

import json
import sys
from typing import Any, Dict, List, Optional, Sequence

from . import _native
from ._types import Hit, Record


def _metadata_value(raw: bytes) -> Any:
    """Stored metadata bytes as the REST API returns them: the JSON value
    (``None`` for no bytes), or the bytes themselves when they are not
    JSON."""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return bytes(raw)


def _hits(rows: List[tuple]) -> List[Hit]:
    return [Hit(i, d, t, _metadata_value(m)) for (i, d, t, m) in rows]


def _numpy_array(vectors: Any) -> Any:
    """``vectors`` when it is a NumPy array, else ``None`` (NumPy is not
    imported here unless the caller already did)."""
    np = sys.modules.get("numpy")
    if np is not None and isinstance(vectors, np.ndarray):
        return vectors
    return None


class EmbeddedBackend:
    """The database in directory ``path``."""

    def __init__(self, path: str):
        self._db = _native.Database(path)
        self.path = str(self._db.path)

    def create_collection(
        self, name: str, dim: int, metric: str, m: int, ef_construction: int
    ) -> Dict[str, Any]:
        return self._db.create_collection(name, dim, metric, m, ef_construction)

    def drop_collection(self, name: str) -> Dict[str, Any]:
        return self._db.drop_collection(name)

    def collections(self) -> List[Dict[str, Any]]:
        return self._db.collections()

    def export(self, collection: str, deleted: bool) -> Any:
        return self._db.export(collection, deleted)

    def collection(self, name: str) -> Dict[str, Any]:
        return self._db.collection(name)

    def insert(
        self,
        collection: str,
        vector: Sequence[float],
        id: Optional[int],
        tag: int,
        metadata: Optional[str],
    ) -> Dict[str, Any]:
        return self._db.insert(collection, vector, id, tag, metadata)

    def insert_batch(
        self,
        collection: str,
        vectors: Any,
        ids: Optional[List[int]],
        tags: Optional[List[int]],
        metadata: Optional[List[Optional[str]]],
    ) -> Dict[str, Any]:
        arr = _numpy_array(vectors)
        if arr is not None:
            # Read in place: no copy of the array's buffer.
            if arr.dtype.name == "float32":
                r = self._db.insert_batch_f32(collection, arr, ids, tags, metadata)
            else:
                r = self._db.insert_batch_f64(collection, arr, ids, tags, metadata)
        else:
            r = self._db.insert_batch_lists(collection, vectors, ids, tags, metadata)
        first, count = r.pop("first_id"), r.pop("count")
        r["ids"] = list(ids) if ids is not None else list(range(first, first + count))
        return r

    def get(self, collection: str, id: int) -> Record:
        i, vector, tag, metadata = self._db.get(collection, id)
        return Record(i, vector, tag, _metadata_value(metadata))

    def delete(self, collection: str, id: int) -> Dict[str, Any]:
        return self._db.delete(collection, id)

    def set_tag(self, collection: str, id: int, tag: int) -> Dict[str, Any]:
        return self._db.set_tag(collection, id, tag)

    def set_metadata(self, collection: str, id: int, metadata: Optional[str]) -> Dict[str, Any]:
        return self._db.set_metadata(collection, id, metadata)

    def search(
        self,
        collection: str,
        vector: Sequence[float],
        k: int,
        tag: Optional[int],
        ef: Optional[int],
        exact: bool,
    ) -> List[Hit]:
        return _hits(self._db.search(collection, vector, k, tag, ef, exact))

    def search_many(
        self,
        collection: str,
        queries: Any,
        k: int,
        tag: Optional[int],
        ef: Optional[int],
        exact: bool,
    ) -> List[List[Hit]]:
        import numpy as np

        arr = np.ascontiguousarray(queries, dtype=np.float32)
        return [_hits(h) for h in self._db.search_many(collection, arr, k, tag, ef, exact)]

    def sql(self, query: str, params: List[Any]) -> Any:
        return self._db.sql(query, json.dumps(params) if params else None)

    def query(self, text: str, params: Dict[str, List[float]]) -> Any:
        return self._db.query(text, params)

    def proof(self) -> Dict[str, Any]:
        return self._db.proof()

    def inclusion_proof(self, seq: int) -> Dict[str, Any]:
        return self._db.inclusion_proof(seq)

    def consistency_proof(self, old_size: int, new_size: int) -> Dict[str, Any]:
        return self._db.consistency_proof(old_size, new_size)

    def snapshot(self) -> Dict[str, Any]:
        return self._db.snapshot()

    def verify_files(self, indexes: bool) -> Optional[tuple]:
        return self._db.verify_files(indexes)

    def create_node(self, node: int, label: int) -> Dict[str, Any]:
        return self._db.create_node(node, label)

    def delete_node(self, node: int) -> Dict[str, Any]:
        return self._db.delete_node(node)

    def create_edge(self, from_node: int, to_node: int, label: int) -> Dict[str, Any]:
        return self._db.create_edge(from_node, to_node, label)

    def delete_edge(self, from_node: int, to_node: int, label: int) -> Dict[str, Any]:
        return self._db.delete_edge(from_node, to_node, label)

    def edges(self, node: int) -> Dict[str, Any]:
        return self._db.edges(node)

    def wait_for_index(self) -> None:
        self._db.wait_for_index()

    def close(self) -> None:
        self._db.close()
