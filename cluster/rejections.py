"""`Rejections`: the requests admission control turned away (cluster/admission.py), as outputs.

Kept by the router (it rejects at routing time) and written by the fleet loop with the window
in which they were rejected, so they are never silently dropped:
- requests.csv gains a last column, `rejected`, only in runs with admission configured (a run
  without keeps its bytes). A finished request's cell is empty. A rejected request's row has its
  instance (the one the routing policy chose, empty when it was rejected before any was chosen:
  token_bucket, fleet queue_cap) and that instance's model (empty likewise), request id,
  input, output and arrival; every time and count after arrival is empty (the PD columns too, in a
  run with prefill/decode roles); `rejected` is the
  reason, the name of the stage that refused it. Within a window a rejected row sits at its
  arrival time among the finished rows at their end times (after those ending at that ns).
- summary.json's `admission` block (after `router`): the stages, `arrived` = `admitted` +
  `rejected`, `rejected_by_reason` (every stage, in order, zeros included) and
  `session_turns_not_sent` (later turns of sessions that ended with a rejected turn). Warm-up
  requests (`--warmup-requests`) are left out of these counts, rows and the SLO block like
  their finished peers; the run invariants count them (routed + rejected = arrived).
"""
from __future__ import annotations

import numpy as np

from fleetsim.cluster.metrics import END


class Rejections:
    def __init__(self, reasons, models: list[str], extra_columns: int = 0):
        """`reasons`: the stage names, in order; `models[i]`: instance i's model (the CSV cell);
        `extra_columns`: cells between `queued` and `rejected` (the PD columns, cluster/pd.py)."""
        self.by_reason = dict.fromkeys(reasons, 0)
        self.models = models
        self.empty = "," * (10 + extra_columns)    # every time and count after arrival
        self.total = 0                # every rejection, warm-up included (the invariants)
        self.turns_not_sent = 0
        self.rows: list[tuple] = []   # (arrival, line) of the window being routed

    def add(self, req, idx, reason: str, warm: bool) -> None:
        self.total += 1
        if warm:
            return
        self.by_reason[reason] += 1
        inst, model = ("", "") if idx is None else (idx, self.models[idx])
        self.rows.append((req.arrival_ns, f"{inst},{req.rid},{model},{req.prompt_len},{req.output_len},"
                                          f"{req.arrival_ns}{self.empty}{reason}\n"))

    def session_ended(self, followup) -> None:
        """A rejected turn's successor (and the turns after it) will not be sent."""
        while followup is not None:
            self.turns_not_sent += 1
            followup = followup.followup

    def take_window(self) -> list[tuple]:
        rows, self.rows = self.rows, []
        return rows

    @staticmethod
    def lines(batch, rows: list[tuple]) -> list[str]:
        """requests.csv lines of a window: its finished rows (an empty `rejected` cell added) and
        its rejected `rows`, merged by time (module doc)."""
        finished = [line[:-1] + ",\n" for line in batch.lines]
        if not rows:
            return finished
        at = np.searchsorted(batch.fixed[:, END], [t for t, _ in rows], side="right").tolist() if finished else \
            [0] * len(rows)
        out, pos = [], 0
        for k, (_, line) in zip(at, rows):
            out.extend(finished[pos:k])
            out.append(line)
            pos = max(pos, k)
        out.extend(finished[pos:])
        return out

    @property
    def measured(self) -> int:
        return sum(self.by_reason.values())

    def block(self, stages: list[dict], admitted: int) -> dict:
        """summary.json's `admission` block; `admitted` = measured requests routed."""
        return {"stages": stages, "arrived": admitted + self.measured, "admitted": admitted,
                "rejected": self.measured, "rejected_by_reason": dict(self.by_reason),
                "session_turns_not_sent": self.turns_not_sent}
