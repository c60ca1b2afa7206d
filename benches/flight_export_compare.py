"""Exporting a whole collection: Arrow Flight against REST and the Postgres
protocol, and against PostgreSQL + pgvector, same data, one run.

usage: python3 benches/flight_export_compare.py [--bin target/release/valori]
           [--datasets glove50-100k-l2,wordnet-minilm20k-l2] [--runs 3]

Per data set: `CREATE TABLE t (id BIGINT PRIMARY KEY, vec VECTOR(d), tag
BIGINT)` in Valori (loaded by one Flight DoPut, timed) and in PostgreSQL
with pgvector (PyPI `pgserver`, `COPY … FROM STDIN`, timed), tags `id mod
10`. Then each way of reading every row, the best of `--runs`:

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
numpy, pyarrow.
"""

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

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


def run_dataset(name, valori, fl, pg_uri, runs):
    base = read_fvecs(os.path.join(DATA, name, "base.fvecs"))
    n, dim = base.shape
    tags = np.arange(n) % 10
    out = {"rows": n, "dim": dim}

    # Valori: the table, loaded by one DoPut.
    with psycopg.connect(valori.uri(), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS t")
        conn.execute(f"CREATE TABLE t (id BIGINT PRIMARY KEY, vec VECTOR({dim}), tag BIGINT)")
    table = pa.table({
        "id": pa.array(np.arange(n, dtype=np.uint64)),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(base.reshape(-1)), dim),
        "tag": pa.array(tags.astype(np.uint64)),
    })
    t0 = time.perf_counter()
    writer, reader = fl.do_put(flight.FlightDescriptor.for_path("t"), table.schema)
    writer.write_table(table, max_chunksize=16384)
    writer.done_writing()
    reader.read()
    writer.close()
    out["valori_doput_s"] = time.perf_counter() - t0

    # PostgreSQL: the same rows by COPY.
    buf = io.StringIO()
    for i, (v, t) in enumerate(zip(base, tags)):
        buf.write(f"{i}\t{vec_text(v)}\t{int(t)}\n")
    with psycopg.connect(pg_uri, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute("DROP TABLE IF EXISTS t")
        conn.execute(f"CREATE TABLE t (id BIGINT PRIMARY KEY, vec VECTOR({dim}), tag BIGINT)")
        t0 = time.perf_counter()
        with conn.cursor() as cur, cur.copy("COPY t (id, vec, tag) FROM STDIN") as copy:
            copy.write(buf.getvalue())
        out["pg_copy_in_s"] = time.perf_counter() - t0

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
    print(f"load: Valori Flight DoPut {r['valori_doput_s']:.2f} s, PostgreSQL COPY FROM {r['pg_copy_in_s']:.2f} s")
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
        fl = flight.connect(f"grpc://127.0.0.1:{where['port']}")
        results = []
        for name in args.datasets.split(","):
            results.append((name, run_dataset(name, valori, fl, pg.get_uri(), args.runs)))
            with psycopg.connect(valori.uri(), autocommit=True) as conn:
                conn.execute("DROP TABLE t")
    finally:
        valori.stop()
    for name, r in results:
        print_report(name, r)
    print(f"\nload average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
