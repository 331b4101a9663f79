"""fleetsim's version (re-exported as `fleetsim.__version__`; pyproject reads it from here)."""
__version__ = "0.2.0"
