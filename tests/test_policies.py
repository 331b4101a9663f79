"""Each routing policy on hand-made snapshots."""
import os
import subprocess
import sys

import numpy as np
import pytest

from fleetsim.cluster.errors import InputError
from fleetsim.cluster.policies import POLICIES, Policy, make_policy, stable_hash
from fleetsim.cluster.snapshot import Snapshot
from fleet_helpers import REPO
from fleetsim.instance.request import Request


def snaps(*loads):
    """Snapshots from (waiting, running, kv_used, prefill, decode) tuples."""
    return [Snapshot(i, w, r, kv, 100, p, d) for i, (w, r, kv, p, d) in enumerate(loads)]


def rng():
    return np.random.Generator(np.random.PCG64(1))


def r(rid=0, prompt=32, session=None, ids=None):
    q = Request(rid, 0, prompt, 4, token_ids=ids)
    q.session = session
    return q


def test_round_robin_cycles():
    p = make_policy("round_robin", 3)
    assert [p.choose(r(i), snaps(*[(0,) * 5] * 3), rng()) for i in range(7)] == [0, 1, 2, 0, 1, 2, 0]
    assert not p.needs_load


def test_random_is_seeded_and_uniformish():
    p = make_policy("random", 4)
    a, b, four = rng(), rng(), snaps(*[(0,) * 5] * 4)
    first = [p.choose(r(), four, a) for _ in range(400)]
    assert first == [p.choose(r(), four, b) for _ in range(400)]
    counts = np.bincount(first, minlength=4)
    assert len(counts) == 4 and counts.min() > 60


def test_least_loaded_uses_vllm_score_and_lowest_index_on_ties():
    p = make_policy("least_loaded", 3)
    # scores 4w+r: 4·1+0=4, 0+3=3, 4·0+3=3 -> tie between 1 and 2 -> 1
    assert p.choose(r(), snaps((1, 0, 0, 0, 0), (0, 3, 0, 0, 0), (0, 3, 0, 0, 0)), rng()) == 1
    assert p.choose(r(), snaps((0, 5, 0, 0, 0), (1, 0, 0, 0, 0)), rng()) == 1


def test_least_outstanding_tokens():
    p = make_policy("least_outstanding_tokens", 3)
    assert p.choose(r(), snaps((0, 0, 0, 500, 10), (9, 9, 0, 100, 100), (0, 0, 0, 300, 0)), rng()) == 1


def test_least_kv_then_waiting():
    p = make_policy("least_kv", 3)
    assert p.choose(r(), snaps((0, 0, 50, 0, 0), (3, 0, 10, 0, 0), (1, 0, 10, 0, 0)), rng()) == 2


def test_power_of_two_picks_lighter_of_two_seeded_samples():
    p = make_policy("power_of_two", 8)
    s = snaps(*[(i, 0, 0, 0, 0) for i in range(8)])   # instance i has score 4i
    g = rng()
    draws = rng()
    for _ in range(50):
        a, b = draws.choice(8, size=2, replace=False)
        assert p.choose(r(), s, g) == min(a, b)


def test_session_affinity_is_sticky_and_stable():
    p, all16, all17 = make_policy("session_affinity", 16), snaps(*[(0,) * 5] * 16), snaps(*[(0,) * 5] * 17)
    picks = {p.choose(r(i, session="user-42"), all16, rng()) for i in range(20)}
    assert len(picks) == 1
    spread = {p.choose(r(i, session=f"user-{i}"), all16, rng()) for i in range(400)}
    assert len(spread) >= 12
    # growing the fleet moves only a minority of sessions
    q = make_policy("session_affinity", 17)
    moved = sum(p.choose(r(i, session=f"u{i}"), all16, rng()) != q.choose(r(i, session=f"u{i}"), all17, rng())
                for i in range(1000))
    assert moved < 200


def test_stable_hash_is_not_salted():
    """Pinned values, and the same in a process with another string-hash salt."""
    assert stable_hash("router") == 16694144902022646744
    assert stable_hash(("s", 3)) == 11643198334434469979
    code = "from fleetsim.cluster.policies import stable_hash; print(stable_hash('router'), hash('router'))"
    outs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout.split() for seed in ("1", "2")]
    assert outs[0][0] == outs[1][0] == "16694144902022646744"
    assert outs[0][1] != outs[1][1]          # while str hash() differs between the two processes


def test_prefix_aware_prefers_cached_prefix_within_load_cap():
    p = make_policy("prefix_aware", 3, {"load_cap": 4}, block_size=16)
    ids = list(range(64))
    idle = snaps((0, 0, 0, 0, 0), (0, 0, 0, 0, 0), (0, 0, 0, 0, 0))
    first = p.choose(r(0, 64, ids=ids), idle, rng())
    assert first == 0
    p.routed(r(0, 64, ids=ids), 2)           # pretend it went to instance 2
    same_prefix = r(1, 80, ids=ids + list(range(500, 516)))
    assert p.choose(same_prefix, idle, rng()) == 2
    # instance 2 now too loaded (score 8 > 0 + cap 4): the prefix no longer wins
    busy = snaps((0, 0, 0, 0, 0), (0, 1, 0, 0, 0), (2, 0, 0, 0, 0))
    assert p.choose(same_prefix, busy, rng()) == 0
    # unrelated prompt: least loaded, lowest index
    assert p.choose(r(2, 64, ids=list(range(900, 964))), busy, rng()) == 0


def test_weighted_combines_scorers():
    p = make_policy("weighted", 2, {"weights": {"queue": 1.0, "kv": 0.0}})
    assert p.choose(r(), snaps((0, 4, 90, 0, 0), (0, 2, 10, 0, 0)), rng()) == 1
    p = make_policy("weighted", 2, {"weights": {"queue": 0.0, "kv": 1.0}})
    assert p.choose(r(), snaps((0, 1, 90, 0, 0), (0, 9, 10, 0, 0)), rng()) == 1
    with pytest.raises(InputError):
        make_policy("weighted", 2, {"weights": {"bogus": 1}})


class FirstIdle(Policy):
    name = "first_idle"

    def choose(self, request, snapshots, rng):
        return next((s.index for s in snapshots if s.waiting + s.running == 0), self.n - 1)


class NotAPolicy:
    def choose(self, request, snapshots, rng):
        return 0


def test_user_policy_by_dotted_path():
    p = make_policy("test_policies:FirstIdle", 3)
    assert p.choose(r(), snaps((1, 0, 0, 0, 0), (0, 0, 0, 0, 0), (0, 0, 0, 0, 0)), rng()) == 1
    for bad in ("no_such_module.Policy", "nonsense", "test_policies:NotAPolicy", "test_policies.no_such_class"):
        with pytest.raises(InputError):
            make_policy(bad, 2)


def test_every_named_policy_is_registered():
    assert set(POLICIES) == {"round_robin", "random", "least_loaded", "least_outstanding_tokens", "least_kv",
                             "power_of_two", "prefix_aware", "session_affinity", "weighted"}


@pytest.mark.parametrize("name", ["least_loaded", "least_outstanding_tokens", "least_kv"])
def test_lazy_heap_argmin_matches_a_full_scan(name):
    """Through syncs and routed notes, the heap-kept minimum is the scan's (lowest index on ties)."""
    p = make_policy(name, 16)
    g = np.random.Generator(np.random.PCG64(7))
    key = p.key
    snapshots = snaps(*[(0,) * 5] * 16)
    for window in range(30):
        fresh = snaps(*[tuple(int(x) for x in g.integers(0, 4, 5)) for _ in range(16)])
        snapshots[:] = fresh            # the router replaces them in place, then syncs
        p.sync(snapshots)
        for i in range(int(g.integers(0, 40))):
            req = Request(i, 0, int(g.integers(1, 600)), int(g.integers(1, 300)))
            expected = min(range(16), key=lambda j: (key(snapshots[j]), j))
            got = p.choose(req, snapshots, rng())
            assert got == expected
            snapshots[got].note_routed(req)
            p.routed(req, got)


def test_policies_that_declare_no_draws_route_without_a_generator():
    """`draws = False` policies are given rng=None (the router makes no generator); they route as
    with one, and the drawing ones (random, power_of_two) still declare draws."""
    four = snaps((3, 1, 10, 0, 5), (0, 2, 50, 0, 9), (1, 0, 5, 0, 1), (0, 0, 80, 0, 2))
    quiet = [name for name in sorted(POLICIES) if not POLICIES[name].draws]
    assert set(quiet) >= {"round_robin", "least_loaded", "session_affinity", "prefix_aware"}
    assert POLICIES["random"].draws and POLICIES["power_of_two"].draws
    for name in quiet:
        with_rng, without = make_policy(name, 4), make_policy(name, 4)
        for p in (with_rng, without):
            if hasattr(p, "sync"):
                p.sync(four)
        reqs = [r(i, ids=list(range(i % 3, 64))) for i in range(12)]
        assert [with_rng.choose(q, four, rng()) for q in reqs] == [without.choose(q, four, None) for q in reqs], name


def test_router_makes_a_generator_only_for_a_policy_that_draws():
    from fleetsim.cluster.router import Router

    class Mine(Policy):                  # a user policy that says nothing about draws
        def choose(self, request, snapshots, rng):
            return int(rng.integers(len(snapshots)))
    assert isinstance(Router(Mine(2), 2, 50_000_000, 0).rng, np.random.Generator)
    assert Router(make_policy("round_robin", 2), 2, 50_000_000, 0).rng is None


def test_a_round_robin_replay_does_not_import_numpy_random():
    code = ("import sys, fleetsim; fleetsim.simulate('configs/clusters/rtxpro6000-llama8b.yaml', "
            "'configs/workloads/sharegpt-llama-3.1-8b-300-sps10.jsonl', num_requests=20); "
            "print('numpy.random' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"
