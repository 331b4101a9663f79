"""Fit the per-step host overhead and the API server's front end to a real vLLM run.

Profiles are measured kernel by kernel; a real engine also spends host time every step
(scheduling, input preparation, sampling bookkeeping), and a real client also waits for the API
server (HTTP, tokenisation, IPC: instance/frontend.py). `fit_overhead` re-simulates the workload
with `HostCosts` — overhead `step_us + per_seq_us·S` on every step, front end `request_us +
per_prompt_token_us·prompt` before the engine — and picks the values that minimise the sum of
squared diff% over the validate table (TTFT, TPOT, Latency × Mean, Median, P90, P95, P99),
measured from the real run's anchor (cluster/validate.py). The loss is not smooth (scheduling is
discrete), so the parameters are searched one after the other, each on a coarse grid and then
by golden-section search around the best grid point, the others held at their best so far:
(client-anchored runs only) request_us and per_prompt_token_us, then step_us and per_seq_us. A
value is kept only if it lowers the loss. With the front end the four are searched again, up
to `passes` times, until a pass changes nothing (the step overhead and the front end both
lengthen TTFT, so one pass leaves part of one in the other). An engine-anchored run (the shared vLLM 0.19 run:
`queued_ts`) cannot see the front end, which only delays arrivals at the engine, so it is not
fitted there and stays as the cluster config has it. Deterministic; each evaluation is a full
simulation (≈ 0.4 s for the 300-request replay).
"""
from __future__ import annotations

import dataclasses
import math
import tempfile
from dataclasses import dataclass

from fleetsim.cluster.config import ClusterConfig
from fleetsim.cluster.fleet import run_fleet
from fleetsim.cluster.validate import STATS, compare, load_sim
from fleetsim.instance.frontend import FrontEnd

PHI = (math.sqrt(5) - 1) / 2


@dataclass(frozen=True)
class HostCosts:
    step_us: float = 0.0
    per_seq_us: float = 0.0
    request_us: float = 0.0
    per_prompt_token_us: float = 0.0

    def key(self) -> tuple:
        return (round(self.step_us, 1), round(self.per_seq_us, 2), round(self.request_us, 1),
                round(self.per_prompt_token_us, 3))


# (parameter, upper end of its search range, grid points), in search order
SEARCH = (("request_us", 20000.0, 40), ("per_prompt_token_us", 20.0, 10), ("step_us", 2000.0, 40),
          ("per_seq_us", 20.0, 10))
FRONTEND = ("request_us", "per_prompt_token_us")


def with_costs(config: ClusterConfig, costs: HostCosts) -> ClusterConfig:
    """`config` with every instance's overhead and front end set to `costs`."""
    frontend = FrontEnd.from_us(costs.request_us, costs.per_prompt_token_us)
    specs = tuple(dataclasses.replace(s, overhead_ns=round(costs.step_us * 1000),
                                      overhead_per_seq_ns=round(costs.per_seq_us * 1000), frontend=frontend)
                  for s in config.instances)
    return dataclasses.replace(config, instances=specs)


def _loss(result: dict) -> float:
    return sum(result[m][k]["diff_pct"] ** 2 for m in result for k in STATS)


def evaluate(config, load_workload, real, costs: HostCosts, perf_root=None, models_root=None) -> dict:
    with tempfile.TemporaryDirectory() as out:
        run_fleet(with_costs(config, costs), load_workload(), out, "local", perf_root, models_root)
        return compare(real, load_sim(out, real["anchor"]))


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
                 iters: int = 8, search=SEARCH, passes: int = 4):
    """Returns (fitted `HostCosts`, validate result at the fit, result with none, whether the
    front end was fitted). The front end is fitted when `real` is client-anchored; otherwise
    it is kept at the first instance's.

    `load_workload()` must return a fresh `Workload` (requests carry simulation state)."""
    fit_frontend = real["anchor"] == "client"
    fe = config.instances[0].frontend
    start = HostCosts() if fit_frontend else HostCosts(request_us=fe.request_ns / 1000,
                                                       per_prompt_token_us=fe.per_prompt_token_ns / 1000)
    cache: dict = {}

    def result(costs: HostCosts) -> dict:
        key = costs.key()
        if key not in cache:
            cache[key] = evaluate(config, load_workload, real, HostCosts(*key), perf_root, models_root)
        return cache[key]

    best = start
    names = [p for p in search if fit_frontend or p[0] not in FRONTEND]
    for _ in range(passes if len(names) > 2 else 1):
        before = best
        for name, hi, points in names:
            value = _grid_then_golden(lambda v: _loss(result(dataclasses.replace(best, **{name: v}))), hi, points, iters)
            candidate = HostCosts(*dataclasses.replace(best, **{name: value}).key())
            if _loss(result(candidate)) < _loss(result(best)):
                best = candidate
        if best == before:
            break
    best = HostCosts(*best.key())
    return best, result(best), result(start), fit_frontend


__all__ = ["HostCosts", "evaluate", "fit_overhead", "with_costs"]
