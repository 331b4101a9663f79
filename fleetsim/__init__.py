"""fleetsim: a fast, deterministic simulator of LLM serving fleets.

    import fleetsim
    result = fleetsim.simulate("cluster.yaml", "workload.jsonl", instances=4, router="least_loaded")
    result.summary["ttft_ms"]["p99"]
    result.requests            # pandas DataFrame (numpy structured array without pandas)
    result.save("out/run1")    # requests.csv, summary.json, timeseries.csv, timeseries_fleet.csv

The public names are re-exported from the layers below, loaded on first use (no logic here): `simulate`, `Result`,
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

# The hot modules load from their compiled builds where the install made current ones
# (compiled_modules.py; FLEETSIM_PURE_PYTHON=1: the .py files only).
from fleetsim import compiled_modules as _compiled_modules  # noqa: E402

_compiled_modules.install()

# The public names load on first use (PEP 562), so that `import fleetsim.cluster.fleet` or the
# CLI does not import the whole API: name -> (module, name there).
_PUBLIC = {
    "AutoscalingPolicy": ("fleetsim.cluster.autoscaling", "AutoscalingPolicy"),
    "CONFIGS": ("fleetsim.costmodel.paths", "SHIPPED"),
    "ClusterConfig": ("fleetsim.cluster.config", "ClusterConfig"),
    "CostModel": ("fleetsim.costmodel", "CostModel"),
    "CostModelError": ("fleetsim.costmodel", "CostModelError"),
    "InputError": ("fleetsim.cluster.errors", "InputError"),
    "Policy": ("fleetsim.cluster.policies", "Policy"),
    "Result": ("fleetsim.cluster.result", "Result"),
    "RunOptions": ("fleetsim.cluster.simulation", "RunOptions"),
    "Workload": ("fleetsim.cluster.workloads", "Workload"),
    "__version__": ("fleetsim.cluster.version", "__version__"),
    "load_cluster_config": ("fleetsim.cluster.config", "load_cluster_config"),
    "load_workload": ("fleetsim.cluster.workloads", "load_workload"),
    "simulate": ("fleetsim.cluster.simulation", "simulate"),
}

__all__ = ["AutoscalingPolicy", "CONFIGS", "ClusterConfig", "CostModel", "CostModelError", "InputError", "Policy", "Result",
           "RunOptions", "Workload", "__version__", "load_cluster_config", "load_workload", "simulate"]


def __getattr__(name: str):
    try:
        module, attr = _PUBLIC[name]
    except KeyError:
        raise AttributeError(f"module 'fleetsim' has no attribute {name!r}") from None
    import importlib
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value          # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))
