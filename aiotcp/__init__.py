"""aiotcp: an asyncio/trio HTTP/1.1-over-TCP client toolkit that says exactly what happened on the wire.

    async with aiotcp.Client() as client:
        response = await client.get("http://127.0.0.1:8080/")

Every failure is an :class:`AiotcpError` with a stable ``kind`` (see :mod:`aiotcp.errors`).

The names below are loaded on first use (PEP 562), so that importing one layer -- ``aiotcp.http11``, the sans-IO
parser, or ``aiotcp.errors`` -- does not load the client, the transports and the prober with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .budget import Budget
    from .client import Client, get, head, request
    from .config import Limits, Retry, Timeouts
    from .cookies import Cookies
    from .errors import (
        KINDS,
        AiotcpError,
        CertificateError,
        ConnectError,
        ConnectionRefused,
        ConnectionReset,
        ConnectTimeout,
        DeadlineExceeded,
        Disconnected,
        DNSError,
        InternalError,
        InvalidHeader,
        InvalidInput,
        InvalidTarget,
        LocalError,
        NetworkError,
        NoResponse,
        PoolTimeout,
        ProtocolError,
        ProxyConnectError,
        ProxyError,
        ProxyResolveError,
        ProxyTunnelRefused,
        ReadTimeout,
        Skipped,
        TimedOut,
        TLSError,
        TooLarge,
        TooManyRedirects,
        Unreachable,
        WriteTimeout,
    )
    from .probe import ProbeOptions, ProbeResult, probe_many
    from .proxy import Proxy, parse_proxy
    from .resolution import Nameserver, Resolution, ResolverConfig
    from .resolver import AsyncResolver, Resolver, SystemResolver
    from .response import Headers, Response, Timings
    from .targets import Target, parse_target
    from .tlsfacts import TLSInfo
    from .transport import ExchangeResult, TCPTransport, Transport, tcp_exchange, tcp_session

# Public name -> the module that defines it.
_EXPORTS = {
    "Budget": "budget",
    "Client": "client",
    "get": "client",
    "head": "client",
    "request": "client",
    "Limits": "config",
    "Retry": "config",
    "Timeouts": "config",
    "Cookies": "cookies",
    **dict.fromkeys(
        (
            "KINDS",
            "AiotcpError",
            "CertificateError",
            "ConnectError",
            "ConnectionRefused",
            "ConnectionReset",
            "ConnectTimeout",
            "DeadlineExceeded",
            "Disconnected",
            "DNSError",
            "InternalError",
            "InvalidHeader",
            "InvalidInput",
            "InvalidTarget",
            "LocalError",
            "NetworkError",
            "NoResponse",
            "PoolTimeout",
            "ProtocolError",
            "ProxyConnectError",
            "ProxyError",
            "ProxyResolveError",
            "ProxyTunnelRefused",
            "ReadTimeout",
            "Skipped",
            "TimedOut",
            "TLSError",
            "TooLarge",
            "TooManyRedirects",
            "Unreachable",
            "WriteTimeout",
        ),
        "errors",
    ),
    "ProbeOptions": "probe",
    "ProbeResult": "probe",
    "probe_many": "probe",
    "Proxy": "proxy",
    "parse_proxy": "proxy",
    "Nameserver": "resolution",
    "Resolution": "resolution",
    "ResolverConfig": "resolution",
    "AsyncResolver": "resolver",
    "Resolver": "resolver",
    "SystemResolver": "resolver",
    "Headers": "response",
    "Response": "response",
    "Timings": "response",
    "Target": "targets",
    "parse_target": "targets",
    "TLSInfo": "tlsfacts",
    "ExchangeResult": "transport",
    "TCPTransport": "transport",
    "Transport": "transport",
    "tcp_exchange": "transport",
    "tcp_session": "transport",
}

__all__ = [
    "AiotcpError",
    "AsyncResolver",
    "Budget",
    "CertificateError",
    "Client",
    "ConnectError",
    "ConnectTimeout",
    "ConnectionRefused",
    "ConnectionReset",
    "Cookies",
    "DNSError",
    "DeadlineExceeded",
    "Disconnected",
    "ExchangeResult",
    "Headers",
    "InternalError",
    "InvalidHeader",
    "InvalidInput",
    "InvalidTarget",
    "KINDS",
    "Limits",
    "LocalError",
    "Nameserver",
    "NetworkError",
    "NoResponse",
    "PoolTimeout",
    "ProbeOptions",
    "ProbeResult",
    "ProtocolError",
    "Proxy",
    "ProxyConnectError",
    "ProxyError",
    "ProxyResolveError",
    "ProxyTunnelRefused",
    "ReadTimeout",
    "Resolution",
    "Resolver",
    "ResolverConfig",
    "Response",
    "Retry",
    "Skipped",
    "SystemResolver",
    "TCPTransport",
    "TLSError",
    "TLSInfo",
    "Target",
    "TimedOut",
    "Timeouts",
    "Timings",
    "TooLarge",
    "TooManyRedirects",
    "Transport",
    "Unreachable",
    "WriteTimeout",
    "__version__",
    "get",
    "head",
    "parse_proxy",
    "parse_target",
    "probe_many",
    "request",
    "tcp_exchange",
    "tcp_session",
]


def __getattr__(name: str) -> Any:
    if name == "testing":  # a module of its own (aiotcp.testing.MockTransport), loaded on first use as well
        return importlib.import_module(".testing", __name__)
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'aiotcp' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return __all__
