"""``aiotcp tcp``: a raw exchange, as ``nc`` does it -- connect, send, print what comes back as it comes.

``aiotcp tcp HOST PORT`` (or ``HOST:PORT``, or a URL) sends ``--send BYTES`` or, without it, stdin until its
end; then it half-closes the connection (``nc -N``) and prints what arrives until the peer closes, ``-q``
seconds after the end of stdin, ``--max-bytes``, or the ``-t`` deadline. The library call is
:func:`aiotcp.transport.tcp_session`. Exit codes are curl's (:data:`.common.EXIT_CODES`).
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import os
import sys
import threading
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel

from ..errors import AiotcpError, InvalidInput
from ..targets import parse_spec
from ..text import escape_control
from ..transport import tcp_session
from .common import (
    EXIT_OK,
    EXIT_USAGE,
    exit_code_for,
    exit_codes_help,
    non_negative_float,
    positive_float,
    positive_int,
)

__all__ = ["register"]

_STDIN_CHUNK = 65536


def register(commands: Any) -> None:
    """Add ``tcp`` to the ``aiotcp`` subcommands."""
    tcp = commands.add_parser(
        "tcp",
        help="raw exchange like nc: send --send or stdin, print what comes back",
        description="Connect, send --send BYTES or stdin (then half-close, as nc -N), and print what the peer "
        "sends until it closes.",
        epilog=exit_codes_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tcp.add_argument("host", metavar="HOST", help="host, host:port, or a URL (https:// implies --tls)")
    tcp.add_argument("port", metavar="PORT", nargs="?", help="port, when HOST has none (nc's syntax)")
    tcp.add_argument("--send", type=unescape, metavar="BYTES", help=r"send this (escapes like \r\n) instead of stdin")
    tcp.add_argument("-q", dest="linger", type=non_negative_float, metavar="SECONDS", help="quit this long after EOF")
    tcp.add_argument("--max-bytes", type=positive_int, default=1024 * 1024, help="stop after this many bytes")
    tcp.add_argument("-t", "--timeout", type=positive_float, default=10.0, help="deadline, seconds (10)")
    tcp.add_argument("--connect-timeout", type=positive_float, metavar="SECONDS")
    tcp.add_argument("--tls", action="store_true", help="TLS handshake first")
    tcp.add_argument("-k", "--insecure", action="store_true", help="do not verify TLS certificates")
    tcp.set_defaults(handler=cmd_tcp)


def unescape(text: str) -> bytes:
    r"""``'HEAD / HTTP/1.0\r\n\r\n'`` as typed on a shell line, to the bytes it means."""
    try:
        return codecs.escape_decode(text.encode("utf-8"))[0]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"bad escape in {text!r}: {exc}") from None


def target_of(host: str, port: str | None) -> str:
    """``HOST PORT`` or ``HOST:PORT`` (or a URL) as one target. Raises InvalidInput when there is no port."""
    if port is not None:
        host = f"[{host}]" if ":" in host and not host.startswith("[") else host
        text = f"{host}:{port}"
    else:
        text = host
    spec = parse_spec(text)
    if spec.port is None and spec.scheme is None:
        raise InvalidInput(f"no port in {text!r}: give HOST PORT or HOST:PORT")
    return text


async def stdin_chunks() -> AsyncIterator[bytes]:
    """Stdin as it arrives, read in a daemon thread: a read blocked on a terminal cannot be cancelled, and a
    daemon thread does not keep the process alive when the peer has closed first."""
    send, receive = anyio.create_memory_object_stream[bytes](1)
    token = anyio.lowlevel.current_token()

    def pump() -> None:
        # Whatever stops it -- stdin at its end, closed or unreadable, the session over, the loop gone --
        # the input ends there.
        with contextlib.suppress(Exception):
            fd = sys.stdin.fileno()
            while chunk := os.read(fd, _STDIN_CHUNK):
                anyio.from_thread.run(send.send, chunk, token=token)
        with contextlib.suppress(Exception):
            anyio.from_thread.run_sync(send.close, token=token)

    threading.Thread(target=pump, name="aiotcp stdin", daemon=True).start()
    async with receive:
        async for chunk in receive:
            yield chunk


def _write(chunk: bytes) -> None:
    sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()


def cmd_tcp(args: argparse.Namespace) -> int:
    try:
        target = target_of(args.host, args.port)
    except InvalidInput as exc:
        print(f"error: usage: {escape_control(exc.message)}", file=sys.stderr)
        return EXIT_USAGE
    from_stdin = args.send is None
    try:
        result = anyio.run(
            lambda: tcp_session(
                target,
                stdin_chunks() if from_stdin else (args.send,) if args.send else (),
                _write,
                max_bytes=args.max_bytes,
                timeout=args.timeout,
                connect_timeout=args.connect_timeout,
                linger=args.linger,
                half_close=from_stdin,
                tls=True if args.tls else None,
                verify=not args.insecure,
            )
        )
    except AiotcpError as exc:
        print(f"error: {exc.kind}: {escape_control(str(exc))}", file=sys.stderr)
        return exit_code_for(exc)
    peer = "" if result.target.strip("[]").startswith(result.peer[0]) else f" ({result.peer[0]})"
    print(
        f"* {result.ended} after {result.received} bytes from {result.target}{peer}"
        f" (sent {result.sent}{', then FIN' if result.half_closed else ''}, connect {result.connect_ms:.3f} ms,"
        f" total {result.total_ms:.3f} ms)",
        file=sys.stderr,
    )
    return EXIT_OK
