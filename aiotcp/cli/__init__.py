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
import sys
from collections.abc import Sequence

from .._version import __version__
from . import bench, demo, http, probe, serve, tcp
from .common import EXIT_USAGE, ArgumentParser, run_handler

__all__ = ["build_parser", "main"]


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
    if arguments[:2] == ["bench", "compare"]:  # bench takes a URL where a subcommand would go
        return bench.compare_main(arguments[2:])
    parser = build_parser()
    args = parser.parse_args(arguments)
    if args.command is None:
        print(f"error: usage: name a command: {_commands(parser)} (see: aiotcp --help)", file=sys.stderr)
        return EXIT_USAGE
    args.argv = arguments  # for a command that tells how to run itself again (probe's --resume hint)
    return run_handler(args.handler, args)


def _commands(parser: argparse.ArgumentParser) -> str:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return ", ".join(action.choices)
    return ""  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
