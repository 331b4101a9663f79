"""`write_jsonl`: a `Workload` as fleetsim's JSONL (LLMServingSim's format plus `hash_ids`),
streamed request by request, written to `<file>.partial` and renamed when complete.

Rows come out in arrival order, so a reloaded file numbers requests in that order. Flat requests
keep their token ids (split into `input_tok_ids` / `output_tok_ids`) or hash ids; sessions are
session lines whose turns carry `tool_duration_ns` (the think time after each turn).
"""
from __future__ import annotations

import json
import os


def _lengths(req) -> dict:
    doc = {"input_toks": req.prompt_len, "output_toks": req.output_len}
    ids = req.token_ids
    if ids is not None:
        doc["input_tok_ids"] = ids[:req.prompt_len]
        if len(ids) == req.prompt_len + req.output_len:
            doc["output_tok_ids"] = ids[req.prompt_len:]
    return doc


def request_lines(workload):
    for req in workload:
        if req.followup is None and req.session is None:
            doc = _lengths(req)
            doc["arrival_time_ns"] = req.arrival_ns
            if req.hash_ids is not None:
                doc["hash_ids"] = req.hash_ids
                doc["hash_block"] = req.hash_block
            yield json.dumps(doc) + "\n"
            continue
        subs = []
        turn = req
        while turn is not None:
            sub = _lengths(turn)
            sub["tool_duration_ns"] = turn.think_ns
            subs.append(sub)
            turn = turn.followup
        yield json.dumps({"session_id": req.session, "arrival_time_ns": req.arrival_ns, "sub_requests": subs}) + "\n"


def write_jsonl(workload, path: str) -> int:
    """Write `workload` to `path`; returns the number of lines."""
    partial = path + ".partial"
    lines = 0
    try:
        with open(partial, "w", encoding="utf-8", newline="") as fh:
            for line in request_lines(workload):
                fh.write(line)
                lines += 1
        os.replace(partial, path)
    except BaseException:
        if os.path.exists(partial):
            os.remove(partial)
        raise
    return lines
