"""`csv_rows`: the rows of a CSV workload with a header, streamed, fields picked by name, and the
numeric parsers shared by the CSV formats (one-line errors naming file, line and field)."""
from __future__ import annotations

import csv
import datetime

from fleetsim.cluster.errors import InputError
from fleetsim.cluster.textfile import text_lines
from fleetsim.cluster.workloads.formats import TraceFormat


def header_columns(line: str) -> list[str]:
    return [c.strip() for c in next(csv.reader([line]))]


def csv_rows(path: str, columns: list[str]):
    """(`file:line`, [values of `columns`]) for every data row; a missing column raises."""
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
            where = f"{path}:{reader.line_num}"
            if len(row) < width:
                raise InputError(f"{where}: {len(row)} fields, the header has {len(header)}")
            yield where, [row[i] for i in idx]
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
    A format whose columns depend on the options overrides `columns` and `row_parser`."""
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

    def read(self, path: str, builder, options: dict) -> None:
        row = self.row_parser(options)
        for where, values in csv_rows(path, self.columns(options)):
            if builder.full:
                break
            builder.add(*row(where, values))
