"""``Valori``: one API over the embedded engine and a remote server.

Everything that decides which events a call produces lives here, shared by
both modes: argument checks, the automatic creation of the ``default``
collection, metadata serialization and the splitting of large batches. The
backends (``_embedded.EmbeddedBackend``, ``_remote.RemoteBackend``) only
carry the calls, so the same calls give the same log, the same state hash
and the same results in either mode.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from . import _native
from ._types import Hit, Record
from .errors import Conflict, InvalidInput, NotFound, ValoriError

DEFAULT_COLLECTION = "default"
"""The collection used when a call names none. It is created (metric
``l2``, default index parameters) by the first insert into it, with that
insert's dimension."""

DEFAULT_PATH = "valori_data"
"""The embedded mode's data directory, relative to the working directory
(the same default as ``valori serve --data-dir``)."""

BATCH_RECORDS_MAX: int = _native.BATCH_RECORDS_MAX
"""Most records in one atomic batch event (the engine's limit)."""

CHUNK_BYTES_MAX: int = _native.CLIENT_BATCH_BYTES_MAX
"""Largest estimated JSON size of one batch request; keeps each chunk of a
split batch below the server's default request-body limit (64 MiB) and far
below the engine's event-size limit. The estimate, used in both modes so
that both split a batch alike, is per record 24 bytes per component, 64
bytes of ids and separators, and the metadata's JSON text."""

SEARCH_K_MAX: int = _native.SEARCH_K_MAX
"""Largest ``k`` of a search (``valori_core::limits``; ``k`` is at least 1).
A larger ``k`` is refused, never clamped."""

SEARCH_EF_MAX: int = _native.SEARCH_EF_MAX
"""Largest ``ef`` of a search (``valori_core::limits``; at least 1)."""

PROGRESS_ROWS_MIN = 100_000
"""Batches of at least this many records show a progress bar when
``progress=None`` and standard error is a terminal."""

VectorLike = Sequence[float]
VectorsLike = Any  # a 2-D NumPy array or a sequence of sequences of numbers


def _metadata_text(value: Any, where: str) -> Optional[str]:
    """The JSON text of a metadata value (``None`` stays absent). The
    engine stores its canonical form (compact, keys sorted), so any valid
    JSON text of the same value gives the same bytes."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise InvalidInput(f"{where}: metadata must be a JSON value (dict, list, str, number, bool), not bytes")
    try:
        return json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        raise InvalidInput(f"{where}: metadata is not a JSON value: {e}") from e


def _stored_metadata(raw: Any) -> Any:
    """A metadata cell of a query result (the stored bytes) as the JSON
    value, ``None`` for none, or the bytes when they are not JSON."""
    if raw is None or raw == b"" or raw == "":
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return bytes(raw) if isinstance(raw, (bytes, bytearray)) else raw


def _uint(value: Any, what: str) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise InvalidInput(f"{what} must be an integer, not {type(value).__name__}")
    v = int(value.__index__())
    if not 0 <= v < 1 << 64:
        raise InvalidInput(f"{what} = {v} is outside 0..2^64-1")
    return v


def _uint_list(values: Any, what: str, n: int) -> List[int]:
    if hasattr(values, "tolist"):
        values = values.tolist()
    values = list(values)
    if len(values) != n:
        raise InvalidInput(f"{what} has {len(values)} entries for {n} vectors")
    return [_uint(v, f"{what}[{i}]") for i, v in enumerate(values)]


def _vector(vector: Any) -> List[float]:
    """A single vector as a list of floats."""
    if hasattr(vector, "tolist") and hasattr(vector, "ndim"):
        if vector.ndim != 1:
            raise InvalidInput(f"a vector must be 1-D, got an array of shape {vector.shape}")
        return vector.tolist()
    if isinstance(vector, (str, bytes)) or not hasattr(vector, "__len__"):
        raise InvalidInput(f"a vector must be a sequence of numbers, not {type(vector).__name__}")
    return list(vector)


def _vectors(vectors: Any) -> Tuple[Any, int, int]:
    """``(vectors, n, dim)`` with a NumPy array kept as an array of float32
    or float64 (never copied when it already is one), anything else as a
    list of rows."""
    np = sys.modules.get("numpy")
    if np is not None and isinstance(vectors, np.ndarray):
        if vectors.ndim != 2:
            raise InvalidInput(f"vectors must be a 2-D array, got shape {vectors.shape}")
        if vectors.dtype.name not in ("float32", "float64"):
            try:
                vectors = vectors.astype(np.float64)
            except (TypeError, ValueError) as e:
                raise InvalidInput(f"vectors of dtype {vectors.dtype} are not numbers: {e}") from e
        n, dim = vectors.shape
        return vectors, int(n), int(dim)
    if isinstance(vectors, (str, bytes)) or not hasattr(vectors, "__len__"):
        raise InvalidInput(f"vectors must be a 2-D array or a list of vectors, not {type(vectors).__name__}")
    rows = [_vector(v) for v in vectors]
    dim = len(rows[0]) if rows else 0
    for i, row in enumerate(rows):
        if len(row) != dim:
            raise InvalidInput(f"vector {i} of the batch has {len(row)} components, vector 0 has {dim}")
    return rows, len(rows), dim


def _chunks(n: int, dim: int, metadata: Optional[List[Optional[str]]], rows_max: int) -> Iterator[Tuple[int, int]]:
    """``(start, end)`` of each chunk of a batch of ``n`` records: at most
    ``rows_max`` records and about ``CHUNK_BYTES_MAX`` bytes of JSON each
    (see ``CHUNK_BYTES_MAX``). A pure function of the batch, so both modes
    cut a batch at the same places."""
    row_bytes = 24 * dim + 64
    start = 0
    while start < n:
        end = start
        size = 0
        while end < n and end - start < rows_max:
            extra = row_bytes + (len(metadata[end]) if metadata and metadata[end] else 0)
            if end > start and size + extra > CHUNK_BYTES_MAX:
                break
            size += extra
            end += 1
        yield start, end
        start = end


class _Progress:
    """A one-line progress bar on standard error."""

    def __init__(self, total: int, enabled: bool):
        self.total = total
        self.enabled = enabled
        self.done = 0

    def advance(self, rows: int) -> None:
        if not self.enabled:
            return
        self.done += rows
        width = 30
        filled = width * self.done // max(self.total, 1)
        sys.stderr.write(
            f"\rvalori: inserting [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} records"
        )
        if self.done >= self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


class Valori:
    """A Valori database: embedded (the engine in this process, data in
    ``path``) or remote (a ``valori serve`` server at ``remote``), with the
    same API, the same results and the same state hashes.

    >>> client = Valori()                                # ./valori_data
    >>> client.insert_batch([[0.1] * 16, [0.2] * 16])
    [0, 1]
    >>> [h.id for h in client.search([0.1] * 16, k=5)]
    [0, 1]
    >>> remote = Valori(remote="http://localhost:3000")  # same API

    Calls that name no collection use ``"default"`` (metric ``l2``), which
    the first insert creates with its vectors' dimension. Omitted ids are
    chosen by the engine: one more than the largest id the collection has
    held, 0 for an empty one.

    Every write returns only after its event is durable (fsync). Errors are
    :class:`valori.errors.ValoriError` subclasses; a rejected call changes
    nothing. The client may be used from several threads; the embedded mode
    releases the GIL while it searches, writes and runs SQL.
    """

    def __init__(
        self,
        path: Union[str, "os.PathLike[str]", None] = None,
        *,
        remote: Optional[str] = None,
        api_key: Optional[str] = None,
        timeout: float = 60.0,
        flight: Union[str, bool, None] = None,
    ) -> None:
        """Open the embedded database in ``path`` (default ``./valori_data``,
        created if missing, recovered from its log if it exists), or connect
        to the server at ``remote`` (``http://HOST:PORT``) with an optional
        API key sent as ``Authorization: Bearer KEY``.

        Remote, bulk reads (:meth:`to_arrow`, :meth:`to_pandas`) and the
        chunks of :meth:`insert_batch` of at least 1,024 records travel over
        the server's Arrow Flight address when it answers (needs
        ``pyarrow``): ``flight`` is that address (``grpc://HOST:PORT``),
        ``None`` (the default) to ask the server (``GET /v1/flight``), or
        ``False`` for REST only. When Flight is not reachable, REST carries
        everything; the results and the events are the same either way."""
        if remote is not None:
            if path is not None:
                raise InvalidInput("give either a path (embedded) or remote=URL, not both")
            from ._remote import RemoteBackend

            self._backend: Any = RemoteBackend(remote, api_key=api_key, timeout=timeout, flight=flight)
            self.mode = "remote"
            self.location = self._backend.url
        else:
            from ._embedded import EmbeddedBackend

            self._backend = EmbeddedBackend(os.fspath(path) if path is not None else DEFAULT_PATH)
            self.mode = "embedded"
            self.location = self._backend.path
        # (log size, log root) of the last successful verify(): the next
        # one checks that the log only grew since.
        self._verified: Optional[Tuple[int, str]] = None

    def __repr__(self) -> str:
        return f"Valori({self.mode}: {self.location})"

    def __enter__(self) -> "Valori":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Embedded: record a checkpoint and release the engine (it closes
        when no other client in this process uses the same directory).
        Remote: close the connection."""
        self._backend.close()

    # -- collections ---------------------------------------------------

    def create_collection(
        self,
        name: str,
        dim: int,
        metric: str = "l2",
        m: int = 16,
        ef_construction: int = 64,
    ) -> Dict[str, Any]:
        """Create collection ``name`` of ``dim``-dimensional vectors with
        ``metric`` (``"l2"``, ``"inner_product"`` or ``"cosine"``) and HNSW
        parameters ``m`` and ``ef_construction``. Returns the receipt
        ``{"seq", "log_root"}``. Raises ``Conflict`` if it exists."""
        if not isinstance(metric, str):
            raise InvalidInput(f"metric must be a str, not {type(metric).__name__}")
        for value, what, top in ((dim, "dim", 1 << 32), (m, "m", 1 << 16), (ef_construction, "ef_construction", 1 << 16)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < top:
                raise InvalidInput(f"{what} = {value!r} must be an integer in 0..{top - 1}")
        return self._backend.create_collection(name, dim, metric, m, ef_construction)

    def collections(self) -> List[Dict[str, Any]]:
        """Every collection, in name order: ``{"name", "dim", "metric", "m",
        "ef_construction", "seed", "rows", "live", "indexed"}``."""
        return self._backend.collections()

    def to_arrow(self, collection: str = DEFAULT_COLLECTION, deleted: bool = False) -> Any:
        """The whole collection as a ``pyarrow.Table``, read from one state:
        columns ``id`` (uint64), ``vector`` (the stored Q16.16 integers,
        ``FixedSizeList<Int32>``, exact), ``tag`` (uint64), ``metadata``
        (the stored bytes) and ``vector_f32`` (``vector / 65536``), live
        records in insertion order; with ``deleted=True`` also the deleted
        records and a ``deleted`` column. The schema metadata says which
        state the rows are from (``valori.log_size``, ``valori.log_root``,
        ``valori.state_hash``, ``valori.collection_hash``) and describes
        the collection, so that :meth:`verify_export` can recompute its
        hash. Remote, it travels over Arrow Flight when reachable."""
        return self._backend.export(collection, bool(deleted))

    def to_pandas(self, collection: str = DEFAULT_COLLECTION) -> Any:
        """:meth:`to_arrow` as a pandas DataFrame."""
        return self.to_arrow(collection).to_pandas()

    def verify_export(self, table: Any) -> Dict[str, Any]:
        """Checks an export (:meth:`to_arrow`, or a Flight ``DoGet`` of a
        collection, possibly saved and loaded again) against this database:

        - its rows, tombstones and the collection's description hash, by
          the canonical encoding recomputed in the client
          (``valori.verify_export``), to the collection hash it claims;
        - the log it names (``valori.log_size``, ``valori.log_root``) is a
          prefix of this database's log (a consistency proof);
        - while the log has not grown since, the state proof reports that
          collection hash and state hash now.

        Returns ``{"ok", "collection", "computed", "claimed", "log_size",
        "log_root", "state_hash", "findings"}``; a changed id, tag, vector
        component, metadata byte, tombstone or row count gives ``ok =
        False`` and a ``MISMATCH`` finding. Never raises for a mismatch."""
        from ._export import verify_export

        report = verify_export(table)
        p = self._backend.proof()
        size, root = report["log_size"], report["log_root"]
        findings = report["findings"]
        good = report["ok"]
        if p["log_size"] == size:
            check = verify_export(table, p)
            findings.extend(check["findings"][1:])
            good = good and check["ok"]
        elif p["log_size"] > size:
            c = self._backend.consistency_proof(size, p["log_size"])
            ok = _native.verify_consistency(size, p["log_size"], root, p["log_root"], c["path"])
            good = good and ok
            findings.append(
                ("ok       " if ok else "MISMATCH ")
                + f"the export's log of {size} events (root {root}) is a prefix of the log of {p['log_size']} events"
            )
            findings.append(
                f"note     the log grew since the export ({size} -> {p['log_size']} events): "
                "its collection hash is not compared with the current proof"
            )
        else:
            good = False
            findings.append(
                f"MISMATCH the export names a log of {size} events; this database's log has {p['log_size']}"
            )
        report["ok"] = good
        return report

    def collection(self, name: str = DEFAULT_COLLECTION) -> Dict[str, Any]:
        """One collection's description (see :meth:`collections`)."""
        return self._backend.collection(name)

    def drop_collection(self, name: str) -> Dict[str, Any]:
        """Drop collection ``name`` and its records. Returns the receipt."""
        return self._backend.drop_collection(name)

    # -- writes ----------------------------------------------------------

    def _auto_create(self, collection: str, dim: int, write: Any) -> Any:
        """Run ``write()``; if it fails because ``default`` does not exist,
        create it with ``dim`` and run it again. A rejected write never
        reaches the log, so this gives the same events as creating first."""
        try:
            return write()
        except NotFound:
            if collection != DEFAULT_COLLECTION or dim == 0:
                raise
            if any(c["name"] == collection for c in self._backend.collections()):
                raise
            try:
                self._backend.create_collection(collection, dim, "l2", 16, 64)
            except Conflict:
                pass  # created meanwhile by another client
            return write()

    def insert(
        self,
        vector: VectorLike,
        id: Optional[int] = None,
        tag: int = 0,
        metadata: Any = None,
        collection: str = DEFAULT_COLLECTION,
    ) -> int:
        """Insert one record and return its id (chosen by the engine when
        ``id`` is ``None``). ``metadata`` is any JSON value. Raises
        ``InvalidInput`` for a wrong dimension, NaN, infinity or
        ``|x| >= 32768``, ``Conflict`` for an existing id, ``NotFound`` for
        an unknown collection other than ``default``."""
        v = _vector(vector)
        rid = None if id is None else _uint(id, "id")
        t = _uint(tag, "tag")
        meta = _metadata_text(metadata, f"record {rid}" if rid is not None else "record")
        r = self._auto_create(
            collection, len(v), lambda: self._backend.insert(collection, v, rid, t, meta)
        )
        return r["id"]

    def insert_batch(
        self,
        vectors: VectorsLike,
        ids: Optional[Sequence[int]] = None,
        tags: Optional[Sequence[int]] = None,
        metadata: Optional[Sequence[Any]] = None,
        collection: str = DEFAULT_COLLECTION,
        progress: Optional[bool] = None,
        batch_size: Optional[int] = None,
    ) -> List[int]:
        """Insert many records; returns their ids in order.

        ``vectors`` is a 2-D NumPy array (float32 or float64, read in place
        without a copy; other dtypes are converted) or a sequence of
        sequences of numbers. ``ids``, ``tags`` and ``metadata`` (JSON
        values or ``None``) are per record; omitted ids are chosen by the
        engine, consecutive from its next free id.

        Atomicity: a batch of at most ``BATCH_RECORDS_MAX`` (100,000)
        records and about ``CHUNK_BYTES_MAX`` of data is one atomic event:
        all or nothing. A larger batch is split into such chunks (at most
        ``batch_size`` records each, if given), written in order; each
        chunk is atomic, the whole is not: if chunk *i* fails, chunks before
        it stay written, and the raised error has ``committed_ids``, the ids
        written so far.

        ``progress``: ``True`` shows a progress bar on standard error,
        ``False`` never; ``None`` shows it for batches of at least
        ``PROGRESS_ROWS_MIN`` records when standard error is a terminal.
        """
        rows, n, dim = _vectors(vectors)
        if n == 0:
            return []
        id_list = None if ids is None else _uint_list(ids, "ids", n)
        tag_list = None if tags is None else _uint_list(tags, "tags", n)
        meta_list: Optional[List[Optional[str]]] = None
        if metadata is not None:
            meta_values = list(metadata)
            if len(meta_values) != n:
                raise InvalidInput(f"metadata has {len(meta_values)} entries for {n} vectors")
            meta_list = [_metadata_text(m, f"vector {i} of the batch") for i, m in enumerate(meta_values)]
            if all(m is None for m in meta_list):
                meta_list = None
        rows_max = BATCH_RECORDS_MAX
        if batch_size is not None:
            rows_max = min(rows_max, _uint(batch_size, "batch_size"))
            if rows_max == 0:
                raise InvalidInput("batch_size must be at least 1")
        if progress is None:
            progress = n >= PROGRESS_ROWS_MIN and sys.stderr.isatty()
        bar = _Progress(n, bool(progress))
        written: List[int] = []
        for start, end in _chunks(n, dim, meta_list, rows_max):
            part = rows[start:end]
            part_ids = None if id_list is None else id_list[start:end]
            part_tags = None if tag_list is None else tag_list[start:end]
            part_meta = None if meta_list is None else meta_list[start:end]
            try:
                r = self._auto_create(
                    collection,
                    dim,
                    lambda: self._backend.insert_batch(collection, part, part_ids, part_tags, part_meta),
                )
            except ValoriError as e:
                e.committed_ids = written  # type: ignore[attr-defined]
                raise
            written.extend(r["ids"])
            bar.advance(end - start)
        return written

    def get(self, id: int, collection: str = DEFAULT_COLLECTION) -> Record:
        """The record ``id`` as ``Record(id, vector, tag, metadata)``; the
        vector holds the stored (quantized) values. Raises ``NotFound``."""
        return self._backend.get(collection, _uint(id, "id"))

    def delete(self, id: int, collection: str = DEFAULT_COLLECTION) -> Dict[str, Any]:
        """Delete record ``id``. Returns the receipt. Raises ``NotFound``."""
        return self._backend.delete(collection, _uint(id, "id"))

    def set_tag(self, id: int, tag: int, collection: str = DEFAULT_COLLECTION) -> Dict[str, Any]:
        """Replace record ``id``'s tag. Returns the receipt."""
        return self._backend.set_tag(collection, _uint(id, "id"), _uint(tag, "tag"))

    def set_metadata(self, id: int, metadata: Any, collection: str = DEFAULT_COLLECTION) -> Dict[str, Any]:
        """Replace record ``id``'s metadata (any JSON value; ``None``
        clears it). Returns the receipt."""
        rid = _uint(id, "id")
        return self._backend.set_metadata(collection, rid, _metadata_text(metadata, f"record {rid}"))

    # -- search ----------------------------------------------------------

    @staticmethod
    def _search_args(k: Any, tag: Any, filter: Any, ef: Any) -> Tuple[int, Optional[int], Optional[int]]:
        if filter is not None and not isinstance(filter, str):
            raise InvalidInput(f"filter must be a str (a query-DSL where clause), not {type(filter).__name__}")
        k = _uint(k, "k")
        ef = None if ef is None else _uint(ef, "ef")
        # The shared check (the one REST runs): the same refusal in both
        # modes, with or without a filter.
        _native.check_search(k, ef)
        return k, None if tag is None else _uint(tag, "tag"), ef

    def search(
        self,
        vector: VectorLike,
        k: int = 10,
        tag: Optional[int] = None,
        filter: Optional[str] = None,
        ef: Optional[int] = None,
        exact: bool = False,
        collection: str = DEFAULT_COLLECTION,
    ) -> List[Hit]:
        """The ``k`` nearest live records to ``vector``, as
        ``Hit(id, distance, tag, metadata)`` in the total order
        ``(distance, id)``. ``k`` is at most ``SEARCH_K_MAX`` (10,000).

        ``tag``: only records with this tag. ``filter``: a query-DSL where
        clause (``"tag = 3 AND id < 100"``), run as the query
        ``FROM collection NEAREST $q K k WHERE (filter)`` like the REST
        API does (needs pyarrow). ``ef``:
        the HNSW result-list size (default 64, at least ``k``, at most 10,000). ``exact``:
        brute force over every record instead of the graph (the same order,
        exact recall)."""
        k, tag, ef = self._search_args(k, tag, filter, ef)
        if filter is not None:
            return self._filtered(collection, _vector(vector), k, tag, filter, ef, bool(exact))
        return self._backend.search(collection, _vector(vector), k, tag, ef, bool(exact))

    def _filtered(
        self, collection: str, vector: List[float], k: int, tag: Optional[int], filter: str, ef: Optional[int], exact: bool
    ) -> List[Hit]:
        """A search with a DSL where clause: the query the REST API runs for
        a search with ``filter``, run through :meth:`query` in both modes."""
        text = f"FROM {collection} NEAREST $q K {k} WHERE ({filter})"
        if tag is not None:
            text += f" AND tag = {tag}"
        if ef is not None:
            text += f" EF {ef}"
        if exact:
            text += " EXACT"
        table = self._backend.query(text, {"q": vector})
        return [
            Hit(r["id"], r["distance"], r["tag"], _stored_metadata(r.get("metadata")))
            for r in table.to_pylist()
        ]

    def search_many(
        self,
        queries: VectorsLike,
        k: int = 10,
        tag: Optional[int] = None,
        filter: Optional[str] = None,
        ef: Optional[int] = None,
        exact: bool = False,
        collection: str = DEFAULT_COLLECTION,
    ) -> List[List[Hit]]:
        """:meth:`search` for each row of ``queries`` (a 2-D array or a list
        of vectors). Embedded, the queries run in parallel on all cores."""
        k, tag, ef = self._search_args(k, tag, filter, ef)
        rows, n, _dim = _vectors(queries)
        if n == 0:
            return []
        if filter is not None:
            return [self._filtered(collection, _vector(q), k, tag, filter, ef, bool(exact)) for q in rows]
        return self._backend.search_many(collection, rows, k, tag, ef, bool(exact))

    def search_df(
        self,
        vector: VectorLike,
        k: int = 10,
        tag: Optional[int] = None,
        filter: Optional[str] = None,
        ef: Optional[int] = None,
        exact: bool = False,
        collection: str = DEFAULT_COLLECTION,
    ) -> Any:
        """:meth:`search` as a ``pyarrow.Table`` with columns ``id``
        (uint64), ``distance`` (float64), ``tag`` (uint64) and ``metadata``
        (the JSON text, keys sorted; null when absent). Use ``.to_pandas()``
        or ``polars.from_arrow()`` for a DataFrame."""
        import pyarrow as pa

        hits = self.search(vector, k, tag, filter, ef, exact, collection)

        def text(m: Any) -> Optional[str]:
            if m is None:
                return None
            if isinstance(m, bytes):
                return None
            return json.dumps(m, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

        return pa.table(
            {
                "id": pa.array([h.id for h in hits], type=pa.uint64()),
                "distance": pa.array([h.distance for h in hits], type=pa.float64()),
                "tag": pa.array([h.tag for h in hits], type=pa.uint64()),
                "metadata": pa.array([text(h.metadata) for h in hits], type=pa.string()),
            }
        )

    def query(self, text: str, params: Optional[Dict[str, Sequence[float]]] = None) -> Any:
        """Run one query-DSL statement (``POST /v1/query``), e.g.
        ``query("FROM docs NEAREST $q K 10 WHERE tag = 3", {"q": vector})``,
        and return a ``pyarrow.Table``."""
        if not isinstance(text, str):
            raise InvalidInput(f"query must be a str, not {type(text).__name__}")
        return self._backend.query(text, {str(k): _vector(v) for k, v in (params or {}).items()})

    def sql(self, query: str, params: Optional[Sequence[Any]] = None) -> Any:
        """Run one SQL statement — the same SQL as over the Postgres protocol
        and REST ``/v1/sql``: queries (each collection is a table with
        columns ``id``, ``vec``, ``vec_q16``, ``tag``, ``metadata``;
        pgvector's ``<->``, ``<#>``, ``<=>`` and the functions ``l2``,
        ``l2_squared``, ``inner_product``, ``negative_inner_product``,
        ``cosine_distance``), writes (``CREATE TABLE``, ``INSERT``, …) and
        ``SET``/``SHOW`` — with the values of ``$1``, ``$2``, … in
        ``params`` (numbers, strings, booleans, ``None``, and sequences or
        arrays of numbers for vectors). Returns a ``pyarrow.Table``: a
        query's rows, or for a command one row of ``command`` and
        ``rows``. Remote, the rows travel as an Arrow IPC stream."""
        if not isinstance(query, str):
            raise InvalidInput(f"query must be a str, not {type(query).__name__}")
        values = [_param(p) for p in (params or [])]
        return self._backend.sql(query, values)

    # -- graph -----------------------------------------------------------

    def create_node(self, node: int, label: int = 0) -> Dict[str, Any]:
        """Add graph node ``node`` with ``label``. Returns the receipt."""
        return self._backend.create_node(_uint(node, "node"), _uint(label, "label"))

    def delete_node(self, node: int) -> Dict[str, Any]:
        """Remove graph node ``node``. Returns the receipt."""
        return self._backend.delete_node(_uint(node, "node"))

    def create_edge(self, from_node: int, to_node: int, label: int = 0) -> Dict[str, Any]:
        """Add the edge ``from_node -> to_node`` with ``label``."""
        return self._backend.create_edge(
            _uint(from_node, "from_node"), _uint(to_node, "to_node"), _uint(label, "label")
        )

    def delete_edge(self, from_node: int, to_node: int, label: int = 0) -> Dict[str, Any]:
        """Remove the edge ``from_node -> to_node`` with ``label``."""
        return self._backend.delete_edge(
            _uint(from_node, "from_node"), _uint(to_node, "to_node"), _uint(label, "label")
        )

    def edges(self, node: int) -> Dict[str, Any]:
        """Node ``node``'s label and edges: ``{"node", "label", "out":
        [{"to", "label"}], "in": [{"from", "label"}]}``."""
        return self._backend.edges(_uint(node, "node"))

    # -- proofs ----------------------------------------------------------

    def proof(self) -> Dict[str, Any]:
        """The state proof: ``{"state_hash", "log_size", "log_root",
        "graph_hash", "collections": [{"name", "hash", "index_hash"}]}``.
        The state hash is a function of the log alone: the same operations
        give the same hash embedded, remote, and on every architecture."""
        return self._backend.proof()

    def inclusion_proof(self, seq: int) -> Dict[str, Any]:
        """Proof that event ``seq`` is in the log: ``{"seq", "size",
        "leaf", "root", "path", "event"}`` (``event``: hex of its canonical
        encoding)."""
        return self._backend.inclusion_proof(_uint(seq, "seq"))

    def consistency_proof(self, old_size: int, new_size: int) -> Dict[str, Any]:
        """Proof that the log of ``old_size`` events is a prefix of the log
        of ``new_size`` events."""
        return self._backend.consistency_proof(_uint(old_size, "old_size"), _uint(new_size, "new_size"))

    def verify(self, events: int = 1000, files: bool = True, indexes: bool = False) -> Dict[str, Any]:
        """Check the database's proofs here, in the client.

        - For up to ``events`` events (all of them if the log is shorter,
          else an even sample that includes the last): the event's canonical
          bytes hash to its leaf, and the leaf's inclusion proof leads to
          the log root of the state proof (RFC 9162, BLAKE3).
        - If this client verified before: a consistency proof shows that
          the log then is a prefix of the log now (nothing was rewritten).
        - Embedded, with ``files``: the offline audit of ``valori verify``
          over the data directory (every frame, a full replay, snapshots,
          checkpoint), whose replayed state hash must equal the live one;
          ``indexes`` also rebuilds every graph (slow).

        Returns ``{"ok", "log_size", "log_root", "state_hash",
        "events_checked", "findings"}`` with each finding a line starting
        ``ok`` or ``MISMATCH``. Never raises for a mismatch: check ``ok``.
        """
        findings: List[str] = []
        good = True

        def note(ok: bool, message: str) -> None:
            nonlocal good
            good = good and ok
            findings.append(("ok       " if ok else "MISMATCH ") + message)

        p = self._backend.proof()
        size, root = p["log_size"], p["log_root"]
        if size <= events:
            seqs = list(range(size))
        else:
            step = size / max(events - 1, 1)
            seqs = sorted({min(size - 1, int(i * step)) for i in range(events)} | {size - 1})
        checked = 0
        for seq in seqs:
            ip = self._backend.inclusion_proof(seq)
            leaf = _native.leaf_hash(bytes.fromhex(ip["event"]))
            if leaf != ip["leaf"]:
                note(False, f"event {seq}: its bytes hash to leaf {leaf}, the proof says {ip['leaf']}")
                continue
            if not _native.verify_inclusion(leaf, seq, ip["size"], ip["path"], ip["root"]):
                note(False, f"event {seq}: inclusion proof does not lead to root {ip['root']}")
                continue
            # The log may have grown since the state proof: tie the proof's
            # root to the state proof's root.
            if ip["size"] != size or ip["root"] != root:
                c = self._backend.consistency_proof(size, ip["size"])
                if not _native.verify_consistency(size, ip["size"], root, ip["root"], c["path"]):
                    note(False, f"event {seq}: log of {ip['size']} events does not extend the state proof's log of {size}")
                    continue
            checked += 1
        note(checked == len(seqs), f"{checked} of {len(seqs)} events: bytes, leaf and inclusion proof against root {root} ({size} events)")
        if self._verified is not None:
            old_size, old_root = self._verified
            if old_size <= size:
                c = self._backend.consistency_proof(old_size, size)
                ok = _native.verify_consistency(old_size, size, old_root, root, c["path"])
                note(ok, f"log of {old_size} events verified earlier is a prefix of the log of {size} events")
            else:
                note(False, f"the log shrank from {old_size} events (verified earlier) to {size}")
        if files:
            report = self._backend.verify_files(indexes)
            if report is not None:
                ok, replayed, state_hash, log_root, file_findings = report
                for f_ok, message in file_findings:
                    note(f_ok, f"files: {message}")
                if replayed == size:
                    note(
                        state_hash == p["state_hash"] and log_root == root,
                        f"files: replay of {replayed} events gives state hash {state_hash}, the engine holds {p['state_hash']}",
                    )
        if good:
            self._verified = (size, root)
        return {
            "ok": good,
            "log_size": size,
            "log_root": root,
            "state_hash": p["state_hash"],
            "events_checked": checked,
            "findings": findings,
        }

    def snapshot(self) -> Dict[str, Any]:
        """Write a snapshot of the current state: ``{"events", "file",
        "bytes", "state_hash", "log_root"}``. Recovery starts from the
        newest snapshot."""
        return self._backend.snapshot()

    def wait_for_index(self) -> None:
        """Embedded only: block until every collection's HNSW graph covers
        all complete blocks of rows. Searches are correct before that (rows
        not yet in the graph are scanned exactly); afterwards approximate
        answers depend on the log alone."""
        self._backend.wait_for_index()


def _param(value: Any) -> Any:
    """A SQL parameter as JSON carries it: vectors (sequences or arrays of
    numbers) as lists of floats, everything else as it is."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [float(x) for x in value]
    raise InvalidInput(f"a SQL parameter may be a number, str, bool, None or a vector, not {type(value).__name__}")
