"""Attention latency over the scattered 4-D grid (prefill_chunk, kv_prefill, n_decode, kv_decode).

Measured bundles are not full tensor grids: each (prefill_chunk, n_decode) slice has its own
kv_prefill rows, and each row its own kv_decode keys. A query is answered by nested linear
interpolation: along kv_decode within each bracketing kv_prefill row, then across kv_prefill
(one slice), then across n_decode and finally prefill_chunk between the bracketing slices.
A bracketing slice that was not measured is replaced by the nearest measured one (Euclidean
distance on the raw (prefill_chunk, n_decode) values, ties to the smaller key). Axis edges
follow `interp.bracket` (clamp below, extrapolate above). Values are in ns. This is
LLMServingSim's arithmetic (`lookup`).

`measured(pc, kp, nd, kvd)` interpolates only between measured slices of the query's kind: a pure
decode (pc 0) on the pc 0 slices, a pure prefill (nd 0) on the nd 0 slices, a mixed batch on the
chunks that have mixed slices, along the n_decode keys measured at each such chunk (0 included).
With a sparse mixed grid, 8 decodes next to a 256-token chunk then lie between its 0- and
16-decode slices instead of falling back to the nearest (pure-prefill) slice.
"""
from __future__ import annotations

import numpy as np

from fleetsim.costmodel.interp import Curve, CurveRows, bracket, changes, last_of_each, lerp_fn, us_to_ns

BRACKETS_KEPT = 1 << 16   # (prefill_chunk, n_decode) points whose brackets `lookup` keeps


class AttentionTable:
    """`lookup(pc, kp, nd, kvd)` → ns (float, untruncated) for one layer's attention."""

    def __init__(self, pc, kp, nd, kvd, time_us):
        pc, kp, nd, kvd = (np.asarray(a, dtype=np.int64) for a in (pc, kp, nd, kvd))
        ns = us_to_ns(time_us)
        # the `Curve` of every (pc, nd, kp) row's (kvd, ns) at once: sorted by kvd, the later of
        # equal kvd winning, as `Curve` makes one
        keep = last_of_each(kvd, (pc, nd, kp))
        pc, kp, nd, kvd, ns = (a[keep] for a in (pc, kp, nd, kvd, ns))
        starts = np.append(0, np.flatnonzero(changes([pc, nd, kp])) + 1)
        keys, values = kvd.astype(np.float64).tolist(), ns.tolist()
        groups: dict = {}
        for lo, hi, p, n, k in zip(starts.tolist(), np.append(starts[1:], len(ns)).tolist(),
                                   pc[starts].tolist(), nd[starts].tolist(), kp[starts].tolist()):
            groups.setdefault((p, n), {})[k] = Curve.of_sorted(keys[lo:hi], values[lo:hi])
        self.slices = {key: CurveRows(rows) for key, rows in groups.items()}
        self.pc_keys = sorted({k[0] for k in self.slices})
        self.nd_keys = sorted({k[1] for k in self.slices})
        self._resolved: dict = {}
        self._brackets: dict = {}
        nd_at: dict = {}
        for p, n in sorted(self.slices):
            nd_at.setdefault(p, []).append(n)
        self._kinds = {"decode": [0] if 0 in nd_at else [],
                       "prefill": [p for p in sorted(nd_at) if p > 0 and 0 in nd_at[p]],
                       "mixed": [p for p in sorted(nd_at) if p > 0 and any(nd_at[p])]}
        self._nd_at = {"decode": {p: nd_at[p] for p in self._kinds["decode"]},
                       "prefill": {p: [0] for p in self._kinds["prefill"]},
                       "mixed": {p: nd_at[p] for p in self._kinds["mixed"]}}

    def has(self, kind: str) -> bool:
        """Whether the table has slices of `kind` (decode, prefill, mixed)."""
        return bool(self._kinds[kind])

    def measured(self, pc: float, kp: float, nd: float, kvd: float) -> float:
        """Like `lookup`, but interpolating only between measured slices of the query's kind."""
        kind = "decode" if not pc else ("prefill" if not nd else "mixed")
        pcs, nd_at = self._kinds[kind], self._nd_at[kind]
        lo, hi, w = bracket(pcs, pc)
        v = self._measured_nd(pcs[lo], nd_at[pcs[lo]], nd, kp, kvd)
        if hi != lo and w:
            v += w * (self._measured_nd(pcs[hi], nd_at[pcs[hi]], nd, kp, kvd) - v)
        return v

    def _measured_nd(self, pc: int, nds: list, nd: float, kp: float, kvd: float) -> float:
        lo, hi, w = bracket(nds, nd)
        v = self.slices[(pc, nds[lo])].raw(kp, kvd)
        if hi != lo and w:
            v += w * (self.slices[(pc, nds[hi])].raw(kp, kvd) - v)
        return v

    def prefill_floor(self) -> float:
        """The fixed part of one attention call, ns: the pure-prefill curve at kv_prefill 0
        extrapolated to a zero-token chunk from its two smallest chunks (in [0, t(smallest)])."""
        pcs = self._kinds["prefill"]
        if not pcs:
            return 0.0
        t1 = self.slices[(pcs[0], 0)].raw(0, 0)
        if len(pcs) == 1:
            return t1
        t2 = self.slices[(pcs[1], 0)].raw(0, 0)
        return min(t1, max(0.0, t1 - pcs[0] * (t2 - t1) / (pcs[1] - pcs[0])))

    def _slice(self, pc: int, nd: int) -> CurveRows:
        found = self._resolved.get((pc, nd))
        if found is None:
            found = self.slices.get((pc, nd))
            if found is None:
                best = min(self.slices, key=lambda k: ((k[0] - pc) ** 2 + (k[1] - nd) ** 2, k))
                found = self.slices[best]
            self._resolved[(pc, nd)] = found
        return found

    def _at_nd(self, pc: int, nd: float, kp: float):
        lo, hi, w = bracket(self.nd_keys, nd)
        return lerp_fn(self._slice(pc, self.nd_keys[lo]).at_y(kp),
                       self._slice(pc, self.nd_keys[hi]).at_y(kp) if hi != lo and w else None, w)

    def along_kvd(self, pc: float, kp: float, nd: float):
        """kvd -> lookup(pc, kp, nd, kvd), same arithmetic, the other three brackets resolved once
        (for pricing many steps that differ only in decode context)."""
        lo, hi, w = bracket(self.pc_keys, pc)
        return lerp_fn(self._at_nd(self.pc_keys[lo], nd, kp),
                       self._at_nd(self.pc_keys[hi], nd, kp) if hi != lo and w else None, w)

    def lookup(self, pc: float, kp: float, nd: float, kvd: float) -> float:
        w, wn, rows = self._brackets.get((pc, nd)) or self._bracket(pc, nd)
        v = rows[0].raw(kp, kvd)
        if wn is not None:                   # along n_decode, then across prefill_chunk
            v += wn * (rows[1].raw(kp, kvd) - v)
            if w is not None:
                h = rows[2].raw(kp, kvd)
                h += wn * (rows[3].raw(kp, kvd) - h)
                v += w * (h - v)
        elif w is not None:
            v += w * (rows[1].raw(kp, kvd) - v)
        return v

    def _bracket(self, pc: float, nd: float) -> tuple:
        """(prefill_chunk weight, n_decode weight, the bracketing slices: (pc lo, nd lo), (pc lo,
        nd hi), (pc hi, nd lo), (pc hi, nd hi), those of a weight of None left out) of `lookup`
        at (pc, nd), kept in `_brackets` (cleared at `BRACKETS_KEPT` entries: it only saves time)."""
        lo, hi, w = bracket(self.pc_keys, pc)
        nlo, nhi, wn = bracket(self.nd_keys, nd)
        pcs = (self.pc_keys[lo], self.pc_keys[hi]) if hi != lo and w else (self.pc_keys[lo],)
        nds = (self.nd_keys[nlo], self.nd_keys[nhi]) if nhi != nlo and wn else (self.nd_keys[nlo],)
        if len(self._brackets) >= BRACKETS_KEPT:
            self._brackets.clear()
        found = self._brackets[(pc, nd)] = (w if len(pcs) > 1 else None, wn if len(nds) > 1 else None,
                                            tuple(self._slice(p, n) for p in pcs for n in nds))
        return found
