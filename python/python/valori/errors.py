"""Exceptions raised by Valori, in both the embedded and the remote mode.

Every error is a :class:`ValoriError` carrying the engine's or the server's
message and a ``code`` (the REST error code of the situation, such as
``"bad_request"`` or ``"not_found"``). A rejected call changes nothing: the
state hash is the same before and after.
"""

from __future__ import annotations

from typing import Optional

__all__ = [
    "ValoriError",
    "InvalidInput",
    "NotFound",
    "Conflict",
    "TooLarge",
    "Timeout",
    "Unauthorized",
    "ServerError",
]


class ValoriError(Exception):
    """Base class of every Valori error.

    Attributes:
        message: the engine's or the server's explanation.
        code: the REST error code (``bad_request``, ``not_found``,
            ``conflict``, ``unauthorized``, ``forbidden``, ``unavailable``,
            ``internal``, …), or ``None`` when the client itself failed.
        status: the HTTP status in the remote mode, ``None`` embedded.
    """

    def __init__(
        self, message: str, code: Optional[str] = None, status: Optional[int] = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status

    def __str__(self) -> str:
        return self.message


class InvalidInput(ValoriError, ValueError):
    """The input is wrong: a vector of the wrong dimension, NaN, infinity or
    a component with ``|x| >= 32768``, a bad name, metadata that is not JSON
    or too large, a malformed SQL statement. Nothing was written."""


class NotFound(ValoriError, LookupError):
    """An unknown collection, record, graph node or edge, or log position."""


class TooLarge(InvalidInput):
    """The input exceeds one of Valori's limits: metadata or a batch too
    large, too many collections, a statement or query text too long or too
    deeply nested, a request body above the server's limit (code
    ``payload_too_large``). Nothing was written."""


class Timeout(ValoriError, TimeoutError):
    """A statement ran longer than its time limit and was cancelled (code
    ``timeout``)."""


class Conflict(ValoriError):
    """What is being created already exists: a collection, a record id, a
    graph node or edge."""


class Unauthorized(ValoriError, PermissionError):
    """The server refused the credentials (401), or a read-only key tried to
    write (403)."""


class ServerError(ValoriError):
    """The database failed: a storage error, an engine that stopped after a
    failed fsync, an internal error, or a server that cannot be reached."""
