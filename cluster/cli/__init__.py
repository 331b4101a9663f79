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
import os
import sys

from fleetsim.cluster.errors import BackendFailure, InputError
from fleetsim.cluster.invariants import InvariantViolation
from fleetsim.costmodel import CostModelError

SUBCOMMANDS = ("run", "rerun", "validate", "sweep", "capacity", "compare", "report", "workload")


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one stderr line, as every other bad input's
    (`fleetsim: error: argument --instances: invalid int value: 'x' (fleetsim run --help)`),
    exit code 2; the subcommands' parsers are of this class too."""

    def error(self, message: str):
        self.exit(2, f"fleetsim: error: {message} (see {self.prog} --help)\n")


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="fleetsim", description="Simulate LLM serving fleets in simulated time.")
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
    except (InputError, CostModelError) as exc:     # one line, even when it quotes a key with a line break
        print(f"fleetsim: error: {' '.join(str(exc).splitlines())}", file=sys.stderr)
        return 2
    except InvariantViolation as exc:  # the run broke its own invariants: no result
        print(f"fleetsim: invariant violated: {exc}", file=sys.stderr)
        return 3
    except BrokenPipeError:            # `fleetsim validate --json | head`: the reader left; end quietly
        quiet_stdout()
        return 141                     # as a command ended by SIGPIPE (128 + 13)
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


def quiet_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's final flush of what is still
    buffered for a closed pipe raises nothing (the recipe of Python's `signal` docs)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
