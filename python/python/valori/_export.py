"""Exports of whole collections as Arrow tables, and their verification.

An export (``Valori.to_arrow``, an Arrow Flight ``DoGet`` of a collection,
``docs/flight.md``) has the columns ``id``, ``vector`` (the stored Q16.16
integers, exact), ``tag``, ``metadata``, ``vector_f32`` and, when it keeps
deleted rows, ``deleted``; its schema metadata says which state it was
read from (``valori.log_size``, ``valori.log_root``, ``valori.state_hash``,
``valori.collection_hash``) and what of the collection its hash covers
besides the rows (``valori.collection``, ``valori.metric``, ``valori.m``,
``valori.ef_construction``, ``valori.seed``, ``valori.rows``,
``valori.live``).

:func:`collection_hash` recomputes the collection's hash from those
columns alone, by the canonical encoding of ``docs/format.md`` section 3,
written out here in Python (only BLAKE3 itself comes from the native
module), so it checks the engine's incremental hashing rather than
repeating it.
"""

from __future__ import annotations

import struct
from typing import Any, Dict, List, Optional

from . import _native

CHUNK_ROWS = 256
"""Rows per hashed chunk (``valori_core::hash::CHUNK_ROWS``)."""

METRIC_CODES = {"l2": 1, "inner_product": 2, "cosine": 3}
"""Each metric's code in events and in the hash (``Metric::code``)."""

COLUMNS = ("id", "vector", "tag", "metadata", "vector_f32")

# Domain bytes of the hashed messages (docs/format.md section 3).
_CHUNK = b"\x01"
_COLLECTION = b"\x02"


class ExportError(ValueError):
    """An export that cannot be checked: a column or a schema metadata key
    is missing or malformed."""


def _meta(table: Any) -> Dict[str, str]:
    raw = table.schema.metadata or {}
    return {k.decode(): v.decode() for k, v in raw.items()}


def _key(meta: Dict[str, str], key: str) -> str:
    if key not in meta:
        raise ExportError(
            f"the export's schema metadata has no {key!r}: it is not a whole-collection export "
            "(Valori.to_arrow or a Flight DoGet of a collection)"
        )
    return meta[key]


def _int(meta: Dict[str, str], key: str, top: int) -> int:
    text = _key(meta, key)
    try:
        value = int(text)
    except ValueError:
        raise ExportError(f"schema metadata {key!r} = {text!r} is not an integer") from None
    if not 0 <= value < top:
        raise ExportError(f"schema metadata {key!r} = {value} is outside 0..{top - 1}")
    return value


def collection_hash(table: Any) -> str:
    """The hash (hex) of the collection whose whole export ``table`` is,
    recomputed from its columns and schema metadata:

        row        := id:u64 ‖ deleted:u8 ‖ tag:u64 ‖ vector (i32 × dim) ‖ len:u32 ‖ metadata
        chunk_c    := H(0x01 ‖ c:u64 ‖ rows_in_chunk:u32 ‖ row × rows_in_chunk)
        collection := H(0x02 ‖ len:u32 ‖ name ‖ dim:u32 ‖ metric:u8 ‖ m:u16 ‖ ef_construction:u16
                        ‖ seed:u64 ‖ rows:u64 ‖ live:u64 ‖ chunks:u64 ‖ chunk_0 ‖ …)

    all little-endian, ``H`` = BLAKE3-256. The hash covers deleted rows, so
    an export of a collection that has some must keep them (``deleted=True``);
    an export without them raises :class:`ExportError` saying so."""
    import numpy as np
    import pyarrow as pa

    meta = _meta(table)
    names = table.schema.names
    for column in COLUMNS[:4]:
        if column not in names:
            raise ExportError(f"the export has no {column!r} column")
    name = _key(meta, "valori.collection").encode("utf-8")
    metric = _int(meta, "valori.metric", 256)
    m = _int(meta, "valori.m", 1 << 16)
    ef = _int(meta, "valori.ef_construction", 1 << 16)
    seed = _int(meta, "valori.seed", 1 << 64)
    rows_declared = _int(meta, "valori.rows", 1 << 64)
    vtype = table.schema.field("vector").type
    if not pa.types.is_fixed_size_list(vtype) or vtype.value_type != pa.int32():
        raise ExportError(f"column 'vector' is {vtype}, not the exact Q16.16 FixedSizeList<Int32>")
    dim = vtype.list_size
    n = table.num_rows
    if "deleted" in names:
        deleted = np.asarray(table.column("deleted").to_numpy(zero_copy_only=False), dtype=np.uint8)
    else:
        if n != rows_declared:
            raise ExportError(
                f"the export holds {n} rows but collection {name.decode()!r} has {rows_declared} "
                f"({rows_declared - n} deleted, which its hash covers): export it with its deleted "
                "rows (to_arrow(..., deleted=True), or the Flight ticket "
                '{"collection": NAME, "deleted": true})'
            )
        deleted = np.zeros(n, dtype=np.uint8)
    ids = np.asarray(table.column("id").cast(pa.uint64()).to_numpy(zero_copy_only=False), dtype="<u8")
    tags = np.asarray(table.column("tag").cast(pa.uint64()).to_numpy(zero_copy_only=False), dtype="<u8")
    vector = table.column("vector").combine_chunks()
    values = np.asarray(vector.flatten().to_numpy(zero_copy_only=False), dtype="<i4").reshape(n, dim)
    metadata: List[Optional[bytes]] = table.column("metadata").to_pylist()

    # The fixed part of every row, packed without padding, then each row's
    # metadata appended to it.
    fixed = np.zeros(
        n,
        dtype=np.dtype(
            [("id", "<u8"), ("deleted", "u1"), ("tag", "<u8"), ("vector", "<i4", (dim,)), ("len", "<u4")]
        ),
    )
    fixed["id"] = ids
    fixed["deleted"] = deleted
    fixed["tag"] = tags
    fixed["vector"] = values
    blobs = [b"" if x is None else bytes(x) for x in metadata]
    fixed["len"] = [len(b) for b in blobs]
    width = fixed.dtype.itemsize
    raw = fixed.tobytes()

    chunks: List[bytes] = []
    for c, start in enumerate(range(0, n, CHUNK_ROWS)):
        end = min(start + CHUNK_ROWS, n)
        parts = [_CHUNK, struct.pack("<QI", c, end - start)]
        for r in range(start, end):
            parts.append(raw[r * width : (r + 1) * width])
            parts.append(blobs[r])
        chunks.append(bytes.fromhex(_native.blake3_hex(b"".join(parts))))
    live = n - int(deleted.sum())
    message = b"".join(
        [
            _COLLECTION,
            struct.pack("<I", len(name)),
            name,
            struct.pack("<IBHHQQQQ", dim, metric, m, ef, seed, n, live, len(chunks)),
            *chunks,
        ]
    )
    return _native.blake3_hex(message)


def verify_export(table: Any, proof: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Checks that ``table``, a whole-collection export, hashes to the
    collection hash it claims (``valori.collection_hash``) and, given
    ``proof`` (a state proof, ``Valori.proof()``, of the same log size),
    that the proof reports that hash for the collection and the same log
    root and state hash.

    Returns ``{"ok", "collection", "computed", "claimed", "log_size",
    "log_root", "state_hash", "findings"}``; each finding is a line starting
    ``ok`` or ``MISMATCH``. A tampered export (any id, tag, vector
    component, metadata byte, tombstone, added or removed row) gives
    ``ok = False`` with a finding naming what disagrees; an export that
    cannot be checked at all raises :class:`ExportError`."""
    findings: List[str] = []
    good = True

    def note(ok: bool, message: str) -> None:
        nonlocal good
        good = good and ok
        findings.append(("ok       " if ok else "MISMATCH ") + message)

    meta = _meta(table)
    name = _key(meta, "valori.collection")
    claimed = _key(meta, "valori.collection_hash")
    log_size = _int(meta, "valori.log_size", 1 << 64)
    log_root = _key(meta, "valori.log_root")
    state_hash = _key(meta, "valori.state_hash")
    computed = collection_hash(table)
    note(
        computed == claimed,
        f"collection {name!r}: its {table.num_rows} exported rows hash to {computed}; "
        f"the export says it was read when the collection's hash was {claimed}",
    )
    if proof is not None:
        if proof["log_size"] != log_size:
            note(
                False,
                f"the proof is of a log of {proof['log_size']} events, the export was read at "
                f"{log_size}: compare with a proof of the same log size (or check the log's "
                "consistency with Valori.verify_export)",
            )
        else:
            reported = next((c["hash"] for c in proof["collections"] if c["name"] == name), None)
            note(
                reported == computed,
                f"collection {name!r}: the state proof at log size {log_size} reports hash {reported}",
            )
            note(
                proof["log_root"] == log_root and proof["state_hash"] == state_hash,
                f"log root {log_root} and state hash {state_hash} of the export equal the proof's "
                f"({proof['log_root']}, {proof['state_hash']})",
            )
    return {
        "ok": good,
        "collection": name,
        "computed": computed,
        "claimed": claimed,
        "log_size": log_size,
        "log_root": log_root,
        "state_hash": state_hash,
        "findings": findings,
    }
