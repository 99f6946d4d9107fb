"""CPU cost of one request/response exchange in each sans-IO backend, no sockets involved.

    python benchmarks/bench_parsers.py

Encodes a GET, feeds a typical nginx response (9 headers, 615-byte body) whole, and drains the events, on
one protocol object cycled with ``start_next_cycle`` as a keep-alive connection would be. Prints µs per
exchange for ``h11`` and ``httptools``: the floor under what the client and the prober can do per request.
A "bare llhttp" row parses the same response with httptools and nothing else (headers and body collected, no
checks): the distance to it is what aiotcp's guards cost.
"""

from __future__ import annotations

import sys
import time

from aiotcp.http11 import Request, available_backends, make_protocol

RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Wed, 25 Nov 2026 14:00:00 GMT\r\n"
    b"Content-Type: text/html\r\nContent-Length: 615\r\nLast-Modified: Tue, 24 Nov 2026 10:00:00 GMT\r\n"
    b'Connection: keep-alive\r\nETag: "abc-267"\r\nAccept-Ranges: bytes\r\n\r\n' + b"x" * 615
)
REQUEST = Request(
    b"GET",
    b"/",
    [(b"Host", b"127.0.0.1:8080"), (b"User-Agent", b"aiotcp"), (b"Accept", b"*/*"), (b"Accept-Encoding", b"identity")],
)


def per_exchange(backend: str, exchanges: int) -> float:
    protocol = make_protocol(backend)
    started = time.perf_counter()
    for i in range(exchanges):
        if i:
            protocol.start_next_cycle()
        protocol.send_request(REQUEST)
        protocol.receive_data(RESPONSE)
        while protocol.next_event() is not None:
            pass
    return (time.perf_counter() - started) / exchanges * 1e6


def bare_llhttp(exchanges: int) -> float:
    import httptools

    class Collect:
        def __init__(self) -> None:
            self.headers: list[tuple[bytes, bytes]] = []
            self.body: list[bytes] = []

        def on_header(self, name: bytes, value: bytes) -> None:
            self.headers.append((name, value))

        def on_body(self, body: bytes) -> None:
            self.body.append(body)

    sink = Collect()
    parser = httptools.HttpResponseParser(sink)
    started = time.perf_counter()
    for _ in range(exchanges):
        sink.headers, sink.body = [], []
        parser.feed_data(RESPONSE)
        parser.get_status_code()
    return (time.perf_counter() - started) / exchanges * 1e6


def main() -> int:
    exchanges = 20_000
    for backend in sorted(available_backends()):
        best = min(per_exchange(backend, exchanges) for _ in range(3))
        print(f"{backend:<12} {best:6.1f} µs per exchange (best of 3 x {exchanges:,})")
    if "httptools" in available_backends():
        best = min(bare_llhttp(exchanges) for _ in range(3))
        print(f"{'bare llhttp':<12} {best:6.1f} µs per exchange (no checks; the floor under httptools)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
