"""Exporting a whole collection: Arrow Flight against REST and the Postgres
protocol, and against PostgreSQL + pgvector, same data, one run.

usage: python3 benches/flight_export_compare.py [--bin target/release/valori]
           [--datasets glove50-100k-l2,wordnet-minilm20k-l2] [--runs 3]

Per data set: `CREATE TABLE t (id BIGINT PRIMARY KEY, vec VECTOR(d), tag
BIGINT)` in Valori and in PostgreSQL with pgvector (PyPI `pgserver`),
tags `id mod 10`. Ingest first, each path into a fresh table and timed
until it is durable, the best of `--runs`: Valori's Flight DoPut (one
event), ADBC's `adbc_ingest` (mode `append` into the created table: the
Flight SQL driver's `CommandStatementIngest`, which the server loads as a
DoPut of the same columns, one event, answered once it is fsynced; the
connection is opened before the clock starts), its REST `POST /v1/collections/{name}/records/batch` (requests of
at most 10,000 rows and about 16 MB of JSON, encoded before the clock
starts, one durable event each) and its `COPY … FROM STDIN`, and
PostgreSQL's `COPY … FROM STDIN` (text; its fsync settings are printed).
Then each way of reading every row of the DoPut's table, the best of
`--runs`:

- Flight DoGet of the collection (ticket `t`: `id`, `vector` (Q16.16),
  `tag`, `metadata`, `vector_f32`), pyarrow reading the whole stream;
- Flight DoGet of the SQL ticket `SELECT id, vec, tag FROM t`;
- REST `POST /v1/sql` of that statement as an Arrow IPC stream and as
  JSON;
- Valori's Postgres protocol: psycopg `SELECT id, vec, tag FROM t`
  (`fetchall`, text format);
- PostgreSQL: `COPY t (id, vec, tag) TO STDOUT` (text) and the `SELECT`
  through psycopg;
- writing the Flight export's record batches to a local Arrow IPC file
  (`pyarrow.ipc.new_file`, then fsync), the issue's reference for "memory
  speed".

Rows/s for each, and MB/s of what each moves: the Arrow buffers received
(`Table.nbytes`) for Arrow paths, the response body for REST JSON, the COPY
text, and for psycopg's SELECT the text of the values as PostgreSQL sends
them (the COPY size, a lower bound of the protocol bytes). The server is
whatever `--bin` is: say which build a figure came from.

Needs .venv-bench (docs/benchmarks.md): pgserver, psycopg, pgvector,
numpy, pyarrow, adbc_driver_flightsql.
"""

import argparse
import http.client
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import adbc_driver_flightsql.dbapi as adbc
import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.ipc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pgvector_compare import Valori, read_fvecs, vec_text  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATA = os.path.join(ROOT, "..", "shared", "data")
SELECT = "SELECT id, vec, tag FROM t"


def best(runs, f):
    """(seconds, result) of the fastest of `runs` calls of `f`."""
    out = None
    for _ in range(runs):
        t0 = time.perf_counter()
        r = f()
        dt = time.perf_counter() - t0
        if out is None or dt < out[0]:
            out = (dt, r)
    return out


def rest_sql(valori, accept):
    body = json.dumps({"query": SELECT}).encode()
    req = urllib.request.Request(valori.rest + "/v1/sql", data=body, method="POST",
                                 headers={"Content-Type": "application/json", "Accept": accept})
    with urllib.request.urlopen(req, timeout=3600) as r:
        return r.read()


def run_dataset(name, valori, fl, fl_uri, pg_uri, runs):
    base = read_fvecs(os.path.join(DATA, name, "base.fvecs"))
    n, dim = base.shape
    tags = np.arange(n) % 10
    out = {"rows": n, "dim": dim}

    # Ingest, each path into a fresh table, the best of `runs`; every path
    # is durable when it returns (one fsynced event per DoPut, COPY and REST
    # batch; PostgreSQL's COMMIT with its settings, printed).
    create = f"CREATE TABLE {{}} (id BIGINT PRIMARY KEY, vec VECTOR({dim}), tag BIGINT)"
    table = pa.table({
        "id": pa.array(np.arange(n, dtype=np.uint64)),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(base.reshape(-1)), dim),
        "tag": pa.array(tags.astype(np.uint64)),
    })
    buf = io.StringIO()
    for i, (v, t) in enumerate(zip(base, tags)):
        buf.write(f"{i}\t{vec_text(v)}\t{int(t)}\n")
    copy_text = buf.getvalue()
    # REST bodies are encoded before the clock starts, as for the other
    # paths (the Arrow table, the COPY text): each of at most 10,000 rows
    # and about 16 MB, well under the server's 64 MiB body limit.
    per = max(1, min(10_000, (16 << 20) // len(vec_text(base[0]).encode())))
    bodies = [json.dumps({"ids": list(range(lo, min(lo + per, n))),
                          "vectors": [[float(x) for x in v] for v in base[lo:lo + per]],
                          "tags": [int(t) for t in tags[lo:lo + per]]}).encode()
              for lo in range(0, n, per)]
    out["rest_batch_rows"] = per
    out["rest_batch_mb"] = sum(len(b) for b in bodies) / 1e6

    def fresh(uri, name):
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {name}")
            conn.execute(create.format(name))

    def count(uri, name):
        with psycopg.connect(uri, autocommit=True) as conn:
            return conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0]

    def doput():
        writer, reader = fl.do_put(flight.FlightDescriptor.for_path("t"), table.schema)
        writer.write_table(table, max_chunksize=16384)
        writer.done_writing()
        reader.read()
        writer.close()

    # About 8 MiB a batch.
    chunked = pa.Table.from_batches(
        table.to_batches(max_chunksize=max(1, (8 << 20) * n // max(1, table.nbytes))))

    def adbc_ingest(conn):
        with conn.cursor() as cur:
            # ADBC's driver sends one gRPC message per record batch and at
            # most 16 MiB in one.
            written = cur.adbc_ingest("t_adbc", chunked, mode="append")
        if written not in (n, -1):
            sys.exit(f"adbc_ingest reported {written} rows, expected {n}")

    def rest_batches():
        conn = http.client.HTTPConnection("127.0.0.1", valori.rest_port, timeout=600)
        try:
            for body in bodies:
                conn.request("POST", "/v1/collections/t_rest/records/batch", body,
                             {"Content-Type": "application/json"})
                r = conn.getresponse()
                answer = r.read()
                if r.status != 201:
                    sys.exit(f"REST batch insert failed: {r.status} {answer[:300]!r}")
        finally:
            conn.close()

    def copy_in(uri, name):
        with psycopg.connect(uri, autocommit=True) as conn, conn.cursor() as cur:
            with cur.copy(f"COPY {name} (id, vec, tag) FROM STDIN") as copy:
                copy.write(copy_text)

    with psycopg.connect(pg_uri, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        out["pg_settings"] = {s: conn.execute(f"SHOW {s}").fetchone()[0]
                              for s in ("fsync", "synchronous_commit", "wal_sync_method")}
    ingest = {}
    # Each statement is its own durable transaction: autocommit, as served.
    adbc_conn = adbc.connect(fl_uri, autocommit=True)
    for label, uri, name, load in (
        ("Valori Flight DoPut (one event)", valori.uri(), "t", doput),
        ("Valori ADBC adbc_ingest (Flight SQL, one event)", valori.uri(), "t_adbc",
         lambda: adbc_ingest(adbc_conn)),
        (f"Valori REST batch insert ({per:,} rows a request)", valori.uri(), "t_rest", rest_batches),
        ("Valori COPY FROM STDIN (psycopg, text)", valori.uri(), "t_copy", lambda: copy_in(valori.uri(), "t_copy")),
        ("PostgreSQL COPY FROM STDIN (psycopg, text)", pg_uri, "t", lambda: copy_in(pg_uri, "t")),
    ):
        best_s = None
        for _ in range(runs):
            fresh(uri, name)
            t0 = time.perf_counter()
            load()
            dt = time.perf_counter() - t0
            got = count(uri, name)
            if got != n:
                sys.exit(f"{label}: {got} rows after the load, expected {n}")
            best_s = dt if best_s is None else min(best_s, dt)
        ingest[label] = best_s
        print(f"{name}: {label} {best_s:.2f} s", flush=True)
    adbc_conn.close()
    with psycopg.connect(valori.uri(), autocommit=True) as conn:
        conn.execute("DROP TABLE t_adbc")
        conn.execute("DROP TABLE t_rest")
        conn.execute("DROP TABLE t_copy")
    out["ingest"] = ingest
    out["valori_doput_s"] = ingest["Valori Flight DoPut (one event)"]
    out["pg_copy_in_s"] = ingest["PostgreSQL COPY FROM STDIN (psycopg, text)"]

    paths = {}

    def flight_get(ticket):
        return fl.do_get(flight.Ticket(ticket)).read_all()

    dt, t = best(runs, lambda: flight_get(b"t"))
    assert t.num_rows == n
    paths["Flight DoGet, collection"] = (dt, t.nbytes)
    exported = t
    dt, t = best(runs, lambda: flight_get(SELECT.encode()))
    assert t.num_rows == n
    paths["Flight DoGet, SQL ticket"] = (dt, t.nbytes)
    dt, raw = best(runs, lambda: rest_sql(valori, "application/vnd.apache.arrow.stream"))
    t = pyarrow.ipc.open_stream(raw).read_all()
    assert t.num_rows == n
    paths["REST /v1/sql, Arrow IPC"] = (dt, t.nbytes)
    dt, raw = best(runs, lambda: rest_sql(valori, "application/json"))
    assert len(json.loads(raw)["rows"]) == n
    paths["REST /v1/sql, JSON"] = (dt, len(raw))

    def select(uri):
        with psycopg.connect(uri, autocommit=True) as conn:
            return conn.execute(SELECT).fetchall()

    def copy_out():
        chunks = []
        with psycopg.connect(pg_uri, autocommit=True) as conn, conn.cursor() as cur:
            with cur.copy("COPY t (id, vec, tag) TO STDOUT") as copy:
                for data in copy:
                    chunks.append(bytes(data))
        return sum(len(c) for c in chunks)

    dt, copied = best(runs, copy_out)
    paths["PostgreSQL COPY TO STDOUT"] = (dt, copied)
    dt, rows = best(runs, lambda: select(pg_uri))
    assert len(rows) == n
    paths["PostgreSQL SELECT (psycopg)"] = (dt, copied)
    dt, rows = best(runs, lambda: select(valori.uri()))
    assert len(rows) == n
    paths["Valori Postgres protocol SELECT (psycopg)"] = (dt, copied)

    def write_ipc():
        with tempfile.NamedTemporaryFile(suffix=".arrow") as f:
            with pa.OSFile(f.name, "wb") as sink, pyarrow.ipc.new_file(sink, exported.schema) as w:
                w.write_table(exported)
            os.fsync(f.fileno())
            return os.path.getsize(f.name)

    dt, size = best(runs, write_ipc)
    paths["local Arrow IPC file write of the export"] = (dt, exported.nbytes)
    out["paths"] = {k: {"s": v[0], "rows_per_s": n / v[0], "mb_per_s": v[1] / v[0] / 1e6, "bytes": v[1]}
                    for k, v in paths.items()}
    return out


def print_report(name, r):
    print(f"\n## {name}: {r['rows']:,} rows × {r['dim']}")
    print(f"\ningest, best of the runs (PostgreSQL {r['pg_settings']}; REST bodies "
          f"{r['rest_batch_mb']:.1f} MB of JSON):")
    doput = r["valori_doput_s"]
    print("| ingest path | s | rows/s | DoPut rows/s ÷ this |\n|---|---|---|---|")
    for k, s in r["ingest"].items():
        print(f"| {k} | {s:.3f} | {r['rows'] / s:,.0f} | {s / doput:.2f} |")
    print()
    copy = r["paths"]["PostgreSQL COPY TO STDOUT"]["rows_per_s"]
    print("| path | s | rows/s | MB | MB/s | rows/s ÷ PostgreSQL COPY |")
    print("|---|---|---|---|---|---|")
    for k, v in r["paths"].items():
        print(f"| {k} | {v['s']:.3f} | {v['rows_per_s']:,.0f} | {v['bytes'] / 1e6:.1f} | "
              f"{v['mb_per_s']:.0f} | {v['rows_per_s'] / copy:.2f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "valori"))
    ap.add_argument("--datasets", default="glove50-100k-l2,wordnet-minilm20k-l2")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    import pgserver

    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    print(f"commit {commit}, server {args.bin}, load average {os.getloadavg()}", flush=True)
    work = tempfile.mkdtemp(prefix="valori-flight-bench-")
    pg = pgserver.get_server(os.path.join(work, "pg"), cleanup_mode="delete")
    valori = Valori(args.bin, work)
    try:
        where = valori.call("GET", "/v1/flight")
        fl_uri = f"grpc://127.0.0.1:{where['port']}"
        fl = flight.connect(fl_uri)
        results = []
        for name in args.datasets.split(","):
            results.append((name, run_dataset(name, valori, fl, fl_uri, pg.get_uri(), args.runs)))
            with psycopg.connect(valori.uri(), autocommit=True) as conn:
                conn.execute("DROP TABLE t")
    finally:
        valori.stop()
        pg.cleanup()
        # Both servers' data: about 0.6 GB a run.
        shutil.rmtree(work, ignore_errors=True)
    for name, r in results:
        print_report(name, r)
    print(f"\nload average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
