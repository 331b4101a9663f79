"""The bulk CSV parsers (cluster/workloads/csvbulk.py) against the row parsers they stand in for
(csvrows.py): where a bulk parser answers, every value is the row parser's to the ns; it answers
for the plain forms real traces use; and a whole file read in blocks gives the rows, the errors
and the reading limit of the row-by-row reader."""
import datetime

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fleetsim.cluster.errors import InputError
from fleetsim.cluster.workloads import csvbulk, load_workload
from fleetsim.cluster.workloads.csvrows import BLOCK, count, datetime_ns, seconds_ns


def rows_or_error(parse, texts):
    try:
        return [parse(t) for t in texts]
    except InputError:
        return None


def agrees(bulk, parse, texts):
    """The bulk answer is None or the row parser's values (then the row parser raises nothing)."""
    got = bulk(texts)
    if got is not None:
        assert got.dtype == np.int64 and got.tolist() == rows_or_error(parse, texts)
    return got is not None


def test_plain_timestamps_to_the_ns():
    stamps = ["2023-11-16 18:15:46.6805900", "2023-11-16 18:15:46", "1970-01-01 00:00:00.000000001",
              "1969-12-31 23:59:59.5", "2000-02-29 12:00:00.123456789123", " 2024-12-31 23:59:59.9 ",
              "1700-03-01 00:00:00", "2261-12-31 23:59:59.999999999", "2023-11-16 18:15:46."]
    got = csvbulk.datetimes(stamps)
    # by hand: 2023-11-16 is day 19677 after the epoch; 18:15:46 is 65746 s into it
    assert got[0] == (19677 * 86400 + 65746) * 10 ** 9 + 680590000
    assert got[2] == 1 and got[3] == -500_000_000
    assert got.tolist() == [datetime_ns(s, "f:2", "t") for s in stamps]


@pytest.mark.parametrize("stamp", ["2023-02-29 00:00:00", "0000-01-01 00:00:00", "2023-11-16 24:00:00",
                                   "2023-11-16 18:60:00", "2023-11-16 18:15:60", "2023-13-01 00:00:00",
                                   "2023-1-16 18:15:46", "2023-11-16T18:15:46", "2023-11-16 18:15:46.+5",
                                   "2023-11-16 18:15:46.1\x00", "2023-11-16 18:15:46Z", "２023-11-16 18:15:46",
                                   "2300-01-01 00:00:00", "", "2023-11-16  18:15:46"])
def test_timestamps_the_bulk_parser_leaves_to_the_rows(stamp):
    assert csvbulk.datetimes(["2023-11-16 18:15:46", stamp]) is None


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.integers(1, 9999), st.integers(0, 13), st.integers(0, 32), st.integers(0, 24),
                          st.integers(0, 60), st.integers(0, 61), st.text("0123456789+-_ .x", max_size=12),
                          st.sampled_from(["", " ", "\t"])), min_size=1, max_size=20))
def test_timestamps_agree_with_strptime(fields):
    stamps = [f"{pad}{y:04d}-{mo:02d}-{d:02d} {h:02d}:{mi:02d}:{s:02d}{'.' + frac if frac else ''}{pad}"
              for y, mo, d, h, mi, s, frac, pad in fields]
    agrees(csvbulk.datetimes, lambda t: datetime_ns(t, "f:2", "t"), stamps)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.lists(st.one_of(st.integers(-5, 10 ** 20).map(str), st.text("0123456789 +-_", max_size=6)),
                min_size=1, max_size=20), st.integers(0, 1))
def test_counts_agree_with_int(texts, minimum):
    agrees(lambda t: csvbulk.counts(t, minimum), lambda t: count(t, "f:2", "n", minimum), texts)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.lists(st.one_of(st.floats(-1, 2e12).map(repr), st.decimals(0, 10 ** 6, places=9).map(str),
                          st.sampled_from(["nan", "inf", "1e3", " 2.5 ", "0.0000000015", "x"])),
                min_size=1, max_size=20), st.sampled_from([1, 1000, 10 ** 6, 10 ** 9]))
def test_seconds_agree_with_round(texts, unit):
    agrees(lambda t: csvbulk.seconds(t, unit), lambda t: seconds_ns(t, "f:2", "t", unit), texts)


def test_half_ns_rounds_to_even_like_round():
    assert csvbulk.seconds(["0.0000000005", "0.0000000015", "2.5"], 1).tolist() == [0, 0, 2]
    assert csvbulk.seconds(["0.0000000015"]).tolist() == [seconds_ns("0.0000000015", "f:2", "t")]


def write_azure(tmp_path, rows):
    p = tmp_path / "a.csv"
    p.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "".join(f"{r}\n" for r in rows))
    return str(p)


def test_blocks_read_like_rows(tmp_path):
    base = datetime.datetime(2023, 11, 16, 18, 15, 46)
    rows = [f"{base + datetime.timedelta(microseconds=997 * k)},{k % 7 + 1},{k % 3}" for k in range(2 * BLOCK + 5)]
    rows[BLOCK + 3] = rows[BLOCK + 3].split(",")[0] + ", 12 ,0"   # int() takes the spaces: this block goes by rows
    wl = load_workload(write_azure(tmp_path, rows))
    first = base.replace(tzinfo=datetime.timezone.utc).timestamp()
    stamps = [datetime_ns(r.split(",")[0], "", "") for r in rows]
    assert wl.rid.tolist() == list(range(len(rows)))
    assert wl.arrival.tolist() == [s - int(first) * 10 ** 9 for s in stamps]
    prompts, outputs = [k % 7 + 1 for k in range(len(rows))], [max(1, k % 3) for k in range(len(rows))]
    prompts[BLOCK + 3], outputs[BLOCK + 3] = 12, 1
    assert wl.prompt.tolist() == prompts and wl.output.tolist() == outputs


@pytest.mark.parametrize("bad, message", [
    ("2023-11-16 18:15:47,0,1", f"a.csv:{BLOCK + 12}: field 'ContextTokens' must be an integer >= 1, got '0'"),
    ("2023-02-30 18:15:47,5,1", f"a.csv:{BLOCK + 12}: field 'TIMESTAMP' must look like"),
])
def test_block_errors_name_the_first_bad_row(tmp_path, bad, message):
    rows = ["2023-11-16 18:15:46.5,3,4"] * (BLOCK + 20)
    rows[BLOCK + 10], rows[BLOCK + 15] = bad, "2023-11-16 18:15:46"      # line 12 + BLOCK; then a short row
    with pytest.raises(InputError, match=message):
        load_workload(write_azure(tmp_path, rows))
    rows[BLOCK + 10] = rows[0]
    with pytest.raises(InputError, match=f"a.csv:{BLOCK + 17}: 1 fields, the header has 3"):
        load_workload(write_azure(tmp_path, rows))


def test_limit_reads_one_row_past_it_as_before(tmp_path):
    rows = ["2023-11-16 18:15:46.5,3,4"] * BLOCK + ["short"]
    p = write_azure(tmp_path, rows)
    assert len(load_workload(p, num_requests=BLOCK - 1)) == BLOCK - 1
    with pytest.raises(InputError, match=f"a.csv:{BLOCK + 2}: 1 fields"):
        load_workload(p, num_requests=BLOCK)
