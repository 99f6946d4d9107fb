"""aiotcp: an asyncio/trio HTTP/1.1-over-TCP client toolkit that says exactly what happened on the wire.

    async with aiotcp.Client() as client:
        response = await client.get("http://127.0.0.1:8080/")

Every failure is an :class:`AiotcpError` with a stable ``kind`` (see :mod:`aiotcp.errors`).
"""

from ._version import __version__
from .client import Client, get, head, request
from .config import Limits, Timeouts
from .errors import (
    KINDS,
    AiotcpError,
    ConnectError,
    ConnectionRefused,
    ConnectionReset,
    ConnectTimeout,
    DeadlineExceeded,
    Disconnected,
    DNSError,
    InternalError,
    InvalidHeader,
    InvalidTarget,
    LocalError,
    NetworkError,
    NoResponse,
    PoolTimeout,
    ProtocolError,
    ReadTimeout,
    Timeout,
    TLSError,
    TooLarge,
    TooManyRedirects,
    Unreachable,
    WriteTimeout,
)
from .models import Headers, Response, Timings
from .probe import ProbeOptions, ProbeResult, probe_many
from .targets import Target, parse_target
from .transport import ExchangeResult, tcp_exchange

__all__ = [
    "KINDS",
    "AiotcpError",
    "Client",
    "ConnectError",
    "ConnectTimeout",
    "ConnectionRefused",
    "ConnectionReset",
    "DNSError",
    "DeadlineExceeded",
    "Disconnected",
    "ExchangeResult",
    "Headers",
    "InternalError",
    "InvalidHeader",
    "InvalidTarget",
    "Limits",
    "LocalError",
    "NetworkError",
    "NoResponse",
    "PoolTimeout",
    "ProbeOptions",
    "ProbeResult",
    "ProtocolError",
    "ReadTimeout",
    "Response",
    "TLSError",
    "Target",
    "Timeout",
    "Timeouts",
    "Timings",
    "TooLarge",
    "TooManyRedirects",
    "Unreachable",
    "WriteTimeout",
    "__version__",
    "get",
    "head",
    "parse_target",
    "probe_many",
    "request",
    "tcp_exchange",
]
