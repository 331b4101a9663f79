"""`text_lines` / `json_lines`: a user's UTF-8 text or JSONL file, with one-line errors for bad files."""
from __future__ import annotations

import json

from fleetsim.cluster.errors import InputError


def text_lines(path: str, what: str):
    """(line number from 1, line) of a UTF-8 text file (a leading byte-order mark is dropped); a
    missing, unreadable or non-UTF-8 file raises InputError naming the file and `what` it should be."""
    try:
        fh = open(path, encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise InputError(f"{path}: cannot read {what}: {exc.strerror}") from None
    with fh:
        try:
            yield from enumerate(fh, 1)
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}: {what} is not UTF-8 text ({exc.reason})") from None


def json_lines(path: str, what: str):
    """(`file:line`, object) for every non-blank line of a JSONL file; a malformed line or one
    that is not a JSON object raises InputError naming it."""
    for lineno, line in text_lines(path, what):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: malformed JSON ({exc.msg})") from None
        if not isinstance(doc, dict):
            raise InputError(f"{where}: expected a JSON object")
        yield where, doc
