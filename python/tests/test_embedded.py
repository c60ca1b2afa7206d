"""The embedded mode: the engine in-process, through `valori.Valori(path)`."""

from __future__ import annotations

import json
import math
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import valori
from valori import Conflict, Hit, InvalidInput, NotFound, Valori, ValoriError

from reference import brute_force, l2_distance, q16


def test_issue_example_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The snippet of the issue, verbatim, in a fresh working directory:
    data lands in ./valori_data, ids 0 and 1 are chosen by the engine, and
    the hits are the brute-force answer on the quantized values."""
    monkeypatch.chdir(tmp_path)
    from valori import Valori

    client = Valori()  # embedded, data in ./valori_data
    client.insert_batch([[0.1] * 16, [0.2] * 16])
    results = client.search([0.1] * 16, k=5)

    assert (tmp_path / "valori_data" / "wal").is_dir()
    expected = brute_force(np.array([[0.1] * 16, [0.2] * 16]), [0.1] * 16, 5)
    assert [(h.distance, h.id) for h in results] == expected
    assert [h.id for h in results] == [0, 1]
    assert results[0].distance == 0.0
    info = client.collection("default")
    assert (info["dim"], info["metric"], info["rows"]) == (16, "l2", 2)
    client.close()


def test_quantize_matches_the_definition() -> None:
    """valori.quantize gives round_half_to_even(float32(x) * 2^16), with
    ties, negative values, tiny values and the largest allowed value."""
    xs = [0.0, -0.0, 0.1, -0.1, 1.5 / 65536, 2.5 / 65536, -2.5 / 65536, 1e-30, 32767.99, -32767.99, 0.2]
    assert valori.quantize(xs) == q16(xs).tolist()
    rng = np.random.default_rng(7)
    many = (rng.standard_normal(10_000) * 1000).tolist()
    assert valori.quantize(many) == q16(many).tolist()


@pytest.mark.parametrize(
    "bad, what",
    [(float("nan"), "NaN"), (float("inf"), "infinity"), (-float("inf"), "infinity"), (32768.0, "32768"), (-40000.0, "32768")],
)
def test_bad_components_are_rejected_with_their_position(db: Valori, bad: float, what: str) -> None:
    """NaN, infinities and |x| >= 32768 are refused, naming the component,
    and nothing is written."""
    db.insert([1.0, 2.0, 3.0])
    before = db.proof()
    with pytest.raises(InvalidInput) as e:
        db.insert([1.0, bad, 3.0])
    assert "component 1" in str(e.value) and what in str(e.value)
    with pytest.raises(InvalidInput) as e:
        db.insert_batch([[1.0, 2.0, 3.0], [0.0, 0.0, bad]])
    assert "vector 1" in str(e.value) and "component 2" in str(e.value)
    with pytest.raises(InvalidInput):
        db.search([bad, 0.0, 0.0])
    assert db.proof() == before
    assert isinstance(e.value, ValueError) and isinstance(e.value, ValoriError)


def test_errors_say_who_is_at_fault_and_change_nothing(db: Valori) -> None:
    db.insert_batch([[1.0, 0.0], [0.0, 1.0]], ids=[10, 11], metadata=[{"a": 1}, None])
    before = db.proof()
    with pytest.raises(InvalidInput, match="dimension"):
        db.insert([1.0, 2.0, 3.0])
    with pytest.raises(InvalidInput, match="dimension"):
        db.search([1.0, 2.0, 3.0])
    with pytest.raises(Conflict, match="already exists"):
        db.insert([0.5, 0.5], id=10)
    with pytest.raises(Conflict):
        db.create_collection("default", 2)
    with pytest.raises(NotFound, match="nope"):
        db.search([1.0, 0.0], collection="nope")
    with pytest.raises(NotFound):
        db.insert([1.0, 0.0], collection="nope")
    with pytest.raises(NotFound):
        db.get(99)
    with pytest.raises(NotFound):
        db.delete(99)
    with pytest.raises(InvalidInput, match="name"):
        db.create_collection("Bad-Name", 4)
    with pytest.raises(InvalidInput, match="metadata"):
        db.insert([1.0, 1.0], metadata={1, 2})
    with pytest.raises(InvalidInput, match="metadata"):
        db.insert([1.0, 1.0], metadata={"big": "x" * (70 * 1024)})
    with pytest.raises(InvalidInput):
        db.insert_batch([[1.0, 1.0], [2.0, 2.0]], ids=[1])
    with pytest.raises(InvalidInput, match=r"k = 0 is outside 1\.\.=10000"):
        db.search([1.0, 0.0], k=0)
    with pytest.raises(InvalidInput, match="k = 10001"):
        db.search([1.0, 0.0], k=10_001)
    with pytest.raises(InvalidInput, match="ef"):
        db.search([1.0, 0.0], ef=0)
    with pytest.raises(InvalidInput):
        db.search([1.0, 0.0], filter="tag = = 3")
    assert db.proof() == before
    # A record of the rejected batches is not there, the others are intact.
    assert db.get(10) == valori.Record(10, [1.0, 0.0], 0, {"a": 1})
    assert db.collection()["rows"] == 2


def test_search_matches_brute_force_with_tags(db: Valori) -> None:
    """Exact and graph search against NumPy brute force on the quantized
    values, with and without a tag filter; ties ordered by id."""
    rng = np.random.default_rng(1)
    base = rng.standard_normal((600, 12)).astype(np.float32)
    base[100] = base[99]  # an exact tie: ordered by id
    tags = (np.arange(600) % 5).tolist()
    ids = db.insert_batch(base, tags=tags)
    assert ids == list(range(600))
    db.wait_for_index()
    for qi in range(20):
        q = base[qi * 7] + rng.standard_normal(12).astype(np.float32) * 0.1
        for tag in (None, 3):
            mask = None if tag is None else np.array(tags) == tag
            expected = brute_force(base, q, 10, mask=mask)
            exact = db.search(q, k=10, tag=tag, exact=True)
            assert [(h.distance, h.id) for h in exact] == expected
            approx = db.search(q, k=10, tag=tag, ef=200)
            assert len({h.id for h in approx} & {i for _, i in expected}) >= 9
            assert all(h.tag == (tag if tag is not None else tags[h.id]) for h in approx)
    tie = db.search(base[99], k=2, exact=True)
    assert [h.id for h in tie] == [99, 100] and tie[0].distance == tie[1].distance == 0.0


def test_numpy_float32_float64_and_lists_store_the_same_values(tmp_path: Path) -> None:
    """The same vectors given as a float32 array, a float64 array, a
    non-contiguous array view and Python lists give the same state hash:
    one conversion for every input form."""
    rng = np.random.default_rng(3)
    data64 = rng.standard_normal((50, 9)) * 100
    data32 = data64.astype(np.float32)
    wide = np.zeros((50, 18), dtype=np.float32)
    wide[:, ::2] = data32
    forms = {
        "f32": data32,
        "f64_rounded": data32.astype(np.float64),
        "lists": data32.tolist(),
        "strided": wide[:, ::2],
        "f64": data64,  # rounded to float32 by the engine, like the others
    }
    hashes = {}
    for name, vectors in forms.items():
        with Valori(tmp_path / name) as c:
            c.insert_batch(vectors)
            hashes[name] = c.proof()["state_hash"]
            assert c.get(7).vector == (q16(data32[7]) / 65536.0).tolist()
    assert len(set(hashes.values())) == 1, hashes


def test_recovery_after_reopen(tmp_path: Path) -> None:
    """Writes are durable: a reopened database has the same proof, the same
    records and continues the engine-chosen ids."""
    path = tmp_path / "d"
    c = Valori(path)
    c.insert_batch([[float(i), 1.0] for i in range(5)], metadata=[{"i": i} for i in range(5)])
    c.delete(2)
    c.set_tag(3, 9)
    c.create_collection("other", 3, metric="cosine")
    c.insert([1.0, 2.0, 3.0], collection="other")
    proof = c.proof()
    hits = c.search([1.0, 1.0], k=5)
    c.close()
    with pytest.raises(ValoriError, match="closed"):
        c.search([1.0, 1.0])

    c2 = Valori(path)
    assert c2.proof() == proof
    assert c2.search([1.0, 1.0], k=5) == hits
    assert c2.insert([9.0, 9.0]) == 5
    assert c2.get(3).tag == 9
    assert [x["name"] for x in c2.collections()] == ["default", "other"]
    c2.close()


def test_large_batches_are_split_into_atomic_chunks(db: Valori) -> None:
    """A batch above the engine's 100,000-record limit is written as
    several events, ids consecutive; a failing chunk leaves the chunks
    before it written and names them."""
    n = valori.BATCH_RECORDS_MAX + 5
    vectors = np.zeros((n, 2), dtype=np.float32)
    vectors[:, 0] = np.arange(n, dtype=np.float32) / 1024
    size0 = db.proof()["log_size"]
    ids = db.insert_batch(vectors, progress=False)
    assert ids == list(range(n))
    # create_collection + two batch events
    assert db.proof()["log_size"] == size0 + 3
    assert db.collection()["rows"] == n

    ids2 = db.insert_batch([[1.0, 1.0]] * 10, batch_size=4)
    assert ids2 == list(range(n, n + 10))
    assert db.proof()["log_size"] == size0 + 3 + 3

    # Chunk 2 of 3 holds an id that exists: chunk 1 stays, 2 and 3 do not.
    with pytest.raises(Conflict) as e:
        db.insert_batch([[2.0, 2.0]] * 9, ids=[900_000, 900_001, 900_002, 5, 900_004, 900_005, 900_006, 900_007, 900_008], batch_size=3)
    assert e.value.committed_ids == [900_000, 900_001, 900_002]
    assert db.get(900_002).id == 900_002
    with pytest.raises(NotFound):
        db.get(900_004)


def test_metadata_is_stored_canonically(db: Valori) -> None:
    """Metadata is any JSON value, stored as compact JSON with sorted keys
    (what REST and SQL store for the same value)."""
    values = [{"b": 1, "a": [True, None], "ü": "ß"}, "text", 42, [1, 2], None]
    db.insert_batch([[float(i), 0.0] for i in range(len(values))], metadata=values)
    assert [db.get(i).metadata for i in range(len(values))] == values
    table = db.sql('SELECT id, metadata FROM "default" ORDER BY id')
    stored = table.column("metadata").to_pylist()
    expected = [json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() if v is not None else b"" for v in values]
    as_bytes = [s if isinstance(s, bytes) else (s or "").encode() for s in stored]
    assert as_bytes == expected
    db.set_metadata(4, {"z": 0, "y": 1})
    assert db.get(4).metadata == {"y": 1, "z": 0}
    db.set_metadata(0, None)
    assert db.get(0).metadata is None
    hits = db.search([1.0, 0.0], k=1)
    assert hits == [Hit(1, 0.0, 0, "text")]


def test_updates_and_deletes_change_search(db: Valori) -> None:
    db.insert_batch([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]], tags=[1, 1, 2])
    db.delete(0)
    assert [h.id for h in db.search([0.0, 0.0], k=3)] == [1, 2]
    db.set_tag(2, 1)
    assert [h.id for h in db.search([0.0, 0.0], k=3, tag=1)] == [1, 2]
    # A deleted id may be inserted again.
    db.insert([0.5, 0.0], id=0)
    assert [h.id for h in db.search([0.0, 0.0], k=1)] == [0]
    assert db.insert([3.0, 0.0]) == 3


def test_metrics(db: Valori) -> None:
    """Distances of the three metrics from independent formulas."""
    a, b = [1.0, 2.0, -0.5], [0.25, -1.0, 3.0]
    qa, qb = q16(a), q16(b)
    dot = sum(int(x) * int(y) for x, y in zip(qa, qb))
    for metric in ("l2", "inner_product", "cosine"):
        db.create_collection(metric, 3, metric=metric)
        db.insert(b, collection=metric)
        (hit,) = db.search(a, k=1, collection=metric)
        if metric == "l2":
            assert hit.distance == l2_distance(a, b)
        elif metric == "inner_product":
            assert hit.distance == -dot / 2**32
        else:
            na = math.isqrt(sum(int(x) ** 2 for x in qa))
            nb = math.isqrt(sum(int(x) ** 2 for x in qb))
            den = na * nb
            assert hit.distance == ((den - dot) * 2**32 // den) / 2**32
    db.drop_collection("cosine")
    assert [c["name"] for c in db.collections()] == ["inner_product", "l2"]


def test_graph(db: Valori) -> None:
    db.create_node(1, label=7)
    db.create_node(2)
    db.create_node(3)
    db.create_edge(1, 2, label=5)
    db.create_edge(3, 1)
    assert db.edges(1) == {"node": 1, "label": 7, "out": [{"to": 2, "label": 5}], "in": [{"from": 3, "label": 0}]}
    with pytest.raises(Conflict):
        db.create_edge(1, 2, label=5)
    db.delete_edge(1, 2, label=5)
    assert db.edges(1)["out"] == []
    with pytest.raises(NotFound):
        db.delete_edge(1, 2, label=5)
    db.delete_node(2)
    with pytest.raises(NotFound):
        db.edges(2)
    graph_hash = db.proof()["graph_hash"]
    assert len(graph_hash) == 64


def test_proof_verify_and_snapshot(tmp_path: Path) -> None:
    """verify() checks every event's bytes, leaf and inclusion proof against
    the state proof, the files by a full replay, and on a second call the
    consistency of the log with the first; a snapshot restores the same
    state."""
    path = tmp_path / "d"
    c = Valori(path)
    c.insert_batch(np.arange(40, dtype=np.float32).reshape(10, 4))
    c.create_node(1)
    r1 = c.verify()
    assert r1["ok"], r1["findings"]
    assert r1["events_checked"] == r1["log_size"] == 3
    p = c.proof()
    assert r1["state_hash"] == p["state_hash"]
    assert [x["name"] for x in p["collections"]] == ["default"]
    ip = c.inclusion_proof(1)
    assert valori._native.leaf_hash(bytes.fromhex(ip["event"])) == ip["leaf"]
    # A proof for another event's bytes does not verify.
    other = c.inclusion_proof(0)
    assert not valori._native.verify_inclusion(other["leaf"], 1, ip["size"], ip["path"], ip["root"])

    c.insert([1.0, 1.0, 1.0, 1.0])
    r2 = c.verify()
    assert r2["ok"], r2["findings"]
    assert any("prefix" in f for f in r2["findings"])

    snap = c.snapshot()
    assert snap["state_hash"] == c.proof()["state_hash"]
    assert (path / "snapshots" / snap["file"]).exists()
    c.insert([2.0, 2.0, 2.0, 2.0])
    final = c.proof()
    c.close()
    c2 = Valori(path)
    assert c2.proof() == final
    assert c2.verify()["ok"]
    c2.close()


def test_sql_to_arrow_pandas_polars(db: Valori) -> None:
    """SQL results come back as pyarrow Tables; the l2() function agrees
    with the search distance."""
    import polars

    db.insert_batch([[0.0, 0.0], [3.0, 4.0], [1.0, 1.0]], tags=[1, 2, 1])
    t = db.sql("SELECT id, tag, l2(vec, '[0, 0]') AS d FROM \"default\" ORDER BY d, id")
    assert t.column("id").to_pylist() == [0, 2, 1]
    assert t.column("d").to_pylist() == [h.distance for h in db.search([0.0, 0.0], k=3)]
    assert t.column("d").to_pylist()[2] == 5.0
    df = t.to_pandas()
    assert df["tag"].tolist() == [1, 1, 2]
    assert polars.from_arrow(t)["id"].to_list() == [0, 2, 1]
    s = db.search_df([0.0, 0.0], k=2)
    assert s.column_names == ["id", "distance", "tag", "metadata"]
    assert s.column("id").to_pylist() == [0, 2]
    with pytest.raises(InvalidInput):
        db.sql("SELEC nonsense")
    with pytest.raises(InvalidInput):
        db.sql("SELECT * FROM missing_table")


def test_search_releases_the_gil(db: Valori) -> None:
    """While a long search runs in one thread, another Python thread keeps
    running: the engine works with the GIL released."""
    rng = np.random.default_rng(5)
    db.insert_batch(rng.standard_normal((20_000, 64)).astype(np.float32), progress=False)
    queries = rng.standard_normal((400, 64)).astype(np.float32)
    start = time.perf_counter()
    db.search_many(queries[:20], k=10, exact=True)
    per_query = (time.perf_counter() - start) / 20
    done = threading.Event()

    def work() -> None:
        db.search_many(queries, k=10, exact=True)
        done.set()

    t = threading.Thread(target=work)
    spins = 0
    t.start()
    while not done.is_set():
        spins += 1
    t.join()
    # Had the search held the GIL for its whole duration (hundreds of
    # milliseconds), this loop could not have run in between.
    assert per_query * 400 > 0.05
    assert spins > 100_000, spins


def test_same_directory_twice_shares_one_engine(tmp_path: Path) -> None:
    a = Valori(tmp_path / "d")
    b = Valori(tmp_path / "d")
    a.insert([1.0])
    assert b.proof() == a.proof()
    assert b.get(0).vector == [1.0]
    a.close()
    assert b.search([1.0], k=1)[0].id == 0
    b.close()


def test_filter_matches_brute_force(db: Valori) -> None:
    """search(filter=...) runs the query DSL: the hits equal NumPy's brute
    force over the rows the where clause keeps."""
    rng = np.random.default_rng(9)
    base = rng.standard_normal((300, 6)).astype(np.float32)
    tags = (np.arange(300) % 4).tolist()
    db.insert_batch(base, tags=tags, metadata=[{"row": i, "even": i % 2 == 0} for i in range(300)])
    q = rng.standard_normal(6).astype(np.float32)
    ids = np.arange(300)
    mask = (np.array(tags) == 2) & (ids < 150)
    hits = db.search(q, k=5, filter="tag = 2 AND id < 150", exact=True)
    assert [(h.distance, h.id) for h in hits] == brute_force(base, q, 5, mask=mask)
    assert all(h.tag == 2 for h in hits)
    assert [h.metadata for h in hits] == [{"row": h.id, "even": h.id % 2 == 0} for h in hits]
    t = db.query("FROM default NEAREST $q K 3 WHERE tag = 1 EXACT", {"q": q.tolist()})
    assert t.column("id").to_pylist() == [i for _, i in brute_force(base, q, 3, mask=np.array(tags) == 1)]
    many = db.search_many(base[:3], k=2, filter="id >= 10", exact=True)
    assert [[h.id for h in row] for row in many] == [[i for _, i in brute_force(base, b, 2, mask=ids >= 10)] for b in base[:3]]


DEEP_SQL = [
    "SELECT 1 WHERE " + " OR ".join(["1=1"] * 10_000),
    "SELECT " + "NOT " * 50_000 + "true",
    "SELECT 7" + "::bigint" * 20_000,
]
DEEP_FILTERS = [
    "(" * 20_000 + "id = 1" + ")" * 20_000,
    "NOT " * 50_000 + "id = 1",
    " OR ".join(["id = 1"] * 20_000),
]


def check_deep_statements_refused(c: Valori) -> None:
    """Statements shaped to exhaust a thread's stack are refused with
    InvalidInput naming the limit, through sql(), query() and a search
    filter, and change nothing."""
    c.insert_batch([[1.0, 0.0], [0.0, 1.0]], tags=[1, 2])
    before = c.proof()
    for text in DEEP_SQL:
        with pytest.raises(InvalidInput, match="nested more than|chain longer than|term longer than"):
            c.sql(text)
    for f in DEEP_FILTERS:
        with pytest.raises(InvalidInput, match="nested more than|chain longer than|term longer than"):
            c.query("FROM default NEAREST [1, 0] K 2 WHERE " + f)
        with pytest.raises(InvalidInput, match="nested more than|chain longer than|term longer than"):
            c.search([1.0, 0.0], k=2, filter=f)
    # Still serving, state unchanged.
    assert [h.id for h in c.search([1.0, 0.0], k=1)] == [0]
    assert c.proof() == before


def test_deep_statements_are_refused(db: Valori) -> None:
    check_deep_statements_refused(db)
