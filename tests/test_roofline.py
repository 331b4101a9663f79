"""Roofline backend: hand-checkable prices, catalogue coverage, calibration, MoE / EP, inheritance."""
from __future__ import annotations

import glob
import os
import shutil

import pytest
import yaml

from fleetsim.costmodel import CostModel, CostModelError, Hardware, ModelArch
from fleetsim.costmodel.batch import BatchShape
from fleetsim.costmodel.calibrate import (bundle_rows, calibrate, decode_ceiling_gbps, error_stats, roofline_for,
                                         write_efficiency)
from fleetsim.costmodel.catalogue import resolve_hardware_doc
from fleetsim.costmodel.costmodel import clear_loaded
from fleetsim.costmodel.paths import SHIPPED
from fleetsim.costmodel.roofline import RooflineBackend

MODELS = sorted(os.path.relpath(p, SHIPPED / "models")[:-5] for p in glob.glob(str(SHIPPED / "models/*/*.json")))
HARDWARE = sorted(p.stem for p in (SHIPPED / "hardware").glob("*.yaml"))
H100_8B = SHIPPED / "perf/H100-SXM-80GB/meta-llama/Llama-3.1-8B/bf16/tp1"

TINY = ModelArch(name="fake/tiny", hidden_size=256, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=64,
                 intermediate_size=512, vocab_size=1000, max_position_embeddings=4096, tie_word_embeddings=False)
# 1000 TFLOP/s against 1000 GB/s: every M=1 kernel is memory-bound by a wide margin
TOY_HW = Hardware(name="toy", memory_gib=16, bf16_tflops=1000.0, hbm_gbps=1000.0, interconnect_gbps=100.0,
                  interconnect_latency_us=2.0)
UNIT_EFF = {"gemm": {"c_max": 1.0, "m_half": 64.0, "e_mem": 1.0, "launch_us": 1.0},
            "attention": {"c_max": 1.0, "cta_keys": 0.0, "block_q": 128, "e_mem": 1.0, "launch_us": 1.0},
            "elementwise": {"e_mem": 1.0, "launch_us": 1.0, "l2_gain": 1.0}}


def test_memory_bound_decode_of_tiny_arch_is_bytes_over_bandwidth():
    b = RooflineBackend(TINY, TOY_HW, efficiency=UNIT_EFF)
    ctx = 1000
    h, hd, inter, vocab, L = 256, 64, 512, 1000, 2
    # by hand, T = S = 1, bf16: weights read once plus the token's activations in and out
    qkv = (h * (4 + 2 + 2) * hd + h + (4 + 2 + 2) * hd) * 2
    o = (4 * hd * h + 4 * hd + h) * 2
    gate_up = (h * 2 * inter + h + 2 * inter) * 2
    down = (inter * h + inter + h) * 2
    kv = (ctx + 1) * 2 * 2 * hd * 2 + 2 * 4 * hd * 2            # K,V of ctx+1 tokens (2 KV heads) + q, o
    elementwise = 2 * 4 * h * 2 + 2 * (4 + 2) * hd * 2 + 3 * inter * 2   # 2 norms, rotary, act_fn
    per_layer = qkv + o + gate_up + down + kv + elementwise
    once = 2 * h * 2 + 2 * h * 2 + (h * vocab + h + vocab) * 2 + 2 * vocab * 4   # embed, norm, lm_head, sampler
    total_bytes = L * per_layer + once
    kernels = L * 9 + 4
    t = b.time_batch(BatchShape.from_seqs([(1, ctx)]))
    ideal_ns = total_bytes / 1000e9 * 1e9
    assert ideal_ns <= t <= ideal_ns + kernels * 1000 + kernels      # launch floor 1 µs per kernel, ±1 ns rounding
    assert t - ideal_ns == pytest.approx(kernels * 1000, abs=kernels)


def test_compute_bound_large_gemm_is_flops_over_peak_times_efficiency():
    hw = Hardware(name="h", memory_gib=80, bf16_tflops=989.4, hbm_gbps=3350)
    arch = ModelArch(name="x", hidden_size=4096, num_layers=1, num_heads=32, num_kv_heads=8, head_dim=128,
                     intermediate_size=14336, vocab_size=128256, max_position_embeddings=0, tie_word_embeddings=False)
    eff = {"gemm": {"c_max": 0.8, "m_half": 64.0, "e_mem": 0.9, "launch_us": 5.0}}
    b = RooflineBackend(arch, hw, efficiency=eff)
    m, n, k = 16384, 2 * 14336, 4096
    expected = 2 * m * n * k / (989.4e12 * 0.8 * m / (m + 64)) + 5e-6
    assert b.op_s("gate_up_proj", m) == pytest.approx(expected, rel=1e-12)
    assert (k * n + m * k + m * n) * 2 / (3350e9 * 0.9) < 0.5 * expected       # memory is far below


@pytest.mark.parametrize("hardware", HARDWARE)
def test_every_model_on_every_catalogue_gpu(hardware):
    for model in MODELS:
        for tp in (1, 2):
            cm = CostModel.load(model, hardware, "roofline", tp)
            steps = [[(1, 1024)], [(1, 1024)] * 64, [(512, 0)], [(256, 100)] + [(1, 300)] * 8]
            for seqs in steps:
                t = cm.iteration_time_ns(seqs)
                assert isinstance(t, int) and t > 0
                bd = cm.breakdown(seqs)
                assert all(isinstance(v, int) and v > 0 for v in bd.values())
                assert sum(bd.values()) == t
            prefill = [cm.iteration_time_ns([(c, 0)]) for c in (2, 16, 64, 128, 129, 512, 1000, 2048, 4096)]
            decode = [cm.iteration_time_ns([(1, 512)] * n) for n in (1, 2, 8, 64, 65, 256)]
            ctx = [cm.iteration_time_ns([(1, c)] * 8) for c in (0, 100, 1000, 10000)]
            assert prefill == sorted(prefill) and decode == sorted(decode) and ctx == sorted(ctx), (model, tp)


def test_roofline_needs_no_bundle_and_is_shared():
    a = CostModel.load("Qwen/Qwen3-8B", "L40S", "roofline", perf_root="/nonexistent")
    b = CostModel.load("Qwen/Qwen3-8B", "L40S", "roofline", perf_root="/nonexistent", memory_gib=10)
    assert a.backend is b.backend and a.backend.name == "roofline"
    assert a.state.raw_tables["hardware.yaml"]["sm_count"] == 142
    again = CostModel.from_state(a.state)
    assert again.iteration_time_ns([(1, 77)] * 3) == a.iteration_time_ns([(1, 77)] * 3)
    with pytest.raises(CostModelError):
        CostModel.load("Qwen/Qwen3-8B", "L40S", "roofline", ep=2)            # no experts
    with pytest.raises(CostModelError):
        CostModel.load("meta-llama/Llama-3.1-8B", "RTXPRO6000", "profile", ep=2)


def test_tp_adds_two_ring_allreduces_per_layer():
    cm = CostModel.load("meta-llama/Llama-3.1-8B", "H100-SXM-80GB", "roofline", 2)
    bd = cm.breakdown([(1, 1000)] * 10)
    ar = {k: v for k, v in bd.items() if k.startswith("allreduce.")}
    assert sum(ar.values()) == 32 * 2 * cm.state.network.allreduce_ns(10 * 4096 * 2, 2)
    one = CostModel.load("meta-llama/Llama-3.1-8B", "H100-SXM-80GB", "roofline", 1).breakdown([(1, 1000)] * 10)
    assert not any(k.startswith("allreduce") for k in one) and bd["gate_up_proj"] < one["gate_up_proj"]


def test_mixed_step_costs_more_than_its_parts_on_h100():
    cm = CostModel.load("meta-llama/Llama-3.1-8B", "H100-SXM-80GB", "roofline")
    att = cm.backend.attention_ns
    mixed = att(BatchShape.from_seqs([(256, 0)] + [(1, 4096)] * 64))
    parts = att(BatchShape.from_seqs([(256, 0)])) + att(BatchShape.from_seqs([(1, 4096)] * 64))
    assert mixed > 2 * parts          # measured: 1584.7 µs vs 14.8 + 411.2 µs


def test_calibration_reduces_error_and_transfers_across_models():
    backend = roofline_for("H100-SXM-80GB", "meta-llama/Llama-3.1-8B", efficiency={})
    rows = bundle_rows(str(H100_8B))
    before = error_stats(backend, rows)
    eff = calibrate(backend, rows)
    after = error_stats(backend, rows)
    assert after["median"] < before["median"] and after["median"] < 8.0 and after["p90"] < before["p90"]
    other = SHIPPED / "perf/H100-SXM-80GB/Qwen/Qwen3-14B/bf16/tp1"
    cross = error_stats(roofline_for("H100-SXM-80GB", "Qwen/Qwen3-14B", efficiency=eff), bundle_rows(str(other)))
    assert cross["median"] < 15.0


def test_write_efficiency_keeps_the_yaml_and_roundtrips(tmp_path):
    path = tmp_path / "H100-SXM-80GB.yaml"
    shutil.copy(SHIPPED / "hardware/H100-SXM-80GB.yaml", path)
    eff = {"gemm": {"c_max": 0.5, "m_half": 1.0e-05}, "elementwise": {"e_mem": 0.6, "act_fn": {"e_mem": 0.4}}}
    write_efficiency(str(path), eff, "test")
    write_efficiency(str(path), eff, "test again")
    text = path.read_text()
    assert text.count("efficiency:") == 1 and "# NVIDIA H100" in text and "test again" in text
    doc = yaml.safe_load(text)
    assert doc["efficiency"] == eff and doc["bf16_tflops"] == 989.4
    Hardware.from_dict(doc)


def test_h200_inherits_h100_family_keys_and_overrides(tmp_path):
    h100 = resolve_hardware_doc("H100-SXM-80GB")
    h200 = resolve_hardware_doc("H200-SXM-141GB")
    assert h200["efficiency"] == h100["efficiency"] and h200["hbm_gbps"] == 4800 and h200["memory_gib"] == 141
    for key in ("bf16_tflops", "fp8_tflops", "sm_count", "l2_mib", "interconnect_gbps", "family"):
        assert h200[key] == h100[key], key
    (tmp_path / "child.yaml").write_text(
        "name: child\nmemory_gib: 1\nhbm_gbps: 1\ninherits: H200-SXM-141GB\n"
        "efficiency:\n  gemm: {c_max: 0.5}\n")
    child = resolve_hardware_doc("child", (str(tmp_path),))
    assert child["efficiency"]["gemm"]["c_max"] == 0.5
    assert child["efficiency"]["gemm"]["m_half"] == h100["efficiency"]["gemm"]["m_half"]
    assert child["bf16_tflops"] == 989.4 and child["memory_gib"] == 1 and child["name"] == "child"
    (tmp_path / "loop.yaml").write_text("name: loop\nmemory_gib: 1\nbf16_tflops: 1\nhbm_gbps: 1\n"
                                        "inherits: loop\n")
    with pytest.raises(CostModelError, match="cycle"):
        resolve_hardware_doc("loop", (str(tmp_path),))


@pytest.mark.parametrize("model", ["Qwen/Qwen3-30B-A3B", "mistralai/Mixtral-8x7B-v0.1"])
def test_moe_breakdown_has_expert_and_collective_terms(model):
    seqs = [(1, 1024)] * 64
    ep1 = CostModel.load(model, "H100-SXM-80GB", "roofline").breakdown(seqs)
    assert ep1["moe_experts"] > 0 and ep1["moe_router"] > 0
    assert "gate_up_proj" not in ep1 and "ep_dispatch" not in ep1
    cm = CostModel.load(model, "H100-SXM-80GB", "roofline", 2, ep=2)
    ep2 = cm.breakdown(seqs)
    for key in ("moe_experts", "moe_router", "ep_dispatch", "ep_combine"):
        assert ep2[key] > 0, key
    assert sum(v for k, v in ep2.items() if k.startswith("allreduce.")) > 0
    assert ep2["moe_experts"] < ep1["moe_experts"]
    assert sum(ep2.values()) == cm.iteration_time_ns(seqs)
    # EP all-to-all: (ep−1)·(latency + received bytes / (ep·bw)), received = T·k/ep copies of hidden
    arch, hw = cm.arch, cm.hardware
    recv = 64 * arch.experts_per_token * arch.hidden_size * 2 / 2
    per = hw.interconnect_latency_us * 1e-6 + recv / (2 * hw.interconnect_gbps * 1e9)
    assert ep2["ep_dispatch"] == arch.num_layers * max(1, round(per * 1e9))


def test_balanced_routing_touches_min_experts():
    cm = CostModel.load("Qwen/Qwen3-30B-A3B", "H100-SXM-80GB", "roofline")
    loads = cm.backend._rank_loads(4)             # 4 tokens × 8 experts = 32 copies, 32 experts touched
    assert loads[0] == (32.0, 32.0)
    assert cm.backend._rank_loads(1000)[0] == (8000.0, 128.0)


def test_skewed_routing_is_deterministic_and_differs_from_balanced():
    def fresh(skew, ep=2):
        clear_loaded()
        return CostModel.load("Qwen/Qwen3-30B-A3B", "H100-SXM-80GB", "roofline", ep=ep, moe_skew=skew)
    batches = [[(1, 500)] * n for n in (1, 7, 64, 200)] + [[(2048, 0)]]
    a = [fresh(1.2).iteration_time_ns(s) for s in batches]
    b_cm = fresh(1.2)
    b = [b_cm.iteration_time_ns(s) for s in reversed(batches)][::-1]
    assert a == b
    assert a != [fresh(0.0).iteration_time_ns(s) for s in batches]
    assert a != [fresh(0.6).iteration_time_ns(s) for s in batches]
    loads = fresh(1.2).backend._rank_loads(64)
    assert all(c > 64 * 8 / 2 for c, _ in loads)       # the busiest rank gets more than its even share
    clear_loaded()


LLAMA_8B_HF = {"hidden_size": 4096, "num_attention_heads": 32, "num_key_value_heads": 8, "num_hidden_layers": 32,
               "intermediate_size": 14336, "vocab_size": 128256, "max_position_embeddings": 131072}


def test_hf_config_optional_fields_default_and_are_checked():
    arch = ModelArch.from_hf_config("m", {k: v for k, v in LLAMA_8B_HF.items() if k != "num_key_value_heads"})
    assert (arch.num_kv_heads, arch.head_dim, arch.num_experts) == (32, 128, 0)     # defaults: heads, hidden/heads
    assert ModelArch.from_hf_config("m", LLAMA_8B_HF).num_kv_heads == 8
    for key in ("num_key_value_heads", "head_dim", "max_position_embeddings", "num_experts"):
        with pytest.raises(CostModelError, match=key):
            ModelArch.from_hf_config("m", {**LLAMA_8B_HF, key: "8"}, source="config.json")


def test_decode_bandwidth_ceiling_binds_beyond_one_wave_of_ctas():
    """Qwen3-8B: 8 KV heads, 132 SMs: 16 decodes are one wave (128 CTAs), 17 are more."""
    h200 = CostModel.load("Qwen/Qwen3-8B", "H200-SXM-141GB", "roofline").backend
    h100 = CostModel.load("Qwen/Qwen3-8B", "H100-SXM-80GB", "roofline").backend
    e_mem, ceiling = h100.p("attention.e_mem"), h100.p("attention.max_gbps") * 1e9
    assert h200.p("attention.max_gbps") * 1e9 == ceiling              # inherited
    assert h200.decode_bw(16) == 4800e9 * e_mem                      # HBM-bound within one wave
    assert h200.decode_bw(17) == ceiling < 4800e9 * e_mem            # SM-bound beyond it
    assert h100.decode_bw(17) == 3350e9 * e_mem < ceiling            # never binds on the H100
    # decode_steps folds the same bandwidth
    for n in (16, 64):
        b = BatchShape.from_seqs([(1, 4096)] * n)
        assert h200.decode_steps(n, 4096 * n, 4096, 4096)(0) == h200.time_batch(b)


def test_shipped_decode_ceiling_is_the_measured_one():
    tp_dir = os.path.join(SHIPPED, "perf", "H100-SXM-80GB", "meta-llama", "Llama-3.1-8B", "bf16", "tp1")
    backend = roofline_for("H100-SXM-80GB", "meta-llama/Llama-3.1-8B", 1)
    measured = decode_ceiling_gbps(backend, bundle_rows(tp_dir))
    assert float(f"{measured:.4g}") == backend.p("attention.max_gbps")      # as written by --write (4 digits)
