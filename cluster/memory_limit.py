"""The run's memory, estimated before anything is allocated, against `--memory-limit`.

A run allocates, per instance, an engine (~2.4 KiB measured with tracemalloc, counted as
`ENGINE_BYTES`) and its KV block manager's arrays: `BLOCK_BYTES` per KV block (three 4-byte
`array`s and an 8-byte list slot: 20.8 bytes measured), for `num_gpu_blocks` or the blocks the
cost model fits in the GPU's memory; and per request its records (`REQUEST_BYTES`). A
`memory_gib: 1.0e+7` or `num_gpu_blocks: 1e12` asks for terabytes of block arrays; the estimate
refuses such a run with one line instead of a MemoryError (or the machine swapping) after
minutes. The estimate is a floor (hashes of cached blocks and the per-token statistics come on
top as the run goes), so a run it admits can still be large; it exists to catch the absurd.

`--memory-limit GIB` (RunOptions.memory_limit) sets the limit; by default it is the memory the
machine has available now (/proc/meminfo's MemAvailable, else os.sysconf's available pages).
With `--backend ray` the instances live in the actors, on this machine unless the cluster
joined has others: pass a larger --memory-limit for a multi-node cluster.
`MAX_INSTANCES` bounds a fleet's size before even the instance list is built.
"""
from __future__ import annotations

import math
import os

from fleetsim.cluster.errors import InputError, is_finite_number

ENGINE_BYTES = 4096
BLOCK_BYTES = 24
REQUEST_BYTES = 256
MAX_INSTANCES = 1_000_000
GIB = 2 ** 30


def available_bytes() -> int | None:
    """The memory available to a new allocation now (None when the system does not say)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def limit_bytes(memory_limit) -> tuple[int | None, str]:
    """(limit in bytes or None for none known, how it was chosen) for a `--memory-limit` value
    in GiB (None: the machine's available memory)."""
    if memory_limit is None:
        avail = available_bytes()
        return avail, "the memory available on this machine; set --memory-limit to change"
    if not is_finite_number(memory_limit) or memory_limit <= 0:
        raise InputError(f"--memory-limit must be a positive number of GiB, got {memory_limit!r}")
    return math.floor(memory_limit * GIB), "--memory-limit"


def check_instance_count(count: int, where: str) -> None:
    """Refuse a fleet of more than MAX_INSTANCES instances (`where`: the file or flag)."""
    if count > MAX_INSTANCES:
        raise InputError(f"{where}: {count:,} instances; at most {MAX_INSTANCES:,} (each needs its own engine "
                         f"and KV cache arrays)")


def check_memory(config, cost_models: dict, num_requests: int, memory_limit=None) -> None:
    """Refuse the run of `config` (its instances' KV blocks from `cost_models`, one per distinct
    spec) on `num_requests` requests when its estimate exceeds the limit."""
    limit, why = limit_bytes(memory_limit)
    if limit is None:
        return
    blocks = {spec: max(0, spec.engine.num_gpu_blocks or cm.num_kv_blocks(spec.engine.block_size,
                                                                          spec.engine.gpu_memory_utilization))
              for spec, cm in cost_models.items()}
    counts = {spec: 0 for spec in blocks}
    for spec in config.instances:
        counts[spec] += 1
    total = sum(counts.values()) * ENGINE_BYTES + sum(BLOCK_BYTES * blocks[s] * n for s, n in counts.items()) \
        + REQUEST_BYTES * num_requests
    if total > limit:
        biggest = max(blocks, key=blocks.get)
        where = f"{config.source}: " if config.source else ""
        raise InputError(f"{where}the run needs about {total / GIB:,.1f} GiB ({len(config.instances):,} instance(s), "
                         f"up to {blocks[biggest]:,} KV blocks each, {num_requests:,} requests), more than "
                         f"{limit / GIB:,.1f} GiB ({why}); lower num_gpu_blocks, memory_gib or the instance count"
                         f"{config.overrides_note()}")
