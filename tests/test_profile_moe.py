"""Profile backend for MoE models: LLMServingSim's moe.csv (tokens, activated_experts, time_us)."""
import pytest

from fleetsim.costmodel import CostModel, CostModelError
from moe_bundle import HARDWARE, MODEL, write_moe_bundle


def test_moe_step_is_composed_from_moe_csv(tmp_path):
    perf, models = write_moe_bundle(tmp_path)
    cm = CostModel.load(model=MODEL, hardware=HARDWARE, perf_root=perf, models_root=models)
    # one decode, T = 1, 16 tokens of context: activated experts = min(8, 1·2) = 2 -> 20 µs per layer
    # per layer: 2 norms + qkv + rotary + o (1 µs each) + attention 3 µs + experts 20 µs = 28 µs
    # step: 2 layers · 28 + embedding 1 + final norm 1 + lm_head 5 + sampler 1 = 64 µs
    assert cm.iteration_time_ns([(1, 16)]) == 64_000
    b = cm.breakdown([(1, 16)])
    assert b["moe_experts"] == 40_000 and "gate_up_proj" not in b and "ep_dispatch" not in b
    assert sum(b.values()) == 64_000
    # 16 tokens of prefill: activated = min(8, 32) = 8 -> row 8 (80 µs at 1 token, 179 at 100) at 16: 95 µs
    assert cm.backend.moe_ns(16) == 95_000
    # 4 tokens: 8 activated, between the token keys 1 and 100 of row 8: 80 + 99·3/99 = 83 µs
    assert cm.backend.moe_ns(4) == 83_000
    # 1 token, 2 activated: the row of 2 experts
    assert cm.backend.moe_ns(1) == 20_000


def test_moe_model_without_moe_table_is_an_error(tmp_path):
    perf, models = write_moe_bundle(tmp_path, with_moe=False)
    with pytest.raises(CostModelError, match=r"dense.csv: no rows for op\(s\) act_fn, down_proj, gate_up_proj"):
        CostModel.load(model=MODEL, hardware=HARDWARE, perf_root=perf, models_root=models)
