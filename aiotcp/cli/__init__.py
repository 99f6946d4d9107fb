"""The ``aiotcp`` command: ``head``, ``get``, ``tcp``, ``serve``, ``demo``, ``probe`` and ``bench``.

One module per subcommand, each with a ``register(commands)``; :mod:`.common` holds what they share (exit
codes, the parser, flag types, terminal output). This package is the top layer: nothing below it imports it.

Exit codes: ``get``, ``head`` and ``tcp`` use curl's numbers (:data:`.common.EXIT_CODES`); ``probe`` and
``bench`` 0 done, 1 failed, 2 usage, 3 a bench threshold breached, 130 interrupted. For every subcommand a
usage error -- a bad flag or value, a malformed target, an input file that cannot be read -- is one line,
``error: usage: ...`` (or ``error: invalid_target: ...``), and exit status 2; never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from .._version import __version__
from ..errors import AiotcpError
from ..text import escape_control
from . import bench, demo, http, probe, serve, tcp
from .common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, ArgumentParser, UsageError, report_error

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="aiotcp",
        description="HTTP/1.1 over TCP: one-off requests, raw exchanges, bulk probing and load generation.",
    )
    parser.add_argument("-V", "--version", action="version", version=f"aiotcp {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    for command in (http, tcp, serve, demo, probe, bench):
        command.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(arguments)
    if args.command is None:
        print(f"error: usage: name a command: {_commands(parser)} (see: aiotcp --help)", file=sys.stderr)
        return EXIT_USAGE
    args.argv = arguments  # for a command that tells how to run itself again (probe's --resume hint)
    handler: Handler = args.handler
    try:
        return handler(args)
    except UsageError as exc:
        print(f"error: usage: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except AiotcpError as exc:
        return report_error(exc)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `aiotcp get URL | head -1`: the reader left; that is not our failure. Point stdout at /dev/null so
        # the interpreter's own flush at exit does not fail on the closed pipe again.
        _silence_stdout()
        return EXIT_OK
    except Exception as exc:
        # A bug, not the user's mistake: one line, and the traceback only when asked for.
        if os.environ.get("AIOTCP_TRACEBACK"):
            raise
        message = escape_control(f"{type(exc).__name__}: {exc}")
        print(f"error: internal: {message} (a bug in aiotcp; AIOTCP_TRACEBACK=1 shows where)", file=sys.stderr)
        return EXIT_FAILED


def _commands(parser: argparse.ArgumentParser) -> str:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return ", ".join(action.choices)
    return ""  # pragma: no cover


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
