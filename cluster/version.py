"""fleetsim's version, from cluster/VERSION (pyproject reads the same file; `fleetsim.__version__`)."""
from pathlib import Path

__version__ = (Path(__file__).resolve().parent / "VERSION").read_text(encoding="utf-8").strip()
