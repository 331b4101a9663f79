"""Shared helpers: a tiny deterministic fake cost model, engine builders, shared-data paths."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from fleetsim.costmodel.batch import BatchShape
from fleetsim.instance.config import EngineConfig
from fleetsim.instance.engine import Engine
from fleetsim.instance.request import Request

STEP_NS = 1000       # fixed cost of every fake step
TOKEN_NS = 10        # plus this per token computed in the step

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
LSS = SHARED / "llmservingsim"
PERF_ROOT = LSS / "perf"
WORKLOAD_300 = LSS / "workloads" / "sharegpt-llama-3.1-8b-300-sps10.jsonl"
REAL_RUN = LSS / "vllm-runs" / "RTXPRO6000" / "Llama-3.1-8B"
CLUSTER_JSON = REAL_RUN / "cluster_config.json"


class FakeArch:
    name = "fake/Model"
    max_position_embeddings = 1 << 20

    def weight_bytes(self, tp: int = 1) -> int:
        return 0


class FakeCostModel:
    """Each step costs STEP_NS + TOKEN_NS · tokens; no CPU overhead. Records every batch."""

    def __init__(self, num_blocks: int = 1000):
        self.arch = FakeArch()
        self.tp = 1
        self.hardware = SimpleNamespace(name="FakeGPU", memory_gib=1.0)
        self._num_blocks = num_blocks
        self.batches = []

    def time_batch(self, batch) -> int:
        self.batches.append(batch)
        return STEP_NS + TOKEN_NS * batch.tokens

    def decode_steps(self, n: int, ctx_sum: int, ctx_min: int, ctx_max: int):
        """As `CostModel.decode_steps`: each step's shape goes through `time_batch` (recorded)."""
        return lambda j: self.time_batch(BatchShape(n, n, (), n, ctx_sum + j * n, ctx_min + j, ctx_max + j))

    def cpu_overhead_ns(self, num_seqs: int) -> int:
        return 0

    def num_kv_blocks(self, block_size: int, gpu_memory_utilization: float) -> int:
        return self._num_blocks


def step_ns(tokens: int) -> int:
    return STEP_NS + TOKEN_NS * tokens


def make_engine(**cfg) -> Engine:
    """An Engine on the fake cost model; `cfg` are EngineConfig fields (num_gpu_blocks default
    1000; synchronous scheduling unless `async_scheduling=True`: the hand-computed step tables
    of the scheduler tests are those of vLLM's synchronous loop)."""
    cfg.setdefault("num_gpu_blocks", 1000)
    cfg.setdefault("async_scheduling", False)
    return Engine(FakeCostModel(), EngineConfig(**cfg))


def req(rid: int, arrival: int, prompt: int, output: int, ids=None) -> Request:
    return Request(rid, arrival, prompt, output, token_ids=ids)


def check_clean(engine: Engine) -> None:
    """After a run: nothing left, every block free, block manager consistent."""
    assert not engine.has_work
    assert engine.blocks.num_free == engine.blocks.num_blocks
    assert all(r == 0 for r in engine.blocks.refs())
    engine.blocks.check_invariants()


def run_all(engine: Engine, requests) -> list[Request]:
    """Add `requests`, run to completion, check the block manager; returns the requests."""
    for r in requests:
        engine.add_request(r)
    engine.run_to_completion()
    check_clean(engine)
    assert sorted(r.rid for r in engine.finished) == sorted(r.rid for r in requests)
    return list(requests)


def scheduled_per_step(engine: Engine):
    """[(tokens, seqs, prefills, decodes)] of every step run so far (from the fake cost model)."""
    return [(b.tokens, b.seqs, b.prefills, b.decodes) for b in engine.cost_model.batches]


@pytest.fixture
def shared_data() -> Path:
    if not (PERF_ROOT.is_dir() and WORKLOAD_300.is_file() and CLUSTER_JSON.is_file()):
        pytest.skip("shared LLMServingSim data (../shared/data/llmservingsim) not present")
    return LSS


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole pytest session, on loopback, quiet (RAY-NOTES.md rule 8); a
    private one even if `RAY_ADDRESS` or a `ray start` cluster is there."""
    pytest.importorskip("ray")
    from fleetsim.cluster.backends.ray_backend import start_ray
    r, started = start_ray("local", num_cpus=2, object_store_mb=256)
    yield r
    if started:
        r.shutdown()
