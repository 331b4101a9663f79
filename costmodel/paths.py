"""Where configs live: the shipped `configs/` folder plus user roots searched first."""
from __future__ import annotations

import os
from pathlib import Path

from fleetsim.costmodel.errors import CostModelError

SHIPPED = Path(os.environ.get("FLEETSIM_CONFIGS", Path(__file__).resolve().parents[1] / "configs"))


def _first(roots: list[str], relative: str, is_dir: bool = False) -> str | None:
    """`<root>/<relative>` for the first root that has it (a file, or a folder with `is_dir`)."""
    for root in roots:
        candidate = os.path.join(root, relative)
        if (os.path.isdir if is_dir else os.path.isfile)(candidate):
            return candidate
    return None


def model_config_path(name: str, models_roots: tuple[str, ...] = ()) -> str:
    """`<root>/<org>/<name>.json` for the first root (user roots, then shipped) that has it."""
    roots = [*models_roots, str(SHIPPED / "models")]
    found = _first(roots, name + ".json")
    if found is None:
        raise CostModelError(f"model {name!r}: no config.json found as <org>/<name>.json under {', '.join(roots)}")
    return found


def hardware_path(name: str, hardware_roots: tuple[str, ...] = ()) -> str:
    """`<root>/<name>.yaml` for the first root that has it."""
    found = _first([*hardware_roots, str(SHIPPED / "hardware")], name + ".yaml")
    if found is None:
        known = sorted(p.stem for p in (SHIPPED / "hardware").glob("*.yaml"))
        raise CostModelError(f"hardware {name!r}: unknown; shipped: {', '.join(known)}")
    return found


def bundle_dir(hardware: str, model: str, variant: str, tp: int, perf_roots: tuple[str, ...] = ()) -> str:
    """`<root>/<hardware>/<org>/<name>/<variant>/tp<N>` for the first root that has it."""
    roots = [*perf_roots, str(SHIPPED / "perf")]
    found = _first(roots, os.path.join(hardware, model, variant, f"tp{tp}"), is_dir=True)
    if found is None:
        raise CostModelError(
            f"profile bundle {hardware}/{model}/{variant}/tp{tp}: not found under {', '.join(roots)} "
            "(give --perf-root, or use the roofline backend)")
    return found
