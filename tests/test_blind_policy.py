"""A policy that matches prompts by token / hash ids warns once (one stderr line) on a workload
without any, and then routes exactly as least_loaded does; it stays silent when ids exist."""
from __future__ import annotations

import json
import logging

import pytest

from fleetsim.cluster.cli import main
from fleetsim.cluster.policies import make_policy, warn_if_blind
from fleetsim.instance.request import Request
from fleet_helpers import EXAMPLE_WORKLOAD, FLEET_CLUSTER, instance_of, outputs, write_session_workload


@pytest.fixture(scope="module")
def no_ids(tmp_path_factory):
    """The shipped 300-request example with its token ids removed."""
    path = tmp_path_factory.mktemp("w") / "no-ids.jsonl"
    docs = [json.loads(line) for line in EXAMPLE_WORKLOAD.read_text().splitlines()]
    path.write_text("".join(json.dumps({k: v for k, v in d.items() if not k.endswith("_tok_ids")}) + "\n"
                            for d in docs))
    return path


def _run(out, workload, router, capsys, options=None) -> list[str]:
    cluster = FLEET_CLUSTER
    if options is not None:
        cluster = out.parent / f"{out.name}.yaml"
        cluster.write_text(FLEET_CLUSTER.read_text().replace(
            "router: {policy: least_loaded, sync_interval_ms: 50}",
            f"router: {{policy: {router}, sync_interval_ms: 50, options: {json.dumps(options)}}}"))
    capsys.readouterr()
    assert main(["run", "--cluster", str(cluster), "--workload", str(workload), "--out", str(out), "--quiet",
                 "--router", router, "--num-requests", "120"]) == 0
    return capsys.readouterr().err.splitlines()


def test_prefix_aware_without_ids_warns_once_and_routes_as_least_loaded(no_ids, tmp_path, capsys):
    err = _run(tmp_path / "prefix", no_ids, "prefix_aware", capsys)
    assert err == [f"fleetsim: warning: router policy prefix_aware matches prompt prefixes by token or hash ids, "
                   f"but {no_ids} has none: it routes as if no two prompts shared a prefix"]
    assert _run(tmp_path / "least", no_ids, "least_loaded", capsys) == []
    assert instance_of(tmp_path / "prefix") == instance_of(tmp_path / "least")
    assert len(set(instance_of(tmp_path / "least").values())) > 1          # a real choice among instances
    assert outputs(tmp_path / "prefix")[0] == outputs(tmp_path / "least")[0]   # requests.csv byte-identical


def test_prefix_aware_with_token_ids_is_silent(tmp_path, capsys):
    assert _run(tmp_path / "o", EXAMPLE_WORKLOAD, "prefix_aware", capsys) == []


@pytest.mark.parametrize("weights, warns", [({"queue": 1.0, "prefix": 0.5}, True),
                                            ({"queue": 1.0, "prefix": 0.0}, False),
                                            ({"queue": 1.0, "kv": 1.0}, False)])
def test_weighted_warns_only_when_its_prefix_scorer_has_weight(no_ids, tmp_path, capsys, weights, warns):
    err = _run(tmp_path / "o", no_ids, "weighted", capsys, {"weights": weights})
    assert len(err) == int(warns), err
    assert all(line.startswith("fleetsim: warning: router policy weighted matches prompt prefixes") for line in err)


def test_ids_on_a_later_session_turn_count(caplog):
    """A session whose first turn has no ids but a later turn has: the policy can match, no warning."""
    policy = make_policy("prefix_aware", 2)
    first, later = Request(0, 0, 32, 4), Request(1, -1, 48, 4, token_ids=list(range(52)))
    first.followup = later
    with caplog.at_level(logging.WARNING, logger="fleetsim"):
        assert not warn_if_blind(policy, [first], "w.jsonl")
        first.followup = Request(1, -1, 48, 4)
        assert warn_if_blind(policy, [first], "w.jsonl")
        assert not warn_if_blind(make_policy("least_loaded", 2), [first], "w.jsonl")
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        "router policy prefix_aware matches prompt prefixes by token or hash ids, but w.jsonl has none"]


def test_hash_ids_count_as_ids(tmp_path, capsys):
    trace = tmp_path / "mooncake.jsonl"
    trace.write_text("".join(json.dumps({"timestamp": 100 * i, "input_length": 1024, "output_length": 8,
                                         "hash_ids": [i % 3, 7 + i]}) + "\n" for i in range(20)))
    assert _run(tmp_path / "o", trace, "prefix_aware", capsys) == []


def test_session_workload_with_ids_is_silent(tmp_path, capsys):
    work = write_session_workload(tmp_path / "s.jsonl")
    assert _run(tmp_path / "o", work, "prefix_aware", capsys) == []
