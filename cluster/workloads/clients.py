"""Benchmark clients, with `vllm bench serve`'s names and semantics.

- `--request-rate R` with `--burstiness B` re-times a workload's arrivals (in its arrival
  order; session turns still follow their predecessors): gap i is Gamma(shape B, scale
  1/(R·B)) — mean 1/R, B = 1 Poisson, smaller B burstier — the first request one gap after 0;
  as in vLLM the cumulative times are then scaled so that the last one is exactly n/R.
  `B = inf` gives constant gaps 1/R, `R = inf` sends everything at 0. Seeded by the run seed.
- `--max-concurrency N`: N clients share the requests. A request is sent when a client is free:
  the first N at their own arrival times, then each time one finishes the next request (in
  arrival order) is sent at max(its own arrival, that finish) — that is its arrival in the
  outputs and the start of its TTFT/E2E, as a client measures them (vLLM's semaphore is taken
  before the request's timer starts). A session holds its client until its last turn ends. The
  cap is global across the fleet: clients do not know the instances.
- `--warmup-requests K`: the first K requests sent are simulated like any other but left out of
  requests.csv and summary.json (they are in timeseries.csv: the instances did that work).

Timing in the fleet (cluster/router.py): while clients wait, the router syncs once per engine
step — each window ends 1 ns after the earliest clock of a busy instance — so a request is sent
at the finish that frees its client exactly, on any number of instances, and reaches its
instance before that instance has simulated past the send time. With one client on one
instance the requests run back to back and their E2E times sum to the simulated span. The
price is one sync (with snapshots) per step for that part of the run, and no fast-forward.

Warm-up and ramp, against a cold start: a simulation starts at t = 0 with every cache empty
and no request running; the first requests see an idle engine (short TTFT, small batches) and
the KV cache fills over the first seconds. A real benchmark run differs: `vllm bench serve
--num-warmups` sends requests to a server that already compiled its graphs and then starts
its clock, and its N clients start together (a burst of N prompts at once, the ramp). Here
`--warmup-requests K` keeps the ramp and the cold cache in the simulation but out of the
metrics; choose K of a few times N to measure the steady state. The simulator has no graph
compilation or first-request overheads, so there is nothing else to warm.

Client-observed times include the API server's front end (`frontend: {request_us,
per_prompt_token_us}`, instance/frontend.py): a request sent at its arrival reaches the engine
`FrontEnd.delay_ns(prompt_len)` later, which the engine applies; arrival, TTFT and E2E stay the
client's, and requests.csv's `queued` is the engine's own anchor.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fleetsim.cluster.errors import InputError
from fleetsim.cluster.policies import stable_hash


@dataclass(frozen=True)
class ClientSpec:
    max_concurrency: int | None = None
    request_rate: float | None = None          # None: keep the workload's arrivals
    burstiness: float = 1.0
    warmup_requests: int = 0

    def validate(self) -> "ClientSpec":
        if self.max_concurrency is not None and not (isinstance(self.max_concurrency, int)
                                                     and self.max_concurrency >= 1):
            raise InputError(f"--max-concurrency must be an integer >= 1, got {self.max_concurrency}")
        if self.request_rate is not None and not (self.request_rate > 0):
            raise InputError(f"--request-rate must be > 0 (inf: all at once), got {self.request_rate}")
        if not (self.burstiness > 0):
            raise InputError(f"--burstiness must be > 0 (1 = Poisson, inf = constant gaps), got {self.burstiness}")
        if self.burstiness != 1.0 and self.request_rate is None:
            raise InputError("--burstiness needs --request-rate")
        if not (isinstance(self.warmup_requests, int) and self.warmup_requests >= 0):
            raise InputError(f"--warmup-requests must be an integer >= 0, got {self.warmup_requests}")
        return self

    def retime(self, workload, seed: int):
        """`workload` with arrivals re-timed by `request_rate` / `burstiness` (see module doc)."""
        if self.request_rate is None:
            return workload
        n = len(workload.arrival)
        rate, b = self.request_rate, self.burstiness
        if rate == math.inf:
            return workload.with_arrivals(np.zeros(n, dtype=np.int64))
        if b == math.inf:
            delays = np.full(n, 1.0 / rate)
        else:
            rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, stable_hash("clients")])))
            delays = rng.gamma(b, 1.0 / (rate * b), size=n)
        times = np.cumsum(delays)
        times *= (n / rate) / times[-1]
        return workload.with_arrivals(np.round(times * 1e9).astype(np.int64))


class ClosedLoop:
    """`cap` clients drawing requests (in arrival order) from `requests`."""

    def __init__(self, requests, cap: int):
        self.requests, self.cap = requests, cap
        self.exhausted = False

    def start(self) -> list:
        """The first `cap` requests, sent at their own arrival times."""
        out = []
        while len(out) < self.cap and not self.exhausted:
            req = self._next()
            if req is not None:
                out.append(req)
        return out

    def send_after(self, end_ns: int):
        """The request a client sends when its request finished at `end_ns` (None: none left)."""
        req = self._next()
        if req is not None:
            req.arrival_ns = max(req.arrival_ns, end_ns)
        return req

    def _next(self):
        req = next(self.requests, None)
        if req is None:
            self.exhausted = True
        return req
