"""The op list comes from the architecture: qk_norm in a Qwen3 step (both backends), refusals."""
from __future__ import annotations

import json

import pytest

from fleetsim.costmodel import CostModel, CostModelError, Hardware, ModelArch
from fleetsim.costmodel.architecture import OpSequence, load_sequence, sequence_for
from fleetsim.costmodel.batch import BatchShape
from fleetsim.costmodel.roofline import RooflineBackend

QWEN3 = {"model_type": "qwen3", "hidden_size": 64, "num_hidden_layers": 3, "num_attention_heads": 4,
         "num_key_value_heads": 2, "head_dim": 32, "intermediate_size": 128, "vocab_size": 100,
         "max_position_embeddings": 4096, "torch_dtype": "bfloat16"}
DENSE_OPS = ("embedding", "layernorm", "qkv_proj", "rotary_emb", "o_proj", "gate_up_proj", "act_fn", "down_proj",
             "final_layernorm")


def write_bundle(root, config, ops, meta=""):
    """A tiny bundle: every dense op 1 µs at T = 1 and 2 µs at T = 100, qk_norm 3 / 5 µs if listed."""
    models = root / "models" / "test"
    models.mkdir(parents=True)
    (models / "tiny.json").write_text(json.dumps(config))
    tp = root / "perf" / "H100-SXM-80GB" / "test" / "tiny" / "bf16" / "tp1"
    tp.mkdir(parents=True)
    rows = "".join(f"{op},1,{3.0 if op == 'qk_norm' else 1.0}\n{op},100,{5.0 if op == 'qk_norm' else 2.0}\n"
                   for op in ops)
    (tp / "dense.csv").write_text("layer,tokens,time_us\n" + rows)
    (tp / "per_sequence.csv").write_text("layer,sequences,time_us\nlm_head,1,5.0\nlm_head,10,6.0\n"
                                         "sampler,1,1.0\nsampler,10,1.5\n")
    (tp / "attention.csv").write_text("prefill_chunk,kv_prefill,n_decode,kv_decode,time_us\n"
                                      "0,0,1,16,3.0\n0,0,1,1024,4.0\n16,0,0,0,6.0\n64,0,0,0,9.0\n")
    (tp.parent / "meta.yaml").write_text(meta or "model: test/tiny\n")
    return str(root / "perf"), str(root / "models")


def test_qwen3_profile_step_prices_qk_norm(tmp_path):
    perf, models = write_bundle(tmp_path, QWEN3, DENSE_OPS + ("qk_norm",))
    cm = CostModel.load("test/tiny", "H100-SXM-80GB", perf_root=perf, models_root=models)
    # one decode, T = 1: per layer 2 norms + qkv + rotary + o + gate_up + act + down (1 µs each) + qk_norm 3 µs
    # + attention 3 µs = 14 µs; step: 3 · 14 + embedding 1 + final norm 1 + lm_head 5 + sampler 1 = 50 µs
    assert cm.iteration_time_ns([(1, 16)]) == 50_000
    b = cm.breakdown([(1, 16)])
    assert b["qk_norm"] == 3 * 3_000 and sum(b.values()) == 50_000


def test_llama_architecture_has_no_qk_norm(tmp_path):
    perf, models = write_bundle(tmp_path, {**QWEN3, "model_type": "llama"}, DENSE_OPS + ("qk_norm",))
    cm = CostModel.load("test/tiny", "H100-SXM-80GB", perf_root=perf, models_root=models)
    assert "qk_norm" not in cm.breakdown([(1, 16)]) and cm.iteration_time_ns([(1, 16)]) == 50_000 - 9_000


def test_missing_rows_for_a_listed_op_is_an_error_naming_it(tmp_path):
    perf, models = write_bundle(tmp_path, QWEN3, DENSE_OPS)
    with pytest.raises(CostModelError, match=r"no rows for op\(s\) qk_norm \(listed by the 'qwen3' architecture"):
        CostModel.load("test/tiny", "H100-SXM-80GB", perf_root=perf, models_root=models)


def test_bundle_meta_names_or_carries_the_sequence(tmp_path):
    seq = {"prologue": ["embedding"], "pre_attn": ["layernorm", "qkv_proj", "attention"], "post_attn": ["o_proj"],
           "mlp_dense": ["gate_up_proj", "down_proj"], "mlp_moe": [], "head": ["final_layernorm", "lm_head", "sampler"]}
    assert sequence_for("qwen3", {"architecture": "llama"}).name == "llama"      # LLMServingSim's meta field
    own = sequence_for("qwen3", {"sequence": seq})
    assert own.layer_ops(moe=False) == ("layernorm", "qkv_proj", "o_proj", "gate_up_proj", "down_proj")
    assert sequence_for("", {}).name == "llama" and sequence_for("qwen3").name == "qwen3"
    with pytest.raises(CostModelError, match="unknown; shipped: llama, mixtral, qwen3, qwen3_moe"):
        load_sequence("gpt9")
    with pytest.raises(CostModelError, match="sequence must be a mapping of exactly"):
        OpSequence.from_doc("x", {"prologue": []}, "meta.yaml")


def test_qwen3_roofline_prices_qk_norm_as_two_rmsnorm_kernels():
    arch = ModelArch.from_hf_config("test/tiny", {**QWEN3, "num_hidden_layers": 36, "hidden_size": 4096,
                                                  "num_attention_heads": 32, "num_key_value_heads": 8,
                                                  "head_dim": 128})
    hw = Hardware(name="toy", memory_gib=16, bf16_tflops=1000.0, hbm_gbps=1000.0)
    eff = {"elementwise": {"e_mem": 1.0, "launch_us": 1.0, "l2_gain": 1.0}}
    b = RooflineBackend(arch, hw, efficiency=eff)
    # T = 100: q: 2·100·32·128·2 B = 1 638 400 B at 1000 GB/s = 1.6384 µs, k: 2·100·8·128·2 B = 0.4096 µs,
    # + 1 µs launch each = 4.048 µs per layer, 36 layers
    bd = b.breakdown(BatchShape.from_seqs([(100, 0)]))
    assert bd["qk_norm"] == 36 * 4048
    llama = RooflineBackend(ModelArch.from_hf_config("x", {**QWEN3, "model_type": "llama"}), hw, efficiency=eff)
    assert "qk_norm" not in llama.breakdown(BatchShape.from_seqs([(100, 0)]))


def test_shipped_qwen3_bundles_price_their_qk_norm_rows():
    cm = CostModel.load("Qwen/Qwen3-8B", "H100-SXM-80GB", "profile")
    # dense.csv qk_norm at T = 1: 5.108 µs (estimated from rms_norm, meta.yaml), 36 layers
    assert cm.breakdown([(1, 1000)])["qk_norm"] == 36 * 5108
    h200 = CostModel.load("Qwen/Qwen3-8B", "H200-SXM-141GB", "profile")
    assert h200.breakdown([(1, 1000)])["qk_norm"] == 36 * 5607
