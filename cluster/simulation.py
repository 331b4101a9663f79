"""One simulation, from Python or from `fleetsim run`: resolve the cluster, the workload and the
options, run the fleet, return a `Result`.

`simulate(cluster, workload, out=None, **options)`:
- `cluster`: a path (fleetsim YAML, or an LLMServingSim cluster JSON), a dict (a parsed document of
  either kind; relative roots in it are taken from the working directory) or a `ClusterConfig`.
- `workload`: a path (any format `load_workload` reads, a workload YAML or `synth:...`) or a
  `Workload` (it can be simulated any number of times: each run makes fresh requests).
- `options`: the `fleetsim run` flags with underscores (`RunOptions` lists them, with their
  defaults); `None` keeps the cluster config's value. An unknown option is a TypeError, a bad
  value an InputError naming the flag.
- Every run's summary.json has a `run` block (cluster/provenance.py): the version, the cluster
  document and its resolved instances, the workload's path and sha256, the options.
- `plots=True` (`--plots`) also writes PNG figures into `out` (experiments/plots.py).
- Nothing is written unless `out` names a folder (one that holds an earlier run's results is
  refused unless `overwrite=True`, which removes them before the run starts): then the files stream there and appear all at
  once, as from the command line, and the Result reads them from there when asked; otherwise they
  are kept in memory and `Result.save(folder)` writes them later. The files' bytes are the same
  either way, and the same as `fleetsim run`'s.
"""
from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass

from fleetsim.cluster.config import ClusterConfig, config_from_doc, load_cluster_config
from fleetsim.cluster.errors import InputError, is_int
from fleetsim.cluster.progress import loading_bar
from fleetsim.cluster.result import Result
from fleetsim.cluster.workloads import Workload, load_workload
from fleetsim.cluster.workloads.clients import ClientSpec

ENGINE_OPTIONS = ("max_num_seqs", "max_num_batched_tokens", "block_size", "num_gpu_blocks",
                  "gpu_memory_utilization", "long_prefill_token_threshold", "max_model_len",
                  "enable_prefix_caching", "enable_chunked_prefill", "async_scheduling")
RAY_OPTIONS = ("actors", "instances_per_actor", "ray_address")


@dataclass(frozen=True)
class RunOptions:
    """What `fleetsim run` takes besides --cluster, --workload and --out (None = the config's)."""
    backend: str = "local"                  # local (in-process) or ray
    seed: int | None = None
    instances: int | None = None
    router: str | None = None
    sync_interval_ms: float | None = None
    num_requests: int | None = None
    time_scale: float = 1.0
    format: str | None = None               # workload format (None: detected from the content)
    # reading and sending the workload (docs/workloads.md); None = not given (kept out of summary.json)
    columns: str | None = None              # generic CSV: arrival=COL,input=COL,output=COL[,unit=s]
    start: float | None = None              # trace window: from S seconds of trace time ...
    duration: float | None = None           # ... for D seconds
    clip_to_model: bool | None = None       # cut over-long requests instead of rejecting them
    max_concurrency: int | None = None      # benchmark clients (cluster/workloads/clients.py)
    request_rate: float | None = None
    burstiness: float | None = None         # None: 1 (Poisson)
    warmup_requests: int | None = None      # None: 0
    perf_root: str | None = None
    models_root: str | None = None
    fast_forward: bool = True
    progress: bool = False
    requests_detail: str = "full"           # requests.csv: full, no-itl (ITL cells empty) or none (no file)
    check_invariants: str = "basic"         # or full (cluster/invariants.py)
    memory_limit: float | None = None       # GiB the run's estimated memory may take (None: what is available)
    actors: int | None = None
    instances_per_actor: int | None = None
    ray_address: str | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    block_size: int | None = None
    num_gpu_blocks: int | None = None
    gpu_memory_utilization: float | None = None
    long_prefill_token_threshold: int | None = None
    max_model_len: int | None = None
    enable_prefix_caching: bool | None = None
    enable_chunked_prefill: bool | None = None
    async_scheduling: bool | None = None    # vLLM's async scheduling (docs/engine.md; None: on)
    slo: str | dict | None = None           # SLO set (experiments/slo.py); None = the config's `slo:`
    admission: str | list | None = None     # admission stages (cluster/admission.py); None = the config's
    plots: bool = False                     # write PNG figures into `out` (experiments/plots.py)
    trace: bool | None = None               # write trace.json (cluster/trace_json.py; local backend)
    trace_instances: str | None = None      # e.g. "0,3" (None: all)
    trace_window: str | None = None         # "S:E" simulated seconds (None: the whole run)


def with_engine_options(config: ClusterConfig, options) -> ClusterConfig:
    """`config` with the vLLM engine overrides among `options` (any object with those
    attributes; None = keep) applied to every instance; a bad value is an InputError naming its flag."""
    return config.with_engine_overrides(**{k: getattr(options, k, None) for k in ENGINE_OPTIONS})


def resolve_config(cluster, options: RunOptions) -> ClusterConfig:
    """The cluster config with every option applied."""
    if isinstance(cluster, ClusterConfig):
        config = cluster
    elif isinstance(cluster, dict):
        config = config_from_doc(cluster, "cluster dict", os.getcwd())
    elif isinstance(cluster, (str, os.PathLike)):
        config = load_cluster_config(os.fspath(cluster))
    else:
        raise InputError(f"cluster: expected a path, a dict or a ClusterConfig, got {type(cluster).__name__}")
    config = with_engine_options(config, options)
    if options.seed is not None:
        if not is_int(options.seed) or options.seed < 0:
            raise InputError(f"--seed must be an integer >= 0, got {options.seed!r}")
        config = dataclasses.replace(config, seed=options.seed)
    if options.slo is not None:
        from fleetsim.cluster.experiments.slo import parse_slo      # deferred: only runs with --slo need it
        config = dataclasses.replace(config, slo=parse_slo(options.slo))
    if options.admission is not None:
        from fleetsim.cluster.admission import parse_admission      # deferred: only runs with --admission need it
        config = dataclasses.replace(config, admission=parse_admission(options.admission, "--admission"))
    return config.with_fleet_overrides(instances=options.instances, policy=options.router,
                                       sync_interval_ms=options.sync_interval_ms)


def resolve_workload(workload, options: RunOptions) -> Workload:
    loading = ("num_requests", "format", "columns", "start", "duration")
    if isinstance(workload, Workload):
        if any(getattr(options, k) is not None for k in loading) or options.time_scale != 1.0:
            raise InputError(f"{', '.join(loading)} and time_scale apply when loading: pass them to load_workload")
        return workload
    if isinstance(workload, (str, os.PathLike)):
        with loading_bar(options.progress):
            return load_workload(os.fspath(workload), options.num_requests, options.time_scale, options.format,
                                 options.start, options.duration, options.columns)
    raise InputError(f"workload: expected a path or a Workload, got {type(workload).__name__}")


def simulate(cluster, workload, out: str | None = None, overwrite: bool = False, **options) -> Result:
    """Run `workload` on `cluster` (see the module docstring); files go to `out` if given
    (a folder holding a previous run's results needs `overwrite=True`)."""
    from fleetsim.cluster.fleet import run_fleet
    from fleetsim.cluster.provenance import run_block
    from fleetsim.cluster.report import RunOutput, clear_previous
    from fleetsim.cluster.requests_csv import writes_file

    opts = RunOptions(**options)
    if out is not None:
        clear_previous(os.fspath(out), overwrite)
    config = resolve_config(cluster, opts)
    backend_options = {k: getattr(opts, k) for k in RAY_OPTIONS if getattr(opts, k) is not None}
    if backend_options and opts.backend != "ray":
        raise InputError("--actors, --instances-per-actor and --ray-address need --backend ray")
    if opts.plots:
        from fleetsim.cluster.experiments.plots import need_matplotlib
        if out is None:
            raise InputError("--plots needs an out folder (the figures are written there)")
        need_matplotlib()               # before anything runs: a missing extra is one line
    trace = None
    if opts.trace or opts.trace_instances or opts.trace_window:
        from fleetsim.cluster.trace_json import parse_trace_spec
        if not opts.trace:
            raise InputError("--trace-instances and --trace-window need --trace")
        trace = parse_trace_spec(opts.trace_instances, opts.trace_window)
    clients = ClientSpec(opts.max_concurrency, opts.request_rate, 1.0 if opts.burstiness is None else opts.burstiness,
                         opts.warmup_requests or 0).validate()
    wl = resolve_workload(workload, opts)
    path = os.fspath(workload) if isinstance(workload, (str, os.PathLike)) else None
    provenance = run_block(config, path, wl, opts)
    output = RunOutput(None if out is None else os.fspath(out), writes_file(opts.requests_detail),
                       bool(config.admission), config.pd is not None)
    wall0 = time.perf_counter()
    try:
        run_fleet(config, wl, output, opts.backend, opts.perf_root, opts.models_root,
                  progress=opts.progress, fast_forward=opts.fast_forward, requests_detail=opts.requests_detail,
                  check_invariants=opts.check_invariants, provenance=provenance, memory_limit=opts.memory_limit,
                  slo=config.slo or None, trace=trace, clients=clients, clip_to_model=bool(opts.clip_to_model),
                  **backend_options)
    except BaseException:
        output.abort()
        raise
    wall_s = time.perf_counter() - wall0
    if opts.plots:
        from fleetsim.cluster.experiments.plots import write_run_plots
        write_run_plots(output.out_dir)
    return Result(output.names, wall_s, output.texts if out is None else None, output.out_dir)
