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
import re
import threading
import urllib.parse
from typing import Any, Dict, List, Optional, Sequence, Union

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


FLIGHT_ROWS_MIN = 1024
"""Chunks of a batch with at least this many records are loaded over
Arrow Flight (``DoPut``) when the server's Flight address is reachable;
smaller ones go over REST, whose refusals the embedded mode words alike."""

# The gRPC status names in pyarrow's messages ("Flight returned not found
# error, with message: …") and the REST status each stands for.
_FLIGHT_STATUS = {
    "invalid argument": 400,
    "unauthenticated": 401,
    "unauthorized": 403,
    "permission denied": 403,
    "not found": 404,
    "already exists": 409,
    "out of range": 413,
    "timeout": 408,
    "deadline exceeded": 408,
    "unavailable": 503,
}
_FLIGHT_CODE = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                409: "conflict", 413: "payload_too_large", 408: "timeout", 503: "unavailable"}
_FLIGHT_MESSAGE = re.compile(
    r"returned ([a-z ]+?) error, with message: (.*?)(?:\. gRPC client debug context:.*|\. Detail: .*)?$",
    re.S,
)


def _flight_error(e: Exception, what: str) -> ValoriError:
    """A pyarrow Flight failure as the :class:`ValoriError` REST would raise
    for the same refusal: the server's message, the class of its status."""
    text = str(e)
    found = _FLIGHT_MESSAGE.search(text)
    if found:
        kind, message = found.group(1), found.group(2)
    else:
        # pyarrow raises INVALID_ARGUMENT as ArrowInvalid with the bare
        # message.
        kind = "invalid argument" if type(e).__name__ == "ArrowInvalid" else "internal"
        message = text
    status = _FLIGHT_STATUS.get(kind, 500)
    cls = _BY_STATUS.get(status, ServerError)
    return cls(message or f"{what}: {text}", _FLIGHT_CODE.get(status, "internal"), status)


class RemoteBackend:
    """A Valori server reached over HTTP(S) at ``url``; bulk reads and
    writes over its Arrow Flight address when reachable (``flight``: an
    address ``grpc://HOST:PORT``, ``False`` for REST only, ``None`` to ask
    the server with ``GET /v1/flight``)."""

    def __init__(
        self,
        url: str,
        api_key: Optional[str] = None,
        timeout: float = 60.0,
        flight: Union[str, bool, None] = None,
    ):
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
        self._api_key = api_key
        if flight is True:
            flight = None
        if isinstance(flight, str) and not flight.startswith(("grpc://", "grpc+tcp://")):
            raise InvalidInput(f"flight address {flight!r}: expected grpc://HOST:PORT")
        self._flight_wanted: Union[str, bool, None] = flight
        # (client, call options) once connected; False once found
        # unusable (then REST carries everything).
        self._flight: Any = None
        self._flight_lock = threading.Lock()
        self.flight_address: Optional[str] = None

    # -- Arrow Flight ----------------------------------------------------

    def _flight_target(self) -> Optional[str]:
        """The Flight address to use: the one given, or the one the server
        advertises (its bound host, or this URL's host when it listens on
        every interface); ``None`` when there is none."""
        if self._flight_wanted is False:
            return None
        if isinstance(self._flight_wanted, str):
            return self._flight_wanted
        try:
            answer = self._json("GET", "/v1/flight")
        except (NotFound, ServerError):
            return None  # a server without the route, or none reachable
        host = answer["host"]
        if host in ("0.0.0.0", "::"):
            host = self._host
        if ":" in host:
            host = f"[{host}]"
        return f"grpc://{host}:{int(answer['port'])}"

    def flight(self) -> Any:
        """``(pyarrow.flight.FlightClient, FlightCallOptions)`` when Flight
        is usable (pyarrow.flight importable, an address known, the server
        answering there), else ``None``. Decided once per client."""
        with self._flight_lock:
            if self._flight is None:
                self._flight = self._connect_flight() or False
            return self._flight or None

    def _connect_flight(self) -> Any:
        try:
            import pyarrow.flight as fl
        except ImportError:
            return None
        target = self._flight_target()
        if target is None:
            return None
        headers = []
        if self._api_key:
            headers.append((b"authorization", f"Bearer {self._api_key}".encode()))
        options = fl.FlightCallOptions(headers=headers, timeout=self._timeout)
        try:
            client = fl.connect(target)
            # A cheap call that needs the read role: proves the address
            # answers and accepts the credentials.
            list(client.list_actions(options))
        except fl.FlightUnauthenticatedError as e:
            raise _flight_error(e, f"Flight at {target}") from e
        except Exception:
            return None  # unreachable: REST carries everything
        self.flight_address = target
        return client, options

    def export(self, collection: str, deleted: bool) -> Any:
        """The whole collection as an Arrow table (see ``_export``): over
        Flight when usable, else over REST."""
        conn = self.flight()
        if conn is not None:
            import pyarrow.flight as fl

            client, options = conn
            ticket = (
                json.dumps({"collection": collection, "deleted": True}).encode()
                if deleted
                else collection.encode()
            )
            try:
                return client.do_get(fl.Ticket(ticket), options).read_all()
            except Exception as e:
                raise _flight_error(e, f"DoGet of {collection}") from e
        return self._export_rest(collection, deleted)

    def _export_rest(self, collection: str, deleted: bool) -> Any:
        """The export over ``/v1/sql``: the same columns in the same (row)
        order. Its provenance is attached only when the log did not move
        between the proofs read before and after the query, so that it is
        certain which state the rows came from."""
        import pyarrow as pa

        if deleted:
            raise InvalidInput(
                "an export with deleted rows needs Arrow Flight (or the embedded mode): "
                "SQL sees live rows only",
                "bad_request",
            )
        quoted = '"' + collection.replace('"', '""') + '"'
        query = f"SELECT id, vec_q16 AS vector, tag, metadata, vec AS vector_f32 FROM {quoted}"
        from ._export import METRIC_CODES

        for _ in range(3):
            before = self.proof()
            info = self.collection(collection)
            table = self.sql(query, [])
            after = self.proof()
            if before["log_size"] == after["log_size"]:
                break
        else:
            raise ServerError(
                f"export of {collection} over REST: the log kept growing during three attempts; "
                "use Arrow Flight, whose export reads one state"
            )
        chash = next(c["hash"] for c in after["collections"] if c["name"] == collection)
        meta = {
            "valori.log_size": str(after["log_size"]),
            "valori.log_root": after["log_root"],
            "valori.state_hash": after["state_hash"],
            "valori.collection_hash": chash,
            "valori.collection": collection,
            "valori.metric": str(METRIC_CODES[info["metric"]]),
            "valori.m": str(info["m"]),
            "valori.ef_construction": str(info["ef_construction"]),
            "valori.seed": str(info["seed"]),
            "valori.rows": str(info["rows"]),
            "valori.live": str(info["live"]),
        }
        dim = info["dim"]
        schema = pa.schema(
            [
                pa.field("id", pa.uint64(), False),
                pa.field("vector", pa.list_(pa.field("item", pa.int32(), False), dim), False),
                pa.field("tag", pa.uint64(), False),
                pa.field("metadata", pa.binary(), False),
                pa.field("vector_f32", pa.list_(pa.field("item", pa.float32(), False), dim), False),
            ],
            metadata=meta,
        )
        return table.cast(schema).replace_schema_metadata(meta)

    def _put(self, collection: str, vectors: Any, ids: Optional[List[int]], tags: Optional[List[int]],
             metadata: Optional[List[Optional[str]]], conn: Any) -> Dict[str, Any]:
        """One chunk as one Flight ``DoPut`` (one atomic event)."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.flight as fl

        client, options = conn
        arr = np.ascontiguousarray(vectors, dtype=np.float32)
        n, dim = arr.shape
        columns = {"vector": pa.FixedSizeListArray.from_arrays(pa.array(arr.reshape(-1)), dim)}
        if ids is not None:
            columns["id"] = pa.array(ids, type=pa.uint64())
        if tags is not None:
            columns["tag"] = pa.array(tags, type=pa.uint64())
        if metadata is not None:
            columns["metadata"] = pa.array(metadata, type=pa.string())
        table = pa.table(columns)
        descriptor = fl.FlightDescriptor.for_path(collection)
        try:
            writer, reader = client.do_put(descriptor, table.schema, options)
            with writer:
                writer.write_table(table)
                writer.done_writing()
                answer = reader.read()
        except Exception as e:
            raise _flight_error(e, f"DoPut into {collection}") from e
        result = json.loads(answer.to_pybytes())
        # The engine picks consecutive ids from its next free one when the
        # batch names none, as over REST.
        if ids is None:
            first = int(result["first_id"])
            ids = list(range(first, first + int(result["rows"])))
        return {"ids": list(ids), "seq": result["seq"], "log_root": result["log_root"]}

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
        conn = self.flight() if len(vectors) >= FLIGHT_ROWS_MIN else None
        if conn is not None:
            import numpy as np

            array = np.asarray(vectors, dtype=np.float64 if not hasattr(vectors, "dtype") else None)
            if array.dtype.name not in ("float32", "float64"):
                array = array.astype(np.float64)
            bad = ~np.isfinite(array) | (np.abs(array) >= 32768.0)
            if bad.any():
                i = int(np.argwhere(bad)[0][0])
                _vector_f32(array[i].tolist(), "row", i)
            return self._put(collection, array, ids, tags, metadata, conn)
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
