"""Packaging: every subpackage of the checkout is installed under fleetsim.*."""
from __future__ import annotations

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")     # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(project["packages"])
    mapping = project["package-dir"]
    found = {"fleetsim"}
    for top in ("costmodel", "instance", "cluster"):
        assert mapping[f"fleetsim.{top}"] == top
        for init in sorted((ROOT / top).rglob("__init__.py")):
            rel = init.parent.relative_to(ROOT).parts
            found.add(".".join(("fleetsim", *rel)))
    missing = found - listed
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"
    assert listed - found == {"fleetsim.configs"}
