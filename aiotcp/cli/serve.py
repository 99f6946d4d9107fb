"""``aiotcp serve``: the built-in target server on the command line."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import anyio

from ..accelerators import have_uvloop
from ..serve import serve_forever
from .common import EXIT_OK, EXIT_USAGE

__all__ = ["register"]


def register(commands: Any) -> None:
    """Add ``serve`` to the ``aiotcp`` subcommands."""
    serve = commands.add_parser("serve", help="run the built-in target server")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port (8080; 0 picks a free one)")
    serve.add_argument("--public", action="store_true", help="allow binding a non-loopback address")
    serve.set_defaults(handler=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
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
