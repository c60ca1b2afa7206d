#!/usr/bin/env python3
"""One large collection through a `valori serve`, end to end (issue 17,
"scale on one machine").

On a fresh data directory: durable ingest over REST (batches of 10,000
rows, fewer where the JSON would pass 32 MiB; each one event, fsynced
before its answer), the time until the
graph holds every complete block, resident memory, queries/s and recall@10
per ef over REST (one persistent HTTP connection, one query per request)
and with a tag filter matching 1% of the rows, and restarts, each checked
to come back with the same state hash: first SIGKILL and a restart that
replays the whole log (no snapshot yet), then a snapshot, then SIGTERM
and a restart that loads it.

The data: a TEXMEX folder (`--data DIR`: base.fvecs, query.fvecs,
groundtruth.ivecs, as `hnsw_compare.py` writes for its size sweep), or
the sweep's synthetic Gaussian mixture generated here (`--synth
ROWS,DIM`; exact truth computed here). Tags are `row mod 100`; the
filtered truth is the exact top 10 of the rows with tag 7, computed here.

    python3 benches/scale.py --bin target/release/valori \\
        --data target/hnsw-compare/data/synth50-1m

Prints progress to stderr and a summary table to stdout.
"""

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hnsw_compare as hc  # noqa: E402  (the sweep's generator and exact truth)

hc.np = np  # hnsw_compare imports numpy in its main()

BATCH = 10_000
# A REST body is at most 64 MiB by default; a component is up to about 20
# characters of JSON.
BODY_BYTES = 32 << 20
K = 10
TAGS = 100
FILTER_TAG = 7


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class Server:
    def __init__(self, binary, data_dir, log_path):
        self.binary, self.data_dir, self.log_path = binary, data_dir, log_path
        self.proc = None

    def start(self):
        """Starts and returns the seconds until the REST port answers
        /ready."""
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--data-dir", str(self.data_dir),
             "--rest-addr", "127.0.0.1:0", "--pg-addr", "127.0.0.1:0",
             "--flight-addr", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=open(self.log_path, "a"), text=True)
        line = self.proc.stdout.readline()
        words = line.split()
        if words[:2] != ["valori", "listening:"]:
            raise RuntimeError(f"the server did not start: {line!r}; see {self.log_path}")
        self.host, port = words[3].removeprefix("http://").rsplit(":", 1)
        self.port = int(port)
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=600)
        while self.call("GET", "/ready", None, check=False)[0] != 200:
            time.sleep(0.05)
        return time.perf_counter() - t0

    def call(self, method, path, body, check=True):
        data = body if isinstance(body, bytes) else None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data else {}
        self.conn.request(method, path, body=data, headers=headers)
        r = self.conn.getresponse()
        raw = r.read()
        if check and r.status >= 300:
            raise RuntimeError(f"{method} {path}: {r.status} {raw[:300]!r}")
        return r.status, (json.loads(raw) if raw else None)

    def rss(self):
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def state_hash(self):
        return self.call("GET", "/v1/proof/state", None)[1]["state_hash"]

    def stop(self, sig=signal.SIGTERM):
        self.conn.close()
        self.proc.send_signal(sig)
        self.proc.wait(timeout=600)


def read_vecs(path, dtype):
    """TEXMEX: per row an int32 dimension, then the row."""
    raw = np.fromfile(path, dtype=np.int32)
    dim = int(raw[0])
    return raw.reshape(-1, dim + 1)[:, 1:].copy().view(dtype)


def load(args):
    if args.data:
        folder = Path(args.data)
        base = read_vecs(folder / "base.fvecs", np.float32)
        queries = read_vecs(folder / "query.fvecs", np.float32)
        truth = read_vecs(folder / "groundtruth.ivecs", np.int32)[:, :K]
        return folder.name, base, queries, truth
    rows, dim = (int(x) for x in args.synth.split(","))
    p = dict(hc.SYNTH, dim=dim)
    log(f"generating {rows:,} x {dim} synthetic rows and the exact truth")
    chunks = [hc.synth_rows(min(hc.SYNTH_CHUNK, rows - s), 1 + s // hc.SYNTH_CHUNK, p)
              for s in range(0, rows, hc.SYNTH_CHUNK)]
    base = np.concatenate(chunks)
    queries = hc.synth_rows(args.queries, 0, p)
    truth = hc.exact_truth(base, queries, k=K)
    return f"synth{dim}-{rows}", base, queries, truth


def snapshot_with_probe(server, complete):
    """`POST /v1/snapshots` on a connection of its own while this thread
    reads the collection's description every 0.5 s on another. A snapshot
    first waits for the graph to hold every complete block (after a log
    replay the builder is still linking them again), with writes held and
    reads answered, then writes the file. Returns the request's answer, its
    seconds, the seconds at most spent after the graph was complete (the
    file), and the probes' (latency, indexed rows)."""
    out = {}

    def run():
        conn = http.client.HTTPConnection(server.host, server.port, timeout=7200)
        out["start"] = time.perf_counter()
        conn.request("POST", "/v1/snapshots")
        r = conn.getresponse()
        raw = r.read()
        out["end"] = time.perf_counter()
        if r.status >= 300:
            raise RuntimeError(f"POST /v1/snapshots: {r.status} {raw[:300]!r}")
        out["body"] = json.loads(raw)

    thread = threading.Thread(target=run)
    thread.start()
    probe = http.client.HTTPConnection(server.host, server.port, timeout=7200)
    probes = []
    while thread.is_alive():
        t = time.perf_counter()
        probe.request("GET", "/v1/collections/c")
        indexed = json.loads(probe.getresponse().read())["indexed"]
        probes.append((t, time.perf_counter() - t, indexed))
        thread.join(0.5)
    probe.close()
    if "body" not in out:
        raise RuntimeError("the snapshot request failed")
    # The graph was complete after the last probe that saw it incomplete
    # began (or before the request, if none did).
    incomplete = [t for t, _, n in probes if n < complete and t >= out["start"]]
    graph_done = max(incomplete) if incomplete else out["start"]
    return (out["body"], out["end"] - out["start"], out["end"] - graph_done,
            [(lat, n) for _, lat, n in probes])


def sweep(server, queries, truth, efs, tag=None):
    out = []
    for ef in efs:
        hits = 0
        t0 = time.perf_counter()
        for q, t in zip(queries, truth):
            body = {"vector": q.tolist(), "k": K, "ef": ef}
            if tag is not None:
                body["tag"] = tag
            found = [h["id"] for h in server.call("POST", "/v1/collections/c/search", body)[1]["hits"]]
            hits += len(set(found) & set(int(x) for x in t))
        took = time.perf_counter() - t0
        out.append({"ef": ef, "recall": hits / (K * len(queries)), "qps": len(queries) / took})
        log(f"  {'tag ' + str(tag) if tag is not None else 'unfiltered'} ef={ef}: "
            f"recall@10 {out[-1]['recall']:.4f}, {out[-1]['qps']:.0f} q/s")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", required=True)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="TEXMEX folder")
    src.add_argument("--synth", help="ROWS,DIM of the sweep's synthetic mixture")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--ef", default="16,24,32,48,64,96,128")
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--no-regraph-wait", action="store_true",
                    help="after the restart that replays the log, do not wait for the graph to be "
                         "rebuilt (the snapshot then holds the part built so far)")
    ap.add_argument("--work", type=Path, default=None, help="data directory parent (default: a temporary one)")
    args = ap.parse_args()
    efs = [int(x) for x in args.ef.split(",")]

    name, base, queries, truth = load(args)
    queries, truth = queries[:args.queries], truth[:args.queries]
    rows, dim = base.shape
    tags = np.arange(rows) % TAGS
    sel = np.nonzero(tags == FILTER_TAG)[0]
    ftruth = sel[hc.exact_truth(base[sel], queries, k=K)]

    work = args.work or Path(tempfile.mkdtemp(prefix="valori-scale-"))
    server = Server(args.bin, work / "data", work / "serve.log")
    server.start()
    server.call("POST", "/v1/collections", {"name": "c", "dim": dim, "metric": "l2",
                                            "m": args.m, "ef_construction": args.ef_construction})
    rss0 = server.rss()
    batch = max(1, min(BATCH, BODY_BYTES // (dim * 20)))
    log(f"{name}: ingesting {rows:,} rows in batches of {batch:,}")
    bodies_time = 0.0
    t0 = time.perf_counter()
    for s in range(0, rows, batch):
        e = min(rows, s + batch)
        b0 = time.perf_counter()
        body = json.dumps({"ids": list(range(s, e)), "vectors": base[s:e].tolist(),
                           "tags": tags[s:e].tolist()}).encode()
        bodies_time += time.perf_counter() - b0
        server.call("POST", "/v1/collections/c/records/batch", body)
        if (s // batch) % 20 == 19:
            log(f"  {e:,} rows, {time.perf_counter() - t0:.0f} s")
    ingest = time.perf_counter() - t0 - bodies_time
    complete = rows // 64 * 64
    while server.call("GET", "/v1/collections/c", None)[1]["indexed"] < complete:
        time.sleep(0.5)
    indexed_after = time.perf_counter() - t0 - bodies_time
    rss = server.rss()
    log(f"  ingest {ingest:.1f} s, index complete {indexed_after:.1f} s after the first batch, "
        f"RSS {rss / 2**20:.0f} MiB")
    unfiltered = sweep(server, queries, truth, efs)
    filtered = sweep(server, queries, ftruth, efs[:2], tag=FILTER_TAG)
    h = server.state_hash()
    # Recovery from the log alone (no snapshot yet): every event replayed.
    server.stop(signal.SIGKILL)
    recover_s = server.start()
    assert server.state_hash() == h, "state hash differs after recovery"
    t = time.perf_counter()
    recover_graph_s = None
    if not args.no_regraph_wait:
        while server.call("GET", "/v1/collections/c", None)[1]["indexed"] < complete:
            time.sleep(0.5)
        recover_graph_s = recover_s + time.perf_counter() - t
    rss_recovered = server.rss()
    snap, snapshot_s, snapshot_file_s, probes = snapshot_with_probe(server, complete)
    lats = sorted(lat for lat, _ in probes)
    log(f"  snapshot {snapshot_s:.1f} s (file at most {snapshot_file_s:.1f} s); {len(probes)} reads "
        f"answered meanwhile, latency median {lats[len(lats) // 2] * 1e3:.1f} ms, max {lats[-1] * 1e3:.0f} ms, "
        f"indexed {probes[0][1]:,} → {probes[-1][1]:,}")
    # A graceful restart loads the snapshot.
    server.stop(signal.SIGTERM)
    load_s = server.start()
    assert server.state_hash() == h, "state hash differs after the restart from the snapshot"
    server.stop(signal.SIGTERM)

    def at95(sw):
        ok = [p for p in sw if p["recall"] >= 0.95]
        return f"{ok[0]['qps']:,.0f} (ef {ok[0]['ef']}, recall {ok[0]['recall']:.4f})" if ok else "none reaches 0.95"

    print(f"| {name} | value |\n|---|---|")
    print(f"| rows × dim | {rows:,} × {dim} |")
    print(f"| durable ingest (REST batches of {batch:,}) | {ingest:.1f} s, {rows / ingest:,.0f} rows/s |")
    print(f"| graph complete after the first batch | {indexed_after:.1f} s |")
    print(f"| resident memory, graph complete | {rss / 2**20:,.0f} MiB ({(rss - rss0) / rows:.0f} bytes/row above the empty server) |")
    print(f"| q/s at recall@10 ≥ 0.95, REST, one connection | {at95(unfiltered)} |")
    print(f"| q/s with tag = {FILTER_TAG} (1% of rows) | {at95(filtered)} |")
    regraph = "not waited for" if recover_graph_s is None else f"{recover_graph_s:.1f} s"
    print(f"| restart after SIGKILL, no snapshot (log replay): until /ready, until the graph is complete | {recover_s:.1f} s, {regraph} (RSS then {rss_recovered / 2**20:,.0f} MiB) |")
    print(f"| snapshot request (waits for the graph, then writes the file) | {snapshot_s:.1f} s, {snap['bytes'] / 2**20:,.0f} MiB |")
    print(f"| snapshot file written after the graph was complete | at most {snapshot_file_s:.1f} s |")
    print(f"| reads answered during the snapshot request (every 0.5 s) | {len(probes)}, latency median "
          f"{lats[len(lats) // 2] * 1e3:.1f} ms, max {lats[-1] * 1e3:.0f} ms; indexed rows seen "
          f"{probes[0][1]:,} → {probes[-1][1]:,} |")
    print(f"| restart after SIGTERM (snapshot load) until /ready | {load_s:.1f} s |")
    print(f"| state hash before = after both restarts | {h[:16]}… |")
    print(json.dumps({"name": name, "rows": rows, "dim": dim, "ingest_s": ingest,
                      "index_complete_s": indexed_after, "rss": rss, "rss_empty": rss0,
                      "unfiltered": unfiltered, "filtered_1pct": filtered,
                      "snapshot_s": snapshot_s, "snapshot_file_s": snapshot_file_s, "snapshot_probes": probes, "snapshot_bytes": snap["bytes"], "load_s": load_s,
                      "recover_s": recover_s, "recover_graph_s": recover_graph_s, "rss_recovered": rss_recovered, "state_hash": h}),
          file=sys.stderr)


if __name__ == "__main__":
    main()
