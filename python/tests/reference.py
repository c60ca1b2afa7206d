"""Independent reference computations for the tests: Q16.16 quantization
and exact distances in NumPy / Python integers, written from the format's
definition (docs), not from the engine's code or output."""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import numpy as np


def q16(x) -> np.ndarray:
    """raw = round_half_to_even(float32(x) * 65536) as int64. The product
    of a float32 and 2^16 is exact in float64, and np.round rounds half to
    even."""
    return np.round(np.asarray(x, dtype=np.float32).astype(np.float64) * 65536.0).astype(np.int64)


def l2_exact(a_raw: Sequence[int], b_raw: Sequence[int]) -> int:
    return sum((int(a) - int(b)) ** 2 for a, b in zip(a_raw, b_raw))


def l2_distance(a, b) -> float:
    """The `l2` of the stored values: sqrt of the exact integer sum of
    squares, scaled by 2^-16."""
    return math.sqrt(float(l2_exact(q16(a), q16(b)))) / 65536.0


def brute_force(
    base: np.ndarray,
    query,
    k: int,
    ids: Optional[Sequence[int]] = None,
    mask: Optional[np.ndarray] = None,
) -> List[Tuple[float, int]]:
    """Exact top-k under L2 on the quantized values, ordered by
    (distance, id)."""
    raw = q16(base)
    q = q16(query)
    diff = raw - q
    # |diff| < 2^32, dim small: the squares fit int64 only per component;
    # sum in Python ints when large.
    if np.abs(diff).max(initial=0) < (1 << 24) and base.shape[1] <= 4096:
        sums = (diff * diff).sum(axis=1).tolist()
    else:
        sums = [sum(int(v) ** 2 for v in row) for row in diff]
    ids = list(range(len(base))) if ids is None else list(ids)
    order = sorted(
        (s, i) for j, (s, i) in enumerate(zip(sums, ids)) if mask is None or mask[j]
    )[:k]
    return [(math.sqrt(float(s)) / 65536.0, i) for s, i in order]
