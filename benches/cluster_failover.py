"""Cluster failover and catch-up: how long a three-node cluster on
loopback is without a leader after the leader is killed, and how long a
node that was down takes to catch up.

usage: python3 benches/cluster_failover.py [--bin target/release/valori]
           [--kills 20] [--behind 100000] [--writers 8]
           [--snapshot-every N]

Failover: the leader is killed with SIGKILL; from that instant, writes are
sent to the two other nodes in turn until one is acknowledged (201). The
time to that first acknowledged write is one sample; the killed node is
restarted on its directory and the cluster waits until it has caught up
before the next kill. Prints p50, p90 and the largest of `--kills` samples.

Catch-up: a follower is killed, `--behind` single-record writes are
acknowledged by the others (from `--writers` concurrent clients), then
the follower is restarted; the time from its restart until its applied
index reaches the leader's is the catch-up time. With `--snapshot-every
N` every node snapshots every N entries and retires the log behind it, so
the follower catches up from a snapshot rather than from the log. At the
end the three nodes must report one event count, state hash and log root.
"""

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_soak import ROOT, call, start_three, wait  # noqa: E402


def leader_of(nodes):
    for n in nodes:
        s = n.status()
        if s and s.get("role") == "leader":
            return n
    return None


def caught_up(nodes):
    """Every node at the leader's applied index (or None).

    A killed leader that restarts reports itself leader of its old term
    for a few milliseconds (with no applied index) before it learns the
    newer term: the leader is the one of the highest term, or a restarted
    node would be taken as caught up with itself."""
    ss = [n.status() for n in nodes]
    if not all(ss):
        return None
    leader = max((s for s in ss if s.get("role") == "leader"),
                 key=lambda s: s.get("term") or 0, default=None)
    if leader is None:
        return None
    target = leader.get("applied_index") or 0
    return ss if all((s.get("applied_index") or 0) >= target for s in ss) else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "valori"))
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--behind", type=int, default=100_000)
    ap.add_argument("--writers", type=int, default=8)
    ap.add_argument("--snapshot-every", type=int, default=None)
    a = ap.parse_args()
    print(f"server {a.bin}, load average {os.getloadavg()}", flush=True)
    if a.snapshot_every:
        os.environ["VALORI_CLUSTER_SNAPSHOT_EVERY"] = str(a.snapshot_every)
    root = tempfile.mkdtemp(prefix="valori-cluster-failover-")
    nodes = []
    try:
        nodes.extend(start_three(a.bin, root))
        leader = wait("a leader", lambda: leader_of(nodes))
        code, body = call(leader.rest, "POST", "/v1/collections", {"name": "docs", "dim": 4})
        assert code == 201, body

        next_id = [0]

        def write_to(node, timeout=2):
            i = next_id[0]
            try:
                code, _ = call(node.rest, "POST", "/v1/collections/docs/records",
                               {"id": i, "vector": [i % 7, 1, 2, 3]}, timeout=timeout)
            except OSError:
                return False
            if code in (201, 409):
                next_id[0] += 1
            return code == 201

        samples = []
        for k in range(1, a.kills + 1):
            # A write acknowledged first: the cluster is whole and the
            # leader known (an id committed earlier without its answer is
            # skipped).
            leader = wait("a leader that acknowledges a write", lambda: next(
                (n for n in [leader_of(nodes)] if n is not None and write_to(n, timeout=10)),
                None))
            others = [n for n in nodes if n is not leader]
            t0 = time.monotonic()
            leader.kill()
            turn = 0
            while not write_to(others[turn % 2], timeout=1):
                turn += 1
                if time.monotonic() - t0 > 60:
                    raise SystemExit("no write acknowledged within 60 s of the kill")
            samples.append(time.monotonic() - t0)
            leader.start(False, None)
            wait("the restarted node to catch up", lambda: caught_up(nodes))
            print(f"kill {k}: first acknowledged write after {samples[-1] * 1000:.0f} ms",
                  flush=True)
        samples.sort()
        if not samples:
            samples = None
        p = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))]  # noqa: E731
        if samples:
            print(f"failover over {len(samples)} kills (election timeout 500 ms): "
                  f"p50 {statistics.median(samples) * 1000:.0f} ms, p90 {p(0.9) * 1000:.0f} ms, "
                  f"max {samples[-1] * 1000:.0f} ms", flush=True)

        leader = wait("a leader", lambda: leader_of(nodes))
        follower = next(n for n in nodes if n is not leader)
        follower.kill()
        start_id = next_id[0]
        lock = threading.Lock()
        acked = [0]

        def writer(w):
            i = start_id + w
            while True:
                with lock:
                    if acked[0] >= a.behind:
                        return
                try:
                    code, _ = call(leader.rest, "POST", "/v1/collections/docs/records",
                                   {"id": i, "vector": [i % 7, 1, 2, 3]}, timeout=10)
                except OSError:
                    code = None
                if code in (201, 409):
                    if code == 201:
                        with lock:
                            acked[0] += 1
                    i += a.writers
                else:
                    time.sleep(0.01)

        t = time.monotonic()
        threads = [threading.Thread(target=writer, args=(w,)) for w in range(a.writers)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wrote = time.monotonic() - t
        print(f"{acked[0]} writes acknowledged by two nodes in {wrote:.1f} s "
              f"({acked[0] / wrote:.0f}/s) while node {follower.i} was down", flush=True)
        t = time.monotonic()
        follower.start(False, None)
        final = wait("the follower to catch up", lambda: caught_up(nodes), limit=3600)
        took = time.monotonic() - t
        same = len({(s["events"], s["state_hash"], s["log_root"]) for s in final}) == 1
        how = f"snapshots every {a.snapshot_every} entries" if a.snapshot_every else "the Raft log"
        print(f"catch-up of {acked[0]} events (from {how}): {took:.1f} s; "
              f"equal event count, state hash and log root on every node: {same} "
              f"({final[0]['events']} events, state hash {final[0]['state_hash']})", flush=True)
        print(f"load average at the end: {os.getloadavg()}", flush=True)
        if not same:
            sys.exit(1)
    finally:
        for n in nodes:
            if n.proc and n.proc.poll() is None:
                n.kill()


if __name__ == "__main__":
    main()
