"""Full garbage collections are spaced out while a run lasts (cluster/full_collections.py)."""
import gc

import pytest

import fleetsim.cluster.fleet_loop as fleet_loop
from fleetsim.cluster.full_collections import FACTOR, spaced_full_collections
from fleet_helpers import EXAMPLE_CLUSTER, EXAMPLE_WORKLOAD, run_cli


def test_the_third_threshold_is_raised_inside_and_restored_after():
    before = gc.get_threshold()
    with spaced_full_collections():
        assert gc.get_threshold() == (before[0], before[1], before[2] * FACTOR)
    assert gc.get_threshold() == before
    with pytest.raises(RuntimeError), spaced_full_collections():
        raise RuntimeError("a failed run")
    assert gc.get_threshold() == before


def test_a_threshold_set_meanwhile_is_left_alone():
    before = gc.get_threshold()
    try:
        with spaced_full_collections():
            gc.set_threshold(500, 5, 5)
        assert gc.get_threshold() == (500, 5, 5)
    finally:
        gc.set_threshold(*before)


def test_a_run_spaces_them_and_leaves_the_process_as_it_was(tmp_path, monkeypatch):
    seen, advance = [], fleet_loop.FleetLoop.advance

    def watching(self):
        seen.append(gc.get_threshold()[2])
        return advance(self)
    monkeypatch.setattr(fleet_loop.FleetLoop, "advance", watching)
    before = gc.get_threshold()
    run_cli(tmp_path / "out", cluster=EXAMPLE_CLUSTER, workload=EXAMPLE_WORKLOAD)
    assert seen and set(seen) == {before[2] * FACTOR}
    assert gc.get_threshold() == before
