"""Per-request metrics, aggregated as finished requests stream in.

Definitions (ns, DESIGN.md): TTFT = end of the prompt-finishing step − arrival; ITL = gaps
between a request's token-producing steps; TPOT = (E2E − TTFT)/(output − 1), rounded to the
nearest ns (requests with one output token have no TPOT: an empty cell in requests.csv, left
out of the statistics); E2E = end of the last token's step − arrival; queueing = start of the
first step that schedules the request − arrival. Percentiles are linear-interpolated (numpy's
default). Throughput is over the span from the first arrival to the last completion. A
statistic over no values (TPOT and ITL when no request has two output tokens; the prefix hit
rate of an instance that admitted nothing) is undefined: None, `null` in summary.json.
"""
from __future__ import annotations

from itertools import chain
from operator import attrgetter

import numpy as np

from fleetsim.cluster.value_stream import ValueStream

METRICS = ("ttft", "tpot", "itl", "e2e", "queueing")

# columns of the fixed part of a record (see records.RecordBatch)
INSTANCE, RID, INPUT, OUTPUT, ARRIVAL, END, E2E, QUEUEING, TTFT, TPOT, PREEMPTIONS, HITS, QUEUED = range(13)
DECODE_INSTANCE, TRANSFER_START, TRANSFER_END, DECODE_SCHEDULED = range(13, 17)   # with PD roles (pd.with_pd_columns)


_REQUEST_FIELDS = attrgetter("instance", "rid", "prompt_len", "output_len", "arrival_ns", "last_token_ns",
                             "first_scheduled_ns", "first_token_ns", "preemptions", "hit_tokens", "queued_ns")


def request_matrix(reqs: list) -> np.ndarray:
    """The int64 rows (columns below: instance, rid, input, output, arrival, end, e2e, queueing,
    ttft, tpot, preemptions, hits, queued) of finished requests, computed column by column. TPOT
    is (E2E − TTFT)/(output − 1) rounded half up, 0 for one output token (no TPOT). Every time is
    at most the 10^18 ns bound (cluster/invariants.py), so no column overflows."""
    raw = np.fromiter(chain.from_iterable(map(_REQUEST_FIELDS, reqs)), dtype=np.int64,
                      count=11 * len(reqs)).reshape(len(reqs), 11)
    arrival, n = raw[:, 4], raw[:, 3]
    out = np.empty((len(reqs), 13), dtype=np.int64)
    out[:, :6] = raw[:, :6]
    out[:, E2E] = raw[:, 5] - arrival
    out[:, QUEUEING] = raw[:, 6] - arrival
    out[:, TTFT] = raw[:, 7] - arrival
    gaps = np.maximum(n - 1, 1)
    out[:, TPOT] = np.where(n > 1, (2 * (out[:, E2E] - out[:, TTFT]) + gaps) // (2 * gaps), 0)
    out[:, PREEMPTIONS:] = raw[:, 8:]
    return out


def request_row(req) -> tuple:
    """(instance, rid, input, output, arrival, end, e2e, queueing, ttft, tpot, itl list, preemptions, hits,
    queued) of one finished request (`request_matrix`'s row with its ITL list)."""
    row = request_matrix([req])[0].tolist()
    return (*row[:TPOT + 1], list(req.itl), *row[TPOT + 1:])


def stats_ms(values) -> dict:
    """{mean, p50, p90, p95, p99} in ms of ns values (all None when there are none).

    The values are converted to ms first, then averaged and interpolated (the arithmetic of
    the first release, so summaries stay identical to the last digit). An int64 array is
    converted in place, chunk by chunk, and reordered: no second copy of a large ITL array."""
    if len(values) == 0:
        return {k: None for k in ("mean", "p50", "p90", "p95", "p99")}
    a = _as_float_in_place(np.asarray(values))
    a /= 1e6
    mean = float(a.mean())
    p = np.percentile(a, [50, 90, 95, 99], overwrite_input=True)      # partitions `a` in place
    return {"mean": mean, "p50": float(p[0]), "p90": float(p[1]), "p95": float(p[2]), "p99": float(p[3])}


def _as_float_in_place(a: np.ndarray, chunk: int = 1 << 20) -> np.ndarray:
    """float64 values of `a`, reusing an int64 array's buffer (converted a chunk at a time)."""
    if a.dtype != np.int64 or not a.flags.writeable or not a.flags.c_contiguous:
        return a.astype(np.float64)
    f = a.view(np.float64)
    for i in range(0, len(a), chunk):
        f[i:i + chunk] = a[i:i + chunk]
    return f


def hit_rate(hits: int, queries: int):
    """Prefix-cache hit tokens per admitted (looked-up) token; None when nothing was admitted."""
    return hits / queries if queries else None




def _drain(chunks: list) -> np.ndarray:
    """Concatenate int64 chunks into one array, releasing each chunk as it is copied."""
    out = np.empty(sum(len(c) for c in chunks), dtype=np.int64)
    pos = 0
    chunks.reverse()
    while chunks:
        c = chunks.pop()
        out[pos:pos + len(c)] = c
        pos += len(c)
    return out


class MetricsCollector:
    """Accumulates finished requests as int64 array chunks (one value a request: TTFT, TPOT, E2E,
    queueing), the ITL gaps as a `ValueStream` (exact statistics in bounded memory), counters and
    per-instance totals."""

    def __init__(self, num_instances: int = 1):
        self.per_inst = np.zeros((num_instances, 3), dtype=np.int64)   # finished, input, output tokens
        self.chunks: dict[str, list] = {m: [] for m in METRICS if m != "itl"}
        self.itl = ValueStream()
        self.count = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.first_arrival = None
        self.last_end = 0
        self.preemptions = 0

    def add_arrays(self, fixed: np.ndarray, itl: np.ndarray) -> None:
        """A batch: `fixed` rows in the column order above, `itl` all their inter-token gaps."""
        if len(fixed) == 0:
            return
        c = self.chunks                  # copies: a column view would keep the whole matrix alive
        c["ttft"].append(fixed[:, TTFT].copy())
        c["e2e"].append(fixed[:, E2E].copy())
        c["queueing"].append(fixed[:, QUEUEING].copy())
        c["tpot"].append(fixed[fixed[:, OUTPUT] > 1, TPOT])
        self.itl.add(itl)
        self.count += len(fixed)
        self.input_tokens += int(fixed[:, INPUT].sum())
        self.output_tokens += int(fixed[:, OUTPUT].sum())
        first = int(fixed[:, ARRIVAL].min())
        self.first_arrival = first if self.first_arrival is None else min(self.first_arrival, first)
        self.last_end = max(self.last_end, int(fixed[:, END].max()))
        self.preemptions += int(fixed[:, PREEMPTIONS].sum())
        inst = fixed[:, INSTANCE]
        np.add.at(self.per_inst, (inst, 0), 1)
        np.add.at(self.per_inst, (inst, 1), fixed[:, INPUT])
        np.add.at(self.per_inst, (inst, 2), fixed[:, OUTPUT])

    def add_batch(self, batch) -> None:
        self.add_arrays(batch.fixed, batch.itl)

    def per_instance(self, stats: dict, routed: list) -> list[dict]:
        """Per-instance breakdown: routed, finished, tokens, busy fraction, steps, preemptions, hits."""
        span = max(1, self.last_end)
        out = []
        for i, (done, inp, outp) in enumerate(self.per_inst.tolist()):
            s = stats[i]
            out.append({"instance": i, "routed": routed[i], "finished": done, "input_tokens": inp,
                        "output_tokens": outp, "busy_fraction": s["busy_ns"] / span, "steps": s["steps"],
                        "preemptions": s["preemptions"], "kv_blocks": s["kv_blocks"],
                        "prefix_hit_rate": hit_rate(s["prefix_hits"], s["prefix_queries"])})
        return out

    def summary(self) -> dict:
        """The statistics (call once: it consumes the collected values)."""
        span_s = max(1e-9, (self.last_end - (self.first_arrival or 0)) / 1e9)
        out = {"num_requests": self.count}
        for m in METRICS:
            key = "e2e_ms" if m == "e2e" else f"{m}_ms"
            out[key] = self.itl.stats_ms() if m == "itl" else stats_ms(_drain(self.chunks[m]))
        out["throughput"] = {
            "requests_per_s": self.count / span_s,
            "input_tokens_per_s": self.input_tokens / span_s,
            "output_tokens_per_s": self.output_tokens / span_s,
        }
        out["simulated_s"] = self.last_end / 1e9
        out["preemptions"] = self.preemptions
        return out
