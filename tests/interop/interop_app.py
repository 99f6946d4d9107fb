"""The application the interop suite serves from Python servers, one process per server: the same routes as
the static site it gives nginx, Apache and lighttpd (:mod:`interop_servers`), as ASGI (uvicorn), WSGI
(waitress, gunicorn) and aiohttp.web.

    python interop_app.py uvicorn-h11 PORT        # or uvicorn-httptools, waitress, waitress-limited,
                                                  # gunicorn, aiohttp

Routes::

    GET  /            a short text
    GET  /bench       a short text, counted: the server's own count of the requests it answered there
    GET  /count       that count
    GET  /bytes       BIG_SIZE bytes of big_body() (the test compares their SHA-256)
    GET  /chunked     chunked_body(), in CHUNKS pieces without a Content-Length (the server chunks them)
    GET  /gzip        gzip of gzip_text(), Content-Encoding: gzip (passed through by the client)
    GET  /redirect    302 to /
    POST /post        the SHA-256 and the length of the request body
    GET  /file        a file through the server's file API (wsgi.file_wrapper, aiohttp's StreamResponse):
                      the servers that send a body after a HEAD reply do it on this route
    anything else     404

Every server here is bound to 127.0.0.1 and the port given; its keep-alive idle timeout is short so that the
suite sees servers close idle connections. Server logs (errors only) go to stderr, which the fixture keeps.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import random
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

BIG_SIZE = 4 * 1024 * 1024
CHUNKS = 64
#: Each server's keep-alive idle timeout, as short as it takes (waitress and gunicorn count whole seconds, and
#: waitress looks for idle connections once a second).
IDLE_TIMEOUT_S = {"uvicorn-h11": 0.2, "uvicorn-httptools": 0.2, "aiohttp": 0.2, "gunicorn": 1, "waitress": 2}
CONNECTION_LIMIT = 10  # waitress-limited and gunicorn serve at most this many connections at a time


def big_body() -> bytes:
    """BIG_SIZE bytes, the same in every process (a seeded generator)."""
    return random.Random(17).randbytes(BIG_SIZE)


def chunked_body() -> list[bytes]:
    return [b"chunk %03d " % n + b"." * 1000 + b"\n" for n in range(CHUNKS)]


def gzip_text() -> bytes:
    return b"".join(b"line %05d of a compressible text\n" % n for n in range(4000))


_GZIPPED = gzip.compress(gzip_text(), mtime=0)
_BIG = big_body()


class _Counter:
    def __init__(self) -> None:
        self.value = 0
        self._lock = threading.Lock()  # waitress and gunicorn answer from several threads

    def add(self) -> None:
        with self._lock:
            self.value += 1


_BENCH = _Counter()


def _route(method: str, path: str, body: bytes) -> tuple[int, list[tuple[str, str]], bytes | list[bytes]]:
    """(status, headers, body) for a request; a list body is sent in pieces without a Content-Length."""
    text = [("Content-Type", "text/plain")]
    if path == "/" and method in ("GET", "HEAD"):
        return 200, text, b"hello from a Python server\n"
    if path == "/bench":
        _BENCH.add()
        return 200, text, b"ok\n"
    if path == "/count":
        return 200, text, b"%d\n" % _BENCH.value
    if path == "/bytes":
        return 200, [("Content-Type", "application/octet-stream")], _BIG
    if path == "/chunked":
        return 200, text, chunked_body()
    if path == "/gzip":
        return 200, [*text, ("Content-Encoding", "gzip")], _GZIPPED
    if path == "/redirect":
        return 302, [*text, ("Location", "/")], b"moved\n"
    if path == "/post" and method == "POST":
        return 200, text, b"%s %d\n" % (hashlib.sha256(body).hexdigest().encode(), len(body))
    return 404, text, b"not found\n"


# -- ASGI (uvicorn) ------------------------------------------------------------------------------------------


async def asgi_app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    path = scope["path"]
    content: bytes | list[bytes]
    if path == "/file":
        status, headers, content = 200, [("Content-Type", "text/plain")], b"file contents\n"
    else:
        status, headers, content = _route(scope["method"], path, body)
    raw = [(name.lower().encode(), value.encode()) for name, value in headers]
    if isinstance(content, list):
        await send({"type": "http.response.start", "status": status, "headers": raw})
        for piece in content:
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    raw.append((b"content-length", b"%d" % len(content)))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": content})


# -- WSGI (waitress, gunicorn) -------------------------------------------------------------------------------

_REASONS = {200: "200 OK", 302: "302 Found", 404: "404 Not Found"}


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    path = environ["PATH_INFO"]
    if path == "/file":
        data = b"file contents\n"
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
        wrapper = environ.get("wsgi.file_wrapper")
        return wrapper(io.BytesIO(data)) if wrapper is not None else [data]
    status, headers, content = _route(environ["REQUEST_METHOD"], path, body)
    if isinstance(content, list):
        start_response(_REASONS[status], headers)
        return _pieces(content)
    start_response(_REASONS[status], [*headers, ("Content-Length", str(len(content)))])
    return [content]


def _pieces(content: list[bytes]) -> Iterator[bytes]:
    yield from content  # a generator: the server cannot know the length, so it chunks


# -- aiohttp.web ---------------------------------------------------------------------------------------------


def aiohttp_app() -> Any:
    from aiohttp import web

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if request.path == "/file":
            response = web.StreamResponse(headers={"Content-Type": "text/plain", "Content-Length": "14"})
            await response.prepare(request)
            await response.write(b"file contents\n")
            await response.write_eof()
            return response
        status, headers, content = _route(request.method, request.path, body)
        if isinstance(content, list):
            response = web.StreamResponse(status=status, headers=headers)
            response.enable_chunked_encoding()
            await response.prepare(request)
            for piece in content:
                await response.write(piece)
            await response.write_eof()
            return response
        return web.Response(status=status, headers=headers, body=content)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


# -- starting one ------------------------------------------------------------------------------------------


def main(kind: str, port: int) -> None:
    host = "127.0.0.1"
    if kind.startswith("uvicorn-"):
        import uvicorn

        uvicorn.run(
            asgi_app,
            host=host,
            port=port,
            http=kind.removeprefix("uvicorn-"),
            # A float works (uvicorn hands it to call_later), though its annotation says int.
            timeout_keep_alive=IDLE_TIMEOUT_S[kind],  # type: ignore[arg-type]
            log_level="warning",
            access_log=False,
        )
    elif kind.startswith("waitress"):
        import waitress

        if kind == "waitress-limited":
            # The case: a connection limit (waitress counts its own sockets in it) and the default idle
            # timeout of 120 s, so only the client can free the slots its idle connections hold.
            options: dict[str, Any] = {"connection_limit": CONNECTION_LIMIT}
        else:
            options = {"channel_timeout": 1, "cleanup_interval": 1}
        waitress.serve(wsgi_app, host=host, port=port, threads=4, _quiet=True, **options)
    elif kind == "gunicorn":
        from gunicorn.app.base import BaseApplication

        class _App(BaseApplication):  # type: ignore[misc]
            def load_config(self) -> None:
                settings = {
                    "bind": f"{host}:{port}",
                    "workers": 1,
                    "worker_class": "gthread",
                    "threads": 4,
                    "worker_connections": CONNECTION_LIMIT,
                    "keepalive": IDLE_TIMEOUT_S[kind],
                    "loglevel": "warning",
                }
                for name, value in settings.items():
                    self.cfg.set(name, value)

            def load(self) -> Any:
                return wsgi_app

        _App().run()
    elif kind == "aiohttp":
        from aiohttp import web

        web.run_app(
            aiohttp_app(), host=host, port=port, keepalive_timeout=IDLE_TIMEOUT_S[kind], print=None, access_log=None
        )
    else:
        raise SystemExit(f"unknown server kind {kind!r}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
