"""The workload formats: a registry keyed by the name users write (`--format NAME`), and
detection by content.

Each format is a `TraceFormat` subclass in its own module, registered with `@register`: `name`,
`matches(first_line)` — whether a file whose first non-blank line (a UTF-8
byte-order mark removed) is `first_line` is in this format — and `read(path, builder, options)`,
which streams the file through `cluster/textfile.py`'s readers into a `TableBuilder` and stops
when the builder is full. `from_first` formats carry wall-clock or trace-relative stamps and are
shifted so that their first arrival is 0. The file's extension is never consulted.
"""
from __future__ import annotations

from fleetsim.cluster.errors import InputError
from fleetsim.cluster.textfile import text_lines

FORMATS: dict[str, "TraceFormat"] = {}


class TraceFormat:
    name = ""
    from_first = True            # arrivals made relative to the first one
    scalable = True              # --time-scale applies

    @staticmethod
    def matches(first_line: str) -> bool:
        return False

    def read(self, path: str, builder, options: dict) -> None:
        raise NotImplementedError


def register(cls):
    FORMATS[cls.name] = cls()
    return cls


def first_line(path: str) -> str:
    lines = text_lines(path, "workload")
    head = next((line for _, line in lines if line.strip()), "")
    lines.close()
    return head.strip()


def detect_format(path: str) -> str:
    """The name of the format whose `matches` accepts the file's first non-blank line."""
    head = first_line(path)
    if not head:
        raise InputError(f"{path}: no requests")
    for name in sorted(FORMATS):
        if FORMATS[name].matches(head):
            return name
    raise InputError(f"{path}: unrecognised workload format (first line {head[:60]!r}); choose one with "
                     f"--format {{{','.join(sorted(FORMATS))}}} (csv needs --columns)")


def get_format(name: str) -> "TraceFormat":
    if name not in FORMATS:
        raise InputError(f"--format {name!r}: unknown; choose one of {', '.join(sorted(FORMATS))}")
    return FORMATS[name]
