"""Every workload loader on small inline samples and, where ../shared is present, on the real
files (request counts and token totals equal to what the files hold, computed with pandas);
content detection, windows, --num-requests, clipping, and one-line errors."""
import json
from pathlib import Path

import numpy as np
import pytest

from fleetsim.cluster.errors import InputError
from fleetsim.cluster.workloads import load_workload

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TRACES = SHARED / "traces"
VIDUR = SHARED / "peer-runs" / "vidur" / "poisson_qps1.5_n1000_p512_d128_seed42.csv"


def reqs(wl):
    return [(r.rid, r.arrival_ns, r.prompt_len, r.output_len) for r in wl]


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_vidur_csv_inline(tmp_path):
    p = write(tmp_path, "v.csv", "arrived_at,num_prefill_tokens,num_decode_tokens\n"
                                 "0.5,512,128\n0.25,100,7\n1.000000001,3,1\n")
    wl = load_workload(p)
    # absolute times (not shifted), sorted by arrival, ids in file order
    assert reqs(wl) == [(1, 250_000_000, 100, 7), (0, 500_000_000, 512, 128), (2, 1_000_000_001, 3, 1)]
    assert reqs(load_workload(p, time_scale=2.0))[0] == (1, 500_000_000, 100, 7)


def test_burstgpt_csv_inline(tmp_path):
    p = write(tmp_path, "b.csv", "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
                                 "5.0,ChatGPT,472,18,490,Conversation log\n"
                                 "7.5,GPT-4,1087,0,1087,API log\n")
    assert reqs(load_workload(p)) == [(0, 0, 472, 18), (1, 2_500_000_000, 1087, 1)]


def test_generic_csv_with_columns(tmp_path):
    p = write(tmp_path, "g.CSV", "t_ms,prompt,gen,other\n10,5,6,x\n4,7,8,y\n")
    wl = load_workload(p, columns="arrival=t_ms,input=prompt,output=gen,unit=ms")
    assert reqs(wl) == [(1, 0, 7, 8), (0, 6_000_000, 5, 6)]
    stamps = write(tmp_path, "d.csv", "when,i,o\n2024-01-01 00:00:01.5,3,4\n2024-01-01 00:00:00,1,2\n")
    assert reqs(load_workload(stamps, columns="arrival=when,input=i,output=o")) == [(1, 0, 1, 2),
                                                                                      (0, 1_500_000_000, 3, 4)]


@pytest.mark.parametrize("columns, message", [
    ("arrival=t_ms,input=prompt", "missing output"),
    ("arrival=t_ms,input=prompt,output=gen,unit=h", "unit must be one of"),
    ("arrival,input=prompt,output=gen", "expected arrival=COL"),
    ("arrival=nope,input=prompt,output=gen", "missing column(s) nope"),
])
def test_generic_csv_errors(tmp_path, columns, message):
    p = write(tmp_path, "g.csv", "t_ms,prompt,gen\n10,5,6\n")
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_workload(p, columns=columns)


@pytest.mark.parametrize("text, message", [
    ("arrived_at,num_prefill_tokens,num_decode_tokens\n-1,5,5\n", "v.csv:2: field 'arrived_at' must be a number"),
    ("arrived_at,num_prefill_tokens,num_decode_tokens\n1,0,5\n", "v.csv:2: field 'num_prefill_tokens'"),
    ("arrived_at,num_prefill_tokens,num_decode_tokens\n1,5\n", "v.csv:2: 2 fields, the header has 3"),
    ("arrived_at,num_prefill_tokens,num_decode_tokens\n", "v.csv: no requests"),
])
def test_csv_row_errors(tmp_path, text, message):
    with pytest.raises(InputError, match=message):
        load_workload(write(tmp_path, "v.csv", text))


def test_sessions_window_and_head(tmp_path):
    lines = [{"input_toks": 4, "output_toks": 2, "arrival_time_ns": 100},
             {"session_id": "a", "arrival_time_ns": 50, "sub_requests": [
                 {"input_toks": 3, "output_toks": 1, "tool_duration_ns": 7}, {"input_toks": 5, "output_toks": 2}]},
             {"input_toks": 6, "output_toks": 1, "arrival_time_ns": 3_000_000_000}]
    p = write(tmp_path, "s.jsonl", "".join(json.dumps(x) + "\n" for x in lines))
    wl = load_workload(p)
    assert len(wl) == 4 and wl.sessions == 1
    first = list(wl)
    assert [r.rid for r in first] == [1, 0, 3] and first[0].followup.rid == 2 and first[0].think_ns == 7
    assert [len(wl.head(k)) for k in (1, 2, 3, 4)] == [1, 2, 3, 4]
    assert list(wl.head(2))[0].followup is None            # the session cut after its first turn
    win = load_workload(p, start_s=0.0000001, duration_s=5)     # [100 ns, 5 s): the flat ones
    assert reqs(win) == [(0, 0, 4, 2), (3, 2_999_999_900, 6, 1)]
    two = load_workload(p, start_s=0, duration_s=1, num_requests=2)      # file order: rid 0, then rid 1
    assert reqs(two) == [(1, 50, 3, 1), (0, 100, 4, 2)] and list(two)[0].followup is None
    with pytest.raises(InputError, match="no requests in the window"):
        load_workload(p, start_s=10)
    with pytest.raises(InputError, match="--duration must be a finite number"):
        load_workload(p, duration_s=float("nan"))


def test_workload_is_streamed_and_reiterable(tmp_path):
    p = write(tmp_path, "f.jsonl", "".join(json.dumps({"input_toks": 5, "output_toks": 3, "arrival_time_ns": i})
                                           + "\n" for i in range(1000)))
    wl = load_workload(p)
    it = iter(wl)
    a = next(it)
    assert a.rid == 0 and wl.arrival.dtype == np.int64 and not wl.extras
    assert reqs(wl) == reqs(wl) and list(wl)[5] is not list(wl)[5]      # fresh requests each pass


def test_clip_to_model(tmp_path):
    ids = list(range(10))
    p = write(tmp_path, "c.jsonl", json.dumps({"input_toks": 6, "output_toks": 4, "arrival_time_ns": 0,
                                               "input_tok_ids": ids[:6], "output_tok_ids": ids[6:]}) + "\n"
              + json.dumps({"input_toks": 20, "output_toks": 3, "arrival_time_ns": 1}) + "\n")
    a, b = load_workload(p).clipped(8)
    assert (a.prompt_len, a.output_len, a.token_ids) == (6, 2, [0, 1, 2, 3, 4, 5, 6, 7])
    assert (b.prompt_len, b.output_len) == (7, 1)


@pytest.mark.skipif(not VIDUR.is_file(), reason="shared Vidur run not present")
def test_real_vidur_list():
    pd = pytest.importorskip("pandas")
    df = pd.read_csv(VIDUR)
    wl = load_workload(str(VIDUR))
    prompts, outputs = wl.all_lengths()
    assert len(wl) == len(df) == 1000
    assert int(prompts.sum()) == int(df.num_prefill_tokens.sum()) and int(outputs.sum()) == int(df.num_decode_tokens.sum())
    assert wl.arrival.tolist() == [round(x * 1e9) for x in df.arrived_at.sort_values()]


@pytest.mark.skipif(not TRACES.is_dir(), reason="shared traces not present")
@pytest.mark.parametrize("name", ["AzureLLMInferenceTrace_conv.csv", "AzureLLMInferenceTrace_code.csv"])
def test_real_azure_traces(name):
    pd = pytest.importorskip("pandas")
    path = TRACES / "azure-llm-2023" / name
    df = pd.read_csv(path)
    wl = load_workload(str(path))
    prompts, outputs = wl.all_lengths()
    assert len(wl) == len(df)
    assert int(prompts.sum()) == int(df.ContextTokens.sum())
    assert int(outputs.sum()) == int(df.GeneratedTokens.clip(lower=1).sum())      # 0 generated counts as 1
    t = pd.to_datetime(df.TIMESTAMP)
    assert int(wl.arrival[-1]) == int((t.max() - t.min()).value)


@pytest.mark.skipif(not TRACES.is_dir(), reason="shared traces not present")
@pytest.mark.parametrize("name", ["conversation_trace.jsonl", "synthetic_trace.jsonl"])
def test_real_mooncake_traces(name):
    pd = pytest.importorskip("pandas")
    path = TRACES / "mooncake-fast25" / name
    df = pd.read_json(path, lines=True)
    wl = load_workload(str(path))
    prompts, outputs = wl.all_lengths()
    assert len(wl) == len(df)
    assert int(prompts.sum()) == int(df.input_length.sum()) and int(outputs.sum()) == int(df.output_length.sum())
    assert sum(len(r.hash_ids) for r in wl) == int(df.hash_ids.map(len).sum())
