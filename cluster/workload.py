"""Workload loading: LLMServingSim JSONL (flat requests and sessions), Azure LLM inference CSV,
Mooncake JSONL. `load_workload` picks the format by content (the first non-blank line: a JSON
object with `input_length` is Mooncake, any other JSON object LLMServingSim, a CSV header with
Azure's columns Azure), never by the file's extension; `fmt` forces one (`--format`). Files may
start with a UTF-8 byte-order mark.

Flat line: `input_toks`, `output_toks` (tokens generated, the first included),
`arrival_time_ns`, optional `input_tok_ids`, `output_tok_ids`.
Session line: `session_id`, `arrival_time_ns`, `sub_requests: [{input_toks, output_toks,
tool_duration_ns, input_tok_ids?, output_tok_ids?}, ...]`; sub-request i+1 arrives
`tool_duration_ns` of sub-request i after i finishes (its arrival is set when that happens).

Request ids are assigned in file order (a session's turns take consecutive ids).
`num_requests` keeps the first N requests (a session is cut after its N-th turn overall).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from fleetsim.cluster.errors import InputError, is_finite_number, is_int
from fleetsim.cluster.textfile import json_lines, text_lines
from fleetsim.instance.request import Request


@dataclass
class Workload:
    """Requests that arrive on their own (sorted by arrival, then id) plus session follow-ups."""
    initial: list[Request]
    total: int
    source: str

    def __len__(self) -> int:
        return self.total

    def __repr__(self) -> str:
        return f"Workload({self.source!r}, {self.total} requests)"


def _nonneg_int(doc: dict, key: str, where: str, required: bool = True, positive: bool = False) -> int:
    value = doc.get(key)
    if value is None and not required:
        return 0
    if not is_int(value) or value < (1 if positive else 0):
        what = "a positive integer" if positive else "an integer >= 0"
        raise InputError(f"{where}: field {key!r} must be {what}, got {value!r}")
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


def _request(rid: int, doc: dict, arrival: int, where: str) -> Request:
    if not isinstance(doc, dict):
        raise InputError(f"{where}: expected a JSON object")
    inp = _nonneg_int(doc, "input_toks", where, positive=True)
    out = _nonneg_int(doc, "output_toks", where, positive=True)
    in_ids = _ids(doc, "input_tok_ids", inp, where)
    out_ids = _ids(doc, "output_tok_ids", out, where) if in_ids is not None else None
    ids = in_ids + out_ids if out_ids is not None else in_ids
    return Request(rid, arrival, inp, out, token_ids=ids)


def load_llmservingsim_jsonl(path: str, num_requests: int | None = None) -> Workload:
    """Read an LLMServingSim workload file (see module doc)."""
    if num_requests is not None and num_requests < 1:
        raise InputError(f"--num-requests must be >= 1, got {num_requests}")
    initial: list[Request] = []
    rid = 0
    for where, doc in json_lines(path, "workload"):
        if num_requests is not None and rid >= num_requests:
            break
        arrival = _nonneg_int(doc, "arrival_time_ns", where)
        subs = doc.get("sub_requests")
        if subs is None:
            initial.append(_request(rid, doc, arrival, where))
            rid += 1
            continue
        if not isinstance(subs, list) or not subs:
            raise InputError(f"{where}: field 'sub_requests' must be a non-empty list")
        session = doc.get("session_id", rid)
        prev = None
        for k, sub in enumerate(subs):
            if num_requests is not None and rid >= num_requests:
                break
            sub_where = f"{where}: sub_requests[{k}]"
            req = _request(rid, sub, arrival if prev is None else -1, sub_where)
            req.session = session
            if prev is None:
                initial.append(req)
            else:
                prev.followup = req
            prev = req
            prev.think_ns = _nonneg_int(sub, "tool_duration_ns", sub_where, required=False)
            rid += 1
    if rid == 0:
        raise InputError(f"{path}: no requests")
    initial.sort(key=lambda r: (r.arrival_ns, r.rid))
    return Workload(initial, rid, path)


def _azure_ns(stamp: str, where: str) -> int:
    """'2023-11-16 18:15:46.6805900' → ns since the epoch (integer arithmetic, any fraction length)."""
    import datetime
    try:
        whole, _, frac = stamp.strip().partition(".")
        base = datetime.datetime.strptime(whole, "%Y-%m-%d %H:%M:%S").replace(tzinfo=datetime.timezone.utc)
        frac_ns = int((frac + "000000000")[:9]) if frac else 0
    except ValueError:
        raise InputError(f"{where}: field 'TIMESTAMP' must look like 2023-11-16 18:15:46.6805900, got {stamp!r}") from None
    return int(base.timestamp()) * 1_000_000_000 + frac_ns


def _finish(reqs: list, path: str, time_scale: float) -> Workload:
    if not reqs:
        raise InputError(f"{path}: no requests")
    if not (0 < time_scale < math.inf):
        raise InputError(f"--time-scale must be a finite number > 0, got {time_scale}")
    t0 = min(r.arrival_ns for r in reqs)
    for r in reqs:
        r.arrival_ns = round((r.arrival_ns - t0) * time_scale)
    reqs.sort(key=lambda r: (r.arrival_ns, r.rid))
    return Workload(reqs, len(reqs), path)


def load_azure_csv(path: str, num_requests: int | None = None, time_scale: float = 1.0) -> Workload:
    """Azure LLM inference trace CSV (`TIMESTAMP,ContextTokens,GeneratedTokens`); arrivals are
    relative to the first request and multiplied by `time_scale` (< 1 compresses = more load).
    Rows with 0 generated tokens are kept with 1 (every request produces its first token)."""
    import csv
    reqs = []
    lines = text_lines(path, "workload")
    reader = csv.DictReader(line for _, line in lines)
    missing = {"TIMESTAMP", "ContextTokens", "GeneratedTokens"} - set(reader.fieldnames or ())
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    for lineno, row in enumerate(reader, 2):
        if num_requests is not None and len(reqs) >= num_requests:
            break
        where = f"{path}:{lineno}"
        try:
            inp, out = int(row["ContextTokens"]), int(row["GeneratedTokens"])
        except (TypeError, ValueError):
            raise InputError(f"{where}: ContextTokens and GeneratedTokens must be integers") from None
        if inp < 1 or out < 0:
            raise InputError(f"{where}: ContextTokens must be >= 1 and GeneratedTokens >= 0")
        reqs.append(Request(len(reqs), _azure_ns(row["TIMESTAMP"], where), inp, max(1, out)))
    lines.close()
    return _finish(reqs, path, time_scale)


def load_mooncake_jsonl(path: str, num_requests: int | None = None, time_scale: float = 1.0) -> Workload:
    """Mooncake FAST'25 trace (`timestamp` ms, `input_length`, `output_length`, `hash_ids` of
    512-token prompt blocks): block hash ids drive prefix caching across requests."""
    reqs = []
    for where, doc in json_lines(path, "workload"):
        if num_requests is not None and len(reqs) >= num_requests:
            break
        ts = doc.get("timestamp")
        if not is_finite_number(ts) or ts < 0:
            raise InputError(f"{where}: field 'timestamp' must be a number of ms >= 0, got {ts!r}")
        inp = _nonneg_int(doc, "input_length", where, positive=True)
        out = _nonneg_int(doc, "output_length", where, positive=True)
        ids = doc.get("hash_ids") or []
        if not isinstance(ids, list) or not all(isinstance(h, int) for h in ids):
            raise InputError(f"{where}: field 'hash_ids' must be a list of integers")
        reqs.append(Request(len(reqs), round(ts * 1_000_000), inp, out, hash_ids=ids, hash_block=512))
    return _finish(reqs, path, time_scale)


FORMATS = ("llmservingsim", "azure", "mooncake")


def detect_format(path: str) -> str:
    """The format of `path` judged from its first non-blank line (see the module doc)."""
    lines = text_lines(path, "workload")
    first = next((line for _, line in lines if line.strip()), "")
    lines.close()
    head = first.strip()
    if head.startswith("{"):
        return "mooncake" if '"input_length"' in head else "llmservingsim"
    columns = {c.strip() for c in head.split(",")}
    if {"TIMESTAMP", "ContextTokens", "GeneratedTokens"} <= columns:
        return "azure"
    if not head:
        raise InputError(f"{path}: no requests")
    raise InputError(f"{path}: unrecognised workload format (first line {head[:60]!r}); expected a JSONL "
                     f"object per line or an Azure trace CSV header; choose one with --format {{{','.join(FORMATS)}}}")


def load_workload(path: str, num_requests: int | None = None, time_scale: float = 1.0,
                  fmt: str | None = None) -> Workload:
    """Any supported workload, in format `fmt` or the one its content shows (`time_scale`
    applies to the Azure and Mooncake traces)."""
    if fmt is None:
        fmt = detect_format(path)
    elif fmt not in FORMATS:
        raise InputError(f"--format {fmt!r}: unknown; choose one of {', '.join(FORMATS)}")
    if fmt == "azure":
        return load_azure_csv(path, num_requests, time_scale)
    if fmt == "mooncake":
        return load_mooncake_jsonl(path, num_requests, time_scale)
    if time_scale != 1.0:
        raise InputError(f"{path}: --time-scale applies to Azure and Mooncake traces only")
    return load_llmservingsim_jsonl(path, num_requests)
