"""A hand-built MoE perf bundle (LLMServingSim layout) for DP+EP tests, written into a tmp dir.

Model `test/tiny-moe`: hidden 64, 2 layers, 4 heads (head_dim 16), 2 KV heads, 8 experts,
top-2, moe_intermediate 32, vocab 100, bf16. Every dense op: 1 µs at 1 token, 2 µs at 100
tokens (linear). lm_head 5 µs at 1 sequence, 6 µs at 100; sampler 1 / 1.5 µs. Attention: one
decode 3 µs at 16 tokens of context, 4 µs at 1024 (two decodes 3.5 / 5 µs); prefills of 16, 64
and 100 tokens 6, 9 and 12 µs. One rank's expert block (`moe.csv`): 10·a µs at 1 token and
10·a + 99 µs at 100 tokens for a = 1, 2, 4, 8 activated experts.
"""
from __future__ import annotations

import json

from fleetsim.cluster.cli import main

CONFIG = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
          "intermediate_size": 128, "moe_intermediate_size": 32, "num_experts": 8, "num_experts_per_tok": 2,
          "vocab_size": 100, "max_position_embeddings": 4096, "torch_dtype": "bfloat16"}
MODEL = "test/tiny-moe"
HARDWARE = "H100-SXM-80GB"
DENSE_OPS = ("embedding", "layernorm", "qkv_proj", "rotary_emb", "o_proj", "final_layernorm")


def write_moe_bundle(root, with_moe: bool = True) -> tuple[str, str]:
    """Write the bundle under `root`; returns (perf_root, models_root)."""
    models = root / "models" / "test"
    models.mkdir(parents=True)
    (models / "tiny-moe.json").write_text(json.dumps(CONFIG))
    variant = root / "perf" / HARDWARE / "test" / "tiny-moe" / "bf16"
    tp = variant / "tp1"
    tp.mkdir(parents=True)
    (variant / "meta.yaml").write_text("model: test/tiny-moe\nhardware: H100-SXM-80GB\n")
    (tp / "dense.csv").write_text("layer,tokens,time_us\n" + "".join(f"{op},1,1.0\n{op},100,2.0\n" for op in DENSE_OPS))
    (tp / "per_sequence.csv").write_text("layer,sequences,time_us\nlm_head,1,5.0\nlm_head,100,6.0\n"
                                         "sampler,1,1.0\nsampler,100,1.5\n")
    (tp / "attention.csv").write_text("prefill_chunk,kv_prefill,n_decode,kv_decode,time_us\n"
                                      "0,0,1,16,3.0\n0,0,1,1024,4.0\n0,0,2,16,3.5\n0,0,2,1024,5.0\n"
                                      "16,0,0,0,6.0\n64,0,0,0,9.0\n100,0,0,0,12.0\n")
    if with_moe:
        rows = [(t, a, 10 * a + (99 if t == 100 else 0)) for t in (1, 100) for a in (1, 2, 4, 8)]
        (tp / "moe.csv").write_text("tokens,activated_experts,time_us\n" + "".join(f"{t},{a},{us}\n" for t, a, us in rows))
    return str(root / "perf"), str(root / "models")


def cluster_json(groups=("A", "A"), ep=2, link=True, extra=()) -> dict:
    """An LLMServingSim cluster JSON: one tiny-moe instance per entry of `groups` (its dp_group)."""
    inst = [{"model_name": MODEL, "hardware": HARDWARE, "npu_mem": {"mem_size": 1, "mem_bw": 1597, "mem_util": 0.9},
             "num_npus": 1, "tp_size": 1, "ep_size": ep, "dp_group": g, "pd_type": None} for g in groups]
    inst += list(extra)
    doc = {"num_nodes": 1, "nodes": [{"num_instances": len(inst), "cpu_mem": {"mem_size": 64, "mem_bw": 256},
                                      "instances": inst}]}
    if link:
        doc.update(link_bw=16, link_latency=20000)
    return doc


def write_workload(path, n=14):
    """n requests of 20-299 prompt and 3-19 output tokens, some arriving together."""
    lines = [{"input_toks": 20 + 53 * i % 280, "output_toks": 3 + 7 * i % 17, "arrival_time_ns": 150_000 * i * (i % 3)}
             for i in range(n)]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def run(tmp_path, name, cluster_doc, workload, *extra, suffix=".json"):
    """`fleetsim run` of a cluster (a JSON dict, or YAML text with suffix ".yaml") on the bundle
    written under tmp_path; returns (exit code, output folder)."""
    cluster = tmp_path / f"{name}{suffix}"
    cluster.write_text(json.dumps(cluster_doc) if suffix == ".json" else cluster_doc)
    perf, models = str(tmp_path / "perf"), str(tmp_path / "models")
    code = main(["run", "--cluster", str(cluster), "--workload", str(workload), "--out", str(tmp_path / name),
                 "--quiet", "--perf-root", perf, "--models-root", models, *extra])
    return code, tmp_path / name
