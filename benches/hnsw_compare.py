#!/usr/bin/env python3
"""Valori's HNSW index next to hnswlib and faiss-cpu, in one run.

    python3 benches/hnsw_compare.py

For each data set (glove50-100k-l2, wordnet-minilm20k-l2, mnist5k-l2 of
../shared/data) runs `benches/python/peers.py` (hnswlib, faiss) and
`cargo bench -p valori-benches --bench hnsw` with the same M,
ef_construction, build threads and ef sweep, then prints markdown tables
(build time, single-thread QPS at recall@10 = 0.95, filtered search) and
draws the recall-QPS curves into docs/hnsw-recall-qps.png.

The machine is shared, and other work only ever slows a run down: each
side runs `--repeat` times (default 2), alternating, and the best figure of
each is kept (shortest build, most queries/s). Valori's runs must agree on
the index hash and on every recall; that is asserted.

The Python side runs in the venv `.venv-bench` at the workspace root,
created with numpy, hnswlib, faiss-cpu and matplotlib from PyPI when
missing; this script re-runs itself inside it. Raw results (peers JSON,
Valori JSON lines, the tables) are kept in `$CARGO_TARGET_DIR/hnsw-compare`
(default `target/hnsw-compare`).
"""

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv-bench"
VENV_PY = VENV / "bin" / "python"
PEERS = ROOT / "benches" / "python" / "peers.py"
PNG = ROOT / "docs" / "hnsw-recall-qps.png"
PACKAGES = ["numpy", "hnswlib", "faiss-cpu", "matplotlib"]
DATASETS = ["glove50-100k-l2", "wordnet-minilm20k-l2", "mnist5k-l2"]
EFS = [10, 16, 24, 32, 48, 64, 96, 128, 192, 256]
TARGET_RECALL = 0.95
# The filtered table is read at the smallest swept ef where Valori's
# unfiltered recall@10 reaches this.
FILTER_EF_RECALL = 0.95


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def ensure_venv():
    """Re-runs this script under the bench venv, creating it first."""
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    if not VENV_PY.exists():
        log(f"creating {VENV} and installing {' '.join(PACKAGES)} from PyPI")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV_PY), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
        subprocess.run([str(VENV_PY), "-m", "pip", "install", "-q", *PACKAGES], check=True)
    os.execv(str(VENV_PY), [str(VENV_PY), str(Path(__file__).resolve()), *sys.argv[1:]])


def raw_dir():
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    d = target / "hnsw-compare"
    d.mkdir(parents=True, exist_ok=True)
    return d


def run_peers(dataset, args, out, rep):
    cmd = [str(VENV_PY), str(PEERS), "--dataset", dataset, "--m", str(args.m),
           "--ef-construction", str(args.ef_construction), "--threads", str(args.threads),
           "--ef", ",".join(map(str, args.ef)), "--rounds", str(args.rounds)]
    log("$ " + " ".join(cmd))
    res = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
    (out / f"{dataset}.peers.{rep}.json").write_text(res.stdout)
    return json.loads(res.stdout)


def valori_cmd(dataset, args):
    return ["cargo", "bench", "-q", "-p", "valori-benches", "--bench", "hnsw", "--",
            "--dataset", dataset, "--m", str(args.m), "--ef-construction", str(args.ef_construction),
            "--threads", str(args.threads), "--ef", ",".join(map(str, args.ef)),
            "--rounds", str(args.rounds)]


def run_valori(dataset, args, out, rep):
    cmd = valori_cmd(dataset, args)
    log("$ " + " ".join(cmd))
    res = subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True)
    (out / f"{dataset}.valori.{rep}.jsonl").write_text(res.stdout)
    return parse_valori(res.stdout)


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
        rs = [r["peers"][name] for r in runs]
        m = dict(rs[0])
        m["build_s"] = min(r["build_s"] for r in rs)
        m["build_runs_s"] = [r["build_s"] for r in rs]
        m["call_overhead_us"] = min(r["call_overhead_us"] for r in rs)
        m["search"] = best_by_ef([r["search"] for r in rs], lambda a, b: a["qps"] > b["qps"])
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


def machine_note(args, peers_any):
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
    hl = peers_any["peers"]["hnswlib"]
    fa = peers_any["peers"]["faiss"]
    return (f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores of {cpu} ({', '.join(simd)}), "
            f"{platform.system()} {platform.release()}; {rustc}; Python {platform.python_version()}, "
            f"hnswlib {hl['version']} ({hl['build_info']}), faiss-cpu {fa['version']} ({fa['build_info']}); "
            f"M={args.m}, ef_construction={args.ef_construction}, build threads={args.threads}, "
            f"search single-threaded; {args.repeat} alternating runs of each side per data set, keeping "
            f"the shortest build and the best of {args.rounds} passes over the queries of every run.")


def tables(results, args):
    out = []
    out.append(f"Build (M={args.m}, ef_construction={args.ef_construction}, {args.threads} threads), seconds, "
               "shortest of the runs (slowest in brackets):\n")
    out.append("| data | rows × dim | Valori | Valori 1 thread | hnswlib | faiss | Valori / hnswlib | Valori / faiss | index hash 1 thread = 2 threads |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    for ds, r in results.items():
        v = r["valori"]
        vb = {b["threads"]: b for b in v["build"]}
        p = r["peers"]["peers"]
        tv = vb[args.threads]["build_s"]
        t1 = vb[1]["build_s"]
        th, tf = p["hnswlib"]["build_s"], p["faiss"]["build_s"]

        def span(rec):
            return f"{rec['build_s']:.2f} ({max(rec.get('build_runs_s', [rec['build_s']])):.2f})"
        eq = "yes" if v["hash_check"]["equal"] else "**NO**"
        h = vb[args.threads]["index_hash"][:16]
        out.append(f"| {ds} | {r['peers']['rows']:,} × {r['peers']['dim']} | {span(vb[args.threads])} | {span(vb[1])} | {span(p['hnswlib'])} | {span(p['faiss'])} | "
                   f"{tv / th:.2f} | {tv / tf:.2f} | {eq} (`{h}…`) |")

    out.append("")
    out.append(f"Single-thread queries/s at recall@10 = {TARGET_RECALL} (log-QPS interpolated "
               "between the two swept ef that bracket it; ≥ = already reached at ef = 10):\n")
    out.append("| data | Valori | hnswlib | faiss | Valori / hnswlib | Valori / faiss | hnswlib batch | faiss batch | Valori / hnswlib batch | Valori exact-search recall |")
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    for ds, r in results.items():
        v = qps_at(r["valori"]["search"], TARGET_RECALL)
        ph = r["peers"]["peers"]["hnswlib"]["search"]
        pf = r["peers"]["peers"]["faiss"]["search"]
        h, f = qps_at(ph, TARGET_RECALL), qps_at(pf, TARGET_RECALL)
        hb, fb = qps_at(ph, TARGET_RECALL, "qps_batch"), qps_at(pf, TARGET_RECALL, "qps_batch")
        out.append(f"| {ds} | {fmt_qps(v)} | {fmt_qps(h)} | {fmt_qps(f)} | {ratio(v, h)} | {ratio(v, f)} | "
                   f"{fmt_qps(hb)} | {fmt_qps(fb)} | {ratio(v, hb)} | {r['valori']['exact']['recall']:.4f} |")
    out.append("")
    out.append("Python call overhead per query (an index of 10 vectors), included in the peers' "
               "per-query figures: " + ", ".join(
                   f"{ds} hnswlib {r['peers']['peers']['hnswlib']['call_overhead_us']:.1f} µs, "
                   f"faiss {r['peers']['peers']['faiss']['call_overhead_us']:.1f} µs"
                   for ds, r in results.items()) + ".")

    out.append("")
    out.append("Recall@10 by ef (Valori / hnswlib / faiss):\n")
    out.append("| data | " + " | ".join(f"ef {e}" for e in args.ef) + " |")
    out.append("|---|" + "---|" * len(args.ef))
    for ds, r in results.items():
        v = {p["ef"]: p["recall"] for p in r["valori"]["search"]}
        h = {p["ef"]: p["recall"] for p in r["peers"]["peers"]["hnswlib"]["search"]}
        f = {p["ef"]: p["recall"] for p in r["peers"]["peers"]["faiss"]["search"]}
        out.append(f"| {ds} | " + " | ".join(f"{v[e]:.3f} / {h[e]:.3f} / {f[e]:.3f}" for e in args.ef) + " |")

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


def plot(results, args, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.2 * len(results), 4.4))
    if len(results) == 1:
        axes = [axes]
    for ax, (ds, r) in zip(axes, results.items()):
        lines = [
            ("Valori", r["valori"]["search"], "o-", "C3"),
            ("hnswlib", r["peers"]["peers"]["hnswlib"]["search"], "s-", "C0"),
            ("faiss", r["peers"]["peers"]["faiss"]["search"], "^-", "C2"),
        ]
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
    fig.suptitle(f"HNSW M={args.m}, ef_construction={args.ef_construction}, ef {min(args.ef)}–{max(args.ef)}; "
                 "peers called per query from Python", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    ensure_venv()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--ef", type=lambda s: [int(x) for x in s.split(",")], default=EFS)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=2,
                    help="run peers and Valori this many times, alternating, and keep the best of each")
    ap.add_argument("--png", type=Path, default=PNG)
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--from-raw", action="store_true",
                    help="only redo the tables and the plot from the raw results of the last run")
    args = ap.parse_args()

    out = raw_dir()
    if args.from_raw:
        results = load_raw(out, args)
        report(results, args, out)
        return
    # Compile first, so that the compiler does not share the CPU with a
    # timed run.
    subprocess.run(["cargo", "bench", "-q", "-p", "valori-benches", "--bench", "hnsw", "--no-run"],
                   cwd=ROOT, check=True)
    results = {}
    for ds in args.datasets.split(","):
        for old in out.glob(f"{ds}.*"):
            old.unlink()
        peers, valori = [], []
        for rep in range(args.repeat):
            peers.append(run_peers(ds, args, out, rep))
            valori.append(run_valori(ds, args, out, rep))
        results[ds] = {"peers": merge_peers(peers), "valori": merge_valori(valori)}
    report(results, args, out)


def parse_valori(text):
    rows = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return {
        "build": [r for r in rows if r["kind"] == "build"],
        "hash_check": next(r for r in rows if r["kind"] == "hash_check"),
        "exact": next(r for r in rows if r["kind"] == "exact"),
        "search": [r for r in rows if r["kind"] == "search"],
        "filtered": [r for r in rows if r["kind"] == "filtered"],
        "forced": [r for r in rows if r["kind"] == "filtered_graph_forced"],
    }


def load_raw(out, args):
    results = {}
    for ds in args.datasets.split(","):
        peers = [json.loads(p.read_text()) for p in sorted(out.glob(f"{ds}.peers.*.json"))]
        valori = [parse_valori(p.read_text()) for p in sorted(out.glob(f"{ds}.valori.*.jsonl"))]
        if not peers or not valori:
            raise SystemExit(f"no raw results for {ds} in {out}")
        args.repeat = len(peers)
        results[ds] = {"peers": merge_peers(peers), "valori": merge_valori(valori)}
    return results


def report(results, args, out):
    text = "\n".join([
        "Machine: " + machine_note(args, next(iter(results.values()))["peers"]),
        "",
        tables(results, args),
    ])
    (out / "summary.md").write_text(text + "\n")
    print(text)
    if not args.no_plot:
        plot(results, args, args.png)
        log(f"wrote {args.png}")
    log(f"raw results in {out}")


if __name__ == "__main__":
    main()
