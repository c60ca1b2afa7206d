"""The remote client over Arrow Flight: bulk reads (`to_arrow`,
`to_pandas`) and large `insert_batch` chunks go over the server's Flight
address, found with `GET /v1/flight`, with REST as the fallback; every mode
gives the same tables, the same events and the same state hash. And
exports verify: `verify_export` recomputes the collection hash from the
exported columns and refuses any tampered one."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any, Callable, Dict

import numpy as np
import pyarrow as pa
import pytest

import valori
from valori import Conflict, ExportError, InvalidInput, NotFound, Valori

from conftest import Server


def bulk_workload(c: Valori) -> Dict[str, Any]:
    """Large batches (over the Flight threshold) and small ones, deletes
    and updates; returns what it observed."""
    rng = np.random.default_rng(5)
    out: Dict[str, Any] = {}
    # The default collection, created by the first (large) insert.
    big = rng.standard_normal((3000, 16)) * 2.7  # float64, rounded once
    meta = [{"n": i, "w": "grüße"} if i % 7 == 0 else None for i in range(3000)]
    out["ids1"] = c.insert_batch(big, tags=(np.arange(3000) % 5).tolist(), metadata=meta)
    c.create_collection("docs", 8, metric="cosine", m=8, ef_construction=32)
    rows = rng.standard_normal((1500, 8)).astype(np.float32).tolist()
    out["ids2"] = c.insert_batch(rows, ids=list(range(10_000, 11_500)), collection="docs")
    out["ids3"] = c.insert_batch([[0.5] * 8, [0.25] * 8], collection="docs")  # small: REST
    out["ids4"] = c.insert_batch(rng.standard_normal((2100, 16)).astype(np.float32), batch_size=1100)
    for i in (3, 4, 2999):
        c.delete(i)
    c.set_tag(10, 99)
    c.set_metadata(11, {"edited": True})
    out["search"] = [(h.id, h.distance) for h in c.search(big[0], k=5, exact=True)]
    out["default"] = c.to_arrow()
    out["docs"] = c.to_arrow("docs")
    out["docs_df"] = c.to_pandas("docs")
    out["proof"] = c.proof()
    return out


def _assert_same(a: Dict[str, Any], b: Dict[str, Any], what: str) -> None:
    for key in ("ids1", "ids2", "ids3", "ids4", "search"):
        assert a[key] == b[key], f"{what}: {key}"
    for key in ("default", "docs"):
        assert a[key].schema == b[key].schema, f"{what}: {key} schema"
        assert a[key].schema.metadata == b[key].schema.metadata, f"{what}: {key} provenance"
        assert a[key].equals(b[key]), f"{what}: {key} rows"
    cols = ["id", "tag", "metadata"]
    assert a["docs_df"][cols].equals(b["docs_df"][cols]), f"{what}: DataFrame"
    assert len(a["docs_df"]) == len(b["docs_df"]), f"{what}: DataFrame"
    pa_, pb = a["proof"], b["proof"]
    assert (pa_["state_hash"], pa_["log_size"], pa_["log_root"]) == (pb["state_hash"], pb["log_size"], pb["log_root"]), what
    assert pa_["collections"] == pb["collections"] or [
        (x["name"], x["hash"]) for x in pa_["collections"]
    ] == [(x["name"], x["hash"]) for x in pb["collections"]], what


def test_flight_and_rest_and_embedded_give_the_same(server_binary: Path, tmp_path: Path, server: Server) -> None:
    """The bulk workload embedded, remote over Flight (address found by
    `GET /v1/flight`) and remote over REST only (`flight=False`, a second
    server): the same ids, hits, exported tables (rows and provenance),
    DataFrames and state. The Flight-written server's rows read back over
    REST SQL equal its Flight export."""
    with Valori(tmp_path / "embedded") as local:
        a = bulk_workload(local)
    over_flight = Valori(remote=server.url)
    b = bulk_workload(over_flight)
    assert over_flight._backend.flight_address is not None, "Flight was not used"
    second = Server(server_binary, tmp_path / "rest-data")
    try:
        over_rest = Valori(remote=second.url, flight=False)
        c = bulk_workload(over_rest)
        assert over_rest._backend.flight_address is None
    finally:
        second.stop()
    _assert_same(a, b, "embedded vs Flight")
    _assert_same(a, c, "embedded vs REST")
    # What Flight wrote, read over the other front end (SQL over REST).
    reread = Valori(remote=server.url, flight=False)
    for name in ("default", "docs"):
        assert reread.to_arrow(name).equals(b[name])
    assert len(b["default"]) == 3000 + 2100 - 3
    assert a["default"].schema.metadata[b"valori.log_size"] == str(a["proof"]["log_size"]).encode()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_flight_falls_back_to_rest(server: Server) -> None:
    """A Flight address nobody answers on: large batches and exports go
    over REST, with the same results as over Flight."""
    lost = Valori(remote=server.url, flight=f"grpc://127.0.0.1:{_closed_port()}")
    vecs = np.random.default_rng(2).standard_normal((1500, 4)).astype(np.float32)
    assert lost.insert_batch(vecs) == list(range(1500))
    assert lost._backend.flight_address is None
    table = lost.to_arrow()
    direct = Valori(remote=server.url)
    assert direct.to_arrow().equals(table)
    assert direct._backend.flight_address is not None
    expected = np.array([valori.quantize(v.tolist()) for v in vecs[:5]], dtype=np.int32)
    assert (np.stack(table.column("vector").to_numpy(zero_copy_only=False)[:5]) == expected).all()


def test_flight_batches_refused_whole(remote: Valori) -> None:
    """Large batches refused over Flight raise what REST raises for them
    (wrong dimension, NaN, duplicate id, unknown collection) and change
    nothing."""
    remote.create_collection("v", 4)
    good = np.ones((2000, 4), dtype=np.float32)
    remote.insert_batch(good, ids=list(range(2000)), collection="v")
    before = _logged(remote.proof())
    with pytest.raises(InvalidInput, match="dimension|components"):
        remote.insert_batch(np.ones((2000, 5), dtype=np.float32), collection="v")
    nan = good.copy()
    nan[1500, 2] = np.nan
    with pytest.raises(InvalidInput, match="NaN"):
        remote.insert_batch(nan, collection="v")
    with pytest.raises(Conflict):
        remote.insert_batch(good, ids=list(range(1999, 3999)), collection="v")
    with pytest.raises(NotFound):
        remote.insert_batch(good, collection="nowhere")
    assert _logged(remote.proof()) == before
    assert remote._backend.flight_address is not None


def _logged(proof: dict) -> dict:
    """A state proof without its index hashes: the state hash, the log
    and each collection's hash are functions of the log alone, while the
    background builder may still be extending an index between two reads."""
    return {
        **{k: v for k, v in proof.items() if k != "index_hash"},
        "collections": [
            {k: v for k, v in c.items() if k != "index_hash"} for c in proof["collections"]
        ],
    }


def _replace(table: pa.Table, column: str, change: Callable[[Any], Any]) -> pa.Table:
    """``table`` with ``column`` replaced by ``change`` of its Python
    values, keeping the schema (and its metadata)."""
    values = table.column(column).to_pylist()
    changed = pa.array(change(values), type=table.schema.field(column).type)
    i = table.schema.get_field_index(column)
    return table.set_column(i, table.schema.field(column), changed).replace_schema_metadata(table.schema.metadata)


def _with_meta(table: pa.Table, key: str, value: str) -> pa.Table:
    meta = dict(table.schema.metadata)
    meta[key.encode()] = value.encode()
    return table.replace_schema_metadata(meta)


def check_exports_verify(c: Valori) -> None:
    c.create_collection("ex", 3, metric="inner_product", m=6)
    rng = np.random.default_rng(9)
    c.insert_batch(rng.standard_normal((600, 3)), tags=list(range(600)), metadata=[{"i": i} for i in range(600)], collection="ex")
    proof = c.proof()
    table = c.to_arrow("ex")
    report = c.verify_export(table)
    assert report["ok"], report["findings"]
    # The recomputed hash is the one the state proof reports.
    assert report["computed"] == next(x["hash"] for x in proof["collections"] if x["name"] == "ex")
    assert valori.verify_export(table, proof)["ok"]
    # Tampered copies: one component each.
    tampered = {
        "vector component": _replace(table, "vector", lambda v: [[r[0] + 1, *r[1:]] if i == 300 else r for i, r in enumerate(v)]),
        "tag": _replace(table, "tag", lambda v: [t + 1 if i == 0 else t for i, t in enumerate(v)]),
        "id": _replace(table, "id", lambda v: [x + 10_000 if i == 599 else x for i, x in enumerate(v)]),
        "metadata byte": _replace(table, "metadata", lambda v: [m.replace(b"5", b"6") if i == 5 else m for i, m in enumerate(v)]),
        "row removed": table.slice(0, 599).replace_schema_metadata(table.schema.metadata),
        "index parameter": _with_meta(table, "valori.m", "7"),
        "claimed hash": _with_meta(table, "valori.collection_hash", "0" * 64),
    }
    for what, bad in tampered.items():
        if what == "row removed":
            bad = _with_meta(bad, "valori.rows", "599")
        r = c.verify_export(bad)
        assert not r["ok"], what
        assert any(f.startswith("MISMATCH") and "hash" in f for f in r["findings"]), (what, r["findings"])
    # Deleted rows are part of the hash: an export without them cannot be
    # checked; one with them verifies, and a flipped tombstone is refused.
    c.delete(7, collection="ex")
    with pytest.raises(ExportError, match="deleted"):
        c.verify_export(c.to_arrow("ex"))
    full = c.to_arrow("ex", deleted=True)
    assert full.num_rows == 600 and full.column("deleted").to_pylist().count(True) == 1
    assert c.verify_export(full)["ok"]
    flipped = _replace(full, "deleted", lambda v: [not d if i == 8 else d for i, d in enumerate(v)])
    assert not c.verify_export(flipped)["ok"]
    # A later write: the export still verifies (its log is a prefix of
    # the current one), and says its hash was not compared with the proof.
    c.insert([1.0, 2.0, 3.0], collection="ex")
    later = c.verify_export(full)
    assert later["ok"], later["findings"]
    assert any("prefix" in f for f in later["findings"])


def test_exports_verify_embedded(db: Valori) -> None:
    """An embedded export verifies; tampered copies are refused."""
    check_exports_verify(db)


def test_exports_verify_remote(remote: Valori) -> None:
    """An export over Flight verifies; tampered copies are refused; the
    REST fallback's export verifies too."""
    check_exports_verify(remote)
    assert remote._backend.flight_address is not None
    rest = Valori(remote=remote.location, flight=False)
    table = rest.to_arrow("ex")
    assert table.equals(remote.to_arrow("ex"))
    with pytest.raises(ExportError, match="deleted"):
        rest.verify_export(table)
    with pytest.raises(InvalidInput, match="Flight"):
        rest.to_arrow("ex", deleted=True)


def test_flight_address_route(server: Server) -> None:
    """`GET /v1/flight` advertises the bound Flight address."""
    import urllib.request

    with urllib.request.urlopen(server.url + "/v1/flight") as r:
        answer = json.loads(r.read())
    assert answer["host"] == "127.0.0.1" and answer["port"] > 0
    assert answer["address"] == f"grpc://127.0.0.1:{answer['port']}"


def test_bad_export_tickets_are_refused(remote: Valori) -> None:
    """A JSON export ticket with an unknown key, a wrong type or an
    unknown collection is refused with a message naming the problem, and
    the server keeps serving."""
    import pyarrow.flight as fl

    remote.insert_batch(np.ones((3, 2), dtype=np.float32))
    conn = remote._backend.flight()
    assert conn is not None
    client, options = conn
    for ticket, expected in (
        (b'{"collection": "default", "bogus": 1}', "unknown field"),
        (b'{"collection": "default", "deleted": "yes"}', "invalid type"),
        (b'{"deleted": true}', "missing field"),
    ):
        with pytest.raises(pa.ArrowInvalid, match=f"JSON export ticket.*{expected}"):
            client.do_get(fl.Ticket(ticket), options).read_all()
    with pytest.raises(pa.ArrowKeyError, match="does not exist"):
        client.do_get(fl.Ticket(b'{"collection": "nowhere", "deleted": true}'), options).read_all()
    full = client.do_get(fl.Ticket(b'{"collection": "default", "deleted": true}'), options).read_all()
    assert full.column("deleted").to_pylist() == [False] * 3


ITEMS = (
    "CREATE TABLE items (id bigserial PRIMARY KEY, embedding vector(3), content text NOT NULL, "
    "category_id int DEFAULT 7, small smallint, price double precision, ratio real, amount numeric, "
    "active boolean, day date, seen timestamp, at timestamptz, meta jsonb, doc json, blob bytea, "
    "labels text[], scores float8[], uid uuid UNIQUE, code varchar(8))"
)


def test_declared_table_exports_verify(remote: Valori) -> None:
    """A table with declared columns (one row without a vector) exports
    over Flight with its declared columns, reads back as SQL over REST
    answers it, and its export (with deleted rows) hashes, by the encoding
    written out in Python, to the collection hash the state proof reports;
    a changed value, tombstone or sequence is refused; a plain export of a
    table with deleted rows says to keep them."""
    remote.sql(ITEMS)
    remote.sql(
        "INSERT INTO items (embedding, content, category_id, small, price, ratio, amount, active, day, "
        "seen, at, meta, doc, blob, labels, scores, uid, code) VALUES "
        "('[0.5,-1,2]', 'first', 3, -2, 1.25, 0.1, 12.50, true, '2024-02-29', '2024-05-06 07:08:09.123456', "
        "'2024-05-06 07:08:09+02', '{\"b\": 1, \"a\": [1, 2]}', '{ \"keep\" : \"spacing\" }', '\\x00ff10', "
        "'{x,NULL,\"y z\"}', '{1.5,NULL,-2}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'abc'), "
        "('[1,1,1]', 'second', NULL, NULL, 'NaN', 'NaN', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, "
        "NULL, NULL, NULL, NULL), "
        "('[-0.25,0,3.5]', 'third', 9, 5, -0.0, -1.5, -0.001, false, '1969-12-31', '1960-01-01 00:00:00', "
        "'1970-01-01 00:00:00+00', '[]', '\"s\"', '', '{}', '{}', '00000000-0000-0000-0000-000000000001', '')"
    )
    remote.sql("INSERT INTO items (embedding, content) VALUES ('[2,2,2]', 'fourth')")
    # A row without a vector (NULL: tag 1 and the zero vector in the hash).
    remote.sql("INSERT INTO items (content) VALUES ('fifth, no embedding yet')")
    remote.sql("DELETE FROM items WHERE id = 2")
    remote.sql("UPDATE items SET content = 'third, edited', labels = '{a}' WHERE id = 3")

    table = remote.to_arrow("items", deleted=True)
    names = table.schema.names
    assert names[:19] == [
        "id", "embedding", "content", "category_id", "small", "price", "ratio", "amount", "active",
        "day", "seen", "at", "meta", "doc", "blob", "labels", "scores", "uid", "code",
    ]
    assert names[19:] == ["embedding_q16", "record_id", "deleted"]
    types = {f.name: f.type for f in table.schema}
    assert types["content"] == pa.string() and types["category_id"] == pa.int32()
    assert types["small"] == pa.int16() and types["ratio"] == pa.float32()
    assert types["blob"] == pa.binary() and types["labels"] == pa.list_(pa.string())
    assert types["at"] == pa.timestamp("us", tz="UTC") and types["day"] == pa.date32()
    assert types["embedding"] == pa.list_(pa.field("item", pa.float32(), nullable=False), 3)
    assert types["embedding_q16"] == pa.list_(pa.field("item", pa.int32(), nullable=False), 3)
    assert table.column("deleted").to_pylist() == [False, True, False, False, False]
    # An UPDATE that changes only scalar columns rewrites the row in place.
    import pyarrow.compute as pc

    live = table.filter(pc.invert(table.column("deleted")))
    assert live.column("content").to_pylist() == [
        "first", "third, edited", "fourth", "fifth, no embedding yet"
    ]
    assert live.column("category_id").to_pylist() == [3, 9, 7, 7]
    assert live.column("embedding").to_pylist()[3] is None
    assert live.column("embedding_q16").to_pylist()[3] == [0, 0, 0]
    # Q16.16 checked against round(x * 65536) computed here.
    assert live.column("embedding_q16").to_pylist()[0] == [round(x * 65536) for x in (0.5, -1, 2)]

    # The same rows as SQL over REST answers them.
    by_sql = remote.sql("SELECT * FROM items ORDER BY id")
    plain = remote.to_arrow("items")
    for name in by_sql.schema.names:
        assert plain.column(name).to_pylist() == by_sql.column(name).to_pylist(), name

    report = remote.verify_export(table)
    assert report["ok"], report["findings"]
    proof = remote.proof()
    reported = next(c["hash"] for c in proof["collections"] if c["name"] == "items")
    assert report["computed"] == reported

    with pytest.raises(ExportError, match="deleted"):
        valori.verify_export(plain)

    def changed(column: str, row: int, value: Any) -> pa.Table:
        i = table.schema.get_field_index(column)
        values = table.column(column).to_pylist()
        values[row] = value
        return table.set_column(i, table.schema.field(i), pa.array(values, table.schema.field(i).type))

    for column, row, value in [
        ("content", 0, "First"),
        ("price", 1, 0.0),
        ("blob", 0, b"\x00\xff\x11"),
        ("labels", 0, ["x", None]),
        ("deleted", 1, False),
        ("uid", 2, "00000000-0000-0000-0000-000000000002"),
    ]:
        report = valori.verify_export(changed(column, row, value))
        assert not report["ok"], (column, report["findings"])
        assert "MISMATCH" in report["findings"][0]
    meta = dict(table.schema.metadata)
    # The id sequence (the first) one further than it is.
    sequences = meta[b"valori.sequences"].split(b",")
    sequences[0] = str(int(sequences[0]) + 1).encode()
    meta[b"valori.sequences"] = b",".join(sequences)
    assert not valori.verify_export(table.replace_schema_metadata(meta))["ok"]


def test_declared_table_without_key_or_vector_verifies(remote: Valori) -> None:
    """A table without an integer key or a vector column (dimension 1,
    every vector [0]) verifies from its export with deleted rows, which
    carries the record ids; its plain export cannot name them and says so."""
    remote.sql("CREATE TABLE notes (slug text PRIMARY KEY, body text, n bigint DEFAULT 0)")
    remote.sql("INSERT INTO notes (slug, body) VALUES ('a', 'x'), ('b', NULL), ('c', 'z')")
    remote.sql("DELETE FROM notes WHERE slug = 'b'")
    table = remote.to_arrow("notes", deleted=True)
    assert table.schema.names == ["slug", "body", "n", "record_id", "deleted"]
    report = remote.verify_export(table)
    assert report["ok"], report["findings"]
    assert remote.sql("SELECT slug, n FROM notes ORDER BY slug").to_pylist() == [
        {"slug": "a", "n": 0},
        {"slug": "c", "n": 0},
    ]
    remote.sql("INSERT INTO notes (slug) VALUES ('d')")
    with pytest.raises(ExportError, match="record ids"):
        valori.verify_export(remote.to_arrow("notes"))
