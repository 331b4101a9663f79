"""Collectives by algorithm and size: hand-computed ASTRA-Sim ring, vLLM custom all-reduce / NCCL."""
from __future__ import annotations

import pytest

from fleetsim.costmodel import CostModel, CostModelError
from fleetsim.costmodel.collectives import (AstraSimNetwork, NcclVariant, RingNetwork, VllmCollectives,
                                           network_from_hardware)
from fleetsim.costmodel.catalogue import resolve_hardware_doc

# LLMServingSim's shipped cluster JSON values: link_bw 16 GB/s (2^30 B), link_latency 20 µs, RTX PRO 6000 mem_bw
ASTRA = AstraSimNetwork(link_gb_s=16, link_latency_ns=20_000, mem_bw_gb_s=1597)


def test_astra_ring_allreduce_one_decode_token_over_two_ranks():
    # S = 1 token · 4096 hidden · 2 B = 8192 B, n = 2: chunk S/n = 4096 B
    # 2(n−1)·L = 40 000 ns; 2(n−1)·4096 / (16·2^30/10^9 B/ns) = 8192 / 17.179869184 = 476.84 → 477
    # (n−1)·3·4096 / 1597 = 7.69 → 8; + 30
    terms = ASTRA.allreduce_terms(8192, 2)
    assert terms == {"link_latency": 40_000, "link_transfer": 477, "reduction": 8, "fixed": 30}
    assert ASTRA.allreduce_ns(8192, 2) == 40_515
    # the closed form, unrounded: 40 514.5
    assert ASTRA.allreduce_ns(8192, 2) == pytest.approx(2 * (20_000 + 4096 / (16 * 2**30 / 1e9)) + 3 * 4096 / 1597 + 30,
                                                        abs=1.5)


def test_astra_ring_allreduce_a_prefill_chunk_over_two_and_four_ranks():
    # S = 1000 tokens · 4096 · 2 = 8 192 000 B, n = 2: chunk 4 096 000 B
    # transfer 2·4 096 000 / 17.179869184 = 476 837.16 → 476 837; reduction 3·4 096 000 / 1597 = 7694.43 → 7694
    assert ASTRA.allreduce_terms(8_192_000, 2) == {"link_latency": 40_000, "link_transfer": 476_837,
                                                   "reduction": 7694, "fixed": 30}
    assert ASTRA.allreduce_ns(8_192_000, 2) == 524_561
    # n = 4, S = 8192 B: chunk 2048; 6·20 000; 6·2048/17.179869184 = 715.26; 3·3·2048/1597 = 11.54
    assert ASTRA.allreduce_terms(8192, 4) == {"link_latency": 120_000, "link_transfer": 715, "reduction": 12,
                                              "fixed": 30}
    assert ASTRA.allreduce_ns(8192, 1) == 0 and ASTRA.allreduce_terms(8192, 1) == {}


def test_astra_network_sets_the_pipeline_link():
    assert ASTRA.link() == {"interconnect_gbps": 16 * 2**30 / 1e9, "interconnect_latency_us": 20.0}


def test_plain_ring_is_the_earlier_formula():
    ring = RingNetwork(gbps=100, latency_us=20)
    # 2 ranks: 2·1·(20 µs + 1e6 B / (2·100 GB/s)) = 50 µs ;  4 ranks: 6·(20 + 2.5) µs = 135 µs
    assert ring.allreduce_ns(1_000_000, 2) == 50_000
    assert ring.allreduce_ns(1_000_000, 4) == 135_000
    assert ring.allreduce_terms(1_000_000, 4) == {"ring.latency": 120_000, "ring.transfer": 15_000}
    assert ring.allreduce_ns(1_000_000, 1) == 0
    with pytest.raises(CostModelError, match="interconnect_gbps"):
        RingNetwork(0, 1).allreduce_ns(10, 2)


VLLM = VllmCollectives(link_gbps=400, barrier_us=1.0, custom_max_bytes=8 << 20, custom_ranks=(2, 4, 6, 8),
                       one_shot_below=((2, 8 << 20), (4, 512 << 10), (8, 256 << 10)), custom_launch_us=2.0,
                       custom_bw_eff=0.5,
                       nccl=(NcclVariant("nccl_ring_ll", 3.0, 0.5, 0.25), NcclVariant("nccl_ring_simple", 8.0, 3.0, 0.8)))


def test_vllm_picks_custom_allreduce_by_size_and_world_size():
    assert VLLM.algorithm(1 << 20, 2) == "one_shot"           # two ranks: always one-shot below max_size
    assert VLLM.algorithm(300 << 10, 4) == "one_shot"          # < 512 KiB at <= 4 ranks
    assert VLLM.algorithm(600 << 10, 4) == "two_shot"
    assert VLLM.algorithm(300 << 10, 8) == "two_shot"          # >= 256 KiB at 8 ranks
    assert VLLM.algorithm(100 << 10, 8) == "one_shot"
    assert VLLM.algorithm(8 << 20, 8).startswith("nccl_")      # max_size is exclusive
    assert VLLM.algorithm(1024, 3).startswith("nccl_")         # 3 ranks: no custom all-reduce


def test_vllm_algorithm_terms_by_hand():
    # one-shot, 8 ranks, 16 KiB: launch 2 µs + 2 barriers of 1 µs; (n−1)·S / (0.5·400 GB/s) = 7·16384/200 = 573.44 ns
    assert VLLM.allreduce_terms(16384, 8) == {"one_shot.latency": 4000, "one_shot.transfer": 573}
    # two-shot, 8 ranks, 1 MiB: 2 + 3·1 µs; 2·7/8 · 1 048 576 / 200 = 9175.04 ns
    assert VLLM.allreduce_terms(1 << 20, 8) == {"two_shot.latency": 5000, "two_shot.transfer": 9175}
    # NCCL over 3 ranks, 64 MiB: ring LL = 3 + 4·0.5 µs + (4/3)·2^26 / 100 = 894 784.85 ns;
    # ring Simple = 8 + 4·3 µs + (4/3)·2^26 / 320 = 279 620.27 ns → Simple wins
    assert VLLM.allreduce_terms(1 << 26, 3) == {"nccl_ring_simple.latency": 20_000,
                                               "nccl_ring_simple.transfer": 279_620}
    # 3 ranks, 1 KiB: LL = 5000 + 13.65 ns beats Simple = 20 000 + 4.3 ns
    assert VLLM.algorithm(1024, 3) == "nccl_ring_ll"


def test_tp8_decode_step_is_faster_than_tp4_on_h100():
    """Measured vLLM TPOT drops ~25 % from TP 4 to TP 8 on Hopper (issue 11); with vLLM's
    collectives the TP 8 decode step is faster; with the fixed-latency ring it was not much."""
    seqs = [(1, 1024)] * 8
    t4 = CostModel.load("meta-llama/Llama-3.1-70B", "H100-SXM-80GB", "roofline", 4).iteration_time_ns(seqs)
    t8 = CostModel.load("meta-llama/Llama-3.1-70B", "H100-SXM-80GB", "roofline", 8).iteration_time_ns(seqs)
    assert t8 < 0.85 * t4
    bd = CostModel.load("meta-llama/Llama-3.1-70B", "H100-SXM-80GB", "roofline", 8).breakdown(seqs)
    assert {k for k in bd if k.startswith("allreduce.")} == {"allreduce.one_shot.latency", "allreduce.one_shot.transfer"}


def test_catalogue_collectives_and_link_overrides():
    doc = resolve_hardware_doc("H100-SXM-80GB")
    net = network_from_hardware(doc, 450, 3, "H100")
    assert isinstance(net, VllmCollectives) and 8 in net.custom_ranks and net.custom_max_bytes == 8 << 20
    fast = CostModel.load("meta-llama/Llama-3.1-70B", "H100-SXM-80GB", "roofline", 8)
    slow = CostModel.load("meta-llama/Llama-3.1-70B", "H100-SXM-80GB", "roofline", 8, link_gbps=45,
                          link_latency_us=30)
    assert slow.hardware.interconnect_gbps == 45 and slow.hardware.interconnect_latency_us == 30
    seqs = [(512, 0)]
    assert slow.iteration_time_ns(seqs) > fast.iteration_time_ns(seqs)
    with pytest.raises(CostModelError, match="link_gbps"):
        CostModel.load("meta-llama/Llama-3.1-70B", "H100-SXM-80GB", "roofline", 8, link_gbps=0)
    with pytest.raises(CostModelError, match="explicit network"):
        CostModel.load("meta-llama/Llama-3.1-70B", "H100-SXM-80GB", "roofline", 8, network=ASTRA, link_gbps=4)
    bad = dict(doc, collectives={"nccl": {"ring": {"base_us": 1}}})
    with pytest.raises(CostModelError, match="collectives.nccl.ring"):
        network_from_hardware(bad, 450, 3, "H100")


def test_fleetsim_yaml_link_overrides_reach_the_cost_model():
    from fleetsim.cluster.config import config_from_doc
    from fleetsim.cluster.errors import InputError
    from fleetsim.cluster.fleet import load_cost_model
    doc = {"model": "meta-llama/Llama-3.1-70B", "hardware": "H100-SXM-80GB", "cost_model": "roofline", "tp": 8,
           "link_gbps": 45, "instances": [{"count": 1}, {"count": 1, "link_latency_us": 30}]}
    a, b = config_from_doc(doc, "c.yaml", ".").instances
    assert (a.link_gbps, a.link_latency_us, b.link_gbps, b.link_latency_us) == (45.0, None, 45.0, 30.0)
    cm = load_cost_model(b)
    assert (cm.hardware.interconnect_gbps, cm.hardware.interconnect_latency_us) == (45.0, 30.0)
    # one-shot at 8 ranks, one token of 8192·2 B: 2 µs launch + 2 barriers of 30 µs; 7·16384 / (0.8·45 GB/s)
    assert cm.state.network.allreduce_terms(16384, 8) == {"one_shot.latency": 62_000, "one_shot.transfer": 3186}
    with pytest.raises(InputError, match="field 'link_gbps' must be a positive number"):
        config_from_doc({**doc, "link_gbps": 0}, "c.yaml", ".")
