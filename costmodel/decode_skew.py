"""Decode-length skew correction of LLMServingSim bundles (`skew_fit.csv` + `meta.yaml`).

Attention for a decode batch is looked up at the mean context; when contexts differ a lot the
kernel is slower than that. The bundle's fit gives `t = t_mean + alpha·(t_max − t_mean)` with
alpha per bucket of (prefill_chunk, n_decode, skew rate, max context, kv_prefill); unknown
buckets use the per-TP `alpha_default`. Bins are right-inclusive, as in the bundle's meta.yaml.
"""
from __future__ import annotations

from bisect import bisect_left
from math import inf

from fleetsim.costmodel.errors import CostModelError


class _Bins:
    __slots__ = ("edges", "labels")

    def __init__(self, edges, labels, source):
        if len(edges) != len(labels) + 1:
            raise CostModelError(f"{source}: skew_fit bins and labels disagree in length")
        self.edges = [float(e) for e in edges]
        self.labels = list(labels)

    def label(self, x: float):
        i = bisect_left(self.edges, x) - 1        # (edge[i], edge[i+1]]
        return self.labels[min(max(i, 0), len(self.labels) - 1)]

    def cursor(self):
        """x -> label(x), remembering the last bin: label i holds on (edges[i], edges[i+1]], the
        first from −inf, the last to +inf."""
        edges, labels = self.edges, self.labels
        last = len(labels) - 1
        lo, hi, found = 1.0, 0.0, None          # an empty range: the first call searches

        def label(x: float):
            nonlocal lo, hi, found
            if not lo < x <= hi:
                i = min(max(bisect_left(edges, x) - 1, 0), last)
                lo = edges[i] if i > 0 else -inf
                hi = edges[i + 1] if i < last else inf
                found = labels[i]
            return found
        return label


class DecodeSkew:
    def __init__(self, meta: dict, fit_columns: dict | None, tp: int, source: str):
        fit = (meta or {}).get("skew_fit") or {}
        axes = fit.get("bucket_axes") or {}
        per_tp = (fit.get("per_tp") or {}).get(tp) or (fit.get("per_tp") or {}).get(str(tp)) or {}
        self.alpha_default = float(per_tp.get("alpha_default", 0.0))
        try:
            self.n = _Bins(axes["n_bins"], axes["n_labels"], source)
            self.sr = _Bins(axes["skew_rate_bins"], axes["skew_rate_labels"], source)
            self.kvb = _Bins(axes["kv_big_bins"], axes["kv_big_labels"], source)
            self.kp = _Bins(axes["kp_bins"], axes["kp_labels"], source)
        except KeyError as exc:
            raise CostModelError(f"{source}: skew_fit.bucket_axes lacks {exc}") from None
        self.table = {}
        if fit_columns is not None:
            cols = fit_columns
            for i in range(len(cols["alpha"])):
                key = (int(cols["pc"][i]), cols["n_label"][i], cols["skew_rate_label"][i],
                       cols["kv_big_label"][i], cols["kp_label"][i])
                self.table[key] = float(cols["alpha"][i])

    def alpha(self, pc: int, n: int, kv_mean: float, kv_min: int, kv_max: int, kp: int) -> float:
        key = (pc, self.n.label(n), self.sr.label(_rate(kv_mean, kv_min, kv_max)), self.kvb.label(kv_max),
               self.kp.label(kp))
        return self.table.get(key, self.alpha_default)

    def along(self, pc: int, n: int, kp: int):
        """(kv_mean, kv_min, kv_max) -> alpha(pc, n, kv_mean, kv_min, kv_max, kp): the pc, n and kp
        buckets resolved once, the skew-rate and max-context bins remembered (`_Bins.cursor`), for
        the steps of a decode stretch."""
        table, default = self.table, self.alpha_default
        n_label, kp_label = self.n.label(n), self.kp.label(kp)
        sr, kvb = self.sr.cursor(), self.kvb.cursor()

        def alpha(kv_mean: float, kv_min: int, kv_max: int) -> float:
            return table.get((pc, n_label, sr(_rate(kv_mean, kv_min, kv_max)), kvb(kv_max), kp_label), default)
        return alpha


def _rate(kv_mean: float, kv_min: int, kv_max: int) -> float:
    """Where the mean context lies between the min and the max (0.5 when they are equal)."""
    spread = kv_max - kv_min
    return 0.5 if spread == 0 else min(1.0, max(0.0, (kv_mean - kv_min) / spread))
