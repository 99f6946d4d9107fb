"""``aiotcp tcp``: the seed program -- connect, send bytes, read until the peer closes."""

from __future__ import annotations

import argparse
import codecs
import sys
from typing import Any

import anyio

from ..transport import tcp_exchange
from .common import EXIT_OK, positive_float, positive_int

__all__ = ["register"]


def register(commands: Any) -> None:
    """Add ``tcp`` to the ``aiotcp`` subcommands."""
    tcp = commands.add_parser("tcp", help="raw exchange: send bytes, read until the peer closes")
    tcp.add_argument("target", help="host:port (or URL; https:// implies --tls)")
    tcp.add_argument("--send", type=unescape, default=b"", metavar="BYTES", help=r"payload, escapes like \r\n")
    tcp.add_argument("--max-bytes", type=positive_int, default=1024 * 1024, help="stop after this many bytes")
    tcp.add_argument("-t", "--timeout", type=positive_float, default=10.0, help="deadline, seconds (10)")
    tcp.add_argument("--connect-timeout", type=positive_float)
    tcp.add_argument("--tls", action="store_true", help="TLS handshake first")
    tcp.add_argument("-k", "--insecure", action="store_true", help="do not verify TLS certificates")
    tcp.set_defaults(handler=cmd_tcp)


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
