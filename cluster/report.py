"""Output files of a run, written so that nothing is half-written.

Every file (requests.csv and timeseries.csv streamed as the run goes, summary.json at the end)
is written to `<name>.partial`; all are renamed into place only when the run completes, and
removed if it fails.
"""
from __future__ import annotations

import json
import os

from fleetsim.cluster.metrics import CSV_HEADER


class RunOutput:
    def __init__(self, out_dir: str):
        os.makedirs(out_dir, exist_ok=True)
        self.out_dir = out_dir
        self._files: list[tuple[str, str, object]] = []     # (partial path, final path, handle)
        self._csv = self.stream("requests.csv", CSV_HEADER + "\n")

    def stream(self, name: str, header: str):
        """An open text file for `name`, starting with `header`; in place after `commit`."""
        path = os.path.join(self.out_dir, name)
        fh = open(path + ".partial", "w", encoding="utf-8", newline="")
        self._files.append((path + ".partial", path, fh))
        fh.write(header)
        return fh

    def write_lines(self, lines: list[str]) -> None:
        """Append formatted requests.csv lines."""
        self._csv.write("".join(lines))

    def add_json(self, name: str, doc) -> None:
        fh = self.stream(name, "")
        json.dump(doc, fh, indent=2, sort_keys=False)
        fh.write("\n")

    def commit(self) -> None:
        for _, _, fh in self._files:
            fh.close()
        for tmp, path, _ in self._files:
            os.replace(tmp, path)

    def abort(self) -> None:
        for tmp, _, fh in self._files:
            fh.close()
            if os.path.exists(tmp):
                os.remove(tmp)


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
