"""fleetsim.costmodel: model architectures, hardware specs and per-iteration latency.

Imports nothing from `instance` or `cluster`. Usable on its own::

    from fleetsim.costmodel import CostModel
    cm = CostModel.load(model="meta-llama/Llama-3.1-8B", hardware="RTXPRO6000",
                        backend="profile", tp=1, perf_root="path/to/perf")
    cm.iteration_time_ns([(1, 2358)])       # one decode step, 2358 tokens of context
"""
from fleetsim.costmodel.errors import CostModelError
from fleetsim.costmodel.arch import ModelArch
from fleetsim.costmodel.hardware import Hardware
from fleetsim.costmodel.costmodel import CostModel

__all__ = ["CostModel", "CostModelError", "Hardware", "ModelArch"]
