"""Run invariants: what must hold on every run, checked as the run goes.

`basic` (always on; a few vectorised operations per window, measured in BENCHMARKS.md):
- every finished request: arrival <= first schedule <= first token <= last token
  (0 <= queueing <= TTFT <= E2E), and its ITL gaps add up to E2E − TTFT;
- per instance, completion times never go back (windows are recorded in time order; with PD
  roles, per instance that finished the request: its decode instance when it was handed off);
- on the instance side, each finished request produced exactly its output tokens, and each
  instance's clock never goes back nor passes `TIME_LIMIT_NS` (`instance_checks`, after every
  window, before the window's records and time-series buckets reach any output);
- at the end, per instance: requests routed by the router = received by the instance = finished
  (admission control rejects at the router, before any instance: cluster/admission.py); every KV
  block free; simulated time within `TIME_LIMIT_NS`; for the fleet, requests arrived at the router
  = routed + rejected (warm-up requests included).
`full` (`--check-invariants full`) adds, after every window on the instance side, the block
manager's own consistency check (each block free xor referenced, no block queued twice, the
prefix-cache map in sync) and used + free = total.

A violation raises `InvariantViolation` naming the instance, the request and the simulated time;
the CLI prints it as one line and exits 3, and the run's outputs are removed (nothing
half-written).
"""
from __future__ import annotations

import numpy as np

from fleetsim.cluster.metrics import ARRIVAL, DECODE_INSTANCE, E2E, END, INSTANCE, OUTPUT, QUEUEING, RID, TTFT

TIME_LIMIT_NS = 10 ** 18          # about 31.7 years of simulated time
LEVELS = ("basic", "full")


class InvariantViolation(RuntimeError):
    """The simulation broke one of its own invariants (a bug, or input it cannot represent)."""


def past_time_limit(idx: int, now: int) -> InvariantViolation:
    return InvariantViolation(
        f"instance {idx}: simulated time reached {now:.3g} ns, past the bound of {TIME_LIMIT_NS:.0e} ns (~31.7 "
        f"years): a step costs more than a run can represent (check the overhead and the cost model)")


def _at(ns: int) -> str:
    return f"at simulated time {ns} ns ({ns / 1e9:.6f} s)"


def instance_checks(engine, last_now: int, finished: list, full: bool) -> None:
    """After a window on the instance side: finished requests' token counts and the clock
    (and with `full`, the KV block manager)."""
    idx = engine.instance_id
    if engine.now < last_now:
        raise InvariantViolation(f"instance {idx}: clock went back from {last_now} to {engine.now} ns")
    if engine.now > TIME_LIMIT_NS:     # before any output sees the window (a time series of 10^9 s)
        raise past_time_limit(idx, engine.now)
    for req in finished:
        if req.num_output != req.output_len or len(req.itl) != req.output_len - 1:
            raise InvariantViolation(
                f"instance {idx}, request {req.rid}: finished with {req.num_output} of {req.output_len} output "
                f"tokens ({len(req.itl)} gaps) {_at(req.last_token_ns)}")
    if full:
        blocks = engine.blocks
        if blocks.num_used + blocks.num_free != blocks.num_blocks:
            raise InvariantViolation(f"instance {idx}: KV blocks used {blocks.num_used} + free {blocks.num_free} "
                                     f"!= total {blocks.num_blocks} {_at(engine.now)}")
        try:
            blocks.check_invariants()
        except AssertionError as exc:
            raise InvariantViolation(f"instance {idx}: KV block manager: {exc} {_at(engine.now)}") from None


class RunChecker:
    """The driver-side checks: records as they stream in, totals at the end."""

    def __init__(self, num_instances: int):
        self.last_end = np.full(num_instances, -1, dtype=np.int64)

    def records(self, fixed: np.ndarray, itl: np.ndarray, merged: bool = False) -> None:
        """A window's finished requests (`RecordBatch.fixed` rows, ordered; `itl` their gaps);
        `merged`: several windows' rows, window after window (cluster/records.py)."""
        if len(fixed) == 0:
            return
        ttft, e2e, queueing = fixed[:, TTFT], fixed[:, E2E], fixed[:, QUEUEING]
        bad = (queueing < 0) | (queueing > ttft) | (ttft > e2e) | (fixed[:, END] < fixed[:, ARRIVAL])
        gaps = fixed[:, OUTPUT] - 1
        if int(gaps.sum()) != len(itl):
            self._fail(fixed, np.ones(len(fixed), dtype=bool), "ITL gaps do not match the output counts")
        ends = np.cumsum(gaps)
        csum = np.concatenate(([0], np.cumsum(itl)))
        bad |= (csum[ends] - csum[ends - gaps]) != e2e - ttft
        if bad.any():
            self._fail(fixed, bad, "timestamps out of order (need 0 <= queueing <= TTFT <= E2E and "
                                   "the ITL gaps summing to E2E - TTFT)")
        inst = fixed[:, INSTANCE]
        if fixed.shape[1] > DECODE_INSTANCE:       # PD: the instance that finished it
            inst = np.where(fixed[:, DECODE_INSTANCE] >= 0, fixed[:, DECODE_INSTANCE], inst)
        if merged and len(fixed) > 1:
            # a window's rows are in end order, so no instance finishing before an earlier window's
            # completion is no instance's ends decreasing, row after row
            order = np.argsort(inst, kind="stable")
            fin, by = fixed[order, END], inst[order]
            down = (by[1:] == by[:-1]) & (fin[1:] < fin[:-1])
            if down.any():
                k = int(np.flatnonzero(down)[0])
                self._back(int(by[k]), fixed[order[k + 1]], int(fin[k]))
        first = np.full_like(self.last_end, np.iinfo(np.int64).max)
        np.minimum.at(first, inst, fixed[:, END])
        back = first < self.last_end
        if back.any():
            i = int(np.flatnonzero(back)[0])
            self._back(i, fixed[(inst == i)][0], int(self.last_end[i]))   # (handed off: i is its decode instance)
        np.maximum.at(self.last_end, inst, fixed[:, END])

    @staticmethod
    def _back(i: int, row, earlier: int):
        raise InvariantViolation(f"instance {i}, request {row[RID]}: finished at {row[END]} ns, before an "
                                 f"earlier window's completion at {earlier} ns")

    @staticmethod
    def _fail(fixed, bad, what: str):
        row = fixed[np.flatnonzero(bad)[0]]
        raise InvariantViolation(f"instance {row[INSTANCE]}, request {row[RID]}: {what}; arrival {row[ARRIVAL]}, "
                                 f"queueing {row[QUEUEING]}, TTFT {row[TTFT]}, E2E {row[E2E]} ns {_at(row[END])}")

    @staticmethod
    def end(routed: list, finished: list, stats: dict) -> None:
        """At the end of the run: `routed[i]` by the router, `finished[i]` recorded, and the
        instances' own `stats[i]` (received, kv_used, now)."""
        for i, sent in enumerate(routed):
            s = stats[i]
            if s["now"] > TIME_LIMIT_NS:
                raise past_time_limit(i, s["now"])
            if sent != s["received"]:
                raise InvariantViolation(f"instance {i}: the router sent {sent} requests, the instance received "
                                         f"{s['received']} {_at(s['now'])}")
            if finished[i] != sent:
                raise InvariantViolation(f"instance {i}: {sent} requests routed, {finished[i]} finished "
                                         f"{_at(s['now'])}")
            if s["kv_used"]:
                raise InvariantViolation(f"instance {i}: {s['kv_used']} KV blocks still in use after the last "
                                         f"request finished {_at(s['now'])}")

    @staticmethod
    def arrivals(arrived: int, routed: int, rejected: int) -> None:
        """At the end of the run: every request that reached the router was routed or rejected."""
        if arrived != routed + rejected:
            raise InvariantViolation(f"the router took {arrived} arrivals but routed {routed} and rejected {rejected}")
