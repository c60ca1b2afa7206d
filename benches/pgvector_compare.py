"""Valori and PostgreSQL + pgvector side by side through psycopg, one
connection each, same data, same HNSW parameters (m=16, ef_construction=64).

usage: python3 benches/pgvector_compare.py [--datasets glove50-100k-l2,wordnet-minilm20k-l2]
           [--bin target/release/valori] [--queries 1000]

Needs (installed into .venv-bench by the command in docs/benchmarks.md):
pgserver (a PostgreSQL 16 with pgvector that runs without root), psycopg,
numpy. Prints, per data set: bulk load time (COPY), index build time,
recall@10 and queries/s for `SELECT id FROM t ORDER BY vec <-> $1 LIMIT 10`
over a sweep of ef_search, the same for `WHERE tag = $2` at 10% and 1%
selectivity (exact ground truth computed here with NumPy), and Valori's
REST search queries/s (the engine's search without SQL) next to its SQL
path.
"""

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np
import psycopg

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATA = os.path.join(ROOT, "..", "shared", "data")
EF_SWEEP = [10, 20, 40, 80, 160, 320]
M, EF_CONSTRUCTION = 16, 64


def read_fvecs(path):
    raw = np.fromfile(path, dtype="<i4")
    dim = raw[0]
    return raw.reshape(-1, dim + 1)[:, 1:].view("<f4").copy()


def read_ivecs(path):
    raw = np.fromfile(path, dtype="<i4")
    k = raw[0]
    return raw.reshape(-1, k + 1)[:, 1:].copy()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def vec_text(v):
    return "[" + ",".join(repr(float(x)) for x in v) + "]"


def copy_rows(conn, table, base, tags):
    buf = io.StringIO()
    for i, (v, t) in enumerate(zip(base, tags)):
        buf.write(f"{i}\t{vec_text(v)}\t{int(t)}\n")
    with conn.cursor() as cur:
        with cur.copy(f"COPY {table} (id, vec, tag) FROM STDIN") as copy:
            copy.write(buf.getvalue())


def exact_topk(base, queries, k, mask=None):
    out = []
    ids = np.arange(len(base)) if mask is None else np.nonzero(mask)[0]
    sub = base[ids].astype(np.float64)
    norms = (sub * sub).sum(1)
    for q in queries.astype(np.float64):
        d = norms - 2 * sub @ q + q @ q
        order = np.lexsort((ids, d))[:k]
        out.append(ids[order])
    return out


def sweep(conn, sql, queries, truth, set_ef, args=lambda qi, v: (v,)):
    rows = []
    with conn.cursor() as cur:
        for ef in EF_SWEEP:
            cur.execute(set_ef.format(ef=ef))
            hits = 0
            started = time.perf_counter()
            for qi, q in enumerate(queries):
                cur.execute(sql, args(qi, vec_text(q)), prepare=True)
                got = [r[0] for r in cur.fetchall()]
                hits += len(set(got) & set(truth[qi][:10].tolist()))
            elapsed = time.perf_counter() - started
            rows.append((ef, hits / (10 * len(queries)), len(queries) / elapsed))
    return rows


def best_qps_at(rows, recall):
    ok = [qps for _, r, qps in rows if r >= recall]
    return max(ok) if ok else None


class Valori:
    def __init__(self, binary, work):
        self.rest_port, self.pg_port = free_port(), free_port()
        self.proc = subprocess.Popen(
            [binary, "serve", "--data-dir", os.path.join(work, "valori"),
             "--rest-addr", f"127.0.0.1:{self.rest_port}", "--pg-addr", f"127.0.0.1:{self.pg_port}",
             "--log", "warn"])
        self.rest = f"http://127.0.0.1:{self.rest_port}"
        for _ in range(300):
            try:
                self.call("GET", "/health")
                return
            except OSError:
                time.sleep(0.1)
        sys.exit("valori did not start")

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.rest + path, data=data, method=method)
        with urllib.request.urlopen(req, timeout=600) as r:
            return json.loads(r.read())

    def uri(self):
        return f"postgresql://valori@127.0.0.1:{self.pg_port}/valori"

    def wait_indexed(self, table):
        while True:
            c = self.call("GET", f"/v1/collections/{table}")
            if c["rows"] - c["indexed"] < 256:
                return
            time.sleep(0.05)

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def run_dataset(name, valori, pg_uri, nq):
    base = read_fvecs(os.path.join(DATA, name, "base.fvecs"))
    queries = read_fvecs(os.path.join(DATA, name, "query.fvecs"))[:nq]
    truth = read_ivecs(os.path.join(DATA, name, "groundtruth.ivecs"))[:nq]
    n, dim = base.shape
    ids = np.arange(n)
    tags10, tags1 = ids % 10, ids % 100
    print(f"\n## {name}: {n:,} × {dim}, {len(queries)} queries", flush=True)
    table = name.split("-")[0]
    report = {}
    for system in ("valori", "pgvector"):
        uri = valori.uri() if system == "valori" else pg_uri
        with psycopg.connect(uri, autocommit=True) as conn:
            if system == "pgvector":
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            for t in (table, table + "_t1"):
                conn.execute(f"DROP TABLE IF EXISTS {t}")
                conn.execute(f"CREATE TABLE {t} (id BIGINT PRIMARY KEY, vec VECTOR({dim}), tag BIGINT)")
            started = time.perf_counter()
            copy_rows(conn, table, base, tags10)
            load_s = time.perf_counter() - started
            started = time.perf_counter()
            conn.execute(
                f"CREATE INDEX ON {table} USING hnsw (vec vector_l2_ops) "
                f"WITH (m = {M}, ef_construction = {EF_CONSTRUCTION})")
            if system == "valori":
                valori.wait_indexed(table)
            index_s = time.perf_counter() - started
            copy_rows(conn, table + "_t1", base, tags1)
            conn.execute(
                f"CREATE INDEX ON {table}_t1 USING hnsw (vec vector_l2_ops) "
                f"WITH (m = {M}, ef_construction = {EF_CONSTRUCTION})")
            if system == "valori":
                valori.wait_indexed(table + "_t1")
            set_ef = "SET valori.ef_search = {ef}" if system == "valori" else "SET hnsw.ef_search = {ef}"
            plain = sweep(conn, f"SELECT id FROM {table} ORDER BY vec <-> %s::vector LIMIT 10",
                          queries, truth, set_ef)
            filtered = {}
            for label, tbl, tags, sel in (("10%", table, tags10, 10), ("1%", table + "_t1", tags1, 100)):
                qtags = [qi % sel for qi in range(len(queries))]
                ftruth = []
                for qi, q in enumerate(queries):
                    ftruth.extend(exact_topk(base, q[None, :], 10, mask=(tags == qtags[qi])))
                filtered[label] = sweep(
                    conn, f"SELECT id FROM {tbl} WHERE tag = %s ORDER BY vec <-> %s::vector LIMIT 10",
                    queries, ftruth, set_ef, args=lambda qi, v, qt=qtags: (qt[qi], v))
            report[system] = dict(load=load_s, index=index_s, plain=plain, filtered=filtered)
            print(f"{system}: COPY {load_s:.1f} s, index {index_s:.1f} s", flush=True)
    started = time.perf_counter()
    for q in queries:
        valori.call("POST", f"/v1/collections/{table}/search", {"vector": q.tolist(), "k": 10, "ef": 80})
    rest_qps = len(queries) / (time.perf_counter() - started)
    return report, rest_qps


def print_report(name, report, rest_qps):
    v, p = report["valori"], report["pgvector"]
    print(f"\n### {name}")
    print("| | Valori | pgvector | ratio (Valori/pgvector) |\n|---|---|---|---|")
    print(f"| COPY load, s | {v['load']:.1f} | {p['load']:.1f} | {v['load'] / p['load']:.2f} |")
    print(f"| index build, s | {v['index']:.1f} | {p['index']:.1f} | {v['index'] / max(p['index'], 1e-9):.2f} |")
    for label, key in (("unfiltered", None), ("tag = … (10%)", "10%"), ("tag = … (1%)", "1%")):
        vr = v["plain"] if key is None else v["filtered"][key]
        pr = p["plain"] if key is None else p["filtered"][key]
        print(f"\n{label}: ef_search, recall@10, queries/s")
        print("| ef | Valori recall | Valori q/s | pgvector recall | pgvector q/s |\n|---|---|---|---|---|")
        for (ef, vrec, vq), (_, prec, pq) in zip(vr, pr):
            print(f"| {ef} | {vrec:.4f} | {vq:.0f} | {prec:.4f} | {pq:.0f} |")
        for target in (0.9, 0.95):
            a, b = best_qps_at(vr, target), best_qps_at(pr, target)
            ratio = f"{a / b:.2f}" if a and b else "n/a"
            print(f"best q/s at recall ≥ {target}: Valori {a and round(a)}, pgvector {b and round(b)}, ratio {ratio}")
    sql_at_80 = next(q for ef, _, q in v["plain"] if ef == 80)
    print(f"\nValori at ef=80: SQL path {sql_at_80:.0f} q/s (psycopg, prepared), "
          f"REST search {rest_qps:.0f} q/s (urllib, one connection per request)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default="glove50-100k-l2,wordnet-minilm20k-l2")
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "valori"))
    ap.add_argument("--queries", type=int, default=1000)
    args = ap.parse_args()
    import pgserver

    work = tempfile.mkdtemp(prefix="valori-pgvector-")
    pg = pgserver.get_server(os.path.join(work, "pg"), cleanup_mode="delete")
    valori = Valori(args.bin, work)
    try:
        results = [(name, *run_dataset(name, valori, pg.get_uri(), args.queries))
                   for name in args.datasets.split(",")]
    finally:
        valori.stop()
    for name, report, rest_qps in results:
        print_report(name, report, rest_qps)


if __name__ == "__main__":
    main()
