"""A finished run as Python objects: its summary and output tables.

`Result.summary` is summary.json as a dict. `Result.requests`, `Result.timeseries` and
`Result.timeseries_fleet` are requests.csv, timeseries.csv and timeseries_fleet.csv as tables
(a run with `requests_detail="none"` has no requests table: LookupError): pandas DataFrames
when pandas is installed, else numpy structured arrays; each column is int64 when every cell is an integer, float64 when every cell is
a number or empty (empty = NaN), else text; the ITL column holds each request's list of gaps (ns).
`Result.table(name)` reads any other CSV of the run the same way. The tables are parsed from the
run's own files (in memory, or in the folder the run wrote), so they always agree with them;
`Result.save(folder)` writes those exact bytes; `Result.plot()` draws the figures of
`fleetsim run --plots` (matplotlib).
"""
from __future__ import annotations

import csv
import io
import json
import os

import numpy as np

from fleetsim.cluster.report import clear_previous, save_texts

LIST_COLUMNS = ("ITL",)


def _parse_list(cell: str) -> list:
    return json.loads(cell) if cell else []


def _column(values: list[str]) -> np.ndarray:
    for dtype in (np.int64, np.float64):
        try:
            return np.array([v if v != "" else "nan" for v in values] if dtype is np.float64 else values,
                            dtype=dtype)
        except ValueError:
            continue
    return np.array(values, dtype=object)


def numpy_table(text: str) -> np.ndarray:
    rows = list(csv.reader(io.StringIO(text)))
    header, body = rows[0], rows[1:]
    columns = []
    for j, name in enumerate(header):
        cells = [r[j] for r in body]
        if name in LIST_COLUMNS:
            col = np.empty(len(cells), dtype=object)
            col[:] = [_parse_list(c) for c in cells]
        else:
            col = _column(cells)
        columns.append(col)
    out = np.empty(len(body), dtype=[(name, col.dtype) for name, col in zip(header, columns)])
    for name, col in zip(header, columns):
        out[name] = col
    return out


def read_table(text: str):
    """A CSV text as a DataFrame (pandas installed) or a numpy structured array."""
    try:
        import pandas as pd
    except ImportError:
        return numpy_table(text)
    header = next(csv.reader(io.StringIO(text)), [])
    converters = {name: _parse_list for name in LIST_COLUMNS if name in header}
    return pd.read_csv(io.StringIO(text), converters=converters)


class Result:
    """A finished run (see the module docstring). `wall_s` is the run's wall time, which the
    files leave out so that they are byte-identical across runs and machines."""

    def __init__(self, names: list[str], wall_s: float, files: dict[str, str] | None = None,
                 folder: str | None = None):
        self.names = sorted(names)          # the run's output files
        self._files = files
        self.folder = folder
        self.wall_s = wall_s
        self.summary = json.loads(self.text("summary.json"))
        self._tables: dict[str, object] = {}

    def text(self, name: str) -> str:
        """One output file's exact text."""
        if self.folder is None:
            return self._files[name]
        with open(os.path.join(self.folder, name), encoding="utf-8", newline="") as fh:
            return fh.read()

    def table(self, name: str):
        if name not in self.names:
            raise LookupError(f"this run wrote no {name} (its files: {', '.join(self.names)})")
        if name not in self._tables:
            self._tables[name] = read_table(self.text(name))
        return self._tables[name]

    @property
    def requests(self):
        return self.table("requests.csv")

    @property
    def timeseries(self):
        return self.table("timeseries.csv")

    @property
    def timeseries_fleet(self):
        return self.table("timeseries_fleet.csv")

    def plot(self, folder: str | None = None, label: str = "run") -> dict:
        """The run's figures (`fleetsim run --plots`: latency CDFs, per-instance and fleet time
        series, load balance; needs matplotlib), as {file name: matplotlib Figure}; with
        `folder`, written there as PNGs instead and {file name: path} returned."""
        from fleetsim.cluster.experiments import plots
        run = plots.RunData.from_texts(self.summary, lambda n: self.text(n) if n in self.names else None, label)
        if folder is None:
            return plots.run_figures(run, as_png=False)
        os.makedirs(folder, exist_ok=True)
        pngs = plots.run_figures(run)
        plots.write_pngs(folder, pngs)
        return {name: os.path.join(folder, name) for name in pngs}

    def save(self, folder: str, overwrite: bool = False) -> str:
        """Write the run's files into `folder` (all at once, as a run does; a folder holding an
        earlier run's results needs `overwrite`); returns `folder`."""
        folder = os.fspath(folder)
        clear_previous(folder, overwrite, "save:")
        save_texts(folder, {name: self.text(name) for name in self.names})
        return folder

    def __repr__(self) -> str:
        s = self.summary
        ttft = (s.get("ttft_ms") or {}).get("p99")
        where = f", in {self.folder}" if self.folder else ""
        p99 = f"{ttft:.1f} ms" if isinstance(ttft, (int, float)) else "n/a"
        return (f"<fleetsim Result: {s.get('num_requests')} requests, {s.get('simulated_s', 0):.2f} simulated s, "
                f"TTFT p99 {p99}{where}>")
