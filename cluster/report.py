"""Output files of a run, written so that nothing is half-written.

Every file (requests.csv and the time series streamed as the run goes, summary.json at the
end) is written to `<name>.partial`; all are renamed into place only when the run completes, and
removed if it fails. Without a folder (`RunOutput(None)`, what `fleetsim.simulate` uses) the
same streams go to memory and `texts` holds every file's exact text after `commit`. The printed
summary shows an undefined statistic (None) as "n/a".
"""
from __future__ import annotations

import io
import json
import os

from fleetsim.cluster.errors import InputError
from fleetsim.cluster.requests_csv import csv_header


class RunOutput:
    def __init__(self, out_dir: str | None, requests_csv: bool = True, rejected_column: bool = False,
                 pd_columns: bool = False):
        self._made_dir = out_dir is not None and not os.path.isdir(out_dir)
        if out_dir is not None:
            os.makedirs(out_dir, exist_ok=True)
        self.out_dir = out_dir
        self._files: list[tuple[str, str, object]] = []     # (partial path or name, final path or name, handle)
        self.texts: dict[str, str] = {}                      # name -> text, in memory, after commit
        self._csv = self.stream("requests.csv", csv_header(rejected_column, pd_columns) + "\n") if requests_csv else None

    def stream(self, name: str, header: str):
        """An open text file for `name`, starting with `header`; in place after `commit`."""
        if self.out_dir is None:
            fh = io.StringIO()
            self._files.append((name, name, fh))
        else:
            path = os.path.join(self.out_dir, name)
            fh = open(path + ".partial", "w", encoding="utf-8", newline="")
            self._files.append((path + ".partial", path, fh))
        fh.write(header)
        return fh

    @property
    def names(self) -> list[str]:
        """The files of this run."""
        return [os.path.basename(final) for _, final, _ in self._files]

    def write_lines(self, lines: list[str]) -> None:
        """Append formatted requests.csv lines (only when the output has a requests.csv)."""
        self._csv.write("".join(lines))

    def add_json(self, name: str, doc) -> None:
        fh = self.stream(name, "")
        json.dump(doc, fh, indent=2, sort_keys=False)
        fh.write("\n")

    def commit(self) -> None:
        if self.out_dir is None:
            self.texts = {name: fh.getvalue() for name, _, fh in self._files}
        for _, _, fh in self._files:
            fh.close()
        if self.out_dir is not None:
            for tmp, path, _ in self._files:
                os.replace(tmp, path)

    def abort(self) -> None:
        """Remove what was written (and the folder, if this run made it and it is empty)."""
        for tmp, _, fh in self._files:
            fh.close()
            if self.out_dir is not None and os.path.exists(tmp):
                os.remove(tmp)
        if self._made_dir and os.path.isdir(self.out_dir) and not os.listdir(self.out_dir):
            os.rmdir(self.out_dir)


RESULT_MARKERS = ("summary.json", "requests.csv", "timeseries.csv")


def clear_previous(out_dir: str, overwrite: bool, flag: str = "--out") -> None:
    """Refuse a folder that holds a previous run's results, or with `overwrite` remove them
    first (the files its summary.json lists, the standard ones and any `.partial`), so that a
    run that then fails leaves no older result looking current."""
    if not os.path.isdir(out_dir):
        return
    names = set(os.listdir(out_dir))
    found = [n for n in RESULT_MARKERS if n in names]
    if not found:
        return
    if not overwrite:
        raise InputError(f"{flag} {out_dir}: holds a previous run's results ({', '.join(found)}); pass --overwrite "
                         "(overwrite=True) to replace them, or choose another folder")
    listed = []
    try:
        with open(os.path.join(out_dir, "summary.json"), encoding="utf-8") as fh:
            listed = json.load(fh).get("run", {}).get("files", [])
    except (OSError, ValueError, AttributeError):
        pass
    doomed = {n for n in names if n.endswith(".partial")} | set(RESULT_MARKERS) | {
        n for n in listed if isinstance(n, str) and os.path.basename(n) == n}
    for name in sorted(doomed & names):
        path = os.path.join(out_dir, name)
        if os.path.isfile(path):
            os.remove(path)


def save_texts(out_dir: str, texts: dict) -> None:
    """Write finished files (name -> text) into `out_dir` the same all-or-nothing way."""
    out = RunOutput(out_dir, requests_csv=False)
    for name, text in texts.items():
        out.stream(name, text)
    out.commit()


def summary_table(summary: dict) -> str:
    """The human summary printed after a run."""
    lines = [f"{'metric':<14}{'mean':>11}{'p50':>11}{'p90':>11}{'p95':>11}{'p99':>11}"]
    for key, label in (("ttft_ms", "TTFT ms"), ("tpot_ms", "TPOT ms"), ("itl_ms", "ITL ms"),
                       ("e2e_ms", "E2E ms"), ("queueing_ms", "queueing ms")):
        s = summary[key]
        lines.append(f"{label:<14}" + "".join(_cell(s[k], 11, ".2f") for k in ("mean", "p50", "p90", "p95", "p99")))
    t = summary["throughput"]
    lines.append(f"requests {summary['num_requests']}, simulated {summary['simulated_s']:.2f} s, "
                 f"wall {summary['wall_s']:.2f} s; throughput {t['requests_per_s']:.2f} req/s, "
                 f"{t['input_tokens_per_s']:.0f} in tok/s, {t['output_tokens_per_s']:.0f} out tok/s; "
                 f"preemptions {summary['preemptions']}, prefix hit rate {_cell(summary['prefix_hit_rate'], 0, '.3f')}")
    adm = summary.get("admission")
    if adm is not None:
        reasons = ", ".join(f"{k} {v}" for k, v in adm["rejected_by_reason"].items())
        lines.append(f"admission: {adm['arrived']} arrived, {adm['admitted']} admitted, {adm['rejected']} rejected "
                     f"({reasons})")
    auto = summary.get("autoscaler")
    if auto is not None:
        cost = "" if auto["cost"] is None else \
            f"; cost {auto['cost']:.4f}, {_cell(auto['cost_per_request'], 0, '.6f')} per request"
        lines.append(f"autoscaler: {auto['instance_hours']:.4f} instance-hours, mean "
                     f"{_cell(auto['mean_instances'], 0, '.2f')} instances, peak {auto['peak_instances']}, "
                     f"{auto['scale_ups']} up / {auto['scale_downs']} down{cost}")
    return "\n".join(lines)


def _cell(value, width: int, spec: str) -> str:
    """`value` formatted to `spec`, right-aligned in `width`; "n/a" for an undefined (None) one."""
    return f"{'n/a' if value is None else format(value, spec):>{width}}"
