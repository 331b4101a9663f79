"""Azure LLM inference trace CSV (2023; `TIMESTAMP,ContextTokens,GeneratedTokens`). Arrivals are
relative to the earliest timestamp. Rows with 0 generated tokens are kept with 1 (every request
produces its first token)."""
from __future__ import annotations

from fleetsim.cluster.workloads.csvrows import CSVTraceFormat
from fleetsim.cluster.workloads.formats import register


@register
class AzureCSV(CSVTraceFormat):
    name = "azure"
    COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
    TIMESTAMPS = ZERO_OUTPUT = True
