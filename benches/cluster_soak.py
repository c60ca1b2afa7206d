"""Cluster soak: a three-node cluster on loopback under concurrent writes
over REST and psql, with one node (the leader included) killed with
SIGKILL and restarted on its directory in every cycle.

usage: python3 benches/cluster_soak.py [--bin target/release/valori]
           [--cycles 200] [--seed N]

Writers send each write to a random node and follow the leader a
follower names; a write counts as acknowledged only on a 201 (REST) or
`INSERT 0 1` (psql). After the last cycle every node must reach the same
applied index with the same event count, state hash and log root, and
every acknowledged record must be on every node (read with a linearizable
read). Prints the cycles, the acknowledged writes per front end, and the
outcome; exits non-zero on any missing write or difference.
"""

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = "soak cluster key"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def call(addr, method, path, body=None, headers=None, timeout=10):
    host, port = addr.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        conn.request(method, path, body=None if body is None else json.dumps(body), headers=h)
        r = conn.getresponse()
        raw = r.read()
        try:
            return r.status, json.loads(raw) if raw else None
        except ValueError:
            return r.status, raw.decode("utf-8", "replace")
    finally:
        conn.close()


class Node:
    def __init__(self, bin_path, root, i, seed_cluster):
        self.bin, self.i = bin_path, i
        self.dir = os.path.join(root, f"node{i}")
        self.rest = f"127.0.0.1:{free_port()}"
        self.pg = free_port()
        self.cluster = f"127.0.0.1:{free_port()}" if seed_cluster is None else seed_cluster
        self.proc = None

    def start(self, first, join):
        args = [self.bin, "serve", "--data-dir", self.dir, "--rest-addr", self.rest,
                "--pg-addr", f"127.0.0.1:{self.pg}", "--flight-addr", "127.0.0.1:0",
                "--cluster-node-id", str(self.i), "--cluster-addr", self.cluster,
                "--cluster-election-timeout-ms", "500"]
        if first and join is None:
            args.append("--cluster-bootstrap")
        elif first:
            args += ["--cluster-join", join]
        log = open(self.dir + ".log", "a")
        env = dict(os.environ, VALORI_CLUSTER_KEY=KEY)
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, env=env, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("valori listening:"):
            raise SystemExit(f"node {self.i} did not start: {line!r} (see {self.dir}.log)")
        self.proc.stdout.readline()

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def status(self):
        try:
            code, s = call(self.rest, "GET", "/v1/cluster/status", timeout=2)
            return s if code == 200 else None
        except OSError:
            return None


def wait(what, f, limit=60):
    t = time.time()
    while time.time() - t < limit:
        v = f()
        if v:
            return v
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what() if callable(what) else what}")


def start_three(bin_path, root):
    """Nodes 1 (bootstrapping), 2 and 3 (joining through 1), once all
    three are voters."""
    n1 = Node(bin_path, root, 1, None)
    n1.start(True, None)
    nodes = [n1]
    for i in (2, 3):
        n = Node(bin_path, root, i, None)
        n.start(True, n1.cluster)
        nodes.append(n)
    wait("three voters", lambda: (n1.status() or {}).get("voters") == [1, 2, 3])
    return nodes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "valori"))
    ap.add_argument("--cycles", type=int, default=200)
    ap.add_argument("--seed", type=int, default=None)
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else random.randrange(1 << 30)
    print(f"seed {seed}", flush=True)
    rng = random.Random(seed)
    root = tempfile.mkdtemp(prefix="valori-cluster-soak-")
    nodes = []
    stop = threading.Event()
    acked = {"rest": set(), "psql": set()}
    ok = False
    try:
        nodes.extend(start_three(a.bin, root))
        leader = wait("a leader", lambda: next(
            (n for n in nodes if (n.status() or {}).get("role") == "leader"), None))
        assert call(leader.rest, "POST", "/v1/collections", {"name": "docs", "dim": 4})[0] == 201
        code, body = call(leader.rest, "POST", "/v1/sql",
                          {"query": "CREATE TABLE sqlt (id BIGINT PRIMARY KEY, vec VECTOR(4))"})
        assert code == 200, body

        def rest_writer():
            i = 0
            while not stop.is_set():
                n = rng.choice(nodes)
                try:
                    code, _ = call(n.rest, "POST", "/v1/collections/docs/records",
                                   {"id": i, "vector": [i % 7, 1, 2, 3]})
                except OSError:
                    code = None
                if code == 201:
                    acked["rest"].add(i)
                    i += 1
                elif code == 409:
                    i += 1  # an earlier attempt was committed but its answer lost
                else:
                    time.sleep(0.02)

        def psql_writer():
            i = 0
            while not stop.is_set():
                n = rng.choice(nodes)
                out = subprocess.run(
                    ["psql", f"host=127.0.0.1 port={n.pg} user=valori dbname=valori",
                     "-v", "ON_ERROR_STOP=1", "-qAt", "-c",
                     f"INSERT INTO sqlt (id, vec) VALUES ({i}, '[1,2,3,{i % 5}]')"],
                    capture_output=True, text=True, timeout=30,
                    env=dict(os.environ, PGCONNECT_TIMEOUT="2"))
                if out.returncode == 0:
                    acked["psql"].add(i)
                    i += 1
                elif "23505" in out.stderr or "duplicate" in out.stderr:
                    i += 1
                else:
                    time.sleep(0.02)

        writers = [threading.Thread(target=rest_writer), threading.Thread(target=psql_writer)]
        for w in writers:
            w.start()
        for cycle in range(1, a.cycles + 1):
            time.sleep(rng.uniform(0.3, 1.0))
            victim = rng.choice(nodes)
            victim.kill()
            time.sleep(rng.uniform(0.1, 0.8))
            victim.start(False, None)
            wait("the restarted node to rejoin",
                 lambda: (victim.status() or {}).get("leader") is not None)
            if cycle % 10 == 0:
                print(f"cycle {cycle}: acknowledged rest {len(acked['rest'])}, "
                      f"psql {len(acked['psql'])}", flush=True)
        stop.set()
        for w in writers:
            w.join()

        leader = wait("a leader", lambda: next(
            (n for n in nodes if (n.status() or {}).get("role") == "leader"), None))
        applied = leader.status()["applied_index"]
        final = wait(lambda: "every node at one applied index: " + json.dumps(
            [{k: (n.status() or {}).get(k) for k in ("node_id", "role", "applied_index", "last_log_index", "leader", "events")}
             for n in nodes]), lambda: (
            lambda ss: ss if all(s and (s["applied_index"] or 0) >= applied for s in ss)
            and len({s["applied_index"] for s in ss}) == 1 else None)([n.status() for n in nodes]))
        same = len({(s["events"], s["state_hash"], s["log_root"]) for s in final}) == 1
        missing = 0
        for n in nodes:
            for table, kind in (("docs", "rest"), ("sqlt", "psql")):
                code, body = call(n.rest, "POST", "/v1/sql", {"query": f"SELECT id FROM {table}"},
                                  headers={"Valori-Read-Consistency": "linearizable"}, timeout=60)
                assert code == 200, body
                present = {r[0] if isinstance(r, list) else r["id"] for r in body["rows"]}
                missing += len(acked[kind] - present)
        print(f"cycles {a.cycles}; acknowledged writes: rest {len(acked['rest'])}, "
              f"psql {len(acked['psql'])}; missing on some node: {missing}; "
              f"equal event count, state hash and log root on every node: {same} "
              f"({final[0]['events']} events, state hash {final[0]['state_hash']})")
        ok = same and missing == 0
        return 0 if ok else 1
    except BaseException:
        ok = False
        raise
    else:
        ok = True
    finally:
        stop.set()
        for n in nodes:
            if n.proc and n.proc.poll() is None:
                n.proc.kill()
                n.proc.wait()
        if ok:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept {root} and the nodes' logs (nodeN.log) for inspection", flush=True)


if __name__ == "__main__":
    sys.exit(main())
