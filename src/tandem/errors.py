"""The one error type a user can act on: the CLI prints its message on one line and exits with 2."""


class InputError(Exception):
    """Bad input: a config field, a file or a command-line value. The message names it and says what was expected."""
