"""`fleetsim run` / `validate` end to end: input errors, determinism, validation against real vLLM."""
from __future__ import annotations

import itertools
import json

import pytest

from fleetsim.cluster.cli import main
from fleetsim.cluster.validate import compare, load_real, load_sim
from conftest import CLUSTER_JSON, PERF_ROOT, REAL_RUN, WORKLOAD_300

DENSE_OPS = ("embedding", "layernorm", "qkv_proj", "rotary_emb", "o_proj", "gate_up_proj", "act_fn",
             "down_proj", "final_layernorm")


def _write_bundle(root, hardware, model):
    """A tiny synthetic profile bundle (linear in tokens), so these tests need no shared data."""
    d = root / hardware / model / "bf16" / "tp1"
    d.mkdir(parents=True)
    dense = ["layer,tokens,time_us"] + [f"{op},{t},{1 + t / 1000:.3f}" for op in DENSE_OPS for t in (1, 8192)]
    (d / "dense.csv").write_text("\n".join(dense) + "\n")
    seq = ["layer,sequences,time_us"] + [f"{op},{s},{5 + s / 10:.3f}" for op in ("lm_head", "sampler") for s in (1, 256)]
    (d / "per_sequence.csv").write_text("\n".join(seq) + "\n")
    att = ["prefill_chunk,kv_prefill,n_decode,kv_decode,time_us"]
    for pc, kp, nd, kvd in itertools.product((0, 2048), (0, 8192), (0, 128), (0, 8192)):
        att.append(f"{pc},{kp},{nd},{kvd},{2 + pc / 100 + kp / 1000 + nd / 10 + nd * kvd / 1e5:.3f}")
    (d / "attention.csv").write_text("\n".join(att) + "\n")


@pytest.fixture
def tiny(tmp_path):
    """(perf_root, cluster yaml, workload) for a small synthetic setup on RTXPRO6000."""
    perf = tmp_path / "perf"
    for model in ("meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.1-70B"):
        _write_bundle(perf, "RTXPRO6000", model)
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text("model: meta-llama/Llama-3.1-8B\nhardware: RTXPRO6000\n"
                       "engine: {max_num_seqs: 8, max_num_batched_tokens: 256}\n")
    work = tmp_path / "w.jsonl"
    work.write_text("".join(json.dumps({"input_toks": 50 + 37 * i % 300, "output_toks": 1 + 13 * i % 40,
                                        "arrival_time_ns": 20_000_000 * i}) + "\n" for i in range(30)))
    return perf, cluster, work


def _run(cluster, work, out, perf, *extra):
    return main(["run", "--cluster", str(cluster), "--workload", str(work), "--out", str(out),
                 "--perf-root", str(perf), "--quiet", *extra])


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("fleetsim: error: ")
    return lines[0]


def _no_outputs(out):
    """A failed run leaves no requests.csv / summary.json (nor half-written .partial files)."""
    if out.exists():
        names = [p.name for p in out.iterdir()]
        assert "requests.csv" not in names and "summary.json" not in names, names
        assert not [n for n in names if n.endswith(".partial")], names


def test_tiny_run_succeeds(tiny, tmp_path, capsys):
    perf, cluster, work = tiny
    out = tmp_path / "out"
    assert _run(cluster, work, out, perf) == 0
    assert capsys.readouterr().err == ""
    lines = (out / "requests.csv").read_text().splitlines()
    assert lines[0].startswith("instance id,request id,model,input,output,arrival,end_time,latency,"
                               "queuing_delay,TTFT,TPOT,ITL")
    assert len(lines) == 31
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_requests"] == 30
    assert not [p.name for p in out.iterdir() if p.name.endswith(".partial")]


def test_error_missing_workload(tiny, tmp_path, capsys):
    perf, cluster, _ = tiny
    missing = tmp_path / "nope.jsonl"
    out = tmp_path / "out"
    assert _run(cluster, missing, out, perf) == 2
    line = _one_error_line(capsys)
    assert str(missing) in line
    _no_outputs(out)


def test_error_attention_table_without_rows(tiny, tmp_path, capsys):
    perf, cluster, work = tiny
    att = perf / "RTXPRO6000" / "meta-llama/Llama-3.1-8B" / "bf16" / "tp1" / "attention.csv"
    att.write_text("prefill_chunk,kv_prefill,n_decode,kv_decode,time_us\n")
    out = tmp_path / "out"
    assert _run(cluster, work, out, perf) == 2
    assert _one_error_line(capsys).endswith(f"{att}: no rows (attention is priced from them)")
    _no_outputs(out)


def test_error_malformed_json_line(tiny, tmp_path, capsys):
    perf, cluster, _ = tiny
    work = tmp_path / "bad.jsonl"
    work.write_text('{"input_toks": 5, "output_toks": 2, "arrival_time_ns": 0}\n\n'
                    '{"input_toks": 5, "output_toks": 2, "arrival_time_ns": 1}\n{"input_toks": 5,\n')
    out = tmp_path / "out"
    assert _run(cluster, work, out, perf) == 2
    line = _one_error_line(capsys)
    assert f"{work}:4:" in line and "malformed JSON" in line
    _no_outputs(out)


def test_error_negative_output_toks(tiny, tmp_path, capsys):
    perf, cluster, _ = tiny
    work = tmp_path / "neg.jsonl"
    work.write_text('{"input_toks": 5, "output_toks": 2, "arrival_time_ns": 0}\n'
                    '{"input_toks": 5, "output_toks": -3, "arrival_time_ns": 0}\n')
    out = tmp_path / "out"
    assert _run(cluster, work, out, perf) == 2
    line = _one_error_line(capsys)
    assert f"{work}:2" in line and "output_toks" in line and "-3" in line
    _no_outputs(out)


@pytest.mark.parametrize("yaml_text, needle", [
    ("model: nobody/NoSuchModel-1B\nhardware: RTXPRO6000\n", "nobody/NoSuchModel-1B"),
    ("model: meta-llama/Llama-3.1-8B\nhardware: NoSuchGPU-9000\n", "NoSuchGPU-9000"),
])
def test_error_unknown_model_or_hardware(tiny, tmp_path, capsys, yaml_text, needle):
    perf, _, work = tiny
    cluster = tmp_path / "c.yaml"
    cluster.write_text(yaml_text)
    out = tmp_path / "out"
    assert _run(cluster, work, out, perf) == 2
    assert needle in _one_error_line(capsys)
    _no_outputs(out)


def test_error_model_does_not_fit(tiny, tmp_path, capsys):
    perf, _, work = tiny
    cluster = tmp_path / "big.yaml"
    cluster.write_text("model: meta-llama/Llama-3.1-70B\nhardware: RTXPRO6000\nmemory_gib: 16\n")
    out = tmp_path / "out"
    assert _run(cluster, work, out, perf) == 2
    line = _one_error_line(capsys)
    assert "Llama-3.1-70B" in line and "does not fit" in line and "RTXPRO6000" in line
    _no_outputs(out)


def test_error_bad_engine_value(tiny, tmp_path, capsys):
    perf, cluster, work = tiny
    out = tmp_path / "out"
    assert _run(cluster, work, out, perf, "--max-num-seqs", "0") == 2
    assert "max_num_seqs" in _one_error_line(capsys)
    _no_outputs(out)


def test_error_bad_engine_value_in_yaml(tiny, tmp_path, capsys):
    perf, _, work = tiny
    cluster = tmp_path / "c.yaml"
    cluster.write_text("model: meta-llama/Llama-3.1-8B\nhardware: RTXPRO6000\nengine: {max_num_batched_tokens: -1}\n")
    out = tmp_path / "out"
    assert _run(cluster, work, out, perf) == 2
    line = _one_error_line(capsys)
    assert str(cluster) in line and "max_num_batched_tokens" in line
    _no_outputs(out)


BASE_YAML = "model: meta-llama/Llama-3.1-8B\nhardware: RTXPRO6000\n"


@pytest.mark.parametrize("extra, needle", [
    ("overhead: {step_us: abc}", "overhead.step_us"),
    ("overhead: {step_us: -100000}", "overhead.step_us"),
    ("overhead: {per_seq_us: .nan}", "overhead.per_seq_us"),
    ("engine: {gpu_memory_utilization: abc}", "gpu_memory_utilization"),
    ("engine: {enable_chunked_prefill: 'no'}", "enable_chunked_prefill"),
    ("engine: {num_gpu_blocks: true}", "num_gpu_blocks"),
    ("decode_skew: 'yes'", "decode_skew"),
    ("cost_model: 5", "cost_model"),
    ("perf_root: 5", "perf_root"),
    ("router: {sync_interval_ms: .inf}", "sync_interval_ms"),
    ("router: {policy: session_affinity, options: {virtual_nodes: 0}}", "virtual_nodes"),
    ("router: {policy: prefix_aware, options: {load_cap: abc}}", "load_cap"),
    ("router: {policy: weighted, options: {weights: {queue: abc}}}", "weights.queue"),
    ("router: {policy: round_robin, options: {load_cap: 3}}", "load_cap"),
])
def test_error_bad_config_value_is_one_line(tiny, tmp_path, capsys, extra, needle):
    perf, _, work = tiny
    cluster = tmp_path / "c.yaml"
    cluster.write_text(BASE_YAML + extra + "\n")
    out = tmp_path / "out"
    assert _run(cluster, work, out, perf) == 2
    assert needle in _one_error_line(capsys)
    _no_outputs(out)


@pytest.mark.parametrize("flag, value", [("--sync-interval-ms", "nan"), ("--sync-interval-ms", "inf")])
def test_error_non_finite_flag(tiny, tmp_path, capsys, flag, value):
    perf, cluster, work = tiny
    out = tmp_path / "out"
    assert _run(cluster, work, out, perf, flag, value) == 2
    assert flag in _one_error_line(capsys)
    _no_outputs(out)


def test_error_non_finite_trace_values(tiny, tmp_path, capsys):
    perf, cluster, _ = tiny
    trace = tmp_path / "mooncake.jsonl"
    trace.write_text('{"timestamp": 0, "input_length": 10, "output_length": 2, "hash_ids": [1]}\n')
    out = tmp_path / "out"
    assert _run(cluster, trace, out, perf, "--time-scale", "nan") == 2
    assert "--time-scale" in _one_error_line(capsys)
    trace.write_text('{"timestamp": Infinity, "input_length": 10, "output_length": 2, "hash_ids": [1]}\n')
    assert _run(cluster, trace, out, perf) == 2
    assert f"{trace}:1" in _one_error_line(capsys)
    _no_outputs(out)


@pytest.mark.parametrize("which", ["workload", "cluster"])
def test_error_file_not_utf8(tiny, tmp_path, capsys, which):
    perf, cluster, work = tiny
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b'{"input_toks": 5, "output_toks": 2, "arrival_time_ns": 0}\n\xff\xfe\n')
    if which == "workload":
        work = bad
    else:
        cluster = bad
    out = tmp_path / "out"
    assert _run(cluster, work, out, perf) == 2
    line = _one_error_line(capsys)
    assert str(bad) in line and "UTF-8" in line
    _no_outputs(out)


def test_error_request_longer_than_model(tiny, tmp_path, capsys):
    perf, cluster, _ = tiny
    work = tmp_path / "long.jsonl"
    work.write_text('{"input_toks": 200000, "output_toks": 2, "arrival_time_ns": 0}\n')
    out = tmp_path / "out"
    assert _run(cluster, work, out, perf) == 2
    assert str(work) in _one_error_line(capsys)
    _no_outputs(out)


def _same_outputs(a, b):
    """Every output file byte-identical (summary.json has no wall-clock field)."""
    names = sorted(p.name for p in a.iterdir())
    assert {"requests.csv", "summary.json", "timeseries.csv"} <= set(names)
    assert names == sorted(p.name for p in b.iterdir())
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_deterministic_tiny(tiny, tmp_path):
    perf, cluster, work = tiny
    a, b = tmp_path / "a", tmp_path / "b"
    assert _run(cluster, work, a, perf) == 0
    assert _run(cluster, work, b, perf) == 0
    _same_outputs(a, b)


def _shared_args(out, n=None):
    args = ["run", "--cluster", str(CLUSTER_JSON), "--workload", str(WORKLOAD_300), "--out", str(out),
            "--perf-root", str(PERF_ROOT), "--max-num-seqs", "128", "--max-num-batched-tokens", "2048", "--quiet"]
    return args + (["--num-requests", str(n)] if n else [])


def test_deterministic_shared(shared_data, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(_shared_args(a, 60)) == 0
    assert main(_shared_args(b, 60)) == 0
    assert len((a / "requests.csv").read_bytes().splitlines()) == 61
    _same_outputs(a, b)


def test_validation_300_requests_against_real_vllm(shared_data, tmp_path, capsys):
    out = tmp_path / "sim"
    assert main(_shared_args(out)) == 0
    sim = load_sim(str(out))
    assert len(sim["TTFT"]) == 300
    res = compare(load_real(str(REAL_RUN)), sim)
    assert abs(res["TPOT"]["Mean"]["diff_pct"]) <= 1.5
    assert abs(res["Latency"]["Mean"]["diff_pct"]) <= 2.5
    assert abs(res["TTFT"]["Mean"]["diff_pct"]) <= 5
    for m in ("TTFT", "TPOT", "Latency"):
        for k in ("P90", "P99"):
            assert abs(res[m][k]["diff_pct"]) <= 5, (m, k, res[m][k])
    capsys.readouterr()
    assert main(["validate", "--real", str(REAL_RUN), "--sim", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["TPOT"]["Mean"]["diff_pct"] == pytest.approx(res["TPOT"]["Mean"]["diff_pct"])


@pytest.mark.parametrize("flag", ["--actors", "--instances-per-actor"])
def test_error_zero_actors_before_ray_starts(tiny, tmp_path, capsys, flag):
    perf, cluster, work = tiny
    out = tmp_path / "out"
    assert _run(cluster, work, out, perf, "--backend", "ray", flag, "0") == 2
    assert f"{flag} must be >= 1" in _one_error_line(capsys)
    _no_outputs(out)


def test_run_format_flag_bad_value_is_one_line(tiny, tmp_path, capsys):
    perf, cluster, work = tiny
    assert _run(cluster, work, tmp_path / "o", perf, "--format", "parquet") == 2
    assert "--format 'parquet': unknown" in _one_error_line(capsys)
