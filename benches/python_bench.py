#!/usr/bin/env python3
"""Valori's Python API next to the same operations in Rust and next to
hnswlib's Python API, in one run, on one data set.

    python benches/python_bench.py [--dataset glove50-100k-l2] [--queries 1000]
        [--ef 64,128] [--parity target/release/python-parity]

Run it with a *release* install of the package (`pip install ./python`); a
`maturin develop` build is unoptimized outside the distance kernels and
measures that instead. It needs numpy and hnswlib (`pip install hnswlib`).

Measured, each side on a fresh index with M = 16, ef_construction = 64:

- insert: `Valori.insert_batch(array)` of the whole base set (durable:
  acknowledged after fsync, in the chunks the client cuts) against the Rust
  binary `python-parity` doing the same submits, and hnswlib's
  `add_items` (in memory, graph built inside the call, all cores);
- index: Valori builds the graph in the background after the ack; the time
  until `wait_for_index()` returns is reported beside it;
- search: every query in one batched call on all cores
  (`Valori.search_many`, hnswlib `knn_query(num_threads=…)`, the Rust binary
  splitting the queries over threads), at each `ef` and exact, with
  recall@10 against the data set's ground truth; and Valori's per-query
  `search()` in a loop, to show the cost of one Python call.

Prints a Markdown table and one JSON line with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def read_vecs(path: Path, dtype: str) -> np.ndarray:
    raw = np.fromfile(path, dtype="<i4")
    dim = int(raw[0])
    return np.ascontiguousarray(raw.reshape(-1, dim + 1)[:, 1:]).view(dtype)


def data_dir(name: str) -> Path:
    for base in (
        Path(os.environ["VALORI_DATA"]) if "VALORI_DATA" in os.environ else None,
        ROOT.parent / "shared" / "data",
        Path("/work/shared/data"),
    ):
        if base is not None and (base / name / "base.fvecs").exists():
            return base / name
    sys.exit(f"{name} not found: set VALORI_DATA")


def recall(ids: np.ndarray, truth: np.ndarray) -> float:
    return sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(ids, truth)) / truth.size


def bench_valori(base, queries, truth, efs, threads):
    import valori

    native = Path(valori._native.__file__)
    out = {"native": str(native), "native_mb": round(native.stat().st_size / 2**20, 1)}
    with tempfile.TemporaryDirectory() as tmp:
        db = valori.Valori(Path(tmp) / "db")
        db.create_collection("bench", base.shape[1], m=16, ef_construction=64)
        t = time.perf_counter()
        db.insert_batch(base, collection="bench", progress=False)
        out["insert_s"] = time.perf_counter() - t
        t = time.perf_counter()
        db.wait_for_index()
        out["index_s"] = time.perf_counter() - t
        out["search"] = []
        for label, kw in [(f"ef={ef}", {"ef": ef}) for ef in efs] + [("exact", {"exact": True})]:
            t = time.perf_counter()
            hits = db.search_many(queries, k=10, collection="bench", **kw)
            secs = time.perf_counter() - t
            ids = np.array([[h.id for h in row] for row in hits])
            out["search"].append({"mode": label, "qps": len(queries) / secs, "recall": recall(ids, truth)})
        t = time.perf_counter()
        n_single = min(len(queries), 300)
        for q in queries[:n_single]:
            db.search(q, k=10, ef=efs[0], collection="bench")
        out["single_qps"] = n_single / (time.perf_counter() - t)
        db.close()
    return out


def bench_hnswlib(base, queries, truth, efs, threads):
    import hnswlib

    out = {"version": getattr(hnswlib, "__version__", "?")}
    index = hnswlib.Index(space="l2", dim=base.shape[1])
    index.init_index(max_elements=len(base), M=16, ef_construction=64, random_seed=100)
    t = time.perf_counter()
    index.add_items(base, np.arange(len(base)), num_threads=threads)
    out["insert_s"] = time.perf_counter() - t
    out["search"] = []
    for ef in efs:
        index.set_ef(ef)
        t = time.perf_counter()
        ids, _ = index.knn_query(queries, k=10, num_threads=threads)
        secs = time.perf_counter() - t
        out["search"].append({"mode": f"ef={ef}", "qps": len(queries) / secs, "recall": recall(ids, truth)})
    index.set_ef(efs[0])
    t = time.perf_counter()
    n_single = min(len(queries), 300)
    for q in queries[:n_single]:
        index.knn_query(q, k=10, num_threads=1)
    out["single_qps"] = n_single / (time.perf_counter() - t)
    return out


def bench_rust(binary: Path, dataset: str, nq: int, efs):
    text = subprocess.run(
        [str(binary), dataset, str(nq), ",".join(map(str, efs))],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="glove50-100k-l2")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--ef", default="64,128")
    ap.add_argument("--parity", type=Path, default=ROOT / "target" / "release" / "python-parity")
    args = ap.parse_args()
    efs = [int(e) for e in args.ef.split(",")]
    threads = os.cpu_count() or 1
    d = data_dir(args.dataset)
    os.environ.setdefault("VALORI_DATA", str(d.parent))
    base = read_vecs(d / "base.fvecs", "<f4")
    queries = read_vecs(d / "query.fvecs", "<f4")[: args.queries]
    truth = read_vecs(d / "groundtruth.ivecs", "<i4")[: len(queries), :10]

    if not args.parity.exists():
        print(f"building {args.parity.name} (release)", file=sys.stderr)
        subprocess.run(
            ["cargo", "build", "-q", "--release", "-p", "valori-benches", "--bin", "python-parity"],
            cwd=ROOT,
            check=True,
        )
    rust = bench_rust(args.parity, args.dataset, len(queries), efs)
    py = bench_valori(base, queries, truth, efs, threads)
    hl = bench_hnswlib(base, queries, truth, efs, threads)

    n = len(base)
    print(f"\n{args.dataset}: {n:,} × {base.shape[1]}, {len(queries)} queries, {threads} threads, "
          f"{platform.python_implementation()} {platform.python_version()}, native module {py['native_mb']} MB\n")
    print("| operation | Valori Python | Valori Rust | hnswlib Python | Python / Rust | Valori Python / hnswlib |")
    print("|---|---|---|---|---|---|")
    print(f"| insert (vectors/s; Valori durable, graph later) | {n / py['insert_s']:,.0f} | {n / rust['insert_s']:,.0f} | "
          f"{n / hl['insert_s']:,.0f} (graph built) | {rust['insert_s'] / py['insert_s']:.2f} | {hl['insert_s'] / py['insert_s']:.2f} |")
    print(f"| insert + graph complete (s) | {py['insert_s'] + py['index_s']:.1f} | {rust['insert_s'] + rust['index_s']:.1f} | "
          f"{hl['insert_s']:.1f} | {(rust['insert_s'] + rust['index_s']) / (py['insert_s'] + py['index_s']):.2f} | "
          f"{hl['insert_s'] / (py['insert_s'] + py['index_s']):.2f} |")
    rs = {s["mode"]: s for s in rust["search"]}
    hs = {s["mode"]: s for s in hl["search"]}
    for s in py["search"]:
        r, h = rs.get(s["mode"]), hs.get(s["mode"])
        print(f"| batched search {s['mode']} (QPS, recall@10) | {s['qps']:,.0f} ({s['recall']:.4f}) | "
              f"{r['qps']:,.0f} ({r['recall']:.4f}) | "
              + (f"{h['qps']:,.0f} ({h['recall']:.4f})" if h else "–")
              + f" | {s['qps'] / r['qps']:.2f} | " + (f"{s['qps'] / h['qps']:.2f}" if h else "–") + " |")
    print(f"| one query per call, ef={efs[0]} (QPS) | {py['single_qps']:,.0f} | – | {hl['single_qps']:,.0f} | – | "
          f"{py['single_qps'] / hl['single_qps']:.2f} |")
    print(json.dumps({"valori_python": py, "valori_rust": rust, "hnswlib": hl}))


if __name__ == "__main__":
    main()
