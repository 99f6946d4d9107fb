"""Tests for aiotcp.errors and aiotcp.error_mapping: the kinds, and the mapping of foreign exceptions built as
the stdlib, ssl and anyio build them (with their causes and contexts), never by touching the network."""

from __future__ import annotations

import errno
import os
import pickle
import re
import socket
import ssl

import anyio
import h11
import pytest

from aiotcp import errors
from aiotcp.error_mapping import map_connect_error, map_stream_error
from aiotcp.errors import (
    KINDS,
    AiotcpError,
    CertificateError,
    ConnectError,
    ConnectionRefused,
    ConnectionReset,
    ConnectTimeout,
    Disconnected,
    DNSError,
    InvalidHeader,
    InvalidTarget,
    LocalError,
    NetworkError,
    ProtocolError,
    TLSError,
    TooLarge,
    Unreachable,
)
from aiotcp.http11 import map_h11_error

TARGET = "example.test:443"


def os_error(code: int) -> OSError:
    """An OSError as the kernel reports it: the subclass Python picks for the errno, with its strerror."""
    return OSError(code, os.strerror(code))


def raised_from(outer: BaseException, cause: BaseException) -> BaseException:
    """``outer`` as ``raise outer from cause`` leaves it."""
    try:
        raise outer from cause
    except BaseException as exc:
        return exc


def raised_during(outer: BaseException, context: BaseException) -> BaseException:
    """``outer`` raised while handling ``context`` (implicit chaining)."""
    try:
        try:
            raise context
        except BaseException:
            raise outer  # noqa: B904 - implicit chaining is the point
    except BaseException as exc:
        return exc


def all_error_classes() -> list[type[AiotcpError]]:
    found: list[type[AiotcpError]] = []
    stack: list[type[AiotcpError]] = [AiotcpError]
    while stack:
        cls = stack.pop()
        if cls not in found:
            found.append(cls)
            stack.extend(cls.__subclasses__())
    return found


# -- kinds --------------------------------------------------------------------------------------------------


def test_every_class_kind_is_in_kinds() -> None:
    classes = all_error_classes()
    assert len(classes) >= 20
    for cls in classes:
        assert cls.kind in KINDS, cls


def test_kinds_are_the_documented_ones() -> None:
    documented = {
        "invalid_target",
        "dns",
        "refused",
        "unreachable",
        "connect_timeout",
        "tls",
        "proxy",
        "reset",
        "disconnected",
        "read_timeout",
        "write_timeout",
        "timeout",
        "pool_timeout",
        "protocol",
        "too_large",
        "local",
        "too_many_redirects",
        "internal",
        "skipped",
        "error",
    }
    assert set(KINDS) == documented
    assert len(KINDS) == len(documented)  # no duplicates
    assert errors.__doc__ is not None
    for kind in documented:  # each one explained in the module docstring
        assert re.search(rf"^    {kind}\b", errors.__doc__, re.MULTILINE), kind


def test_every_exported_error_is_an_aiotcp_error() -> None:
    for name in errors.__all__:
        value = getattr(errors, name)
        if isinstance(value, type):
            assert issubclass(value, AiotcpError), name


def test_families() -> None:
    assert issubclass(ConnectTimeout, errors.TimedOut)
    assert issubclass(ConnectTimeout, ConnectError)
    # A bad header is bad input, not a bad target; both report kind invalid_target.
    assert not issubclass(InvalidHeader, InvalidTarget)
    assert issubclass(InvalidHeader, errors.InvalidInput)
    assert issubclass(InvalidTarget, errors.InvalidInput)
    assert issubclass(InvalidTarget, ValueError)
    assert InvalidHeader.kind == InvalidTarget.kind == "invalid_target"
    assert issubclass(ConnectionReset, NetworkError)
    assert issubclass(Disconnected, NetworkError)
    assert issubclass(errors.DeadlineExceeded, errors.TimedOut)
    assert errors.DeadlineExceeded.kind == "timeout"


@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda cls: cls.__name__)
def test_pickle_round_trip(cls: type[AiotcpError]) -> None:
    for target in (None, TARGET):
        error = cls("something happened", target=target)
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is cls
        assert (copy.kind, copy.message, copy.target, str(copy)) == (cls.kind, error.message, target, str(error))


def test_str_repr_and_for_target() -> None:
    error = ProtocolError("bad status line")
    assert str(error) == "bad status line"
    assert error.for_target(TARGET) is error
    assert str(error) == f"{TARGET}: bad status line"
    assert repr(error) == f"ProtocolError(kind='protocol', target='{TARGET}', message='bad status line')"
    assert error.for_target("other.test") is error
    assert error.target == TARGET  # the raiser's target wins


# -- connect ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "phase", "cls"),
    [
        (errno.ECONNREFUSED, "tcp", ConnectionRefused),
        (errno.ECONNRESET, "tcp", ConnectionRefused),  # RST during the handshake
        (errno.EHOSTUNREACH, "tcp", Unreachable),
        (errno.ENETUNREACH, "tcp", Unreachable),
        (errno.ETIMEDOUT, "tcp", ConnectTimeout),
        (errno.EMFILE, "tcp", LocalError),
        (errno.ENFILE, "tcp", LocalError),
        (errno.EADDRNOTAVAIL, "tcp", LocalError),
        (errno.EMFILE, "dns", LocalError),
        (errno.EMFILE, "tls", LocalError),
        (errno.EADDRNOTAVAIL, "tls", LocalError),
        (errno.EACCES, "tcp", ConnectError),
        (errno.ECONNRESET, "tls", TLSError),
        (errno.EPIPE, "tls", TLSError),
    ],
)
def test_connect_errno(code: int, phase: str, cls: type[AiotcpError]) -> None:
    mapped = map_connect_error(os_error(code), TARGET, phase=phase)  # type: ignore[arg-type]
    assert type(mapped) is cls
    assert mapped.target == TARGET
    assert mapped.kind in KINDS


def test_refused_says_what_happened_on_the_wire() -> None:
    mapped = map_connect_error(ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), TARGET, phase="tcp")
    assert mapped.kind == "refused"
    assert "RST" in mapped.message


def test_local_error_says_it_is_ours() -> None:
    mapped = map_connect_error(os_error(errno.EMFILE), TARGET, phase="tcp")
    assert mapped.kind == "local"
    assert "Too many open files" in mapped.message
    assert "not the target" in mapped.message


def test_anyio_all_attempts_failed_chained_from_refused() -> None:
    # anyio.connect_tcp: OSError("All connection attempts failed") from the one attempt's error.
    attempt = ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
    exc = raised_from(OSError("All connection attempts failed"), attempt)
    assert exc.errno is None  # type: ignore[attr-defined]
    mapped = map_connect_error(exc, TARGET, phase="tcp")
    assert mapped.kind == "refused"


def test_anyio_all_attempts_failed_from_a_group() -> None:
    # Several addresses (happy eyeballs): the cause is an ExceptionGroup of the attempts.
    attempts = [os_error(errno.ECONNREFUSED), os_error(errno.ECONNREFUSED)]
    group = ExceptionGroup("multiple connection attempts failed", attempts)
    mapped = map_connect_error(raised_from(OSError("All connection attempts failed"), group), TARGET, phase="tcp")
    assert mapped.kind == "refused"
    mapped = map_connect_error(ExceptionGroup("attempts", [os_error(errno.ENETUNREACH)]), TARGET, phase="tcp")
    assert mapped.kind == "unreachable"


def test_local_error_inside_a_group() -> None:
    group = ExceptionGroup("attempts", [os_error(errno.EADDRNOTAVAIL)])
    exc = raised_from(OSError("All connection attempts failed"), group)
    assert map_connect_error(exc, TARGET, phase="tcp").kind == "local"


def test_chain_with_a_cycle_terminates() -> None:
    first = OSError("first")
    second = OSError("second")
    first.__context__ = second
    second.__context__ = first
    assert map_connect_error(first, TARGET, phase="tcp").kind == "error"


@pytest.mark.parametrize("phase", ["dns", "tcp"])
def test_gaierror_is_dns(phase: str) -> None:
    exc = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    mapped = map_connect_error(exc, TARGET, phase=phase)  # type: ignore[arg-type]
    assert type(mapped) is DNSError
    assert mapped.kind == "dns"
    assert "Name or service not known" in mapped.message


def test_gaierror_behind_anyio_wrapper_is_dns() -> None:
    exc = raised_during(OSError("All connection attempts failed"), socket.gaierror(socket.EAI_AGAIN, "again"))
    assert map_connect_error(exc, TARGET, phase="tcp").kind == "dns"


def test_any_error_in_the_dns_phase_is_dns() -> None:
    assert map_connect_error(OSError("resolver exploded"), TARGET, phase="dns").kind == "dns"


def test_certificate_verification_is_tls_of_its_own_class() -> None:
    exc = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    exc.verify_message = "self-signed certificate"
    exc.verify_code = 18
    mapped = map_connect_error(raised_from(anyio.BrokenResourceError(), exc), TARGET, phase="tls")
    assert type(mapped) is CertificateError
    assert isinstance(mapped, TLSError)
    assert mapped.kind == "tls"
    assert mapped.message == "certificate verify failed: self-signed certificate"


def test_ssl_error_is_tls() -> None:
    exc = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
    exc.reason = "WRONG_VERSION_NUMBER"
    mapped = map_connect_error(exc, TARGET, phase="tls")
    assert mapped.kind == "tls"
    assert "WRONG_VERSION_NUMBER" in mapped.message


@pytest.mark.parametrize("exc", [anyio.EndOfStream(), anyio.BrokenResourceError()], ids=type)
def test_peer_closing_during_handshake_is_tls(exc: Exception) -> None:
    mapped = map_connect_error(exc, TARGET, phase="tls")
    assert mapped.kind == "tls"
    assert "during the TLS handshake" in mapped.message


def test_unknown_tls_failure_is_still_tls() -> None:
    assert map_connect_error(RuntimeError("odd"), TARGET, phase="tls").kind == "tls"


def test_aiotcp_errors_pass_through() -> None:
    error = TooLarge("big")
    assert map_connect_error(error, TARGET, phase="tcp") is error
    assert map_stream_error(error, TARGET, phase="read") is error


# -- established streams ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), "reset"),
        (BrokenPipeError(errno.EPIPE, "Broken pipe"), "reset"),
        (os_error(errno.ECONNABORTED), "reset"),
        (os_error(errno.ETIMEDOUT), "reset"),
        (os_error(errno.EMFILE), "local"),
        (os_error(errno.ENOBUFS), "local"),
        (os_error(errno.EADDRNOTAVAIL), "local"),
        (anyio.BrokenResourceError(), "reset"),
        (anyio.ClosedResourceError(), "disconnected"),
        (ssl.SSLError(1, "[SSL: DECRYPTION_FAILED_OR_BAD_RECORD_MAC]"), "tls"),
        (os_error(errno.EACCES), "error"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else value,
)
@pytest.mark.parametrize("phase", ["read", "write"])
def test_stream_errors(exc: BaseException, kind: str, phase: str) -> None:
    mapped = map_stream_error(exc, TARGET, phase=phase)  # type: ignore[arg-type]
    assert mapped.kind == kind
    assert mapped.target == TARGET
    assert kind in KINDS


def test_broken_resource_chained_from_reset_is_reset() -> None:
    # anyio raises BrokenResourceError from the OSError it caught.
    exc = raised_from(anyio.BrokenResourceError(), ConnectionResetError(errno.ECONNRESET, "Connection reset"))
    mapped = map_stream_error(exc, TARGET, phase="read")
    assert type(mapped) is ConnectionReset
    assert mapped.message == "connection reset by peer during read"


def test_write_after_reset_is_reset() -> None:
    exc = raised_during(anyio.BrokenResourceError(), BrokenPipeError(errno.EPIPE, "Broken pipe"))
    assert map_stream_error(exc, TARGET, phase="write").message == "connection reset by peer during write"


# -- h11 ----------------------------------------------------------------------------------------------------


def test_h11_errors() -> None:
    mapped = map_h11_error(h11.RemoteProtocolError("illegal status line", error_status_hint=400), TARGET)
    assert type(mapped) is ProtocolError
    assert "illegal status line" in mapped.message
    assert mapped.target == TARGET
    mapped = map_h11_error(h11.RemoteProtocolError("Receive buffer too long", error_status_hint=431))
    assert type(mapped) is TooLarge
    assert mapped.target is None


def test_real_h11_parse_error_maps_to_protocol() -> None:
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(b"HTTP/1.1 abc OK\r\n\r\n")
    with pytest.raises(h11.RemoteProtocolError) as info:
        conn.next_event()
    assert map_h11_error(info.value).kind == "protocol"


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        ("illegal status line: bytearray(b'SSH-2.0\\r\\n')", "illegal status line: 'SSH-2.0\\r\\n'"),
        ('Illegal header value b"a\\x00"', 'Illegal header value "a\\x00"'),
        ("illegal chunk header: b'zz\\\\'x'", "illegal chunk header: 'zz\\\\'x'"),
    ],
)
def test_h11_messages_quote_bytes_without_python_syntax(message: str, shown: str) -> None:
    mapped = map_h11_error(h11.RemoteProtocolError(message, error_status_hint=400))
    assert mapped.message == f"malformed response: {shown}"
