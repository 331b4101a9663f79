"""`workload_stats`: what a workload holds, as `fleetsim workload stats` prints it.

- requests: every request, session turns included; sessions: session count.
- duration_s: last minus first arrival of the requests that arrive on their own (session turns
  arrive when their predecessor ends, so they have no arrival in the file); mean_rate_per_s:
  (arrivals − 1) / duration, the inverse of the mean inter-arrival gap; interarrival_cv: standard
  deviation (population) over mean of those gaps (1 for Poisson, > 1 bursty, 0 constant).
- prompt / output: mean, min, p50, p90, p99, max of the token lengths (numpy's linear
  percentiles), over every request.
- prefix_sharing: of all full prompt blocks of `block_size` tokens, the fraction whose chained
  block hash (the prefix cache's identity, instance/request.py) appeared in an earlier request
  — requests in arrival order, a session's turns right after its first — i.e. the hit ratio an
  unbounded prefix cache would reach. An earlier request contributes every full block of its
  prompt and of its output where its tokens have ids. Requests with no token or hash ids share
  nothing.
"""
from __future__ import annotations

import numpy as np


def _lengths(values: np.ndarray) -> dict:
    p = np.percentile(values, [50, 90, 99])
    return {"mean": float(values.mean()), "min": int(values.min()), "p50": float(p[0]), "p90": float(p[1]),
            "p99": float(p[2]), "max": int(values.max())}


def prefix_sharing(workload, block_size: int) -> float:
    seen: set[int] = set()
    shared = total = 0
    for first in workload:
        req = first
        while req is not None:
            n = req.prompt_len // block_size
            total += n
            if req.has_identity:
                shared += sum(1 for h in req.prompt_block_hashes(block_size) if h in seen)
                known = req.prompt_len + (req.output_len if req.token_ids is not None
                                          and len(req.token_ids) > req.prompt_len else 0)
                seen.update(req.block_hash(i, block_size) for i in range(known // block_size))
            req = req.followup
    return shared / total if total else 0.0


def workload_stats(workload, block_size: int = 16) -> dict:
    arrival = workload.arrival
    gaps = np.diff(arrival) / 1e9
    duration = float(arrival[-1] - arrival[0]) / 1e9
    prompts, outputs = workload.all_lengths()
    return {
        "source": workload.source,
        "requests": len(workload),
        "sessions": workload.sessions,
        "duration_s": duration,
        "mean_rate_per_s": (len(arrival) - 1) / duration if duration > 0 else None,
        "interarrival_cv": float(gaps.std() / gaps.mean()) if len(gaps) and gaps.mean() > 0 else None,
        "prompt_tokens": _lengths(prompts),
        "output_tokens": _lengths(outputs),
        "block_size": block_size,
        "prefix_sharing": prefix_sharing(workload, block_size),
    }


def format_stats(s: dict) -> str:
    def num(x, fmt):
        return "n/a" if x is None else format(x, fmt)
    rows = [("source", s["source"]), ("requests", s["requests"]), ("sessions", s["sessions"]),
            ("duration", f"{s['duration_s']:.3f} s"), ("mean rate", f"{num(s['mean_rate_per_s'], '.4f')} req/s"),
            ("inter-arrival CV", num(s["interarrival_cv"], ".4f"))]
    for key in ("prompt_tokens", "output_tokens"):
        d = s[key]
        rows.append((key.replace("_", " "), f"mean {d['mean']:.1f}  min {d['min']}  p50 {d['p50']:.1f}  "
                                            f"p90 {d['p90']:.1f}  p99 {d['p99']:.1f}  max {d['max']}"))
    rows.append((f"prefix sharing ({s['block_size']}-token blocks)", f"{100 * s['prefix_sharing']:.2f} %"))
    width = max(len(k) for k, _ in rows)
    return "".join(f"{k:<{width}}  {v}\n" for k, v in rows)
