"""Golden hashes of requests.csv for the example runs: speed work must not change a byte.

The hashes were taken from the core engine (before fast-forward and the other speed work)
and checked unchanged since; if a deliberate semantic change moves them, update them in the
same commit and say why.
"""
import hashlib

import pytest

from fleet_helpers import EXAMPLE_CLUSTER, run_cli, write_session_workload

CASES = {
    "example": ("--num-requests", "300"),
    "fleet-least-loaded": ("--instances", "4", "--router", "least_loaded"),
    "kv-pressure": ("--num-gpu-blocks", "600", "--num-requests", "150"),
    "sessions": ("--instances", "2", "--router", "least_loaded", "--sync-interval-ms", "0"),
}
GOLDEN = {
    "example": "995a7ea849b8981dd611e7beb0ad4309c0e5b76162ae347e6be9a9b565c927d3",
    "fleet-least-loaded": "6a4c16ae972f8324221cadc665964cc58e6296a2950c8d4078644e054b74039a",
    "kv-pressure": "d89165339653e68592df63de71705f5cde10b2dc236aa2475b16861ccf0449bb",
    "sessions": "8a3e8b20f00cf28f20c2bfccbf09a2812fde48a6da7a8bfea886adbce6634d18",
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_requests_csv_matches_golden_hash(tmp_path, case):
    kwargs = {"cluster": EXAMPLE_CLUSTER}
    if case == "sessions":
        kwargs["workload"] = write_session_workload(tmp_path / "s.jsonl")
    out = run_cli(tmp_path / case, *CASES[case], **kwargs)
    assert hashlib.sha256((out / "requests.csv").read_bytes()).hexdigest() == GOLDEN[case]
