"""Bulk parsers for a block of CSV fields: the same integers as csvrows.py's row parsers, without
per-row Python work beyond one `int`/`float` call (no `strptime`).

Each returns an int64 array, or None when some field is not in the plain form it vouches for
(an ASCII timestamp `YYYY-MM-DD HH:MM:SS[.digits]`, a decimal `int`, a `float` in range):
the caller then parses that block row by row with csvrows.py, which gives the same values for
the fields the bulk parser declined and the one-line error of the first bad row. So every value,
and every error, is the row parsers' own; a bulk parser only has to be right where it answers.

Timestamps are taken as UTC, as `datetime_ns` takes them: days from the civil date (integer
arithmetic, proleptic Gregorian, years 1-9999 as `datetime` allows), plus the first nine digits of
the fraction (any further characters are ignored there too).
"""
from __future__ import annotations

import numpy as np

_STAMP = 19                                   # len("2023-11-16 18:15:46")
_DIGITS = (0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18)
_SEPARATORS = {4: b"-", 7: b"-", 10: b" ", 13: b":", 16: b":"}
_DAYS = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)
_FRACTION = 10 ** np.arange(8, -1, -1, dtype=np.int64)    # weights of the 9 fraction digits
_WHOLE_LIMIT = (2 ** 63 - 10 ** 9) // 10 ** 9         # seconds from the epoch whose ns fit int64


def counts(texts: list[str], minimum: int) -> np.ndarray | None:
    """Integer token counts >= `minimum` (csvrows.count)."""
    try:
        values = np.fromiter(map(int, texts), dtype=np.int64, count=len(texts))
    except (ValueError, OverflowError):
        return None
    return values if not len(values) or values.min() >= minimum else None


def seconds(texts: list[str], unit_ns: int = 1_000_000_000) -> np.ndarray | None:
    """Times >= 0 in units of `unit_ns` as integer ns (csvrows.seconds_ns: `round(float * unit)`,
    half to even, as `np.rint`)."""
    try:
        values = np.fromiter(map(float, texts), dtype=np.float64, count=len(texts))
    except ValueError:
        return None
    if not np.all((values >= 0) & (values < 1e12)):
        return None
    ns = np.rint(values * unit_ns)
    return ns.astype(np.int64) if not len(ns) or ns.max() < 2.0 ** 63 else None


def datetimes(texts: list[str]) -> np.ndarray | None:
    """'2023-11-16 18:15:46.6805900' → ns since the epoch (csvrows.datetime_ns)."""
    stamps = list(map(str.strip, texts))
    joined = "".join(stamps)
    if not stamps or not joined.isascii() or "\x00" in joined:
        return None
    raw = np.array(stamps, dtype="S")
    lengths = np.char.str_len(raw)
    width = max(raw.itemsize, _STAMP + 10)
    m = np.zeros((len(stamps), width), dtype=np.uint8)
    m[:, :raw.itemsize] = raw.view(np.uint8).reshape(len(stamps), raw.itemsize)
    if not (np.all((lengths == _STAMP) | (lengths > _STAMP)) and np.all(m[lengths > _STAMP, _STAMP] == ord("."))):
        return None
    d = m[:, :_STAMP + 10].astype(np.int64) - ord("0")
    if not np.all((d[:, _DIGITS] >= 0) & (d[:, _DIGITS] <= 9)):
        return None
    for pos, sep in _SEPARATORS.items():
        if not np.all(m[:, pos] == sep[0]):
            return None
    frac = d[:, _STAMP + 1:]
    in_frac = np.arange(_STAMP + 1, _STAMP + 10) < lengths[:, None]
    if not np.all(~in_frac | ((frac >= 0) & (frac <= 9))):
        return None
    year = d[:, 0] * 1000 + d[:, 1] * 100 + d[:, 2] * 10 + d[:, 3]
    month, day = d[:, 5] * 10 + d[:, 6], d[:, 8] * 10 + d[:, 9]
    hour, minute, second = d[:, 11] * 10 + d[:, 12], d[:, 14] * 10 + d[:, 15], d[:, 17] * 10 + d[:, 18]
    if not (np.all((year >= 1) & (month >= 1) & (month <= 12) & (day >= 1)) and np.all(hour <= 23)
            and np.all(minute <= 59) and np.all(second <= 59)):
        return None
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    if not np.all(day <= _DAYS[month - 1] + (leap & (month == 2))):
        return None
    whole = _days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second
    if not np.all(np.abs(whole) <= _WHOLE_LIMIT):
        return None                 # ns past int64: the row parser's value, the 64-bit error after it
    fraction = (np.where(in_frac, frac, 0) * _FRACTION).sum(axis=1)
    return whole * 1_000_000_000 + fraction


def _days_from_civil(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of proleptic Gregorian dates (H. Hinnant's algorithm; years >= 1)."""
    y = y - (m <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * np.where(m > 2, m - 3, m + 9) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468
