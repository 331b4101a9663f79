"""timeseries.csv: 1-second buckets per instance, plus fleet totals (instance = all).

Columns: second, instance, prompt_tokens, generation_tokens, steps, running, waiting, kv_pct.
Per-instance rows stream into the file (a `RunOutput.stream`) in window order (sorted within a
window); the totals are appended at the end (counts summed; kv_pct averaged over the instances that
reported in that bucket).
"""
from __future__ import annotations

HEADER = "second,instance,prompt_tokens,generation_tokens,steps,running,waiting,kv_pct\n"


class TimeSeriesWriter:
    def __init__(self, fh):
        self.fh = fh
        self.totals: dict[int, list] = {}

    def add(self, buckets) -> None:
        lines = []
        totals = self.totals
        for idx, row in sorted(buckets, key=lambda x: (x[1][0], x[0])):
            b, prompt, gen, steps, running, waiting, kv_pct = row
            lines.append(f"{b + 1},{idx},{prompt},{gen},{steps},{running},{waiting},{kv_pct}\n")
            t = totals.get(b)
            if t is None:
                totals[b] = [prompt, gen, steps, running, waiting, 0.0 + kv_pct, 1]
            else:
                t[0] += prompt
                t[1] += gen
                t[2] += steps
                t[3] += running
                t[4] += waiting
                t[5] += kv_pct
                t[6] += 1
        self.fh.write("".join(lines))

    def close(self) -> None:
        """Append the fleet totals."""
        self.fh.write("".join(f"{b + 1},all,{t[0]},{t[1]},{t[2]},{t[3]},{t[4]},{round(t[5] / t[6], 2)}\n"
                              for b, t in sorted(self.totals.items())))
