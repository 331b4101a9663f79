"""Fit the per-step host overhead (constant + per sequence) to a real vLLM run.

Profiles are measured kernel by kernel; a real engine also spends host time every step
(scheduling, input preparation, sampling bookkeeping). `fit_overhead` re-simulates the
workload with overhead `step_us + per_seq_us·S` added to every step and picks the values that
minimise the sum of squared diff% over the validate table (TTFT, TPOT, Latency × Mean, Median,
P90, P95, P99). The loss is not smooth (scheduling is discrete), so each parameter is searched
on a coarse grid first and then refined by golden-section search around the best grid point:
step_us over [0, max_step_us] with per_seq_us = 0, then per_seq_us over [0, max_per_seq_us] at
that step_us. Deterministic; each evaluation is a full simulation (≈ 0.4 s for the
300-request replay, so a fit takes about half a minute).
"""
from __future__ import annotations

import dataclasses
import math
import tempfile

from fleetsim.cluster.config import ClusterConfig
from fleetsim.cluster.fleet import run_fleet
from fleetsim.cluster.validate import STATS, compare, load_sim

PHI = (math.sqrt(5) - 1) / 2


def with_overhead(config: ClusterConfig, step_us: float, per_seq_us: float) -> ClusterConfig:
    specs = tuple(dataclasses.replace(s, overhead_ns=round(step_us * 1000), overhead_per_seq_ns=round(per_seq_us * 1000))
                  for s in config.instances)
    return dataclasses.replace(config, instances=specs)


def _loss(result: dict) -> float:
    return sum(result[m][k]["diff_pct"] ** 2 for m in result for k in STATS)


def evaluate(config, load_workload, real, step_us, per_seq_us, perf_root=None, models_root=None) -> dict:
    with tempfile.TemporaryDirectory() as out:
        run_fleet(with_overhead(config, step_us, per_seq_us), load_workload(), out, "local", perf_root, models_root)
        return compare(real, load_sim(out))


def _golden(f, lo: float, hi: float, iters: int) -> float:
    a, b = lo, hi
    c, d = b - PHI * (b - a), a + PHI * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(iters):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - PHI * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + PHI * (b - a)
            fd = f(d)
    return c if fc <= fd else d


def _grid_then_golden(f, hi: float, points: int, iters: int) -> float:
    grid = [hi * i / points for i in range(points + 1)]
    best = min(grid, key=lambda x: (f(x), x))
    width = hi / points
    refined = _golden(f, max(0.0, best - width), min(hi, best + width), iters)
    return refined if f(refined) < f(best) else best


def fit_overhead(config: ClusterConfig, load_workload, real: dict, perf_root=None, models_root=None,
                 max_step_us: float = 2000.0, max_per_seq_us: float = 20.0, iters: int = 8):
    """Returns (step_us, per_seq_us, validate result at the fit, result with no overhead).

    `load_workload()` must return a fresh `Workload` (requests carry simulation state)."""
    cache: dict = {}

    def loss(step_us, per_seq_us):
        key = (round(step_us, 1), round(per_seq_us, 2))
        if key not in cache:
            cache[key] = evaluate(config, load_workload, real, key[0], key[1], perf_root, models_root)
        return _loss(cache[key])

    step = _grid_then_golden(lambda x: loss(x, 0.0), max_step_us, 40, iters)
    per_seq = _grid_then_golden(lambda y: loss(step, y), max_per_seq_us, 10, iters)
    candidates = [(loss(0.0, 0.0), 0.0, 0.0), (loss(step, 0.0), step, 0.0), (loss(step, per_seq), step, per_seq)]
    _, best_step, best_seq = min(candidates, key=lambda c: (c[0], c[1], c[2]))
    key = (round(best_step, 1), round(best_seq, 2))
    return key[0], key[1], cache[key], cache[(0.0, 0.0)]


__all__ = ["evaluate", "fit_overhead", "with_overhead"]
