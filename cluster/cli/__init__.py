"""`fleetsim` command line: one module per subcommand (run, validate, ...).

Each subcommand module has `register(subparsers)`, which adds its parser and sets `handler`;
the modules import nothing heavy at module level (the simulation, Ray, matplotlib are imported
inside the handlers), so `fleetsim --help` stays fast. Add a subcommand by adding its module
to SUBCOMMANDS.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from fleetsim.cluster.errors import BackendFailure, InputError
from fleetsim.cluster.invariants import InvariantViolation
from fleetsim.costmodel import CostModelError

SUBCOMMANDS = ("run", "rerun", "validate", "sweep", "capacity", "compare", "report", "workload")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fleetsim", description="Simulate LLM serving fleets in simulated time.")
    sub = p.add_subparsers(dest="command", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"fleetsim.cluster.cli.{name}").register(sub)
    return p


class StderrLine(logging.Handler):
    """fleetsim's log records as `fleetsim: warning: <message>` lines on stderr (the stream
    current when the record is emitted, so a redirected sys.stderr gets them too)."""

    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(f"fleetsim: {record.levelname.lower()}: {record.getMessage()}\n")


def log_to_stderr() -> None:
    """Print the `fleetsim` loggers' warnings (and worse) on stderr; idempotent."""
    logger = logging.getLogger("fleetsim")
    if not any(isinstance(h, StderrLine) for h in logger.handlers):
        logger.addHandler(StderrLine(logging.WARNING))


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    log_to_stderr()
    try:
        return args.handler(args)
    except (InputError, CostModelError) as exc:
        print(f"fleetsim: error: {exc}", file=sys.stderr)
        return 2
    except InvariantViolation as exc:  # the run broke its own invariants: no result
        print(f"fleetsim: invariant violated: {exc}", file=sys.stderr)
        return 3
    except BackendFailure as exc:      # e.g. a Ray actor lost beyond its rebuilds: no result
        print(f"fleetsim: backend failed: {exc}", file=sys.stderr)
        return 4
    except OSError as exc:             # unwritable --out, disk full, ...: the file and the reason
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"fleetsim: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fleetsim: interrupted", file=sys.stderr)
        return 130
