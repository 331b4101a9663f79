"""Profile-backend attention pricing: `aggregate` (LLMServingSim's one lookup at Σ chunks, Σ
contexts) versus `per_sequence` (each prefill on its own, only measured slices, decodes as a part
or in a mixed slice), on a small hand-written table and on the shipped H100 bundle."""
from __future__ import annotations

import numpy as np
import pytest

from fleetsim.costmodel import CostModel, CostModelError
from fleetsim.costmodel.batch import BatchShape
from fleetsim.costmodel.costmodel import load_arch
from fleetsim.costmodel.architecture import sequence_for
from fleetsim.costmodel.profile import ProfileBackend, ProfileTables

# (prefill_chunk, kv_prefill, n_decode, kv_decode) -> µs
TABLE = {
    (16, 0, 0, 0): 10, (16, 100, 0, 0): 20,
    (32, 0, 0, 0): 12, (32, 100, 0, 0): 24,
    (64, 0, 0, 0): 16, (64, 100, 0, 0): 30,
    (0, 0, 1, 100): 10, (0, 0, 1, 200): 12,
    (0, 0, 2, 100): 14, (0, 0, 2, 200): 18,
}
MIXED = {(32, 0, 2, 100): 20, (64, 0, 2, 100): 26}
FLOOR_US = 8      # 10 − 16·(12 − 10)/(32 − 16): the kv 0 prefill curve extrapolated to chunk 0


def tiny_backend(pricing: str, meta: dict, mixed: bool = False) -> ProfileBackend:
    seq = sequence_for("llama")
    ops = sorted(set(seq.layer_ops(moe=False) + seq.pre_ops + seq.post_ops))
    rows = {**TABLE, **(MIXED if mixed else {})}
    keys = sorted(rows)
    raw = {
        "dense.csv": {"layer": np.array(ops, dtype=object), "tokens": np.ones(len(ops)),
                      "time_us": np.ones(len(ops))},
        "per_sequence.csv": {"layer": np.array(seq.seq_ops, dtype=object), "sequences": np.ones(len(seq.seq_ops)),
                             "time_us": np.ones(len(seq.seq_ops))},
        "attention.csv": {name: np.array([k[i] for k in keys], dtype=float) for i, name in
                          enumerate(("prefill_chunk", "kv_prefill", "n_decode", "kv_decode"))}
        | {"time_us": np.array([rows[k] for k in keys], dtype=float)},
        "meta.yaml": meta,
    }
    tables = ProfileTables(raw, 1, "tiny", model_type="llama")
    return ProfileBackend(tables, load_arch("meta-llama/Llama-3.1-8B"), attention_pricing=pricing)


def ns(b: ProfileBackend, seqs) -> int:
    return b.attention_ns(BatchShape.from_seqs(seqs))


def test_floor_is_the_zero_chunk_intercept():
    assert tiny_backend("per_sequence", {}).floor_ns == FLOOR_US * 1000


def test_two_prefills_priced_each_with_its_own_chunk_and_context():
    seqs = [(32, 0), (16, 100)]
    # per sequence: t(32, 0) + t(16, 100) − one call's fixed cost = 12 + 20 − 8 µs
    assert ns(tiny_backend("per_sequence", {}), seqs) == (12 + 20 - FLOOR_US) * 1000
    # aggregate: one sequence of 48 chunk tokens after 100 cached: halfway between t(32, 100) and t(64, 100)
    assert ns(tiny_backend("aggregate", {}), seqs) == (24 + 30) // 2 * 1000


def test_decodes_beside_a_prefill_are_a_part_without_serving_engine_mixed_points():
    b = tiny_backend("per_sequence", {"mixed_attention_kernel": "flash_attn2_varlen"}, mixed=True)
    # t(32, 0) + t(2 decodes @ 100) − floor = 12 + 14 − 8 µs (the mixed rows are not used)
    assert ns(b, [(32, 0), (1, 100), (1, 100)]) == (12 + 14 - FLOOR_US) * 1000


def test_mixed_points_of_the_serving_engine_interpolate_between_measured_slices():
    b = tiny_backend("per_sequence", {"mixed_attention_kernel": "serving_engine"}, mixed=True)
    # 1 decode next to a 32-token chunk: halfway between the (32, nd 0) and (32, nd 2) slices
    assert ns(b, [(32, 0), (1, 100)]) == (12 + 20) // 2 * 1000
    # a second prefill adds its own pure-prefill time less the fixed cost: 16 + 20 − 8 µs
    assert ns(b, [(32, 0), (16, 100), (1, 100)]) == (16 + 20 - FLOOR_US) * 1000
    # LLMServingSim's lookup has no (32, nd 1) slice and takes the nearest one, (32, nd 0):
    # the decode costs nothing
    agg = tiny_backend("aggregate", {"mixed_attention_kernel": "serving_engine"}, mixed=True)
    assert ns(agg, [(32, 0), (1, 100)]) == 12 * 1000


def test_a_bundle_profiled_inside_vllm_counts_as_the_serving_engine():
    assert tiny_backend("per_sequence", {"vllm_version": "0.19.0"}, mixed=True).mixed_slices
    assert not tiny_backend("per_sequence", {}, mixed=True).mixed_slices
    assert not tiny_backend("per_sequence", {"vllm_version": "0.19.0"}).mixed_slices   # no mixed rows


def test_decode_only_steps_are_priced_alike_by_both():
    seqs = [(1, 100), (1, 200)]
    assert ns(tiny_backend("per_sequence", {}), seqs) == ns(tiny_backend("aggregate", {}), seqs) == 16 * 1000


H100 = dict(model="meta-llama/Llama-3.1-8B", hardware="H100-SXM-80GB", backend="profile")


def test_sparse_mixed_grid_aggregate_prices_8_decodes_at_zero_then_jumps():
    """The H100 bundle measures mixed batches at 16/64/256 decodes only."""
    agg = CostModel.load(**H100, attention_pricing="aggregate").backend
    at = [agg.attention_ns(BatchShape.from_seqs([(256, 0)] + [(1, 1024)] * n)) for n in (0, 8, 9, 16)]
    assert at[0] == at[1]                   # 8 decodes: the nearest slice is the pure prefill
    assert at[2] > 1.9 * at[1]              # then a jump
    per = CostModel.load(**H100, attention_pricing="per_sequence").backend
    times = [per.attention_ns(BatchShape.from_seqs([(256, 0)] + [(1, 1024)] * n)) for n in range(0, 33)]
    assert all(a < b for a, b in zip(times, times[1:]))
    # FA2-varlen mixed points: prefill part + decode part − one call's fixed cost
    prefill = per.attention_ns(BatchShape.from_seqs([(256, 0)]))
    decode = per.attention_ns(BatchShape.from_seqs([(1, 1024)] * 8))
    assert times[8] == round(prefill + decode - per.floor_ns)


def test_h100_bundles_default_to_per_sequence_llmservingsim_bundle_to_aggregate():
    assert CostModel.load(**H100).backend.per_sequence
    assert not CostModel.load("meta-llama/Llama-3.1-8B", "RTXPRO6000", "profile").backend.per_sequence
    with pytest.raises(CostModelError, match="attention_pricing"):
        CostModel.load(**H100, attention_pricing="sum")


def test_llmservingsim_cluster_json_keeps_llmservingsim_arithmetic():
    from fleetsim.cluster.fleet import load_cost_model
    from fleetsim.cluster.llmservingsim import from_llmservingsim_json
    doc = {"nodes": [{"instances": [{"model_name": "meta-llama/Llama-3.1-8B", "hardware": "H100-SXM-80GB",
                                     "npu_mem": {"mem_size": 80, "mem_util": 0.9}, "tp_size": 1}]}]}
    spec = from_llmservingsim_json(doc, "c.json").instances[0]
    assert spec.attention_pricing == "aggregate"           # although the H100 bundle defaults to per_sequence
    assert not load_cost_model(spec).backend.per_sequence
