"""Any CSV with a header, its columns named by `--columns arrival=COL,input=COL,output=COL`
(optional `unit=s|ms|us|ns` for a numeric arrival column, default s). An arrival value is a
number in that unit or a timestamp `YYYY-MM-DD HH:MM:SS[.fraction]` (UTC); arrivals are relative
to the earliest. Never detected: chosen by `--columns` (or `--format csv`)."""
from __future__ import annotations

from fleetsim.cluster.errors import InputError
from fleetsim.cluster.workloads import csvbulk
from fleetsim.cluster.workloads.csvrows import CSVTraceFormat, count, datetime_ns, seconds_ns
from fleetsim.cluster.workloads.formats import register

UNITS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
KEYS = ("arrival", "input", "output")


def parse_columns(text: str | None) -> dict:
    """`arrival=ts,input=in,output=out[,unit=ms]` → {arrival, input, output, unit}."""
    if not text:
        raise InputError("--format csv needs --columns arrival=COL,input=COL,output=COL")
    spec = {"unit": "s"}
    for part in text.split(","):
        key, eq, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or key not in (*KEYS, "unit") or not value:
            raise InputError(f"--columns {text!r}: expected arrival=COL,input=COL,output=COL[,unit=s|ms|us|ns], "
                             f"got {part!r}")
        spec[key] = value
    missing = [k for k in KEYS if k not in spec]
    if missing:
        raise InputError(f"--columns {text!r}: missing {', '.join(missing)}")
    if spec["unit"] not in UNITS:
        raise InputError(f"--columns {text!r}: unit must be one of {', '.join(UNITS)}, got {spec['unit']!r}")
    return spec


@register
class ColumnsCSV(CSVTraceFormat):
    name = "csv"

    def columns(self, options: dict) -> list[str]:
        spec = parse_columns(options.get("columns"))
        return [spec[k] for k in KEYS]

    def row_parser(self, options: dict):
        spec = parse_columns(options.get("columns"))
        at_name, in_name, out_name = (spec[k] for k in KEYS)
        unit = UNITS[spec["unit"]]

        def row(where, values):
            at, inp, out = values
            try:
                float(at)
                arrival = seconds_ns(at, where, at_name, unit)
            except ValueError:
                arrival = datetime_ns(at, where, at_name)
            return arrival, count(inp, where, in_name, 1), count(out, where, out_name, 1)
        return row

    def block_parser(self, options: dict):
        unit = UNITS[parse_columns(options.get("columns"))["unit"]]

        def block(at, inp, out):
            arrival = csvbulk.seconds(at, unit)
            if arrival is None:
                arrival = csvbulk.datetimes(at)
            prompt, output = csvbulk.counts(inp, 1), csvbulk.counts(out, 1)
            return None if arrival is None or prompt is None or output is None else (arrival, prompt, output)
        return block
