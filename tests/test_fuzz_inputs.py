"""Fuzz suites (hypothesis) over every input surface of `fleetsim`: the cluster YAML, the
LLMServingSim cluster JSON, each workload format (LLMServingSim JSONL, Mooncake JSONL, Azure
CSV), the `run` flags and the `validate` inputs.

Every generated case goes through the command line in-process (`cluster.cli.main`) and must end
with exit code 0 (a valid input: it runs; the runs are kept tiny, a few requests on a capped
memory estimate, so a case takes milliseconds) or 2 with exactly one stderr line
`fleetsim: error: ...`, no traceback (any exception escaping `main` fails the case) and no output
folder. The cases are derandomized (the same ones on every run) and `FLEETSIM_FUZZ_EXAMPLES`
(default 1,000 per surface) sets how many: CI runs the default; run more offline with e.g.
`FLEETSIM_FUZZ_EXAMPLES=20000 python3 -m pytest -q tests/test_fuzz_inputs.py`.
`FLEETSIM_FUZZ_REPORT=FILE` appends one JSON line per surface: cases run, exits 0 and 2.
"""
from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import shutil

import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from fleetsim.cluster.cli import main
from fleetsim.cluster.config import ENGINE_KEYS, TOP_KEYS

EXAMPLES = int(os.environ.get("FLEETSIM_FUZZ_EXAMPLES", "1000"))
FUZZ = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))
MEMORY_LIMIT = ["--memory-limit", "0.25"]       # GiB: a valid generated run stays small

SMALL_CLUSTER = "model: meta-llama/Llama-3.1-8B\nhardware: RTXPRO6000\nengine: {num_gpu_blocks: 4096, max_num_seqs: 16}\n"
SMALL_WORKLOAD = "".join(json.dumps({"input_toks": 20 + 10 * i, "output_toks": 3 + i, "arrival_time_ns": 1000 * i})
                         + "\n" for i in range(3))

# ---- value strategies ----

ODD_NUMBERS = [0, 1, 2, 3, 7, 8, 16, 32, 64, 128, 1000, -1, 2 ** 31, 2 ** 63, 10 ** 12, 10 ** 18 + 1, 10 ** 30,
               0.5, 1.0e+7, 1e300, -0.0]
anything = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 300), st.sampled_from(ODD_NUMBERS),
              st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=2)),
    max_leaves=6)
small_int = st.one_of(st.integers(1, 4), st.sampled_from([0, -1, 3, 7, 8, 64, 1000, 10 ** 8, 2 ** 63]))


def plausible(values):
    """Mostly one of `values` (so that valid inputs are common), sometimes anything."""
    return st.one_of(st.sampled_from(values), st.sampled_from(values), st.sampled_from(values), anything)


class Cases:
    """Runs generated command lines and checks the contract; counts the outcomes per surface."""

    def __init__(self, root, surface: str):
        self.root, self.surface = root, surface
        self.serial = itertools.count()
        self.exits = {0: 0, 2: 0}

    def file(self, name: str, text: str) -> str:
        path = self.root / name
        path.write_text(text, encoding="utf-8")
        return str(path)

    def run(self, argv: list[str], out: str | None) -> int:
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = main(argv)
            except SystemExit as exc:        # argparse
                code = exc.code
        lines = err.getvalue().splitlines()
        assert code in (0, 2), (code, lines, argv)
        if code == 2:
            assert len(lines) == 1 and lines[0].startswith("fleetsim: error: "), (lines, argv)
            assert out is None or not os.path.exists(out), (out, lines)
        elif out is not None:
            assert os.path.isfile(os.path.join(out, "summary.json")), argv
            shutil.rmtree(out)
        self.exits[code] += 1
        return code

    def run_fleet(self, cluster_text: str, workload_text: str, flags=()) -> int:
        out = str(self.root / f"out{next(self.serial)}")
        argv = ["run", "--cluster", self.file("c.yaml", cluster_text), "--workload",
                self.file("w.jsonl", workload_text), "--out", out, "--quiet", *MEMORY_LIMIT, *flags]
        return self.run(argv, out)

    def report(self) -> None:
        path = os.environ.get("FLEETSIM_FUZZ_REPORT")
        if path:
            with open(path, "a") as fh:
                fh.write(json.dumps({"surface": self.surface, "cases": sum(self.exits.values()),
                                     "exit_0": self.exits[0], "exit_2": self.exits[2]}) + "\n")


@pytest.fixture
def cases(request, tmp_path):
    c = Cases(tmp_path, request.node.name)
    yield c
    c.report()
    assert sum(c.exits.values()) >= min(EXAMPLES, 100)


# ---- cluster YAML ----

ENGINE_VALUES = {"max_num_seqs": [1, 16, 256], "max_num_batched_tokens": [16, 512, 8192], "block_size": [8, 16, 7],
                 "num_gpu_blocks": [64, 4096, 10 ** 12], "gpu_memory_utilization": [0.5, 0.9, 1.5],
                 "max_model_len": [64, 4096], "long_prefill_token_threshold": [0, 64],
                 "enable_prefix_caching": [True, False], "enable_chunked_prefill": [True, False],
                 "async_scheduling": [True, False, None]}
KEY_VALUES = {
    "model": ["meta-llama/Llama-3.1-8B", "Qwen/Qwen3-30B-A3B", "Qwen/Qwen3-8B", "no/such-model"],
    "hardware": ["RTXPRO6000", "H100-SXM-80GB", "NoSuchGPU"], "cost_model": ["profile", "roofline", "magic"],
    "tp": [1, 2, 3, 4, 8, 64], "pp": [1, 2, 33], "ep": [1, 2, 3, 1000], "moe_skew": [0.0, 1.0, -1.0],
    "memory_gib": [8, 96, 1.0e+7], "variant": ["bf16", "fp8"], "decode_skew": [True, False],
    "overhead": [{"step_us": 10}, {"per_seq_us": 1.0e+30}, {"bad": 1}], "link_gbps": [450, 0],
    "link_latency_us": [3, -1], "seed": [0, 7, -1], "name": ["x"], "perf_root": [".", "/no/such"],
    "models_root": ["/no/such"], "router": [{"policy": "least_loaded"}, {"policy": "nosuch"},
                                            {"sync_interval_ms": 0}, {"options": {"x": 1}}],
    "instances": [1, 2, 3, 10 ** 8, [{"count": 2}], [{"count": 1, "tp": 2}, {"count": 1}]],
    "dtype": ["auto", "fp8", "int3"], "kv_cache_dtype": ["auto", "fp8"], "attention_pricing": ["aggregate", "x"],
    "slo": [{"ttft_p99_ms": 2000}, "nonsense"],
}
YAML_FRAGMENTS = ["tp: &a [1, 2]", "ep: *a", "<<: *a", "[[[[[[", "{", "}", "- x", "? [a, b]\n: c", "%YAML 1.1",
                  "---", "!!python/object:os.system", "tp: !!int 3", "model: \x00", "\t", "'unterminated",
                  "memory_gib: .nan", "seed: 0x1F", "seed: 1_000", "instances: !!float 2", "a: &x " + "[*x]"]

engine_doc = st.dictionaries(st.sampled_from(sorted(ENGINE_KEYS) + ["bogus"]),
                             st.one_of(*[plausible(v) for v in ENGINE_VALUES.values()]), max_size=4)


@st.composite
def cluster_docs(draw):
    doc = {"model": "meta-llama/Llama-3.1-8B", "hardware": "RTXPRO6000"} if draw(st.booleans()) else {}
    for key in draw(st.lists(st.sampled_from(sorted(TOP_KEYS | {"engine", "bogus"})), max_size=5, unique=True)):
        doc[key] = draw(engine_doc) if key == "engine" else draw(plausible(KEY_VALUES.get(key, [1])))
    doc.setdefault("engine", {"num_gpu_blocks": 4096, "max_num_seqs": 16})
    return doc


def _yaml_text(doc) -> str:
    try:
        return yaml.safe_dump(doc, allow_unicode=True)
    except yaml.YAMLError:
        return str(doc)


@FUZZ
@given(doc=cluster_docs(), fragments=st.lists(st.sampled_from(YAML_FRAGMENTS), max_size=2), raw=st.booleans())
def test_fuzz_cluster_yaml(cases, doc, fragments, raw):
    text = _yaml_text(doc)
    if raw:     # append odd YAML to an otherwise plausible document
        text += "\n".join(fragments) + "\n"
    cases.run_fleet(text, SMALL_WORKLOAD)


# ---- LLMServingSim cluster JSON ----

LSS_PATHS = [("num_nodes",), ("link_bw",), ("link_latency",), ("cxl_mem",), ("nodes",), ("nodes", 0),
             ("nodes", 0, "num_instances"), ("nodes", 0, "instances"), ("nodes", 0, "cpu_mem"),
             ("nodes", 0, "instances", 0, "model_name"), ("nodes", 0, "instances", 0, "hardware"),
             ("nodes", 0, "instances", 0, "tp_size"), ("nodes", 0, "instances", 0, "pp_size"),
             ("nodes", 0, "instances", 0, "ep_size"), ("nodes", 0, "instances", 0, "num_npus"),
             ("nodes", 0, "instances", 0, "pd_type"), ("nodes", 0, "instances", 0, "dp_group"),
             ("nodes", 0, "instances", 0, "placement"), ("nodes", 0, "instances", 0, "npu_mem"),
             ("nodes", 0, "instances", 0, "npu_mem", "mem_size"), ("nodes", 0, "instances", 0, "npu_mem", "mem_bw"),
             ("nodes", 0, "instances", 0, "npu_mem", "mem_util"), ("bogus",), ("nodes", 0, "instances", 0, "bogus")]
LSS_VALUES = [0, 1, 2, 3, False, True, None, 96, 0.9, 1.5, 1597, 16, 20000, -5, "RTXPRO6000", "H100-SXM-80GB",
              "meta-llama/Llama-3.1-8B", "prefill", "", {}, []]


def _lss_base(instances: int) -> dict:
    inst = {"model_name": "meta-llama/Llama-3.1-8B", "hardware": "RTXPRO6000", "num_npus": 1, "tp_size": 1,
            "npu_mem": {"mem_size": 8, "mem_bw": 1597, "mem_latency": 0, "mem_util": 0.9}, "pd_type": None}
    node = {"num_instances": instances, "cpu_mem": {"mem_size": 512}, "instances": [dict(inst) for _ in range(instances)]}
    return {"num_nodes": 1, "link_bw": 16, "link_latency": 20000, "nodes": [node]}


def _set(doc, path, value) -> None:
    """doc[path] = value (`...` deletes it); a path through a missing or odd container is skipped."""
    target = doc
    for step in path[:-1]:
        try:
            target = target[step]
        except (KeyError, IndexError, TypeError):
            return
    if isinstance(target, dict):
        if value is ...:
            target.pop(path[-1], None)
        else:
            target[path[-1]] = value
    elif isinstance(target, list) and isinstance(path[-1], int) and path[-1] < len(target):
        target[path[-1]] = {} if value is ... else value


@FUZZ
@given(instances=st.integers(1, 3),
       edits=st.lists(st.tuples(st.sampled_from(LSS_PATHS), st.one_of(st.just(...), plausible(LSS_VALUES))),
                      max_size=3))
def test_fuzz_llmservingsim_json(cases, instances, edits):
    doc = _lss_base(instances)
    for path, value in edits:
        _set(doc, path, value)
    cases.run_fleet(json.dumps(doc), SMALL_WORKLOAD)


# ---- workloads ----

TOKENS = [1, 2, 5, 30, 100, 0, -1, 10 ** 9, 2 ** 63]
TIMES = [0, 1000, 10 ** 9, 10 ** 18, 10 ** 18 + 1, 2 ** 63, -1]


@st.composite
def flat_request(draw, keys=("input_toks", "output_toks", "arrival_time_ns")):
    doc = {}
    for key in keys:
        if draw(st.integers(0, 9)):     # mostly present
            doc[key] = draw(plausible(TIMES if "time" in key or "duration" in key else TOKENS))
    if draw(st.integers(0, 3)) == 0 and isinstance(doc.get("input_toks"), int) and 0 < doc["input_toks"] < 200:
        n = doc["input_toks"] + draw(st.sampled_from([0, 0, 1, -1]))
        doc["input_tok_ids"] = draw(st.lists(st.integers(0, 50), min_size=max(0, n), max_size=max(0, n)))
    return doc


@st.composite
def llmservingsim_line(draw):
    if draw(st.integers(0, 3)):
        return draw(flat_request())
    subs = draw(st.lists(flat_request(("input_toks", "output_toks", "tool_duration_ns")), min_size=0, max_size=3))
    return {"session_id": draw(plausible(["s", 1])), "arrival_time_ns": draw(plausible(TIMES)), "sub_requests": subs}


@st.composite
def mooncake_line(draw):
    doc = {"timestamp": draw(plausible([0, 10, 1.5, 1e12, 1e300, -1])),
           "input_length": draw(plausible([30, 512, 513, 0, 10 ** 9])),
           "output_length": draw(plausible([1, 5, 0]))}
    if draw(st.booleans()) and isinstance(doc["input_length"], int) and 0 < doc["input_length"] < 5000:
        n = -(-doc["input_length"] // 512) + draw(st.sampled_from([0, 0, 0, 1, -1]))
        doc["hash_ids"] = list(range(max(0, n)))
    elif draw(st.booleans()):
        doc["hash_ids"] = draw(anything)
    return doc


def _json_lines(docs, junk) -> str:
    return "".join(json.dumps(d) + "\n" for d in docs) + junk


JSONL_JUNK = ["", "", "", "\n\n", "{\n", "[1, 2]\n", "nonsense\n", "\ufeff{}\n", '{"a": NaN}\n', '{"input_toks": 1e400}\n',
              "[" * 3000 + "\n", '{"input_toks": ' + "9" * 5000 + "}\n", "\x00\n"]
TRACE_FLAGS = st.lists(st.sampled_from([["--time-scale", "0.5"], ["--time-scale", "1e300"], ["--time-scale", "0"],
                                        ["--num-requests", "1"], ["--num-requests", "0"]]), max_size=2)


@FUZZ
@given(docs=st.lists(llmservingsim_line(), min_size=0, max_size=4), junk=st.sampled_from(JSONL_JUNK),
       flags=st.lists(st.sampled_from([["--num-requests", "2"], ["--num-requests", "0"], ["--time-scale", "2"]]),
                      max_size=1))
def test_fuzz_workload_llmservingsim(cases, docs, junk, flags):
    cases.run_fleet(SMALL_CLUSTER, _json_lines(docs, junk), [f for pair in flags for f in pair])


@FUZZ
@given(docs=st.lists(mooncake_line(), min_size=0, max_size=4), junk=st.sampled_from(JSONL_JUNK), flags=TRACE_FLAGS)
def test_fuzz_workload_mooncake(cases, docs, junk, flags):
    cases.run_fleet(SMALL_CLUSTER, _json_lines(docs, junk), [f for pair in flags for f in pair])


AZURE_HEADERS = ["TIMESTAMP,ContextTokens,GeneratedTokens", "TIMESTAMP,ContextTokens,GeneratedTokens",
                 "ContextTokens,TIMESTAMP,GeneratedTokens", "TIMESTAMP,ContextTokens", "timestamp,a,b"]
STAMPS = ["2023-11-16 18:15:46.6805900", "2023-11-16 18:15:47", "2023-11-16 18:15:46.68", "9999-12-31 23:59:59.9",
          "0001-01-01 00:00:00", "2023-13-01 00:00:00", "yesterday", ""]
azure_cell = st.one_of(st.sampled_from(["30", "5", "0", "-1", "1e3", "", "99999999999999999999", "x"]),
                       st.integers(0, 3000).map(str))


@FUZZ
@given(header=st.sampled_from(AZURE_HEADERS),
       rows=st.lists(st.tuples(plausible(STAMPS).map(str), azure_cell, azure_cell), max_size=4),
       extra=st.sampled_from(["", "", ",,,\n", '"unterminated\n', "a,b,c,d,e\n"]), flags=TRACE_FLAGS)
def test_fuzz_workload_azure(cases, header, rows, extra, flags):
    text = header + "\n" + "".join(f"{a},{b},{c}\n" for a, b, c in rows) + extra
    cases.run_fleet(SMALL_CLUSTER, text, ["--format", "azure", *[f for pair in flags for f in pair]])


# ---- run flags ----

FLAG_VALUES = ["0", "1", "2", "3", "7", "16", "-1", "1e300", "nan", "inf", "-inf", "", "abc", "0.5", "1000000000000",
               "10000000", "99999999999999999999", "--quiet"]
RUN_FLAGS = {"--instances": ["1", "2", "4"], "--router": ["round_robin", "least_loaded", "prefix_aware", "", "x:y"],
             "--sync-interval-ms": ["0", "50"], "--seed": ["0", "5"], "--num-requests": ["1", "2"],
             "--time-scale": ["1"], "--format": ["llmservingsim", "mooncake", "azure", "parquet"],
             "--requests-detail": ["full", "no-itl", "none"], "--check-invariants": ["basic", "full"],
             "--max-num-seqs": ["1", "8"], "--max-num-batched-tokens": ["8", "512"], "--block-size": ["8", "16"],
             "--num-gpu-blocks": ["16", "4096"], "--gpu-memory-utilization": ["0.5", "0.9"],
             "--long-prefill-token-threshold": ["0", "16"], "--max-model-len": ["64", "4096"],
             "--perf-root": ["/no/such", "."], "--models-root": ["/no/such"], "--actors": ["1"],
             "--instances-per-actor": ["1"], "--ray-address": ["auto"], "--backend": ["local", "nosuch"],
             "--memory-limit": ["0", "-1", "nan", "inf", "abc", "0.001", "1e-300"],
             "--slo": ["ttft_p99_ms=2000", "nonsense", "ttft_p99_ms=-1"]}
SWITCHES = ["--no-prefix-caching", "--no-chunked-prefill", "--async-scheduling", "--no-async-scheduling",
            "--no-fast-forward", "--overwrite", "--bogus-flag"]


@st.composite
def run_flags(draw):
    argv = []
    for flag in draw(st.lists(st.sampled_from(sorted(RUN_FLAGS)), max_size=4, unique=True)):
        values = RUN_FLAGS[flag]
        if flag == "--memory-limit":        # keep generated runs small: no limit above MEMORY_LIMIT's
            argv += [flag, draw(st.sampled_from(values))]
        else:
            argv += [flag, draw(st.one_of(st.sampled_from(values), st.sampled_from(FLAG_VALUES),
                                          st.text(max_size=4)))]
    argv += draw(st.lists(st.sampled_from(SWITCHES), max_size=2, unique=True))
    if draw(st.integers(0, 9)) == 0:
        argv = argv[:-1]                    # a flag left without its value
    return argv


@FUZZ
@given(flags=run_flags())
def test_fuzz_run_flags(cases, flags):
    cases.run_fleet(SMALL_CLUSTER, SMALL_WORKLOAD, flags)


# ---- validate inputs ----

REAL_FIELDS = {"queued_ts": [100.0, 100.5, float("nan"), float("inf"), None, "x"],
               "first_token_ts": [100.2, 100.7, 99.0, float("nan")], "last_token_ts": [101.0, 102.0, -1e300],
               "input_toks": [20, 30, 0, -2, True], "output_toks": [3, 4, 1, 0, 2.5], "request_id": ["bench-0", 1]}
CSV_HEADER = ("instance id,request id,model,input,output,arrival,end_time,latency,queuing_delay,TTFT,TPOT,ITL,"
              "preemptions,prefix_hit_tokens")


@st.composite
def real_rows(draw):
    rows = []
    for i in range(draw(st.integers(0, 4))):
        row = {"request_id": f"bench-{i}", "input_toks": 20 + 10 * i, "output_toks": 3 + i, "queued_ts": 100.0 + i,
               "first_token_ts": 100.2 + i, "last_token_ts": 101.0 + i}
        for key in draw(st.lists(st.sampled_from(sorted(REAL_FIELDS)), max_size=2, unique=True)):
            value = draw(st.one_of(st.just(...), plausible(REAL_FIELDS[key])))
            if value is ...:
                del row[key]
            else:
                row[key] = value
        rows.append(row)
    return rows


sim_cell = st.one_of(st.sampled_from(["0", "1", "3", "20", "1000000", "", "-5", "x", "1.5"]), st.integers(0, 9).map(str))


@st.composite
def sim_csv(draw):
    header = draw(st.sampled_from([CSV_HEADER, CSV_HEADER, CSV_HEADER, CSV_HEADER.replace("TTFT", "ttft"), ""]))
    lines = []
    for i in range(draw(st.integers(0, 4))):
        cells = ["0", str(i), "m", str(20 + 10 * i), str(3 + i), str(1000 * i), str(10 ** 9 + i), str(10 ** 9),
                 "0", str(2 * 10 ** 8), str(10 ** 8), '"[1, 2]"', "0", "0"]
        for _ in range(draw(st.integers(0, 2))):
            cells[draw(st.integers(0, len(cells) - 1))] = draw(sim_cell)
        lines.append(",".join(cells[:draw(st.sampled_from([14, 14, 14, 10]))]))
    return header + "\n" + "\n".join(lines) + ("\n" if lines else "")


@FUZZ
@given(real=real_rows(), sim=sim_csv(), meta=st.integers(0, 9), match=st.sampled_from([[], ["--match", "prefix"],
                                                                                         ["--match", "all"]]),
       as_json=st.booleans())
def test_fuzz_validate_inputs(cases, real, sim, meta, match, as_json):
    real_dir, sim_dir = cases.root / "real", cases.root / "sim"
    for d in (real_dir, sim_dir):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
    if meta:
        (real_dir / "meta.json").write_text("{}")
    (real_dir / "requests.jsonl").write_text("".join(json.dumps(r) + "\n" for r in real))
    (sim_dir / "requests.csv").write_text(sim)
    cases.run(["validate", "--real", str(real_dir), "--sim", str(sim_dir), *match, *(["--json"] if as_json else [])],
              None)
