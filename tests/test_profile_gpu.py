"""Smoke test of scripts/profile_gpu.py on CPU: a tiny fake HF config, `--grid tiny`, then the
bundle is loaded by the profile backend."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

from fleetsim.costmodel import CostModel  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "profile_gpu.py"
HARDWARE = "H100-SXM-80GB"   # must exist in configs/hardware for CostModel.load
TINY = {
    "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 32, "intermediate_size": 128,
    "vocab_size": 256, "max_position_embeddings": 1024, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
    "tie_word_embeddings": False, "torch_dtype": "float32",
}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("profile_gpu")
    models, perf = tmp / "models", tmp / "perf"
    (models / "test").mkdir(parents=True)
    config = models / "test" / "tiny.json"
    config.write_text(json.dumps(TINY))
    cmd = [sys.executable, str(SCRIPT), "--config", str(config), "--hardware", HARDWARE, "--out", str(perf),
           "--device", "cpu", "--grid", "tiny", "--dtype", "float32", "--threads", "1"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    return models, perf


def test_bundle_layout(bundle):
    _, perf = bundle
    variant = perf / HARDWARE / "test" / "tiny" / "fp32"
    assert (variant / "meta.yaml").is_file()
    meta = (variant / "meta.yaml").read_text()
    assert 'model: "test/tiny"' in meta and 'status: "complete"' in meta
    with open(variant / "tp1" / "dense.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    ops = {r["layer"] for r in rows}
    assert ops == {"embedding", "layernorm", "qkv_proj", "rotary_emb", "o_proj", "gate_up_proj", "act_fn",
                   "down_proj", "final_layernorm"}
    for op in ops:  # --monotone is on for CPU: every curve is non-decreasing in tokens
        times = [float(r["time_us"]) for r in sorted((r for r in rows if r["layer"] == op),
                                                      key=lambda r: int(r["tokens"]))]
        assert all(t > 0 for t in times) and times == sorted(times), op
    with open(variant / "tp1" / "per_sequence.csv", newline="") as fh:
        assert {r["layer"] for r in csv.DictReader(fh)} == {"lm_head", "sampler"}
    with open(variant / "tp1" / "attention.csv", newline="") as fh:
        att = list(csv.DictReader(fh))
    kinds = {(int(r["prefill_chunk"]) > 0, int(r["n_decode"]) > 0) for r in att}
    assert kinds == {(False, True), (True, False), (True, True)}   # decode, prefill, mixed


def test_costmodel_loads_bundle(bundle):
    models, perf = bundle
    cm = CostModel.load(model="test/tiny", hardware=HARDWARE, backend="profile", perf_root=str(perf),
                        models_root=str(models), variant="fp32")
    assert cm.iteration_time_ns([(1, 100)]) > 0
    # prefill steps: more tokens never cheaper (attention grows ~quadratically, dense ops are monotone)
    times = [cm.iteration_time_ns([(t, 0)]) for t in (16, 64, 256, 1024)]
    assert times == sorted(times), times
    assert times[-1] > times[0]


def test_layers_subset_keeps_other_rows(bundle):
    models, perf = bundle
    tp_dir = perf / HARDWARE / "test" / "tiny" / "fp32" / "tp1"
    before = (tp_dir / "attention.csv").read_text()
    cmd = [sys.executable, str(SCRIPT), "--config", str(models / "test" / "tiny.json"), "--hardware", HARDWARE,
           "--out", str(perf), "--device", "cpu", "--grid", "tiny", "--dtype", "float32", "--threads", "1",
           "--layers-subset", "act_fn,sampler"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tp_dir / "attention.csv").read_text() == before
    with open(tp_dir / "dense.csv", newline="") as fh:
        assert len({r["layer"] for r in csv.DictReader(fh)}) == 9


def test_qwen3_config_measures_qk_norm(tmp_path):
    """A Qwen3 config (model_type qwen3) gets qk_norm rows, and the profile backend prices them."""
    models, perf = tmp_path / "models", tmp_path / "perf"
    (models / "test").mkdir(parents=True)
    config = models / "test" / "tinyq.json"
    config.write_text(json.dumps({**TINY, "model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"]}))
    cmd = [sys.executable, str(SCRIPT), "--config", str(config), "--hardware", HARDWARE, "--out", str(perf),
           "--device", "cpu", "--grid", "tiny", "--dtype", "float32", "--threads", "1",
           "--layers-subset", "qk_norm,final_layernorm"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    with open(perf / HARDWARE / "test" / "tinyq" / "fp32" / "tp1" / "dense.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["layer"] == "qk_norm"]
    assert len(rows) == 9 and all(float(r["time_us"]) > 0 for r in rows)
    # a Llama config has no qk_norm to measure
    (models / "test" / "tinyl.json").write_text(json.dumps(TINY))
    llama = [sys.executable, str(SCRIPT), "--config", str(models / "test" / "tinyl.json"), "--hardware", HARDWARE,
             "--layers-subset", "qk_norm", "--device", "cpu", "--out", str(perf)]
    done = subprocess.run(llama, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode != 0 and "has no per-head q/k norm" in done.stderr
