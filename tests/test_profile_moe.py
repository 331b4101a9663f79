"""Profile backend for MoE models: LLMServingSim's moe.csv (tokens, activated_experts, time_us)."""
import json

import pytest

from fleetsim.costmodel import CostModel, CostModelError

CONFIG = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
          "intermediate_size": 128, "moe_intermediate_size": 32, "num_experts": 8, "num_experts_per_tok": 2,
          "vocab_size": 100, "max_position_embeddings": 4096, "torch_dtype": "bfloat16"}


def write_bundle(root, with_moe=True):
    models = root / "models" / "test"
    models.mkdir(parents=True)
    (models / "tiny-moe.json").write_text(json.dumps(CONFIG))
    tp = root / "perf" / "H100-SXM-80GB" / "test" / "tiny-moe" / "bf16" / "tp1"
    tp.mkdir(parents=True)
    ops = ("embedding", "layernorm", "qkv_proj", "rotary_emb", "o_proj", "final_layernorm")
    (tp / "dense.csv").write_text("layer,tokens,time_us\n" + "".join(f"{op},1,1.0\n{op},100,2.0\n" for op in ops))
    (tp / "per_sequence.csv").write_text("layer,sequences,time_us\nlm_head,1,5.0\nlm_head,10,6.0\n"
                                         "sampler,1,1.0\nsampler,10,1.5\n")
    (tp / "attention.csv").write_text("prefill_chunk,kv_prefill,n_decode,kv_decode,time_us\n"
                                      "0,0,1,16,3.0\n0,0,1,1024,4.0\n0,0,2,16,3.5\n0,0,2,1024,5.0\n"
                                      "16,0,0,0,6.0\n64,0,0,0,9.0\n")
    if with_moe:
        rows = [(t, a, (10 if t == 1 else 20) * a) for t in (1, 16) for a in (1, 2, 8)]
        (tp / "moe.csv").write_text("tokens,activated_experts,time_us\n" + "".join(f"{t},{a},{us}\n" for t, a, us in rows))
    return str(root / "perf"), str(root / "models")


def test_moe_step_is_composed_from_moe_csv(tmp_path):
    perf, models = write_bundle(tmp_path)
    cm = CostModel.load(model="test/tiny-moe", hardware="H100-SXM-80GB", perf_root=perf, models_root=models)
    # one decode, T = 1, 16 tokens of context: activated experts = min(8, 1·2) = 2 -> 20 µs per layer
    # per layer: 2 norms + qkv + rotary + o (1 µs each) + attention 3 µs + experts 20 µs = 28 µs
    # step: 2 layers · 28 + embedding 1 + final norm 1 + lm_head 5 + sampler 1 = 64 µs
    assert cm.iteration_time_ns([(1, 16)]) == 64_000
    b = cm.breakdown([(1, 16)])
    assert b["moe_experts"] == 40_000 and "gate_up_proj" not in b
    assert sum(b.values()) == 64_000
    # 16 tokens of prefill: activated = min(8, 32) = 8 -> row 8 at 16 tokens = 160 µs per layer
    assert cm.backend.moe_ns(16) == 160_000
    # 4 tokens: between the token keys 1 and 16 of row 8 (80 and 160 µs): 80 + 80·3/15 = 96 µs
    assert cm.backend.moe_ns(4) == 96_000


def test_moe_model_without_moe_table_is_an_error(tmp_path):
    perf, models = write_bundle(tmp_path, with_moe=False)
    with pytest.raises(CostModelError, match=r"dense.csv: no rows for op\(s\) act_fn, down_proj, gate_up_proj"):
        CostModel.load(model="test/tiny-moe", hardware="H100-SXM-80GB", perf_root=perf, models_root=models)
