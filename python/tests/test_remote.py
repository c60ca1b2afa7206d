"""The remote mode against a started `valori serve`: the same calls give
the same results and the same state as the embedded engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest

from valori import Conflict, InvalidInput, NotFound, Unauthorized, Valori, ValoriError

from conftest import Server, data_dir, read_fvecs
from reference import brute_force

GLOVE = data_dir("glove50-100k-l2")


def workload(c: Valori) -> Dict[str, Any]:
    """A mix of every kind of write and read; returns what it observed."""
    out: Dict[str, Any] = {}
    rng = np.random.default_rng(11)
    # The default collection, created by the first insert.
    out["ids1"] = c.insert_batch(
        [[0.1] * 16, [0.2] * 16],
        metadata=[{"b": 1.5, "a": ["x", None, True]}, {"word": "grüße", "n": -7}],
    )
    out["id2"] = c.insert([0.3] * 16, tag=4, metadata="plain")
    out["id3"] = c.insert([-0.25] * 16, id=100)
    # Fewer than 256 rows per collection: no graph block is complete, so
    # approximate answers cannot depend on how far each side's background
    # index builder got.
    vecs = rng.standard_normal((200, 16)).astype(np.float32)
    out["ids4"] = c.insert_batch(vecs, tags=(np.arange(200) % 3).tolist(), batch_size=70)
    out["ids5"] = c.insert_batch(rng.standard_normal((5, 16)) * 3.3)  # float64, rounded once
    c.delete(1)
    c.set_tag(0, 2)
    c.set_metadata(100, {"z": [1, 2, {"y": None}]})
    c.create_collection("docs", 8, metric="cosine", m=8, ef_construction=32)
    c.insert_batch(rng.standard_normal((40, 8)).astype(np.float32), collection="docs")
    c.create_collection("ip", 4, metric="inner_product")
    c.insert([1.0, 2.0, 3.0, 4.0], collection="ip")
    c.create_collection("gone", 2)
    c.drop_collection("gone")
    c.create_node(1, label=3)
    c.create_node(2)
    c.create_edge(1, 2, label=9)
    out["edges"] = c.edges(1)
    # Searches: small and exact, tag-filtered, graph, other metrics.
    searches: List[Any] = []
    for q in rng.standard_normal((8, 16)).astype(np.float32):
        searches.append(c.search(q, k=10))
        searches.append(c.search(q, k=7, tag=1))
        searches.append(c.search(q, k=5, exact=True))
        searches.append(c.search(q, k=5, ef=100))
    searches.append(c.search([0.5] * 8, k=3, collection="docs"))
    searches.append(c.search([1.0, 0.0, 0.0, 0.0], k=1, collection="ip"))
    searches.append(c.search([0.2] * 16, k=6, filter="tag = 1 AND id < 150", exact=True))
    out["searches"] = searches
    out["many"] = c.search_many(vecs[:6], k=4, exact=True)
    out["df"] = c.search_df(vecs[0], k=5).to_pylist()
    out["get"] = [c.get(0), c.get(100), c.get(out["ids5"][0])]
    out["collections"] = [{k: v for k, v in x.items() if k != "indexed"} for x in c.collections()]
    out["sql"] = c.sql('SELECT id, tag, l2(vec, \'[0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1]\') AS d FROM "default" ORDER BY d, id LIMIT 20').to_pylist()
    # SQL writes and reads with parameters, the same statements as psql's.
    out["sql_statements"] = [
        c.sql("CREATE TABLE sqlt (id BIGINT PRIMARY KEY, vec VECTOR(3), tag BIGINT)").to_pylist(),
        c.sql(
            "INSERT INTO sqlt (id, vec, tag) VALUES ($1, $2, $3), ($4, $5, $6)",
            [1, [1.0, 0.0, 0.0], 7, 2, np.array([0, 1, 0], dtype=np.float32), 8],
        ).to_pylist(),
        c.sql("SELECT id FROM sqlt WHERE tag = $2 ORDER BY vec <-> $1 LIMIT 1", [[0.1, 0.9, 0.0], 7]).to_pylist(),
        c.sql("SELECT id FROM sqlt ORDER BY vec <-> $1 LIMIT 1", [[0.1, 0.9, 0.0]]).to_pylist(),
        c.sql("SHOW valori.exact").to_pylist(),
    ]
    # Errors of each kind, which must change nothing.
    errors = []
    for call in (
        lambda: c.insert([1.0] * 3),
        lambda: c.insert([0.0] * 16, id=100),
        lambda: c.search([0.0] * 16, collection="missing"),
        lambda: c.get(999_999),
        lambda: c.create_collection("docs", 8),
        lambda: c.insert([float("nan")] + [0.0] * 15),
        lambda: c.insert_batch(np.full((2, 16), np.inf, dtype=np.float32)),
        lambda: c.insert([40_000.0] * 16),
        lambda: c.search([0.0] * 16, k=10_001),
        lambda: c.sql("INSERT INTO sqlt (id, vec) VALUES ($1, $2)", [1, [1, 1, 1]]),
        lambda: c.sql("INSERT INTO nowhere (id, vec) VALUES (1, '[1]')"),
        lambda: c.sql("SELECT id FROM sqlt ORDER BY vec <-> $1 LIMIT 1", [[1, 2]]),
    ):
        try:
            call()
            errors.append(None)
        except (InvalidInput, NotFound, Conflict) as e:
            errors.append(type(e).__name__)
    out["errors"] = errors
    out["proof"] = c.proof()
    return out


def test_same_operations_same_results_and_state(tmp_path: Path, remote: Valori) -> None:
    """The workload embedded and over REST: the same ids, hits (ids,
    distances, tags, metadata), records, SQL rows, error classes, and the
    same state hash, log root and per-collection hashes."""
    with Valori(tmp_path / "embedded") as local:
        a = workload(local)
    b = workload(remote)
    for key in a:
        if key != "proof":
            assert a[key] == b[key], key
    pa, pb = a["proof"], b["proof"]
    assert pa["state_hash"] == pb["state_hash"]
    assert pa["log_size"] == pb["log_size"]
    assert pa["log_root"] == pb["log_root"]
    assert pa["graph_hash"] == pb["graph_hash"]
    assert [(x["name"], x["hash"]) for x in pa["collections"]] == [(x["name"], x["hash"]) for x in pb["collections"]]
    assert a["errors"] == ["InvalidInput", "Conflict", "NotFound", "NotFound", "Conflict"] + ["InvalidInput"] * 4 + [
        "Conflict",
        "NotFound",
        "InvalidInput",
    ]
    assert a["sql_statements"] == [
        [{"command": "CREATE TABLE", "rows": None}],
        [{"command": "INSERT", "rows": 2}],
        [{"id": 1}],
        [{"id": 2}],
        [{"valori.exact": "off"}],
    ]


def test_remote_verify_checks_proofs_client_side(remote: Valori) -> None:
    """verify() over REST: every event's bytes hash to its leaf, whose
    inclusion proof leads to the state proof's root; a second verify checks
    the log only grew."""
    remote.insert_batch([[1.0, 2.0], [3.0, 4.0]])
    r1 = remote.verify()
    assert r1["ok"], r1["findings"]
    assert r1["events_checked"] == r1["log_size"] == 2
    remote.insert([5.0, 6.0])
    r2 = remote.verify()
    assert r2["ok"], r2["findings"]
    assert any("prefix" in f for f in r2["findings"])
    snap = remote.snapshot()
    assert snap["state_hash"] == remote.proof()["state_hash"]


@pytest.mark.skipif(GLOVE is None, reason="shared/data/glove50-100k-l2 not found")
def test_remote_glove_subset_matches_brute_force(remote: Valori) -> None:
    """5,000 real vectors over REST: exact hits equal NumPy's brute force on
    the quantized values."""
    assert GLOVE is not None
    base = read_fvecs(GLOVE / "base.fvecs", rows=5000)
    queries = read_fvecs(GLOVE / "query.fvecs", rows=20)
    remote.insert_batch(base)
    for q in queries:
        hits = remote.search(q, k=10, exact=True)
        assert [(h.distance, h.id) for h in hits] == brute_force(base, q, 10)


def test_api_keys_and_roles(server_binary: Path, tmp_path: Path) -> None:
    """With users configured, the key goes as a bearer token: a write key
    writes, a read key reads but cannot write, no key or a wrong one is
    refused; refusals raise Unauthorized and change nothing."""
    s = Server(server_binary, tmp_path / "data", ["--user", "alice:k-write:write", "--user", "bob:k-read:read"])
    try:
        writer = Valori(remote=s.url, api_key="k-write")
        reader = Valori(remote=s.url, api_key="k-read")
        writer.insert([1.0, 2.0])
        before = writer.proof()
        assert reader.search([1.0, 2.0], k=1)[0].id == 0
        with pytest.raises(Unauthorized) as e:
            reader.insert([3.0, 4.0])
        assert e.value.status == 403
        for key in (None, "wrong"):
            with pytest.raises(Unauthorized) as e:
                Valori(remote=s.url, api_key=key).search([1.0, 2.0])
            assert e.value.status == 401
        assert writer.proof() == before
    finally:
        s.stop()


def test_deep_statements_are_refused_remotely(remote: Valori) -> None:
    """The same deep statements over REST: refused, the server still up."""
    from test_embedded import check_deep_statements_refused

    check_deep_statements_refused(remote)


def _outcome(call: Any) -> Any:
    """What a call did: ``("ok", result)`` or the error's class, code and
    message."""
    try:
        return ("ok", call())
    except ValoriError as e:
        return (type(e).__name__, e.code, e.message)


def test_embedded_and_remote_refuse_alike(tmp_path: Path, remote: Valori) -> None:
    """The same bad input, embedded and over REST: the same exception
    class, the same code and the same message (each is decided once, in
    the shared operations), and nothing changes."""
    with Valori(tmp_path / "embedded") as local:
        for c in (local, remote):
            c.create_collection("docs", 2)
            c.insert([1.0, 0.0], id=1, tag=3, collection="docs")
        too_long = "tag = 3" + " " * (1 << 20)
        cases = [
            ("metric euclidean", lambda c: c.create_collection("m1", 2, metric="euclidean"), "InvalidInput", "bad_request"),
            ("metric dot", lambda c: c.create_collection("m2", 2, metric="dot"), "InvalidInput", "bad_request"),
            ("dimension 0", lambda c: c.create_collection("m3", 0), "InvalidInput", "bad_request"),
            ("k 0", lambda c: c.search([1.0, 0.0], k=0, collection="docs"), "InvalidInput", "bad_request"),
            ("k 10001", lambda c: c.search([1.0, 0.0], k=10_001, collection="docs"), "InvalidInput", "bad_request"),
            ("k 0 filtered", lambda c: c.search([1.0, 0.0], k=0, filter="tag = 3", collection="docs"), "InvalidInput", "bad_request"),
            ("ef 0", lambda c: c.search([1.0, 0.0], ef=0, collection="docs"), "InvalidInput", "bad_request"),
            ("ef 10001", lambda c: c.search([1.0, 0.0], ef=10_001, collection="docs"), "InvalidInput", "bad_request"),
            ("query dimension", lambda c: c.search([1.0], collection="docs"), "InvalidInput", "bad_request"),
            ("unknown collection", lambda c: c.search([1.0, 0.0], collection="nope"), "NotFound", "not_found"),
            ("NaN", lambda c: c.insert([float("nan"), 0.0], collection="docs"), "InvalidInput", "bad_request"),
            ("NaN with id", lambda c: c.insert([0.0, float("nan")], id=9, collection="docs"), "InvalidInput", "bad_request"),
            ("out of range", lambda c: c.insert([40_000.0, 0.0], collection="docs"), "InvalidInput", "bad_request"),
            ("batch out of range", lambda c: c.insert_batch([[0.0, 0.0], [0.0, -1e6]], collection="docs"), "InvalidInput", "bad_request"),
            ("insert dimension", lambda c: c.insert([1.0, 2.0, 3.0], id=7, collection="docs"), "InvalidInput", "bad_request"),
            ("duplicate id", lambda c: c.insert([1.0, 0.0], id=1, collection="docs"), "Conflict", "conflict"),
            ("metadata too large", lambda c: c.insert([1.0, 0.0], id=8, metadata="x" * 70_000, collection="docs"), "TooLarge", "payload_too_large"),
            ("filter too long", lambda c: c.search([1.0, 0.0], filter=too_long, collection="docs"), "TooLarge", "payload_too_large"),
        ]
        before = (local.proof()["state_hash"], remote.proof()["state_hash"])
        for name, call, cls, code in cases:
            a, b = _outcome(lambda: call(local)), _outcome(lambda: call(remote))
            assert a == b, f"{name}: embedded {a} != remote {b}"
            assert a[:2] == (cls, code), f"{name}: {a}"
        assert (local.proof()["state_hash"], remote.proof()["state_hash"]) == before
        # The documented spellings are accepted by both.
        for c in (local, remote):
            c.create_collection("by_ip", 2, metric="ip")
            c.create_collection("by_upper", 2, metric="Cosine")
            assert [x["metric"] for x in c.collections() if x["name"].startswith("by_")] == ["inner_product", "cosine"]
