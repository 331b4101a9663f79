"""Parse-once file cache.

Every config and table file goes through here: each path is read and parsed at most once per
process and the parsed object is shared (callers must treat it as read-only). `READS` counts the
actual reads per path so tests can prove the parse-once property.
"""
from __future__ import annotations

import collections
import csv
import json
import os
import threading

import numpy as np
import yaml

from fleetsim.costmodel.errors import CostModelError

READS: collections.Counter = collections.Counter()
_CACHE: dict = {}
_LOCK = threading.Lock()


def _cached(kind: str, path: str, parse):
    key = (kind, os.path.realpath(path))
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
    if not os.path.isfile(path):
        raise CostModelError(f"{path}: file not found")
    READS[key[1]] += 1
    try:
        value = parse(key[1])
    except CostModelError:
        raise
    except (ValueError, KeyError, IndexError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise CostModelError(f"{path}: cannot parse: {exc}".splitlines()[0]) from None
    with _LOCK:
        _CACHE[key] = value
    return value


def load_json(path: str):
    """A JSON file, parsed once."""
    def parse(p):
        with open(p, encoding="utf-8") as fh:
            return json.load(fh)
    return _cached("json", path, parse)


def load_yaml(path: str):
    """A YAML file, parsed once."""
    def parse(p):
        with open(p, encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    return _cached("yaml", path, parse)


def load_csv_columns(path: str, numeric: tuple[str, ...]) -> dict[str, np.ndarray]:
    """A CSV file as a dict of column arrays (float64 for `numeric`, str otherwise), parsed once."""
    def parse(p):
        with open(p, encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise CostModelError(f"{p}: empty file")
            header = [h.strip() for h in header]
            missing = [c for c in numeric if c not in header]
            if missing:
                raise CostModelError(f"{p}: missing column(s) {', '.join(missing)}; header is {','.join(header)}")
            rows = [r for r in reader if r]
        cols = {}
        for i, name in enumerate(header):
            values = [r[i] if i < len(r) else "" for r in rows]
            if name in numeric:
                try:
                    cols[name] = np.array(values, dtype=np.float64)
                except ValueError:
                    bad = next(v for v in values if not _is_float(v))
                    raise CostModelError(f"{p}: column {name}: not a number: {bad!r}") from None
                cols[name].setflags(write=False)
            else:
                cols[name] = np.array(values, dtype=object)
        return cols
    return _cached("csv:" + ",".join(numeric), path, parse)


def _is_float(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def snapshot() -> dict:
    """Every parsed file of this process (read-only values), to hand to another process."""
    with _LOCK:
        return dict(_CACHE)


def install(entries: dict) -> None:
    """Take parsed files from `snapshot()` of another process: later loads of those paths read
    nothing (READS does not count them)."""
    with _LOCK:
        for key, value in entries.items():
            _CACHE.setdefault(key, value)


def clear_cache() -> None:
    """Forget every parsed file and reset the read counter (tests only)."""
    with _LOCK:
        _CACHE.clear()
        READS.clear()
