"""FP8 weights (`dtype: fp8`) and KV cache (`kv_cache_dtype: fp8`): bytes, KV blocks, GEMM peak,
bundle variant folder, cluster YAML."""
from __future__ import annotations

import pytest

from fleetsim.cluster.config import from_fleetsim_yaml
from fleetsim.cluster.errors import InputError
from fleetsim.cluster.fleet import load_cost_model
from fleetsim.costmodel import CostModel, CostModelError
from fleetsim.costmodel.costmodel import load_arch

LLAMA = "meta-llama/Llama-3.1-8B"
# Llama-3.1-8B: hidden 4096, 32 layers, 32 heads, 8 KV heads, head_dim 128, intermediate 14336,
# vocab 128256, untied embeddings.
LINEAR = 32 * (4096 * 4096 * 2 + 2 * 4096 * 1024 + 3 * 4096 * 14336)     # q, o, k, v, gate, up, down
OTHER = 2 * 128256 * 4096 + 32 * 2 * 4096 + 4096                          # embed + lm_head, norms
FREE = 80 * 2**30 * 0.9                                                    # H100 80 GiB at util 0.9


def test_weight_and_kv_bytes_hand_computed():
    arch = load_arch(LLAMA)
    assert LINEAR == 6_979_321_856 and OTHER == 1_050_939_392
    assert arch.weight_bytes(1) == 2 * (LINEAR + OTHER) == 16_060_522_496
    fp8 = arch.with_precision("fp8")
    # vLLM's fp8 quantises the decoder's linear layers; embeddings, lm_head and norms stay bf16
    assert fp8.weight_bytes(1) == LINEAR + 2 * OTHER == 9_081_200_640
    assert fp8.kv_bytes_per_token(1) == arch.kv_bytes_per_token(1) == 2 * 32 * 8 * 128 * 2
    assert arch.with_precision(kv_cache_dtype="fp8").kv_bytes_per_token(1) == 2 * 32 * 8 * 128
    assert arch.with_precision("auto", "auto") is arch
    with pytest.raises(CostModelError, match="dtype 'int4'"):
        arch.with_precision("int4")


@pytest.mark.parametrize("dtype, kv, blocks", [
    ("auto", "auto", 29205),   # (FREE − 16 060 522 496) // (16 · 131 072) = 61 248 888 832 // 2 097 152
    ("auto", "fp8", 58411),    # 61 248 888 832 // (16 · 65 536): twice the blocks, +1 from the floor
    ("fp8", "auto", 32533),    # (FREE − 9 081 200 640) // 2 097 152 = 68 228 210 688 // 2 097 152
    ("fp8", "fp8", 65067),     # 68 228 210 688 // 1 048 576
])
def test_fp8_kv_block_counts(dtype, kv, blocks):
    cm = CostModel.load(LLAMA, "H100-SXM-80GB", "roofline", dtype=dtype, kv_cache_dtype=kv)
    w = cm.weight_bytes_per_gpu()
    block = 16 * cm.arch.kv_bytes_per_token(1)
    assert int((FREE - w) // block) == blocks
    assert cm.num_kv_blocks(16, 0.9) == blocks


def test_roofline_gemms_at_the_fp8_peak_and_half_the_weight_bytes():
    bf16 = CostModel.load(LLAMA, "H100-SXM-80GB", "roofline").backend
    fp8 = CostModel.load(LLAMA, "H100-SXM-80GB", "roofline", dtype="fp8").backend
    assert fp8.linear_peak == 1978.9e12 and bf16.linear_peak == bf16.peak == 989.4e12
    launch = bf16.p("gemm.launch_us") * 1e-6
    # compute-bound prefill GEMM: at the fp8 peak (about twice the bf16 one), the same launch
    big_b, big_f = bf16.op_s("gate_up_proj", 8192) - launch, fp8.op_s("gate_up_proj", 8192) - launch
    assert big_f == pytest.approx(big_b * 989.4 / 1978.9, rel=1e-9)
    # weight-streaming decode GEMM at M = 1: weights at 1 byte, activations still bf16
    k, n = 4096, 2 * 14336
    e = bf16.bw * bf16.p("gemm.e_mem")
    assert bf16.op_s("gate_up_proj", 1) - launch == pytest.approx((k * n + k + n) * 2 / e, rel=1e-12)
    assert fp8.op_s("gate_up_proj", 1) - launch == pytest.approx((k * n + 2 * (k + n)) / e, rel=1e-12)
    # lm_head stays bf16
    assert fp8.op_s("lm_head", 64) == bf16.op_s("lm_head", 64)
    # fp8 KV: attention of a decode reads half the bytes
    kv8 = CostModel.load(LLAMA, "H100-SXM-80GB", "roofline", kv_cache_dtype="fp8").backend
    assert kv8.kv_token_layer * 2 == bf16.kv_token_layer


def test_gpu_without_fp8_tensor_cores_multiplies_at_the_bf16_peak():
    a100 = CostModel.load(LLAMA, "A100-SXM-80GB", "roofline", dtype="fp8").backend
    assert a100.hardware.fp8_tflops == 0 and a100.linear_peak == a100.peak and a100.linear_dt == 1


def test_profile_backend_reads_the_fp8_variant_folder():
    with pytest.raises(CostModelError, match=r"Llama-3.1-8B/fp8/tp1"):
        CostModel.load(LLAMA, "H100-SXM-80GB", "profile", dtype="fp8")
    # an fp8 KV cache alone keeps the bf16 bundle (attention times as measured, more blocks)
    cm = CostModel.load(LLAMA, "H100-SXM-80GB", "profile", kv_cache_dtype="fp8")
    assert cm.state.source.endswith("bf16/tp1") and cm.num_kv_blocks(16, 0.9) == 58411


def test_cluster_yaml_dtype_keys():
    doc = {"model": LLAMA, "hardware": "H100-SXM-80GB", "cost_model": "roofline",
           "dtype": "fp8", "kv_cache_dtype": "fp8_e4m3"}
    spec = from_fleetsim_yaml(doc, "c.yaml").instances[0]
    assert (spec.dtype, spec.kv_cache_dtype) == ("fp8", "fp8_e4m3")
    assert load_cost_model(spec).num_kv_blocks(16, 0.9) == 65067
    for key, bad in (("dtype", "int8"), ("kv_cache_dtype", "fp4"), ("attention_pricing", "sum")):
        with pytest.raises(InputError, match=f"c.yaml: field '{key}' must be one of"):
            from_fleetsim_yaml({**doc, key: bad}, "c.yaml")
