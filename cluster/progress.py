"""Progress on stderr (tqdm): a loading bar while a workload file is read, then the run's bar.

Two phases, each a tqdm bar on stderr, shown only when stderr is a terminal and the caller
asks for progress (`fleetsim run` unless `--quiet`); otherwise nothing is written and the run
calls a no-op (`_Off`), so a quiet run pays nothing:

- **loading** (`loading_bar`): bytes read of each file opened by `textfile.text_lines` inside
  the `with` block, out of the file's size, so the bar grows while the loader parses. The bar
  appears only after `LOAD_DELAY_S` (a small file never shows one, nor does a loader's quick
  peek at a file's first line) and is cleared when the file closes.
- **running** (`run_bar`): requests finished out of the workload's requests (percentage,
  count, requests per wall second, tqdm's ETA from that rate) and the simulated time reached
  with its rate in simulated seconds per wall second. The bar stays on screen at the end,
  showing 100 % and the request count.

The bars only read the run's state: output files are byte-identical with or without them.
tqdm redraws at most every `REDRAW_S` wall seconds; between redraws an update is a few
attribute writes. tqdm itself is imported only when a bar is drawn.
"""
from __future__ import annotations

import contextlib
import functools
import os
import sys

from fleetsim.cluster.textfile import observe_reads

LOAD_DELAY_S = 0.5       # a file that loads faster than this shows no bar
REDRAW_S = 0.2           # the least wall time between two redraws of a bar


def shown(enabled: bool, stream) -> bool:
    """Whether a bar should be drawn on `stream`: asked for, and the stream is a terminal."""
    isatty = getattr(stream, "isatty", None)
    return bool(enabled and isatty is not None and isatty())


def loading_bar(enabled: bool, stream=None):
    """A context manager: files read inside it show a bytes-read bar (module doc)."""
    stream = sys.stderr if stream is None else stream
    if not shown(enabled, stream):
        return contextlib.nullcontext()

    from tqdm import tqdm

    def opened(path: str, size: int):
        return tqdm(total=size or None, desc=f"loading {os.path.basename(path)}", unit="B", unit_scale=True,
                    unit_divisor=1024, leave=False, delay=LOAD_DELAY_S, mininterval=REDRAW_S, file=stream)
    return observe_reads(opened)


@functools.cache
def _run_tqdm() -> type:
    """tqdm whose postfix is the simulated time reached and its rate (sim s per wall s)."""
    from tqdm import tqdm

    class RunTqdm(tqdm):
        sim_ns = 0

        @property
        def format_dict(self):
            d = super().format_dict
            sim_s, wall_s = self.sim_ns / 1e9, d["elapsed"]
            rate = f"{sim_s / wall_s:.3g}" if wall_s > 0 else "?"
            d["postfix"] = f"simulated {sim_s:.1f} s, {rate} sim-s/s"
            return d
    return RunTqdm


class _On:
    def __init__(self, total: int, stream):
        self.bar = _run_tqdm()(total=total, desc="fleetsim", unit="req", file=stream, mininterval=REDRAW_S)

    def update(self, sim_ns: int, done: int) -> None:
        """The run has simulated up to `sim_ns` and finished `done` requests."""
        bar = self.bar
        bar.sim_ns = sim_ns
        bar.update(done - bar.n)

    def close(self) -> None:
        self.bar.close()


class _Off:
    def update(self, sim_ns: int, done: int) -> None:
        pass

    def close(self) -> None:
        pass


def run_bar(total: int, enabled: bool, stream=None):
    """The run's bar over `total` requests (module doc): `update(sim_ns, done)`, `close()`."""
    stream = sys.stderr if stream is None else stream
    return _On(total, stream) if shown(enabled, stream) else _Off()
