"""The cost of replication on the write path: the same REST write workload
against one `valori serve` and against the leader of a three-node cluster
on the same machine (loopback), in one run.

usage: python3 benches/cluster_write_cost.py [--bin target/release/valori]
           [--batches 20] [--seconds 20] [--clients 4]

For each setup, on a fresh data directory and a collection of dimension
16: durable ingest of `--batches` batches of 1,000 records (one request
each, one at a time), then `--seconds` of single-record inserts from
`--clients` threads, each insert durable before its answer. Prints
records/s of the batch ingest with the p50 and p99 latency of one batch
(records/s follows the slowest batches: a few fsyncs that stall on a busy
disk weigh more than the typical batch), and inserts/s with p50 and p99
latency of the single inserts, and checks that every node of the cluster ends with
the leader's event count and state hash.

Then, unless `--read-seconds 0`, read scaling on the same data (the
collection as the write workload left it, its index complete on every
node): for `--read-seconds` each, KNN searches over REST (`POST
/v1/collections/bench/search`, k = 10, ef = 64, random query vectors, one
keep-alive connection per client, each client its own process) served by
1, 2 and 3 nodes of the cluster, each node read by its own client (default
read consistency: every node answers from what it has applied); and, to
separate the cluster from the machine, 1, 2 and 3 clients on the single
node. Prints reads/s and p50/p99 latency per setup.

Follower reads are checked, not only counted: every answer a follower
gave (ids and distances of its hits, in order) is compared, after the
timed reads, with the leader's answer to the same query. The nodes hold
the same log and their indexes are built to the same block, so the
answers must be equal. Mismatches are counted per setup and the first
few printed; any mismatch (or a read that failed) fails the run.
"""

import argparse
import http.client
import json
import multiprocessing
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIM = 16


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Client:
    """One keep-alive HTTP connection."""

    def __init__(self, addr):
        host, port = addr.split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=60)

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body)
        self.conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        r = self.conn.getresponse()
        raw = r.read()
        return r.status, (json.loads(raw) if raw else None)


def start(bin_path, data_dir, extra, env=None):
    rest, pg = free_port(), free_port()
    args = [bin_path, "serve", "--data-dir", data_dir,
            "--rest-addr", f"127.0.0.1:{rest}", "--pg-addr", f"127.0.0.1:{pg}",
            "--flight-addr", "127.0.0.1:0"] + extra
    log = open(data_dir + ".log", "w")
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, env=env, text=True)
    first = p.stdout.readline()
    if not first.startswith("valori listening:"):
        p.kill()
        raise SystemExit(f"{data_dir}: server did not start: {first!r}")
    if "--cluster-node-id" in extra:
        p.stdout.readline()
    return p, f"127.0.0.1:{rest}"


def status(addr):
    try:
        return Client(addr).call("GET", "/v1/cluster/status")[1]
    except OSError:
        return None


def wait(what, f, limit=60):
    start_t = time.time()
    while time.time() - start_t < limit:
        v = f()
        if v:
            return v
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def vector(rng):
    return [round(rng.uniform(-1, 1), 4) for _ in range(DIM)]


def workload(addr, batches, seconds, clients):
    c = Client(addr)
    code, body = c.call("POST", "/v1/collections", {"name": "bench", "dim": DIM})
    assert code == 201, (code, body)
    rng = random.Random(7)
    next_id = 0
    batch_lat = []
    t0 = time.perf_counter()
    for _ in range(batches):
        ids = list(range(next_id, next_id + 1000))
        next_id += 1000
        t = time.perf_counter()
        code, body = c.call("POST", "/v1/collections/bench/records/batch",
                            {"ids": ids, "vectors": [vector(rng) for _ in ids]})
        batch_lat.append(time.perf_counter() - t)
        assert code == 201, (code, body)
    batch_s = time.perf_counter() - t0
    batch_lat.sort()

    latencies = [[] for _ in range(clients)]
    errors = [0] * clients
    stop_at = time.perf_counter() + seconds

    def run(k):
        cl = Client(addr)
        r = random.Random(100 + k)
        i = 0
        while time.perf_counter() < stop_at:
            rid = 10_000_000 * (k + 1) + i
            i += 1
            t = time.perf_counter()
            code, _ = cl.call("POST", "/v1/collections/bench/records",
                              {"id": rid, "vector": vector(r)})
            latencies[k].append(time.perf_counter() - t)
            if code != 201:
                errors[k] += 1

    threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
    t1 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    single_s = time.perf_counter() - t1
    lat = sorted(x for l in latencies for x in l)
    return {
        "batch_records_per_s": batches * 1000 / batch_s,
        "batch_p50_ms": batch_lat[len(batch_lat) // 2] * 1000,
        "batch_p99_ms": batch_lat[min(len(batch_lat) - 1, int(len(batch_lat) * 0.99))] * 1000,
        "inserts": len(lat),
        "inserts_per_s": len(lat) / single_s,
        "p50_ms": lat[len(lat) // 2] * 1000,
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
        "errors": sum(errors),
    }


def search(client, query):
    """The answer to `query`: (status, [(id, distance), ...] in order)."""
    code, body = client.call("POST", "/v1/collections/bench/search", {"vector": query, "k": 10, "ef": 64})
    hits = [(h["id"], h["distance"]) for h in body["hits"]] if code == 200 else None
    return code, hits


def reader(k, addr, seconds, seed, keep, out):
    """One client process: searches on `addr` back to back for `seconds`;
    with `keep`, also returns every (query, answer) it got."""
    c = Client(addr)
    r = random.Random(seed)
    lat, errors, answers = [], 0, []
    stop_at = time.perf_counter() + seconds
    while time.perf_counter() < stop_at:
        query = vector(r)
        t = time.perf_counter()
        code, hits = search(c, query)
        lat.append(time.perf_counter() - t)
        if code != 200 or len(hits) != 10:
            errors += 1
        elif keep:
            answers.append((query, hits))
    out.put((k, lat, errors, answers))


def read_load(addrs, seconds, leader=None):
    """One client process per address in `addrs`, all at once: reads/s over
    all of them, p50 and p99 latency in ms, errors. With `leader`, each
    answer of a node other than the leader is then asked of the leader
    again (outside the timed reads) and compared: `checked` answers,
    `mismatches` (node, query, its hits, the leader's)."""
    out = multiprocessing.Queue()
    procs = [multiprocessing.Process(
                 target=reader, args=(k, a, seconds, 1000 + k, leader is not None and a != leader, out))
             for k, a in enumerate(addrs)]
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    lat = sorted(x for _, l, _, _ in results for x in l)
    checked, mismatches = 0, []
    if leader is not None:
        c = Client(leader)
        for k, _, _, answers in sorted(results, key=lambda r: r[0]):
            for query, hits in answers:
                code, theirs = search(c, query)
                checked += 1
                if code != 200 or theirs != hits:
                    mismatches.append((addrs[k], query, hits, theirs if code == 200 else f"HTTP {code}"))
    return {
        "reads_per_s": len(lat) / seconds,
        "p50_ms": lat[len(lat) // 2] * 1000,
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
        "errors": sum(e for _, _, e, _ in results),
        "checked": checked,
        "mismatches": mismatches,
    }


def indexed(addr):
    code, c = Client(addr).call("GET", "/v1/collections/bench")
    return code == 200 and c["rows"] - c["indexed"] < 64


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "valori"))
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--read-seconds", type=float, default=10, help="per read-scaling setup; 0 skips them")
    a = ap.parse_args()
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    print(f"scripts at {commit}, server {a.bin}, load average {os.getloadavg()}", flush=True)
    root = tempfile.mkdtemp(prefix="valori-cluster-bench-")
    procs = []
    results = {}
    reads = {}
    try:
        p, addr = start(a.bin, os.path.join(root, "single"), [])
        procs.append(p)
        results["single node"] = workload(addr, a.batches, a.seconds, a.clients)
        if a.read_seconds > 0:
            wait("the single node's index", lambda: indexed(addr), limit=600)
            for k in (1, 2, 3):
                reads[f"single node, {k} client{'s' if k > 1 else ''}"] = read_load([addr] * k, a.read_seconds)
        p.terminate()
        p.wait()

        env = dict(os.environ, VALORI_CLUSTER_KEY="bench cluster key")
        nodes = []
        seed_port = free_port()
        for i in (1, 2, 3):
            port = seed_port if i == 1 else free_port()
            extra = ["--cluster-node-id", str(i), "--cluster-addr", f"127.0.0.1:{port}"]
            extra += ["--cluster-bootstrap"] if i == 1 else ["--cluster-join", f"127.0.0.1:{seed_port}"]
            p, addr = start(a.bin, os.path.join(root, f"node{i}"), extra, env)
            procs.append(p)
            nodes.append(addr)
        wait("three voters", lambda: (status(nodes[0]) or {}).get("voters") == [1, 2, 3])
        leader = wait("a leader", lambda: next(
            (n for n in nodes if (status(n) or {}).get("role") == "leader"), None))
        results["3-node cluster (leader)"] = workload(leader, a.batches, a.seconds, a.clients)
        applied = status(leader)["applied_index"]
        final = wait("every node at the leader's index", lambda: (
            lambda ss: ss if all(s and s["applied_index"] == applied for s in ss) else None
        )([status(n) for n in nodes]))
        hashes = {s["state_hash"] for s in final}
        events = {s["events"] for s in final}
        assert len(hashes) == 1 and len(events) == 1, final
        if a.read_seconds > 0:
            for n in nodes:
                wait(f"the index on {n}", lambda n=n: indexed(n), limit=600)
            order = [leader] + [n for n in nodes if n != leader]
            for k in (1, 2, 3):
                reads[f"cluster, {k} node{'s' if k > 1 else ''} (1 client each)"] = read_load(
                    order[:k], a.read_seconds, leader=leader)
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(root, ignore_errors=True)

    print(f"{'setup':<26} {'batch records/s':>16} {'batch p50/p99 ms':>17} {'inserts/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for name, r in results.items():
        batch_ms = f"{r['batch_p50_ms']:.1f} / {r['batch_p99_ms']:.0f}"
        print(f"{name:<26} {r['batch_records_per_s']:>16,.0f} {batch_ms:>17} {r['inserts_per_s']:>10,.0f} "
              f"{r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['errors']:>7}")
    s, c = results["single node"], results["3-node cluster (leader)"]
    print(f"cluster / single: batch ingest {c['batch_records_per_s'] / s['batch_records_per_s']:.2f}x, "
          f"inserts/s {c['inserts_per_s'] / s['inserts_per_s']:.2f}x")
    print(f"every node: {events.pop()} events, state hash {hashes.pop()}")
    failed = False
    if reads:
        print(f"\nread scaling, KNN over REST (k 10, ef 64), {a.read_seconds:.0f} s each:")
        print("| setup | reads/s | p50 ms | p99 ms | errors | follower answers checked | differing from the leader's |")
        print("|---|---|---|---|---|---|---|")
        for name, r in reads.items():
            print(f"| {name} | {r['reads_per_s']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} "
                  f"| {r['checked']:,} | {len(r['mismatches'])} |")
        for name, r in reads.items():
            failed |= r["errors"] > 0 or bool(r["mismatches"])
            for node, query, hits, theirs in r["mismatches"][:5]:
                print(f"MISMATCH ({name}): node {node} answered {hits}; the leader {theirs}; query {query}")
            if len(r["mismatches"]) > 5:
                print(f"... and {len(r['mismatches']) - 5} more mismatches in {name}")
    print(f"load average at the end: {os.getloadavg()}")
    if failed:
        print("FAILED: a read failed or a follower's answer differs from the leader's")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
