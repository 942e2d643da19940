"""The ``foxcem`` command line: ``foxcem demo``, ``foxcem explain``, ``foxcem explain-dataset``.

Each subcommand lives in its own module exposing ``register(subparsers) -> None``, which adds its
parser and sets ``func`` (called with the parsed namespace, returns the exit code). Expected
failures (a missing file, an unreadable image, a bad option, ...) print one line on stderr and exit
with code 2; ``foxcem --debug ...`` shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn, Optional

from foxcem.cli.errors import EXIT_USAGE, CLIError
from foxcem.io.files import InputFileError

__all__ = ["main", "CLIError", "ArgumentParser", "EXIT_USAGE"]

#: Subcommand -> module (under ``foxcem.cli``) that registers it.
SUBCOMMANDS = {
    "demo": "demo",
    "explain": "explain",
    "explain-dataset": "explain_dataset",
}
#: Subcommands whose module needs an optional extra: imported only when the subcommand is used.
_OPTIONAL = {"explain-dataset": ("lightning", "explain a whole dataset on Lightning's engine")}


class ArgumentParser(argparse.ArgumentParser):
    """An argparse parser whose usage errors are one line on stderr (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        """Print ``prog: error: message (see prog --help)`` and exit with code 2."""
        self.exit(
            EXIT_USAGE, f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)\n"
        )


def _one_line(text: object) -> str:
    """Collapse a message to one line (the first non-empty lines joined)."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return " ".join(lines) if len(lines) <= 3 else " ".join(lines[:3]) + " ..."


#: Options whose values are number lists, which may start with a minus sign.
_NUMBER_LISTS = ("--mean", "--std", "--target")
_NEGATIVE_LIST = re.compile(r"^-\d[\d.eE+-]*(,\s*-?[\d.eE+-]+)*$")


def _attach_negative_values(argv: Sequence[str]) -> list[str]:
    """``--mean -0.1,0,0`` as ``--mean=-0.1,0,0``: argparse takes a value starting with a minus
    sign for an option of its own."""
    out: list[str] = []
    tokens = list(argv)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token in _NUMBER_LISTS and i + 1 < len(tokens) and _NEGATIVE_LIST.match(tokens[i + 1]):
            out.append(f"{token}={tokens[i + 1]}")
            i += 2
            continue
        out.append(token)
        i += 1
    return out


def _first_command(argv: Sequence[str]) -> Optional[str]:
    for token in argv:
        if not token.startswith("-"):
            return token
    return None


def _register_unavailable(subparsers: Any, name: str, reason: str, help_text: str) -> None:
    """A placeholder parser: any use prints ``reason`` and exits 2."""
    parser = subparsers.add_parser(name, help=help_text, add_help=False)
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    def run(args: argparse.Namespace) -> int:
        raise CLIError(reason)

    parser.set_defaults(func=run)


def _register_optional(subparsers: Any, name: str, module: str, selected: Optional[str]) -> None:
    extra, help_text = _OPTIONAL[name]
    if selected != name:
        # Listed in --help without importing its (heavy, optional) dependencies.
        parser = subparsers.add_parser(name, help=f"{help_text} (needs foxcem[{extra}])")
        parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        return
    try:
        mod = importlib.import_module(f"foxcem.cli.{module}")
    except ModuleNotFoundError as exc:
        if exc.name == f"foxcem.cli.{module}":
            reason = f"`foxcem {name}` is not available in this installation"
        else:
            missing = (exc.name or "an optional dependency").split(".")[0]
            reason = (
                f"`foxcem {name}` needs {missing}, which is not installed: "
                f"pip install 'foxcem[{extra}]'"
            )
    except ImportError as exc:
        reason = (
            f"`foxcem {name}` cannot be loaded: {_one_line(exc)} (pip install 'foxcem[{extra}]')"
        )
    else:
        mod.register(subparsers)
        return
    _register_unavailable(subparsers, name, reason, help_text)


def build_parser(argv: Sequence[str] = ()) -> ArgumentParser:
    """The top-level parser with every subcommand registered."""
    from foxcem._version import __version__

    parser = ArgumentParser(
        prog="foxcem",
        description="PyTorch-native attribution: Captum gradient methods and a batched CEM.",
    )
    parser.add_argument("--version", action="version", version=f"foxcem {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of a failure")
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=ArgumentParser
    )
    selected = _first_command(argv)
    for name, module in SUBCOMMANDS.items():
        if name in _OPTIONAL:
            _register_optional(subparsers, name, module, selected)
        else:
            importlib.import_module(f"foxcem.cli.{module}").register(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the ``foxcem`` command line; returns the exit code.

    Args:
        argv: the arguments after the program name (default: ``sys.argv[1:]``).
    """
    argv = _attach_negative_values(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("FOXCEM_DEBUG", "") not in ("", "0")
    try:
        parser = build_parser(argv)
        try:
            args, extras = parser.parse_known_args(argv)
            if extras:  # reported by the subcommand's parser, so the message names it
                sub = _subparsers(parser).get(getattr(args, "command", None) or "", parser)
                sub.error(f"unrecognized arguments: {' '.join(extras)}")
        except SystemExit as exc:  # --help, --version, usage errors
            return int(exc.code) if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        func = getattr(args, "func", None)
        if func is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print("foxcem: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line, never a traceback (unless --debug)
        if debug:
            raise
        command = _first_command(argv)
        prog = f"foxcem {command}" if command in SUBCOMMANDS else "foxcem"
        message = _one_line(exc) if isinstance(exc, (CLIError, InputFileError)) else _describe(exc)
        print(f"{prog}: error: {message}", file=sys.stderr)
        return EXIT_USAGE


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _describe(exc: BaseException) -> str:
    text = _one_line(exc)
    if isinstance(exc, (ValueError, TypeError, FileNotFoundError)):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
