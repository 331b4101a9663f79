"""Builds the compiled modules (fleetsim/compiled_modules.py says which, how they are named and
loaded); everything else about the package is in pyproject.toml.

Each is the module's own .py compiled by Cython. A build that cannot be made (no Cython, no C
compiler, FLEETSIM_PURE_PYTHON=1) is skipped with one line on stderr: the package is then pure
Python and computes the same.
"""
import importlib.util
import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

_spec = importlib.util.spec_from_file_location("compiled_modules", os.path.join("fleetsim", "compiled_modules.py"))
compiled = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compiled)

LEAVES = {name.rpartition(".")[2]: name for name in compiled.COMPILED}
assert len(LEAVES) == len(compiled.COMPILED), "two compiled modules share a last name"


def source_of(name: str) -> str:
    """fleetsim.X.Y -> X/Y.py: the checkout's costmodel/, instance/ and cluster/ are the
    subpackages of the same names ([tool.setuptools.package-dir])."""
    return os.path.join(*name.split(".")[1:]) + ".py"


def extensions() -> list:
    if compiled.pure_python():
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        print("fleetsim: Cython is not installed: installing the pure-Python modules only", file=sys.stderr)
        return []
    no_debug_info = [] if sys.platform == "win32" else ["-g0"]     # a quarter of the size, the same code
    exts = [Extension(name, [source_of(name)], extra_compile_args=no_debug_info) for name in compiled.COMPILED]
    try:
        return cythonize(exts, build_dir=os.path.join("build", "cython"), quiet=True,
                         compiler_directives={"language_level": 3, "binding": True, "annotation_typing": False})
    except Exception as e:      # a module Cython cannot compile
        print(f"fleetsim: compiled modules not built (Cython: {e}): installing the pure-Python modules only", file=sys.stderr)
        return []


class OptionalBuildExt(build_ext):
    """build_ext that names each build after its source's hash and skips, with one line, what
    cannot be compiled."""

    def finalize_options(self):
        super().finalize_options()
        self.parallel = self.parallel or os.cpu_count() or 1

    def get_ext_filename(self, fullname):
        # called with the full dotted name, or (distutils' get_ext_fullpath) with its last part
        name = fullname if fullname in compiled.COMPILED else LEAVES.get(fullname)
        if name is None:
            return super().get_ext_filename(fullname)
        build = compiled.build_name(source_of(name))
        return build if name != fullname else os.path.join(*name.split(".")[:-1], build)

    def run(self):
        try:
            super().run()
        except Exception as e:     # CompileError, LinkError, no compiler found, ...
            print(f"fleetsim: compiled modules not built ({type(e).__name__}: {e}): installing the pure-Python "
                  "modules only", file=sys.stderr)
            return
        if self.inplace:
            self._remove_stale()

    def _remove_stale(self):
        """Builds of earlier sources left in the source folders (they would never load again)."""
        for name in compiled.COMPILED:
            for old in compiled.stale_builds(source_of(name)):
                os.remove(old)


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
