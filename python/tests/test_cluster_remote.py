"""The remote client against the nodes of a cluster: a follower serves
reads from its applied state, and refuses writes — over REST and over
Arrow Flight — with an error naming the leader's address, writing
nothing; the same client on the leader writes. Two `valori serve`
processes on loopback (one bootstraps, one joins)."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import numpy as np
import pytest

from valori import ServerError, Valori

from conftest import stop_process

KEY = "python cluster test key"


class Node:
    """One `valori serve` cluster node and the addresses it printed."""

    def __init__(self, binary: Path, root: Path, node_id: int, extra: List[str]) -> None:
        self.log_path = root / f"node{node_id}.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [
                str(binary),
                "serve",
                "--data-dir",
                str(root / f"node{node_id}"),
                "--rest-addr",
                "127.0.0.1:0",
                "--pg-addr",
                "127.0.0.1:0",
                "--flight-addr",
                "127.0.0.1:0",
                "--index-threads",
                "1",
                "--cluster-node-id",
                str(node_id),
                "--cluster-addr",
                "127.0.0.1:0",
                "--cluster-election-timeout-ms",
                "300",
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=self.log,
            env={**os.environ, "VALORI_CLUSTER_KEY": KEY},
            text=True,
        )
        lines: Dict[str, List[str]] = {}
        assert self.proc.stdout is not None
        while len(lines) < 3:
            line = self.proc.stdout.readline()
            if not line:
                self.stop()
                raise RuntimeError(
                    f"node {node_id} did not start:\n{self.log_path.read_text(errors='replace')}"
                )
            words = line.split()
            lines[words[1]] = words
        self.rest = lines["listening:"][3]
        self.cluster = lines["cluster:"][5]
        self.flight = lines["flight:"][2]

    def status(self) -> Optional[dict]:
        try:
            with urllib.request.urlopen(self.rest + "/v1/cluster/status", timeout=2) as r:
                return json.loads(r.read())
        except OSError:
            return None

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()


def wait_for(what: str, f, limit: float = 60.0):
    deadline = time.monotonic() + limit
    while True:
        value = f()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def logged(client: Valori) -> tuple:
    """What the log proves: the state hash, the log size and root. (The
    index hash follows the background index builder, node by node.)"""
    p = client.proof()
    return (p["state_hash"], p["log_size"], p["log_root"])


@pytest.fixture
def cluster(server_binary: Path, tmp_path: Path) -> Iterator[List[Node]]:
    leader = Node(server_binary, tmp_path, 1, ["--cluster-bootstrap"])
    nodes = [leader]
    try:
        wait_for("node 1 to lead", lambda: (leader.status() or {}).get("role") == "leader")
        nodes.append(Node(server_binary, tmp_path, 2, ["--cluster-join", leader.cluster]))
        wait_for(
            "node 2 to follow",
            lambda: (nodes[1].status() or {}).get("role") == "follower",
        )
        yield nodes
    finally:
        for n in nodes:
            n.stop()


def test_follower_reads_and_names_the_leader_for_writes(cluster: List[Node]) -> None:
    leader, follower = cluster
    rng = np.random.default_rng(15)
    vectors = rng.standard_normal((300, 8)).astype(np.float32)
    with Valori(remote=leader.rest) as lead:
        lead.create_collection("docs", 8)
        ids = lead.insert_batch(vectors, collection="docs", tags=[i % 3 for i in range(300)])
        assert len(ids) == 300
        want = logged(lead)
    with Valori(remote=follower.rest) as follow:
        # Reads: the follower answers from its applied state once it has
        # applied the leader's log.
        wait_for("the follower to apply the writes", lambda: logged(follow) == want)
        exact = follow.search(vectors[7], k=3, collection="docs", exact=True)
        assert exact[0].id == ids[7] and exact[0].distance == 0
        table = follow.to_arrow("docs")
        assert table.num_rows == 300
        assert sorted(table.column("id").to_pylist()) == sorted(ids)
        # Writes: refused over REST (one record) and over Flight (a batch
        # of rows), each naming the leader's address; nothing is written.
        leader_addr = leader.rest.removeprefix("http://")
        with pytest.raises(ServerError) as one:
            follow.insert([0.5] * 8, collection="docs")
        assert "not the cluster's leader" in one.value.message
        assert leader_addr in one.value.message
        assert (one.value.code, one.value.status) == ("unavailable", 503)
        # A batch of at least FLIGHT_ROWS_MIN rows goes over Flight, which
        # the follower serves.
        assert follow._backend.flight() is not None
        with pytest.raises(ServerError) as batch:
            follow.insert_batch(
                rng.standard_normal((5000, 8)).astype(np.float32), collection="docs"
            )
        assert "not the cluster's leader" in batch.value.message
        assert leader_addr in batch.value.message
        assert batch.value.code == "unavailable"
        with pytest.raises(ServerError) as created:
            follow.create_collection("other", 4)
        assert leader_addr in created.value.message
        assert logged(follow) == want
    with Valori(remote=leader.rest) as lead:
        assert logged(lead) == want
        lead.insert([0.5] * 8, collection="docs")
        assert logged(lead)[1] == want[1] + 1
