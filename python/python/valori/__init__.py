"""Valori: a deterministic, verifiable vector database.

>>> from valori import Valori
>>> client = Valori()                      # embedded, data in ./valori_data
>>> client.insert_batch([[0.1] * 16, [0.2] * 16])
>>> results = client.search([0.1] * 16, k=5)
>>> remote = Valori(remote="http://localhost:3000")   # same API, over REST

See :class:`Valori` for the API and :mod:`valori.errors` for the exceptions.
"""

from ._client import (
    BATCH_RECORDS_MAX,
    CHUNK_BYTES_MAX,
    DEFAULT_COLLECTION,
    DEFAULT_PATH,
    Valori,
)
from ._export import ExportError, collection_hash, verify_export
from ._native import quantize
from ._types import Hit, Record
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

try:
    from importlib.metadata import version as _version

    __version__ = _version("valori")
except Exception:  # not installed as a distribution (a source checkout)
    __version__ = "0+unknown"

__all__ = [
    "Valori",
    "Hit",
    "Record",
    "ValoriError",
    "InvalidInput",
    "NotFound",
    "Conflict",
    "TooLarge",
    "Timeout",
    "Unauthorized",
    "ServerError",
    "DEFAULT_COLLECTION",
    "DEFAULT_PATH",
    "BATCH_RECORDS_MAX",
    "CHUNK_BYTES_MAX",
    "quantize",
    "verify_export",
    "collection_hash",
    "ExportError",
    "__version__",
]
