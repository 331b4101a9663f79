"""timeseries.csv and timeseries_fleet.csv: 1-second buckets per instance and for the fleet.

Second s covers simulated time [s − 1, s) (s = bucket + 1, as vLLM's own time series counts);
a step counts in the second in which it ends.

`timeseries.csv` — `second,instance,prompt_tokens,generation_tokens,steps,running,waiting,kv_pct`,
sorted by (second, instance), one row for every instance in every second from the first second
in which any instance ends a step to the last such second (a full grid: no holes for pandas'
`pivot`, integer instance ids only). The counts (prompt tokens computed, generation tokens
produced, steps) are those of the instance's steps ending in the second, 0 if none does; the
levels (running, waiting, kv_pct = % of the instance's KV blocks in use, rounded to 0.01) are
those after its last step ending in or before the second, so an idle instance shows its true
state: 0 running, 0 waiting, and 0 KV once its requests are done (blocks kept only as prefix
cache are free), the same levels as before while one long step (or a pipeline's batches in
flight) spans several seconds.

`timeseries_fleet.csv` — `second,prompt_tokens,generation_tokens,steps,running,waiting,kv_pct`,
the same seconds for the whole fleet: counts and levels summed over all instances, kv_pct the
mean of every instance's kv_pct in that second (idle ones included), rounded to 0.01. Its own
file, rather than rows with an empty instance id, keeps timeseries.csv's instance column integer
and its per-instance aggregates free of totals.

With an autoscaler, timeseries_fleet.csv has three more columns, `active,provisioning,draining`:
the instance counts after every autoscaler transition in or before the second (`fleet_columns(bucket)`,
cluster/autoscaling/scaler.py); a fleet without one keeps the columns above and their bytes.

Streaming with bounded memory: windows are recorded in time order, and once the window ending at
t is recorded, every bucket before t's is complete on every instance (`InstanceHost.window`), so
those seconds are written then. Held back are only the rows of buckets the recorded windows have
not passed (about one window's span × instances) and each instance's current levels; a second
after the last row seen waits until a later row shows the run went on, so idle seconds after the
last step are never written.
"""
from __future__ import annotations

from fleetsim.instance.timeseries import BUCKET_NS

HEADER = "second,instance,prompt_tokens,generation_tokens,steps,running,waiting,kv_pct\n"
FLEET_HEADER = "second,prompt_tokens,generation_tokens,steps,running,waiting,kv_pct\n"
AUTOSCALER_COLUMNS = ",active,provisioning,draining"


def fleet_header(autoscaled: bool) -> str:
    return FLEET_HEADER[:-1] + AUTOSCALER_COLUMNS + "\n" if autoscaled else FLEET_HEADER


class TimeSeriesWriter:
    def __init__(self, fh, fleet_fh, num_instances: int, fleet_columns=None):
        self.fh, self.fleet_fh, self.n = fh, fleet_fh, num_instances
        self.fleet_columns = fleet_columns                 # bucket -> extra fleet cells (autoscaler)
        self.pending: dict[int, dict[int, tuple]] = {}     # bucket -> {instance: row}, not written yet
        self.levels = [(0, 0, 0.0)] * num_instances        # (running, waiting, kv_pct) after the last step
        self.next: int | None = None                        # the first bucket not written (None: none yet)
        self.last = -1                                      # the last bucket with a row

    def add(self, buckets, complete_before_ns: int) -> None:
        """A window's bucket rows `[(instance, (bucket, prompt, generation, steps, running,
        waiting, kv_pct))]`; every bucket before `complete_before_ns`'s is complete."""
        pending, nxt = self.pending, self.next
        for idx, row in buckets:
            b = row[0]
            slot = pending.get(b)
            if slot is None:
                if nxt is not None and b < nxt:
                    raise RuntimeError(f"time series: instance {idx} sent second {b + 1} after it was written")
                slot = pending[b] = {}
            elif idx in slot:
                raise RuntimeError(f"time series: instance {idx} sent second {b + 1} twice")
            slot[idx] = row
            if b > self.last:
                self.last = b
        self._write_until(min(complete_before_ns // BUCKET_NS, self.last + 1))

    def close(self) -> None:
        """Write the seconds still held (the run is over: every bucket is complete)."""
        self._write_until(self.last + 1)

    def _write_until(self, stop: int) -> None:
        """Write the buckets before `stop` (all complete)."""
        if self.next is None:
            if not self.pending or min(self.pending) >= stop:
                return
            self.next = min(self.pending)
        pending, levels, n = self.pending, self.levels, self.n
        lines, fleet = [], []
        for b in range(self.next, stop):
            rows = pending.pop(b, {})
            sec = b + 1
            prompt_sum = gen_sum = steps_sum = running_sum = waiting_sum = 0
            kv_sum = 0.0
            for i in range(n):
                row = rows.get(i)
                if row is None:
                    running, waiting, kv = levels[i]
                    lines.append(f"{sec},{i},0,0,0,{running},{waiting},{kv}\n")
                else:
                    _, prompt, gen, steps, running, waiting, kv = row
                    levels[i] = (running, waiting, kv)
                    lines.append(f"{sec},{i},{prompt},{gen},{steps},{running},{waiting},{kv}\n")
                    prompt_sum += prompt
                    gen_sum += gen
                    steps_sum += steps
                running_sum += running
                waiting_sum += waiting
                kv_sum += kv
            extra = self.fleet_columns(b) if self.fleet_columns is not None else ""
            fleet.append(f"{sec},{prompt_sum},{gen_sum},{steps_sum},{running_sum},{waiting_sum},"
                         f"{round(kv_sum / n, 2)}{extra}\n")
        self.next = max(self.next, stop)
        self.fh.write("".join(lines))
        self.fleet_fh.write("".join(fleet))
