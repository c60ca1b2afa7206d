#!/usr/bin/env python3
"""HNSW peers of Valori's index on one data set: hnswlib, faiss-cpu, usearch.

For a folder of ../shared/data (TEXMEX base.fvecs, query.fvecs,
groundtruth.ivecs) each peer builds an HNSW index with the given M and
ef_construction on `--threads` threads (build wall time measured), then
searches single-threaded for every ef of `--ef`: recall@10 against the first
10 ids of groundtruth.ivecs and queries per second.

`qps` is one query per call in a loop (`knn_query(q[i:i+1])`,
`index.search(q[i:i+1])`, usearch `index.search(q[i], threads=1)`), the
same shape as Valori's per-query API, so it includes the Python call
overhead of each peer (measured on its own in `call_overhead_us`).
`qps_batch` passes all queries in one call, still on one thread, and is
reported for information.

Memory (`rss_*`): the resident set of this process (`VmRSS`) before the
base is read, once it is read, after the build, and after the base array is freed (the
peers copy the vectors into their index), so that `rss_index - rss_start`
is what the index itself holds resident. Only the first peer of a process
starts from a fresh process (`fresh_process`); the driver runs one peer
per process. `index_bytes` is the index's own figure where it has one
(usearch `memory_usage`; for faiss the sum of its arrays: vectors,
neighbour lists, offsets, levels; hnswlib reports none). With
`--index-cache DIR` a built hnswlib index is kept in DIR and read back by
the next run with the same data and parameters (no build then).

Many queries at once (`multicore`): the query set repeated `--mc-repeat`
times, in one batch call on each thread count of `--mc-threads`
(hnswlib `num_threads=`, faiss `omp_set_num_threads`, usearch `threads=`),
at the smallest swept ef whose recall@10 reaches 0.95.

Prints one JSON object to stdout; progress goes to stderr.

    python benches/python/peers.py --dataset glove50-100k-l2 --m 16 \
        --ef-construction 200 --threads 2 --ef 10,16,32,64,128
"""

import argparse
import gc
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


def rss_bytes():
    """Resident memory of this process (VmRSS), bytes; 0 if unknown."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


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

    def save(self, path):
        self.index.save_index(str(path))

    def load(self, path, dim, rows):
        index = self.mod.Index(space="l2", dim=dim)
        index.load_index(str(path), max_elements=rows)
        index.set_num_threads(1)
        self.index = index

    def set_ef(self, ef):
        self.index.set_ef(ef)

    def one(self, q):
        labels, _ = self.index.knn_query(q, k=K)
        return labels[0]

    def batch(self, queries, threads=1):
        labels, _ = self.index.knn_query(queries, k=K, num_threads=threads)
        return labels

    def index_bytes(self):
        return None


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

    def batch(self, queries, threads=1):
        self.mod.omp_set_num_threads(threads)
        _, labels = self.index.search(queries, K)
        self.mod.omp_set_num_threads(1)
        return labels

    def index_bytes(self):
        # The sum of its arrays: the float vectors, the neighbour lists
        # (int32), their offsets (size_t per node) and levels (int32).
        h = self.index.hnsw
        return (self.index.ntotal * self.index.d * 4 + h.neighbors.size() * 4
                + h.offsets.size() * 8 + h.levels.size() * 4)


class Usearch:
    name = "usearch"

    def __init__(self):
        import usearch
        from usearch.index import Index

        self.cls = Index
        self.version = usearch.__version__
        self.build_info = None

    def build(self, base, m, efc, threads):
        # Full-precision f32 vectors like the other peers; l2sq ranks as L2.
        index = self.cls(ndim=base.shape[1], metric="l2sq", dtype="f32",
                         connectivity=m, expansion_add=efc)
        # Which SIMD kernels it picked (e.g. "skylake" for AVX-512).
        self.build_info = f"{index.hardware_acceleration} kernels"
        keys = np.arange(base.shape[0], dtype=np.uint64)
        start = time.perf_counter()
        index.add(keys, base, threads=threads)
        elapsed = time.perf_counter() - start
        self.index = index
        return elapsed

    def set_ef(self, ef):
        self.index.expansion_search = ef

    def one(self, q):
        # threads=0 would mean "all cores"; searches are single-threaded.
        return self.index.search(q[0], K, threads=1).keys

    def batch(self, queries, threads=1):
        return self.index.search(queries, K, threads=threads).keys

    def index_bytes(self):
        return int(self.index.memory_usage)


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


def measure(peer, base_path, queries, truth, args, fresh):
    rss_start = rss_bytes()
    base = read_vecs(base_path, np.float32)
    if base.shape[1] != queries.shape[1]:
        raise ValueError(f"{base_path}: base and queries differ in dimension")
    n_base = int(base.shape[0])
    rss_loaded = rss_bytes()
    log(f"{peer.name} {peer.version}: building {base.shape[0]} x {base.shape[1]} "
        f"M={args.m} efc={args.ef_construction} threads={args.threads}")
    build = []
    cache = None
    if args.index_cache is not None and hasattr(peer, "load"):
        cache = args.index_cache / (f"{args.dataset}-{n_base}x{base.shape[1]}-m{args.m}"
                                    f"-efc{args.ef_construction}.{peer.name}")
    if cache is not None and cache.exists():
        peer.load(cache, base.shape[1], n_base)
        log(f"  index read from {cache} (no build)")
    else:
        for _ in range(args.build_rounds):
            build.append(peer.build(base, args.m, args.ef_construction, args.threads))
        log(f"  build {min(build):.2f} s (rounds: {', '.join(f'{b:.2f}' for b in build)})")
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            peer.save(cache)
            log(f"  index kept in {cache}")
    rss_built = rss_bytes()
    # The index holds its own copy of the vectors: free the input so that
    # what stays resident is the index.
    tiny = base[:K].copy()
    del base
    gc.collect()
    rss_index = rss_bytes()
    index_bytes = peer.index_bytes()
    log(f"  RSS {rss_start / 2**20:.1f} MiB before loading, {rss_loaded / 2**20:.1f} MiB loaded, "
        f"{rss_built / 2**20:.1f} MiB built, "
        f"{rss_index / 2**20:.1f} MiB with the base freed: "
        f"{(rss_index - rss_start) / n_base:.1f} bytes/vector"
        + (f" (index reports {index_bytes / n_base:.1f})" if index_bytes else ""))

    overhead_us = call_overhead_us(type(peer), tiny, queries, args.rounds)

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

    # Many queries at once, at the smallest ef reaching recall 0.95.
    ef_mc = next((p["ef"] for p in sweep if p["recall"] >= 0.95), sweep[-1]["ef"])
    peer.set_ef(ef_mc)
    many = np.ascontiguousarray(np.tile(queries, (args.mc_repeat, 1)))
    multicore = []
    for t in args.mc_threads:
        elapsed, found = best_loop(args.rounds, lambda: peer.batch(many, t))
        multicore.append({"threads": t, "ef": ef_mc, "queries": int(many.shape[0]),
                          "recall": recall_at_k(found[:nq], truth), "qps": many.shape[0] / elapsed})
        log(f"  {many.shape[0]} queries at once, ef={ef_mc}, {t} thread(s): "
            f"{many.shape[0] / elapsed:9.0f} q/s")
    return {
        "version": peer.version,
        "build_info": peer.build_info,
        "build_s": min(build) if build else None,
        "build_rounds_s": build,
        "call_overhead_us": overhead_us,
        "search": sweep,
        "multicore": multicore,
        "memory": {"rows": n_base, "fresh_process": fresh, "rss_start": rss_start,
                   "rss_loaded": rss_loaded, "rss_built": rss_built, "rss_index": rss_index, "index_bytes": index_bytes},
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
    ap.add_argument("--peers", default="hnswlib,faiss,usearch")
    ap.add_argument("--mc-threads", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2])
    ap.add_argument("--mc-repeat", type=int, default=5)
    ap.add_argument("--index-cache", type=Path, default=None,
                    help="keep each built index in this folder and read it back on the next "
                         "run with the same data and parameters instead of building "
                         "(hnswlib; for search experiments on the large sets)")
    args = ap.parse_args()

    folder = args.data_dir / args.dataset
    queries = read_vecs(folder / "query.fvecs", np.float32)
    truth = read_vecs(folder / "groundtruth.ivecs", np.int32)
    if truth.shape[0] != queries.shape[0] or truth.shape[1] < K:
        raise ValueError(f"{folder}: ground truth does not match the queries")
    # The row count from the file size, without reading the base yet (the
    # memory figures start before it is read).
    dim = int(queries.shape[1])
    rows = (folder / "base.fvecs").stat().st_size // (4 * (dim + 1))

    peers = {"hnswlib": Hnswlib, "faiss": Faiss, "usearch": Usearch}
    out = {
        "dataset": args.dataset,
        "rows": int(rows),
        "dim": dim,
        "queries": int(queries.shape[0]),
        "m": args.m,
        "ef_construction": args.ef_construction,
        "threads": args.threads,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "peers": {},
    }
    for i, name in enumerate(args.peers.split(",")):
        peer = peers[name]()
        out["peers"][name] = measure(peer, folder / "base.fvecs", queries, truth, args, fresh=i == 0)
        del peer
        gc.collect()
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
