"""Type stubs of the native module (pyo3). Use :class:`valori.Valori`; this
module is its embedded half."""

from os import PathLike
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy
import numpy.typing

BATCH_RECORDS_MAX: int
EVENT_BYTES_MAX: int
METADATA_BYTES_MAX: int
DIM_MAX: int
SEARCH_K_MAX: int
SEARCH_EF_MAX: int
CLIENT_BATCH_BYTES_MAX: int

_RawHit = Tuple[int, float, int, bytes]

def quantize(vector: Sequence[float], origin: str = "vector", index: int = 0) -> List[int]:
    """The Q16.16 raw integers of ``vector`` (``f64`` → ``f32`` →
    ``round_half_to_even(x · 65536)``), as every entry point converts them.
    Raises ``InvalidInput`` for NaN, infinity or ``|x| >= 32768``, naming
    the vector by ``origin`` (``"query"``, ``"vector"``, ``"row"`` or
    ``"record"`` with ``index``) as the server does."""

def check_search(k: int, ef: Optional[int] = None) -> None:
    """Raises ``InvalidInput`` when ``k`` is outside ``1..=SEARCH_K_MAX`` or
    ``ef`` outside ``1..=SEARCH_EF_MAX``, with the server's message."""

def leaf_hash(event: bytes) -> str:
    """The log's leaf hash (hex) of an event's canonical bytes."""

def verify_inclusion(leaf: str, index: int, size: int, path: List[str], root: str) -> bool:
    """RFC 9162 inclusion check of ``leaf`` at ``index`` in the log of
    ``size`` events with ``root``."""

def verify_consistency(
    old_size: int, new_size: int, old_root: str, new_root: str, path: List[str]
) -> bool:
    """RFC 9162 consistency check between two log sizes and roots."""

def blake3_hex(data: bytes) -> str:
    """Plain BLAKE3-256 of ``data`` (hex), for ``valori.verify_export``."""

class Database:
    """An embedded Valori database: the engine opened in this process."""

    def __init__(self, path: Union[str, PathLike[str]]) -> None: ...
    @property
    def path(self) -> str: ...
    def close(self) -> None: ...
    def create_collection(
        self,
        name: str,
        dim: int,
        metric: str = "l2",
        m: int = 16,
        ef_construction: int = 64,
        seed: Optional[int] = None,
    ) -> Dict[str, Any]: ...
    def drop_collection(self, name: str) -> Dict[str, Any]: ...
    def collections(self) -> List[Dict[str, Any]]: ...
    def collection(self, name: str) -> Dict[str, Any]: ...
    def export(self, collection: str, deleted: bool = False) -> Any: ...
    def insert(
        self,
        collection: str,
        vector: Sequence[float],
        id: Optional[int] = None,
        tag: int = 0,
        metadata: Optional[str] = None,
    ) -> Dict[str, Any]: ...
    def insert_batch_f32(
        self,
        collection: str,
        vectors: numpy.typing.NDArray[numpy.float32],
        ids: Optional[Sequence[int]] = None,
        tags: Optional[Sequence[int]] = None,
        metadata: Optional[Sequence[Optional[str]]] = None,
    ) -> Dict[str, Any]: ...
    def insert_batch_f64(
        self,
        collection: str,
        vectors: numpy.typing.NDArray[numpy.float64],
        ids: Optional[Sequence[int]] = None,
        tags: Optional[Sequence[int]] = None,
        metadata: Optional[Sequence[Optional[str]]] = None,
    ) -> Dict[str, Any]: ...
    def insert_batch_lists(
        self,
        collection: str,
        vectors: Sequence[Sequence[float]],
        ids: Optional[Sequence[int]] = None,
        tags: Optional[Sequence[int]] = None,
        metadata: Optional[Sequence[Optional[str]]] = None,
    ) -> Dict[str, Any]: ...
    def get(self, collection: str, id: int) -> Tuple[int, List[float], int, bytes]: ...
    def delete(self, collection: str, id: int) -> Dict[str, Any]: ...
    def set_tag(self, collection: str, id: int, tag: int) -> Dict[str, Any]: ...
    def set_metadata(self, collection: str, id: int, metadata: Optional[str]) -> Dict[str, Any]: ...
    def search(
        self,
        collection: str,
        vector: Sequence[float],
        k: int = 10,
        tag: Optional[int] = None,
        ef: Optional[int] = None,
        exact: bool = False,
    ) -> List[_RawHit]: ...
    def search_many(
        self,
        collection: str,
        queries: numpy.typing.NDArray[numpy.float32],
        k: int = 10,
        tag: Optional[int] = None,
        ef: Optional[int] = None,
        exact: bool = False,
    ) -> List[List[_RawHit]]: ...
    def sql(self, query: str) -> Any: ...
    def query(self, text: str, params: Dict[str, Sequence[float]]) -> Any: ...
    def proof(self) -> Dict[str, Any]: ...
    def inclusion_proof(self, seq: int) -> Dict[str, Any]: ...
    def consistency_proof(self, old_size: int, new_size: int) -> Dict[str, Any]: ...
    def snapshot(self) -> Dict[str, Any]: ...
    def verify_files(
        self, indexes: bool = False
    ) -> Tuple[bool, int, Optional[str], Optional[str], List[Tuple[bool, str]]]: ...
    def wait_for_index(self) -> None: ...
    def create_node(self, node: int, label: int = 0) -> Dict[str, Any]: ...
    def delete_node(self, node: int) -> Dict[str, Any]: ...
    def create_edge(self, from_node: int, to_node: int, label: int = 0) -> Dict[str, Any]: ...
    def delete_edge(self, from_node: int, to_node: int, label: int) -> Dict[str, Any]: ...
    def edges(self, node: int) -> Dict[str, Any]: ...
