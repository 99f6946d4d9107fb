"""The ``aiotcp`` command: ``head``, ``get``, ``tcp``, ``serve``, ``demo`` (and ``probe``, ``bench``).

Exit codes, as curl users expect them to mean something: 0 success, 1 the exchange failed (the error's
``kind`` is printed as ``error: KIND: message`` on stderr), 2 usage error (bad flags or a malformed target),
130 interrupted.
"""

from __future__ import annotations

import argparse
import codecs
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TextIO

import anyio

from ._version import __version__
from .client import Client
from .config import Timeouts
from .errors import AiotcpError, InvalidTarget
from .models import Response
from .text import escape_control
from .transport import tcp_exchange

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

Handler = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"error: usage: {message}\n")


def report_error(exc: AiotcpError, stream: TextIO | None = None) -> int:
    """Print ``error: KIND: message`` and return the exit code for it."""
    print(f"error: {exc.kind}: {escape_control(str(exc))}", file=stream or sys.stderr)
    return EXIT_USAGE if isinstance(exc, InvalidTarget) else EXIT_FAILED


def parse_header(text: str) -> tuple[str, str]:
    """``-H 'Name: value'`` as curl takes it."""
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"header must look like 'Name: value', got {text!r}")
    return name.strip(), value.strip()


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


def add_request_options(parser: argparse.ArgumentParser) -> None:
    """Flags shared by every command that sends HTTP requests."""
    parser.add_argument("-t", "--timeout", type=positive_float, default=10.0, help="total deadline, seconds (10)")
    parser.add_argument("--connect-timeout", type=positive_float, help="TCP+TLS connect timeout (default: --timeout)")
    parser.add_argument(
        "-H", "--header", dest="headers", action="append", type=parse_header, default=[], metavar="'NAME: VALUE'"
    )
    parser.add_argument("-k", "--insecure", action="store_true", help="do not verify TLS certificates")
    parser.add_argument("-L", "--follow-redirects", action="store_true", help="follow 3xx redirects")


def timeouts_from(args: argparse.Namespace) -> Timeouts:
    total = args.timeout
    connect = args.connect_timeout or total
    return Timeouts(connect=min(connect, total), read=total, write=total, pool=total, total=total)


# -- head / get --------------------------------------------------------------------------------------------


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


# -- tcp ---------------------------------------------------------------------------------------------------


def unescape(text: str) -> bytes:
    r"""``'HEAD / HTTP/1.0\r\n\r\n'`` as typed on a shell line, to the bytes it means."""
    try:
        return codecs.escape_decode(text.encode("utf-8"))[0]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"bad escape in {text!r}: {exc}") from None


def cmd_tcp(args: argparse.Namespace) -> int:
    result = anyio.run(
        lambda: tcp_exchange(
            args.target,
            args.send,
            max_bytes=args.max_bytes,
            timeout=args.timeout,
            connect_timeout=args.connect_timeout,
            tls=True if args.tls else None,
            verify=not args.insecure,
        )
    )
    sys.stdout.buffer.write(result.data)
    sys.stdout.buffer.flush()
    print(
        f"* {result.ended} after {len(result.data)} bytes from {result.peer[0]}:{result.peer[1]}"
        f" (sent {result.sent}, connect {result.connect_ms:.3f} ms, total {result.total_ms:.3f} ms)",
        file=sys.stderr,
    )
    return EXIT_OK


# -- serve / demo ------------------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve import serve_forever

    def ready(server: Any) -> None:
        print(f"aiotcp serve: listening on {server.url} (Ctrl-C to stop)", file=sys.stderr, flush=True)

    try:
        anyio.run(
            lambda: serve_forever(args.host, args.port, on_ready=ready, allow_public=args.public),
            backend_options={"use_uvloop": have_uvloop()},
        )
    except (OSError, ValueError) as exc:
        print(f"error: serve: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def have_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(quick=args.quick)


# -- wiring ------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="aiotcp",
        description="HTTP/1.1 over TCP: one-off requests, raw exchanges, bulk probing and load generation.",
    )
    parser.add_argument("-V", "--version", action="version", version=f"aiotcp {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

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

    tcp = commands.add_parser("tcp", help="raw exchange: send bytes, read until the peer closes")
    tcp.add_argument("target", help="host:port (or URL; https:// implies --tls)")
    tcp.add_argument("--send", type=unescape, default=b"", metavar="BYTES", help=r"payload, escapes like \r\n")
    tcp.add_argument("--max-bytes", type=positive_int, default=1024 * 1024, help="stop after this many bytes")
    tcp.add_argument("-t", "--timeout", type=positive_float, default=10.0, help="deadline, seconds (10)")
    tcp.add_argument("--connect-timeout", type=positive_float)
    tcp.add_argument("--tls", action="store_true", help="TLS handshake first")
    tcp.add_argument("-k", "--insecure", action="store_true", help="do not verify TLS certificates")
    tcp.set_defaults(handler=cmd_tcp)

    serve = commands.add_parser("serve", help="run the built-in target server")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port (8080; 0 picks a free one)")
    serve.add_argument("--public", action="store_true", help="allow binding a non-loopback address")
    serve.set_defaults(handler=cmd_serve)

    demo = commands.add_parser("demo", help="offline tour against built-in loopback targets")
    demo.add_argument("--quick", action="store_true", help="skip the probe and bench parts")
    demo.set_defaults(handler=cmd_demo)

    # Imported here: these commands build on this module's helpers (parse_header, positive_float...).
    from . import probe_cli
    from .bench import cli as bench_cli

    probe_cli.register(commands)
    bench_cli.register(commands)
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
