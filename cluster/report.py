"""Output files of a run, written so that nothing is half-written.

`requests.csv` streams into `requests.csv.partial` and `summary.json` into a temporary file;
both are renamed into place only when the run completes, and removed if it fails.
"""
from __future__ import annotations

import json
import os

from cluster.metrics import CSV_HEADER


class RunOutput:
    def __init__(self, out_dir: str):
        os.makedirs(out_dir, exist_ok=True)
        self.out_dir = out_dir
        self._partial = os.path.join(out_dir, "requests.csv.partial")
        self._csv = open(self._partial, "w", encoding="utf-8", newline="")
        self._csv.write(CSV_HEADER + "\n")
        self._tmp: list[tuple[str, str]] = []

    def write_lines(self, lines: list[str]) -> None:
        """Append formatted requests.csv lines."""
        self._csv.write("".join(lines))

    def add_json(self, name: str, doc) -> None:
        path = os.path.join(self.out_dir, name)
        tmp = path + ".partial"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2, sort_keys=False)
            fh.write("\n")
        self._tmp.append((tmp, path))

    def commit(self) -> None:
        self._csv.close()
        os.replace(self._partial, os.path.join(self.out_dir, "requests.csv"))
        for tmp, path in self._tmp:
            os.replace(tmp, path)

    def abort(self) -> None:
        self._csv.close()
        for path in [self._partial] + [t for t, _ in self._tmp]:
            if os.path.exists(path):
                os.remove(path)


def summary_table(summary: dict) -> str:
    """The human summary printed after a run."""
    lines = [f"{'metric':<14}{'mean':>11}{'p50':>11}{'p90':>11}{'p95':>11}{'p99':>11}"]
    for key, label in (("ttft_ms", "TTFT ms"), ("tpot_ms", "TPOT ms"), ("itl_ms", "ITL ms"),
                       ("e2e_ms", "E2E ms"), ("queueing_ms", "queueing ms")):
        s = summary[key]
        lines.append(f"{label:<14}" + "".join(f"{s[k]:>11.2f}" for k in ("mean", "p50", "p90", "p95", "p99")))
    t = summary["throughput"]
    lines.append(f"requests {summary['num_requests']}, simulated {summary['simulated_s']:.2f} s, "
                 f"wall {summary['wall_s']:.2f} s; throughput {t['requests_per_s']:.2f} req/s, "
                 f"{t['input_tokens_per_s']:.0f} in tok/s, {t['output_tokens_per_s']:.0f} out tok/s; "
                 f"preemptions {summary['preemptions']}, prefix hit rate {summary['prefix_hit_rate']:.3f}")
    return "\n".join(lines)
