"""MoE under DP+EP: ASTRA-Sim ring collectives, per-rank routing, one lock-stepped group step
(hand-computed), KV sizing with sharded experts."""
import pytest

from fleetsim.costmodel import CostModel, CostModelError
from fleetsim.costmodel.batch import BatchShape
from fleetsim.costmodel.collectives import AstraSimNetwork, RingNetwork, VllmCollectives
from fleetsim.costmodel.costmodel import load_hardware
from fleetsim.instance.config import EngineConfig
from fleetsim.instance.dp_group import DPGroup
from fleetsim.instance.engine import Engine
from fleetsim.instance.request import Request
from moe_bundle import HARDWARE, MODEL, write_moe_bundle

NET = AstraSimNetwork(16, 20000, 1597)
LINK = 16 * 2**30 / 1e9          # ASTRA-Sim reads GB/s as 2^30 bytes per 10^9 ns


def test_astra_ring_allgather_and_reducescatter_by_hand():
    # all-gather of a 7200-byte chunk over 2 ranks: one step of the whole chunk, no reduction
    assert NET.allgather_terms(7200, 2) == {"link_latency": 20000, "link_transfer": round(7200 / LINK), "fixed": 30}
    assert NET.allgather_ns(7200, 2) == 20000 + 419 + 30 == 20449
    # reduce-scatter of 12800 bytes over 2: one step of 6400 bytes + one reduction of 3 chunks
    assert NET.reducescatter_terms(12800, 2) == {"link_latency": 20000, "link_transfer": round(6400 / LINK),
                                                 "reduction": round(3 * 6400 / 1597), "fixed": 30}
    assert NET.reducescatter_ns(12800, 2) == 20000 + 373 + 12 + 30 == 20415
    # over 4 ranks: 3 steps of 3200 bytes and 3 reductions; the all-gather 3 steps of the chunk
    assert NET.reducescatter_ns(12800, 4) == 3 * 20000 + round(3 * 3200 / LINK) + round(9 * 3200 / 1597) + 30
    assert NET.allgather_ns(7200, 4) == 3 * 20000 + round(3 * 7200 / LINK) + 30
    # the reduce-scatter is the first half of the all-reduce (same reduction, half the messages)
    ar = NET.allreduce_terms(12800, 2)
    assert ar["reduction"] == NET.reducescatter_terms(12800, 2)["reduction"]
    assert ar["link_latency"] == 2 * NET.reducescatter_terms(12800, 2)["link_latency"]
    assert NET.allgather_ns(7200, 1) == NET.reducescatter_ns(12800, 1) == 0


def test_catalogue_allgather_and_reducescatter_by_hand():
    ring = RingNetwork(450, 3)                   # 450 GB/s per direction, 3 µs per hop
    assert ring.allgather_ns(7200, 2) == 3000 + 7200 // 450 == 3016
    assert ring.reducescatter_ns(12800, 2) == 3000 + round(12800 / 900) == 3014
    # the H100 entry's collectives: NCCL's cheapest variant, n−1 steps of the chunk
    h100 = load_bundle_free_network()
    assert isinstance(h100, VllmCollectives)
    # 2 ranks, 7200 bytes: ring_ll wins (base 6.6 + hop 0.6 µs, 0.2·450 GB/s) = 6600 + 600 + 80 ns
    assert h100.allgather_terms(7200, 2) == {"nccl_ring_ll.latency": 7200, "nccl_ring_ll.transfer": 80}
    assert h100.reducescatter_ns(12800, 2) == 7200 + round(6400 / 90)


def load_bundle_free_network():
    from fleetsim.costmodel.collectives import network_from_hardware
    from fleetsim.costmodel.catalogue import resolve_hardware_doc
    hw = load_hardware("H100-SXM-80GB")
    return network_from_hardware(resolve_hardware_doc("H100-SXM-80GB"), hw.interconnect_gbps,
                                 hw.interconnect_latency_us, "H100")


@pytest.fixture()
def bundle(tmp_path):
    return write_moe_bundle(tmp_path)


def load(bundle, **kw):
    perf, models = bundle
    return CostModel.load(model=MODEL, hardware=HARDWARE, perf_root=perf, models_root=models, **kw)


def test_routing_per_rank_and_collective_sizes(bundle):
    ep = load(bundle, ep=2, network=NET).backend.expert_parallel
    # T = 100, k = 2, ep = 2, E = 8
    assert ep.local_tokens(100) == round(100 * (1 - 0.5 ** 2)) == 75
    assert ep.activated_experts(100) == min(round(100 * 2 / 2), 8 // 2) == 4
    assert ep.activated_experts(1) == 1
    assert ep.dispatch_bytes(100) == (100 // 2) * (64 + 8) * 2 == 7200
    assert ep.dispatch_bytes(1) == 1 * 72 * 2                      # at least one token per rank
    assert ep.combine_bytes(100) == 100 * 64 * 2 == 12800
    assert (ep.dispatch_ns(100), ep.combine_ns(100)) == (20449, 20415)
    # ep = 1 is the plain MoE step: T tokens, min(E, T·k) experts, no collective
    one = load(bundle).backend
    assert one.moe_ns(100) == one.tables.moe(100, 8) == 179_000
    assert one.ep_collectives_ns(100) == (0, 0)
    with pytest.raises(CostModelError, match="ep=3 must divide the 8 experts"):
        load(bundle, ep=3)


# Hand-computed prices on the tiny bundle (moe_bundle.py), ep = 2 over the ASTRA network:
# token ops at T = 100: 2 µs each (embedding, final_layernorm; per layer 2 layernorms, qkv,
# rotary, o_proj = 10 µs); expert block at 75 local tokens, 4 experts: 40 + 74 = 114 µs;
# dispatch 20 449 + combine 20 415 ns per layer.
BUSY_100 = (2000 + 2000 + 5000 + 1000            # embedding, final norm, lm_head(1), sampler(1)
            + 2 * (10_000 + 12_000 + 114_000)    # 2 layers: dense ops, attention (prefill 100), experts
            + 2 * (20449 + 20415))               # dispatch + combine per layer
IDLE_100 = (2000 + 2000 + 6000 + 1500            # lm_head and sampler over 100 dummy decodes
            + 2 * (10_000 + 114_000)             # no attention
            + 2 * (20449 + 20415))


def test_group_step_prices_by_hand(bundle):
    cm = load(bundle, ep=2, network=NET)
    prefill = BatchShape.from_seqs([(100, 0)])
    assert cm.group_time_ns(prefill, 100) == BUSY_100 == 363_728
    assert cm.group_time_ns(BatchShape.empty(), 100) == IDLE_100 == 341_228
    b = cm.group_breakdown(BatchShape.empty(), 100)
    assert b["attention"] == 0 and b["moe_experts"] == 2 * 114_000
    assert (b["ep_dispatch"], b["ep_combine"]) == (2 * 20449, 2 * 20415)
    assert (b["lm_head"], b["sampler"]) == (6000, 1500) and sum(b.values()) == IDLE_100
    # a one-decode member padded to 100 tokens: its own attention, 1 + 99 sequences
    one = BatchShape.from_seqs([(1, 16)])
    assert cm.group_time_ns(one, 100) == IDLE_100 + 2 * 3000
    assert sum(cm.group_breakdown(one, 100).values()) == cm.group_time_ns(one, 100)
    # outside a group the step is priced at its own T (and equals time_batch)
    assert cm.group_time_ns(one, 0) == cm.time_batch(one)


def engine(cm, idx, overhead_ns=0):
    cfg = EngineConfig(max_num_seqs=8, max_num_batched_tokens=256, num_gpu_blocks=64, enable_prefix_caching=False)
    return Engine(cm.variant(overhead_ns=overhead_ns), cfg, idx)


def test_two_member_group_step_one_idle(bundle):
    cm = load(bundle, ep=2, network=NET)
    a, b = engine(cm, 0, overhead_ns=500), engine(cm, 1, overhead_ns=700)
    group = DPGroup([a, b], record_steps=True)
    a.add_request(Request(1, 0, 100, 2))          # 100-token prompt, 2 output tokens
    group.advance_until(1)                        # the steps that start before t = 1 ns
    (step,) = group.steps_log
    assert step.group_tokens == 100
    busy, idle = step.members
    assert (busy.dummy, idle.dummy) == (False, True)
    assert (busy.gpu_ns, idle.gpu_ns) == (BUSY_100, IDLE_100)
    # the slowest member (gpu + its own host overhead) sets the step: max(364 228, 341 928)
    assert step.end == max(BUSY_100 + 500, IDLE_100 + 700) == 364_228
    assert a.now == b.now == group.now == step.end
    assert (a.steps, b.steps, a.busy_ns, b.busy_ns) == (1, 0, step.end, 0)
    req = a.scheduler.running[0]
    assert req.first_token_ns == step.end
    # the decode step: T = 1 in the group (the idle member pads to 1 token, 1 dummy sequence)
    group.run_to_completion()
    decode = group.steps_log[1]
    assert decode.group_tokens == 1
    assert decode.members[1].gpu_ns == cm.group_time_ns(BatchShape.empty(), 1)
    assert decode.end == decode.start + max(m.gpu_ns + m.overhead_ns for m in decode.members)
    (done,) = a.drain_finished()
    assert done.last_token_ns == decode.end and len(group.steps_log) == 2


def test_group_idles_until_the_next_arrival_and_stops_at_the_window(bundle):
    cm = load(bundle, ep=2, network=NET)
    a, b = engine(cm, 0), engine(cm, 1)
    group = DPGroup([a, b], record_steps=True)
    b.add_request(Request(7, 5_000_000, 16, 1))
    assert group.next_event_ns() == 5_000_000
    group.advance_until(5_000_000)                 # nothing starts before the arrival
    assert group.steps_log == [] and group.now == 0
    group.advance_until(10_000_000)
    (step,) = group.steps_log
    assert step.start == 5_000_000 and step.members[0].dummy and not step.members[1].dummy
    assert not group.has_work


def test_kv_cache_with_sharded_experts(bundle):
    # weights per GPU: ep = 1 holds all 8 experts of both layers (2·8·3·64·32 params), ep = 2 half
    cm1, cm2 = load(bundle, memory_gib=0.001), load(bundle, ep=2, memory_gib=0.001)
    assert cm1.weight_bytes_per_gpu() == 274_048
    assert cm1.weight_bytes_per_gpu() - cm2.weight_bytes_per_gpu() == 2 * 8 * 3 * 64 * 32 // 2 * 2 == 98_304
    # blocks of 16 tokens · 256 KV bytes per token; free = 0.001 GiB · 0.9 − weights
    assert cm1.num_kv_blocks(16, 0.9) == int((0.001 * 2**30 * 0.9 - 274_048) // 4096) == 169
    assert cm2.num_kv_blocks(16, 0.9) == int((0.001 * 2**30 * 0.9 - 175_744) // 4096) == 193


@pytest.mark.parametrize("lag", [False, True])
def test_group_members_keep_their_scheduling_mode(bundle, lag):
    """A request arriving at a busy member during step 1 first computes in step 2 with synchronous
    scheduling and in step 3 with vLLM's async scheduling (its step 2 was chosen at step 1's
    start), as in a lone engine; the idle member meanwhile runs dummy batches."""
    cm = load(bundle, ep=2, network=NET)
    cfg = EngineConfig(max_num_seqs=8, max_num_batched_tokens=256, num_gpu_blocks=64, enable_prefix_caching=False,
                       async_scheduling=lag)
    a, b = Engine(cm, cfg, 0), Engine(cm, cfg, 1)
    group = DPGroup([a, b], record_steps=True)
    a.add_request(Request(1, 0, 16, 5))
    a.add_request(Request(2, 1, 16, 1))
    group.run_to_completion()
    ends = [s.end for s in group.steps_log]
    done = {r.rid: r for r in a.drain_finished()}
    assert done[2].first_token_ns == ends[2 if lag else 1]
    assert done[1].last_token_ns == ends[4] and len(ends) == 5
    assert all(s.members[1].dummy for s in group.steps_log)
