"""The stream interface every transport implements: an established connection whose ``send`` and ``receive``
are bounded by a request's :class:`~aiotcp.budget.Budget` and raise only :class:`~aiotcp.errors.AiotcpError`.

Implementations: :class:`~aiotcp.anyio_transport.AnyioStream` (every backend anyio runs on) and
:class:`~aiotcp.asyncio_transport.AsyncioStream` (the asyncio fast path); :func:`aiotcp.transport.connect`
picks one. Tests implement it in memory to drive the connection and the pool without sockets.
"""

from __future__ import annotations

import abc
import errno
import select
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .resolution import Resolution
from .tlsfacts import TLSInfo

if TYPE_CHECKING:
    import ssl

    from .budget import Budget

__all__ = ["READ_SIZE", "ConnectInfo", "InputWatch", "NetworkStream"]

#: Bytes asked for per read.
READ_SIZE = 65536


@dataclass(slots=True)
class ConnectInfo:
    """What connecting took and where it landed. ``resolution``: the DNS facts of the name (None when the
    target was an IP address or the address was given). Through a proxy, ``peer`` is the proxy's address,
    ``dns_ms``/``connect_ms`` are the hop to the proxy, ``proxy_connect_ms`` the tunnel's handshake (CONNECT or
    SOCKS, until the proxy says the target is reached) and ``proxy`` the proxy's URL. On a Unix socket
    ``peer`` is ``(path, 0)``."""

    peer: tuple[str, int]
    dns_ms: float
    connect_ms: float
    tls_ms: float | None = None
    tls_version: str | None = None
    resolution: Resolution | None = None
    proxy_connect_ms: float | None = None
    proxy: str | None = None
    #: For https: what the handshake showed (version, cipher, ALPN, the peer's certificates as sent).
    tls: TLSInfo | None = None


class NetworkStream(abc.ABC):
    """An established connection. ``send``/``receive`` are bounded by a budget and raise only aiotcp errors.

    Two implementations: :class:`~aiotcp.anyio_transport.AnyioStream` (any backend anyio runs on) and, on asyncio,
    :class:`~aiotcp.asyncio_transport.AsyncioStream` (the fast path). :func:`connect` picks one.
    """

    target: str
    info: ConnectInfo

    def __repr__(self) -> str:
        state = "closed" if self.is_closed else "open"
        peer = f"{self.info.peer[0]}:{self.info.peer[1]}" if self.info.peer else "?"
        return f"<{type(self).__name__} {self.target} peer={peer} {state}>"

    @property
    @abc.abstractmethod
    def is_closed(self) -> bool:
        """Whether :meth:`aclose` was called."""

    @abc.abstractmethod
    async def send(self, data: bytes, budget: Budget) -> None:
        """Write all of ``data``. Raises ``write_timeout``/``timeout``, ``reset`` or ``local``."""

    @abc.abstractmethod
    async def receive(self, budget: Budget, max_bytes: int = READ_SIZE) -> bytes:
        """The next chunk, or ``b""`` once the peer has closed (FIN). Raises like :meth:`send`."""

    @abc.abstractmethod
    async def send_eof(self) -> bool:
        """Half-close: send FIN once what was written has gone, keep reading (``nc -N``, ``shutdown(SHUT_WR)``).

        Returns False, and does nothing, where the stream cannot half-close (TLS has no half-close: its
        close_notify ends both directions). Raises like :meth:`send`.
        """

    @abc.abstractmethod
    def has_pending_input(self) -> bool:
        """Whether an idle connection has something to read: EOF, RST or stray bytes. Never blocks.

        A pooled connection in that state is not safe to reuse: the peer closed it, or the bytes would be
        taken for the next response.
        """

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Close, never raising and never waiting long. Safe to call twice."""

    # -- used by connect() ----------------------------------------------------------------------------------

    @classmethod
    @abc.abstractmethod
    async def open(cls, address: str, port: int, *, local_address: str | None = None) -> NetworkStream:
        """Connect to an IP address (from ``local_address``, when given). Raises ``OSError`` as the OS reports
        it; :func:`connect` maps it."""

    @classmethod
    async def open_unix(cls, path: str) -> NetworkStream:
        """Connect to a Unix domain socket. Raises ``OSError`` as the OS reports it (``EAFNOSUPPORT`` where the
        stream has no Unix sockets)."""
        raise OSError(errno.EAFNOSUPPORT, f"{cls.__name__} cannot connect to a Unix socket")

    @abc.abstractmethod
    def peer(self) -> tuple[str, int]: ...

    @abc.abstractmethod
    async def start_tls(self, context: ssl.SSLContext, hostname: str) -> TLSInfo:
        """Handshake on this connection; return what it showed. Raises ``ssl.SSLError``/``OSError``."""


class InputWatch:
    """Answers "has the kernel something for us to read on this socket?" without blocking.

    That sees what arrived while the event loop was busy and has not read yet (bytes, FIN, RST). It uses
    poll(), not select(): select() cannot watch descriptors above FD_SETSIZE (1024), which a busy prober
    passes quickly; the poll object is made once per connection, so a check is one system call.
    """

    __slots__ = ("_poller",)

    def __init__(self, sock: Any) -> None:
        self._poller: select.poll | None = None
        try:
            fd = sock.fileno()
        except OSError:
            return
        if fd >= 0:
            self._poller = select.poll()
            self._poller.register(fd, select.POLLIN | select.POLLPRI)

    def has_input(self) -> bool:
        if self._poller is None:
            return True  # no descriptor: closed
        try:
            return bool(self._poller.poll(0))  # POLLHUP and POLLERR are always reported too
        except OSError:
            return True
