"""`csv_rows`: the rows of a CSV workload with a header, streamed, fields picked by name, and the
numeric parsers shared by the CSV formats (one-line errors naming file, line and field).

`CSVTraceFormat.read` takes the rows in blocks of `BLOCK`: each block is parsed column by column
by csvbulk.py, or, where a bulk parser declines a field, row by row by the parsers here (same
values; the first bad row's error). Rows are read exactly as far as before (one past the
`--num-requests` limit), and a bad row's error comes before that of a later row that cannot be
read.
"""
from __future__ import annotations

import csv
import datetime

import numpy as np

from fleetsim.cluster.errors import InputError
from fleetsim.cluster.textfile import text_lines
from fleetsim.cluster.workloads import csvbulk
from fleetsim.cluster.workloads.formats import TraceFormat

BLOCK = 4096        # rows parsed together


def header_columns(line: str) -> list[str]:
    return [c.strip() for c in next(csv.reader([line]))]


def csv_rows(path: str, columns: list[str]):
    """(line number, [values of `columns`]) for every data row; a missing column raises."""
    lines = text_lines(path, "workload")
    try:
        reader = csv.reader(line for _, line in lines)
        header = [c.strip() for c in next(reader, [])]
        missing = [c for c in columns if c not in header]
        if missing:
            raise InputError(f"{path}: missing column(s) {', '.join(missing)} (the header has {', '.join(header)})")
        idx = [header.index(c) for c in columns]
        width = max(idx) + 1
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) < width:
                raise InputError(f"{path}:{reader.line_num}: {len(row)} fields, the header has {len(header)}")
            yield reader.line_num, [row[i] for i in idx]
    finally:
        lines.close()


def count(text: str, where: str, name: str, minimum: int) -> int:
    """An integer token count >= `minimum`."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise InputError(f"{where}: field {name!r} must be an integer >= {minimum}, got {text!r}")
    return value


def seconds_ns(text: str, where: str, name: str, unit_ns: int = 1_000_000_000) -> int:
    """A time >= 0 given in units of `unit_ns` (a decimal number) as integer ns."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (0 <= value < 1e12):
        raise InputError(f"{where}: field {name!r} must be a number >= 0, got {text!r}")
    return round(value * unit_ns)


def datetime_ns(stamp: str, where: str, name: str) -> int:
    """'2023-11-16 18:15:46.6805900' → ns since the epoch (integer arithmetic, any fraction length)."""
    try:
        whole, _, frac = stamp.strip().partition(".")
        base = datetime.datetime.strptime(whole, "%Y-%m-%d %H:%M:%S").replace(tzinfo=datetime.timezone.utc)
        frac_ns = int((frac + "000000000")[:9]) if frac else 0
    except ValueError:
        raise InputError(f"{where}: field {name!r} must look like 2023-11-16 18:15:46.6805900, got {stamp!r}") from None
    return int(base.timestamp()) * 1_000_000_000 + frac_ns


class CSVTraceFormat(TraceFormat):
    """A CSV format recognised by its header holding `COLUMNS` = (arrival, prompt, output);
    arrivals are `TIMESTAMPS` (YYYY-MM-DD HH:MM:SS[.frac]) or seconds; `ZERO_OUTPUT` rows are
    kept with 1 output token (every request produces its first token), else they are an error.
    A format whose columns depend on the options overrides `columns`, `row_parser` and
    `block_parser`."""
    COLUMNS: tuple[str, ...] = ()
    TIMESTAMPS = False
    ZERO_OUTPUT = False

    @classmethod
    def matches(cls, first_line: str) -> bool:
        return bool(cls.COLUMNS) and set(cls.COLUMNS) <= set(header_columns(first_line))

    def columns(self, options: dict) -> list[str]:
        return list(self.COLUMNS)

    def row(self, where: str, values: list[str]) -> tuple[int, int, int]:
        (at, inp, out), (at_name, in_name, out_name) = values, self.COLUMNS
        arrival = datetime_ns(at, where, at_name) if self.TIMESTAMPS else seconds_ns(at, where, at_name)
        return arrival, count(inp, where, in_name, 1), max(1, count(out, where, out_name, 0 if self.ZERO_OUTPUT else 1))

    def row_parser(self, options: dict):
        return self.row

    def block(self, at: list[str], inp: list[str], out: list[str]):
        """(arrival, prompt, output) int64 arrays of a block's columns, or None (parse by rows)."""
        arrival = csvbulk.datetimes(at) if self.TIMESTAMPS else csvbulk.seconds(at)
        prompt = csvbulk.counts(inp, 1)
        output = csvbulk.counts(out, 0 if self.ZERO_OUTPUT else 1)
        if arrival is None or prompt is None or output is None:
            return None
        return arrival, prompt, np.maximum(output, 1)

    def block_parser(self, options: dict):
        return self.block

    def read(self, path: str, builder, options: dict) -> None:
        row, bulk = self.row_parser(options), self.block_parser(options)

        def flush(block):
            parsed = bulk(*zip(*(values for _, values in block))) if block else None
            if parsed is not None:
                builder.add_columns(*parsed)
                return
            for line, values in block:
                builder.add(*row(f"{path}:{line}", values))

        block, rows = [], csv_rows(path, self.columns(options))
        try:
            while True:
                try:
                    line, values = next(rows)
                except StopIteration:
                    break
                except InputError:
                    flush(block)            # the rows before the unreadable one come first
                    raise
                if builder.room is not None and len(block) >= builder.room:
                    break
                block.append((line, values))
                if len(block) == BLOCK:
                    flush(block)
                    block = []
        finally:
            rows.close()
        flush(block)
