"""Valori and PostgreSQL + pgvector side by side, same data, same HNSW
parameters (m=16, ef_construction=64), in one run.

usage: python3 benches/pgvector_compare.py [--datasets glove50-100k-l2,wordnet-minilm20k-l2]
           [--bin target/release/valori] [--queries 1000]
           [--concurrency 1,2,4,8,32] [--seconds 3] [--stage-seconds 6]
           [--no-inprocess] [--no-overhead] [--no-concurrency] [--no-stages]
           [--json results.json] [--shape fixed|declared] [--upserts 20000]
           [--category-index]

Needs (installed into .venv-bench by the command in docs/benchmarks.md):
pgserver (a PostgreSQL 16 with pgvector that runs without root), psycopg,
pgvector, asyncpg, numpy; `perf` for the per-stage breakdown; `cargo` for
the in-process figure. Prints, per data set:

- bulk load time (COPY), index build time, recall@10 and queries/s for
  `SELECT id FROM t ORDER BY vec <-> $1 LIMIT 10` over a sweep of
  ef_search (psycopg, one connection, prepared, the vector sent as text),
  the same for `WHERE tag = $2` at 10% and 1% selectivity (exact ground
  truth computed here with NumPy);
- per-statement overhead at the smallest ef whose unfiltered recall@10
  reaches 0.95: the same prepared statement through psycopg with the
  vector as text (`%t`) and as pgvector's binary `vector` (pgvector's
  `register_vector`, `%b`), through asyncpg (pgvector's codec, binary),
  through REST `/search` (one keep-alive connection), and
  `Collection::search` called in-process at the same ef
  (`cargo bench -p valori-benches --bench hnsw`, same m and
  ef_construction), for Valori and, at pgvector's own ef for recall 0.95,
  for pgvector;
- concurrency: 1, 2, 4, 8 and 32 asyncpg connections in one client
  process, each running the prepared unfiltered statement back to back for
  `--seconds`: queries/s and p50/p99 latency, Valori and pgvector;
- a per-stage breakdown of the server's CPU time for one prepared KNN
  statement (`perf record --call-graph dwarf` on `valori serve` while
  psycopg runs it in a loop; each sample is attributed to the first stage
  whose functions are on its stack, in the order search, encode, parse and
  bind, session copy, plan, optimize, physical plan, execute, send,
  receive; "other" is the rest).

With `--shape declared` the table is the one pgvector users write
(`CREATE TABLE t (id bigserial PRIMARY KEY, embedding vector(d), category
int, content text)`), on both servers, and per data set it prints instead:

- `COPY t (embedding, category, content) FROM STDIN` (text; content a short
  text per row; ids 1..n from the sequence, checked), then `CREATE INDEX ON
  t USING hnsw (embedding vector_l2_ops) WITH (m = 16, ef_construction =
  64)`: seconds for each and from the start of COPY to a complete index;
- recall@10, queries/s and the rows returned per ef_search for `SELECT id
  FROM t [WHERE category = $1] ORDER BY embedding <-> $2 LIMIT 10`
  (psycopg, prepared, the vector as text): unfiltered (truth from the data
  set's ground truth file) and with `category` values of 10% and of 1% of
  the rows (one table: values 0..4 hold 10% each, 10..59 1% each; exact
  truth computed here with NumPy);
- upserts: `--upserts` rows of `INSERT … ON CONFLICT (id) DO UPDATE SET
  embedding = EXCLUDED.embedding, category = …, content = …`, one statement
  per row (executemany), in `BEGIN` … `COMMIT` blocks of 1,000 distinct
  ids, half existing and half new: rows/s; then both servers are checked
  against the rows this script expects (count, id range, rows per
  category, 60 sampled rows: category, content and vector); a statement
  a server refuses is reported with its error.

With `--category-index` both servers also get `CREATE INDEX ON t
(category)` (a btree; PostgreSQL then `ANALYZE`s the table) before the
queries. Valori's ef is set with `SET valori.ef_search` (the script also reports
whether its plan takes pgvector's `SET hnsw.ef_search`); the overhead,
concurrency and per-stage measures belong to the fixed shape only.
"""

import argparse
import asyncio
import collections
import http.client
import io
import json
import os
import shutil
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
TARGET_RECALL = 0.95


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


def ef_at(rows, recall):
    """The smallest swept ef whose recall reaches `recall` (None if none)."""
    return next((ef for ef, r, _ in rows if r >= recall), None)


def recall_of(found, truth):
    return sum(len(set(f) & set(t[:10].tolist())) for f, t in zip(found, truth)) / (10 * len(truth))


class Valori:
    def __init__(self, binary, work):
        self.rest_port, self.pg_port = free_port(), free_port()
        self.proc = subprocess.Popen(
            [binary, "serve", "--data-dir", os.path.join(work, "valori"),
             "--rest-addr", f"127.0.0.1:{self.rest_port}", "--pg-addr", f"127.0.0.1:{self.pg_port}",
             "--flight-addr", "127.0.0.1:0",
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

    def cpu_seconds(self):
        """User + system CPU time of the server process so far."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


# --- per-statement overhead -------------------------------------------------

def timed(n, run):
    started = time.perf_counter()
    found = run()
    return found, n / (time.perf_counter() - started)


def psycopg_path(uri, sql, queries, set_ef, binary):
    """One connection, the prepared statement once per query; the vector as
    text (`%t`) or as pgvector's binary type (`%b`, `register_vector`)."""
    from pgvector.psycopg import register_vector

    with psycopg.connect(uri, autocommit=True) as conn:
        if binary:
            register_vector(conn)
        conn.execute(set_ef)
        sql = sql.replace("%s", "%b" if binary else "%t")
        args = (lambda q: (q,)) if binary else (lambda q: (vec_text(q),))
        with conn.cursor() as cur:
            for q in queries[:20]:
                cur.execute(sql, args(q), prepare=True)
                cur.fetchall()

            def run():
                out = []
                for q in queries:
                    cur.execute(sql, args(q), prepare=True)
                    out.append([r[0] for r in cur.fetchall()])
                return out

            return timed(len(queries), run)


def asyncpg_path(uri, sql, queries, set_ef):
    """One asyncpg connection, the statement prepared once, pgvector's
    binary codec."""
    import asyncpg
    from pgvector.asyncpg import register_vector

    async def go():
        conn = await asyncpg.connect(uri)
        try:
            await register_vector(conn)
            await conn.execute(set_ef)
            stmt = await conn.prepare(sql)
            for q in queries[:20]:
                await stmt.fetch(q)
            started = time.perf_counter()
            out = [[r[0] for r in await stmt.fetch(q)] for q in queries]
            return out, len(queries) / (time.perf_counter() - started)
        finally:
            await conn.close()

    return asyncio.run(go())


def rest_path(valori, table, queries, ef):
    """REST `/search`, one keep-alive HTTP connection."""
    conn = http.client.HTTPConnection("127.0.0.1", valori.rest_port)
    path = f"/v1/collections/{table}/search"
    headers = {"Content-Type": "application/json"}

    def one(q):
        conn.request("POST", path, json.dumps({"vector": q.tolist(), "k": 10, "ef": ef}), headers)
        r = conn.getresponse()
        body = json.loads(r.read())
        if r.status != 200:
            sys.exit(f"REST search failed: {r.status} {body}")
        return [h["id"] for h in body["hits"]]

    for q in queries[:20]:
        one(q)
    try:
        return timed(len(queries), lambda: [one(q) for q in queries])
    finally:
        conn.close()


def in_process(name, efs):
    """`Collection::search` on one thread, per ef: (recall@10, queries/s),
    from the Rust HNSW bench (all of the data set's queries)."""
    cmd = ["cargo", "bench", "-q", "-p", "valori-benches", "--bench", "hnsw", "--",
           "--dataset", name, "--m", str(M), "--ef-construction", str(EF_CONSTRUCTION),
           "--threads", "2", "--rounds", "3", "--no-filtered",
           "--ef", ",".join(str(e) for e in efs)]
    print("in-process:", " ".join(cmd), flush=True)
    out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    result = {}
    for line in out.splitlines():
        if line.startswith("{"):
            rec = json.loads(line)
            if rec.get("kind") == "search":
                result[rec["ef"]] = (rec["recall"], rec["qps"])
    return result


# --- concurrency ---------------------------------------------------------------

def concurrency(uri, sql, queries, set_ef, levels, seconds):
    """Per level: queries/s and p50/p99 latency (ms) of `n` asyncpg
    connections running the prepared statement back to back."""
    import asyncpg
    from pgvector.asyncpg import register_vector

    async def level(n):
        conns = [await asyncpg.connect(uri) for _ in range(n)]
        try:
            stmts = []
            for c in conns:
                await register_vector(c)
                await c.execute(set_ef)
                stmts.append(await c.prepare(sql))
            latencies = []
            stop = 0.0

            async def worker(i, stmt):
                qi = i * 7919
                while time.perf_counter() < stop:
                    q = queries[qi % len(queries)]
                    qi += 1
                    t = time.perf_counter()
                    await stmt.fetch(q)
                    latencies.append(time.perf_counter() - t)

            for i, s in enumerate(stmts):  # warm-up
                for q in queries[:5]:
                    await s.fetch(q)
            stop = time.perf_counter() + seconds
            started = time.perf_counter()
            await asyncio.gather(*(worker(i, s) for i, s in enumerate(stmts)))
            elapsed = time.perf_counter() - started
            lat = np.array(latencies) * 1000
            return len(lat) / elapsed, float(np.percentile(lat, 50)), float(np.percentile(lat, 99))
        finally:
            for c in conns:
                await c.close()

    return {n: asyncio.run(level(n)) for n in levels}


# --- per-stage breakdown -----------------------------------------------------------

# A sample belongs to the first stage that has one of its functions on the
# sample's stack (substrings of demangled symbol names).
STAGES = [
    ("search (engine)", ("valori_core::state::Collection::search", "valori_core::hnsw",
                         "Collection::scan_rows")),
    ("encode", ("encode_rows", "encode_batch", "valori_wire::pg::types::encode", "DataRow", "as tokio_util::codec::encoder",
                "PgWireBackendMessage as pgwire::messages::Message>::encode")),
    ("parse and bind", ("sqlparser::", "valori_query::pgvector::rewrite", "valori_query::sql_text::",
                        "handler::classify", "param_literal", "handler::literal_text", "param_value",
                        "valori_query::statement::parse", "bind_value", "vector_components",
                        "valori_query::statement::QueryEngine::bind")),
    ("session copy", ("SessionContext::state", "SessionState as core::clone::Clone", "copied_config",
                      "TaskContext::new", "SessionConfig as core::clone::Clone")),
    ("plan (SQL to logical)", ("SqlToRel", "create_logical_plan", "LogicalPlanBuilder", "statement_to_plan",
                               "prepare_cached", "read_cache", "with_param_values")),
    ("optimize (logical)", ("SessionState::optimize", "datafusion_optimizer::", "KnnRule")),
    ("physical plan", ("create_physical_plan", "physical_optimizer", "PhysicalOptimizerRule",
                       "DefaultPhysicalPlanner", "ValoriKnnExec::try_new", "reset_plan_states")),
    ("execute (rest of)", ("ExecutionPlan>::execute", "ValoriKnnExec", "physical_plan::common::collect",
                           "TryCollect", "RecordBatch", "execute_stream", "valori_query::rows::")),
    ("send", ("__send", "poll_write", "poll_flush", "tcp_sendmsg", "sendto", "sock_write")),
    ("receive", ("recv", "poll_read", "tcp_recvmsg", "decode", "sock_read")),
]


def perf_stages(valori, uri, sql, queries, set_ef, seconds):
    """Server CPU per statement and its split by stage, from `perf record -g`
    on the server while one psycopg connection runs the prepared statement
    (binary vector) in a loop."""
    if shutil.which("perf") is None:
        return None
    from pgvector.psycopg import register_vector

    data = tempfile.mktemp(suffix=".perf.data")
    with psycopg.connect(uri, autocommit=True) as conn:
        register_vector(conn)
        conn.execute(set_ef)
        sql = sql.replace("%s", "%b")
        cur = conn.cursor()
        for q in queries[:20]:
            cur.execute(sql, (q,), prepare=True)
            cur.fetchall()
        # DWARF unwinding: the release build keeps no frame pointers.
        rec = subprocess.Popen(["perf", "record", "-F", "499", "--call-graph", "dwarf,16384",
                                "-p", str(valori.proc.pid), "-o", data],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        cpu0, n = valori.cpu_seconds(), 0
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            cur.execute(sql, (queries[n % len(queries)],), prepare=True)
            cur.fetchall()
            n += 1
        elapsed = time.perf_counter() - started
        cpu = valori.cpu_seconds() - cpu0
        rec.send_signal(2)
        rec.wait()
    script = subprocess.run(["perf", "script", "-i", data, "-F", "ip,sym", "--no-inline"],
                            capture_output=True, text=True).stdout
    os.unlink(data)
    counts, total = collections.Counter(), 0
    for sample in script.split("\n\n"):
        frames = sample.strip()
        if not frames:
            continue
        total += 1
        for stage, needles in STAGES:
            if any(s in frames for s in needles):
                counts[stage] += 1
                break
        else:
            counts["other"] += 1
    return dict(statements=n, wall_us=elapsed / n * 1e6, server_cpu_us=cpu / n * 1e6,
                samples=total, shares={k: v / max(total, 1) for k, v in counts.items()})


# --- one data set ---------------------------------------------------------------------

def run_dataset(name, valori, pg_uri, nq, opts):
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
    report["rest_qps"] = len(queries) / (time.perf_counter() - started)

    sql_pg = f"SELECT id FROM {table} ORDER BY vec <-> %s LIMIT 10"
    sql_asyncpg = f"SELECT id FROM {table} ORDER BY vec <-> $1 LIMIT 10"
    efs = {s: ef_at(report[s]["plain"], TARGET_RECALL) or EF_SWEEP[-1] for s in ("valori", "pgvector")}
    report["ef95"] = efs
    if opts.overhead:
        over = {}
        for system in ("valori", "pgvector"):
            uri = valori.uri() if system == "valori" else pg_uri
            ef = efs[system]
            set_ef = (f"SET valori.ef_search = {ef}" if system == "valori" else f"SET hnsw.ef_search = {ef}")
            paths = {}
            for label, run in (
                ("psycopg text", lambda: psycopg_path(uri, sql_pg, queries, set_ef, False)),
                ("psycopg binary", lambda: psycopg_path(uri, sql_pg, queries, set_ef, True)),
                ("asyncpg", lambda: asyncpg_path(uri, sql_asyncpg, queries, set_ef)),
            ):
                try:
                    found, qps = run()
                    paths[label] = (recall_of(found, truth), qps)
                except Exception as e:  # a path a system cannot serve is reported, not fatal
                    paths[label] = (None, None)
                    print(f"{system} {label}: failed: {e}", flush=True)
            if system == "valori":
                found, qps = rest_path(valori, table, queries, ef)
                paths["REST /search"] = (recall_of(found, truth), qps)
            over[system] = dict(ef=ef, paths=paths)
            print(f"{system} overhead at ef {ef}: " + ", ".join(
                f"{k} {v[1] and round(v[1])}" for k, v in paths.items()), flush=True)
        report["overhead"] = over
    if opts.concurrency:
        report["concurrency"] = {}
        for system in ("valori", "pgvector"):
            uri = valori.uri() if system == "valori" else pg_uri
            ef = efs[system]
            set_ef = (f"SET valori.ef_search = {ef}" if system == "valori" else f"SET hnsw.ef_search = {ef}")
            report["concurrency"][system] = concurrency(uri, sql_asyncpg, queries, set_ef,
                                                        opts.levels, opts.seconds)
            print(f"{system} concurrency: {report['concurrency'][system]}", flush=True)
    if opts.stages:
        ef = efs["valori"]
        report["stages"] = perf_stages(valori, valori.uri(), sql_pg, queries,
                                       f"SET valori.ef_search = {ef}", opts.stage_seconds)
        print(f"valori stages at ef {ef}: {report['stages']}", flush=True)
    return report


def fmt(x, digits=0):
    return "–" if x is None else f"{x:,.{digits}f}"


def print_report(name, report, inproc):
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
          f"REST search {report['rest_qps']:.0f} q/s (urllib, one connection per request)")

    if "overhead" in report:
        ov = report["overhead"]
        ef = ov["valori"]["ef"]
        engine = inproc.get(ef) if inproc else None
        print(f"\nPer-statement overhead, one connection, unfiltered, at the smallest ef reaching "
              f"recall@10 {TARGET_RECALL} (Valori ef {ef}, pgvector ef {ov['pgvector']['ef']}):")
        print("| path | Valori recall | Valori q/s | Valori / in-process | pgvector recall | pgvector q/s "
              "| Valori / pgvector |\n|---|---|---|---|---|---|---|")
        if engine:
            print(f"| `Collection::search` in process | {engine[0]:.4f} | {engine[1]:,.0f} | 1.00 | | | |")
        for label in ("psycopg text", "psycopg binary", "asyncpg", "REST /search"):
            vrec, vq = ov["valori"]["paths"].get(label, (None, None))
            prec, pq = ov["pgvector"]["paths"].get(label, (None, None))
            vs_engine = f"{vq / engine[1]:.3f}" if vq and engine else "–"
            vs_pg = f"{vq / pq:.2f}" if vq and pq else "–"
            print(f"| {label} | {fmt(vrec, 4)} | {fmt(vq)} | {vs_engine} | {fmt(prec, 4)} | {fmt(pq)} | {vs_pg} |")
        if engine:
            print(f"Valori per-statement overhead over the engine search (psycopg binary): "
                  f"{(1 / ov['valori']['paths']['psycopg binary'][1] - 1 / engine[1]) * 1e6:.0f} µs"
                  if ov['valori']['paths'].get('psycopg binary', (0, 0))[1] else "")
    if "concurrency" in report:
        c = report["concurrency"]
        print("\nConcurrency (asyncpg, prepared, unfiltered, each at its ef for recall 0.95): "
              "queries/s, p50 / p99 ms")
        print("| connections | Valori q/s | Valori p50 | Valori p99 | pgvector q/s | pgvector p50 "
              "| pgvector p99 | Valori / pgvector |\n|---|---|---|---|---|---|---|---|")
        for n in sorted(c["valori"]):
            vq, v50, v99 = c["valori"][n]
            pq, p50, p99 = c["pgvector"][n]
            print(f"| {n} | {vq:,.0f} | {v50:.2f} | {v99:.2f} | {pq:,.0f} | {p50:.2f} | {p99:.2f} "
                  f"| {vq / pq:.2f} |")
    if report.get("stages"):
        s = report["stages"]
        print(f"\nServer CPU per prepared KNN statement (psycopg, binary vector, Valori ef "
              f"{report['ef95']['valori']}): {s['server_cpu_us']:.0f} µs CPU, {s['wall_us']:.0f} µs wall "
              f"per statement at the client, {s['statements']} statements, {s['samples']} samples")
        print("| stage | share of server CPU | µs per statement |\n|---|---|---|")
        for stage, share in sorted(s["shares"].items(), key=lambda kv: -kv[1]):
            print(f"| {stage} | {share * 100:.1f}% | {share * s['server_cpu_us']:.0f} |")


# --- the table as pgvector users declare it (`--shape declared`) --------------------

# Rows per COPY statement: Valori's `COPY … FROM` is one atomic event of at
# most 100,000 rows (docs/sql.md); both servers get the same statements.
COPY_ROWS_MAX = 100_000
UPSERT_SQL = ("INSERT INTO t (id, embedding, category, content) VALUES (%s, %s, %s, %s) "
              "ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding, "
              "category = EXCLUDED.category, content = EXCLUDED.content")


def category_of(i):
    """Row `i`'s category: values 0..4 hold 10% of the rows each, values
    10..59 1% each, so one table serves both selectivities."""
    r = i % 100
    return r // 10 if r < 50 else 10 + (r - 50)


def content_of(i, c):
    return f"document {i} in category {c}"


def parse_vec(text):
    return np.array([float(x) for x in text.strip("[]").split(",")])


def sweep_declared(conn, sql, queries, truth, set_ef, args):
    """Per ef: (ef, recall@10, queries/s, fewest rows returned, mean rows
    returned) over every query, prepared, one connection."""
    rows = []
    with conn.cursor() as cur:
        for ef in EF_SWEEP:
            cur.execute(set_ef.format(ef=ef))
            hits, counts = 0, []
            started = time.perf_counter()
            for qi, q in enumerate(queries):
                cur.execute(sql, args(qi, vec_text(q)), prepare=True)
                got = [r[0] for r in cur.fetchall()]
                counts.append(len(got))
                hits += len(set(got) & set(truth[qi][:10].tolist()))
            elapsed = time.perf_counter() - started
            rows.append((ef, hits / (10 * len(queries)), len(queries) / elapsed, min(counts),
                         sum(counts) / len(counts)))
    return rows


def upsert_plan(n, total, per_tx, seed=7):
    """Transactions of `per_tx` distinct ids, half of them existing rows
    (1..n) and half new ones (above n, each new id once), in a fixed order."""
    rng = np.random.default_rng(seed)
    txs, next_new = [], n + 1
    for _ in range(total // per_tx):
        old = rng.choice(n, per_tx // 2, replace=False) + 1
        new = np.arange(next_new, next_new + per_tx - len(old))
        next_new += len(new)
        ids = np.concatenate([old, new])
        rng.shuffle(ids)
        txs.append(ids.tolist())
    return txs


def upsert_rows(base, txs, seed=11):
    """The rows each transaction writes: a vector near a base row, a new
    category and content; the same for both servers."""
    rng = np.random.default_rng(seed)
    out = []
    for t, ids in enumerate(txs):
        src = rng.integers(0, len(base), len(ids))
        vecs = base[src] + rng.normal(0, 0.01, (len(ids), base.shape[1])).astype(np.float32)
        cats = rng.integers(0, 100, len(ids))
        out.append([(int(i), vec_text(v), category_of(int(c)), f"upserted {int(i)} in transaction {t}")
                    for i, v, c in zip(ids, vecs, cats)])
    return out


def run_upserts(conn, batches):
    """Each batch in `BEGIN` … `COMMIT`, the statement executed once per row
    (psycopg's executemany, pipelined). Returns rows/s, or the failing
    statement and error."""
    started = time.perf_counter()
    done = 0
    with conn.cursor() as cur:
        for rows in batches:
            try:
                conn.execute("BEGIN")
                cur.executemany(UPSERT_SQL, rows)
                conn.execute("COMMIT")
            except psycopg.Error as e:
                try:
                    conn.execute("ROLLBACK")
                except psycopg.Error:
                    pass
                return dict(error=f"{type(e).__name__} {e.sqlstate}: {e}", statement=UPSERT_SQL,
                            committed_rows=done)
            done += len(rows)
    elapsed = time.perf_counter() - started
    return dict(rows=done, seconds=elapsed, rows_per_s=done / elapsed)


def table_digest(conn, sample_ids):
    """What a server holds after the upserts: row count, id range, rows per
    category, and the sampled rows (id, category, content, vector)."""
    count, lo, hi = conn.execute("SELECT count(*), min(id), max(id) FROM t").fetchone()
    per_cat = dict(conn.execute("SELECT category, count(*) FROM t GROUP BY category").fetchall())
    rows = {}
    with conn.cursor() as cur:
        for i in sample_ids:
            cur.execute("SELECT id, category, content, embedding FROM t WHERE id = %s", (i,),
                        prepare=True)
            r = cur.fetchone()
            rows[i] = None if r is None else (r[1], r[2], parse_vec(r[3]))
    return dict(count=count, min=lo, max=hi, per_category=per_cat, rows=rows)


def check_upserted(digests, expected, sample_ids):
    """Both servers against the model of the rows kept here and against each
    other; a list of the differences found (empty: they agree)."""
    problems = []
    exp_count = len(expected)
    exp_cats = collections.Counter(c for c, _, _ in expected.values())
    for system, d in digests.items():
        if d["count"] != exp_count:
            problems.append(f"{system}: {d['count']} rows, expected {exp_count}")
        if (d["min"], d["max"]) != (min(expected), max(expected)):
            problems.append(f"{system}: ids {d['min']}..{d['max']}, expected {min(expected)}..{max(expected)}")
        if d["per_category"] != dict(exp_cats):
            problems.append(f"{system}: rows per category differ from the model")
        for i in sample_ids:
            got, (cat, content, vec) = d["rows"][i], expected[i]
            if got is None:
                problems.append(f"{system}: row {i} missing")
            elif got[0] != cat or got[1] != content:
                problems.append(f"{system}: row {i} is {got[:2]}, expected {(cat, content)}")
            elif np.abs(got[2] - vec).max() > 1e-4:  # Q16.16 rounding is 2^-17
                problems.append(f"{system}: row {i} vector differs by {np.abs(got[2] - vec).max()}")
    return problems


def run_declared(name, valori, pg_uri, nq, opts):
    base = read_fvecs(os.path.join(DATA, name, "base.fvecs"))
    queries = read_fvecs(os.path.join(DATA, name, "query.fvecs"))[:nq]
    n, dim = base.shape
    # bigserial ids start at 1: row i of base.fvecs is id i + 1 on both servers.
    truth = read_ivecs(os.path.join(DATA, name, "groundtruth.ivecs"))[:nq] + 1
    cats = np.array([category_of(i) for i in range(n)])
    print(f"\n## {name} (declared table): {n:,} × {dim}, {len(queries)} queries", flush=True)
    filters = {}
    for label, qcat in (("10%", lambda qi: qi % 5), ("1%", lambda qi: 10 + qi % 50)):
        qc = [qcat(qi) for qi in range(len(queries))]
        ftruth = [exact_topk(base, q[None, :], 10, mask=(cats == qc[qi]))[0] + 1
                  for qi, q in enumerate(queries)]
        filters[label] = (qc, ftruth)
    lines = [f"{vec_text(v)}\t{c}\t{content_of(i + 1, c)}\n" for i, (v, c) in enumerate(zip(base, cats))]
    txs = upsert_plan(n, opts.upserts, 1000)
    batches = upsert_rows(base, txs)
    expected = {i + 1: (int(c), content_of(i + 1, c), base[i].astype(np.float64)) for i, c in enumerate(cats)}
    for rows in batches:
        for i, v, c, content in rows:
            expected[i] = (c, content, parse_vec(v))
    rng = np.random.default_rng(3)
    touched = sorted({i for ids in txs for i in ids})
    sample_ids = sorted(set(rng.choice(touched, 40, replace=False).tolist())
                        | set((rng.choice(n, 20, replace=False) + 1).tolist()))
    sample_ids = [int(i) for i in sample_ids]
    report = dict(rows=n, dim=dim, queries=len(queries), load_avg=[os.getloadavg()])
    digests = {}
    for system in ("valori", "pgvector"):
        uri = valori.uri() if system == "valori" else pg_uri
        with psycopg.connect(uri, autocommit=True) as conn:
            if system == "pgvector":
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            conn.execute("DROP TABLE IF EXISTS t")
            conn.execute(f"CREATE TABLE t (id bigserial PRIMARY KEY, embedding vector({dim}), "
                         "category int, content text)")
            started = time.perf_counter()
            with conn.cursor() as cur:
                for lo in range(0, n, COPY_ROWS_MAX):
                    with cur.copy("COPY t (embedding, category, content) FROM STDIN") as copy:
                        copy.write("".join(lines[lo:lo + COPY_ROWS_MAX]))
            load_s = time.perf_counter() - started
            count, lo_id, hi_id = conn.execute("SELECT count(*), min(id), max(id) FROM t").fetchone()
            if (count, lo_id, hi_id) != (n, 1, n):
                sys.exit(f"{system}: after COPY {count} rows, ids {lo_id}..{hi_id}; expected {n}, 1..{n}")
            started_index = time.perf_counter()
            conn.execute(f"CREATE INDEX ON t USING hnsw (embedding vector_l2_ops) "
                         f"WITH (m = {M}, ef_construction = {EF_CONSTRUCTION})")
            if system == "valori":
                valori.wait_indexed("t")
            done = time.perf_counter()
            if opts.category_index:
                conn.execute("CREATE INDEX ON t (category)")
                if system == "pgvector":
                    conn.execute("ANALYZE t")
            index_s, total_s = done - started_index, done - started
            honoured = None
            if system == "valori":
                conn.execute("SET hnsw.ef_search = 17")
                plan = str(conn.execute(
                    "EXPLAIN SELECT id FROM t ORDER BY embedding <-> %s LIMIT 10",
                    (vec_text(queries[0]),)).fetchall())
                honoured = "ef=17" in plan
                conn.execute("RESET hnsw.ef_search")
                print(f"valori: SET hnsw.ef_search honoured by the plan: {honoured}", flush=True)
            # pgvector users set hnsw.ef_search; Valori's setting is valori.ef_search.
            set_ef = "SET valori.ef_search = {ef}" if system == "valori" else "SET hnsw.ef_search = {ef}"
            plain = sweep_declared(conn, "SELECT id FROM t ORDER BY embedding <-> %s LIMIT 10",
                                   queries, truth, set_ef, lambda qi, v: (v,))
            filtered = {}
            for label, (qc, ftruth) in filters.items():
                filtered[label] = sweep_declared(
                    conn, "SELECT id FROM t WHERE category = %s ORDER BY embedding <-> %s LIMIT 10",
                    queries, ftruth, set_ef, lambda qi, v, qc=qc: (qc[qi], v))
            print(f"{system}: COPY {load_s:.1f} s, index {index_s:.1f} s; sweeps done", flush=True)
            up = run_upserts(conn, batches)
            print(f"{system}: upserts {up}", flush=True)
            digests[system] = table_digest(conn, sample_ids)
            report[system] = dict(load=load_s, index=index_s, load_and_index=total_s, plain=plain,
                                  filtered=filtered, upsert=up, hnsw_ef_search_honoured=honoured)
        report["load_avg"].append(os.getloadavg())
    report["upsert_check"] = check_upserted(digests, expected, sample_ids)
    report["upsert_rows_expected"] = len(expected)
    report["sampled_rows"] = len(sample_ids)
    print(f"upsert check: {report['upsert_check'] or 'both servers hold the expected rows'}", flush=True)
    return report


def print_declared(name, r):
    v, p = r["valori"], r["pgvector"]
    print(f"\n### {name}, declared table: {r['rows']:,} × {r['dim']}, {r['queries']} queries")
    print(f"load average before / after each server: {r['load_avg']}")
    print("| | Valori | pgvector | Valori / pgvector |\n|---|---|---|---|")
    print(f"| COPY load, s | {v['load']:.2f} | {p['load']:.2f} | {p['load'] / v['load']:.2f}× the rows/s |")
    print(f"| CREATE INDEX until complete, s | {v['index']:.2f} | {p['index']:.2f} | "
          f"{p['index'] / max(v['index'], 1e-9):.2f}× faster |")
    print(f"| COPY start to index complete, s | {v['load_and_index']:.2f} | {p['load_and_index']:.2f} | "
          f"{p['load_and_index'] / v['load_and_index']:.2f}× faster |")
    vu, pu = v["upsert"], p["upsert"]
    if "error" in vu or "error" in pu:
        for s, u in (("Valori", vu), ("pgvector", pu)):
            if "error" in u:
                print(f"| upsert | {s} FAILED after {u['committed_rows']} rows: `{u['statement']}`: {u['error']} |")
    else:
        print(f"| upsert rows/s (1,000-row transactions) | {vu['rows_per_s']:,.0f} | {pu['rows_per_s']:,.0f} | "
              f"{vu['rows_per_s'] / pu['rows_per_s']:.2f} |")
    print(f"upsert check ({r['upsert_rows_expected']:,} rows expected, {r['sampled_rows']} sampled): "
          f"{r['upsert_check'] or 'both servers hold the expected rows'}")
    print(f"Valori honours SET hnsw.ef_search: {v['hnsw_ef_search_honoured']}")
    for label, key in (("unfiltered", None), ("category = … (10%)", "10%"), ("category = … (1%)", "1%")):
        vr = v["plain"] if key is None else v["filtered"][key]
        pr = p["plain"] if key is None else p["filtered"][key]
        print(f"\n{label}: ef_search, recall@10, queries/s, rows returned (min / mean)")
        print("| ef | Valori recall | Valori q/s | Valori rows | pgvector recall | pgvector q/s | pgvector rows |"
              "\n|---|---|---|---|---|---|---|")
        for (ef, vrec, vq, vmin, vmean), (_, prec, pq, pmin, pmean) in zip(vr, pr):
            print(f"| {ef} | {vrec:.4f} | {vq:,.0f} | {vmin} / {vmean:.2f} | {prec:.4f} | {pq:,.0f} "
                  f"| {pmin} / {pmean:.2f} |")
        a = max((q for _, rec, q, _, _ in vr if rec >= TARGET_RECALL), default=None)
        b = max((q for _, rec, q, _, _ in pr if rec >= TARGET_RECALL), default=None)
        ratio = f"{a / b:.2f}" if a and b else "n/a"
        print(f"best q/s at recall ≥ {TARGET_RECALL}: Valori {a and round(a)}, pgvector {b and round(b)} "
              f"(best recall {max(rec for _, rec, _, _, _ in pr):.4f}), ratio {ratio}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default="glove50-100k-l2,wordnet-minilm20k-l2")
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "valori"))
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--concurrency", default="1,2,4,8,32",
                    help="connection counts of the concurrency runs")
    ap.add_argument("--seconds", type=float, default=3.0, help="duration of each concurrency run")
    ap.add_argument("--stage-seconds", type=float, default=6.0, help="duration of the perf recording")
    ap.add_argument("--no-inprocess", dest="inprocess", action="store_false")
    ap.add_argument("--no-overhead", dest="overhead", action="store_false")
    ap.add_argument("--no-concurrency", dest="concurrency", action="store_false")
    ap.add_argument("--no-stages", dest="stages", action="store_false")
    ap.add_argument("--json", help="also write every figure to this file")
    ap.add_argument("--shape", choices=("fixed", "declared"), default="fixed",
                    help="fixed: t (id, vec, tag); declared: the table as pgvector users "
                         "write it, with upserts (see the docstring)")
    ap.add_argument("--category-index", action="store_true",
                    help="--shape declared: also CREATE INDEX ON t (category) (btree) on both servers")
    ap.add_argument("--upserts", type=int, default=20_000,
                    help="rows upserted in 1,000-row transactions (--shape declared)")
    args = ap.parse_args()
    args.levels = [int(x) for x in args.concurrency.split(",")] if args.concurrency else []
    args.concurrency = bool(args.levels)
    import pgserver

    work = tempfile.mkdtemp(prefix="valori-pgvector-")
    pg = pgserver.get_server(os.path.join(work, "pg"), cleanup_mode="delete")
    valori = Valori(args.bin, work)
    # The machine may be shared: the load before and after says how much.
    print(f"load average at start: {os.getloadavg()}", flush=True)
    if args.shape == "declared":
        try:
            results = [(name, run_declared(name, valori, pg.get_uri(), args.queries, args))
                       for name in args.datasets.split(",")]
        finally:
            valori.stop()
        print(f"load average at the end: {os.getloadavg()}", flush=True)
        for name, report in results:
            print_declared(name, report)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(dict(results=dict(results)), f, indent=1, default=str)
        return
    try:
        results = [(name, run_dataset(name, valori, pg.get_uri(), args.queries, args))
                   for name in args.datasets.split(",")]
    finally:
        valori.stop()
    print(f"load average at the end of the SQL runs: {os.getloadavg()}", flush=True)
    inproc = {}
    if args.inprocess and args.overhead:
        for name, _ in results:
            inproc[name] = in_process(name, EF_SWEEP)
    for name, report in results:
        print_report(name, report, inproc.get(name))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(results=dict(results), inprocess=inproc), f, indent=1, default=str)


if __name__ == "__main__":
    main()
