"""Interpolation over measured tables, in integer nanoseconds.

Conventions (those of LLMServingSim's bundles, so its arithmetic is reproduced exactly):
table values are converted µs → ns per row as `max(1, round(us*1000))`; a query below an axis'
first key takes the first value; above the last key it extrapolates linearly from the top two
keys; in between it is linear; the final value is truncated to an integer, at least 1.
"""
from __future__ import annotations

from bisect import bisect_left
from math import inf

import numpy as np


def us_to_ns(us: np.ndarray) -> np.ndarray:
    """Per-row µs → ns: max(1, round(us·1000)) (round half to even, as Python's round)."""
    return np.maximum(1, np.round(np.asarray(us, dtype=np.float64) * 1000.0)).astype(np.int64)


def changes(cols) -> np.ndarray:
    """Where consecutive rows differ in any of the equal-length arrays `cols` (entry i compares
    rows i and i + 1)."""
    out = np.zeros(max(len(cols[0]) - 1, 0), dtype=bool)
    for c in cols:
        out |= c[1:] != c[:-1]
    return out


def last_of_each(key: np.ndarray, groups: tuple = ()) -> np.ndarray:
    """Indices of the rows sorted by (groups..., key), stable, keeping of rows with equal groups
    and key only the last in file order (a table's later duplicate wins)."""
    order = np.lexsort((np.arange(len(key)), key) + tuple(reversed(groups)))
    return order[np.append(changes([c[order] for c in (*groups, key)]), True)]


def bracket(keys: list, x: float) -> tuple[int, int, float]:
    """Indices (lo, hi) and weight w of `x` on sorted `keys`: value = v[lo] + w·(v[hi] − v[lo])."""
    n = len(keys)
    if n == 1 or x <= keys[0]:
        return 0, 0, 0.0
    if x >= keys[-1]:
        lo, hi = n - 2, n - 1
    else:
        hi = bisect_left(keys, x)
        if keys[hi] == x:
            return hi, hi, 0.0
        lo = hi - 1
    return lo, hi, (x - keys[lo]) / (keys[hi] - keys[lo])


def lerp_fn(f_lo, f_hi, w: float):
    """x -> f_lo(x) + w·(f_hi(x) − f_lo(x)), with exactly the float operations of the nested
    lookups (`f_hi` None: f_lo alone)."""
    if f_hi is None:
        return f_lo

    def f(x):
        v = f_lo(x)
        return v + w * (f_hi(x) - v)
    return f


class Curve:
    """A 1-D piecewise-linear table `key -> ns`."""
    __slots__ = ("keys", "values")

    def __init__(self, keys, values_ns):
        k = np.asarray(keys, dtype=np.float64)
        keep = last_of_each(k)
        self.keys = k[keep].tolist()
        self.values = np.asarray(values_ns, dtype=np.int64)[keep].tolist()

    @classmethod
    def of_sorted(cls, keys: list, values_ns: list) -> "Curve":
        """A curve from keys already sorted and unique (floats) and their ns (ints), as
        `__init__` leaves them."""
        c = cls.__new__(cls)
        c.keys, c.values = keys, values_ns
        return c

    def raw(self, x: float) -> float:
        lo, hi, w = bracket(self.keys, x)
        v = self.values
        return v[lo] + w * (v[hi] - v[lo])

    def __call__(self, x: float) -> int:
        return max(1, int(self.raw(x)))

    def cursor(self):
        """x -> raw(x), the same float operations, remembering the last bracket: a caller whose
        x moves slowly (decode contexts growing by one per step) skips the search while x stays
        in it. Within [keys[lo], keys[lo + 1]] (to +inf for the top pair, which extrapolates)
        `bracket`'s weight on (lo, lo + 1) gives every value, keys included; at or below keys[0]
        (and for one key) the value is values[0]."""
        keys, values = self.keys, self.values
        n = len(keys)
        if n == 1:
            only = values[0] + 0.0
            return lambda x: only
        a, b, k, dk, v, dv = 1.0, 0.0, 0.0, 1.0, 0, 0      # an empty range: the first call searches
        top = n - 2

        def raw(x: float) -> float:
            nonlocal a, b, k, dk, v, dv
            if not a <= x <= b:
                if x <= keys[0]:
                    a, b, k, dk, v, dv = -inf, keys[0], 0.0, 1.0, values[0], 0
                else:
                    lo = min(bisect_left(keys, x) - 1, top)
                    k, a = keys[lo], keys[lo]
                    b = keys[lo + 1] if lo < top else inf
                    dk, v, dv = keys[lo + 1] - k, values[lo], values[lo + 1] - values[lo]
            return v + ((x - k) / dk) * dv
        return raw


class CurveRows:
    """A 2-D table: `Curve`s (along x) keyed by a second axis y; linear across the bracketing
    rows (edges as `bracket`)."""
    __slots__ = ("y_keys", "rows")

    def __init__(self, rows: dict):
        self.y_keys = sorted(rows)
        self.rows = [rows[k] for k in self.y_keys]

    def raw(self, y: float, x: float) -> float:
        lo, hi, w = bracket(self.y_keys, y)
        v = self.rows[lo].raw(x)
        if hi != lo and w:
            v += w * (self.rows[hi].raw(x) - v)
        return v

    def at_y(self, y: float):
        """x -> raw(y, x), the y bracket resolved once, the x brackets remembered (`Curve.cursor`)."""
        lo, hi, w = bracket(self.y_keys, y)
        return lerp_fn(self.rows[lo].cursor(), self.rows[hi].cursor() if hi != lo and w else None, w)
