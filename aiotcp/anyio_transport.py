"""A connection as an anyio byte stream: the portable transport (asyncio, trio).

On asyncio :mod:`aiotcp.asyncio_transport` is used instead (the fast path); errors are mapped by the same
functions (:mod:`aiotcp.error_mapping`), so kinds are the same on every backend.
"""

from __future__ import annotations

import contextlib
import socket
import ssl

import anyio
import anyio.abc
from anyio.streams.tls import TLSAttribute, TLSStream

from .budget import Budget
from .error_mapping import map_stream_error
from .streams import READ_SIZE, ConnectInfo, InputWatch, NetworkStream
from .tlsfacts import TLSInfo, tls_info

__all__ = ["AnyioStream"]


class AnyioStream(NetworkStream):
    """A connection as an anyio byte stream: works on every backend anyio supports (asyncio, trio)."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self._stream = stream
        self.target = "?"
        self.info = ConnectInfo(peer=("", 0), dns_ms=0.0, connect_ms=0.0)
        self._closed = False
        self._socket: socket.socket | None = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
        self._watch: InputWatch | None = None
        self._unix_path: str | None = None

    @classmethod
    async def open(cls, address: str, port: int, *, local_address: str | None = None) -> AnyioStream:
        stream = await anyio.connect_tcp(address, port, local_host=local_address)
        # Requests are written whole; Nagle would only hold back the last segment.
        stream.extra(anyio.abc.SocketAttribute.raw_socket).setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(stream)

    @classmethod
    async def open_unix(cls, path: str) -> AnyioStream:
        stream = cls(await anyio.connect_unix(path))
        stream._unix_path = path
        return stream

    def peer(self) -> tuple[str, int]:
        if self._unix_path is not None:
            return (self._unix_path, 0)
        peer = self._stream.extra(anyio.abc.SocketAttribute.remote_address)
        return (str(peer[0]), int(peer[1]))

    async def start_tls(self, context: ssl.SSLContext, hostname: str) -> TLSInfo:
        self._stream = await TLSStream.wrap(
            self._stream,
            hostname=hostname,
            ssl_context=context,
            standard_compatible=False,  # HTTP/1.1 frames its own end; many servers skip close_notify
        )
        return tls_info(self._stream.extra(TLSAttribute.ssl_object))

    @property
    def is_closed(self) -> bool:
        return self._closed

    async def send(self, data: bytes, budget: Budget) -> None:
        with anyio.move_on_after(budget.limit("write")) as scope:
            try:
                await self._stream.send(data)
            except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError, ssl.SSLError) as exc:
                raise map_stream_error(exc, self.target, phase="write") from exc
        if scope.cancelled_caught:
            raise budget.expired("write", self.target)

    async def receive(self, budget: Budget, max_bytes: int = READ_SIZE) -> bytes:
        with anyio.move_on_after(budget.limit("read")) as scope:
            try:
                return await self._stream.receive(max_bytes)
            except anyio.EndOfStream:
                return b""
            except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError, ssl.SSLError) as exc:
                raise map_stream_error(exc, self.target, phase="read") from exc
        assert scope.cancelled_caught
        raise budget.expired("read", self.target)

    async def send_eof(self) -> bool:
        """Half-close (FIN); False on TLS, which cannot."""
        if isinstance(self._stream, TLSStream):
            return False
        try:
            await self._stream.send_eof()
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            raise map_stream_error(exc, self.target, phase="write") from exc
        return True

    def has_pending_input(self) -> bool:
        if self._closed:
            return True
        if isinstance(self._stream, TLSStream) and self._stream.extra(TLSAttribute.ssl_object).pending():
            return True
        if _buffered_by_anyio(self._stream):
            return True
        if self._socket is None:
            return False
        if self._watch is None:
            self._watch = InputWatch(self._socket)
        return self._watch.has_input()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(0.5) as scope:
                with contextlib.suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    await self._stream.aclose()
            if scope.cancelled_caught:
                await anyio.aclose_forcefully(self._stream)


def _buffered_by_anyio(stream: anyio.abc.ByteStream) -> bool:
    """Whether anyio's asyncio backend holds received bytes, EOF or an error that we have not read yet.

    On asyncio, anyio reads the socket into a queue whenever a receive is pending; a chunk that arrived just
    after the end of a response can sit there, invisible to a peek at the socket. anyio has no public way
    to ask, so look at its stream protocol (and treat "cannot tell" as "nothing buffered": the socket peek
    still runs). On trio, anyio keeps no queue and the socket peek is exact.
    """
    inner: object = stream.transport_stream if isinstance(stream, TLSStream) else stream
    protocol = getattr(inner, "_protocol", None)
    read_event = getattr(protocol, "read_event", None)
    return bool(read_event is not None and read_event.is_set())
