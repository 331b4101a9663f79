"""Pipeline parallelism: stage split in the cost model, micro-batches in flight in the engine."""
import random

import pytest

from conftest import FakeCostModel, check_clean, make_engine
from fleetsim.costmodel import CostModel, CostModelError
from fleetsim.costmodel.batch import BatchShape
from fleetsim.instance.config import EngineConfig
from fleetsim.instance.engine import Engine
from fleetsim.instance.pipeline import PipelineEngine
from fleetsim.instance.pipeline import make_engine as new_engine
from fleetsim.instance.request import Request


class PipelinedFake(FakeCostModel):
    """The conftest fake (1000 ns + 10 ns/token per step), split evenly over pp stages,
    100 ns per stage-to-stage send."""

    def __init__(self, pp, **kw):
        super().__init__(**kw)
        self.pp = pp

    def stage_times_ns(self, b):
        t = self.time_batch(b)
        return [t // self.pp] * (self.pp - 1) + [t - t // self.pp * (self.pp - 1)]

    def p2p_ns(self, tokens):
        return 100


def test_two_stages_overlap_two_micro_batches_hand_computed():
    # budget 10: A's prompt fills batch 1; B goes in batch 2 as soon as stage 0 is free.
    # batch 1 (A, 10 tok, 1100 ns): stage0 [0,550], send, stage1 [650,1200] -> A token 1
    # batch 2 (B, 10 tok) at 550: stage0 [550,1100], stage1 [max(1200,1200),1750] -> B token 1
    # batch 3 (A decode, 1010 ns) at 1200: stage0 [1200,1705], stage1 [max(1805,1750),2310]
    # batch 4 (B decode) at 1750: stage0 [1750,2255], stage1 [max(2355,2310),2860]
    e = new_engine(PipelinedFake(2), EngineConfig(num_gpu_blocks=1000, max_num_batched_tokens=10))
    assert isinstance(e, PipelineEngine)
    a, b = Request(0, 0, 10, 2), Request(1, 0, 10, 2)
    e.add_request(a)
    e.add_request(b)
    e.run_to_completion()
    assert a.token_times == [1200, 2310]
    assert b.token_times == [1750, 2860]
    assert e.steps == 4 and e.busy_ns == 2860
    check_clean(e)


def test_request_in_flight_is_not_scheduled_again():
    e = new_engine(PipelinedFake(4), EngineConfig(num_gpu_blocks=1000))
    r = Request(0, 0, 8, 5)
    e.add_request(r)
    e.run_to_completion()
    gaps = [b - a for a, b in zip(r.token_times, r.token_times[1:])]
    # one request alone cannot pipeline: every decode waits for its previous token (4 stages,
    # 3 sends of 100 ns, 1010 ns of work)
    assert gaps == [1010 + 300] * 4
    check_clean(e)


def _random_requests(seed):
    rng = random.Random(seed)
    out, t = [], 0
    for i in range(60):
        t += rng.randrange(0, 3000)
        out.append(Request(i, t, rng.randrange(2, 80), rng.randrange(1, 40)))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_one_stage_pipeline_engine_equals_engine(seed):
    """PipelineEngine with pp = 1 is the plain engine with synchronous scheduling, preemptions included."""
    times = []
    for cls in (Engine, PipelineEngine):
        e = cls(PipelinedFake(1, num_blocks=40), EngineConfig(num_gpu_blocks=40, block_size=4,
                                                              max_num_batched_tokens=64, async_scheduling=False))
        reqs = _random_requests(seed)
        for r in reqs:
            e.add_request(r)
        e.run_to_completion()
        check_clean(e)
        times.append([(r.rid, tuple(r.token_times), r.preemptions) for r in reqs])
    assert times[0] == times[1]
    assert any(p for _, _, p in times[0])


def test_pipeline_with_kv_pressure_finishes_clean():
    e = new_engine(PipelinedFake(3, num_blocks=40), EngineConfig(num_gpu_blocks=40, block_size=4,
                                                                  max_num_batched_tokens=48))
    reqs = _random_requests(7)
    for r in reqs:
        e.add_request(r)
    e.run_to_completion()
    check_clean(e)
    assert all(len(r.token_times) == r.output_len for r in reqs)
    assert all(x < y for r in reqs for x, y in zip(r.token_times, r.token_times[1:]))


def test_cost_model_stage_split():
    cm = CostModel.load(model="meta-llama/Llama-3.1-8B", hardware="H100-SXM-80GB", backend="profile", pp=3)
    assert cm.stage_layers() == [11, 11, 10]
    b = BatchShape.from_seqs([(1, 1000)] * 16 + [(512, 0)])
    stages = cm.stage_times_ns(b)
    assert sum(stages) == cm.time_batch(b)
    pre, post = cm.backend.edge_ns(b)
    assert stages[0] - pre > stages[2] - post          # 11 layers > 10 layers
    one = CostModel.load(model="meta-llama/Llama-3.1-8B", hardware="H100-SXM-80GB", backend="profile")
    assert cm.num_kv_blocks(16, 0.9) > 2.5 * one.num_kv_blocks(16, 0.9)   # ~32/11 of the KV per GPU
    # a send of T·hidden·2 bytes: latency + bytes / bandwidth
    hw = cm.hardware
    assert cm.p2p_ns(1000) == round((hw.interconnect_latency_us * 1e-6 + 1000 * 4096 * 2 / (hw.interconnect_gbps * 1e9)) * 1e9)
    with pytest.raises(CostModelError, match="pp 33 exceeds"):
        CostModel.load(model="meta-llama/Llama-3.1-8B", hardware="H100-SXM-80GB", backend="profile", pp=33)


def test_fleet_run_with_pp(tmp_path):
    from fleet_helpers import REPO, outputs, run_cli
    cluster = REPO / "configs" / "clusters" / "h100-llama70b-tp2-pp2.yaml"
    a = run_cli(tmp_path / "a", "--num-requests", "80", "--instances", "2", cluster=cluster)
    b = run_cli(tmp_path / "b", "--num-requests", "80", "--instances", "2", cluster=cluster)
    assert outputs(a) == outputs(b)


def test_make_engine_picks_plain_engine_for_one_stage():
    assert type(make_engine()) is Engine


def test_pipeline_rejects_async_scheduling_and_leaves_the_default_off():
    """vLLM 0.14-0.19 runs pp > 1 without async scheduling: unset means off, true is refused."""
    assert new_engine(PipelinedFake(2), EngineConfig(num_gpu_blocks=1000)).async_scheduling is False
    with pytest.raises(ValueError, match="async_scheduling with pp 2: not supported"):
        new_engine(PipelinedFake(2), EngineConfig(num_gpu_blocks=1000, async_scheduling=True))
