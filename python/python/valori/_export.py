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

An export of a table with declared columns (``CREATE TABLE`` with its own
columns, a Flight ``DoGet`` of the table) has the declared columns, each
with its declaration in its field metadata (``valori.type``,
``valori.type_mod``, ``valori.flags``, ``valori.default``), the vector
column's exact Q16.16 view (field metadata ``valori.role`` =
``vector_q16``) and, with deleted rows, ``record_id`` and ``deleted``
(roles ``record_id`` and ``deleted``); the schema metadata adds the serial
sequences (``valori.sequences``). :func:`collection_hash` recomputes its
hash too, from the declared columns' values in their canonical form
(``docs/format.md`` section 2, "Tables").
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


# Scalar type codes of declared columns (docs/format.md section 2).
_FIXED = {1: "<?", 2: "<h", 3: "<i", 4: "<q", 5: "<f", 6: "<d", 11: "<i", 12: "<q", 13: "<q"}
_UUID = 10
_INTEGER_CODES = (2, 3, 4)
_ARRAY_BASE = 0x40
_VECTOR_CODES = (0, 0x80)
_PRIMARY_KEY = 2


def _field_meta(field: Any) -> Dict[str, str]:
    return {k.decode(): v.decode() for k, v in (field.metadata or {}).items()}


def _scalar_bytes(code: int, value: Any) -> bytes:
    """One declared value in its canonical form, as the hash writes it:
    fixed-width types as they are, the others as ``len:u32 ‖ bytes``."""
    if code in _FIXED:
        # A real arrives widened to a Python float and narrows back to
        # the stored bits exactly (a stored NaN is the canonical one).
        return struct.pack(_FIXED[code], value)
    if code == _UUID:
        return bytes.fromhex(value.replace("-", ""))
    if code > _ARRAY_BASE:
        element = code - _ARRAY_BASE
        parts = [struct.pack("<I", len(value))]
        for item in value:
            if item is None:
                parts.append(b"\x00")
            else:
                parts.append(b"\x01")
                parts.append(_scalar_bytes(element, item))
        body = b"".join(parts)
    elif isinstance(value, (bytes, bytearray)):
        body = bytes(value)
    else:
        body = str(value).encode("utf-8")
    return struct.pack("<I", len(body)) + body


def _table_parts(table: Any, meta: Dict[str, str]) -> Dict[str, Any]:
    """What a declared table's hash covers besides the fixed row fields:
    the descriptor (schema encoding and sequences), each row's scalar
    values' encoding, the record ids, and the Q16.16 vectors."""
    import numpy as np
    import pyarrow as pa

    declared = []
    roles: Dict[str, str] = {}
    for field in table.schema:
        fm = _field_meta(field)
        if "valori.type" in fm:
            declared.append((field, fm))
        elif "valori.role" in fm:
            roles[fm["valori.role"]] = field.name
    schema = [struct.pack("<I", len(declared))]
    scalars = []
    key = None
    has_vector = False
    # A row whose vector is NULL carries tag 1 (and the zero vector).
    tags = np.zeros(table.num_rows, dtype="<u8")
    for field, fm in declared:
        try:
            code, type_mod, flags = (int(fm[k]) for k in ("valori.type", "valori.type_mod", "valori.flags"))
        except (KeyError, ValueError):
            raise ExportError(f"column {field.name!r} has malformed valori.* field metadata") from None
        name = field.name.encode("utf-8")
        schema += [struct.pack("<I", len(name)), name, struct.pack("<BIB", code, type_mod, flags)]
        if "valori.default" in fm:
            default = fm["valori.default"].encode("utf-8")
            schema += [b"\x01", struct.pack("<I", len(default)), default]
        else:
            schema.append(b"\x00")
        if code in _VECTOR_CODES:
            has_vector = True
            nulls = table.column(field.name).is_null().to_numpy(zero_copy_only=False)
            tags = np.asarray(nulls, dtype="<u8")
            continue
        column = table.column(field.name)
        if code == 11:
            column = column.cast(pa.int32())
        elif code in (12, 13):
            column = column.cast(pa.int64())
        values = column.to_pylist()
        scalars.append((code, values))
        if flags & _PRIMARY_KEY and code in _INTEGER_CODES:
            key = values
    sequences = [int(x) for x in _key(meta, "valori.sequences").split(",") if x != ""]
    if len(sequences) != len(scalars):
        raise ExportError(
            f"valori.sequences has {len(sequences)} values for {len(scalars)} scalar columns"
        )
    descriptor = b"".join(schema) + struct.pack(f"<{len(sequences)}q", *sequences)

    n = table.num_rows
    if "record_id" in roles:
        ids = np.asarray(
            table.column(roles["record_id"]).cast(pa.uint64()).to_numpy(zero_copy_only=False), dtype="<u8"
        )
    elif key is not None:
        # An integer primary key is the record id (two's complement).
        ids = np.asarray([k & 0xFFFF_FFFF_FFFF_FFFF for k in key], dtype="<u8")
    else:
        raise ExportError(
            "the table has no integer primary key, so its record ids are only in an export with "
            'its deleted rows (to_arrow(..., deleted=True), or the Flight ticket {"collection": NAME, "deleted": true})'
        )
    if has_vector:
        if "vector_q16" not in roles:
            raise ExportError("the export has no exact Q16.16 column (field metadata valori.role = vector_q16)")
        vtype = table.schema.field(roles["vector_q16"]).type
        if not pa.types.is_fixed_size_list(vtype) or vtype.value_type != pa.int32():
            raise ExportError(f"column {roles['vector_q16']!r} is {vtype}, not FixedSizeList<Int32>")
        dim = vtype.list_size
        vector = table.column(roles["vector_q16"]).combine_chunks()
        vectors = np.asarray(vector.flatten().to_numpy(zero_copy_only=False), dtype="<i4").reshape(n, dim)
    else:
        # A table without a vector column: every record's vector is [0].
        dim = 1
        vectors = np.zeros((n, 1), dtype="<i4")
    rows = []
    for r in range(n):
        parts = []
        for code, values in scalars:
            v = values[r]
            if v is None:
                parts.append(b"\x00")
            else:
                parts.append(b"\x01")
                parts.append(_scalar_bytes(code, v))
        rows.append(b"".join(parts))
    return {
        "ids": ids,
        "tags": tags,
        "dim": dim,
        "vectors": vectors,
        "deleted_column": roles.get("deleted"),
        "rows": rows,
        "descriptor": descriptor,
    }


def collection_hash(table: Any) -> str:
    """The hash (hex) of the collection whose whole export ``table`` is,
    recomputed from its columns and schema metadata:

        row        := id:u64 ‖ deleted:u8 ‖ tag:u64 ‖ vector (i32 × dim) ‖ len:u32 ‖ metadata
        chunk_c    := H(0x01 ‖ c:u64 ‖ rows_in_chunk:u32 ‖ row × rows_in_chunk)
        collection := H(0x02 ‖ len:u32 ‖ name ‖ dim:u32 ‖ metric:u8 ‖ m:u16 ‖ ef_construction:u16
                        ‖ seed:u64 ‖ rows:u64 ‖ live:u64 ‖ chunks:u64 ‖ chunk_0 ‖ …)

    all little-endian, ``H`` = BLAKE3-256. A table with declared columns
    extends each row with its scalar values (``(valid:u8 ‖ [value]) ×
    scalar columns``) and the collection message with ``len:u64 ‖
    descriptor`` (its schema's encoding and sequences), rebuilt here from
    the columns' field metadata. The hash covers deleted rows, so
    an export of a collection that has some must keep them (``deleted=True``);
    an export without them raises :class:`ExportError` saying so."""
    import numpy as np
    import pyarrow as pa

    meta = _meta(table)
    names = table.schema.names
    declared = any(b"valori.type" in (f.metadata or {}) for f in table.schema)
    if not declared:
        for column in COLUMNS[:4]:
            if column not in names:
                raise ExportError(f"the export has no {column!r} column")
    name = _key(meta, "valori.collection").encode("utf-8")
    metric = _int(meta, "valori.metric", 256)
    m = _int(meta, "valori.m", 1 << 16)
    ef = _int(meta, "valori.ef_construction", 1 << 16)
    seed = _int(meta, "valori.seed", 1 << 64)
    rows_declared = _int(meta, "valori.rows", 1 << 64)
    n = table.num_rows
    tparts = _table_parts(table, meta) if declared else None
    deleted_column = tparts["deleted_column"] if tparts else ("deleted" if "deleted" in names else None)
    if deleted_column is not None:
        deleted = np.asarray(table.column(deleted_column).to_numpy(zero_copy_only=False), dtype=np.uint8)
    else:
        if n != rows_declared:
            raise ExportError(
                f"the export holds {n} rows but collection {name.decode()!r} has {rows_declared} "
                f"({rows_declared - n} deleted, which its hash covers): export it with its deleted "
                "rows (to_arrow(..., deleted=True), or the Flight ticket "
                '{"collection": NAME, "deleted": true})'
            )
        deleted = np.zeros(n, dtype=np.uint8)
    if tparts:
        # A table's rows have tag 0 (1 for a NULL vector) and no
        # metadata, then their declared values; its descriptor follows the
        # chunks.
        dim = tparts["dim"]
        ids = tparts["ids"]
        tags = tparts["tags"]
        values = tparts["vectors"]
        metadata: List[Optional[bytes]] = [None] * n
        extra: List[bytes] = tparts["rows"]
        trailer = struct.pack("<Q", len(tparts["descriptor"])) + tparts["descriptor"]
    else:
        vtype = table.schema.field("vector").type
        if not pa.types.is_fixed_size_list(vtype) or vtype.value_type != pa.int32():
            raise ExportError(f"column 'vector' is {vtype}, not the exact Q16.16 FixedSizeList<Int32>")
        dim = vtype.list_size
        ids = np.asarray(table.column("id").cast(pa.uint64()).to_numpy(zero_copy_only=False), dtype="<u8")
        tags = np.asarray(table.column("tag").cast(pa.uint64()).to_numpy(zero_copy_only=False), dtype="<u8")
        vector = table.column("vector").combine_chunks()
        values = np.asarray(vector.flatten().to_numpy(zero_copy_only=False), dtype="<i4").reshape(n, dim)
        metadata = table.column("metadata").to_pylist()
        extra = [b""] * n
        trailer = b""

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
            parts.append(extra[r])
        chunks.append(bytes.fromhex(_native.blake3_hex(b"".join(parts))))
    live = n - int(deleted.sum())
    message = b"".join(
        [
            _COLLECTION,
            struct.pack("<I", len(name)),
            name,
            struct.pack("<IBHHQQQQ", dim, metric, m, ef, seed, n, live, len(chunks)),
            *chunks,
            trailer,
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
