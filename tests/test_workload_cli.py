"""`fleetsim workload stats|convert|synth` and synthetic specs: stats agree with an independent
pandas/numpy computation on the real traces; conversion round-trips; synthetic workloads are
seeded, byte-stable and follow their spec; errors are one line, exit 2."""
import json
from pathlib import Path

import numpy as np
import pytest

from fleet_helpers import EXAMPLE_CLUSTER, EXAMPLE_WORKLOAD, outputs, run_cli, write_session_workload
from fleetsim.cluster.cli import main
from fleetsim.cluster.workloads import load_workload

TRACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "traces"


def stats_json(capsys, *args):
    assert main(["workload", "stats", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def independent_stats(arrival_s: np.ndarray, prompt: np.ndarray, output: np.ndarray) -> dict:
    a = np.sort(arrival_s)
    gaps = np.diff(a)
    return {"requests": len(a), "duration_s": a[-1] - a[0], "mean_rate_per_s": len(gaps) / (a[-1] - a[0]),
            "interarrival_cv": gaps.std() / gaps.mean(),
            "prompt": [prompt.mean(), prompt.min(), *np.percentile(prompt, [50, 90, 99]), prompt.max()],
            "output": [output.mean(), output.min(), *np.percentile(output, [50, 90, 99]), output.max()]}


def check_against(s: dict, ref: dict) -> None:
    assert s["requests"] == ref["requests"]
    for key in ("duration_s", "mean_rate_per_s", "interarrival_cv"):
        assert s[key] == pytest.approx(ref[key], rel=1e-9), key
    for key in ("prompt", "output"):
        d = s[f"{key}_tokens"]
        assert [d[k] for k in ("mean", "min", "p50", "p90", "p99", "max")] == pytest.approx(ref[key], rel=1e-12)


@pytest.mark.skipif(not TRACES.is_dir(), reason="shared traces not present")
def test_stats_on_the_azure_trace_agree_with_pandas(capsys):
    pd = pytest.importorskip("pandas")
    path = TRACES / "azure-llm-2023" / "AzureLLMInferenceTrace_conv.csv"
    df = pd.read_csv(path)
    t = pd.to_datetime(df.TIMESTAMP)
    ref = independent_stats(((t - t.min()).dt.total_seconds()).to_numpy(), df.ContextTokens.to_numpy(),
                            df.GeneratedTokens.clip(lower=1).to_numpy())
    s = stats_json(capsys, str(path))
    check_against(s, ref)
    assert s["sessions"] == 0 and s["prefix_sharing"] == 0.0       # no token or hash ids


@pytest.mark.skipif(not TRACES.is_dir(), reason="shared traces not present")
def test_stats_on_the_mooncake_trace_agree_with_pandas(capsys):
    pd = pytest.importorskip("pandas")
    path = TRACES / "mooncake-fast25" / "conversation_trace.jsonl"
    df = pd.read_json(path, lines=True)
    ref = independent_stats(df.timestamp.to_numpy() / 1e3, df.input_length.to_numpy(), df.output_length.to_numpy())
    s = stats_json(capsys, str(path), "--block-size", "512")
    check_against(s, ref)
    # prefix sharing at 512 tokens: block i of a request is its hash ids 0..i; shared if an
    # earlier request (in arrival order) had the same full-block prefix
    seen, shared, total = set(), 0, 0
    for ids, n in zip(df.sort_values("timestamp", kind="stable").hash_ids, df.sort_values(
            "timestamp", kind="stable").input_length):
        prefixes = [tuple(ids[:i + 1]) for i in range(n // 512)]
        total += len(prefixes)
        shared += sum(p in seen for p in prefixes)
        seen.update(prefixes)
    assert s["prefix_sharing"] == pytest.approx(shared / total, rel=1e-12) and 0.3 < s["prefix_sharing"] < 0.5


def test_stats_table_and_sessions(tmp_path, capsys):
    wl = write_session_workload(tmp_path / "s.jsonl")
    assert main(["workload", "stats", str(wl)]) == 0
    table = capsys.readouterr().out
    assert "sessions" in table and "prefix sharing (16-token blocks)" in table
    s = stats_json(capsys, str(wl))
    assert (s["requests"], s["sessions"]) == (40 + 36, 12)
    # by hand: turns have 112, 190, 268 prompt tokens = 7, 11, 16 blocks; turn k+1 re-reads turn k's
    # prompt blocks (its outputs carry no ids): 0 + 7 + 11 shared; flat requests have no ids
    flat = sum((200 + 37 * i % 300) // 16 for i in range(40))
    assert s["prefix_sharing"] == pytest.approx(12 * 18 / (12 * 34 + flat), rel=1e-12)


def test_convert_round_trips_and_runs_identically(tmp_path, capsys):
    out = tmp_path / "w.jsonl"
    assert main(["workload", "convert", str(EXAMPLE_WORKLOAD), "--to", "jsonl", str(out)]) == 0
    assert "wrote 300 requests" in capsys.readouterr().out
    args = ("--num-requests", "80")
    assert outputs(run_cli(tmp_path / "a", *args, cluster=EXAMPLE_CLUSTER)) == \
        outputs(run_cli(tmp_path / "b", *args, cluster=EXAMPLE_CLUSTER, workload=out))
    sessions = write_session_workload(tmp_path / "s.jsonl")
    conv = tmp_path / "s2.jsonl"
    assert main(["workload", "convert", str(sessions), "--to", "jsonl", str(conv)]) == 0

    def shape(wl):
        out = []
        for r in wl:
            while r is not None:
                out.append((r.arrival_ns, r.prompt_len, r.output_len, r.token_ids, r.think_ns, r.session))
                r = r.followup
        return sorted(out, key=repr)
    assert shape(load_workload(str(conv))) == shape(load_workload(str(sessions)))


def test_convert_keeps_mooncake_hash_ids_and_windows(tmp_path):
    src = tmp_path / "m.jsonl"
    src.write_text("".join(json.dumps({"timestamp": 1000 * i, "input_length": 600 + i, "output_length": 3,
                                       "hash_ids": [7, 8 + i % 2]}) + "\n" for i in range(10)))
    out = tmp_path / "o.jsonl"
    assert main(["workload", "convert", str(src), "--to", "jsonl", str(out), "--start", "2", "--duration", "5",
                 "--time-scale", "0.5"]) == 0
    got = [(r.arrival_ns, r.prompt_len, r.hash_ids, r.hash_block) for r in load_workload(str(out))]
    assert got == [(500_000_000 * k, 602 + k, [7, 8 + k % 2], 512) for k in range(5)]


def test_synth_is_seeded_and_byte_stable(tmp_path, capsys):
    spec = "n=300,rate=20,arrival=gamma,cv=2,prompt=lognormal(400,200),output=zipf(1.2,500),seed=4"
    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    assert main(["workload", "synth", spec, "--out", str(a)]) == 0
    assert main(["workload", "synth", "synth:" + spec, "--out", str(b)]) == 0
    assert main(["workload", "synth", spec.replace("seed=4", "seed=5"), "--out", str(c)]) == 0
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    y = tmp_path / "w.YAML"
    y.write_text("n: 300\nrate: 20\narrival: gamma\ncv: 2\nprompt: lognormal(400,200)\noutput: zipf(1.2,500)\nseed: 4\n")
    assert main(["workload", "synth", str(y), "--out", str(c)]) == 0
    assert c.read_bytes() == a.read_bytes()
    # changing the output distribution leaves the arrivals and prompts alone (own generators)
    d = tmp_path / "d.jsonl"
    assert main(["workload", "synth", spec.replace("zipf(1.2,500)", "64"), "--out", str(d)]) == 0
    first = [json.loads(x) for x in a.read_text().splitlines()]
    other = [json.loads(x) for x in d.read_text().splitlines()]
    assert [(x["arrival_time_ns"], x["input_toks"]) for x in first] == \
        [(x["arrival_time_ns"], x["input_toks"]) for x in other]


@pytest.mark.parametrize("spec, check", [
    ("n=20000,rate=50", lambda a, p, o: abs(np.diff(a).mean() / 1e9 - 0.02) < 0.001
     and abs(np.diff(a).std() / np.diff(a).mean() - 1) < 0.03),
    ("n=20000,rate=50,arrival=gamma,cv=3", lambda a, p, o: abs(np.diff(a).std() / np.diff(a).mean() - 3) < 0.2),
    ("n=100,rate=4,arrival=constant", lambda a, p, o: (np.diff(a) == 250_000_000).all() and a[0] == 250_000_000),
    ("n=20000,rate=9,prompt=uniform(10,20),output=7", lambda a, p, o: p.min() == 10 and p.max() == 20
     and (o == 7).all()),
    ("n=20000,rate=9,prompt=normal(500,100)", lambda a, p, o: abs(p.mean() - 500) < 3 and abs(p.std() - 100) < 3),
    ("n=20000,rate=9,prompt=lognormal(500,300)", lambda a, p, o: abs(p.mean() - 500) < 8
     and abs(p.std() - 300) < 15),
    ("n=20000,rate=9,output=zipf(1.5,100)", lambda a, p, o: o.max() <= 100 and abs((o == 1).mean()
     - 1 / sum(k ** -1.5 for k in range(1, 101))) < 0.01),
])
def test_synth_distributions_follow_the_spec(spec, check):
    wl = load_workload("synth:" + spec)
    p, o = wl.all_lengths()
    assert check(wl.arrival, p, o)


def test_synth_empirical_prefix_groups_and_sessions(tmp_path):
    emp = load_workload(f"synth:n=5000,rate=9,prompt=empirical({EXAMPLE_WORKLOAD}),output=empirical({EXAMPLE_WORKLOAD})")
    src_p, src_o = load_workload(str(EXAMPLE_WORKLOAD)).all_lengths()
    p, o = emp.all_lengths()
    assert set(p.tolist()) <= set(src_p.tolist()) and abs(p.mean() - src_p.mean()) < 0.05 * src_p.mean()
    assert set(o.tolist()) <= set(src_o.tolist())
    groups = load_workload("synth:n=20000,rate=9,prompt=64,output=8,prefix_groups=5,prefix_tokens=256,"
                           "prefix_zipf=1.5")
    share = np.bincount([r.hash_ids[0] for r in groups], minlength=5) / 20000
    zipf = np.arange(1, 6) ** -1.5
    assert np.abs(share - zipf / zipf.sum()).max() < 0.01          # group g+1 drawn with P ∝ (g+1)^-1.5
    assert all(r.prompt_len == 256 + 64 and r.hash_block == 256 for r in groups)
    out = run_cli(tmp_path / "g", cluster=EXAMPLE_CLUSTER, workload="synth:n=60,rate=30,prompt=64,output=8,"
                  "prefix_groups=3,prefix_tokens=512")
    assert json.loads((out / "summary.json").read_text())["prefix_hit_rate"] > 0.5
    ses = load_workload("synth:n=10,rate=2,turns=3,prompt=50,output=20,think=fixed(1.5)")
    assert len(ses) == 30 and ses.sessions == 10
    t0 = next(iter(ses))
    t1 = t0.followup
    assert t1.prompt_len == 50 + 20 + 50 and t1.token_ids[:70] == t0.token_ids and t0.think_ns == 1_500_000_000
    run = run_cli(tmp_path / "s", cluster=EXAMPLE_CLUSTER, workload="synth:n=10,rate=2,turns=3,prompt=50,"
                  "output=20,think=fixed(1.5)")
    import csv
    rows = {int(r["request id"]): r for r in csv.DictReader(open(run / "requests.csv", newline=""))}
    assert len(rows) == 30
    for rid in range(0, 30, 3):          # each later turn arrives at least 1.5 s after the previous ends
        for k in (1, 2):
            assert int(rows[rid + k]["arrival"]) >= int(rows[rid + k - 1]["end_time"]) + 1_500_000_000


@pytest.mark.parametrize("argv, message", [
    (["workload", "synth", "n=10", "--out", "X"], "'rate' is required"),
    (["workload", "synth", "n=10,rate=2,colour=red", "--out", "X"], "unknown key(s) colour"),
    (["workload", "synth", "n=10,rate=2,prompt=poisson(3)", "--out", "X"], "unknown distribution 'poisson'"),
    (["workload", "synth", "n=10,rate=2,prompt=uniform(9,3)", "--out", "X"], "bad bounds in uniform"),
    (["workload", "synth", "n=10,rate=2,prompt=normal(3)", "--out", "X"], "normal() takes 2"),
    (["workload", "synth", "n=0,rate=2", "--out", "X"], "n must be an integer >= 1"),
    (["workload", "synth", "n=5,rate=2,arrival=burst", "--out", "X"], "arrival 'burst'"),
    (["workload", "synth", "n=5,rate=2,prefix_groups=3", "--out", "X"], "prefix_groups needs prefix_tokens"),
    (["workload", "convert", "IN", "--to", "csv", "X"], "--to 'csv': unknown"),
    (["workload", "stats", "IN", "--block-size", "0"], "--block-size must be >= 1"),
    (["workload", "stats", "IN", "--format", "parquet"], "--format 'parquet': unknown"),
    (["workload", "stats", "IN", "--columns", "arrival=a,input=b,output=c", "--format", "vidur"],
     "--columns applies to --format csv"),
    (["workload", "stats", "BAD"], "unrecognised workload format"),
    (["workload", "stats", "missing.jsonl"], "cannot read workload"),
    (["workload", "stats", "bad.yaml"], "malformed YAML"),
])
def test_workload_cli_errors_are_one_line(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "IN").write_text('{"input_toks": 3, "output_toks": 2, "arrival_time_ns": 0}\n')
    (tmp_path / "BAD").write_text("hello,world\n")
    (tmp_path / "bad.yaml").write_text("n: [1\n")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "X").exists() and not (tmp_path / "X.partial").exists()
