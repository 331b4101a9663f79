"""Golden hashes of requests.csv, summary.json, timeseries.csv and timeseries_fleet.csv for the
example runs: speed work must not change a byte.

The hashes were taken from the core engine (commit 0f13f24, before fast-forward and the other
speed work). The summary's last digits had drifted in between (statistics arithmetic, ITL
order) and were restored; the requests.csv hashes never changed. The summary hash covers the
whole document except its `run` block (provenance, which names the tmp paths of the inputs; tests/test_provenance.py covers it), dumped with sorted keys. If a deliberate semantic change moves them,
re-pin them in a separate commit that says which change moved which bytes.

Re-pinned for the tidy time series (issue 10 item 2): timeseries.csv lost its `all` rows (now
timeseries_fleet.csv, whose kv_pct averages all instances) and gained a zero-count row for every
instance in every second it had no step (6 rows in each 4-instance case); every earlier row is
unchanged. requests.csv and summary.json did not move: these workloads have no one-token output
(no empty TPOT) and no undefined statistic.

GOLDEN, GOLDEN_SUMMARY, GOLDEN_TIMESERIES and GOLDEN_FLEET_TIMESERIES are of synchronous
scheduling (`--no-async-scheduling`, LLMServingSim's arithmetic): the flag reproduces the bytes
of the code before async scheduling existed. The *_ASYNC hashes are of the default, vLLM's async
scheduling (docs/engine.md), pinned when it became the default.

requests.csv is hashed in two parts: without its last column, `queued` (the engine-side anchor,
added with the API server's front end; the columns before it kept their bytes), and that column
alone (GOLDEN_QUEUED*, pinned when it was added).
"""
import hashlib
import json

import pytest

from fleet_helpers import EXAMPLE_CLUSTER, run_cli, write_session_workload

CASES = {
    "example": ("--num-requests", "300"),
    "fleet-least-loaded": ("--instances", "4", "--router", "least_loaded"),
    "kv-pressure": ("--num-gpu-blocks", "600", "--num-requests", "150"),
    "sessions": ("--instances", "2", "--router", "least_loaded", "--sync-interval-ms", "0"),
    "fleet-round-robin": ("--instances", "4", "--router", "round_robin"),          # 1-s load-blind windows
    "sessions-load-blind": ("--instances", "2", "--router", "round_robin", "--sync-interval-ms", "3000"),
}
GOLDEN = {
    "example": "995a7ea849b8981dd611e7beb0ad4309c0e5b76162ae347e6be9a9b565c927d3",
    "fleet-least-loaded": "6a4c16ae972f8324221cadc665964cc58e6296a2950c8d4078644e054b74039a",
    "kv-pressure": "d89165339653e68592df63de71705f5cde10b2dc236aa2475b16861ccf0449bb",
    "sessions": "8a3e8b20f00cf28f20c2bfccbf09a2812fde48a6da7a8bfea886adbce6634d18",
    "fleet-round-robin": "6670a1aa146d16ec4d669f6ff003b118f00b5de681fca59d48136cd947dba8dd",
    "sessions-load-blind": "c54471ba7e67d3c8c0a57ab8103d40848faa9235d529c3ddedd117beac49642f",
}

GOLDEN_SUMMARY = {
    "example": "44587c83db9f7addf751c6d22d8637e112a5e98befd35c13be3e88619dd8e45a",
    "fleet-least-loaded": "848efee9e909e826b158913b819932112ca2de3d8d7f422432ce9650912eb150",
    "kv-pressure": "0887a28944a46fdb145268dc02e0bcbe9239b3b3ef732d23e8ee09497a8cbb9e",
    "sessions": "76033d2413a3ebfe126dc8d6c1a9eabbbde68171ca10985b5761833aa06aa5ce",
    "fleet-round-robin": "d2fb8a7a228c3077bf32bcb0fb43d9ee4efb41f608aa52306228e1ca795142c1",
    "sessions-load-blind": "2102e988b338cee6f6897ae2d3a98329c98e1d1047c52b12ec3e8c53fda1f2d4",
}

GOLDEN_TIMESERIES = {
    "example": "12d3580ab12105c4c5f92c3a78f986f92c75b54d5436663c3a7540d116e557ab",
    "fleet-least-loaded": "6bd872c685b3b5dede5552007d92baad2d3f8d55db64d01cda1c772d258641db",
    "kv-pressure": "11111e3e22356aa4eb1f48b7de672315dc57ff0da229842955cd893180d80d18",
    "sessions": "f47753638472e73e5b55f35317455d310b396827681a99e7c8f356f3444e305a",
    "fleet-round-robin": "1bbd7936d30e080017c1232634d1f0df4b2ce7598ccc8e4345ac47c8e89d3bc7",
    "sessions-load-blind": "55e1edb364d1e5ab0a69ff80307b32eaf972bd290ff1f161f6acb66607f2020a",
}

GOLDEN_FLEET_TIMESERIES = {
    "example": "029d31819be15320c660523669cd7e4d52dfd3451c43dc2116e3a9a85bd9d3bc",
    "fleet-least-loaded": "e7fbaf009c572a7608b1f282be3b342ea638b0cb8de5209691562d39a858c416",
    "kv-pressure": "c45624ad18e8d3e1a1712810b2bb311da6e53126968c2053123bf52479571bf8",
    "sessions": "c8f31e7c09b5d370e4ce02855adc80514aa243983d147e79151274375b171926",
    "fleet-round-robin": "ebbad8af9af4a0ef29b60a7d404b52c024c0c24738ecd489289c200127eb92f5",
    "sessions-load-blind": "976054fb081b40ac9bfcd73d5bf6b3d94804622466b6abb2a353c5fd0d6d456f",
}

GOLDEN_ASYNC = {
    "example": "cc76c3f54f0155326a4fdf44afe707b2a3fc597cca9ec31b541b15c17b26ab3b",
    "fleet-least-loaded": "629187d44f62b17bbb4ac46dc05d686f8f5516b64d5d3843ed1f4b5649b50255",
    "kv-pressure": "dc3a76801143e0a1f57bebd47cf242ccc5578fe9ba68f0d9056be6ac056ddb65",
    "sessions": "08c918063fc2c240e1f96e15556d7787988741df4a5132a02d50850a24e68fed",
    "fleet-round-robin": "d36924e8e9ac47d7354a838d98bf6a0a0a549633999c744f7513ef50d5212f15",
    "sessions-load-blind": "74e48521155b65cb75e6ad2375dd220d7d9d34a25fa47768b166d777cf989329",
}

GOLDEN_SUMMARY_ASYNC = {
    "example": "509fe2ac64894c575c671f2b970bdf7e4072ad04031132e6ec097662936eb3b9",
    "fleet-least-loaded": "47aee84f2b8289088acc57ec687fda1c92822e81b811d52330f79fefc053146d",
    "kv-pressure": "00faa4f8d4cbf259211a055203cd23592f05cc2ac6ca875efeabcf2e5162e795",
    "sessions": "7a88b6c50126c608d723b51000e8870fcdd93d8b10b0b0cd6ebc522c911d6f74",
    "fleet-round-robin": "71c9209e9c8b058f5e4d9c482e2b4a6150441cfa6fe37c51556f99bc2ec9d363",
    "sessions-load-blind": "a6372d71b6578172d751dfdd321fe11817a1cbdd05397a0c66614eb36d72efb5",
}

GOLDEN_TIMESERIES_ASYNC = {
    "example": "13b8fcc88c7fe0b90f9c5271cb443a94c29e78eb3aef228acd5e853167be6282",
    "fleet-least-loaded": "8e1e9b31f7aa061bc16c16ec4a401261eae05b69490827f6194a15c6cfb7ac21",
    "kv-pressure": "2c02d9086809ff1f556c9bab6bb252d1908745015d6a05f6e8d4643fec47e140",
    "sessions": "d5c74e772fc6cd117ca831395d8b31cb67e7e43a1d4d43caaba58e08204afb62",
    "fleet-round-robin": "20341adebbd4258ea477777fbe6758a990b9d5b68dfd2497b2c2c0a50aa7942a",
    "sessions-load-blind": "620dbc6ca4494bc6b74b5d0a554b7c88c6ba7efc08dd85459c038f5c970daa04",
}

GOLDEN_FLEET_TIMESERIES_ASYNC = {
    "example": "49771c7827e48be55727988113b040715389bb9ab52ffcae383b91309807731b",
    "fleet-least-loaded": "3f9204a4aa27c3b425fe61bdabc90efd8c83a4fa81cfc07671f196393bb010f1",
    "kv-pressure": "2daf2e0071b438d240a709e4b6550dabf8d8461fb04dfe59971318969aa79fca",
    "sessions": "d3c03862b929b721be600e02cb6e04e2f64495ab6025c4be5cce14f0714a6c97",
    "fleet-round-robin": "5800ec901351de90e774281e0c37ad49c012b09151a74c0d5f909d62f82a0b5b",
    "sessions-load-blind": "3a6a716ea5a4e30325ecd1b29f6c1466305ba7bbdfffc97f39063363c27060e3",
}


GOLDEN_QUEUED = {
    "example": "3e1d4c827273cd5815d8e0bac50be5c5fb859a8d3d215db2363a482faa6e7b3c",
    "fleet-least-loaded": "5a433bb0e82eba14a78f062ab45af1ecc45fef57a67295519ebb09826551177c",
    "kv-pressure": "3095122e5f041f45145cf8b3a42b48204ac27b29519c5fa627f24dbdd1b4934a",
    "sessions": "23c7df8508b9cd0c0db09c2acaa3c400546cc0cfb80dcba6ba20e40ad7c22371",
    "fleet-round-robin": "e7fe9ecfc06feb4a9f6ae9dfcf073f09899e4be8e345b543b369990eaa5fd75b",
    "sessions-load-blind": "4fd2b3827e5477843494fdbf4b0c04e2cb48012f8dd24cdab467b795f743ec00",
}

GOLDEN_QUEUED_ASYNC = {
    "example": "a6ba8f1ea6aeeaf4e430850729c04e8ec639d9ca2afa343861b03f7dd0427151",
    "fleet-least-loaded": "edffa90031db25ec770ec8afb80057802df39a99021147e5a207ad5881dd9eaf",
    "kv-pressure": "d165bb6cb1f4e136c57822858a5920c5b35db4a03fe1c2b628fa22fdcdd1955f",
    "sessions": "7e4077cd317b3640ead01ba74963f14902efe079a78a7e7a92cb74db2e6264cf",
    "fleet-round-robin": "2a2e91681305afe8a3f7beb3e0af85e5a8a211471d54605842971ae99f2295db",
    "sessions-load-blind": "273880b979577225256b40a8e5d4bc1bda1930ce8e71829758ade77e71188b7d",
}

MODES = {"synchronous": (("--no-async-scheduling",), GOLDEN, GOLDEN_QUEUED, GOLDEN_SUMMARY, GOLDEN_TIMESERIES,
                         GOLDEN_FLEET_TIMESERIES),
         "async": ((), GOLDEN_ASYNC, GOLDEN_QUEUED_ASYNC, GOLDEN_SUMMARY_ASYNC, GOLDEN_TIMESERIES_ASYNC,
                   GOLDEN_FLEET_TIMESERIES_ASYNC)}


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("case", sorted(CASES))
def test_outputs_match_golden_hashes(tmp_path, case, mode):
    flags, csv_hashes, queued_hashes, summary_hashes, series_hashes, fleet_hashes = MODES[mode]
    kwargs = {"cluster": EXAMPLE_CLUSTER}
    if case.startswith("sessions"):
        kwargs["workload"] = write_session_workload(tmp_path / "s.jsonl")
    out = run_cli(tmp_path / case, *CASES[case], *flags, **kwargs)
    lines = (out / "requests.csv").read_bytes().splitlines(keepends=True)
    assert lines[0].endswith(b",queued\n")
    before_queued = b"".join(line[:line.rindex(b",")] + b"\n" for line in lines)
    assert hashlib.sha256(before_queued).hexdigest() == csv_hashes[case]
    queued = b"".join(line[line.rindex(b",") + 1:] for line in lines)
    assert hashlib.sha256(queued).hexdigest() == queued_hashes[case]
    summary = json.loads((out / "summary.json").read_text())
    assert "wall_s" not in summary
    assert summary.pop("run")["options"]["seed"] is None     # provenance (paths vary): pinned apart
    assert hashlib.sha256(json.dumps(summary, sort_keys=True).encode()).hexdigest() == summary_hashes[case]
    assert hashlib.sha256((out / "timeseries.csv").read_bytes()).hexdigest() == series_hashes[case]
    assert hashlib.sha256((out / "timeseries_fleet.csv").read_bytes()).hexdigest() == fleet_hashes[case]


@pytest.mark.parametrize("case", sorted(CASES))
def test_summary_from_spilled_itl_statistics(tmp_path, monkeypatch, case):
    """The ITL statistics of a run too long to buffer its gaps (cluster/value_stream.py: counts and
    a file, read back in chunks) are the buffered ones to the bit: the same summary hash."""
    from fleetsim.cluster import value_stream
    monkeypatch.setattr(value_stream, "BUFFER_VALUES", 50)
    monkeypatch.setattr(value_stream, "CHUNK", 128)
    kwargs = {"cluster": EXAMPLE_CLUSTER}
    if case.startswith("sessions"):
        kwargs["workload"] = write_session_workload(tmp_path / "s.jsonl")
    out = run_cli(tmp_path / case, *CASES[case], "--no-async-scheduling", **kwargs)
    summary = json.loads((out / "summary.json").read_text())
    summary.pop("run")
    assert hashlib.sha256(json.dumps(summary, sort_keys=True).encode()).hexdigest() == GOLDEN_SUMMARY[case]
