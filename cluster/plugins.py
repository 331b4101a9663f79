"""`plugin_class`: a class of a pluggable family by its registered name or a dotted path."""
from __future__ import annotations

import importlib

from fleetsim.cluster.errors import InputError


def plugin_class(name: str, registry: dict, base: type, base_name: str, where: str) -> type:
    """`registry[name]`, or the class `package.module:Class` (or `package.module.Class`), which
    must subclass `base` (public as `base_name`); an InputError names `where` the name came from."""
    if name in registry:
        return registry[name]
    if "." in name or ":" in name:
        module, _, attr = name.replace(":", ".").rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise InputError(f"{where} {name!r}: cannot import ({exc})") from None
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise InputError(f"{where} {name!r}: not a subclass of {base_name}")
        return cls
    raise InputError(f"{where} {name!r}: unknown; choose one of {', '.join(registry)} or a dotted path")
