"""Azure and Mooncake trace loaders: arrivals, lengths, hash ids, scaling, errors."""
from pathlib import Path

import pytest

from fleetsim.cluster.errors import InputError
from fleetsim.cluster.workloads import load_workload

TRACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "traces"


def test_azure_csv_arrivals_are_exact_ns_and_scaled(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                 "2023-11-16 18:15:46.6805900,374,44\n"
                 "2023-11-16 18:15:50.9951690,396,0\n"
                 "2023-11-16 18:15:46.6805901,10,3\n")
    wl = load_workload(str(p))
    got = [(r.rid, r.arrival_ns, r.prompt_len, r.output_len) for r in list(wl)]
    assert got == [(0, 0, 374, 44), (2, 100, 10, 3), (1, 4_314_579_000, 396, 1)]
    half = load_workload(str(p), fmt="azure", time_scale=0.5)
    assert [r.arrival_ns for r in list(half)] == [0, 50, 2_157_289_500]
    assert len(load_workload(str(p), fmt="azure", num_requests=2)) == 2


def test_mooncake_hash_ids_give_prefix_hits(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text('{"timestamp": 0, "input_length": 1100, "output_length": 5, "hash_ids": [7, 8, 9]}\n'
                 '{"timestamp": 1500, "input_length": 1100, "output_length": 5, "hash_ids": [7, 8, 10]}\n')
    wl = load_workload(str(p))
    a, b = list(wl)
    assert b.arrival_ns == 1_500_000_000
    # 16-token blocks: the first 1024 tokens (two shared 512-blocks) hash alike, then they differ
    assert [a.block_hash(i, 16) for i in range(64)] == [b.block_hash(i, 16) for i in range(64)]
    assert a.block_hash(64, 16) != b.block_hash(64, 16)


@pytest.mark.parametrize("text, field", [
    ('{"timestamp": -1, "input_length": 5, "output_length": 1}\n', "timestamp"),
    ('{"timestamp": 0, "input_length": 0, "output_length": 1}\n', "input_length"),
    ('{"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": ["x"]}\n', "hash_ids"),
])
def test_mooncake_bad_fields(tmp_path, text, field):
    p = tmp_path / "m.jsonl"
    p.write_text('{"timestamp": 0, "input_length": 5, "output_length": 1}\n' + text)
    with pytest.raises(InputError, match=f"m.jsonl:2: field '{field}'"):
        load_workload(str(p), fmt="mooncake")


def test_azure_bad_rows(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text("TIMESTAMP,ContextTokens\n2023-11-16 18:15:46.6,3\n")
    with pytest.raises(InputError, match="missing column"):
        load_workload(str(p), fmt="azure")
    p.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,3,4\n")
    with pytest.raises(InputError, match="a.csv:2: field 'TIMESTAMP'"):
        load_workload(str(p), fmt="azure")


@pytest.mark.skipif(not TRACES.is_dir(), reason="shared traces not present")
def test_real_traces_load():
    conv = load_workload(str(TRACES / "azure-llm-2023" / "AzureLLMInferenceTrace_conv.csv"))
    assert len(conv) == 19366 and list(conv)[0].arrival_ns == 0
    assert all(a.arrival_ns <= b.arrival_ns for a, b in zip(list(conv), list(conv)[1:]))
    moon = load_workload(str(TRACES / "mooncake-fast25" / "conversation_trace.jsonl"), num_requests=500)
    assert len(moon) == 500 and all(r.hash_ids for r in list(moon))


AZURE_SAMPLE = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,44\n"


@pytest.mark.parametrize("name", ["trace.CSV", "trace.txt", "trace.jsonl", "trace"])
def test_format_detected_by_content_not_extension(tmp_path, name):
    p = tmp_path / name
    p.write_text(AZURE_SAMPLE)
    wl = load_workload(str(p))
    assert [(r.prompt_len, r.output_len) for r in list(wl)] == [(374, 44)]
    m = tmp_path / ("m" + name)
    m.write_text('{"timestamp": 0, "input_length": 5, "output_length": 2}\n')
    assert [r.hash_ids for r in list(load_workload(str(m)))] == [[]]


def test_utf8_bom_is_ignored(tmp_path):
    p = tmp_path / "bom.csv"
    p.write_bytes(b"\xef\xbb\xbf" + AZURE_SAMPLE.encode())
    assert len(load_workload(str(p))) == 1
    j = tmp_path / "bom.jsonl"
    j.write_bytes(b"\xef\xbb\xbf" + b'{"input_toks": 3, "output_toks": 2, "arrival_time_ns": 5}\n')
    assert [r.arrival_ns for r in list(load_workload(str(j)))] == [5]


def test_format_forced_and_unknown(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text('{"timestamp": 0, "input_length": 5, "output_length": 2}\n')
    with pytest.raises(InputError, match="m.jsonl:1: field 'arrival_time_ns'"):
        load_workload(str(p), fmt="llmservingsim")
    with pytest.raises(InputError, match="--format 'parquet': unknown"):
        load_workload(str(p), fmt="parquet")
    q = tmp_path / "q.csv"
    q.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="q.csv: unrecognised workload format.*--format"):
        load_workload(str(q))


def test_repr_is_short(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text(AZURE_SAMPLE * 1 + "".join(f"2023-11-16 18:15:4{i}.0,5,5\n" for i in range(8)))
    assert repr(load_workload(str(p))) == f"Workload({str(p)!r}, 9 requests)"
