"""How fast each instance prefills, from its cost model: the one capacity figure the router uses.

An instance's prefill rate is `(tokens, ns)`: a step that fills its token budget with one fresh
prompt chunk (`max_num_batched_tokens` new tokens, no context before them, the budget capped at
`max_model_len` when that is smaller), priced by the instance's cost model plus its per-step CPU
overhead for one sequence. `tokens / ns` is the rate; it is kept as the two integers so that what
is derived from it stays exact integer arithmetic.

Users:
- SLO shedding (cluster/admission.py) predicts a request's TTFT as the prompt tokens ahead of it
  plus its own, priced at this rate.
- least_loaded with `normalize: capacity` (cluster/policies/load_aware.py) divides the load
  score by each instance's rate relative to the fastest instance of the fleet.

The figure is compute-bound (a full prefill chunk): between an H100 and an A100 it follows the
ratio of their dense FLOP/s more than that of their memory bandwidth, which is what decodes
follow. A pipeline-parallel instance is priced as one step (no overlap of stages counted).
"""
from __future__ import annotations


def prefill_rate(cost_model, spec) -> tuple[int, int]:
    """(tokens, ns) of one full-budget prefill step of instance spec `spec` (module doc)."""
    eng = spec.engine
    tokens = eng.max_num_batched_tokens
    if eng.max_model_len is not None:
        tokens = min(tokens, eng.max_model_len)
    return tokens, max(1, cost_model.iteration_time_ns([(tokens, 0)]) + cost_model.cpu_overhead_ns(1))


def prefill_rates(specs, cost_models: dict) -> list[tuple[int, int]]:
    """The prefill rate of every instance (`cost_models[spec]`), each distinct spec priced once."""
    rates = {spec: prefill_rate(cost_models[spec], spec) for spec in dict.fromkeys(specs)}
    return [rates[spec] for spec in specs]


def relative_capacities(rates: list[tuple[int, int]]) -> list[float]:
    """Each rate over the fastest one (the fastest instance is 1.0)."""
    per_ns = [tokens / ns for tokens, ns in rates]
    top = max(per_ns)
    return [r / top for r in per_ns]
