"""`spaced_full_collections`: Python's full garbage collections spaced out while a run lasts.

A run keeps hundreds of thousands of long-lived objects (the requests in flight and their block
lists, the engines, the tables) and makes no cyclic garbage that outlives the young generations:
in scenario d (1024 instances, scripts/bench/scenarios.py) none of a run's full collections
found anything to collect. CPython runs a full collection after every `threshold2` (10)
collections of the middle generation once the survivors have grown by a quarter, and each one
walks every tracked object and every item of every list: 13 of them took 3.7 s of a 38 s run
(200k requests; 300–500 ms each, ~1.4 M block ids in the requests' lists). With the third
threshold `FACTOR` times higher, the same run made one. Young collections are untouched, so
short-lived cycles are freed as before; the outputs do not depend on the collector.
"""
from __future__ import annotations

import gc
from contextlib import contextmanager

FACTOR = 10


@contextmanager
def spaced_full_collections():
    """Raise the collector's third threshold `FACTOR` times for the block; restore it after
    (unless something else changed it meanwhile)."""
    t0, t1, t2 = gc.get_threshold()
    spaced = (t0, t1, t2 * FACTOR)
    gc.set_threshold(*spaced)
    try:
        yield
    finally:
        if gc.get_threshold() == spaced:
            gc.set_threshold(t0, t1, t2)
