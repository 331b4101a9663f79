"""fleetsim: a fast, deterministic simulator of LLM serving fleets.

    import fleetsim
    result = fleetsim.simulate("cluster.yaml", "workload.jsonl", instances=4, router="least_loaded")
    result.summary["ttft_ms"]["p99"]
    result.requests            # pandas DataFrame (numpy structured array without pandas)
    result.save("out/run1")    # requests.csv, summary.json, timeseries.csv, timeseries_fleet.csv

The public names are re-exported from the layers below (no logic here): `simulate`, `Result`,
`RunOptions` (the options `simulate` takes), `load_workload`, `load_cluster_config`,
`CostModel`, `Policy` (the base class of user routing policies), `AutoscalingPolicy` (of user
autoscaling policies), `InputError`,
`CostModelError`, and `CONFIGS`, the folder of shipped configs (models, hardware, perf bundles,
example clusters and workloads).
"""
import os as _os

# A source checkout keeps costmodel/, instance/ and cluster/ beside this folder (the design's
# layout; an install maps them to fleetsim.*): let the subpackages resolve there too, so a
# checkout (or a git worktree of it) imports its own code, with or without an install.
_ROOT = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if _os.path.isfile(_os.path.join(_ROOT, "costmodel", "__init__.py")) and _ROOT not in __path__:
    __path__.append(_ROOT)

from fleetsim.costmodel import CostModel, CostModelError  # noqa: E402
from fleetsim.costmodel.paths import SHIPPED as CONFIGS  # noqa: E402
from fleetsim.cluster.autoscaling import AutoscalingPolicy  # noqa: E402
from fleetsim.cluster.config import ClusterConfig, load_cluster_config  # noqa: E402
from fleetsim.cluster.errors import InputError  # noqa: E402
from fleetsim.cluster.policies import Policy  # noqa: E402
from fleetsim.cluster.result import Result  # noqa: E402
from fleetsim.cluster.simulation import RunOptions, simulate  # noqa: E402
from fleetsim.cluster.version import __version__  # noqa: E402
from fleetsim.cluster.workloads import Workload, load_workload  # noqa: E402

__all__ = ["AutoscalingPolicy", "CONFIGS", "ClusterConfig", "CostModel", "CostModelError", "InputError", "Policy", "Result",
           "RunOptions", "Workload", "__version__", "load_cluster_config", "load_workload", "simulate"]
