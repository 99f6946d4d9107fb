"""Opening a tunnel through a proxy over a connection already made to it: HTTP ``CONNECT`` (h11), SOCKS5 and
SOCKS4/4a (socksio).

Both protocol engines are sans-IO (h11 and socksio turn requests into bytes and bytes into replies); this
module drives them over two callables, ``send(data)`` and ``receive() -> bytes`` (``b""`` at EOF), so the same
code runs on the client's streams (:func:`aiotcp.transport.connect`) and on the load generator's sockets,
whatever the event loop. No ``await`` but those two; no deadline either: the caller bounds the whole
handshake by its connect deadline (a silent proxy is the caller's timeout).

socksio parses a SOCKS reply only whole, so the replies are framed here (SOCKS5: 2 bytes for a method or
authentication reply; 4 + the address + 2 for a command reply; SOCKS4: 8 bytes) and read exactly, however the
proxy splits them.

Everything a proxy can do wrong raises :class:`~aiotcp.errors.ProxyError` (kind ``proxy``) naming the proxy:
a refusal (:class:`~aiotcp.errors.ProxyTunnelRefused` for an HTTP status, with ``status_code``), a SOCKS error
reply, bytes that are not the protocol's, a close before the answer, or bytes after it (nothing may come
before the first byte we send through the tunnel).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable

import h11
from socksio import ProtocolError as SOCKSProtocolError
from socksio import socks4, socks5

from .errors import ProxyError, ProxyTunnelRefused
from .proxy import Proxy
from .text import quote_bytes

__all__ = ["Receive", "Send", "open_tunnel", "tunnel_authority"]

Send = Callable[[bytes], Awaitable[None]]
Receive = Callable[[], Awaitable[bytes]]

# An HTTP proxy's answer to CONNECT is a head and maybe a short body; a longer head is not a proxy's.
_MAX_CONNECT_HEAD = 16 * 1024

_SOCKS5_REPLIES = {
    socks5.SOCKS5ReplyCode.GENERAL_SERVER_FAILURE: "general failure",
    socks5.SOCKS5ReplyCode.CONNECTION_NOT_ALLOWED_BY_RULESET: "connection not allowed by its rules",
    socks5.SOCKS5ReplyCode.NETWORK_UNREACHABLE: "network unreachable",
    socks5.SOCKS5ReplyCode.HOST_UNREACHABLE: "host unreachable",
    socks5.SOCKS5ReplyCode.CONNECTION_REFUSED: "connection refused",
    socks5.SOCKS5ReplyCode.TTL_EXPIRED: "TTL expired",
    socks5.SOCKS5ReplyCode.COMMAND_NOT_SUPPORTED: "command not supported",
    socks5.SOCKS5ReplyCode.ADDRESS_TYPE_NOT_SUPPORTED: "address type not supported",
}
_SOCKS4_REPLIES = {
    socks4.SOCKS4ReplyCode.REQUEST_REJECTED_OR_FAILED: "request rejected or failed",
    socks4.SOCKS4ReplyCode.CONNECTION_FAILED: "cannot reach our identd",
    socks4.SOCKS4ReplyCode.AUTHENTICATION_FAILED: "user id not accepted",
}


def tunnel_authority(host: str, port: int) -> str:
    """``host:port`` as CONNECT's request target and Host header put it (IPv6 in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def open_tunnel(proxy: Proxy, host: str, port: int, send: Send, receive: Receive) -> None:
    """Ask ``proxy`` (already connected: ``send``/``receive`` talk to it) for a tunnel to ``host``:``port``.

    ``host`` is a name only for proxies that resolve names (``http``, ``socks5h``, ``socks4a``); otherwise the
    caller resolved it (an IPv4 address for ``socks4``). Returns when the tunnel is up: what is sent next
    goes to the target.

    Raises:
        ProxyTunnelRefused: an HTTP proxy answered CONNECT with another status than 2xx.
        ProxyError: a SOCKS error reply, a malformed answer, a close before the answer or bytes after it.
        Whatever ``send``/``receive`` raise (a reset, a timeout): passed on as they are.
    """
    reader = _Reader(proxy, receive)
    if proxy.is_http:
        await _http_connect(proxy, host, port, send, reader)
    elif proxy.scheme in ("socks5", "socks5h"):
        await _socks5(proxy, host, port, send, reader)
    else:
        await _socks4(proxy, host, port, send, reader)
    if reader.buffer:
        raise reader.error(f"sent {len(reader.buffer)} bytes after its answer, before anything went through the tunnel")


class _Reader:
    """Exact reads over ``receive``: what comes beyond a reply is kept for the next one."""

    __slots__ = ("buffer", "proxy", "receive", "stage")

    def __init__(self, proxy: Proxy, receive: Receive) -> None:
        self.proxy = proxy
        self.receive = receive
        self.buffer = b""
        self.stage = "handshake"

    def error(self, what: str, cls: type[ProxyError] = ProxyError, status_code: int | None = None) -> ProxyError:
        return cls(f"proxy {self.proxy.url} {what}", proxy=self.proxy.url, status_code=status_code)

    async def more(self) -> bytes:
        data = await self.receive()
        if not data:
            raise self.error(f"closed the connection during the {self.stage}")
        return data

    async def exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self.buffer += await self.more()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data


# -- HTTP CONNECT -------------------------------------------------------------------------------------------


async def _http_connect(proxy: Proxy, host: str, port: int, send: Send, reader: _Reader) -> None:
    authority = tunnel_authority(host, port).encode("ascii")
    headers = [(b"Host", authority)]
    authorization = proxy.authorization()
    if authorization is not None:
        headers.append((b"Proxy-Authorization", authorization))
    connection = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_CONNECT_HEAD)
    reader.stage = f"CONNECT to {authority.decode()}"
    await send(
        connection.send(h11.Request(method=b"CONNECT", target=authority, headers=headers))
        + connection.send(h11.EndOfMessage())
    )
    received = bytearray()
    while True:
        try:
            event = connection.next_event()
        except h11.RemoteProtocolError as exc:
            raise reader.error(f"answered CONNECT with something that is not HTTP/1.x: {exc}") from None
        if event is h11.NEED_DATA:
            data = await reader.more()
            received += data
            if not b"HTTP/".startswith(bytes(received[:5])) and not received.startswith(b"HTTP/"):
                # Not the start of a status line: say so now, rather than wait for a head that never ends.
                raise reader.error(
                    f"answered CONNECT with something that is not HTTP/1.x: {quote_bytes(received[:32])}"
                )
            connection.receive_data(data)
            continue
        if isinstance(event, h11.InformationalResponse):
            continue
        if isinstance(event, h11.Response):
            if 200 <= event.status_code < 300:
                reader.buffer = connection.trailing_data[0]
                return
            reason = event.reason.decode("latin-1")
            raise reader.error(
                f"refused the tunnel to {authority.decode()}: {event.status_code} {quote_bytes(event.reason)[1:-1]}"
                if reason
                else f"refused the tunnel to {authority.decode()}: {event.status_code}",
                ProxyTunnelRefused,
                event.status_code,
            )
        raise reader.error(f"answered CONNECT with {type(event).__name__}")  # pragma: no cover - h11's order


# -- SOCKS --------------------------------------------------------------------------------------------------


async def _socks5(proxy: Proxy, host: str, port: int, send: Send, reader: _Reader) -> None:
    connection = socks5.SOCKS5Connection()
    methods = [socks5.SOCKS5AuthMethod.NO_AUTH_REQUIRED]
    if proxy.username is not None:
        methods.append(socks5.SOCKS5AuthMethod.USERNAME_PASSWORD)
    reader.stage = "SOCKS5 greeting"
    connection.send(socks5.SOCKS5AuthMethodsRequest(methods))
    await send(connection.data_to_send())
    method = _parse(reader, connection, await reader.exactly(2))
    assert isinstance(method, socks5.SOCKS5AuthReply)
    if method.method == socks5.SOCKS5AuthMethod.USERNAME_PASSWORD and proxy.username is not None:
        reader.stage = "SOCKS5 authentication"
        connection.send(socks5.SOCKS5UsernamePasswordRequest(proxy.username.encode(), (proxy.password or "").encode()))
        await send(connection.data_to_send())
        auth = _parse(reader, connection, await reader.exactly(2))
        assert isinstance(auth, socks5.SOCKS5UsernamePasswordReply)
        if not auth.success:
            raise reader.error("refused our user name and password")
    elif method.method != socks5.SOCKS5AuthMethod.NO_AUTH_REQUIRED:
        wants = "credentials" if proxy.username is None else "an authentication method we do not offer"
        raise reader.error(f"accepts none of our authentication methods (it wants {wants})")
    reader.stage = f"SOCKS5 CONNECT to {tunnel_authority(host, port)}"
    try:
        request = socks5.SOCKS5CommandRequest.from_address(socks5.SOCKS5Command.CONNECT, (host, port))
    except (SOCKSProtocolError, ValueError) as exc:  # pragma: no cover - targets are validated before
        raise reader.error(f"cannot be asked for {host!r}: {exc}") from None
    connection.send(request)
    await send(connection.data_to_send())
    head = await reader.exactly(5)  # VER REP RSV ATYP, and the first byte of the address
    if head[:1] != b"\x05":
        raise reader.error(f"answered the SOCKS5 CONNECT with something that is not SOCKS5: {quote_bytes(head)}")
    address_type = head[3]
    if address_type == 1:
        rest = 4 - 1 + 2
    elif address_type == 4:
        rest = 16 - 1 + 2
    elif address_type == 3:
        rest = head[4] + 2  # a length byte, then the name
    else:
        raise reader.error(f"answered the SOCKS5 CONNECT with an unknown address type {address_type}")
    reply = _parse(reader, connection, head + await reader.exactly(rest))
    assert isinstance(reply, socks5.SOCKS5Reply)
    if reply.reply_code != socks5.SOCKS5ReplyCode.SUCCEEDED:
        what = _SOCKS5_REPLIES.get(reply.reply_code, "an unknown error")
        raise reader.error(f"could not open a tunnel to {tunnel_authority(host, port)}: {what}")


async def _socks4(proxy: Proxy, host: str, port: int, send: Send, reader: _Reader) -> None:
    user_id = (proxy.username or "").encode()
    connection = socks4.SOCKS4Connection(user_id=user_id)
    reader.stage = f"SOCKS4 CONNECT to {tunnel_authority(host, port)}"
    try:
        if proxy.scheme == "socks4a" and not _is_ipv4(host):  # socks4a's name form; an address goes as SOCKS4
            request: socks4.SOCKS4Request | socks4.SOCKS4ARequest = socks4.SOCKS4ARequest.from_address(
                socks4.SOCKS4Command.CONNECT, (host, port), user_id
            )
        else:
            request = socks4.SOCKS4Request.from_address(socks4.SOCKS4Command.CONNECT, (host, port), user_id)
    except (SOCKSProtocolError, ValueError) as exc:
        raise reader.error(f"cannot be asked for {host} (SOCKS4 carries only IPv4 addresses): {exc}") from None
    connection.send(request)
    await send(connection.data_to_send())
    reply = _parse(reader, connection, await reader.exactly(8))
    assert isinstance(reply, socks4.SOCKS4Reply)
    if reply.reply_code != socks4.SOCKS4ReplyCode.REQUEST_GRANTED:
        what = _SOCKS4_REPLIES.get(reply.reply_code, "an unknown error")
        raise reader.error(f"could not open a tunnel to {tunnel_authority(host, port)}: {what}")


def _is_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


def _parse(reader: _Reader, connection: socks5.SOCKS5Connection | socks4.SOCKS4Connection, data: bytes) -> object:
    try:
        return connection.receive_data(data)
    except (SOCKSProtocolError, ValueError) as exc:
        raise reader.error(
            f"answered the {reader.stage} with something that is not SOCKS: {quote_bytes(data)}"
        ) from exc
