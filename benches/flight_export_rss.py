"""Peak RSS of `valori serve` while a large collection is exported over
Flight DoGet, against its RSS at rest just before (docs/flight.md).

    python3 benches/flight_export_rss.py target/debug/valori ROWS DIM

Starts the server on free ports (one index thread), loads ROWS random
DIM-dimensional vectors by DoPut in batches of 50,000, waits, samples the
server's VmRSS at rest, then reads the whole collection with pyarrow one
batch at a time while sampling VmRSS every 10 ms. Needs numpy and pyarrow.
"""
import json, os, socket, subprocess, sys, tempfile, threading, time, urllib.request
import numpy as np
import pyarrow as pa
import pyarrow.flight as flight

binary, rows, dim = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

work = tempfile.mkdtemp()
rest, fport = free_port(), free_port()
proc = subprocess.Popen([binary, "serve", "--data-dir", os.path.join(work, "db"), "--rest-addr", f"127.0.0.1:{rest}",
                         "--pg-addr", "127.0.0.1:0", "--flight-addr", f"127.0.0.1:{fport}", "--index-threads", "1",
                         "--log", "warn"], stdout=subprocess.DEVNULL)
def rss_kib():
    for line in open(f"/proc/{proc.pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
try:
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{rest}/health").close(); break
        except OSError:
            time.sleep(0.1)
    body = json.dumps({"name": "big", "dim": dim, "m": 4, "ef_construction": 8}).encode()
    urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{rest}/v1/collections", data=body,
                           headers={"Content-Type": "application/json"})).close()
    client = flight.connect(f"grpc://127.0.0.1:{fport}")
    rng = np.random.default_rng(7)
    step = 50_000
    for start in range(0, rows, step):
        n = min(step, rows - start)
        flat = rng.standard_normal(n * dim, dtype=np.float32)
        vec = pa.FixedSizeListArray.from_arrays(pa.array(flat), dim)
        table = pa.table({"id": pa.array(np.arange(start, start + n, dtype=np.int64)), "vector": vec})
        w, r = client.do_put(flight.FlightDescriptor.for_path("big"), table.schema)
        w.write_table(table); w.done_writing(); r.read(); w.close()
    time.sleep(3)
    rest_samples = []
    for _ in range(20):
        rest_samples.append(rss_kib()); time.sleep(0.1)
    baseline = max(rest_samples)
    peak = [baseline]
    done = threading.Event()
    def sample():
        while not done.is_set():
            peak.append(rss_kib()); time.sleep(0.01)
    t = threading.Thread(target=sample); t.start()
    started = time.monotonic()
    reader = client.do_get(flight.Ticket(b"big"))
    got, nbytes, batches = 0, 0, 0
    while True:
        try:
            chunk = reader.read_chunk()
        except StopIteration:
            break
        got += chunk.data.num_rows; nbytes += chunk.data.nbytes; batches += 1
    elapsed = time.monotonic() - started
    done.set(); t.join()
    assert got == rows, (got, rows)
    raw = rows * dim * 4
    print(json.dumps({"rows": rows, "dim": dim, "vector_bytes_mib": round(raw / 2**20, 1),
                      "exported_mib": round(nbytes / 2**20, 1), "batches": batches,
                      "rss_at_rest_mib": round(baseline / 1024, 1), "rss_peak_during_export_mib": round(max(peak) / 1024, 1),
                      "growth_mib": round((max(peak) - baseline) / 1024, 1), "seconds": round(elapsed, 2)}))
finally:
    proc.terminate(); proc.wait()
