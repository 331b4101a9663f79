"""`text_lines`: the lines of a user's UTF-8 text file, with one-line errors for bad files."""
from __future__ import annotations

from cluster.errors import InputError


def text_lines(path: str, what: str):
    """(line number from 1, line) of a UTF-8 text file; a missing, unreadable or non-UTF-8 file
    raises InputError naming the file and `what` it should be."""
    try:
        fh = open(path, encoding="utf-8", newline="")
    except OSError as exc:
        raise InputError(f"{path}: cannot read {what}: {exc.strerror}") from None
    with fh:
        try:
            yield from enumerate(fh, 1)
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}: {what} is not UTF-8 text ({exc.reason})") from None
