"""Result types shared by both modes."""

from __future__ import annotations

from typing import Any, List, NamedTuple


class Hit(NamedTuple):
    """One search result.

    Attributes:
        id: the record's id.
        distance: the metric's distance (``l2``: Euclidean; ``inner_product``:
            the negative inner product; ``cosine``: 1 − cosine), computed from
            the exact integer distance of the stored Q16.16 values.
        tag: the record's tag.
        metadata: the record's metadata as a JSON value (``None`` when it has
            none), or ``bytes`` for metadata written as raw bytes through SQL.
    """

    id: int
    distance: float
    tag: int
    metadata: Any


class Record(NamedTuple):
    """A stored record. ``vector`` holds the stored Q16.16 values."""

    id: int
    vector: List[float]
    tag: int
    metadata: Any
