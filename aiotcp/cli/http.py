"""``aiotcp head`` and ``aiotcp get``: one request, printed as curl prints it."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

import anyio

from ..client import Client
from ..response import Response
from ..text import escape_control
from .common import (
    EXIT_OK,
    EXIT_USAGE,
    add_header_option,
    add_resolver_option,
    positive_float,
    resolver_options,
    timeouts_from,
)

__all__ = ["register"]


def register(commands: Any) -> None:
    """Add ``head`` and ``get`` to the ``aiotcp`` subcommands."""
    head = commands.add_parser("head", help="HEAD a target; print the status line and headers")
    head.add_argument("target", help="host, host:port or URL")
    head.add_argument("-v", "--verbose", action="store_true", help="also print timings (stderr)")
    add_request_options(head)
    head.set_defaults(handler=cmd_head)

    get = commands.add_parser("get", help="GET a URL; body to stdout")
    get.add_argument("target", help="host, host:port or URL")
    get.add_argument("-i", "--include", action="store_true", help="print the status line and headers first")
    get.add_argument("-o", "--output", metavar="FILE", help="write the body to FILE")
    get.add_argument("-f", "--fail", action="store_true", help="exit 22 on HTTP status >= 400, like curl -f")
    get.add_argument("-v", "--verbose", action="store_true", help="also print timings (stderr)")
    add_request_options(get)
    get.set_defaults(handler=cmd_get)


def add_request_options(parser: argparse.ArgumentParser) -> None:
    """Flags shared by every command that sends HTTP requests."""
    parser.add_argument("-t", "--timeout", type=positive_float, default=10.0, help="total deadline, seconds (10)")
    parser.add_argument("--connect-timeout", type=positive_float, help="TCP+TLS connect timeout (default: --timeout)")
    add_header_option(parser)
    parser.add_argument("-k", "--insecure", action="store_true", help="do not verify TLS certificates")
    parser.add_argument("-L", "--follow-redirects", action="store_true", help="follow 3xx redirects")
    add_resolver_option(parser)


def _status_line(response: Response) -> str:
    return f"HTTP/{response.http_version} {response.status_code} {escape_control(response.reason)}".rstrip()


def _print_head(response: Response, out: TextIO) -> None:
    print(_status_line(response), file=out)
    for name, value in response.headers.multi_items():
        print(f"{escape_control(name)}: {escape_control(value)}", file=out)


def _print_timings(response: Response, out: TextIO) -> None:
    t = response.timings
    peer = f"{response.peer[0]}:{response.peer[1]}" if response.peer else "?"

    def show(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    print(
        f"* peer {peer}  dns_ms {show(t.dns_ms)}  connect_ms {show(t.connect_ms)}  tls_ms {show(t.tls_ms)}"
        f"  ttfb_ms {show(t.ttfb_ms)}  total_ms {show(t.total_ms)}" + ("  (reused)" if t.reused else ""),
        file=out,
    )


async def _fetch(args: argparse.Namespace, method: str) -> Response:
    async with Client(
        timeout=timeouts_from(args),
        verify=not args.insecure,
        follow_redirects=args.follow_redirects,
        headers=args.headers,
        **resolver_options(args),
    ) as client:
        return await client.request(method, args.target)


def cmd_head(args: argparse.Namespace) -> int:
    response = anyio.run(_fetch, args, "HEAD")
    _print_head(response, sys.stdout)
    if args.verbose:
        _print_timings(response, sys.stderr)
    return EXIT_OK


def cmd_get(args: argparse.Namespace) -> int:
    response = anyio.run(_fetch, args, "GET")
    if args.include:
        _print_head(response, sys.stdout)
        print(file=sys.stdout)
    sys.stdout.flush()
    if args.output:
        try:
            with open(args.output, "wb") as file:
                file.write(response.content)
        except OSError as exc:
            # A flag the user must fix, like a port `serve` cannot bind: usage, not a failed exchange.
            reason = exc.strerror or str(exc)
            print(f"error: output: cannot write {escape_control(args.output)}: {reason}", file=sys.stderr)
            return EXIT_USAGE
    elif sys.stdout.isatty() and b"\x00" in response.content[:4096]:
        print("warning: binary output not shown on a terminal; use -o FILE", file=sys.stderr)
    else:
        sys.stdout.buffer.write(response.content)
        sys.stdout.buffer.flush()
    if args.verbose:
        _print_timings(response, sys.stderr)
    return EXIT_OK if response.status_code < 400 or not args.fail else 22
