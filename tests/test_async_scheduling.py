"""vLLM's async scheduling: the lag of one step, hand-computed on the fake cost model.

Fake steps cost 1000 + 10·tokens ns. With async scheduling step n+1's batch is chosen when step
n starts: a request that arrives during step n first computes in step n+2, and a request that
finishes in step n holds its seat and blocks while step n+1 is chosen.
"""
import pytest

from conftest import CLUSTER_JSON, check_clean, make_engine, req, run_all, scheduled_per_step
from fleet_helpers import EXAMPLE_CLUSTER, outputs, run_cli


def engine(async_scheduling: bool, fast_forward: bool, **cfg):
    e = make_engine(async_scheduling=async_scheduling, **cfg)
    e.fast_forward = fast_forward
    return e


@pytest.mark.parametrize("fast_forward", [True, False])
def test_request_arriving_mid_step_first_computes_two_steps_later(fast_forward):
    # step 1 [0, 1100): r0's prompt (10 tokens). r1 arrives at 500, during step 1.
    # step 2 [1100, 2110): chosen at 0 (when step 1 started): r0's decode only.
    # step 3 [2110, 3220): chosen at 1100: r0's decode + r1's prompt (11 tokens).
    # step 4 [3220, 4240): both decode; r0 has 4 tokens, r1 its 2: both done.
    e = engine(True, fast_forward)
    r0, r1 = run_all(e, [req(0, 0, 10, 4), req(1, 500, 10, 2)])
    assert scheduled_per_step(e) == [(10, 1, ((10, 0),), 0), (1, 1, (), 1), (11, 2, ((10, 0),), 1),
                                     (2, 2, (), 2)]
    assert r0.token_times == [1_100, 2_110, 3_220, 4_240]
    assert r1.first_scheduled_ns == 1_100          # vLLM's scheduler ran when step 2 started
    assert r1.token_times == [3_220, 4_240]
    # synchronous: r1 joins step 2 (chosen at 1100, when it starts): [1100, 2210)
    s = engine(False, fast_forward)
    s0, s1 = run_all(s, [req(0, 0, 10, 4), req(1, 500, 10, 2)])
    assert s1.token_times == [2_210, 3_230] and s0.token_times == [1_100, 2_210, 3_230, 4_240]


@pytest.mark.parametrize("fast_forward", [True, False])
def test_finished_request_holds_its_seat_while_the_next_step_is_chosen(fast_forward):
    # max_num_seqs 2. step 1 [0, 1200): a's and b's prompts; c waits for a seat.
    # step 2 [1200, 2220): both decode; a's last token (2 of 2) at 2220.
    # step 3 [2220, 3230): chosen at 1200, a still holds its seat: b's decode only.
    # step 4 [3230, 4340): chosen at 2220 (a released): b's decode + c's prompt.
    # step 5 [4340, 5350): c finished in step 4 and is skipped: b's last decode.
    e = engine(True, fast_forward, max_num_seqs=2)
    a, b, c = run_all(e, [req(0, 0, 10, 2), req(1, 0, 10, 5), req(2, 0, 10, 1)])
    assert scheduled_per_step(e) == [(20, 2, ((10, 0), (10, 0)), 0), (2, 2, (), 2), (1, 1, (), 1),
                                     (11, 2, ((10, 0),), 1), (1, 1, (), 1)]
    assert a.token_times == [1_200, 2_220]
    assert c.first_scheduled_ns == 2_220 and c.token_times == [4_340]
    assert b.token_times == [1_200, 2_220, 3_230, 4_340, 5_350]
    # synchronous: c takes a's seat in step 3 [2220, 3330)
    s = engine(False, fast_forward, max_num_seqs=2)
    _, _, sc = run_all(s, [req(0, 0, 10, 2), req(1, 0, 10, 5), req(2, 0, 10, 1)])
    assert sc.first_scheduled_ns == 2_220 and sc.token_times == [3_330]


def test_nothing_to_choose_waits_for_the_outputs_and_schedules_afresh():
    # max_num_seqs 1. step 1 [0, 1100): r0's prompt; step 2 [1100, 2110): its last token.
    # Step 3, chosen at 1100, has nothing (r0 holds the only seat): vLLM waits for step 2's
    # outputs and schedules at 2110 with r1 (arrived at 1500) admitted: [2110, 3210).
    e = engine(True, True, max_num_seqs=1)
    r0, r1 = run_all(e, [req(0, 0, 10, 2), req(1, 1_500, 10, 1)])
    assert r0.token_times == [1_100, 2_110]
    assert r1.first_scheduled_ns == 2_110 and r1.token_times == [3_210]
    assert e.steps == 3


def test_idle_engine_starts_at_the_arrival():
    e = engine(True, True)
    (r0,) = run_all(e, [req(0, 7_000, 10, 3)])
    assert r0.first_scheduled_ns == 7_000
    assert r0.token_times == [8_100, 9_110, 10_120]


@pytest.mark.parametrize("fast_forward", [True, False])
def test_finishing_request_chosen_as_preemption_victim_is_released_not_recomputed(fast_forward):
    # 3 blocks of 4 tokens. step 1 [0, 1120): r0's 8-token prompt (2 blocks) and r1's 4 (1
    # block); r1 is done (1 output token) and finishing. Step 2, chosen while r1 still holds its
    # block: r0's decode needs a third block, none is free, the tail of the running list is r1:
    # preempting it frees its block (r0 is not preempted), and nothing is recomputed or counted.
    e = engine(True, fast_forward, num_gpu_blocks=3, block_size=4, enable_prefix_caching=False)
    r0, r1 = run_all(e, [req(0, 0, 8, 2), req(1, 0, 4, 1)])
    assert scheduled_per_step(e) == [(12, 2, ((8, 0), (4, 0)), 0), (1, 1, (), 1)]
    assert r0.token_times == [1_120, 2_130] and r1.token_times == [1_120]
    assert r0.preemptions == r1.preemptions == e.scheduler.preemptions == 0


def test_status_of_the_running_count_leaves_finishing_out():
    e = engine(True, False, max_num_seqs=2)
    for r in [req(0, 0, 10, 1), req(1, 0, 10, 3)]:
        e.add_request(r)
    e.advance_until(1)          # step 1: both prompts; r0 is done (1 token), its release pending
    assert list(e.scheduler.finishing) == [0]
    assert e.num_running == 1 and e.load_tuple()[1] == 1
    e.run_to_completion()
    check_clean(e)


def test_flag_and_config_keys(tmp_path):
    """--no-async-scheduling and the YAML key give the synchronous bytes; the default differs."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(EXAMPLE_CLUSTER.read_text().replace("  block_size: 16\n", "  block_size: 16\n  async_scheduling: false\n"))
    args = ("--num-requests", "60")
    flag = outputs(run_cli(tmp_path / "flag", *args, "--no-async-scheduling", cluster=EXAMPLE_CLUSTER))
    key = outputs(run_cli(tmp_path / "key", *args, cluster=cfg))
    on = outputs(run_cli(tmp_path / "on", *args, cluster=EXAMPLE_CLUSTER))
    back_on = outputs(run_cli(tmp_path / "back", *args, "--async-scheduling", cluster=cfg))
    assert flag == key
    assert on == back_on and on[0] != flag[0]


def test_llmservingsim_json_defaults_to_synchronous(shared_data):
    from fleetsim.cluster.config import load_cluster_config
    cfg = load_cluster_config(str(CLUSTER_JSON))
    assert all(s.engine.async_scheduling is False for s in cfg.instances)


def test_bad_value_names_the_key(tmp_path):
    from fleetsim.cluster.config import load_cluster_config
    from fleetsim.cluster.errors import InputError
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: meta-llama/Llama-3.1-8B\nhardware: RTXPRO6000\nengine: {async_scheduling: 1}\n")
    with pytest.raises(InputError, match="async_scheduling must be true or false"):
        load_cluster_config(str(cfg))
