"""validate refuses a simulation of another workload (counts, per-request lengths, ids); --match
prefix compares the first N."""
from __future__ import annotations

from fleetsim.cluster.cli import main
from conftest import REAL_RUN
from fleet_helpers import EXAMPLE_CLUSTER, EXAMPLE_WORKLOAD, run_cli


def _validate(capsys, sim, *extra):
    code = main(["validate", "--real", str(REAL_RUN), "--sim", str(sim), *extra])
    out = capsys.readouterr()
    return code, out.out, out.err.strip().splitlines()


def test_counts_lengths_and_prefix(shared_data, tmp_path, capsys):
    half = run_cli(tmp_path / "half", "--num-requests", "150", "--no-async-scheduling", cluster=EXAMPLE_CLUSTER)
    code, _, err = _validate(capsys, half)
    assert code == 2 and len(err) == 1 and "150 requests, the real run" in err[0] and "has 300" in err[0]
    assert "--match prefix" in err[0]
    code, out, _ = _validate(capsys, half, "--match", "prefix")
    assert code == 0 and "TTFT Mean" in out
    # the same count, another workload: the shipped lines with their lengths shuffled
    lines = EXAMPLE_WORKLOAD.read_text().splitlines()
    other = tmp_path / "other.jsonl"
    other.write_text("\n".join(lines[1:] + lines[:1]) + "\n")
    shifted = run_cli(tmp_path / "other", "--no-async-scheduling", cluster=EXAMPLE_CLUSTER, workload=other)
    code, _, err = _validate(capsys, shifted)
    assert code == 2 and len(err) == 1 and "request 0 has" in err[0] and "not the same workload" in err[0]
    warm = run_cli(tmp_path / "warm", "--warmup-requests", "5", cluster=EXAMPLE_CLUSTER)
    code, _, err = _validate(capsys, warm)
    assert code == 2 and len(err) == 1 and "request ids are not 0.." in err[0]


def test_non_finite_real_timestamps(tmp_path, capsys):
    real = tmp_path / "real"
    real.mkdir()
    (real / "meta.json").write_text("{}\n")
    (real / "requests.jsonl").write_text('{"request_id": "bench-0", "input_toks": 5, "output_toks": 2, '
                                         '"arrival_time": 1.0, "queued_ts": 1.5, "first_token_ts": NaN, '
                                         '"last_token_ts": 3.0}\n')
    sim = run_cli(tmp_path / "sim", "--num-requests", "1", cluster=EXAMPLE_CLUSTER)
    code = main(["validate", "--real", str(real), "--sim", str(sim)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "must be finite numbers" in err[0], err
