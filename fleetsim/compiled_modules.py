"""Compiled builds of the hot modules: which modules have one, what a build is called, and the
import hook that loads a build only while it matches its source.

The install (setup.py) compiles each module of `COMPILED` with Cython from its own .py file,
unchanged: there is no typed copy, the .py stays the only source, and a build computes what
the .py computes (Python objects and Python arithmetic throughout; tests/test_compiled_modules.py
checks byte-identical outputs both ways). A build lies beside its source as
`<module>.compiled-<sha>.<extension suffix>`, where sha starts the SHA-256 of the source it
was compiled from. That name is not one the normal import looks for, so only `CompiledFinder`
loads it, and only when the source on disk still has that hash: an edited .py takes effect at
once (its build goes stale and is skipped until the next install).

FLEETSIM_PURE_PYTHON=1 in the environment skips the builds: at install (nothing is compiled)
and at import (the .py files load), e.g. for a profiler that sees only Python frames. Without
Cython or a C compiler the install stays pure Python and runs the same.
"""
from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import sys

# The modules whose Python work per simulated step or request is the run time (engine, cost
# model, records, router loop); the rest are set-up and gain nothing from compiling.
COMPILED = (
    "fleetsim.costmodel.attention_table", "fleetsim.costmodel.batch", "fleetsim.costmodel.costmodel",
    "fleetsim.costmodel.interp", "fleetsim.costmodel.profile", "fleetsim.costmodel.roofline",
    "fleetsim.instance.block_manager", "fleetsim.instance.engine", "fleetsim.instance.fast_forward",
    "fleetsim.instance.pipeline", "fleetsim.instance.request", "fleetsim.instance.scheduler",
    "fleetsim.instance.timeseries",
    "fleetsim.cluster.fleet_loop", "fleetsim.cluster.host", "fleetsim.cluster.metrics", "fleetsim.cluster.records",
    "fleetsim.cluster.requests_csv", "fleetsim.cluster.router", "fleetsim.cluster.timeseries_writer",
    "fleetsim.cluster.value_stream", "fleetsim.cluster.workloads.synthetic",
)
PURE_ENV = "FLEETSIM_PURE_PYTHON"


def pure_python() -> bool:
    """Whether the environment asks for the .py files only."""
    return os.environ.get(PURE_ENV, "") not in ("", "0")


def _stem(source: str) -> str:
    """`<module>.compiled-`: how every build of `source` starts."""
    return os.path.basename(source)[:-len(".py")] + ".compiled-"


def build_name(source: str) -> str:
    """File name of the build of `source` (a .py path) as compiled from its present bytes."""
    with open(source, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()[:16]
    return f"{_stem(source)}{sha}{importlib.machinery.EXTENSION_SUFFIXES[0]}"


def current_build(source: str) -> str | None:
    """Path of the build of `source` that matches it, if there is one."""
    path = os.path.join(os.path.dirname(source), build_name(source))
    return path if os.path.isfile(path) else None


def stale_builds(source: str) -> list[str]:
    """Paths of the builds of `source` compiled from other bytes than its present ones."""
    folder, keep, stem = os.path.dirname(source) or ".", build_name(source), _stem(source)
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.startswith(stem) and f != keep)


class CompiledFinder:
    """Meta-path finder: a module of `COMPILED` whose source has a current build loads that build;
    any other module, or one without a current build, is left to the normal import."""

    names = frozenset(COMPILED)

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname not in cls.names or not path:
            return None
        leaf = fullname.rpartition(".")[2] + ".py"
        for folder in path:
            source = os.path.join(folder, leaf)
            if os.path.isfile(source):
                build = current_build(source)
                if build is None:
                    return None
                loader = importlib.machinery.ExtensionFileLoader(fullname, build)
                return importlib.util.spec_from_file_location(fullname, build, loader=loader)
        return None


def install() -> None:
    """Put `CompiledFinder` first on `sys.meta_path` (once), unless FLEETSIM_PURE_PYTHON is set."""
    if not pure_python() and CompiledFinder not in sys.meta_path:
        sys.meta_path.insert(0, CompiledFinder)


def loaded() -> list[str]:
    """The modules of `COMPILED` imported so far from a build."""
    return sorted(name for name in COMPILED
                  if getattr(sys.modules.get(name), "__file__", "").endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)))
