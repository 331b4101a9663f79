"""Fast-forward on and off give byte-identical outputs on every example workload."""
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from fleet_helpers import EXAMPLE_CLUSTER, outputs, run_cli, write_session_workload
from test_block_manager import scenario

CASES = {
    "example": ("--num-requests", "300"),
    "example-synchronous": ("--num-requests", "300", "--no-async-scheduling"),
    "kv-pressure-synchronous": ("--num-gpu-blocks", "600", "--num-requests", "150", "--no-async-scheduling"),
    "fleet-least-loaded": ("--instances", "4", "--router", "least_loaded"),
    "kv-pressure-preemptions": ("--num-gpu-blocks", "600", "--num-requests", "150"),
    "no-prefix-caching": ("--no-prefix-caching", "--num-requests", "150"),
    "small-budget-threshold": ("--max-num-batched-tokens", "256", "--long-prefill-token-threshold", "64",
                               "--num-requests", "100"),
    "seq-cap": ("--max-num-seqs", "8", "--num-requests", "100"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fast_forward_is_exact(tmp_path, case):
    args = CASES[case]
    on = outputs(run_cli(tmp_path / "on", *args, cluster=EXAMPLE_CLUSTER))
    off = outputs(run_cli(tmp_path / "off", *args, "--no-fast-forward", cluster=EXAMPLE_CLUSTER))
    assert on == off


def test_fast_forward_is_exact_with_sessions(tmp_path):
    wl = write_session_workload(tmp_path / "s.jsonl")
    args = ("--instances", "2", "--router", "least_loaded", "--sync-interval-ms", "0")
    on = outputs(run_cli(tmp_path / "on", *args, cluster=EXAMPLE_CLUSTER, workload=wl))
    off = outputs(run_cli(tmp_path / "off", *args, "--no-fast-forward", cluster=EXAMPLE_CLUSTER, workload=wl))
    assert on == off


def test_fast_forward_takes_fewer_cost_model_events(tmp_path):
    """It does merge steps: the same number of engine steps, far fewer Python step calls."""
    from fleetsim.cluster.config import load_cluster_config
    from fleetsim.cluster.fleet import load_cost_model
    from fleetsim.cluster.workloads import load_workload
    from fleet_helpers import EXAMPLE_WORKLOAD
    from fleetsim.instance.engine import Engine

    spec = load_cluster_config(str(EXAMPLE_CLUSTER)).instances[0]
    engines = {}
    for ff in (True, False):
        e = Engine(load_cost_model(spec), spec.engine, 0, fast_forward=ff)
        calls = []
        original = e._step
        e._step = lambda: calls.append(1) or original()
        for r in list(load_workload(str(EXAMPLE_WORKLOAD), 100)):
            e.add_request(r)
        e.run_to_completion()
        engines[ff] = (e.steps, len(calls))
    assert engines[True][0] == engines[False][0]
    assert engines[True][1] < engines[False][1] / 3


class ContextCostModel:
    """A fake cost model whose step time depends on every part of the batch shape (decode
    contexts too), so a fast-forward that priced a step from a wrong shape shows."""

    def __init__(self, num_blocks: int):
        from types import SimpleNamespace
        self.arch = SimpleNamespace(name="fake/ctx", max_position_embeddings=1 << 20)
        self.tp = 1
        self.hardware = SimpleNamespace(name="FakeGPU", memory_gib=1.0)
        self._num_blocks = num_blocks

    def time_batch(self, b) -> int:
        return (1000 + 10 * b.tokens + 3 * b.seqs + b.decode_ctx_sum // 7 + b.decode_ctx_min + 2 * b.decode_ctx_max
                + sum(11 * n + c // 3 for n, c in b.prefills))

    def decode_steps(self, n: int, ctx_sum: int, ctx_min: int, ctx_max: int):
        from fleetsim.costmodel.batch import BatchShape
        return lambda j: self.time_batch(BatchShape(n, n, (), n, ctx_sum + j * n, ctx_min + j, ctx_max + j))

    def cpu_overhead_ns(self, num_seqs: int) -> int:
        return 5 * num_seqs

    def num_kv_blocks(self, block_size: int, gpu_memory_utilization: float) -> int:
        return self._num_blocks


def _run_windows(cfg, specs, fast_forward: bool, window_ns: int):
    """Deliver the requests window by window (as the host does) and run; returns what a run reports."""
    from fleetsim.instance.config import EngineConfig
    from fleetsim.instance.engine import NEVER, Engine
    from fleetsim.instance.request import Request
    e = Engine(ContextCostModel(cfg["num_gpu_blocks"]), EngineConfig(**cfg), 0, fast_forward=fast_forward)
    reqs = [Request(rid, t, p, o, token_ids=ids) for rid, t, p, o, ids in specs]
    todo = sorted(reqs, key=lambda r: (r.arrival_ns, r.rid))
    t, i = 0, 0
    while i < len(todo) or e.has_work:
        end = t + window_ns if i < len(todo) else NEVER
        while i < len(todo) and todo[i].arrival_ns < end:
            e.add_request(todo[i])
            i += 1
        while e.has_work and e.next_event_ns() < end and e.now < end:
            e.advance_until(end)
        t = end
    e.blocks.check_invariants()
    for r in e.finished:     # the CSV text of the gaps, in pieces shared by a run's members, is their list's
        assert r.itl_cell() == str(r.itl.tolist())
    per_request = [(r.rid, r.first_scheduled_ns, r.first_token_ns, r.last_token_ns, r.itl, r.preemptions,
                    r.hit_tokens) for r in e.finished]
    return (per_request, e.steps, e.busy_ns, e.prompt_tokens_done, e.output_tokens_done, e.series.drain(True),
            e.scheduler.preemptions, e.scheduler.prefix_hits, e.blocks.free_order())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario(), st.sampled_from([50, 700, 5_000, 10**9]))
def test_fuzz_fast_forward_equals_stepping(case, window_ns):
    """Random engines and workloads (KV pressure and preemption, chunking, thresholds, seat caps,
    prefix caching with and without token identity, async scheduling on and off), delivered in
    windows: fast-forward on and off give the same token times, counters, time series and
    free-block order, and each request's ITL cell is the text of its gaps."""
    cfg, specs = case
    assert _run_windows(cfg, specs, True, window_ns) == _run_windows(cfg, specs, False, window_ns)
