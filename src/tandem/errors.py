"""The one error type a user can act on: the CLI prints its message on one line and exits with 2."""


class InputError(ValueError):
    """Bad input: a config field, a file or a command-line value. The message names it and says what was expected.

    A ValueError, so code that catches bad values (pydantic validators, callers of the Python API written before
    this type existed) still catches it; the CLI tells it apart by type."""
