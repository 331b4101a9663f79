"""Synthetic workloads: seeded Poisson (or Gamma) arrivals with fixed or sampled lengths."""
from __future__ import annotations

import numpy as np

from fleetsim.cluster.policies import stable_hash
from fleetsim.cluster.workload import Workload
from fleetsim.instance.request import Request


def synthetic_workload(num_requests: int, rate_per_s: float, prompt_tokens: int, output_tokens: int,
                       seed: int = 0, cv: float = 1.0, length_spread: float = 0.0) -> Workload:
    """`num_requests` arrivals at `rate_per_s` (Gamma inter-arrivals with coefficient of variation
    `cv`; cv = 1 is Poisson). Lengths are fixed, or uniform in ±`length_spread` of the given ones."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, stable_hash("workload")])))
    shape = 1.0 / (cv * cv)
    gaps = rng.gamma(shape, 1.0 / (shape * rate_per_s), size=num_requests)
    arrivals = np.round(np.cumsum(gaps) * 1e9).astype(np.int64)
    if length_spread > 0:
        lo, hi = 1 - length_spread, 1 + length_spread
        prompts = np.maximum(1, np.round(prompt_tokens * rng.uniform(lo, hi, num_requests))).astype(np.int64)
        outputs = np.maximum(1, np.round(output_tokens * rng.uniform(lo, hi, num_requests))).astype(np.int64)
    else:
        prompts = np.full(num_requests, prompt_tokens, dtype=np.int64)
        outputs = np.full(num_requests, output_tokens, dtype=np.int64)
    reqs = [Request(i, int(a), int(p), int(o)) for i, (a, p, o) in
            enumerate(zip(arrivals.tolist(), prompts.tolist(), outputs.tolist()))]
    return Workload(reqs, num_requests, f"synthetic(poisson rate={rate_per_s}/s, seed={seed})")
