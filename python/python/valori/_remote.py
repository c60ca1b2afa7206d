"""The remote backend: the REST API of ``valori serve`` (``docs/rest.md``)
over the standard library's ``http.client``.

It offers the same methods, with the same arguments and results, as the
embedded backend in ``_embedded.py``; ``_client.Valori`` drives either.
Vectors are sent as their ``float32`` values (each component rounded to
``float32`` here, exactly as the engine does before quantizing), so the
server's JSON parser sees numbers it converts without a second rounding.
"""

from __future__ import annotations

import array
import base64
import http.client
import json
import math
import sys
import threading
import urllib.parse
from typing import Any, Dict, List, Optional, Sequence

from . import _native
from .errors import (
    Conflict,
    InvalidInput,
    NotFound,
    ServerError,
    Timeout,
    TooLarge,
    Unauthorized,
    ValoriError,
)
from ._types import Hit, Record

ARROW_STREAM = "application/vnd.apache.arrow.stream"

_BY_STATUS = {
    400: InvalidInput,
    401: Unauthorized,
    403: Unauthorized,
    404: NotFound,
    405: InvalidInput,
    408: Timeout,
    409: Conflict,
    413: TooLarge,
    422: InvalidInput,
}


def _f32_list(values: Sequence[float], where: str) -> List[float]:
    """``values`` rounded to float32, as Python floats; NaN and infinity
    (which JSON cannot carry) are refused with the component named."""
    out = []
    for i, x in enumerate(values):
        x = float(x)
        if math.isnan(x):
            raise InvalidInput(
                f"{where}: component {i} ({x!r}): NaN is not a number Valori can store",
                "bad_request",
            )
        if math.isinf(x):
            raise InvalidInput(
                f"{where}: component {i} ({x!r}): infinity is not a number Valori can store",
                "bad_request",
            )
        if abs(x) >= 32768.0:
            raise InvalidInput(
                f"{where}: component {i} ({x!r}): |x| must be below 32768 to fit Q16.16",
                "bad_request",
            )
        out.append(x)
    # array('f') converts each double to float with the C cast (round to
    # nearest even), like Rust's `as f32`.
    return array.array("f", out).tolist()


def _vector_f32(values: Sequence[float], origin: str, index: int = 0) -> List[float]:
    """A vector of an operation rounded to float32, checked first by the
    shared conversion (``_native.quantize``), so that a bad component is
    refused with the exception and message the server (and the embedded
    mode) gives for it. ``origin`` names the vector as the server does:
    ``"query"``, ``"vector"``, ``"row"`` (``index``: the batch position) or
    ``"record"`` (``index``: the id)."""
    values = [float(x) for x in values]
    _native.quantize(values, origin, index)
    return array.array("f", values).tolist()


def _metadata_value(hit: Dict[str, Any]) -> Any:
    raw = hit.get("metadata_base64")
    if raw is not None:
        return base64.b64decode(raw)
    return hit.get("metadata")


class RemoteBackend:
    """A Valori server reached over HTTP(S) at ``url``."""

    def __init__(self, url: str, api_key: Optional[str] = None, timeout: float = 60.0):
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise InvalidInput(f"remote URL {url!r}: expected http://HOST:PORT or https://HOST:PORT")
        self.url = url.rstrip("/")
        self._scheme = parsed.scheme
        self._host = parsed.hostname
        self._port = parsed.port
        self._prefix = parsed.path.rstrip("/")
        self._timeout = timeout
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        # One keep-alive connection per thread.
        self._local = threading.local()

    # -- transport -----------------------------------------------------

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = (
                http.client.HTTPSConnection
                if self._scheme == "https"
                else http.client.HTTPConnection
            )
            conn = cls(self._host, self._port, timeout=self._timeout)
            self._local.conn = conn
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def request(
        self,
        method: str,
        path: str,
        body: Optional[bytes] = None,
        accept: str = "application/json",
    ) -> bytes:
        """Sends one request and returns the answer's body; an error answer
        raises the matching :class:`ValoriError`."""
        headers = dict(self._headers)
        headers["Accept"] = accept
        target = self._prefix + path
        # A kept-alive connection that the server closed while it was idle
        # fails on first use, before the server read anything: retry that
        # case once on a fresh connection. A fresh connection is not
        # retried (the request may have been handled).
        for attempt in (0, 1):
            reused = getattr(self._local, "conn", None) is not None
            conn = self._connection()
            try:
                conn.request(method, target, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                status = response.status
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                self._drop_connection()
                if attempt == 1 or not reused:
                    raise ServerError(f"{method} {self.url}{path}: connection lost: {e}") from e
            except (OSError, http.client.HTTPException) as e:
                self._drop_connection()
                raise ServerError(
                    f"{method} {self.url}{path}: cannot reach the server: {e}"
                ) from e
        if status >= 400:
            code = None
            message = data.decode("utf-8", "replace")
            try:
                err = json.loads(data)["error"]
                code = err.get("code")
                message = err.get("message", message)
            except (ValueError, KeyError, TypeError):
                pass
            cls = _BY_STATUS.get(status, ServerError if status >= 500 else ValoriError)
            raise cls(message, code, status)
        return data

    def _json(self, method: str, path: str, body: Any = None, raw: Optional[str] = None) -> Any:
        if raw is not None:
            payload: Optional[bytes] = raw.encode("utf-8")
        elif body is not None:
            payload = json.dumps(body, allow_nan=False).encode("utf-8")
        else:
            payload = None
        data = self.request(method, path, payload)
        return json.loads(data) if data else None

    @staticmethod
    def _name(name: str) -> str:
        return urllib.parse.quote(name, safe="")

    @staticmethod
    def _receipt(answer: Dict[str, Any]) -> Dict[str, Any]:
        receipt = answer.get("receipt", answer)
        return {"seq": receipt["seq"], "log_root": receipt["log_root"]}

    # -- collections ---------------------------------------------------

    def create_collection(
        self, name: str, dim: int, metric: str, m: int, ef_construction: int
    ) -> Dict[str, Any]:
        body = {"name": name, "dim": dim, "metric": metric, "m": m, "ef_construction": ef_construction}
        return self._receipt(self._json("POST", "/v1/collections", body))

    def drop_collection(self, name: str) -> Dict[str, Any]:
        return self._receipt(self._json("DELETE", f"/v1/collections/{self._name(name)}"))

    def collections(self) -> List[Dict[str, Any]]:
        return self._json("GET", "/v1/collections")["collections"]

    def collection(self, name: str) -> Dict[str, Any]:
        return self._json("GET", f"/v1/collections/{self._name(name)}")

    # -- records ---------------------------------------------------------

    def insert(
        self,
        collection: str,
        vector: Sequence[float],
        id: Optional[int],
        tag: int,
        metadata: Optional[str],
    ) -> Dict[str, Any]:
        origin = ("record", int(id)) if id is not None else ("vector", 0)
        parts = ['{"vector":', json.dumps(_vector_f32(vector, *origin)), ',"tag":', str(int(tag))]
        if id is not None:
            parts += [',"id":', str(int(id))]
        if metadata is not None:
            parts += [',"metadata":', metadata]
        parts.append("}")
        answer = self._json(
            "POST", f"/v1/collections/{self._name(collection)}/records", raw="".join(parts)
        )
        return {"id": answer["id"], "seq": answer["seq"], "log_root": answer["log_root"]}

    def insert_batch(
        self,
        collection: str,
        vectors: Any,
        ids: Optional[List[int]],
        tags: Optional[List[int]],
        metadata: Optional[List[Optional[str]]],
    ) -> Dict[str, Any]:
        if hasattr(vectors, "dtype") and hasattr(vectors, "astype"):
            # A NumPy array: check and round to float32 in bulk.
            np = sys.modules["numpy"]
            bad = ~np.isfinite(vectors) | (np.abs(vectors) >= 32768.0)
            if bad.any():
                i = int(np.argwhere(bad)[0][0])
                _vector_f32(vectors[i].tolist(), "row", i)
            encoded = json.dumps(vectors.astype(np.float32).tolist())
        else:
            rows = list(vectors)
            dim = len(rows[0]) if rows else 0
            checked = []
            for i, row in enumerate(rows):
                if len(row) != dim:
                    raise InvalidInput(
                        f"vector {i} of the batch has {len(row)} components, vector 0 has {dim}",
                        "bad_request",
                    )
                checked.append(_vector_f32(row, "row", i))
            encoded = json.dumps(checked)
        parts = ['{"vectors":', encoded]
        if ids is not None:
            parts += [',"ids":', json.dumps([int(i) for i in ids])]
        if tags is not None:
            parts += [',"tags":', json.dumps([int(t) for t in tags])]
        if metadata is not None:
            parts += [',"metadata":[', ",".join("null" if m is None else m for m in metadata), "]"]
        parts.append("}")
        answer = self._json(
            "POST",
            f"/v1/collections/{self._name(collection)}/records/batch",
            raw="".join(parts),
        )
        return {"ids": answer["ids"], "seq": answer["seq"], "log_root": answer["log_root"]}

    def get(self, collection: str, id: int) -> Record:
        r = self._json("GET", f"/v1/collections/{self._name(collection)}/records/{int(id)}")
        return Record(r["id"], r["vector"], r["tag"], _metadata_value(r))

    def delete(self, collection: str, id: int) -> Dict[str, Any]:
        return self._receipt(
            self._json("DELETE", f"/v1/collections/{self._name(collection)}/records/{int(id)}")
        )

    def set_tag(self, collection: str, id: int, tag: int) -> Dict[str, Any]:
        return self._receipt(
            self._json(
                "PUT",
                f"/v1/collections/{self._name(collection)}/records/{int(id)}/tag",
                {"tag": int(tag)},
            )
        )

    def set_metadata(self, collection: str, id: int, metadata: Optional[str]) -> Dict[str, Any]:
        raw = '{"metadata":' + ("null" if metadata is None else metadata) + "}"
        return self._receipt(
            self._json(
                "PUT",
                f"/v1/collections/{self._name(collection)}/records/{int(id)}/metadata",
                raw=raw,
            )
        )

    # -- search and SQL ------------------------------------------------

    def search(
        self,
        collection: str,
        vector: Sequence[float],
        k: int,
        tag: Optional[int],
        ef: Optional[int],
        exact: bool,
    ) -> List[Hit]:
        body: Dict[str, Any] = {"vector": _vector_f32(vector, "query"), "k": k, "exact": exact}
        if tag is not None:
            body["tag"] = tag
        if ef is not None:
            body["ef"] = ef
        answer = self._json("POST", f"/v1/collections/{self._name(collection)}/search", body)
        return [Hit(h["id"], h["distance"], h["tag"], _metadata_value(h)) for h in answer["hits"]]

    def search_many(
        self,
        collection: str,
        queries: Any,
        k: int,
        tag: Optional[int],
        ef: Optional[int],
        exact: bool,
    ) -> List[List[Hit]]:
        rows = queries.tolist() if hasattr(queries, "tolist") else queries
        return [self.search(collection, q, k, tag, ef, exact) for q in rows]

    def sql(self, query: str, params: List[Any]) -> Any:
        import pyarrow.ipc

        data = self.request(
            "POST",
            "/v1/sql",
            json.dumps({"query": query, "params": params}).encode("utf-8"),
            accept=ARROW_STREAM,
        )
        return pyarrow.ipc.open_stream(data).read_all()

    def query(self, text: str, params: Dict[str, List[float]]) -> Any:
        import pyarrow.ipc

        body = {"query": text, "params": {k: _f32_list(v, f"parameter ${k}") for k, v in params.items()}}
        data = self.request(
            "POST", "/v1/query", json.dumps(body).encode("utf-8"), accept=ARROW_STREAM
        )
        return pyarrow.ipc.open_stream(data).read_all()

    # -- proofs ----------------------------------------------------------

    def proof(self) -> Dict[str, Any]:
        return self._json("GET", "/v1/proof/state")

    def inclusion_proof(self, seq: int) -> Dict[str, Any]:
        return self._json("GET", f"/v1/proof/event/{int(seq)}")

    def consistency_proof(self, old_size: int, new_size: int) -> Dict[str, Any]:
        return self._json(
            "GET", f"/v1/proof/consistency?from={int(old_size)}&to={int(new_size)}"
        )

    def snapshot(self) -> Dict[str, Any]:
        return self._json("POST", "/v1/snapshots")

    def verify_files(self, indexes: bool) -> None:
        # The files are on the server: `valori verify DATA_DIR` audits them.
        return None

    # -- graph -----------------------------------------------------------

    def create_node(self, node: int, label: int) -> Dict[str, Any]:
        return self._receipt(self._json("POST", "/v1/graph/nodes", {"id": node, "label": label}))

    def delete_node(self, node: int) -> Dict[str, Any]:
        return self._receipt(self._json("DELETE", f"/v1/graph/nodes/{int(node)}"))

    def create_edge(self, from_node: int, to_node: int, label: int) -> Dict[str, Any]:
        body = {"from": from_node, "to": to_node, "label": label}
        return self._receipt(self._json("POST", "/v1/graph/edges", body))

    def delete_edge(self, from_node: int, to_node: int, label: int) -> Dict[str, Any]:
        return self._receipt(
            self._json("DELETE", f"/v1/graph/edges/{int(from_node)}/{int(to_node)}/{int(label)}")
        )

    def edges(self, node: int) -> Dict[str, Any]:
        return self._json("GET", f"/v1/graph/nodes/{int(node)}/edges")

    def wait_for_index(self) -> None:
        raise NotImplementedError(
            "wait_for_index is available in the embedded mode only; the REST API has no such route"
        )

    def close(self) -> None:
        self._drop_connection()
