"""Per-statement cost of a prepared nearest-neighbour statement against the
size of the table, through `valori serve` and psycopg.

usage: python3 benches/knn_table_size.py [--bin target/release/valori]
           [--sizes 20000,100000,400000] [--queries 300]

Tables of N × 50 vectors: glove50-100k-l2's base set, then copies of it
with Gaussian noise (σ = 0.05, a fixed seed) until N rows; tags `id mod
10`; loaded with COPY in batches of 50,000 rows; the index complete
(`GET /v1/collections/{name}`, `rows - indexed < 256`) before measuring.
Then, per table, for each way a driver sends the vector (psycopg text with
and without `::vector`, pgvector-python's `register_vector` with a NumPy
array as binary `vector`, with and without `::vector`) and ef 16 and 256:
`SELECT id FROM t ORDER BY vec <-> %s LIMIT 10` prepared, once per query;
queries/s at the client and the server's CPU time per statement
(`/proc/PID/stat`). Last, `EXPLAIN ANALYZE` of the statement with a literal
vector, and the KNN node's time over 200 statements per ef.

Needs .venv-bench (docs/benchmarks.md): psycopg, pgvector, numpy.
"""

import argparse
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np
import psycopg
from pgvector.psycopg import register_vector

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pgvector_compare import free_port, read_fvecs, vec_text  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATA = os.path.join(ROOT, "..", "shared", "data", "glove50-100k-l2")


def base_rows(n):
    base = read_fvecs(os.path.join(DATA, "base.fvecs"))
    rng = np.random.default_rng(13)
    parts = [base]
    while sum(len(p) for p in parts) < n:
        parts.append(base + rng.normal(0, 0.05, base.shape).astype(np.float32))
    return np.concatenate(parts)[:n]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "valori"))
    ap.add_argument("--sizes", default="20000,100000,400000")
    ap.add_argument("--queries", type=int, default=300)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = base_rows(max(sizes))
    queries = read_fvecs(os.path.join(DATA, "query.fvecs"))[:args.queries]

    work = tempfile.mkdtemp(prefix="valori-table-size-")
    rest, pg = free_port(), free_port()
    proc = subprocess.Popen([args.bin, "serve", "--data-dir", os.path.join(work, "valori"),
                             "--rest-addr", f"127.0.0.1:{rest}", "--pg-addr", f"127.0.0.1:{pg}",
                             "--flight-addr", "127.0.0.1:0",
                             "--log", "warn"])

    def call(path):
        with urllib.request.urlopen(f"http://127.0.0.1:{rest}{path}", timeout=600) as r:
            return json.loads(r.read())

    def server_cpu():
        with open(f"/proc/{proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    for _ in range(300):
        try:
            call("/health")
            break
        except OSError:
            time.sleep(0.1)
    uri = f"postgresql://valori@127.0.0.1:{pg}/valori"
    print(f"load average at start: {os.getloadavg()}", flush=True)
    try:
        for n in sizes:
            t = f"t{n}"
            with psycopg.connect(uri, autocommit=True) as conn:
                conn.execute(f"CREATE TABLE {t} (id BIGINT PRIMARY KEY, vec VECTOR(50), tag BIGINT)")
                conn.execute(f"CREATE INDEX ON {t} USING hnsw (vec vector_l2_ops) "
                             "WITH (m = 16, ef_construction = 64)")
                for lo in range(0, n, 50_000):
                    buf = io.StringIO()
                    for i in range(lo, min(n, lo + 50_000)):
                        buf.write(f"{i}\t{vec_text(rows[i])}\t{i % 10}\n")
                    with conn.cursor() as cur:
                        with cur.copy(f"COPY {t} (id, vec, tag) FROM STDIN") as copy:
                            copy.write(buf.getvalue())
            while True:
                c = call(f"/v1/collections/{t}")
                if c["rows"] - c["indexed"] < 256:
                    break
                time.sleep(0.2)
            time.sleep(2)
            print(f"\n## N = {n:,} (indexed {c['indexed']:,} of {c['rows']:,})", flush=True)
            print("| vector sent as | ef | queries/s | server CPU µs per statement |\n|---|---|---|---|")
            for label, binary, cast in (("text", False, "::vector"), ("text", False, ""),
                                        ("binary vector (register_vector)", True, ""),
                                        ("binary vector (register_vector)", True, "::vector")):
                sql = f"SELECT id FROM {t} ORDER BY vec <-> %s{cast} LIMIT 10"
                arg = (lambda q: q) if binary else vec_text
                with psycopg.connect(uri, autocommit=True) as conn:
                    if binary:
                        register_vector(conn)
                    cur = conn.cursor()
                    for ef in (16, 256):
                        cur.execute(f"SET valori.ef_search = {ef}")
                        for q in queries[:20]:
                            cur.execute(sql, (arg(q),), prepare=True)
                            cur.fetchall()
                        cpu, started = server_cpu(), time.perf_counter()
                        for q in queries:
                            cur.execute(sql, (arg(q),), prepare=True)
                            cur.fetchall()
                        elapsed, cpu = time.perf_counter() - started, server_cpu() - cpu
                        print(f"| {label}, `%s{cast}` | {ef} | {len(queries) / elapsed:,.0f} "
                              f"| {cpu / len(queries) * 1e6:,.0f} |", flush=True)
            with psycopg.connect(uri, autocommit=True) as conn:
                for ef in (16, 256):
                    conn.execute(f"SET valori.ef_search = {ef}")
                    knn = []
                    for q in queries[:200]:
                        plan = "\n".join(r[-1] for r in conn.execute(
                            f"EXPLAIN ANALYZE SELECT id FROM {t} ORDER BY vec <-> '{vec_text(q)}' LIMIT 10"))
                        m = re.search(r"(ValoriKnnExec[^,]*),.*?elapsed_compute=([\d.]+)(ns|µs|ms|s)", plan)
                        if m is None:
                            sys.exit(f"no KNN node in the plan:\n{plan}")
                        unit = {"ns": 1e-3, "µs": 1.0, "ms": 1e3, "s": 1e6}[m.group(3)]
                        knn.append(float(m.group(2)) * unit)
                    print(f"`{m.group(1)}` over 200 statements at ef {ef}: node time µs "
                          f"p50 {np.percentile(knn, 50):.0f}, p90 {np.percentile(knn, 90):.0f}", flush=True)
    finally:
        proc.terminate()
        proc.wait()
    print(f"\nload average at the end: {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
