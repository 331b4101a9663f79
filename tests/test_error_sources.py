"""An input error names the source of the bad value: the flag when a flag gave it, the file and
field when a file gave it (one stderr line, exit code 2, no output written)."""
from __future__ import annotations

import json
import shutil

import pytest

from fleetsim import simulate
from fleetsim.cluster.cli import main, parser
from fleetsim.cluster.config import engine_flag
from fleetsim.cluster.errors import InputError
from fleetsim.cluster.simulation import ENGINE_OPTIONS
from fleet_helpers import REPO

BASE = "model: meta-llama/Llama-3.1-8B\nhardware: RTXPRO6000\nengine: {max_num_seqs: 16, max_num_batched_tokens: 512}\n"
BUNDLE = REPO / "configs" / "perf" / "RTXPRO6000" / "meta-llama" / "Llama-3.1-8B" / "bf16" / "tp1"


@pytest.fixture
def setup(tmp_path):
    """(cluster YAML writer, workload) in tmp_path; the workload's first request is 300+50 tokens."""
    work = tmp_path / "w.jsonl"
    work.write_text("".join(json.dumps({"input_toks": 300 - i, "output_toks": 50, "arrival_time_ns": 10_000_000 * i})
                            + "\n" for i in range(6)))

    def cluster(extra: str = ""):
        path = tmp_path / "c.yaml"
        path.write_text(BASE + extra + "\n")
        return path
    return cluster, work


def _error(capsys, tmp_path, cluster, work, *flags) -> str:
    """The one stderr line of a failed `fleetsim run`, without its `fleetsim: error: ` prefix."""
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["run", "--cluster", str(cluster), "--workload", str(work), "--out", str(out), "--quiet",
                 *flags]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fleetsim: error: "), lines
    assert not out.exists() or not any(out.iterdir())
    return lines[0][len("fleetsim: error: "):]


POLICIES = "round_robin, random, least_loaded, least_outstanding_tokens, least_kv, power_of_two, prefix_aware, " \
           "session_affinity, weighted or a dotted path"


@pytest.mark.parametrize("extra, flags, expected", [
    ("", ["--router", "nosuch"], f"--router 'nosuch': unknown; choose one of {POLICIES}"),
    ("", ["--router", "no_module_xyz:Policy"], "--router 'no_module_xyz:Policy': cannot import (No module named 'no_module_xyz')"),
    ("", ["--router", "json:JSONDecoder"], "--router 'json:JSONDecoder': not a subclass of fleetsim.Policy"),
    ("", ["--instances", "0"], "--instances must be >= 1, got 0"),
    ("", ["--sync-interval-ms", "-1"], "--sync-interval-ms must be a finite number >= 0, got -1.0"),
    ("", ["--seed", "-1"], "--seed must be an integer >= 0, got -1"),
    ("", ["--perf-root", "/no/such/perf"], "--perf-root '/no/such/perf': no such directory"),
    ("", ["--models-root", "/no/such/models"], "--models-root '/no/such/models': no such directory"),
    ("", ["--num-requests", "0"], "--num-requests must be >= 1, got 0"),
])
def test_a_bad_flag_is_named(setup, tmp_path, capsys, extra, flags, expected):
    cluster, work = setup
    assert _error(capsys, tmp_path, cluster(extra), work, *flags) == expected


@pytest.mark.parametrize("extra, expected", [
    ("router: {policy: nosuch}", f"router.policy 'nosuch': unknown; choose one of {POLICIES}"),
    ("router: {sync_interval_ms: -1}", "router.sync_interval_ms must be a number >= 0, got -1"),
    ("seed: -1", "'seed' must be an integer >= 0"),
    ("model: nobody/NoSuchModel", "model 'nobody/NoSuchModel': no config.json found as <org>/<name>.json under "),
    ("hardware: NoSuchGPU", "hardware 'NoSuchGPU': unknown; shipped: "),
    ("tp: 4", "profile bundle RTXPRO6000/meta-llama/Llama-3.1-8B/bf16/tp4: not found under "),
    ("cost_model: magic", "cost model backend 'magic': unknown; choose one of profile, roofline"),
    ("instances: [{count: 1}, {count: 1, hardware: NoSuchGPU}]", "hardware 'NoSuchGPU': unknown; shipped: "),
    ("memory_gib: 1", "instance 0: model meta-llama/Llama-3.1-8B does not fit: weights need 15.0 GiB per GPU, "
                      "RTXPRO6000 offers 0.9 GiB at gpu_memory_utilization 0.9"),
    ("engine: {max_num_seqs: 0}", "engine: max_num_seqs must be a positive integer, got 0"),
])
def test_a_bad_config_value_names_the_file(setup, tmp_path, capsys, extra, expected):
    cluster, work = setup
    path = cluster(extra)
    line = _error(capsys, tmp_path, path, work)
    assert line.startswith(f"{path}: {expected}"), line
    assert "engine overrides" not in line


@pytest.mark.parametrize("key", ["perf_root", "models_root"])
def test_a_missing_root_in_the_file_names_the_file_and_the_folder(setup, tmp_path, capsys, key):
    cluster, work = setup
    path = cluster(f"{key}: nope")
    assert _error(capsys, tmp_path, path, work) == f"{path}: {key} 'nope': no such directory ({tmp_path / 'nope'})"


@pytest.mark.parametrize("flag, value, field, rule", [
    ("--max-num-seqs", "0", "max_num_seqs", "must be a positive integer, got 0"),
    ("--max-num-batched-tokens", "0", "max_num_batched_tokens", "must be a positive integer, got 0"),
    ("--block-size", "0", "block_size", "must be a positive integer, got 0"),
    ("--num-gpu-blocks", "0", "num_gpu_blocks", "must be a positive integer, got 0"),
    ("--gpu-memory-utilization", "1.5", "gpu_memory_utilization", "must be a number in (0, 1], got 1.5"),
    ("--long-prefill-token-threshold", "-1", "long_prefill_token_threshold", "must be an integer >= 0"),
    ("--max-model-len", "1", "max_model_len", "must be an integer >= 2, got 1"),
])
def test_a_bad_engine_flag_is_named(setup, tmp_path, capsys, flag, value, field, rule):
    cluster, work = setup
    assert _error(capsys, tmp_path, cluster(), work, flag, value) == f"{flag}: {field} {rule}"


def test_every_engine_option_has_its_flag():
    """engine_flag names a real `fleetsim run` flag for every engine option (the errors quote it)."""
    run = parser()._subparsers._group_actions[0].choices["run"]
    flags = {s for action in run._actions for s in action.option_strings}
    assert {engine_flag(k) for k in ENGINE_OPTIONS} <= flags
    assert engine_flag("enable_prefix_caching") == "--no-prefix-caching"


def test_router_flag_against_the_files_options_names_both(setup, tmp_path, capsys):
    cluster, work = setup
    path = cluster("router: {policy: prefix_aware, options: {load_cap: 4}}")
    assert _error(capsys, tmp_path, path, work, "--router", "weighted") == (
        f"--router weighted: {path} sets router.options load_cap, which weighted does not take "
        f"(allowed: weights, index_blocks)")
    line = _error(capsys, tmp_path, cluster("router: {policy: prefix_aware, options: {load_cap: abc}}"), work)
    assert line == f"{path}: router.options.load_cap must be an integer >= 0, got 'abc'"


def test_a_limit_set_by_a_flag_is_named_with_the_request(setup, tmp_path, capsys):
    cluster, work = setup
    path = cluster()
    assert _error(capsys, tmp_path, path, work, "--max-model-len", "200") == (
        f"{work}: request 0: 300+50 tokens exceed max_model_len 200 of instance 0 (engine overrides: --max-model-len 200)")
    assert _error(capsys, tmp_path, path, work, "--num-gpu-blocks", "3", "--no-prefix-caching",
                  "--no-async-scheduling") == (
        f"{work}: request 0: 300+50 tokens exceed the KV cache (3 blocks of 16 tokens) of instance 0 "
        f"(engine overrides: --num-gpu-blocks 3, --no-prefix-caching, --no-async-scheduling)")
    line = _error(capsys, tmp_path, path, work, "--gpu-memory-utilization", "0.01")
    assert line == (f"{path}: instance 0: model meta-llama/Llama-3.1-8B does not fit: weights need 15.0 GiB per GPU, "
                    f"RTXPRO6000 offers 1.0 GiB at gpu_memory_utilization 0.01 "
                    f"(engine overrides: --gpu-memory-utilization 0.01)")


def test_a_broken_bundle_file_is_named_not_the_cluster(setup, tmp_path, capsys):
    cluster, work = setup
    perf = tmp_path / "perf"
    bundle = perf / "RTXPRO6000" / "meta-llama" / "Llama-3.1-8B" / "bf16" / "tp1"
    shutil.copytree(BUNDLE, bundle)
    (bundle / "dense.csv").write_text("layer,tokens\nact_fn,1\n")
    line = _error(capsys, tmp_path, cluster(), work, "--perf-root", str(perf))
    assert line.startswith(f"{bundle / 'dense.csv'}: missing column(s) time_us"), line


def test_the_python_api_names_the_option_by_its_flag(setup, tmp_path):
    cluster, work = setup
    with pytest.raises(InputError, match=r"^--router 'nosuch': unknown"):
        simulate(cluster(), work, router="nosuch")
    with pytest.raises(InputError, match=r"^--max-num-seqs: max_num_seqs must be a positive integer, got -4$"):
        simulate(cluster(), work, max_num_seqs=-4)
    with pytest.raises(InputError, match=r"^--seed must be an integer >= 0, got 'x'$"):
        simulate(cluster(), work, seed="x")


def test_validate_num_requests_names_the_flag_not_the_real_run(tmp_path):
    from fleetsim.cluster.validate import load_real
    (tmp_path / "meta.json").write_text("{}")
    (tmp_path / "requests.jsonl").write_text(json.dumps({"queued_ts": 0.0, "first_token_ts": 0.1,
                                                         "last_token_ts": 0.5, "output_toks": 5}) + "\n")
    assert len(load_real(str(tmp_path), 1)["TTFT"]) == 1
    with pytest.raises(InputError, match=r"^--num-requests must be >= 1, got 0$"):
        load_real(str(tmp_path), 0)
