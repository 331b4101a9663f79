"""BurstGPT-style CSV (`Timestamp` in s, `Request tokens`, `Response tokens`; other columns such
as Model and Log Type are ignored). Arrivals are relative to the earliest timestamp; a response
of 0 tokens (a failed request in BurstGPT) is kept with 1, as in the Azure trace."""
from __future__ import annotations

from fleetsim.cluster.workloads.csvrows import CSVTraceFormat
from fleetsim.cluster.workloads.formats import register


@register
class BurstGPTCSV(CSVTraceFormat):
    name = "burstgpt"
    COLUMNS = ("Timestamp", "Request tokens", "Response tokens")
    ZERO_OUTPUT = True
