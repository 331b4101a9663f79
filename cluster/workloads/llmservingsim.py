"""LLMServingSim's workload JSONL (fleetsim's own format), flat requests and sessions.

Flat line: `input_toks`, `output_toks` (tokens generated, the first included),
`arrival_time_ns`, optional `input_tok_ids`, `output_tok_ids`.
Session line: `session_id`, `arrival_time_ns`, `sub_requests: [{input_toks, output_toks,
tool_duration_ns, input_tok_ids?, output_tok_ids?}, ...]`; sub-request i+1 arrives
`tool_duration_ns` of sub-request i after i finishes (its arrival is set when that happens).
Arrivals are absolute ns (not shifted); `--time-scale` does not apply.
fleetsim's extension (written by `fleetsim workload convert` for Mooncake-style traces): a flat
line may carry `hash_ids` (one id per `hash_block` prompt tokens, default 512), which give its
prompt blocks an identity as the Mooncake trace's do.
"""
from __future__ import annotations

from fleetsim.cluster.errors import InputError, is_int
from fleetsim.cluster.textfile import json_lines
from fleetsim.cluster.workloads.formats import TraceFormat, register
from fleetsim.cluster.workloads.table import INPUT_TIME_LIMIT_NS, Extra, Turn


def nonneg_int(doc: dict, key: str, where: str, required: bool = True, positive: bool = False) -> int:
    value = doc.get(key)
    if value is None and not required:
        return 0
    if not is_int(value) or value < (1 if positive else 0):
        what = "a positive integer" if positive else "an integer >= 0"
        raise InputError(f"{where}: field {key!r} must be {what}, got {value!r}")
    return value


def time_ns(doc: dict, key: str, where: str, required: bool = True, spent: int | None = None) -> int:
    """A time field in ns: an integer >= 0 that with the `spent` time before it (a session's
    arrival and earlier tool durations) stays within INPUT_TIME_LIMIT_NS (10^17 ns)."""
    value = nonneg_int(doc, key, where, required)
    if (spent or 0) + value > INPUT_TIME_LIMIT_NS:
        what = "" if spent is None else " with the session's arrival and earlier tool durations"
        raise InputError(f"{where}: field {key!r}{what} must be at most 10^17 ns (a tenth of the simulation's "
                         f"time bound), got {value}")
    return value


def _ids(doc: dict, key: str, length: int, where: str):
    ids = doc.get(key)
    if ids is None:
        return None
    if not isinstance(ids, list) or not set(map(type, ids)) <= {int}:
        raise InputError(f"{where}: field {key!r} must be a list of integer token ids")
    if len(ids) != length:
        raise InputError(f"{where}: field {key!r} has {len(ids)} ids but the length field says {length}")
    return ids


def _lengths_and_ids(doc, where: str):
    if not isinstance(doc, dict):
        raise InputError(f"{where}: expected a JSON object")
    inp = nonneg_int(doc, "input_toks", where, positive=True)
    out = nonneg_int(doc, "output_toks", where, positive=True)
    in_ids = _ids(doc, "input_tok_ids", inp, where)
    out_ids = _ids(doc, "output_tok_ids", out, where) if in_ids is not None else None
    return inp, out, (in_ids + out_ids if out_ids is not None else in_ids)


@register
class LLMServingSimJSONL(TraceFormat):
    name = "llmservingsim"
    from_first = False
    scalable = False

    @staticmethod
    def matches(first_line: str) -> bool:
        return first_line.startswith("{") and ('"input_toks"' in first_line or '"sub_requests"' in first_line)

    def read(self, path: str, builder, options: dict) -> None:
        for where, doc in json_lines(path, "workload"):
            if builder.full:
                break
            arrival = time_ns(doc, "arrival_time_ns", where)
            subs = doc.get("sub_requests")
            if subs is None:
                inp, out, ids = _lengths_and_ids(doc, where)
                hashes = doc.get("hash_ids")
                if hashes is not None and (not isinstance(hashes, list) or not set(map(type, hashes)) <= {int}):
                    raise InputError(f"{where}: field 'hash_ids' must be a list of integers")
                block = nonneg_int(doc, "hash_block", where, positive=True) if "hash_block" in doc else 512
                builder.add(arrival, inp, out, None if ids is None and hashes is None else
                            Extra(token_ids=ids, hash_ids=hashes, hash_block=block))
                continue
            if not isinstance(subs, list) or not subs:
                raise InputError(f"{where}: field 'sub_requests' must be a non-empty list")
            turns, spent = [], arrival
            for k, sub in enumerate(subs):
                sub_where = f"{where}: sub_requests[{k}]"
                inp, out, ids = _lengths_and_ids(sub, sub_where)
                think = time_ns(sub, "tool_duration_ns", sub_where, required=False, spent=spent)
                spent += think
                turns.append(Turn(inp, out, think, ids))
            first = turns[0]
            builder.add(arrival, first.prompt, first.output,
                        Extra(token_ids=first.token_ids, session=doc.get("session_id", builder.count),
                              think_ns=first.think_ns, turns=tuple(turns[1:])))
