"""fleetsim from Python: compare three routing policies on one workload, without writing files.

Run from anywhere once fleetsim is installed:  python3 examples/quickstart.py
"""
import fleetsim

CLUSTER = fleetsim.CONFIGS / "clusters" / "rtxpro6000-llama8b.yaml"     # shipped example cluster
WORKLOAD = fleetsim.CONFIGS / "workloads" / "sharegpt-llama-3.1-8b-300-sps10.jsonl"

print(f"{'policy':<26}{'TTFT p99 ms':>12}{'TPOT mean ms':>14}{'E2E p50 ms':>12}")
for policy in ("round_robin", "least_loaded", "least_outstanding_tokens"):
    # the 300 requests (about 10 req/s) over 2 instances, router signals 50 ms stale
    result = fleetsim.simulate(CLUSTER, WORKLOAD, instances=2, router=policy, sync_interval_ms=50)
    s = result.summary
    print(f"{policy:<26}{s['ttft_ms']['p99']:>12.1f}{s['tpot_ms']['mean']:>14.2f}{s['e2e_ms']['p50']:>12.1f}")

# per-request records as a table (a pandas DataFrame when pandas is installed)
requests = result.requests
print(f"\nlast run: {len(requests)} requests on {requests['instance id'].nunique()} instances; "
      f"slowest TTFT {requests['TTFT'].max() / 1e6:.1f} ms")
result.save("out/quickstart", overwrite=True)     # requests.csv, summary.json, timeseries*.csv
print("files written to out/quickstart")
