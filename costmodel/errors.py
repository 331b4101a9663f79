"""The one error type of bad user input in the cost model (the CLI maps it to exit code 2)."""


class CostModelError(ValueError):
    """A config, table or argument is missing or malformed; the message names file and field."""
