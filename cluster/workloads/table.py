"""`Workload`: a workload held as compact columns; `Request` objects are made as they are consumed.

One row per request that arrives on its own — a flat request, or the first turn of a session —
with numpy columns `arrival` (ns), `prompt`, `output` and `rid`; rows are sorted by (arrival,
rid). What only some rows have — token ids, Mooncake hash ids, a session's later turns and think
times — sits in `extras`, keyed by row. Iterating a `Workload` yields fresh `Request`s in that
order (a session's first turn carries its later turns as `followup` chain), so a run holds only
the requests in flight, and the same `Workload` can be simulated again. A million flat requests
take 32 MB here; as a list of `Request` objects they took ~600 MB (BENCHMARKS.md, issue 15).

Request ids are the file order (a session's turns take consecutive ids). Transformations
(`window`, `head`, `scaled`, `with_arrivals`, `clipped`) return a new `Workload` and leave ids alone.
`TableBuilder` is how loaders and generators fill one, row by row, in file order.
"""
from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field, replace

import numpy as np

from fleetsim.cluster.errors import InputError
from fleetsim.cluster.invariants import TIME_LIMIT_NS
from fleetsim.instance.request import Request

# The latest a request may arrive (after the trace's first, for traces with wall-clock stamps): a
# tenth of the simulation's time bound, 10^17 ns (~3.2 years), leaving the rest for serving it,
# so that no workload can run a simulation past the bound.
INPUT_TIME_LIMIT_NS = TIME_LIMIT_NS // 10
ROWS_AT_ONCE = 4096      # rows iteration converts to Python ints at a time


@dataclass(frozen=True)
class Turn:
    """A session turn after the first: its lengths, think time after it ends, token ids."""
    prompt: int
    output: int
    think_ns: int = 0
    token_ids: list | None = None


@dataclass(frozen=True)
class Extra:
    """What a row has beyond its lengths. `ids_prompt` is the prompt length its `token_ids` were
    written for (a clipped prompt keeps the first ids of the prompt and of the output)."""
    token_ids: list | None = None
    hash_ids: list | None = None
    hash_block: int = 512
    session: object = None
    think_ns: int = 0
    turns: tuple = ()
    ids_prompt: int = 0


def _ids_for(ids, ids_prompt: int, prompt: int, output: int):
    if ids is None or len(ids) == prompt + output:
        return ids
    return ids[:prompt] + ids[ids_prompt:ids_prompt + output]


@dataclass
class Workload:
    source: str
    arrival: np.ndarray
    prompt: np.ndarray
    output: np.ndarray
    rid: np.ndarray
    extras: dict = field(default_factory=dict)

    def __post_init__(self):
        self.total = len(self.arrival) + sum(len(e.turns) for e in self.extras.values())

    def __len__(self) -> int:
        return self.total

    def __repr__(self) -> str:
        return f"Workload({self.source!r}, {self.total} requests)"

    @property
    def sessions(self) -> int:
        return sum(1 for e in self.extras.values() if e.session is not None)

    @property
    def has_identity(self) -> bool:
        """Whether some request carries token or hash ids (prefix caching can match them)."""
        return any(e.token_ids is not None or e.hash_ids is not None for e in self.extras.values())

    def __iter__(self):
        """Fresh `Request`s in (arrival, rid) order, made one by one (the columns are read
        `ROWS_AT_ONCE` rows at a time: lists of a million ints would be walked by every full
        collection of Python's garbage collector while the run lasts)."""
        extras = self.extras
        for lo in range(0, len(self.arrival), ROWS_AT_ONCE):
            hi = lo + ROWS_AT_ONCE
            for i, rid, arr, p, o in zip(range(lo, hi), self.rid[lo:hi].tolist(), self.arrival[lo:hi].tolist(),
                                         self.prompt[lo:hi].tolist(), self.output[lo:hi].tolist()):
                extra = extras.get(i)
                if extra is None:
                    yield Request(rid, arr, p, o)
                else:
                    yield self._request(rid, arr, p, o, extra)

    @staticmethod
    def _request(rid: int, arrival: int, prompt: int, output: int, e: Extra) -> Request:
        ids = _ids_for(e.token_ids, e.ids_prompt or prompt, prompt, output)
        first = Request(rid, arrival, prompt, output, token_ids=ids, hash_ids=e.hash_ids, hash_block=e.hash_block,
                        session=e.session)
        first.think_ns = e.think_ns
        prev = first
        for k, t in enumerate(e.turns, 1):
            nxt = Request(rid + k, -1, t.prompt, t.output, token_ids=t.token_ids, session=e.session)
            nxt.think_ns = t.think_ns
            prev.followup = nxt
            prev = nxt
        return first

    def all_lengths(self) -> tuple[np.ndarray, np.ndarray]:
        """(prompt, output) of every request, session turns included (rows first, then turns)."""
        turns = [t for e in self.extras.values() for t in e.turns]
        return (np.concatenate([self.prompt, np.array([t.prompt for t in turns], dtype=np.int64)]),
                np.concatenate([self.output, np.array([t.output for t in turns], dtype=np.int64)]))

    def longest(self) -> Request:
        """A request with the most prompt + output tokens (the first such in order): the one to
        check against an engine's limits, which all grow with that total."""
        best, best_total = None, -1
        if len(self.arrival):
            i = int(np.argmax(self.prompt + self.output))
            best, best_total = (i, None), int(self.prompt[i] + self.output[i])
        for i in sorted(self.extras):
            for k, t in enumerate(self.extras[i].turns, 1):
                if t.prompt + t.output > best_total:
                    best, best_total = (i, k), t.prompt + t.output
        i, k = best
        req = self._request(int(self.rid[i]), int(self.arrival[i]), int(self.prompt[i]), int(self.output[i]),
                            self.extras.get(i, Extra()))
        for _ in range(k or 0):
            req = req.followup
        return req

    # --- transformations (new columns, same ids) -------------------------------------------

    def _rows(self, keep: np.ndarray, **columns) -> "Workload":
        idx = np.flatnonzero(keep) if keep.dtype == bool else keep
        remap = {int(j): n for n, j in enumerate(idx.tolist()) if int(j) in self.extras}
        cols = {k: (columns.get(k, getattr(self, k)))[idx] for k in ("arrival", "prompt", "output", "rid")}
        return Workload(self.source, extras={n: self.extras[j] for j, n in remap.items()}, **cols)

    def window(self, start_ns: int, duration_ns: int | None) -> "Workload":
        """The rows arriving in [start, start + duration), shifted so that `start` is 0."""
        a = self.arrival
        keep = a >= start_ns
        if duration_ns is not None:
            keep &= a < start_ns + duration_ns
        return self._rows(keep, arrival=a - start_ns)

    def head(self, n: int) -> "Workload":
        """The first `n` requests in file order (request id order; a session is cut after its
        n-th request overall)."""
        counts = np.ones(len(self.rid), dtype=np.int64)
        for i, e in self.extras.items():
            counts[i] += len(e.turns)
        by_rid = np.argsort(self.rid, kind="stable")
        before = np.empty_like(counts)
        before[by_rid] = np.cumsum(counts[by_rid]) - counts[by_rid]      # requests ahead of each row
        out = self._rows(before < n)
        for j, i in enumerate(np.flatnonzero(before < n).tolist()):
            e = self.extras.get(i)
            room = n - int(before[i]) - 1
            if e is not None and room < len(e.turns):
                out.extras[j] = replace(e, turns=e.turns[:room])
        out.__post_init__()
        return out

    def scaled(self, factor: float) -> "Workload":
        """Arrivals multiplied by `factor` (rounded to the ns)."""
        if factor == 1.0:
            return self
        span = float(self.arrival.max() - self.arrival.min()) * factor if len(self.arrival) else 0.0
        if span > INPUT_TIME_LIMIT_NS:
            raise InputError(f"--time-scale {factor}: the workload would span {span:.3g} ns, more than 10^17 ns (a "
                             f"tenth of the simulation's time bound)")
        return replace(self, arrival=np.round(self.arrival * factor).astype(np.int64))

    def with_arrivals(self, arrival: np.ndarray) -> "Workload":
        """The same rows at new arrival times (non-decreasing in the current order)."""
        return replace(self, arrival=np.asarray(arrival, dtype=np.int64))

    def clipped(self, max_tokens: int) -> "Workload":
        """Prompt and output cut so that prompt + output <= `max_tokens` (the prompt keeps at most
        max_tokens − 1 tokens, the output what is left; token ids are cut to match)."""
        def clip(p, o):
            p2 = np.minimum(p, max_tokens - 1)
            return p2, np.minimum(o, max_tokens - p2)
        prompt, output = clip(self.prompt, self.output)
        extras = {}
        for i, e in self.extras.items():
            turns = tuple(replace(t, prompt=int(cp), output=int(co),
                                  token_ids=_ids_for(t.token_ids, t.prompt, int(cp), int(co)))
                          for t in e.turns for cp, co in [clip(t.prompt, t.output)])
            extras[i] = replace(e, turns=turns, ids_prompt=e.ids_prompt or int(self.prompt[i]))
        return replace(self, prompt=prompt, output=output, extras=extras)


class TableBuilder:
    """Fills a `Workload` row by row in file order; `limit` stops it after that many requests."""

    def __init__(self, source: str, limit: int | None = None):
        if limit is not None and limit < 1:
            raise InputError(f"--num-requests must be >= 1, got {limit}")
        self.source, self.limit = source, limit
        self.arrival, self.prompt, self.output, self.rid = array("q"), array("q"), array("q"), array("q")
        self.extras: dict[int, Extra] = {}
        self.count = 0              # requests so far, session turns included

    @property
    def full(self) -> bool:
        return self.limit is not None and self.count >= self.limit

    @property
    def room(self) -> int | None:
        """How many more requests the builder takes (None: no limit)."""
        return None if self.limit is None else self.limit - self.count

    def add(self, arrival: int, prompt: int, output: int, extra: Extra | None = None) -> None:
        """One row (a flat request, or a session's first turn with its later turns in `extra`)."""
        if extra is not None:
            if self.limit is not None and len(extra.turns) > self.limit - self.count - 1:
                extra = replace(extra, turns=extra.turns[:self.limit - self.count - 1])
            self.extras[len(self.rid)] = extra
        for what, value in (("arrival time", arrival), ("prompt length", prompt), ("output length", output)):
            if not -2 ** 63 <= value < 2 ** 63:
                raise InputError(f"{self.source}: request {self.count}'s {what} {value} does not fit in 64 bits")
        self.arrival.append(arrival)
        self.prompt.append(prompt)
        self.output.append(output)
        self.rid.append(self.count)
        self.count += 1 + (len(extra.turns) if extra is not None else 0)

    def add_columns(self, arrival: np.ndarray, prompt: np.ndarray, output: np.ndarray) -> None:
        """Flat requests from int64 arrays of one length: as many `add` calls, in order."""
        for column, values in ((self.arrival, arrival), (self.prompt, prompt), (self.output, output)):
            column.frombytes(np.ascontiguousarray(values, dtype=np.int64).tobytes())
        self.rid.frombytes(np.arange(self.count, self.count + len(arrival), dtype=np.int64).tobytes())
        self.count += len(arrival)

    def build(self, from_first: bool = False) -> Workload:
        """The rows sorted by (arrival, rid); `from_first` makes the earliest arrival 0 (traces
        with wall-clock stamps)."""
        if not self.rid:
            raise InputError(f"{self.source}: no requests")
        cols = [np.frombuffer(c, dtype=np.int64) for c in (self.arrival, self.prompt, self.output, self.rid)]
        arrival, prompt, output, rid = cols
        if from_first:
            arrival = arrival - arrival.min()
        late = np.flatnonzero(arrival > INPUT_TIME_LIMIT_NS)
        if len(late):
            after = " after the first" if from_first else ""
            raise InputError(f"{self.source}: request {rid[late[0]]} arrives {arrival[late[0]]} ns{after}, more than "
                             f"10^17 ns (a tenth of the simulation's time bound)")
        extras = self.extras
        if np.any(arrival[1:] < arrival[:-1]):
            order = np.lexsort((rid, arrival))
            arrival, prompt, output, rid = arrival[order], prompt[order], output[order], rid[order]
            if extras:
                pos = np.empty_like(order)
                pos[order] = np.arange(len(order))
                extras = {int(pos[i]): e for i, e in extras.items()}
        return Workload(self.source, arrival, prompt, output, rid, extras)


def check_time_scale(time_scale: float) -> None:
    if not (isinstance(time_scale, (int, float)) and 0 < time_scale < math.inf):
        raise InputError(f"--time-scale must be a finite number > 0, got {time_scale}")
