"""What every ``aiotcp`` subcommand shares: the exit codes, the argument parser, flag types, error printing.

Exit codes: 0 success, 1 the exchange failed (``error: KIND: message`` on stderr), 2 usage error (bad flags, a
malformed target, an unreadable input), 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, NoReturn, TextIO

from ..config import Timeouts
from ..errors import AiotcpError, InvalidInput
from ..resolution import Nameserver, parse_nameservers
from ..text import escape_control

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "ArgumentParser",
    "add_header_option",
    "add_resolver_option",
    "parse_header",
    "positive_float",
    "positive_int",
    "parse_resolvers",
    "report_error",
    "resolver_options",
    "timeouts_from",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with usage errors printed as ``error: usage: ...`` and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"error: usage: {message}\n")


def report_error(exc: AiotcpError, stream: TextIO | None = None) -> int:
    """Print ``error: KIND: message`` and return the exit code for it (2 for bad input, else 1)."""
    print(f"error: {exc.kind}: {escape_control(str(exc))}", file=stream or sys.stderr)
    return EXIT_USAGE if isinstance(exc, InvalidInput) else EXIT_FAILED


def parse_header(text: str) -> tuple[str, str]:
    """``-H 'Name: value'`` as curl takes it."""
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"header must look like 'Name: value', got {text!r}")
    return name.strip(), value.strip()


def add_header_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``-H/--header 'Name: value'``, repeatable, into ``args.headers``."""
    parser.add_argument(
        "-H", "--header", dest="headers", action="append", type=parse_header, default=[], metavar="'NAME: VALUE'"
    )


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


def timeouts_from(args: argparse.Namespace) -> Timeouts:
    """``-t/--timeout`` (one deadline for everything) and ``--connect-timeout`` as :class:`Timeouts`."""
    return Timeouts.one_deadline(args.timeout, args.connect_timeout)


def parse_resolvers(text: str) -> tuple[Nameserver, ...] | str:
    """``--resolvers``: ``IP[:PORT],...``, a file of them (one per line, ``#`` comments), or ``system``."""
    if text == "system":
        return text
    entries: list[str] = [text]
    if "," not in text and os.path.isfile(text):
        try:
            with open(text, encoding="utf-8", errors="replace") as file:
                lines = [line.partition("#")[0].strip() for line in file]
        except OSError as exc:
            raise argparse.ArgumentTypeError(f"cannot read {text!r}: {exc.strerror or exc}") from None
        entries = [line for line in lines if line]
        if not entries:
            raise argparse.ArgumentTypeError(f"{text!r} lists no resolver")
    try:
        return parse_nameservers(",".join(entries))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_resolver_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--resolvers IP[:PORT],...|FILE|system`` into ``args.resolvers`` (see :func:`resolver_options`)."""
    parser.add_argument(
        "--resolvers",
        type=parse_resolvers,
        metavar="IP[:PORT],...|FILE|system",
        help="DNS resolvers to query (default: /etc/resolv.conf's, with /etc/hosts first); "
        "'system' uses getaddrinfo instead",
    )


def resolver_options(args: argparse.Namespace) -> dict[str, Any]:
    """``Client`` / ``ProbeOptions`` keywords for ``--resolvers``: ``resolvers=...``, ``resolver="system"`` or
    nothing (the default resolver)."""
    chosen = getattr(args, "resolvers", None)
    if chosen is None:
        return {}
    if chosen == "system":
        return {"resolver": "system"}
    return {"resolvers": chosen}
