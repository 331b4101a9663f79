"""The compiled builds of the hot modules (fleetsim/compiled_modules.py): a build loads only while
it matches its source, FLEETSIM_PURE_PYTHON=1 loads the .py files, and both ways the pinned
golden hashes and the fuzz of fast-forward against stepping hold."""
from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fleetsim import compiled_modules

ROOT = Path(__file__).resolve().parents[1]
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def _sources_with_builds() -> list[str]:
    found = []
    for name in compiled_modules.COMPILED:
        spec = importlib.util.find_spec(name.rpartition(".")[0])
        source = os.path.join(spec.submodule_search_locations[0], name.rpartition(".")[2] + ".py")
        if compiled_modules.current_build(source):
            found.append(name)
    return found


def test_a_build_is_named_after_its_source_and_found_only_while_the_source_is_unchanged(tmp_path):
    source = tmp_path / "engine.py"
    source.write_text("X = 1\n")
    sha = hashlib.sha256(b"X = 1\n").hexdigest()[:16]
    assert compiled_modules.build_name(str(source)) == f"engine.compiled-{sha}{SUFFIX}"
    assert compiled_modules.current_build(str(source)) is None          # not built
    build = tmp_path / f"engine.compiled-{sha}{SUFFIX}"
    build.write_bytes(b"")
    assert compiled_modules.current_build(str(source)) == str(build)
    source.write_text("X = 2\n")                                          # edited: the build is stale
    assert compiled_modules.current_build(str(source)) is None


def test_the_finder_leaves_other_modules_and_stale_builds_to_the_normal_import(tmp_path):
    assert compiled_modules.CompiledFinder.find_spec("fleetsim.cluster.cli", [str(ROOT / "cluster")]) is None
    (tmp_path / "engine.py").write_text("X = 1\n")
    (tmp_path / f"engine.compiled-{'0' * 16}{SUFFIX}").write_bytes(b"")  # another source's build
    assert compiled_modules.CompiledFinder.find_spec("fleetsim.instance.engine", [str(tmp_path)]) is None


def test_current_builds_are_what_imports_load():
    built = _sources_with_builds()
    if not built:
        pytest.skip("this install is pure Python (no compiled builds)")
    if compiled_modules.pure_python():
        pytest.skip("FLEETSIM_PURE_PYTHON is set")
    for name in built:
        module = importlib.import_module(name)
        assert module.__file__.endswith(SUFFIX), name
    assert set(built) <= set(compiled_modules.loaded())


def test_pure_python_env_loads_the_sources():
    code = ("import fleetsim.instance.fast_forward as f, fleetsim.compiled_modules as c; "
            "print(f.__file__); print(c.loaded())")
    env = {**os.environ, compiled_modules.PURE_ENV: "1"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    where, loaded = run.stdout.splitlines()
    assert where.endswith("fast_forward.py") and loaded == "[]"


@pytest.mark.slow
def test_the_other_way_keeps_the_golden_hashes_and_the_fast_forward_fuzz():
    """This session runs whichever way the install made; the goldens and the fuzz run the other
    way in a subprocess (pure Python where there are builds, and the reverse)."""
    if not _sources_with_builds():
        pytest.skip("this install is pure Python: the goldens run that way in the suite itself")
    env = {k: v for k, v in os.environ.items() if k != compiled_modules.PURE_ENV}
    if not compiled_modules.pure_python():
        env[compiled_modules.PURE_ENV] = "1"
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "tests/test_golden.py", "tests/test_fast_forward.py"],
                         cwd=ROOT, capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "failed" not in run.stdout
