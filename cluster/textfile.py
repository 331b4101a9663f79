"""`text_lines` / `json_lines`: a user's UTF-8 text or JSONL file, with one-line errors for bad files.

`observe_reads(opened)` lets a caller watch the reading (the loading progress bar): inside the
`with` block, each file `text_lines` opens calls `opened(path, size_in_bytes)` once, which
returns a meter (a tqdm bar fits); the meter's `update(nbytes)` is called for every chunk read
from disk (the text layer reads 8 KiB at a time, so one call per 8 KiB, not one per line) and
its `close()` once, when the file is closed. Outside such a block files are opened plainly, at
no cost at all. The text read is the same either way (UTF-8, a leading byte-order mark dropped,
newlines kept).
"""
from __future__ import annotations

import contextlib
import contextvars
import io
import json
import os

from fleetsim.cluster.errors import InputError

_observer = contextvars.ContextVar("fleetsim_read_observer", default=None)


@contextlib.contextmanager
def observe_reads(opened):
    """Report the reading of every file `text_lines` opens inside the block to `opened` (module doc)."""
    token = _observer.set(opened)
    try:
        yield
    finally:
        _observer.reset(token)


class _Counted(io.RawIOBase):
    """A raw file that tells a meter how many bytes each read returned."""

    def __init__(self, raw, meter):
        self.raw, self.meter = raw, meter

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        n = self.raw.readinto(buf)
        if n:
            self.meter.update(n)
        return n

    def close(self) -> None:
        if not self.closed:
            self.raw.close()
            self.meter.close()
        super().close()


def _open(path: str):
    """`path` opened as UTF-8 text with newlines kept, counted by the observer if there is one."""
    opened = _observer.get()
    if opened is None:
        return open(path, encoding="utf-8-sig", newline="")
    raw = open(path, "rb", buffering=0)
    counted = _Counted(raw, opened(path, os.fstat(raw.fileno()).st_size))
    return io.TextIOWrapper(io.BufferedReader(counted), encoding="utf-8-sig", newline="")


def text_lines(path: str, what: str):
    """(line number from 1, line) of a UTF-8 text file (a leading byte-order mark is dropped); a
    missing, unreadable or non-UTF-8 file raises InputError naming the file and `what` it should be."""
    try:
        fh = _open(path)
    except OSError as exc:
        raise InputError(f"{path}: cannot read {what}: {exc.strerror}") from None
    with fh:
        try:
            yield from enumerate(fh, 1)
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}: {what} is not UTF-8 text ({exc.reason})") from None


def json_lines(path: str, what: str):
    """(`file:line`, object) for every non-blank line of a JSONL file; a malformed line (too
    deeply nested or with an integer too long to convert included) or one that is not a JSON
    object raises InputError naming it."""
    for lineno, line in text_lines(path, what):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: malformed JSON ({exc.msg})") from None
        except RecursionError:
            raise InputError(f"{where}: malformed JSON (nested too deeply)") from None
        except ValueError as exc:      # an integer of more than 4,300 digits
            raise InputError(f"{where}: malformed JSON ({exc})") from None
        if not isinstance(doc, dict):
            raise InputError(f"{where}: expected a JSON object")
        yield where, doc


def yaml_document(path: str, what: str, kind: str = "YAML"):
    """(parsed document, text) of a YAML (or JSON, a subset) file; malformed, too large with its
    aliases expanded or too deeply nested (cluster/yaml_document.py) → InputError naming the
    file and the parser's first line of complaint."""
    from fleetsim.cluster.yaml_document import load_document
    text = "".join(line for _, line in text_lines(path, what))
    return load_document(text, path, kind), text
