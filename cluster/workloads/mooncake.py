"""Mooncake FAST'25 trace JSONL: `timestamp` (ms), `input_length`, `output_length`, `hash_ids`
(one id per 512-token prompt block; equal ids mean equal blocks, so they drive prefix caching
across requests). Arrivals are relative to the earliest timestamp."""
from __future__ import annotations

from fleetsim.cluster.errors import InputError, is_finite_number, is_int
from fleetsim.cluster.textfile import json_lines
from fleetsim.cluster.workloads.formats import TraceFormat, register
from fleetsim.cluster.workloads.llmservingsim import nonneg_int
from fleetsim.cluster.workloads.table import INPUT_TIME_LIMIT_NS, Extra

HASH_BLOCK = 512


@register
class MooncakeJSONL(TraceFormat):
    name = "mooncake"

    @staticmethod
    def matches(first_line: str) -> bool:
        return first_line.startswith("{") and '"input_length"' in first_line

    def read(self, path: str, builder, options: dict) -> None:
        for where, doc in json_lines(path, "workload"):
            if builder.full:
                break
            ts = doc.get("timestamp")
            if not is_finite_number(ts) or not 0 <= ts <= INPUT_TIME_LIMIT_NS // 1_000_000:
                raise InputError(f"{where}: field 'timestamp' must be a number of ms in [0, 10^11] (a tenth of the "
                                 f"simulation's time bound), got {ts!r}")
            inp = nonneg_int(doc, "input_length", where, positive=True)
            out = nonneg_int(doc, "output_length", where, positive=True)
            ids = doc.get("hash_ids") or []
            if not isinstance(ids, list) or not all(is_int(h) for h in ids):
                raise InputError(f"{where}: field 'hash_ids' must be a list of integers")
            if ids and len(ids) != -(-inp // HASH_BLOCK):
                raise InputError(f"{where}: field 'hash_ids' has {len(ids)} ids but input_length {inp} makes "
                                 f"{-(-inp // HASH_BLOCK)} blocks of {HASH_BLOCK} tokens")
            builder.add(round(ts * 1_000_000), inp, out, Extra(hash_ids=ids, hash_block=HASH_BLOCK))
