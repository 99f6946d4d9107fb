"""``aiotcp serve``: the built-in target server on the command line."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import anyio

from ..accelerators import have_uvloop
from .common import EXIT_OK, EXIT_USAGE, describe_os_error

__all__ = ["register"]


def register(commands: Any) -> None:
    """Add ``serve`` to the ``aiotcp`` subcommands."""
    serve = commands.add_parser("serve", help="run the built-in target server")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    serve.add_argument("--port", type=_port, default=8080, help="port (8080; 0 picks a free one)")
    serve.add_argument("--public", action="store_true", help="allow binding a non-loopback address")
    serve.set_defaults(handler=cmd_serve)


def _port(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 0-65535, got {text!r}")
    return int(text)


def cmd_serve(args: argparse.Namespace) -> int:
    from ..serve import NotLoopback, serve_forever  # (here: every other command starts faster without it)

    def ready(server: Any) -> None:
        print(f"aiotcp serve: listening on {server.url} (Ctrl-C to stop)", file=sys.stderr, flush=True)

    try:
        anyio.run(
            lambda: serve_forever(args.host, args.port, on_ready=ready, allow_public=args.public),
            backend_options={"use_uvloop": have_uvloop()},
        )
    except NotLoopback as exc:
        print(f"error: usage: --host: {exc}; add --public to serve on it (anyone who reaches it can use it)",
              file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    except OSError as exc:
        where = f"{args.host} port {args.port}"
        print(f"error: usage: cannot serve on {where}: {describe_os_error(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as exc:
        print(f"error: usage: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK
