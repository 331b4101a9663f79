"""Fit the roofline efficiencies of one hardware entry to a measured profile bundle.

The bundle's rows (dense.csv: op × tokens, per_sequence.csv: lm_head/sampler × sequences,
attention.csv: the 4-D grid incl. mixed batches) are predicted one by one with
`RooflineBackend` primitives, and each parameter group is fitted by least squares on log-time:

- `gemm` (c_max, m_half, e_mem, launch_us) on qkv_proj, o_proj, gate_up_proj, down_proj, lm_head;
- `attention` (c_max, cta_keys, e_mem, launch_us; block_q tried at 64 and 128) on the attention
  rows; then `max_gbps` (the decode kernel's bandwidth beyond one wave of SMs, an SM-side ceiling
  shared by a family) is measured directly: the median K/V bytes / (time − fitted launch) of the
  pure-decode rows whose CTAs need more than one wave, at contexts ≥ 4096 (launch negligible);
- `elementwise.<op>` (e_mem, launch_us, l2_gain) on each elementwise op's rows.

The groups do not share rows, so they are fitted separately: a coarse grid (each parameter at
×0.5, ×1, ×2 of its start) then Nelder–Mead in transformed
space (log for positive parameters, clipped to ≤ 1 for efficiencies), with restarts. numpy only.

Errors are |pred/measured − 1|; the summary statistics leave out the rows the bundle marks as
estimated, not measured (embedding, sampler), unless asked.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re

import numpy as np

from fleetsim.costmodel.catalogue import unflatten
from fleetsim.costmodel.profile import read_bundle
from fleetsim.costmodel.roofline import ELEMENTWISE_OPS, RooflineBackend

GEMM_TABLE_OPS = ("qkv_proj", "o_proj", "gate_up_proj", "down_proj", "lm_head")
ESTIMATED_OPS = ("embedding", "sampler")
BOUNDED = ("c_max", "e_mem")          # efficiencies: (0, 1]
CHOICES = {"attention": {"attention.block_q": (64, 128)}}    # discrete parameters: tried one by one
GROUPS = {
    "gemm": ("gemm.c_max", "gemm.m_half", "gemm.e_mem", "gemm.launch_us"),
    "attention": ("attention.c_max", "attention.cta_keys", "attention.e_mem", "attention.launch_us"),
}
CEILING_MIN_CONTEXT = 4096


@dataclasses.dataclass(frozen=True)
class Row:
    """One measured time: op "attention" keyed by (pc, kp, nd, kd), others by tokens / sequences."""
    op: str
    key: tuple
    ns: float

    @property
    def kind(self) -> str:
        """The row's kind for weighting: attention rows split into decode / prefill / mixed."""
        if self.op != "attention":
            return self.op
        pc, _, nd, _ = self.key
        return "attention.mixed" if pc and nd else ("attention.prefill" if pc else "attention.decode")

    @property
    def group(self) -> str:
        if self.op in GEMM_TABLE_OPS:
            return "gemm"
        if self.op == "attention":
            return "attention"
        return f"elementwise.{self.op}"


def bundle_rows(tp_dir: str) -> list[Row]:
    """Every row of a bundle directory `.../tp<N>/` as `Row`s (times in ns)."""
    rows = []
    raw = read_bundle(tp_dir)
    dense = raw["dense.csv"]
    for op, t, us in zip(dense["layer"], dense["tokens"], dense["time_us"]):
        rows.append(Row(str(op), (int(t),), float(us) * 1e3))
    seq = raw["per_sequence.csv"]
    for op, s, us in zip(seq["layer"], seq["sequences"], seq["time_us"]):
        rows.append(Row(str(op), (int(s),), float(us) * 1e3))
    att = raw["attention.csv"]
    for pc, kp, nd, kd, us in zip(att["prefill_chunk"], att["kv_prefill"], att["n_decode"], att["kv_decode"],
                                  att["time_us"]):
        rows.append(Row("attention", (int(pc), int(kp), int(nd), int(kd)), float(us) * 1e3))
    known = set(GEMM_TABLE_OPS) | set(ELEMENTWISE_OPS) | {"attention"}
    return [r for r in rows if r.op in known]


def predict_row(backend: RooflineBackend, row: Row) -> float:
    """Roofline time of one row, ns (float, unrounded)."""
    if row.op == "attention":
        pc, kp, nd, kd = row.key
        return backend.attention_s(((pc, kp),) if pc else (), nd, nd * kd, kd) * 1e9
    return backend.op_s(row.op, row.key[0]) * 1e9


def predict(backend: RooflineBackend, rows: list[Row]) -> np.ndarray:
    return np.array([predict_row(backend, r) for r in rows])


def abs_pct_errors(backend: RooflineBackend, rows: list[Row]) -> np.ndarray:
    meas = np.array([r.ns for r in rows])
    return np.abs(predict(backend, rows) / meas - 1.0) * 100.0


def error_stats(backend: RooflineBackend, rows: list[Row], include_estimated: bool = False) -> dict:
    """{"n", "median", "p90", "by_group": {group: median}} of abs % error."""
    rows = [r for r in rows if include_estimated or r.op not in ESTIMATED_OPS]
    err = abs_pct_errors(backend, rows)
    groups = {}
    for g in sorted({r.group for r in rows}):
        mask = np.array([r.group == g for r in rows])
        groups[g] = float(np.median(err[mask]))
    return {"n": len(rows), "median": float(np.median(err)), "p90": float(np.percentile(err, 90)),
            "by_group": groups}


def _nelder_mead(f, x0: np.ndarray, step: float = 0.3, iters: int = 400, tol: float = 1e-9):
    n = len(x0)
    simplex = [x0] + [x0 + step * np.eye(n)[i] for i in range(n)]
    values = [f(x) for x in simplex]
    for _ in range(iters):
        order = np.argsort(values)
        simplex = [simplex[i] for i in order]
        values = [values[i] for i in order]
        if values[-1] - values[0] < tol:
            break
        centroid = np.mean(simplex[:-1], axis=0)
        worst = simplex[-1]
        xr = centroid + (centroid - worst)
        fr = f(xr)
        if fr < values[0]:
            xe = centroid + 2 * (centroid - worst)
            fe = f(xe)
            simplex[-1], values[-1] = (xe, fe) if fe < fr else (xr, fr)
        elif fr < values[-2]:
            simplex[-1], values[-1] = xr, fr
        else:
            xc = centroid + 0.5 * (worst - centroid) if fr >= values[-1] else centroid + 0.5 * (xr - centroid)
            fc = f(xc)
            if fc < min(fr, values[-1]):
                simplex[-1], values[-1] = xc, fc
            else:
                best = simplex[0]
                simplex = [best] + [best + 0.5 * (x - best) for x in simplex[1:]]
                values = [values[0]] + [f(x) for x in simplex[1:]]
    i = int(np.argmin(values))
    return simplex[i], values[i]


def _to_value(name: str, u: float) -> float:
    v = math.exp(u)
    return min(v, 1.0) if name.endswith(BOUNDED) else v


def _to_u(v: float) -> float:
    return math.log(max(float(v), 1e-6))


def fit_group(backend: RooflineBackend, rows: list[Row], names: tuple[str, ...]) -> float:
    """Fit `names` of `backend.eff` in place on `rows`; returns the final weighted mean squared log
    error. Each kind of row (an op; attention: decode / prefill / mixed) weighs the same in total,
    so a bundle's 19k mixed-batch attention points do not drown its pure decodes and prefills."""
    meas = np.log(np.array([r.ns for r in rows]))
    kinds = [r.kind for r in rows]
    counts = {k: kinds.count(k) for k in set(kinds)}
    weight = np.array([1.0 / counts[k] for k in kinds])
    weight /= weight.sum()

    def loss(u):
        for name, x in zip(names, u):
            backend.eff[name] = _to_value(name, x)
        pred = predict(backend, rows)
        return float(np.sum(weight * (np.log(np.maximum(pred, 1e-3)) - meas) ** 2))

    u0 = np.array([_to_u(backend.eff[n]) for n in names])
    # coarse grid around the start
    axes = [(u - math.log(2), u, u + math.log(2)) for u in u0]
    grid = np.array(np.meshgrid(*axes, indexing="ij")).reshape(len(names), -1).T
    best = min(grid, key=loss)
    value = loss(best)
    for step in (0.5, 0.2, 0.05):
        best, value = _nelder_mead(loss, np.array(best, dtype=float), step=step)
    loss(best)
    return value


def calibrate(backend: RooflineBackend, rows: list[Row]) -> dict:
    """Fit every group present in `rows`; returns the fitted nested efficiency mapping."""
    for group in sorted({r.group for r in rows}):
        if group in GROUPS:
            names = GROUPS[group]
        else:
            names = (f"{group}.e_mem", f"{group}.launch_us", f"{group}.l2_gain")
            for n in names:
                backend.eff.setdefault(n, backend.eff[f"elementwise.{n.rsplit('.', 1)[1]}"])
        grp = [r for r in rows if r.group == group]
        choices = CHOICES.get(group, {})
        if not choices:
            fit_group(backend, grp, names)
            continue
        (cname, options), = choices.items()
        start = {n: backend.eff[n] for n in names}
        best = None
        for option in options:
            backend.eff.update(start)
            backend.eff[cname] = option
            value = fit_group(backend, grp, names)
            if best is None or value < best[0]:
                best = (value, option, {n: backend.eff[n] for n in names})
        backend.eff[cname] = best[1]
        backend.eff.update(best[2])
    ceiling = decode_ceiling_gbps(backend, rows)
    if ceiling:
        backend.eff["attention.max_gbps"] = round(ceiling, 1)
    return fitted_efficiency(backend)


def decode_ceiling_gbps(backend: RooflineBackend, rows: list[Row]) -> float | None:
    """Median achieved K/V bandwidth (GB/s) of the multi-wave long-context pure-decode rows
    (None without such rows); the launch floor taken as the current `attention.launch_us`."""
    launch = backend.p("attention.launch_us") * 1e3
    rates = []
    for r in rows:
        if r.op != "attention":
            continue
        pc, _, nd, kd = r.key
        if pc or not nd or kd < CEILING_MIN_CONTEXT or nd * backend.kv_heads <= backend.sm_count:
            continue
        nbytes = nd * (kd + 1) * backend.kv_token_layer
        rates.append(nbytes / max(r.ns - launch, 1.0))       # bytes/ns = GB/s
    return float(np.median(rates)) if rates else None


def fitted_efficiency(backend: RooflineBackend, digits: int = 4) -> dict:
    def rnd(v):
        if isinstance(v, float):
            return float(f"{v:.{digits}g}")
        return v
    return unflatten({k: rnd(v) for k, v in sorted(backend.eff.items())})


def _num(v) -> str:
    """A number as YAML 1.1 (PyYAML) reads back as a number: 1e-05 alone would be a string."""
    text = str(v)
    if "e" in text and "." not in text:
        mant, exp = text.split("e")
        text = f"{mant}.0e{exp}"
    return text


def _yaml_block(eff: dict, indent: int = 2) -> list[str]:
    lines = []
    pad = " " * indent
    for key, value in eff.items():
        if isinstance(value, dict) and not any(isinstance(v, dict) for v in value.values()):
            inner = ", ".join(f"{k}: {_num(v)}" for k, v in value.items())
            lines.append(f"{pad}{key}: {{{inner}}}")
        elif isinstance(value, dict):
            lines.append(f"{pad}{key}:")
            lines.extend(_yaml_block(value, indent + 2))
        else:
            lines.append(f"{pad}{key}: {_num(value)}")
    return lines


def write_efficiency(path: str, eff: dict, comment: str) -> None:
    """Replace (or append) the `efficiency:` mapping of a hardware YAML, keeping the rest as is."""
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    out, skipping = [], False
    for line in lines:
        if line.startswith("# Roofline efficiencies"):
            continue
        if re.match(r"^efficiency\s*:", line):
            skipping = True
            continue
        if skipping and (line.startswith((" ", "\t")) or not line.strip()):
            continue
        skipping = False
        out.append(line)
    while out and not out[-1].strip():
        out.pop()
    out.append(f"# Roofline efficiencies {comment}")
    out.append("efficiency:")
    out.extend(_yaml_block(eff))
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(out) + "\n")


# ---- driver (used by scripts/calibrate_roofline.py and scripts/costmodel_report.py) ------------------

def find_bundles(hardware: str, perf_roots: tuple[str, ...] = (), variant: str = "bf16") -> list[tuple[str, int, str]]:
    """(model, tp, tp_dir) of every bundle `<root>/<hardware>/<org>/<name>/<variant>/tp<N>` (first root wins)."""
    from fleetsim.costmodel.paths import SHIPPED
    found = {}
    for root in [*perf_roots, str(SHIPPED / "perf")]:
        base = os.path.join(root, hardware)
        if not os.path.isdir(base):
            continue
        for org in sorted(os.listdir(base)):
            if not os.path.isdir(os.path.join(base, org)):
                continue
            for name in sorted(os.listdir(os.path.join(base, org))):
                vdir = os.path.join(base, org, name, variant)
                if not os.path.isdir(vdir):
                    continue
                for tpd in sorted(os.listdir(vdir)):
                    m = re.fullmatch(r"tp(\d+)", tpd)
                    if m and os.path.isdir(os.path.join(vdir, tpd)):
                        found.setdefault((f"{org}/{name}", int(m.group(1))), os.path.join(vdir, tpd))
    return [(model, tp, path) for (model, tp), path in sorted(found.items())]


def roofline_for(hardware: str, model: str, tp: int = 1, efficiency: dict | None = None,
                 models_roots: tuple[str, ...] = (), hardware_roots: tuple[str, ...] = ()) -> RooflineBackend:
    """A RooflineBackend for (hardware, model, tp); `efficiency` None = the YAML's, {} = defaults."""
    from fleetsim.costmodel.collectives import network_from_hardware
    from fleetsim.costmodel.costmodel import load_arch, load_hardware
    from fleetsim.costmodel.catalogue import resolve_hardware_doc
    doc = resolve_hardware_doc(hardware, hardware_roots)
    hw = load_hardware(hardware, hardware_roots)
    arch = load_arch(model, models_roots)
    network = network_from_hardware(doc, hw.interconnect_gbps, hw.interconnect_latency_us, f"hardware {hw.name}")
    return RooflineBackend(arch, hw, tp, sm_count=doc.get("sm_count"), efficiency=efficiency,
                           l2_mib=doc.get("l2_mib"), network=network)


def subsample(rows: list[Row], per_group: int) -> list[Row]:
    """At most `per_group` rows of each group, evenly strided (deterministic)."""
    out = []
    for g in sorted({r.group for r in rows}):
        grp = [r for r in rows if r.group == g]
        if len(grp) > per_group:
            idx = np.unique(np.linspace(0, len(grp) - 1, per_group).round().astype(int))
            grp = [grp[i] for i in idx]
        out.extend(grp)
    return out


def run_calibration(hardware: str, model: str, tp: int = 1, variant: str = "bf16",
                    perf_roots: tuple[str, ...] = (), max_rows_per_group: int = 1500) -> dict:
    """Fit `hardware`'s efficiencies on the (model, tp) bundle and evaluate on every bundle of that
    hardware. Returns {"efficiency", "fit": {...}, "eval": [{model, tp, uncalibrated, calibrated}]}."""
    bundles = find_bundles(hardware, perf_roots, variant)
    fit_dir = next((d for m, t, d in bundles if m == model and t == tp), None)
    if fit_dir is None:
        from fleetsim.costmodel.errors import CostModelError
        raise CostModelError(f"no {hardware} bundle for {model} tp{tp} ({variant})")
    backend = roofline_for(hardware, model, tp, efficiency={})
    rows = bundle_rows(fit_dir)
    before = error_stats(backend, rows)
    eff = calibrate(backend, subsample(rows, max_rows_per_group))
    after = error_stats(backend, rows)
    evals = []
    for m, t, d in bundles:
        r = bundle_rows(d)
        evals.append({"model": m, "tp": t, "rows": len(r),
                      "uncalibrated": error_stats(roofline_for(hardware, m, t, efficiency={}), r),
                      "calibrated": error_stats(roofline_for(hardware, m, t, efficiency=eff), r)})
    return {"hardware": hardware, "model": model, "tp": tp, "bundle": fit_dir, "efficiency": eff,
            "fit": {"uncalibrated": before, "calibrated": after}, "eval": evals}
