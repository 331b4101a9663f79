"""Workload loading: LLMServingSim JSONL (flat requests and sessions).

Flat line: `input_toks`, `output_toks` (tokens generated, the first included),
`arrival_time_ns`, optional `input_tok_ids`, `output_tok_ids`.
Session line: `session_id`, `arrival_time_ns`, `sub_requests: [{input_toks, output_toks,
tool_duration_ns, input_tok_ids?, output_tok_ids?}, ...]`; sub-request i+1 arrives
`tool_duration_ns` of sub-request i after i finishes (its arrival is set when that happens).

Request ids are assigned in file order (a session's turns take consecutive ids).
`num_requests` keeps the first N requests (a session is cut after its N-th turn overall).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from cluster.errors import InputError
from instance.request import Request


@dataclass
class Workload:
    """Requests that arrive on their own (sorted by arrival, then id) plus session follow-ups."""
    initial: list[Request]
    total: int
    source: str

    def __len__(self) -> int:
        return self.total


def _nonneg_int(doc: dict, key: str, where: str, required: bool = True, positive: bool = False) -> int:
    value = doc.get(key)
    if value is None and not required:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < (1 if positive else 0):
        what = "a positive integer" if positive else "an integer >= 0"
        raise InputError(f"{where}: field {key!r} must be {what}, got {value!r}")
    return value


def _ids(doc: dict, key: str, length: int, where: str):
    ids = doc.get(key)
    if ids is None:
        return None
    if not isinstance(ids, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in ids):
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
    try:
        fh = open(path, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read workload: {exc.strerror}") from None
    with fh:
        for lineno, line in enumerate(fh, 1):
            if num_requests is not None and rid >= num_requests:
                break
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{where}: malformed JSON ({exc.msg})") from None
            if not isinstance(doc, dict):
                raise InputError(f"{where}: expected a JSON object")
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
