"""The API server's front end and the engine-side anchor (`queued`), hand-computed.

Fake steps cost 1000 + 10·tokens ns. A front end of request_ns + per_prompt_token_ns·prompt
delays a request's arrival at the engine; client-side times (TTFT, latency) include it; the
engine takes a request into its queue at the next step boundary (vLLM's queued_ts).
"""
import csv
import json

import pytest

from conftest import FakeCostModel, req, run_all
from fleet_helpers import EXAMPLE_CLUSTER, run_cli
from fleetsim.cluster.config import load_cluster_config
from fleetsim.cluster.errors import InputError
from fleetsim.cluster.metrics import request_row
from fleetsim.instance.config import EngineConfig
from fleetsim.instance.engine import Engine
from fleetsim.instance.frontend import FrontEnd


def engine(frontend: FrontEnd, async_scheduling: bool = False) -> Engine:
    return Engine(FakeCostModel(), EngineConfig(num_gpu_blocks=1000, async_scheduling=async_scheduling),
                  frontend=frontend)


def test_delay_is_fixed_plus_per_prompt_token():
    fe = FrontEnd.from_us(request_us=2.5, per_prompt_token_us=0.04)
    assert (fe.request_ns, fe.per_prompt_token_ns) == (2_500, 40)
    assert fe.delay_ns(100) == 2_500 + 40 * 100 == 6_500


@pytest.mark.parametrize("async_scheduling", [False, True])
def test_front_end_delays_the_engine_and_counts_in_client_times(async_scheduling):
    # sent at 0 with a 10-token prompt: reaches the idle engine at 300 + 20·10 = 500, which
    # runs its prompt [500, 1600) and its decode [1600, 2610).
    e = engine(FrontEnd(300, 20), async_scheduling)
    (r,) = run_all(e, [req(0, 0, 10, 2)])
    assert r.queued_ns == r.first_scheduled_ns == 500
    assert r.token_times == [1_600, 2_610]
    row = request_row(r)
    assert row[4] == 0                        # arrival: the client's send time
    assert row[8] == 1_600                    # TTFT, client side: 500 of front end + 1100
    assert row[-1] == 500                     # queued: the engine-side anchor


@pytest.mark.parametrize("async_scheduling, first", [(False, 2_210), (True, 3_220)])
def test_request_reaching_a_busy_engine_is_queued_at_the_step_boundary(async_scheduling, first):
    # r0's prompt runs [0, 1100); r1, sent at 200 with no front end, is taken from the input
    # queue when that step ends (1100: vLLM's queued_ts) in both modes; it computes in step 2
    # [1100, 2210) synchronously, in step 3 [2110, 3220) with async scheduling.
    e = engine(FrontEnd(), async_scheduling)
    r0, r1 = run_all(e, [req(0, 0, 10, 4), req(1, 200, 10, 1)])
    assert r0.queued_ns == 0
    assert r1.queued_ns == 1_100
    assert r1.token_times == [first]


def test_cluster_yaml_key_and_bad_values(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(EXAMPLE_CLUSTER.read_text() + "frontend: {request_us: 2000, per_prompt_token_us: 0.5}\n")
    spec = load_cluster_config(str(cfg)).instances[0]
    assert spec.frontend == FrontEnd(2_000_000, 500)
    assert load_cluster_config(str(EXAMPLE_CLUSTER)).instances[0].frontend == FrontEnd()
    for bad, msg in (("{request_us: -1}", "frontend.request_us must be a number >= 0"),
                     ("{tokenize_us: 3}", "'frontend' must be a mapping with request_us and/or per_prompt_token_us")):
        cfg.write_text(EXAMPLE_CLUSTER.read_text() + f"frontend: {bad}\n")
        with pytest.raises(InputError, match=msg):
            load_cluster_config(str(cfg))


def _real_run(sim_dir, real_dir, client: bool):
    """A real-run directory whose times are a simulated run's (engine- or client-side clock)."""
    real_dir.mkdir()
    rows = list(csv.DictReader(open(sim_dir / "requests.csv", newline="")))
    lines = [{"request_id": r["request id"], "input_toks": int(r["input"]), "output_toks": int(r["output"]),
              "arrival_time": (0 if client else 1.7e9) + int(r["arrival"]) / 1e9,
              "queued_ts": int(r["queued"]) / 1e9, "first_token_ts": (int(r["arrival"]) + int(r["TTFT"])) / 1e9,
              "last_token_ts": int(r["end_time"]) / 1e9} for r in rows]
    (real_dir / "requests.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (real_dir / "meta.json").write_text("{}\n")


@pytest.mark.parametrize("client", [False, True])
def test_validate_compares_like_with_like(tmp_path, capsys, client):
    """A run against a "real" run made of its own times: zero error from either anchor, and
    the table says which anchor it used."""
    from fleetsim.cluster.cli import main
    cfg = tmp_path / "c.yaml"
    cfg.write_text(EXAMPLE_CLUSTER.read_text() + "frontend: {request_us: 3000, per_prompt_token_us: 1}\n")
    out = run_cli(tmp_path / "sim", "--num-requests", "40", cluster=cfg)
    _real_run(out, tmp_path / "real", client)
    capsys.readouterr()
    assert main(["validate", "--real", str(tmp_path / "real"), "--sim", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["anchor"] == ("client" if client else "engine")
    for m in ("TTFT", "TPOT", "Latency"):
        assert abs(doc[m]["Mean"]["diff_pct"]) < 1e-6, m
    assert main(["validate", "--real", str(tmp_path / "real"), "--sim", str(out)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == ("anchor: real client arrival_time, sim requests.csv arrival (client send)" if client
                     else "anchor: real engine queued_ts, sim requests.csv queued")


def test_sim_from_arrival_is_llmservingsims_comparison(tmp_path, capsys):
    """--sim-from-arrival measures the simulation from the client send: against an
    engine-anchored run of its own times it is long by the front end and the boundary wait."""
    from fleetsim.cluster.cli import main
    cfg = tmp_path / "c.yaml"
    cfg.write_text(EXAMPLE_CLUSTER.read_text() + "frontend: {request_us: 3000}\n")
    out = run_cli(tmp_path / "sim", "--num-requests", "40", cluster=cfg)
    _real_run(out, tmp_path / "real", client=False)
    capsys.readouterr()
    assert main(["validate", "--real", str(tmp_path / "real"), "--sim", str(out), "--json", "--sim-from-arrival"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["anchor"], doc["sim_anchor"]) == ("engine", "client")
    rows = list(csv.DictReader(open(out / "requests.csv", newline="")))
    shift_ms = sum(int(r["queued"]) - int(r["arrival"]) for r in rows) / len(rows) / 1e6
    assert shift_ms >= 3.0
    ttft = doc["TTFT"]["Mean"]
    assert ttft["sim"] - ttft["real"] == pytest.approx(shift_ms)


def test_closed_loop_client_times_include_the_front_end(tmp_path):
    """One client (--max-concurrency 1): each request is sent when the previous answer ends and
    reaches the idle engine 2 ms + 1 µs·300 later; its client-side E2E includes that delay, and
    the E2E times still sum to the span."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(EXAMPLE_CLUSTER.read_text() + "frontend: {request_us: 2000, per_prompt_token_us: 1}\n")
    synth = "synth:n=12,rate=200,prompt=300,output=8,seed=3"
    plain = list(csv.DictReader(open(run_cli(tmp_path / "p", "--max-concurrency", "1", cluster=EXAMPLE_CLUSTER,
                                             workload=synth) / "requests.csv", newline="")))
    rows = list(csv.DictReader(open(run_cli(tmp_path / "f", "--max-concurrency", "1", cluster=cfg,
                                            workload=synth) / "requests.csv", newline="")))
    rows.sort(key=lambda r: int(r["arrival"]))
    delay = 2_000_000 + 1_000 * 300
    for r in rows:
        assert int(r["queued"]) - int(r["arrival"]) == delay      # an idle engine takes it at once
    assert [int(b["arrival"]) for b in rows[1:]] == [int(a["end_time"]) for a in rows[:-1]]
    assert sum(int(r["latency"]) for r in rows) == int(rows[-1]["end_time"]) - int(rows[0]["arrival"])
    assert {int(r["latency"]) for r in rows} == {int(r["latency"]) + delay for r in plain}
