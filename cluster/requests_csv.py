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

`--requests-detail` chooses how much is written (the statistics in summary.json always cover
every request and every ITL gap):
- `full` (default): every column, the ITL list included.
- `no-itl`: the same columns with the ITL cell empty: readers by column name or by position
  keep working, and the file no longer grows with the output length (the ITL list is most
  of a long run's bytes).
- `none`: no requests.csv at all (an empty or header-only file would read as "no requests").

Lines are formatted where the requests finish (in the Ray actors, in parallel), one f-string
per request: this is the hottest formatting in a run.

With admission control (cluster/admission.py) the file has one more column, `rejected`, last:
empty for a finished request, the reason for a rejected one (cluster/rejections.py has the rows).
"""
from __future__ import annotations

from fleetsim.cluster.errors import InputError

CSV_HEADER = ("instance id,request id,model,input,output,arrival,end_time,latency,queuing_delay,"
              "TTFT,TPOT,ITL,preemptions,prefix_hit_tokens,queued")
DETAILS = ("full", "no-itl", "none")


def csv_header(rejected_column: bool = False) -> str:
    """The header line (without its newline), with the `rejected` column or not."""
    return CSV_HEADER + ",rejected" if rejected_column else CSV_HEADER


def format_row(row: tuple, model: str) -> str:
    """The line of a `metrics.request_row` tuple, its ITL list included."""
    inst, rid, inp, out, arr, end, e2e, q, ttft, tpot, itl, pre, hits, queued = row
    return (f'{inst},{rid},{model},{inp},{out},{arr},{end},{e2e},{q},{ttft},{tpot if out > 1 else ""},'
            f'"{itl}",{pre},{hits},{queued}\n')


def format_row_no_itl(row: tuple, model: str) -> str:
    """The line with an empty ITL cell."""
    inst, rid, inp, out, arr, end, e2e, q, ttft, tpot, _, pre, hits, queued = row
    return (f'{inst},{rid},{model},{inp},{out},{arr},{end},{e2e},{q},{ttft},{tpot if out > 1 else ""},,{pre},{hits},'
            f'{queued}\n')


FORMATTERS = {"full": format_row, "no-itl": format_row_no_itl, "none": None}


def formatter(detail: str):
    """The line formatter of a `--requests-detail` value (None: no lines)."""
    if detail not in FORMATTERS:
        raise InputError(f"--requests-detail {detail!r}: unknown; choose one of {', '.join(DETAILS)}")
    return FORMATTERS[detail]


def writes_file(detail: str) -> bool:
    """Whether a run with this `--requests-detail` writes requests.csv (checks the value)."""
    return formatter(detail) is not None
