"""Progress bars (cluster/progress.py): drawn only on a terminal and without --quiet, 100 % and the
request count at the end, a bytes-read loading bar fed by textfile's readers, output bytes unchanged."""
from __future__ import annotations

import io
import json
import subprocess
import sys

from tqdm import tqdm

from fleetsim.cluster import progress, textfile
from fleetsim.cluster.cli import main
from fleet_helpers import EXAMPLE_CLUSTER, EXAMPLE_WORKLOAD, REPO, outputs


class FakeTTY(io.StringIO):
    """A stderr that says it is a terminal and keeps what was written."""

    def isatty(self) -> bool:
        return True


def _run(out, *extra) -> int:
    return main(["run", "--cluster", str(EXAMPLE_CLUSTER), "--workload", str(EXAMPLE_WORKLOAD),
                 "--out", str(out), "--num-requests", "40", *extra])


def test_run_bar_ends_at_100_percent_and_leaves_outputs_unchanged(tmp_path, monkeypatch):
    tty = FakeTTY()
    monkeypatch.setattr(sys, "stderr", tty)
    assert _run(tmp_path / "bar") == 0
    final = tty.getvalue().rstrip("\n").split("\r")[-1]
    summary = json.loads((tmp_path / "bar" / "summary.json").read_text())
    assert final.startswith("fleetsim: 100%"), final
    assert "| 40/40 [" in final and "req/s" in final
    assert f"simulated {summary['simulated_s']:.1f} s, " in final and "sim-s/s]" in final
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert _run(tmp_path / "quiet", "--quiet") == 0
    assert outputs(tmp_path / "bar") == outputs(tmp_path / "quiet")


def test_no_bar_with_quiet_on_a_terminal(tmp_path, monkeypatch):
    tty = FakeTTY()
    monkeypatch.setattr(sys, "stderr", tty)
    monkeypatch.setattr(progress, "LOAD_DELAY_S", 0.0)
    assert _run(tmp_path / "out", "--quiet") == 0
    assert tty.getvalue() == ""


def test_no_bar_when_stderr_is_not_a_terminal(tmp_path, monkeypatch):
    pipe = io.StringIO()
    monkeypatch.setattr(sys, "stderr", pipe)
    monkeypatch.setattr(progress, "LOAD_DELAY_S", 0.0)
    assert _run(tmp_path / "out") == 0
    assert pipe.getvalue() == ""


def test_loading_bar_counts_the_workload_bytes(tmp_path, monkeypatch):
    tty = FakeTTY()
    monkeypatch.setattr(sys, "stderr", tty)
    monkeypatch.setattr(progress, "LOAD_DELAY_S", 0.0)   # draw at once, on every update
    monkeypatch.setattr(progress, "REDRAW_S", 0.0)
    assert main(["run", "--cluster", str(EXAMPLE_CLUSTER), "--workload", str(EXAMPLE_WORKLOAD),
                 "--out", str(tmp_path / "out")]) == 0
    frames = tty.getvalue().split("\r")
    loading = [f for f in frames if f.startswith(f"loading {EXAMPLE_WORKLOAD.name}:")]
    total = tqdm.format_sizeof(EXAMPLE_WORKLOAD.stat().st_size, divisor=1024)     # the file's size
    assert loading and all(f"/{total} [" in f for f in loading), loading[-1]
    assert loading[0].startswith(f"loading {EXAMPLE_WORKLOAD.name}:   0%|")
    assert any(f.startswith(f"loading {EXAMPLE_WORKLOAD.name}: 100%") for f in loading), loading[-3:]
    after = frames[frames.index(loading[-1]) + 1]
    assert after.strip() == "", after                  # the loading bar is cleared when the file closes
    assert frames[-1].startswith("fleetsim: 100%") and "300/300" in frames[-1]


class Meter:
    def __init__(self, path, size):
        self.path, self.size, self.read, self.updates, self.closes = path, size, 0, 0, 0

    def update(self, n):
        self.read += n
        self.updates += 1

    def close(self):
        self.closes += 1


def test_observe_reads_reports_every_byte_once_and_reads_the_same_text(tmp_path):
    path = tmp_path / "w.jsonl"
    text = "".join(json.dumps({"i": i, "s": "é" * (i % 7)}) + "\r\n" for i in range(5000))
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())         # with a byte-order mark
    plain = list(textfile.text_lines(str(path), "workload"))
    meters = []
    with textfile.observe_reads(lambda p, size: meters.append(Meter(p, size)) or meters[-1]):
        observed = list(textfile.text_lines(str(path), "workload"))
        first = textfile.json_lines(str(path), "workload")
        next(first)
        first.close()                      # a loader that stops early still closes its meter
    assert observed == plain and plain[0][1] == '{"i": 0, "s": ""}\r\n'
    whole, early = meters
    assert (whole.path, whole.size, whole.read, whole.closes) == (str(path), path.stat().st_size, path.stat().st_size, 1)
    assert whole.updates <= path.stat().st_size // 4096 + 1       # per chunk, not per line (5000 lines)
    assert early.closes == 1 and 0 < early.read < early.size
    list(textfile.text_lines(str(path), "workload"))             # outside the block: no meter
    assert len(meters) == 2


def test_a_quiet_run_does_not_import_tqdm(tmp_path):
    """Off means off: without a terminal the bars are no-ops and tqdm is never imported."""
    code = ("import sys\nfrom fleetsim.cluster.cli import main\n"
            f"assert main(['run', '--cluster', {str(EXAMPLE_CLUSTER)!r}, '--workload', {str(EXAMPLE_WORKLOAD)!r},"
            f" '--out', {str(tmp_path / 'out')!r}, '--num-requests', '5']) == 0\n"
            "assert 'tqdm' not in sys.modules, 'tqdm imported'\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
