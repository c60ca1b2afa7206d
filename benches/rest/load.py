"""REST load benchmark: glove50-100k-l2 loaded over REST, then search and
insert driven at the same time by two wrk processes for a fixed duration.

usage: python3 benches/rest/load.py [--bin target/release/valori] [--seconds 60]

Prints, per workload, requests/s, p50 and p99 latency and the error count
(answers other than 2xx, connection errors, timeouts), and the recall@10
of the searches it sends against the data set's exact ground truth.
"""

import argparse
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DATA = os.path.join(ROOT, "..", "shared", "data", "glove50-100k-l2")


def read_vecs(path, kind):
    rows = []
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos < len(data):
        (dim,) = struct.unpack_from("<i", data, pos)
        pos += 4
        rows.append(list(struct.unpack_from(f"<{dim}{kind}", data, pos)))
        pos += 4 * dim
    return rows


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def call(base, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def wrk(base, target, bodies_path, threads, connections, seconds):
    env = dict(os.environ, BODIES=bodies_path, TARGET=target)
    return subprocess.Popen(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
         "-s", os.path.join(HERE, "post.lua"), base],
        env=env, stdout=subprocess.PIPE, text=True)


def result(proc):
    out, _ = proc.communicate()
    line = next((l for l in out.splitlines() if l.startswith("RESULT")), None)
    if line is None:
        sys.exit(f"wrk printed no result:\n{out}")
    return dict(kv.split("=") for kv in line.split()[1:])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "valori"))
    ap.add_argument("--seconds", type=int, default=60)
    args = ap.parse_args()

    base_rows = read_vecs(os.path.join(DATA, "base.fvecs"), "f")
    queries = read_vecs(os.path.join(DATA, "query.fvecs"), "f")
    truth = read_vecs(os.path.join(DATA, "groundtruth.ivecs"), "i")

    work = tempfile.mkdtemp(prefix="valori-load-")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [args.bin, "serve", "--data-dir", os.path.join(work, "db"),
         "--rest-addr", f"127.0.0.1:{port}", "--pg-addr", f"127.0.0.1:{free_port()}",
         "--flight-addr", "127.0.0.1:0",
         "--log", "warn"])
    try:
        for _ in range(200):
            try:
                call(base, "GET", "/health")
                break
            except OSError:
                time.sleep(0.1)
        call(base, "POST", "/v1/collections", {"name": "glove", "dim": 50, "m": 16, "ef_construction": 64})
        started = time.time()
        step = 10_000
        for i in range(0, len(base_rows), step):
            call(base, "POST", "/v1/collections/glove/records/batch",
                 {"ids": list(range(i, min(i + step, len(base_rows)))),
                  "vectors": base_rows[i:i + step]})
            print(f"  loaded {min(i + step, len(base_rows)):,} rows", file=sys.stderr, flush=True)
        load_s = time.time() - started
        while True:
            c = call(base, "GET", "/v1/collections/glove")
            # The graph links whole blocks of 256 rows; a shorter tail is
            # searched exactly until the next block fills.
            if c["rows"] - c["indexed"] < 256:
                break
            time.sleep(0.5)
        index_s = time.time() - started
        print(f"load over REST: {load_s:.1f} s; indexed after {index_s:.1f} s", file=sys.stderr)

        hits = 0
        for q, t in zip(queries, truth):
            found = call(base, "POST", "/v1/collections/glove/search", {"vector": q, "k": 10, "ef": 64})
            hits += len({h["id"] for h in found["hits"]} & set(t[:10]))
        recall = hits / (10 * len(queries))

        search_bodies = os.path.join(work, "search.jsonl")
        with open(search_bodies, "w") as f:
            for q in queries:
                f.write(json.dumps({"vector": q, "k": 10, "ef": 64}) + "\n")
        insert_bodies = os.path.join(work, "insert.jsonl")
        with open(insert_bodies, "w") as f:
            for q in queries:
                f.write(json.dumps({"vector": q, "tag": 1}) + "\n")
        search = wrk(base, "/v1/collections/glove/search", search_bodies, 1, 8, args.seconds)
        insert = wrk(base, "/v1/collections/glove/records", insert_bodies, 1, 4, args.seconds)
        s, i = result(search), result(insert)
        proof = call(base, "GET", "/v1/proof/state")
    finally:
        server.terminate()
        server.wait()

    print(f"glove50-100k-l2, {args.seconds} s, search (8 connections) and insert (4 connections) at once")
    print(f"| workload | requests/s | p50 ms | p99 ms | max ms | errors |")
    print(f"|---|---|---|---|---|---|")
    for name, r in (("search k=10 ef=64", s), ("insert one record", i)):
        print(f"| {name} | {r['rps']} | {r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} | {r['errors']} |")
    print(f"recall@10 of the search bodies (ef=64, before the load): {recall:.4f}")
    print(f"bulk load over REST (10 batches of 10,000): {load_s:.1f} s; index complete after {index_s:.1f} s")
    print(f"log size after the run: {proof['log_size']} events")
    if int(s["errors"]) or int(i["errors"]):
        sys.exit("errors during the load")


if __name__ == "__main__":
    main()
