"""Every bad input of issue 12 (item 3) is one stderr line naming the file or flag and the field,
exit code 2, no traceback, and no output folder left to look like a result.

One test per listed case (the `CASES` table and the validate tests below), so that the issue's
closing note can count them; the fuzz suites (test_fuzz_inputs.py) cover the space around them.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time

import pytest

from fleetsim.cluster.cli import main
from fleetsim.cluster.memory_limit import BLOCK_BYTES, ENGINE_BYTES, GIB, REQUEST_BYTES, available_bytes
from fleetsim.costmodel import CostModelError
from fleetsim.costmodel.arch import ModelArch
from fleet_helpers import REPO

LLAMA = "model: meta-llama/Llama-3.1-8B\nhardware: RTXPRO6000\nengine: {max_num_seqs: 16, max_num_batched_tokens: 512}\n"
LLAMA_ROOFLINE = "model: meta-llama/Llama-3.1-8B\nhardware: H100-SXM-80GB\ncost_model: roofline\n"
MOE = "model: Qwen/Qwen3-30B-A3B\nhardware: H100-SXM-80GB\ncost_model: roofline\n"


def _bomb(key: str) -> str:
    """A 'billion laughs' value for `key`: 9 levels of 9 aliases each (9^9 leaves), ~450 bytes."""
    levels = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    levels += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    return f"{key}: {{{', '.join(levels)}}}\n"


def _lss(**changes) -> str:
    """An LLMServingSim cluster JSON (one RTX PRO 6000 instance) with `changes` applied:
    top-level keys, or `node_<key>` / `inst_<key>` for the first node / instance."""
    inst = {"model_name": "meta-llama/Llama-3.1-8B", "hardware": "RTXPRO6000", "num_npus": 1, "tp_size": 1,
            "npu_mem": {"mem_size": 96, "mem_bw": 1597, "mem_latency": 0, "mem_util": 0.9}, "pd_type": None}
    node = {"num_instances": 1, "cpu_mem": {"mem_size": 512, "mem_bw": 256, "mem_latency": 0}, "instances": [inst]}
    doc = {"num_nodes": 1, "link_bw": 16, "link_latency": 20000, "nodes": [node]}
    for key, value in changes.items():
        target, key = (node, key[5:]) if key.startswith("node_") else (inst, key[5:]) if key.startswith("inst_") \
            else (doc, key)
        target[key] = value
    return json.dumps(doc)


def _jsonl(*docs) -> str:
    return "".join(json.dumps(d) + "\n" for d in docs)


FLAT = _jsonl(*({"input_toks": 30 + i, "output_toks": 5, "arrival_time_ns": 1000 * i} for i in range(3)))
MOONCAKE = _jsonl({"timestamp": 0, "input_length": 30, "output_length": 5, "hash_ids": [1]},
                  {"timestamp": 10, "input_length": 600, "output_length": 5, "hash_ids": [1, 2]})

# id: (cluster file text, workload text, extra flags, substrings the error line must hold)
CASES = {
    "alias-bomb-tp": (LLAMA + _bomb("tp"), FLAT, [], ["{cluster}: ", "alias"]),
    "alias-bomb-memory_gib": (LLAMA + _bomb("memory_gib"), FLAT, [], ["{cluster}: ", "alias"]),
    "deep-nesting": (LLAMA + "tp: " + "[" * 5000 + "]" * 5000 + "\n", FLAT, [], ["{cluster}: ", "nested too deeply"]),
    "deep-nesting-workload": (LLAMA, '{"input_toks": ' + "[" * 100000 + "\n", [], ["{workload}:1: ", "nested"]),
    "instances-1e8": (LLAMA + "instances: 100000000\n", FLAT, [], ["{cluster}: instances: ", "at most 1,000,000"]),
    "instances-count-1e8": (LLAMA + "instances: [{count: 100000000}]\n", FLAT, [],
                            ["{cluster}: instances[0]: count: ", "at most"]),
    "memory_gib-1e7": (LLAMA + "memory_gib: 1.0e+7\n", FLAT, [], ["{cluster}: the run needs about ", "KV blocks"]),
    "num_gpu_blocks-1e12": (LLAMA.replace("max_num_seqs: 16", "max_num_seqs: 16, num_gpu_blocks: 1000000000000"),
                            FLAT, [], ["{cluster}: the run needs about ", "1,000,000,000,000 KV blocks"]),
    "--num-gpu-blocks-1e12": (LLAMA, FLAT, ["--num-gpu-blocks", "1000000000000"],
                              ["the run needs about ", "--num-gpu-blocks 1000000000000"]),
    "--instances-1e7": (LLAMA, FLAT, ["--instances", "10000000"], ["--instances: 10,000,000 instances; at most"]),
    "arrival_time_ns-2^63": (LLAMA, _jsonl({"input_toks": 30, "output_toks": 5, "arrival_time_ns": 2 ** 63}), [],
                             ["{workload}:1: field 'arrival_time_ns' must be at most 10^17 ns"]),
    "tool_duration_ns-2^63": (LLAMA, _jsonl({"arrival_time_ns": 0, "sub_requests": [
        {"input_toks": 30, "output_toks": 5, "tool_duration_ns": 2 ** 63}, {"input_toks": 40, "output_toks": 5}]}), [],
        ["{workload}:1: sub_requests[0]: field 'tool_duration_ns' with the session's arrival",
         "must be at most 10^17 ns"]),
    "session-past-the-time-bound": (LLAMA, _jsonl({"arrival_time_ns": 6 * 10 ** 16, "sub_requests": [
        {"input_toks": 30, "output_toks": 5, "tool_duration_ns": 3 * 10 ** 16},
        {"input_toks": 40, "output_toks": 5, "tool_duration_ns": 2 * 10 ** 16}, {"input_toks": 50, "output_toks": 5}]}),
        [], ["{workload}:1: sub_requests[1]: field 'tool_duration_ns' with the session's arrival"]),
    "overhead-step_us-1e30": (LLAMA + "overhead: {step_us: 1.0e+30}\n", FLAT, [],
                              ["{cluster}: overhead.step_us must be a number >= 0 and at most 1e+06 µs"]),
    "mooncake-timestamp-1e300": (LLAMA, _jsonl({"timestamp": 1e300, "input_length": 30, "output_length": 5,
                                                "hash_ids": [1]}), [], ["{workload}:1: field 'timestamp'"]),
    "--time-scale-1e300": (LLAMA, MOONCAKE, ["--time-scale", "1e300"], ["--time-scale 1e+300: ", "time bound"]),
    "tp-3-for-32-heads": (LLAMA_ROOFLINE + "tp: 3\n", FLAT, [], ["{cluster}: tp 3 must divide the 32 attention heads"]),
    "tp-64-for-32-heads": (LLAMA_ROOFLINE + "tp: 64\n", FLAT, [], ["{cluster}: tp 64 must divide the 32"]),
    "tp-3-profile-backend": (LLAMA + "tp: 3\n", FLAT, [], ["{cluster}: tp 3 must divide the 32 attention heads"]),
    "ep-3-for-128-experts": (MOE + "ep: 3\n", FLAT, [], ["{cluster}: ep=3 must divide the 128 experts"]),
    "ep-1000-for-128-experts": (MOE + "ep: 1000\n", FLAT, [], ["{cluster}: ep=1000 must divide the 128 experts"]),
    "ep-2-dense-model": (LLAMA_ROOFLINE + "ep: 2\n", FLAT, [], ["{cluster}: ep=2: model meta-llama/Llama-3.1-8B has no experts"]),
    "moe_skew-dense-model": (LLAMA_ROOFLINE + "moe_skew: 1.0\n", FLAT, [], ["{cluster}: moe_skew 1.0: ", "dense"]),
    "pp-above-layers": (LLAMA_ROOFLINE + "pp: 33\n", FLAT, [], ["{cluster}: pp 33 exceeds the 32 layers"]),
    "block_size-7": (LLAMA.replace("max_num_seqs: 16", "max_num_seqs: 16, block_size: 7"), FLAT, [],
                     ["{cluster}: engine: block_size must be one of vLLM's", "got 7"]),
    "--block-size-7": (LLAMA, FLAT, ["--block-size", "7"], ["--block-size: block_size must be one of vLLM's"]),
    "lss-num_instances": (_lss(node_num_instances=2), FLAT, [],
                          ["{cluster}: nodes[0]: num_instances is 2 but 'instances' lists 1"]),
    "lss-num_nodes": (_lss(num_nodes=3), FLAT, [], ["{cluster}: num_nodes is 3 but 'nodes' lists 1"]),
    "lss-tp_size-0": (_lss(inst_tp_size=0), FLAT, [], ["{cluster}: nodes[0].instances[0]: field 'tp_size'"]),
    "lss-tp_size-false": (_lss(inst_tp_size=False), FLAT, [], ["{cluster}: nodes[0].instances[0]: field 'tp_size'",
                                                              "got False"]),
    "lss-unknown-top-key": (_lss(zzz=1), FLAT, [], ["{cluster}: top level: unknown key(s) zzz"]),
    "lss-unknown-instance-key": (_lss(inst_zzz=1), FLAT, [], ["{cluster}: nodes[0].instances[0]: unknown key(s) zzz"]),
    "mooncake-hash_ids-count": (LLAMA, _jsonl({"timestamp": 0, "input_length": 30, "output_length": 5,
                                               "hash_ids": [1, 2, 3]}), [],
                                ["{workload}:1: field 'hash_ids' has 3 ids but input_length 30 makes 1"]),
    "--perf-root-missing": (LLAMA, FLAT, ["--perf-root", "/no/such/perf"], ["--perf-root '/no/such/perf': "]),
    "--models-root-a-file": (LLAMA, FLAT, ["--models-root", "{workload}"], ["--models-root '{workload}': "]),
    "--router-empty": (LLAMA, FLAT, ["--router", ""], ["--router '': unknown"]),
    "--memory-limit-0": (LLAMA, FLAT, ["--memory-limit", "0"], ["--memory-limit must be a positive number"]),
    "json-integer-5000-digits": (LLAMA, '{"input_toks": ' + "1" * 5000 + "}\n", [], ["{workload}:1: malformed JSON"]),
    "yaml-integer-5000-digits": (LLAMA + "seed: " + "1" * 5000 + "\n", FLAT, [], ["{cluster}: malformed YAML"]),
}


def _fails(capsys, tmp_path, cluster_text: str, workload_text: str, flags: list[str]) -> tuple[str, dict]:
    """The one stderr line (prefix dropped) of a `fleetsim run` that must fail with exit 2 and
    leave no output folder, and the paths used (for the expected substrings)."""
    cluster, workload, out = tmp_path / "cluster.yaml", tmp_path / "work.jsonl", tmp_path / "out"
    cluster.write_text(cluster_text)
    workload.write_text(workload_text)
    paths = {"cluster": str(cluster), "workload": str(workload)}
    capsys.readouterr()
    t0 = time.monotonic()
    code = main(["run", "--cluster", str(cluster), "--workload", str(workload), "--out", str(out), "--quiet",
                 *[f.format(**paths) for f in flags]])
    err = capsys.readouterr().err.splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("fleetsim: error: "), err
    assert not out.exists()
    assert time.monotonic() - t0 < 20, "refused, but slowly"
    return err[0][len("fleetsim: error: "):], paths


@pytest.mark.parametrize("case", list(CASES))
def test_bad_run_input_is_one_line_exit_2(case, capsys, tmp_path):
    cluster_text, workload_text, flags, expected = CASES[case]
    line, paths = _fails(capsys, tmp_path, cluster_text, workload_text, flags)
    for part in expected:
        assert part.format(**paths) in line, (part, line)
    assert len(line) < 400, line     # an expanded alias or a repeated value would not fit


def test_the_alias_bomb_is_refused_at_once(tmp_path):
    """Refused before anything expands it: the whole load takes milliseconds, not the minutes
    (and the gigabyte) of building its 9^9 values."""
    from fleetsim.cluster.config import load_cluster_config
    from fleetsim.cluster.errors import InputError
    path = tmp_path / "bomb.yaml"
    path.write_text(LLAMA + _bomb("tp"))
    assert len(path.read_bytes()) < 600
    t0 = time.monotonic()
    with pytest.raises(InputError, match="alias"):
        load_cluster_config(str(path))
    assert time.monotonic() - t0 < 1


def test_aliases_within_the_bounds_keep_working(tmp_path):
    from fleetsim.cluster.config import load_cluster_config
    path = tmp_path / "c.yaml"
    path.write_text("model: meta-llama/Llama-3.1-8B\nhardware: RTXPRO6000\n"
                    "instances: [&big {count: 2, engine: {max_num_seqs: 8}}, *big]\n")
    cfg = load_cluster_config(str(path))
    assert [s.engine.max_num_seqs for s in cfg.instances] == [8, 8, 8, 8]


# ---- the memory estimate, hand-computed ----

TWO_SMALL = LLAMA.replace("max_num_seqs: 16", "max_num_seqs: 16, num_gpu_blocks: 1000") + "instances: 2\n"
ESTIMATE = 2 * ENGINE_BYTES + 2 * 1000 * BLOCK_BYTES + 3 * REQUEST_BYTES     # 2 instances, 3 requests


@pytest.mark.parametrize("limit_bytes, ok", [(ESTIMATE - 64, False), (ESTIMATE + 64, True)])
def test_memory_limit_is_the_estimate(limit_bytes, ok, capsys, tmp_path):
    flags = ["--memory-limit", repr(limit_bytes / GIB)]
    if ok:
        (tmp_path / "c.yaml").write_text(TWO_SMALL)
        (tmp_path / "w.jsonl").write_text(FLAT)
        assert main(["run", "--cluster", str(tmp_path / "c.yaml"), "--workload", str(tmp_path / "w.jsonl"),
                     "--out", str(tmp_path / "out"), "--quiet", *flags]) == 0
        return
    line, _ = _fails(capsys, tmp_path, TWO_SMALL, FLAT, flags)
    assert "the run needs about 0.0 GiB (2 instance(s), up to 1,000 KV blocks each, 3 requests)" in line
    assert "(--memory-limit)" in line


def test_default_memory_limit_is_what_the_machine_has():
    with open("/proc/meminfo") as fh:
        avail = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("MemAvailable:"))
    assert abs(available_bytes() - avail) < 256 * 2 ** 20   # read a moment apart


# ---- parallelism against the model ----

def test_tp_must_divide_or_be_a_multiple_of_the_kv_heads():
    arch = ModelArch("toy/48h-12kv", 4096, 8, 48, 12, 128, 8192, 1000, 4096, False)
    arch.check_parallelism(24, 1)     # 48 % 24 == 0, 24 % 12 == 0: each KV head on 2 ranks
    arch.check_parallelism(6, 1)      # 12 % 6 == 0
    with pytest.raises(CostModelError, match="tp 8 must divide the 12 KV heads of toy/48h-12kv or be a multiple"):
        arch.check_parallelism(8, 1)
    with pytest.raises(CostModelError, match="pp 9 exceeds the 8 layers"):
        arch.check_parallelism(1, 9)


# ---- validate ----

VALIDATE_WORK = _jsonl(*({"input_toks": 40 + 7 * i, "output_toks": 4 + i % 3, "arrival_time_ns": 2_000_000 * i}
                         for i in range(6)))


@pytest.fixture(scope="module")
def sim_run(tmp_path_factory):
    """A 6-request simulation and a real-run directory with its very timings."""
    root = tmp_path_factory.mktemp("validate")
    (root / "c.yaml").write_text(LLAMA)
    (root / "w.jsonl").write_text(VALIDATE_WORK)
    sim = root / "sim"
    assert main(["run", "--cluster", str(root / "c.yaml"), "--workload", str(root / "w.jsonl"), "--out", str(sim),
                 "--quiet"]) == 0
    with open(sim / "requests.csv", newline="") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: int(r["request id"]))
    real = [{"request_id": f"bench-{r['request id']}", "input_toks": int(r["input"]), "output_toks": int(r["output"]),
             "queued_ts": 100 + int(r["arrival"]) / 1e9,
             "first_token_ts": 100 + (int(r["arrival"]) + int(r["TTFT"])) / 1e9,
             "last_token_ts": 100 + int(r["end_time"]) / 1e9} for r in rows]
    return sim, real


def _real_dir(path, rows) -> str:
    path.mkdir()
    (path / "meta.json").write_text("{}")
    (path / "requests.jsonl").write_text("".join(json.dumps(r, allow_nan=True) + "\n" for r in rows))
    return str(path)


def _validate(capsys, *args) -> tuple[int, list[str], str]:
    capsys.readouterr()
    code = main(["validate", *args])
    captured = capsys.readouterr()
    return code, captured.err.splitlines(), captured.out


def test_validate_same_workload_passes(sim_run, tmp_path, capsys):
    sim, real = sim_run
    code, err, out = _validate(capsys, "--real", _real_dir(tmp_path / "real", real), "--sim", str(sim), "--json")
    assert code == 0 and not err
    assert json.loads(out)["TPOT"]["Mean"]["diff_pct"] == pytest.approx(0, abs=1e-3)


def test_validate_json_into_a_closed_pipe_exits_quietly(sim_run, tmp_path):
    """`fleetsim validate --json | head`: a reader that has gone is no error (no 'Broken pipe',
    no traceback); the exit status is a SIGPIPE-ended command's, 141."""
    sim, real = sim_run
    real_dir = _real_dir(tmp_path / "real", real)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run([sys.executable, "-m", "fleetsim", "validate", "--real", real_dir, "--sim", str(sim),
                               "--json"], stdout=write_end, stderr=subprocess.PIPE, text=True, cwd=REPO, timeout=120)
    finally:
        os.close(write_end)
    assert proc.stderr == ""
    assert proc.returncode == 141
