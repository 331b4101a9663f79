"""Plots (`fleetsim run --plots`), `fleetsim compare` and `fleetsim report` (HTML, opened in headless
Chromium when it is installed)."""
from __future__ import annotations

import csv
import html
import json
import re
import shutil
import subprocess
import sys

import pytest

from fleetsim import simulate
from fleetsim.cluster.cli import main
from fleetsim.cluster.errors import InputError
from fleet_helpers import EXAMPLE_CLUSTER, EXAMPLE_WORKLOAD, FLEET_CLUSTER

pytest.importorskip("matplotlib")
PNG = b"\x89PNG\r\n\x1a\n"


def _run(out, *extra):
    assert main(["run", "--cluster", str(FLEET_CLUSTER), "--workload", str(EXAMPLE_WORKLOAD), "--out", str(out),
                 "--quiet", "--instances", "3", "--num-requests", "60", *extra]) == 0
    return out


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("fleetsim: error: "), err
    return err[0]


def test_run_plots_are_pngs_and_deterministic(tmp_path):
    a = _run(tmp_path / "1" / "run", "--plots")         # same folder name: the label in the figures
    b = _run(tmp_path / "2" / "run", "--plots", "--instances", "2")
    c = _run(tmp_path / "3" / "run", "--plots")
    for name in ("latency_cdf.png", "timeseries.png", "load_balance.png"):
        assert (a / name).read_bytes().startswith(PNG)
        assert (a / name).read_bytes() == (c / name).read_bytes()          # same data, same bytes
    assert (a / "load_balance.png").read_bytes() != (b / "load_balance.png").read_bytes()
    assert (a / "requests.csv").read_bytes() == (c / "requests.csv").read_bytes()


def test_result_plot_draws_the_run_plots_figures(tmp_path):
    """`Result.plot()` in memory: the same figures as `fleetsim run --plots` of the same run
    (same label, same PNG bytes), or matplotlib Figures to show in a notebook."""
    cli = _run(tmp_path / "run", "--plots")
    result = simulate(str(FLEET_CLUSTER), str(EXAMPLE_WORKLOAD), instances=3, num_requests=60)
    paths = result.plot(tmp_path / "figs", label="run")
    assert sorted(paths) == ["latency_cdf.png", "load_balance.png", "timeseries.png"]
    for name, path in paths.items():
        assert open(path, "rb").read() == (cli / name).read_bytes()
    figs = result.plot()
    assert [ax.get_title() for ax in figs["latency_cdf.png"].axes] == ["TTFT CDF", "TPOT CDF", "E2E latency CDF"]
    assert figs["timeseries.png"].texts[0].get_text() == "run: per-second time series (3 instances)"


def test_plots_without_matplotlib_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)          # import matplotlib -> ImportError
    assert main(["run", "--cluster", str(FLEET_CLUSTER), "--workload", str(EXAMPLE_WORKLOAD), "--out",
                 str(tmp_path / "o"), "--quiet", "--plots"]) == 2
    assert "plots need matplotlib: pip install 'fleetsim[plots]'" in _one_error_line(capsys)
    assert not (tmp_path / "o").exists()


def test_plots_need_an_out_folder():
    with pytest.raises(InputError, match="--plots needs an out folder"):
        simulate(str(EXAMPLE_CLUSTER), str(EXAMPLE_WORKLOAD), num_requests=5, plots=True)


def test_compare_table_values_and_differences(tmp_path, capsys):
    a = _run(tmp_path / "rr")
    b = _run(tmp_path / "ll", "--router", "round_robin", "--slo", "ttft_p99_ms=1000")
    out = tmp_path / "cmp"
    assert main(["compare", str(a), str(b), "--labels", "rr,ll", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].split() == ["metric", "rr", "ll", "ll", "-", "rr", "ll", "vs", "rr", "%"]
    rows = {r["metric"]: r for r in csv.DictReader((out / "compare.csv").read_text().splitlines())}
    sa, sb = (json.loads((p / "summary.json").read_text()) for p in (a, b))
    ttft = rows["TTFT p99 ms"]
    assert float(ttft["rr"]) == sa["ttft_ms"]["p99"] and float(ttft["ll"]) == sb["ttft_ms"]["p99"]
    assert float(ttft["ll - rr"]) == sb["ttft_ms"]["p99"] - sa["ttft_ms"]["p99"]
    assert float(ttft["ll vs rr %"]) == pytest.approx((sb["ttft_ms"]["p99"] / sa["ttft_ms"]["p99"] - 1) * 100)
    assert rows["SLOs hold"]["rr"] == "" and rows["SLOs hold"]["ll"] == "true" and rows["SLOs hold"]["ll - rr"] == ""
    for name in ("latency_cdf.png", "fleet_timeseries.png", "load_balance.png"):
        assert (out / name).read_bytes().startswith(PNG)


@pytest.mark.parametrize("argv, needle", [
    (["compare", "{a}"], "compare: give at least two run folders"),
    (["compare", "{a}", "{a}", "--labels", "x"], "--labels: 1 names for 2 runs"),
    (["compare", "{a}", "{tmp}"], "not a run folder (no summary.json)"),
    (["report", "{tmp}/nothing"], "no such folder"),
    (["report", "{tmp}"], "not a run, sweep or capacity folder"),
])
def test_cli_errors_are_one_line_exit_2(tmp_path, capsys, argv, needle):
    a = _run(tmp_path / "a")
    assert main([x.format(a=a, tmp=tmp_path) for x in argv]) == 2
    assert needle in _one_error_line(capsys)


def _images(page: str) -> list[bytes]:
    import base64
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def test_run_report_is_self_contained(tmp_path):
    a = _run(tmp_path / "a", "--slo", "ttft_p99_ms=1000,ttft_ms=100")
    assert main(["report", str(a)]) == 0
    page = (a / "report.html").read_text()
    assert not re.search(r'(src|href)="(https?:|//)', page)
    imgs = _images(page)
    assert len(imgs) == 3 and all(i.startswith(PNG) for i in imgs)
    s = json.loads((a / "summary.json").read_text())
    assert f"<td>{s['ttft_ms']['p99']:.4g}</td>" in page
    assert f"<td>{s['slo']['attainment']['ttft_ms']:.4g}</td>" in page


def _sweep(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(json.dumps({
        "cluster": str(FLEET_CLUSTER), "workload": str(EXAMPLE_WORKLOAD), "workload_options": {"num_requests": 40},
        "axes": {"workload.rate_scale": [0.5, 1.0, 2.0], "router.policy": ["round_robin", "least_loaded"],
                 "instances": [2]},
        "metrics": ["ttft_ms.p99", "throughput.requests_per_s", "e2e_ms.p50"]}))
    out = tmp_path / "sw"
    assert main(["sweep", str(spec), "--out", str(out), "--backend", "local", "--quiet", "--plots"]) == 0
    assert main(["report", str(out)]) == 0
    return out


def _numbers(out) -> list[str]:
    rows = list(csv.DictReader((out / "results.csv").read_text().splitlines()))
    assert len(rows) == 6
    return [f"{float(r[m]):.4g}" for r in rows for m in ("ttft_ms.p99", "throughput.requests_per_s", "e2e_ms.p50")]


def test_sweep_report_has_the_table_and_a_figure_per_metric(tmp_path):
    out = _sweep(tmp_path)
    page = (out / "report.html").read_text()
    for number in _numbers(out):
        assert f"<td>{number}</td>" in page
    imgs = _images(page)
    assert len(imgs) == 3
    assert sorted(p.name for p in out.glob("*.png")) == ["plot_00_ttft_ms_p99.png", "plot_01_throughput_requests_per_s.png",
                                                         "plot_02_e2e_ms_p50.png"]
    assert imgs[0] == (out / "plot_00_ttft_ms_p99.png").read_bytes()


def test_capacity_report(tmp_path):
    cap = tmp_path / "cap"
    assert main(["capacity", "--cluster", str(FLEET_CLUSTER), "--instances", "2", "--workload", str(EXAMPLE_WORKLOAD),
                 "--num-requests", "40", "--slo", "ttft_p99_ms=300", "--tolerance", "0.1", "--out", str(cap),
                 "--quiet", "--plots", "--labels", "two"]) == 0
    assert (cap / "capacity_two.png").read_bytes().startswith(PNG)
    assert main(["report", str(cap)]) == 0
    page = (cap / "report.html").read_text()
    (result,) = json.loads((cap / "capacity.json").read_text())
    assert f"<td>{result['scale']:.4g}</td>" in page and _images(page) == [(cap / "capacity_two.png").read_bytes()]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs it)")
def test_sweep_report_opens_in_headless_chromium(tmp_path):
    out = _sweep(tmp_path)
    dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                          (out / "report.html").resolve().as_uri()], capture_output=True, text=True, timeout=120,
                         check=True).stdout
    assert "<tbody>" in dom                              # parsed and rebuilt by the browser, not echoed
    text = html.unescape(re.sub(r"<[^>]+>", " ", dom.split("<body>", 1)[1]))
    words = set(text.split())
    for number in _numbers(out):
        assert number in words
