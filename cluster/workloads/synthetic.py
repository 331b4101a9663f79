"""Synthetic workloads from a spec: `--workload synth:KEY=VALUE,...` or a workload YAML file with
the same keys. Seeded and byte-stable: every random quantity comes from its own generator
(SeedSequence of the spec's `seed` and the quantity's name), so changing one option does not
reshuffle the others.

Keys (defaults in brackets):
- `n`: requests that arrive on their own (sessions when `turns` > 1) — required.
- `arrival` [poisson] | gamma | constant, `rate` (req/s, required), `cv` [1] for gamma
  (inter-arrival gaps: exponential of mean 1/rate; Gamma of shape 1/cv², mean 1/rate; exactly
  1/rate). The first request arrives one gap after 0.
- `prompt`, `output`: token lengths, a distribution: `N` or `fixed(N)`, `uniform(LO,HI)`
  (integers, both included), `normal(MEAN,STD)`, `lognormal(MEAN,STD)` (of the lengths
  themselves), `zipf(A,MAX)` (P(k) ∝ k^−A on 1..MAX), `empirical(PATH)` (drawn from the prompt
  resp. output lengths of the workload file PATH, i.e. its histogram). Drawn lengths are rounded
  and at least 1.
- `prefix_groups` G [0], `prefix_tokens` P, `prefix_zipf` S [1]: each request (each session's
  first turn) starts with the P tokens of group g, g drawn with P(g) ∝ g^−S; its drawn prompt
  length follows them (prompt = P + draw). Groups are Mooncake-style hash ids of one P-token
  block, so prefix caching and prefix-aware routing find the full cache blocks inside it.
- `turns` T [1]: session turns; turn k+1's prompt is turn k's prompt and output plus a new
  drawn prompt (token ids make the history hit the cache); `think` [0]: seconds between a turn's
  end and the next turn, a distribution as above in seconds (not rounded, at least 0).
- `seed` [0].
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from fleetsim.cluster.errors import InputError
from fleetsim.cluster.policies import stable_hash
from fleetsim.cluster.workloads.table import Extra, TableBuilder, Turn, Workload

KEYS = ("n", "arrival", "rate", "cv", "prompt", "output", "prefix_groups", "prefix_tokens", "prefix_zipf",
        "turns", "think", "seed")
ARRIVALS = ("poisson", "gamma", "constant")
DISTRIBUTIONS = {"fixed": 1, "uniform": 2, "normal": 2, "lognormal": 2, "zipf": 2, "empirical": 1}


@dataclass(frozen=True)
class Distribution:
    kind: str
    args: tuple

    @classmethod
    def parse(cls, text, where: str) -> "Distribution":
        if isinstance(text, (int, float)) and not isinstance(text, bool):
            return cls("fixed", (float(text),))
        m = re.fullmatch(r"\s*([a-z]+)\s*\((.*)\)\s*", str(text))
        if m is None:
            try:
                return cls("fixed", (float(text),))
            except ValueError:
                raise InputError(f"{where}: {text!r} is not a distribution; use N, fixed(N), uniform(LO,HI), "
                                 f"normal(MEAN,STD), lognormal(MEAN,STD), zipf(A,MAX) or empirical(PATH)") from None
        kind, body = m.group(1), m.group(2)
        if kind not in DISTRIBUTIONS:
            raise InputError(f"{where}: unknown distribution {kind!r}; choose one of {', '.join(DISTRIBUTIONS)}")
        if kind == "empirical":
            return cls(kind, (body.strip(),))
        parts = [p.strip() for p in body.split(",")]
        try:
            args = tuple(float(p) for p in parts)
        except ValueError:
            args = ()
        if len(args) != DISTRIBUTIONS[kind] or not all(math.isfinite(a) and a >= 0 for a in args):
            raise InputError(f"{where}: {kind}() takes {DISTRIBUTIONS[kind]} finite number(s) >= 0, got {body!r}")
        if kind == "uniform" and args[0] > args[1] or kind == "zipf" and args[1] < 1:
            raise InputError(f"{where}: bad bounds in {kind}({body})")
        return cls(kind, args)

    def draw(self, rng: np.random.Generator, n: int, which: str) -> np.ndarray:
        """`n` float draws (`which` = prompt|output picks the empirical column)."""
        kind, a = self.kind, self.args
        if kind == "fixed":
            return np.full(n, a[0])
        if kind == "uniform":
            return rng.integers(int(a[0]), int(a[1]), endpoint=True, size=n).astype(np.float64)
        if kind == "normal":
            return rng.normal(a[0], a[1], size=n)
        if kind == "lognormal":
            if a[0] <= 0:
                raise InputError("lognormal(MEAN,STD) needs MEAN > 0")
            sigma2 = math.log1p((a[1] / a[0]) ** 2)
            return rng.lognormal(math.log(a[0]) - sigma2 / 2, math.sqrt(sigma2), size=n)
        if kind == "zipf":
            return _bounded_zipf(rng, a[0], int(a[1]), n).astype(np.float64)
        from fleetsim.cluster.workloads import load_workload       # empirical: lengths of a trace
        prompts, outputs = load_workload(a[0]).all_lengths()
        values = prompts if which == "prompt" else outputs
        return values[rng.integers(0, len(values), size=n)].astype(np.float64)


def _bounded_zipf(rng, a: float, top: int, n: int) -> np.ndarray:
    """Draws in 1..top with P(k) ∝ k^−a (inverse CDF)."""
    cdf = np.cumsum(np.arange(1, top + 1, dtype=np.float64) ** -a)
    return np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right") + 1


@dataclass(frozen=True)
class SynthSpec:
    n: int
    rate: float
    arrival: str = "poisson"
    cv: float = 1.0
    prompt: Distribution = Distribution("fixed", (512.0,))
    output: Distribution = Distribution("fixed", (128.0,))
    prefix_groups: int = 0
    prefix_tokens: int = 0
    prefix_zipf: float = 1.0
    turns: int = 1
    think: Distribution = Distribution("fixed", (0.0,))
    seed: int = 0
    source: str = "synth"

    @classmethod
    def from_mapping(cls, doc: dict, where: str) -> "SynthSpec":
        unknown = sorted(set(doc) - set(KEYS))
        if unknown:
            raise InputError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(KEYS)}")
        for key in ("n", "rate"):
            if key not in doc:
                raise InputError(f"{where}: {key!r} is required")

        def num(key, default, integer=False, low=0.0, open_low=False):
            value = doc.get(key, default)
            try:
                x = float(value)
            except (TypeError, ValueError):
                x = math.nan
            if not math.isfinite(x) or x < low or (open_low and x == low) or (integer and x != int(x)):
                kind = "an integer" if integer else "a finite number"
                raise InputError(f"{where}: {key} must be {kind} {'>' if open_low else '>='} {low:g}, got {value!r}")
            return int(x) if integer else x

        arrival = str(doc.get("arrival", "poisson"))
        if arrival not in ARRIVALS:
            raise InputError(f"{where}: arrival {arrival!r}: choose one of {', '.join(ARRIVALS)}")
        spec = cls(n=num("n", 0, True, 1), rate=num("rate", 0, low=0, open_low=True), arrival=arrival,
                   cv=num("cv", 1.0, low=0, open_low=True),
                   prompt=Distribution.parse(doc.get("prompt", 512), f"{where}: prompt"),
                   output=Distribution.parse(doc.get("output", 128), f"{where}: output"),
                   prefix_groups=num("prefix_groups", 0, True), prefix_tokens=num("prefix_tokens", 0, True),
                   prefix_zipf=num("prefix_zipf", 1.0), turns=num("turns", 1, True, 1),
                   think=Distribution.parse(doc.get("think", 0), f"{where}: think"), seed=num("seed", 0, True),
                   source=where)
        if spec.prefix_groups and spec.prefix_tokens < 1:
            raise InputError(f"{where}: prefix_groups needs prefix_tokens >= 1")
        return spec

    def rng(self, name: str) -> np.random.Generator:
        return np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, stable_hash(f"synth/{name}")])))

    def generate(self) -> Workload:
        n = self.n
        rate = self.rate
        if self.arrival == "constant":
            gaps = np.full(n, 1.0 / rate)
        else:
            shape = 1.0 if self.arrival == "poisson" else 1.0 / (self.cv * self.cv)
            gaps = self.rng("arrival").gamma(shape, 1.0 / (shape * rate), size=n)
        arrivals = np.round(np.cumsum(gaps) * 1e9).astype(np.int64)
        turns = self.turns
        lengths = {w: np.maximum(1, np.round(d.draw(self.rng(w), n * turns, w))).astype(np.int64).reshape(n, turns)
                   for w, d in (("prompt", self.prompt), ("output", self.output))}
        groups = (_bounded_zipf(self.rng("prefix"), self.prefix_zipf, self.prefix_groups, n).tolist()
                  if self.prefix_groups else [0] * n)
        think = np.maximum(0, np.round(self.think.draw(self.rng("think"), n * turns, "think") * 1e9)).astype(np.int64)
        builder = TableBuilder(self.source)
        P = self.prefix_tokens if self.prefix_groups else 0
        if turns == 1 and not P:            # flat requests: the columns as drawn (no per-row objects)
            builder.add_columns(arrivals, lengths["prompt"][:, 0], lengths["output"][:, 0])
            return builder.build()
        arrivals, think = arrivals.tolist(), think.reshape(n, turns).tolist()
        prompts, outputs = lengths["prompt"].tolist(), lengths["output"].tolist()
        next_id = 0
        for i in range(n):
            prefix = [groups[i] - 1] if P else None
            if turns == 1:
                extra = Extra(hash_ids=prefix, hash_block=P) if P else None
                builder.add(arrivals[i], P + prompts[i][0], outputs[i][0], extra)
                continue
            # sessions: token ids, unique per session except the group prefix
            history = [-groups[i]] * P if P else []
            chain = []
            for k in range(turns):
                new = list(range(next_id, next_id + prompts[i][k] + outputs[i][k]))
                next_id += len(new)
                ids = history + new
                chain.append(Turn(len(history) + prompts[i][k], outputs[i][k], think[i][k], ids))
                history = ids
            first = chain[0]
            builder.add(arrivals[i], first.prompt, first.output,
                        Extra(token_ids=first.token_ids, session=f"s{i}", think_ns=first.think_ns,
                              turns=tuple(chain[1:])))
        return builder.build()


def split_top_level(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += (ch == "(") - (ch == ")")
        cur += ch
    parts.append(cur)
    return [p for p in (p.strip() for p in parts) if p]


def parse_cli(text: str) -> SynthSpec:
    """`synth:n=1000,rate=20,prompt=normal(512,256),...` (the part after `synth:`)."""
    doc = {}
    where = f"--workload synth:{text}"
    for part in split_top_level(text):
        key, eq, value = part.partition("=")
        if not eq:
            raise InputError(f"{where}: expected KEY=VALUE, got {part!r}")
        doc[key.strip()] = value.strip()
    return SynthSpec.from_mapping(doc, where)


def parse_yaml(path: str) -> SynthSpec:
    from fleetsim.cluster.textfile import yaml_document
    doc, _ = yaml_document(path, "workload YAML")
    if not isinstance(doc, dict):
        raise InputError(f"{path}: a workload YAML is a mapping of {', '.join(KEYS)}")
    return SynthSpec.from_mapping(doc, path)


def synthetic_workload(num_requests: int, rate_per_s: float, prompt_tokens: int, output_tokens: int,
                       seed: int = 0, cv: float = 1.0, length_spread: float = 0.0) -> Workload:
    """Gamma arrivals (coefficient of variation `cv`; 1 = Poisson) at `rate_per_s`, lengths fixed
    or uniform within ±`length_spread` of the given ones (the benchmark scenarios' workload)."""
    def lengths(t):
        if not length_spread:
            return Distribution("fixed", (float(t),))
        return Distribution("uniform", (max(1, round(t * (1 - length_spread))), round(t * (1 + length_spread))))
    return SynthSpec(num_requests, rate_per_s, "poisson" if cv == 1.0 else "gamma", cv, lengths(prompt_tokens),
                     lengths(output_tokens), seed=seed, source=f"synthetic(rate={rate_per_s}/s, seed={seed})").generate()
