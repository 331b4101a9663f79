"""fleetsim: a fast, deterministic simulator of LLM serving fleets."""
import os as _os

# A source checkout keeps costmodel/, instance/ and cluster/ beside this folder (the design's
# layout; an install maps them to fleetsim.*): let the subpackages resolve there too, so a
# checkout (or a git worktree of it) imports its own code, with or without an install.
_ROOT = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if _os.path.isfile(_os.path.join(_ROOT, "costmodel", "__init__.py")) and _ROOT not in __path__:
    __path__.append(_ROOT)
