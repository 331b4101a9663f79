"""Vidur's trace-replay CSV: `arrived_at` (s), `num_prefill_tokens`, `num_decode_tokens` (the
tokens generated, the first included, as fleetsim's output length). Arrivals are taken as
written (not shifted), so a list Vidur generated runs on the same clock as in Vidur."""
from __future__ import annotations

from fleetsim.cluster.workloads.csvrows import CSVTraceFormat
from fleetsim.cluster.workloads.formats import register


@register
class VidurCSV(CSVTraceFormat):
    name = "vidur"
    from_first = False
    COLUMNS = ("arrived_at", "num_prefill_tokens", "num_decode_tokens")
