"""Fast-forward on and off give byte-identical outputs on every example workload."""
import pytest

from fleet_helpers import EXAMPLE_CLUSTER, outputs, run_cli, write_session_workload

CASES = {
    "example": ("--num-requests", "300"),
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
    from cluster.config import load_cluster_config
    from cluster.fleet import load_cost_model
    from cluster.workload import load_llmservingsim_jsonl
    from fleet_helpers import EXAMPLE_WORKLOAD
    from instance.engine import Engine

    spec = load_cluster_config(str(EXAMPLE_CLUSTER)).instances[0]
    engines = {}
    for ff in (True, False):
        e = Engine(load_cost_model(spec), spec.engine, 0, fast_forward=ff)
        calls = []
        original = e._step
        e._step = lambda: calls.append(1) or original()
        for r in load_llmservingsim_jsonl(str(EXAMPLE_WORKLOAD), 100).initial:
            e.add_request(r)
        e.run_to_completion()
        engines[ff] = (e.steps, len(calls))
    assert engines[True][0] == engines[False][0]
    assert engines[True][1] < engines[False][1] / 3
