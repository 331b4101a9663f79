"""requests.csv: one line per finished request, LLMServingSim's columns first.

Columns (ns): `instance id,request id,model,input,output,arrival,end_time,latency,
queuing_delay,TTFT,TPOT,ITL` — LLMServingSim's, in its order and number format, so its readers
and fleetsim's own (`cluster/validate.py`) take the file as is — then fleetsim's
`preemptions,prefix_hit_tokens,queued`. `arrival` and the times measured from it are the
client's (the send time, before the API server's front end); `queued` is when the engine took
the request from its input queue (vLLM's `queued_ts`: the arrival plus the front end's delay,
at the next step boundary when the engine was busy), the anchor of engine-side times. TPOT is left empty for a request with one output token: it has
no time per output token (pandas reads the cell as NaN, so `df.TPOT.mean()` is the mean over
the requests that have one). ITL is the quoted list of the request's inter-token gaps.

A run with PD roles (cluster/pd.py) adds `decode_instance,transfer_start,transfer_end,
decode_scheduled` after `queued` (-1 for a request not handed off); runs without keep their bytes.

`--requests-detail` chooses how much is written (the statistics in summary.json always cover
every request and every ITL gap):
- `full` (default): every column, the ITL list included.
- `no-itl`: the same columns with the ITL cell empty: readers by column name or by position
  keep working, and the file no longer grows with the output length (the ITL list is most
  of a long run's bytes).
- `none`: no requests.csv at all (an empty or header-only file would read as "no requests").

Lines are formatted where the requests finish (in the Ray actors, in parallel), a window's at
once (`format_lines`): one f-string a request over its row of the batch's int64 matrix, which
`metrics.request_matrix` computes column by column. This is the hottest formatting in a run; an
ITL cell is Python's own list text of the request's gaps (`str` of their list), built by
`Request.itl_cell` from pieces: the members of a fast-forward run share the text of the run's
gaps, each gap converted once per step rather than once per request in the batch (`str` of a
128-gap list takes ~20 us here, joining the 128 shared texts ~2 us). Converting every gap per
request through numpy, or each distinct gap once through a dict, was slower (measured on real
batches).

With admission control (cluster/admission.py) the file has one more column, `rejected`, last:
empty for a finished request, the reason for a rejected one (cluster/rejections.py has the rows).
"""
from __future__ import annotations

import numpy as np

from fleetsim.cluster.errors import InputError

CSV_HEADER = ("instance id,request id,model,input,output,arrival,end_time,latency,queuing_delay,"
              "TTFT,TPOT,ITL,preemptions,prefix_hit_tokens,queued")
PD_COLUMNS = ",decode_instance,transfer_start,transfer_end,decode_scheduled"   # runs with PD roles
DETAILS = ("full", "no-itl", "none")


def csv_header(rejected_column: bool = False, pd_columns: bool = False) -> str:
    """The header line (without its newline): with PD roles the PD columns (cluster/pd.py),
    with admission control the `rejected` column, last."""
    return CSV_HEADER + (PD_COLUMNS if pd_columns else "") + (",rejected" if rejected_column else "")


def format_lines(fixed, cells: list, models: dict, detail: str = "full") -> list[str]:
    """The lines of a batch: `fixed` (int64 rows, `metrics.request_matrix`'s columns), `cells` (each
    row's ITL cell, `Request.itl_cell`'s list text; unused for `no-itl`), `models[instance]` the model
    named in the row; one f-string a row over the row's Python ints (no per-field conversion calls)."""
    rows = fixed.tolist()
    if detail == "no-itl":
        return [f'{i},{rid},{models[i]},{inp},{out},{arr},{end},{e2e},{q},{ttft},{tpot if out > 1 else ""},,{pre},'
                f'{hits},{queued}\n' for i, rid, inp, out, arr, end, e2e, q, ttft, tpot, pre, hits, queued in rows]
    return [f'{i},{rid},{models[i]},{inp},{out},{arr},{end},{e2e},{q},{ttft},{tpot if out > 1 else ""},'
            f'"{itl}",{pre},{hits},{queued}\n'
            for (i, rid, inp, out, arr, end, e2e, q, ttft, tpot, pre, hits, queued), itl in zip(rows, cells)]


def format_row(row: tuple, model: str, detail: str = "full") -> str:
    """The line of one `metrics.request_row` tuple."""
    return format_lines(np.array([row[:10] + row[11:]], dtype=np.int64), [str(list(row[10]))], {row[0]: model},
                        detail)[0]


def check_detail(detail: str) -> str:
    """A `--requests-detail` value, checked."""
    if detail not in DETAILS:
        raise InputError(f"--requests-detail {detail!r}: unknown; choose one of {', '.join(DETAILS)}")
    return detail


def writes_file(detail: str) -> bool:
    """Whether a run with this `--requests-detail` writes requests.csv (checks the value)."""
    return check_detail(detail) != "none"
