"""The command line's expected failure and its exit code."""

__all__ = ["CLIError", "EXIT_USAGE"]

#: Exit code of every expected failure (the same as argparse's usage errors).
EXIT_USAGE = 2


class CLIError(Exception):
    """An expected failure: reported as one line on stderr, exit code 2."""
