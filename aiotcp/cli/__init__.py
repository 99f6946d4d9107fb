"""The ``aiotcp`` command: ``head``, ``get``, ``tcp``, ``serve``, ``demo``, ``probe`` and ``bench``.

One module per subcommand, each with a ``register(commands)``; :mod:`.common` holds what they share (exit
codes, the parser, flag types). This package is the top layer: nothing below it imports it.

Exit codes, as curl users expect them to mean something: 0 success, 1 the exchange failed (the error's
``kind`` is printed as ``error: KIND: message`` on stderr), 2 usage error (bad flags or a malformed target),
130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from .._version import __version__
from ..errors import AiotcpError
from . import bench, demo, http, probe, serve, tcp
from .common import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, ArgumentParser, report_error

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
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    handler: Handler = args.handler
    try:
        return handler(args)
    except AiotcpError as exc:
        return report_error(exc)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `aiotcp get URL | head -1`: the reader left; that is not our failure.
        sys.stderr.close()
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
