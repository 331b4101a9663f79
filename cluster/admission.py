"""Admission control at the router: which arriving requests the fleet takes, which it turns away.

Configured as `router.admission` in the cluster YAML (or `fleetsim run --admission`, which
replaces it): `none` (the default: every request is routed, and the outputs are byte for byte
those of a run without the key), one stage, or a list of stages applied in order::

    router:
      policy: least_loaded
      admission:
        - {policy: token_bucket, rate: 20, burst: 10}       # req/s, bucket size
        - {policy: queue_cap, max_queued: 32, scope: instance}
        - {policy: slo, ttft_ms: 500}                       # optional prefill_tokens_per_s

`--admission token_bucket:rate=20,burst=10` is the same stage on the command line (repeat the flag
for a list). A request is decided at its arrival, in routing order; it is rejected by the first
stage that refuses it (that stage's name is the reason), and a stage spends nothing (no token,
no queue seat) for a request any stage rejected. Stages that look at an instance look at the one
the routing policy chose for the request: the policy is asked once, when the first such stage
comes (a rejected request may so have taken a round-robin turn); none looks for another instance
(placing requests is the policy's job). The router's view of the queues is the window's
snapshots plus what it routed since (cluster/snapshot.py): the same staleness as routing.

- `token_bucket` (rate r req/s, burst b, default 1): the bucket holds b tokens at t = 0, gains r
  per second up to b, and an admitted request takes one. Exact integer arithmetic: r is read as
  the fraction p/q of its decimal text, a token is 10^9·q units, the bucket gains p units per ns;
  so a stream faster than r from t0 (the bucket full then) admits exactly b + floor(r·(T − t0))
  requests over [t0, T] when one arrives at each instant a token is complete. Decided at the
  request's arrival time: independent of windows, Δ and the routing policy (no snapshots needed).
- `queue_cap` (max_queued k >= 0, scope `instance` (default) or `fleet`): the queued requests
  are the snapshots' waiting ones (queued in the engine or still in its front end) plus those
  routed since the snapshot; a request is rejected when its instance (`instance`) or the whole
  fleet (`fleet`: every instance, routable or not) already has k queued, so the router never makes
  more than k.
- `slo` (ttft_ms bound): the predicted TTFT of the request on the chosen instance is
  `ceil((P + prompt + S) · ns / tokens)`. P is the instance's outstanding prefill tokens in the
  router's view (every queued and running request's prompt tokens not yet computed, plus the
  prompts routed there since the snapshot; prefix-cache hits are not subtracted); S is the step
  in flight, one full token budget (`max_num_batched_tokens`), when the view shows the instance
  busy (anything running or waiting) and 0 when idle; `tokens / ns` is its prefill rate
  (cluster/instance_capacity.py: one full-budget prefill step priced by its cost model; the step
  in flight so costs one such step), or `prefill_tokens_per_s` when given (read as a fraction,
  like the bucket's rate). Rejected when the prediction exceeds the bound. Not in it: decodes
  sharing the steps (a few % of a full-budget step), async scheduling's second step before a
  new request's first, and waiting for a seat or KV blocks when the running set is full.

What a rejection does (cluster/router.py, docs/topologies.md "Admission control"): the request
ends at its arrival with no latencies; it is a row of requests.csv with a `rejected` reason and
counted in summary.json's `admission` block and in the SLO attainment's denominator as missing
every per-request SLO. A closed-loop client gets its answer (the rejection) at once and sends
its next request at that same time, like a benchmark client getting HTTP 429. A rejected
session turn ends its session: its later turns, which build on the answer it did not get, are
never sent (counted as `session_turns_not_sent`, not as arrivals).
"""
from __future__ import annotations

from dataclasses import dataclass

from fleetsim.cluster.errors import InputError, exact_fraction, is_finite_number, is_int

NS_PER_S = 10 ** 9


@dataclass(frozen=True)
class StageSpec:
    """One admission stage as configured: its name and options (sorted (key, value) pairs)."""
    name: str
    options: tuple = ()

    def option(self, key: str, default=None):
        return dict(self.options).get(key, default)


def _positive(spec: StageSpec, key: str, where: str, default=None):
    value = spec.option(key, default)
    if not is_finite_number(value) or value <= 0:
        raise InputError(f"{where}: {spec.name}.{key} must be a positive number, got {value!r}")
    return value


class Stage:
    """One admission stage: `admits` decides, `take` commits for an admitted request."""
    name = "stage"
    OPTIONS: tuple[str, ...] = ()
    REQUIRED: tuple[str, ...] = ()
    needs_load = False          # reads the router's view of the queues (snapshots)
    needs_instance = False      # decides on the instance the policy chose

    @classmethod
    def check(cls, spec: StageSpec, where: str) -> None:
        keys = {k for k, _ in spec.options}
        unknown = sorted(keys - set(cls.OPTIONS), key=str)
        if unknown:
            raise InputError(f"{where}: {cls.name}: unknown option(s) {', '.join(map(str, unknown))}; "
                             f"allowed: {', '.join(cls.OPTIONS)}")
        missing = [k for k in cls.REQUIRED if k not in keys]
        if missing:
            raise InputError(f"{where}: {cls.name} needs {', '.join(missing)}")

    def admits(self, req, idx, snaps) -> bool:
        raise NotImplementedError

    def take(self, req, idx) -> None:
        """`req` was admitted (and routed to `idx`)."""

    def sync(self, snaps) -> None:
        """Fresh snapshots arrived."""


class TokenBucket(Stage):
    name = "token_bucket"
    OPTIONS = ("rate", "burst")
    REQUIRED = ("rate",)

    @classmethod
    def check(cls, spec, where):
        super().check(spec, where)
        _positive(spec, "rate", where)
        burst = spec.option("burst", 1)
        if not is_int(burst) or burst < 1:
            raise InputError(f"{where}: token_bucket.burst must be an integer >= 1, got {burst!r}")

    def __init__(self, spec: StageSpec, rates):
        rate = exact_fraction(spec.option("rate"))
        self.gain = rate.numerator                      # units per ns
        self.cost = NS_PER_S * rate.denominator         # units per token
        self.capacity = self.cost * spec.option("burst", 1)
        self.level, self.last = self.capacity, 0

    def admits(self, req, idx, snaps) -> bool:
        t = req.arrival_ns
        if t > self.last:
            self.level = min(self.capacity, self.level + self.gain * (t - self.last))
            self.last = t
        return self.level >= self.cost

    def take(self, req, idx) -> None:
        self.level -= self.cost


class QueueCap(Stage):
    name = "queue_cap"
    OPTIONS = ("max_queued", "scope")
    REQUIRED = ("max_queued",)
    SCOPES = ("instance", "fleet")
    needs_load = True

    @classmethod
    def check(cls, spec, where):
        super().check(spec, where)
        cap = spec.option("max_queued")
        if not is_int(cap) or cap < 0:
            raise InputError(f"{where}: queue_cap.max_queued must be an integer >= 0, got {cap!r}")
        if spec.option("scope", "instance") not in cls.SCOPES:
            raise InputError(f"{where}: queue_cap.scope must be one of {', '.join(cls.SCOPES)}, "
                             f"got {spec.option('scope')!r}")

    def __init__(self, spec: StageSpec, rates):
        self.cap = spec.option("max_queued")
        self.fleet = spec.option("scope", "instance") == "fleet"
        self.needs_instance = not self.fleet
        self.queued = 0                         # fleet-wide, in the router's view

    def sync(self, snaps) -> None:
        self.queued = sum(s.waiting for s in snaps)

    def admits(self, req, idx, snaps) -> bool:
        return (self.queued if self.fleet else snaps[idx].waiting) < self.cap

    def take(self, req, idx) -> None:
        self.queued += 1


class SloShedding(Stage):
    name = "slo"
    OPTIONS = ("ttft_ms", "prefill_tokens_per_s")
    REQUIRED = ("ttft_ms",)
    needs_load = needs_instance = True

    @classmethod
    def check(cls, spec, where):
        super().check(spec, where)
        _positive(spec, "ttft_ms", where)
        if spec.option("prefill_tokens_per_s") is not None:
            _positive(spec, "prefill_tokens_per_s", where)

    def __init__(self, spec: StageSpec, rates):
        self.bound_ns = round(spec.option("ttft_ms") * 1e6)
        self.budgets = [tokens for tokens, _ in rates]
        given = spec.option("prefill_tokens_per_s")
        if given is not None:
            r = exact_fraction(given)
            rates = [(r.numerator, NS_PER_S * r.denominator)] * len(rates)
        self.rates = rates                      # per instance (tokens, ns)

    def predicted_ttft_ns(self, req, snap) -> int:
        tokens, ns = self.rates[snap.index]
        work = snap.prefill_tokens + req.prompt_len
        if snap.running or snap.waiting:
            work += self.budgets[snap.index]        # the step in flight
        return -(-work * ns // tokens)

    def admits(self, req, idx, snaps) -> bool:
        return self.predicted_ttft_ns(req, snaps[idx]) <= self.bound_ns


STAGES = {s.name: s for s in (TokenBucket, QueueCap, SloShedding)}


def _stage_spec(item, where: str) -> StageSpec:
    if isinstance(item, str):
        name, _, text = item.partition(":")
        options = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, value = part.partition("=")
            if not sep:
                raise InputError(f"{where}: {part!r} is not key=value (e.g. token_bucket:rate=20,burst=10)")
            options[key.strip()] = _number(value.strip())
    elif isinstance(item, dict):
        if "policy" not in item:
            raise InputError(f"{where}: a stage needs 'policy' (one of {', '.join(STAGES)})")
        name, options = item["policy"], {k: v for k, v in item.items() if k != "policy"}
    else:
        raise InputError(f"{where}: a stage is a mapping {{policy: NAME, ...}} or NAME:key=value,..., "
                         f"got {type(item).__name__}")
    name = str(name).strip()
    if name not in STAGES:
        raise InputError(f"{where}: unknown admission policy {name!r}; choose none or one of {', '.join(STAGES)}")
    spec = StageSpec(name, tuple(sorted(options.items(), key=lambda kv: str(kv[0]))))
    STAGES[name].check(spec, where)
    return spec


def _number(text: str):
    """A CLI option value: an int, a float, else the text itself."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_admission(value, where: str = "router.admission") -> tuple[StageSpec, ...]:
    """The admission stages of a config value or flag(s): none / a stage / a list of stages (module
    doc); () is none. A bad one is an InputError naming `where`."""
    if value is None or value == "none" or value == ["none"]:
        return ()
    items = value if isinstance(value, (list, tuple)) else [value]
    if not items:
        raise InputError(f"{where}: an empty list (write none for no admission control)")
    return tuple(_stage_spec(item, where) for item in items)


class Admission:
    """The configured stages of a run; `rates`: the instances' prefill rates (cluster/instance_capacity.py)."""

    def __init__(self, specs: tuple[StageSpec, ...], rates: list[tuple[int, int]]):
        self.specs = specs
        self.stages = [STAGES[s.name](s, rates) for s in specs]
        self.needs_load = any(s.needs_load for s in self.stages)

    def decide(self, req, snaps, choose) -> tuple[int | None, str | None]:
        """(instance or None, reason or None) for `req`; `choose()` asks the policy (at most once).
        An admitted request always comes back with its instance."""
        idx = None
        for stage in self.stages:
            if stage.needs_instance and idx is None:
                idx = choose()
            if not stage.admits(req, idx, snaps):
                return idx, stage.name
        if idx is None:
            idx = choose()
        for stage in self.stages:
            stage.take(req, idx)
        return idx, None

    def sync(self, snaps) -> None:
        for stage in self.stages:
            stage.sync(snaps)

    def info(self) -> list[dict]:
        """The stages as configured (summary.json's `admission.stages`)."""
        return [{"policy": s.name, **dict(s.options)} for s in self.specs]
