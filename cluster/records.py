"""Compact transport of finished-request rows: one int64 matrix + one concatenated ITL array."""
from __future__ import annotations

import numpy as np

FIXED = 12   # row fields other than the ITL list


def pack_rows(rows: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(rows)
    fixed = np.empty((n, FIXED), dtype=np.int64)
    lengths = np.empty(n, dtype=np.int64)
    itls = []
    for i, r in enumerate(rows):
        fixed[i, :10] = r[:10]
        fixed[i, 10] = r[11]
        fixed[i, 11] = r[12]
        lengths[i] = len(r[10])
        itls.extend(r[10])
    return fixed, lengths, np.array(itls, dtype=np.int64)


def unpack_rows(packed) -> list:
    fixed, lengths, itl = packed
    rows = []
    pos = 0
    flat = itl.tolist()
    for f, n in zip(fixed.tolist(), lengths.tolist()):
        rows.append((*f[:10], flat[pos:pos + n], f[10], f[11]))
        pos += n
    return rows
