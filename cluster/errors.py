"""`InputError`: bad user input (file, field, what is allowed); the CLI prints it and exits 2.
`BackendFailure`: the backend could not finish the run (a Ray actor lost more often than it may
be rebuilt); the CLI prints it and exits 4. Also the two type checks the input readers share."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fractions import Fraction


class InputError(ValueError):
    pass


class BackendFailure(RuntimeError):
    pass


def is_int(value) -> bool:
    """An integer, not a bool (YAML/JSON `true` is not a count)."""
    return isinstance(value, int) and not isinstance(value, bool)


def exact_fraction(value) -> Fraction:
    """A number as the exact fraction of its shortest decimal text (2.5 -> 5/2, 0.1 -> 1/10)."""
    from fractions import Fraction      # deferred: only admission and autoscaling runs need it
    return Fraction(repr(float(value)))


def is_finite_number(value) -> bool:
    """A real number (not a bool), neither infinite nor NaN."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
