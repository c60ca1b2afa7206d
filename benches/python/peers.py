#!/usr/bin/env python3
"""HNSW peers of Valori's index on one data set: hnswlib and faiss-cpu.

For a folder of ../shared/data (TEXMEX base.fvecs, query.fvecs,
groundtruth.ivecs) each peer builds an HNSW index with the given M and
ef_construction on `--threads` threads (build wall time measured), then
searches single-threaded for every ef of `--ef`: recall@10 against the first
10 ids of groundtruth.ivecs and queries per second.

`qps` is one query per call in a loop (`knn_query(q[i:i+1])`,
`index.search(q[i:i+1])`), the same shape as Valori's per-query API, so it
includes the Python call overhead of each peer (measured on its own in
`call_overhead_us`). `qps_batch` passes all queries in one call, still on
one thread, and is reported for information.

Prints one JSON object to stdout; progress goes to stderr.

    python benches/python/peers.py --dataset glove50-100k-l2 --m 16 \
        --ef-construction 200 --threads 2 --ef 10,16,32,64,128
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

K = 10
# hnswlib's default seed, given explicitly so that the build is repeatable
# (faiss's level generator has a fixed seed of its own).
HNSWLIB_SEED = 100


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def read_vecs(path, dtype):
    raw = np.fromfile(path, dtype=np.int32)
    if raw.size == 0:
        raise ValueError(f"{path}: empty")
    dim = int(raw[0])
    rows = raw.size // (dim + 1)
    if rows * (dim + 1) != raw.size:
        raise ValueError(f"{path}: size is not a whole number of rows of dimension {dim}")
    mat = raw.reshape(rows, dim + 1)
    if not np.all(mat[:, 0] == dim):
        raise ValueError(f"{path}: rows of different dimensions")
    return np.ascontiguousarray(mat[:, 1:]).view(dtype)


def default_data_dir():
    if "VALORI_DATA" in os.environ:
        return Path(os.environ["VALORI_DATA"])
    return Path(__file__).resolve().parents[3] / "shared" / "data"


def recall_at_k(found, truth):
    """Mean over queries of |found ∩ truth| / K; `found` may hold -1 for
    "no result" (faiss), which never matches an id."""
    hits = 0
    for f, t in zip(found, truth):
        hits += len(set(int(x) for x in f[:K]) & set(int(x) for x in t[:K]))
    return hits / (K * len(truth))


def best_loop(rounds, run):
    """Best wall time of `rounds` calls of `run()`, with the result of the
    last call. Best-of, because the VM is shared and noise only slows."""
    best = float("inf")
    result = None
    for _ in range(rounds):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


class Hnswlib:
    name = "hnswlib"

    def __init__(self):
        import hnswlib

        self.mod = hnswlib
        self.version = getattr(hnswlib, "__version__", None)
        if self.version is None:
            from importlib.metadata import version

            self.version = version("hnswlib")
        # hnswlib ships as source only; pip compiles it with -march=native
        # (unless HNSWLIB_NO_NATIVE was set at install, which the driver does
        # not do), so it uses every SIMD extension the CPU has.
        self.build_info = "source build, -march=native"

    def build(self, base, m, efc, threads):
        index = self.mod.Index(space="l2", dim=base.shape[1])
        index.init_index(
            max_elements=base.shape[0], M=m, ef_construction=efc, random_seed=HNSWLIB_SEED
        )
        ids = np.arange(base.shape[0], dtype=np.int64)
        start = time.perf_counter()
        index.add_items(base, ids, num_threads=threads)
        elapsed = time.perf_counter() - start
        index.set_num_threads(1)
        self.index = index
        return elapsed

    def set_ef(self, ef):
        self.index.set_ef(ef)

    def one(self, q):
        labels, _ = self.index.knn_query(q, k=K)
        return labels[0]

    def batch(self, queries):
        labels, _ = self.index.knn_query(queries, k=K, num_threads=1)
        return labels


class Faiss:
    name = "faiss"

    def __init__(self):
        import faiss

        self.mod = faiss
        self.version = faiss.__version__
        # Which of the wheel's builds was loaded (AVX2, AVX512, ...).
        self.build_info = faiss.get_compile_options().strip()

    def build(self, base, m, efc, threads):
        index = self.mod.IndexHNSWFlat(base.shape[1], m)
        index.hnsw.efConstruction = efc
        self.mod.omp_set_num_threads(threads)
        start = time.perf_counter()
        index.add(base)
        elapsed = time.perf_counter() - start
        self.mod.omp_set_num_threads(1)
        self.index = index
        return elapsed

    def set_ef(self, ef):
        self.index.hnsw.efSearch = ef

    def one(self, q):
        _, labels = self.index.search(q, K)
        return labels[0]

    def batch(self, queries):
        _, labels = self.index.search(queries, K)
        return labels


def call_overhead_us(peer_class, base, queries, rounds):
    """Time of one per-query call on an index of only K vectors (ef = K):
    the search itself is next to nothing, so this is about the fixed cost
    of a call from Python, which the per-query `qps` includes and Valori's
    Rust loop does not."""
    tiny = peer_class()
    tiny.build(np.ascontiguousarray(base[:K]), 16, 40, 1)
    tiny.set_ef(K)
    q0 = queries[0:1]
    n = 2000
    t, _ = best_loop(rounds, lambda: [tiny.one(q0) for _ in range(n)])
    return t / n * 1e6


def measure(peer, base, queries, truth, args):
    log(f"{peer.name} {peer.version}: building {base.shape[0]} x {base.shape[1]} "
        f"M={args.m} efc={args.ef_construction} threads={args.threads}")
    build = []
    for _ in range(args.build_rounds):
        build.append(peer.build(base, args.m, args.ef_construction, args.threads))
    log(f"  build {min(build):.2f} s (rounds: {', '.join(f'{b:.2f}' for b in build)})")

    overhead_us = call_overhead_us(type(peer), base, queries, args.rounds)

    sweep = []
    nq = queries.shape[0]
    for ef in args.ef:
        peer.set_ef(ef)
        rows = [queries[i:i + 1] for i in range(nq)]
        t_one, found = best_loop(args.rounds, lambda: [peer.one(r) for r in rows])
        t_batch, found_b = best_loop(args.rounds, lambda: peer.batch(queries))
        recall = recall_at_k(found, truth)
        recall_b = recall_at_k(found_b, truth)
        sweep.append({
            "ef": ef,
            "recall": recall,
            "qps": nq / t_one,
            "mean_latency_us": t_one / nq * 1e6,
            "recall_batch": recall_b,
            "qps_batch": nq / t_batch,
        })
        log(f"  ef={ef:4d} recall@10={recall:.4f} qps={nq / t_one:9.0f} "
            f"(batch {nq / t_batch:9.0f})")
    return {
        "version": peer.version,
        "build_info": peer.build_info,
        "build_s": min(build),
        "build_rounds_s": build,
        "call_overhead_us": overhead_us,
        "search": sweep,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", required=True, help="folder under the data directory")
    ap.add_argument("--data-dir", type=Path, default=default_data_dir())
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--ef", type=lambda s: [int(x) for x in s.split(",")],
                    default=[10, 16, 24, 32, 48, 64, 96, 128, 192, 256])
    ap.add_argument("--rounds", type=int, default=3, help="search timing: best of this many")
    ap.add_argument("--build-rounds", type=int, default=1)
    ap.add_argument("--peers", default="hnswlib,faiss")
    args = ap.parse_args()

    folder = args.data_dir / args.dataset
    base = read_vecs(folder / "base.fvecs", np.float32)
    queries = read_vecs(folder / "query.fvecs", np.float32)
    truth = read_vecs(folder / "groundtruth.ivecs", np.int32)
    if truth.shape[0] != queries.shape[0] or truth.shape[1] < K:
        raise ValueError(f"{folder}: ground truth does not match the queries")
    if base.shape[1] != queries.shape[1]:
        raise ValueError(f"{folder}: base and queries differ in dimension")

    peers = {"hnswlib": Hnswlib, "faiss": Faiss}
    out = {
        "dataset": args.dataset,
        "rows": int(base.shape[0]),
        "dim": int(base.shape[1]),
        "queries": int(queries.shape[0]),
        "m": args.m,
        "ef_construction": args.ef_construction,
        "threads": args.threads,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "peers": {},
    }
    for name in args.peers.split(","):
        peer = peers[name]()
        out["peers"][name] = measure(peer, base, queries, truth, args)
        del peer
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
