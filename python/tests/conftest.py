"""Fixtures: an embedded database in a temporary directory, a `valori serve`
process on free ports, and the real vector data sets of shared/data."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
import pytest

from valori import Valori

REPO = Path(__file__).resolve().parents[2]

# The real data sets (TEXMEX format); VALORI_DATA overrides the folder.
DATA_CANDIDATES = [
    Path(os.environ["VALORI_DATA"]) if "VALORI_DATA" in os.environ else None,
    REPO.parent / "shared" / "data",
    REPO / "shared" / "data",
    Path("/work/shared/data"),
]


def data_dir(name: str) -> Optional[Path]:
    for base in DATA_CANDIDATES:
        if base is not None and (base / name / "base.fvecs").exists():
            return base / name
    return None


def read_fvecs(path: Path, rows: Optional[int] = None) -> np.ndarray:
    """float32 rows of a .fvecs file (each row: int32 dim, dim float32)."""
    raw = np.fromfile(path, dtype="<i4")
    dim = int(raw[0])
    table = raw.reshape(-1, dim + 1)
    assert (table[:, 0] == dim).all(), f"{path}: rows of differing dimension"
    out = table[:, 1:].copy().view("<f4")
    return out[:rows] if rows is not None else out


def read_ivecs(path: Path) -> np.ndarray:
    raw = np.fromfile(path, dtype="<i4")
    k = int(raw[0])
    return raw.reshape(-1, k + 1)[:, 1:]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Valori]:
    client = Valori(tmp_path / "data")
    yield client
    client.close()


def _server_binary() -> Optional[Path]:
    explicit = os.environ.get("VALORI_BIN")
    if explicit:
        return Path(explicit)
    for profile in ("debug", "release"):
        candidate = REPO / "target" / profile / "valori"
        if candidate.exists():
            return candidate
    found = shutil.which("valori")
    return Path(found) if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _has_serve(binary: Path) -> bool:
    try:
        out = subprocess.run([str(binary), "help"], capture_output=True, text=True, timeout=30)
    except OSError:
        return False
    return "serve" in (out.stdout + out.stderr)


def stop_process(proc: subprocess.Popen) -> None:
    """Stops a server process: SIGTERM, then SIGKILL after 30 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Server:
    """A running `valori serve` and its REST URL."""

    def __init__(self, binary: Path, data_dir: Path, extra: Sequence[str] = ()):
        self.data_dir = data_dir
        self.rest_port = _free_port()
        self.pg_port = _free_port()
        self.url = f"http://127.0.0.1:{self.rest_port}"
        self.log = open(data_dir.parent / "server.log", "wb")
        self.proc = subprocess.Popen(
            [
                str(binary),
                "serve",
                "--data-dir",
                str(data_dir),
                "--rest-addr",
                f"127.0.0.1:{self.rest_port}",
                "--pg-addr",
                f"127.0.0.1:{self.pg_port}",
                "--flight-addr",
                "127.0.0.1:0",
                *extra,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                self.log.flush()
                text = (data_dir.parent / "server.log").read_text(errors="replace")
                raise RuntimeError(f"valori serve exited with {self.proc.returncode}:\n{text}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("valori serve did not answer /health within 60 s")
            time.sleep(0.1)

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()


@pytest.fixture(scope="session")
def server_binary() -> Path:
    binary = _server_binary()
    if binary is None:
        pytest.skip("no valori binary: build it with `cargo build -p valori-wire` (or set VALORI_BIN)")
    if not _has_serve(binary):
        pytest.skip(f"{binary} has no `serve` command yet (the REST server is not built into it)")
    return binary


@pytest.fixture
def server(server_binary: Path, tmp_path: Path) -> Iterator[Server]:
    s = Server(server_binary, tmp_path / "server-data")
    yield s
    s.stop()


@pytest.fixture
def remote(server: Server) -> Iterator[Valori]:
    client = Valori(remote=server.url)
    yield client
    client.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With VALORI_REQUIRE_ALL=1 (the project's test command) a skipped
    test fails: there the server binary and the shared data must exist."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("VALORI_REQUIRE_ALL") == "1" and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"skipped under VALORI_REQUIRE_ALL=1: {report.longrepr}"
