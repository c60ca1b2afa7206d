"""GloVe 50-d word vectors in Valori: bulk insert, search, recall against the
exact ground truth, a SQL query and the state proof.

    python examples/glove.py [DATA_DIR] [--db PATH] [--remote URL] [--queries N]

DATA_DIR holds glove50-100k-l2 in TEXMEX format (base.fvecs, query.fvecs,
groundtruth.ivecs); default: ../shared/data/glove50-100k-l2 from the
repository root, or /work/shared/data/glove50-100k-l2.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from valori import Valori


def read_fvecs(path: Path) -> np.ndarray:
    raw = np.fromfile(path, dtype="<i4")
    dim = int(raw[0])
    return raw.reshape(-1, dim + 1)[:, 1:].copy().view("<f4")


def read_ivecs(path: Path) -> np.ndarray:
    raw = np.fromfile(path, dtype="<i4")
    k = int(raw[0])
    return raw.reshape(-1, k + 1)[:, 1:]


def default_data() -> Path:
    here = Path(__file__).resolve().parents[2]
    for base in (here.parent / "shared" / "data", Path("/work/shared/data")):
        if (base / "glove50-100k-l2" / "base.fvecs").exists():
            return base / "glove50-100k-l2"
    sys.exit("glove50-100k-l2 not found: pass its folder as the first argument")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", nargs="?", type=Path, default=None)
    ap.add_argument("--db", type=Path, default=None, help="embedded data directory (default: a temporary one)")
    ap.add_argument("--remote", default=None, help="a valori serve URL instead of the embedded engine")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=10)
    args = ap.parse_args()
    data = args.data or default_data()

    base = read_fvecs(data / "base.fvecs")
    queries = read_fvecs(data / "query.fvecs")[: args.queries]
    truth = read_ivecs(data / "groundtruth.ivecs")[: args.queries, : args.k]
    print(f"data: {data.name}: {base.shape[0]} x {base.shape[1]} base vectors, {len(queries)} queries")

    tmp = None
    if args.remote:
        client = Valori(remote=args.remote)
    else:
        path = args.db
        if path is None:
            tmp = tempfile.mkdtemp(prefix="valori-glove-")
            path = Path(tmp) / "db"
        client = Valori(path)
    print(f"client: {client!r}")

    name = "glove"
    if any(c["name"] == name for c in client.collections()):
        client.drop_collection(name)
    client.create_collection(name, dim=base.shape[1], metric="l2", m=16, ef_construction=64)

    t = time.perf_counter()
    ids = client.insert_batch(base, collection=name, progress=True)
    dt = time.perf_counter() - t
    assert ids == list(range(len(base)))
    print(f"insert: {len(base)} vectors in {dt:.2f} s ({len(base) / dt:,.0f} vectors/s, durable)")

    if client.mode == "embedded":
        t = time.perf_counter()
        client.wait_for_index()
        print(f"index: HNSW graph built in {time.perf_counter() - t:.1f} s after the insert returned")

    def recall(hits) -> float:
        found = sum(len({h.id for h in row} & set(truth[i].tolist())) for i, row in enumerate(hits))
        return found / truth.size

    for label, kwargs in (("exact", {"exact": True}), ("hnsw ef=64", {"ef": 64}), ("hnsw ef=128", {"ef": 128})):
        t = time.perf_counter()
        hits = client.search_many(queries, k=args.k, collection=name, **kwargs)
        dt = time.perf_counter() - t
        print(f"search {label:12s}: recall@{args.k} {recall(hits):.4f}, {len(queries) / dt:,.0f} queries/s")

    word = client.search(queries[0], k=3, collection=name)
    print(f"nearest to query 0: {[(h.id, round(h.distance, 4)) for h in word]}")

    table = client.sql(f"SELECT count(*) AS n, min(id) AS first, max(id) AS last FROM {name}")
    print(f"sql: {table.to_pylist()}")

    proof = client.proof()
    print(f"proof: state_hash {proof['state_hash']}, log {proof['log_size']} events, root {proof['log_root']}")
    report = client.verify(events=100)
    print(f"verify: {'ok' if report['ok'] else 'FAILED'} ({report['events_checked']} events checked)")
    client.close()
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
