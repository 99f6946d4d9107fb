"""What every ``aiotcp`` subcommand shares: the exit codes, the argument parser, flag types, error printing,
reading input files, and terminal output (a console that never wraps a pipe, a status line that never shares
a line with output).

Exit codes. ``get``, ``head`` and ``tcp`` exit with curl's number for the kind of failure (:data:`EXIT_CODES`,
the one table that ``--help`` and the README print); ``probe`` and ``bench`` keep their own: 0 done, 1 the run
failed, 2 usage error, 3 a bench threshold was breached, 130 interrupted. For every subcommand, 2 is a usage
error: a bad flag or value, a malformed target, an input file that cannot be read.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TextIO

from ..errors import (
    AiotcpError,
    CertificateError,
    ConnectError,
    ConnectionRefused,
    ConnectionReset,
    ConnectTimeout,
    DeadlineExceeded,
    Disconnected,
    DNSError,
    InvalidInput,
    LocalError,
    NoResponse,
    PoolTimeout,
    ProtocolError,
    ProxyConnectError,
    ProxyError,
    ProxyResolveError,
    ProxyTunnelRefused,
    ReadTimeout,
    TLSError,
    TooLarge,
    TooManyRedirects,
    Unreachable,
    WriteTimeout,
)
from ..proxy import parse_proxy
from ..resolution import Nameserver, parse_nameservers
from ..text import escape_control

__all__ = [
    "EXIT_CODES",
    "EXIT_FAILED",
    "EXIT_HTTP_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "EXIT_WRITE_ERROR",
    "ArgumentParser",
    "ExitCode",
    "StatusLine",
    "UsageError",
    "add_header_option",
    "add_proxy_option",
    "add_resolver_option",
    "exit_code_for",
    "exit_codes_help",
    "make_console",
    "non_negative_float",
    "parse_header",
    "parse_resolvers",
    "positive_float",
    "positive_int",
    "proxy_url",
    "read_input",
    "report_error",
    "resolver_options",
    "run_handler",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_HTTP_ERROR, EXIT_WRITE_ERROR = 22, 23


@dataclass(frozen=True, slots=True)
class ExitCode:
    """One row of the exit-code table: ``code``, the error classes that exit with it, and what it means."""

    code: int
    meaning: str
    errors: tuple[type[AiotcpError], ...] = ()

    @property
    def kinds(self) -> str:
        """The error kinds of this row, as the README and ``--help`` list them (empty when none). The family
        bases' kind ``error`` is left out: it says only "unclassified"."""
        return ", ".join(dict.fromkeys(cls.kind for cls in self.errors if cls.kind != "error"))


#: The exit codes of ``get``, ``head`` and ``tcp``: curl's number wherever curl has one for the same event.
#: An error exits with the code of the most specific class it is an instance of (so a CertificateError, a
#: TLSError, exits 60, not 35). ``--help`` and the README's table are made from this one table.
EXIT_CODES: tuple[ExitCode, ...] = (
    ExitCode(0, "success"),
    ExitCode(1, "any other failure (an error aiotcp does not classify, or a bug: please report it)"),
    ExitCode(
        2, "usage: a bad flag or value, a malformed URL or header, an input file that cannot be read", (InvalidInput,)
    ),
    ExitCode(5, "the proxy's host name did not resolve", (ProxyResolveError,)),
    ExitCode(6, "the host name did not resolve", (DNSError,)),
    ExitCode(
        7,
        "could not connect (to the server or to the proxy): refused, unreachable, or our own limits "
        "(descriptors, ports)",
        (ConnectionRefused, Unreachable, LocalError, ConnectError, ProxyConnectError),
    ),
    ExitCode(8, "the reply is not HTTP/1.x (curl: weird server reply)", (ProtocolError,)),
    ExitCode(
        18, "the server closed the connection in the middle of the response (curl: partial file)", (Disconnected,)
    ),
    ExitCode(22, "with -f/--fail: the HTTP status is 400 or more"),
    ExitCode(23, "writing the output failed (-o, -D, stdout)"),
    ExitCode(
        28,
        "a timeout: connect, read, write, pool, or the -m/--max-time deadline",
        (ConnectTimeout, ReadTimeout, WriteTimeout, PoolTimeout, DeadlineExceeded),
    ),
    ExitCode(35, "the TLS handshake failed", (TLSError,)),
    ExitCode(47, "more redirects than --max-redirs", (TooManyRedirects,)),
    ExitCode(52, "the server closed the connection without a byte of response (curl: empty reply)", (NoResponse,)),
    ExitCode(
        56,
        "the connection was reset, or the proxy refused the CONNECT tunnel (407, 403, 502...; curl: failure "
        "receiving data)",
        (ConnectionReset, ProxyTunnelRefused),
    ),
    ExitCode(60, "the server's certificate failed verification", (CertificateError,)),
    ExitCode(63, "the response is larger than --max-filesize, or its head than aiotcp's caps", (TooLarge,)),
    ExitCode(
        97,
        "the proxy failed the handshake: a SOCKS error, an answer that is not a proxy's (curl: proxy)",
        (ProxyError,),
    ),
    ExitCode(130, "interrupted (Ctrl-C)"),
)
# Most specific class first: a class is checked before every class it derives from.
_BY_CLASS = sorted(
    ((cls, row.code) for row in EXIT_CODES for cls in row.errors), key=lambda item: -len(item[0].__mro__)
)


def exit_code_for(exc: AiotcpError) -> int:
    """The exit code of ``get``/``head``/``tcp`` for ``exc`` (see :data:`EXIT_CODES`)."""
    for cls, code in _BY_CLASS:
        if isinstance(exc, cls):
            return code
    return EXIT_FAILED


def exit_codes_help() -> str:
    """The exit-code table as ``--help`` prints it."""
    lines = ["exit codes (curl's numbers):"]
    for row in EXIT_CODES:
        kinds = f" [{row.kinds}]" if row.kinds else ""
        lines.append(f"  {row.code:>3}  {row.meaning}{kinds}")
    return "\n".join(lines)


class UsageError(Exception):
    """A flag's value cannot be used: an input file that cannot be read, values that do not go together.
    Printed as ``error: usage: MESSAGE``, exit status 2 (for every subcommand)."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with a usage error printed as one line, ``error: usage: ... (aiotcp CMD --help)``, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: usage: {message} (see: {self.prog} --help)\n")


def run_handler(handler: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a subcommand; what it does not handle itself becomes one line on stderr and an exit code, never a
    traceback (``AIOTCP_TRACEBACK=1`` shows one for an unexpected exception, a bug)."""
    try:
        return handler(args)
    except UsageError as exc:
        print(f"error: usage: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except AiotcpError as exc:
        return report_error(exc)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `aiotcp get URL | head -1`: the reader left; that is not our failure. Point stdout at /dev/null so
        # the interpreter's own flush at exit does not fail on the closed pipe again.
        _silence_stdout()
        return EXIT_OK
    except Exception as exc:
        if os.environ.get("AIOTCP_TRACEBACK"):
            raise
        message = escape_control(f"{type(exc).__name__}: {exc}")
        print(f"error: internal: {message} (a bug in aiotcp; AIOTCP_TRACEBACK=1 shows where)", file=sys.stderr)
        return EXIT_FAILED


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def report_error(exc: AiotcpError, stream: TextIO | None = None) -> int:
    """Print ``error: KIND: message``; return the exit code ``probe`` and ``bench`` use (2 bad input, else 1)."""
    print(f"error: {exc.kind}: {escape_control(str(exc))}", file=stream or sys.stderr)
    return EXIT_USAGE if isinstance(exc, InvalidInput) else EXIT_FAILED


def describe_os_error(exc: OSError) -> str:
    """``No such file or directory``: what the system said, without Python's ``[Errno 2]``."""
    return exc.strerror or str(exc)


def read_input(spec: str, what: str) -> bytes:
    """The bytes of an input file named on the command line (``-`` is stdin).

    Raises:
        UsageError: naming ``what`` (the flag) and the file, for a missing file, a directory, no permission.
    """
    if spec == "-":
        return sys.stdin.buffer.read()
    try:
        with open(spec, "rb") as file:
            return file.read()
    except OSError as exc:
        raise UsageError(f"{what}: cannot read {escape_control(spec)}: {describe_os_error(exc)}") from None


def parse_header(text: str) -> tuple[str, str]:
    """``-H 'Name: value'`` as curl takes it."""
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"header must look like 'Name: value', got {text!r}")
    return name.strip(), value.strip()


def add_header_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``-H/--header 'Name: value'``, repeatable, into ``args.headers``."""
    parser.add_argument(
        "-H", "--header", dest="headers", action="append", type=parse_header, default=[], metavar="'NAME: VALUE'"
    )


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def positive_float(text: str) -> float:
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or a positive number of seconds, got {text!r}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


# -- DNS resolvers -----------------------------------------------------------------------------------------


def parse_resolvers(text: str) -> tuple[Nameserver, ...] | str:
    """``--resolvers``: ``IP[:PORT],...``, a file of them (one per line, ``#`` comments), or ``system``."""
    if text == "system":
        return text
    entries: list[str] = [text]
    if "," not in text and os.path.isfile(text):
        try:
            with open(text, encoding="utf-8", errors="replace") as file:
                lines = [line.partition("#")[0].strip() for line in file]
        except OSError as exc:
            raise argparse.ArgumentTypeError(f"cannot read {text!r}: {exc.strerror or exc}") from None
        entries = [line for line in lines if line]
        if not entries:
            raise argparse.ArgumentTypeError(f"{text!r} lists no resolver")
    try:
        return parse_nameservers(",".join(entries))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_resolver_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--resolvers IP[:PORT],...|FILE|system`` into ``args.resolvers`` (see :func:`resolver_options`)."""
    parser.add_argument(
        "--resolvers",
        type=parse_resolvers,
        metavar="IP[:PORT],...|FILE|system",
        help="DNS resolvers to query (default: /etc/resolv.conf's, with /etc/hosts first); "
        "'system' uses getaddrinfo instead",
    )


def proxy_url(text: str) -> str:
    """A ``-x/--proxy`` value, checked now: a malformed proxy is a usage error naming it (password hidden)."""
    try:
        parse_proxy(text)
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(exc.message) from None
    return text


def add_proxy_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``-x/--proxy URL`` into ``args.proxy``: ``http://[user:pass@]host:port``, ``socks5://``, ``socks5h://``,
    ``socks4://``, ``socks4a://`` (no scheme: http; no port: 1080, as curl)."""
    parser.add_argument(
        "-x",
        "--proxy",
        type=proxy_url,
        metavar="URL",
        help="through this proxy: [http|socks5|socks5h|socks4|socks4a]://[user:password@]host[:port]",
    )


def resolver_options(args: argparse.Namespace) -> dict[str, Any]:
    """``Client`` / ``ProbeOptions`` keywords for ``--resolvers``: ``resolvers=...``, ``resolver="system"`` or
    nothing (the default resolver)."""
    chosen = getattr(args, "resolvers", None)
    if chosen is None:
        return {}
    if chosen == "system":
        return {"resolver": "system"}
    return {"resolvers": chosen}


# -- terminal output ------------------------------------------------------------------------------------------


def make_console(stream: TextIO, **options: Any) -> Any:
    """A rich Console on ``stream`` that wraps only on a terminal: piped or redirected, a line is written whole
    (rich would otherwise cut it at 80 columns, in the middle of a message)."""
    from rich.console import Console

    terminal = stream.isatty()
    return Console(file=stream, highlight=False, soft_wrap=not terminal, **options)


class StatusLine:
    """One line of live status on a terminal, redrawn in place.

    Two rules keep it out of everything else written to the terminal: it is cut to the terminal's width (a
    line that wraps cannot be erased with ``\\r``), and :meth:`clear` erases it before anything else is
    written (records, warnings): the next :meth:`show` draws it again below what was written.
    """

    _ERASE = "\r\x1b[2K"

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.shown = False

    def __repr__(self) -> str:
        return f"<StatusLine shown={self.shown}>"

    def show(self, text: str) -> None:
        try:
            width = os.get_terminal_size(self._stream.fileno()).columns
        except (OSError, ValueError):
            width = shutil.get_terminal_size().columns
        width = max(width, 20) - 1  # the last column would wrap on some terminals
        self._stream.write(self._ERASE + escape_control(text)[:width])
        self._stream.flush()
        self.shown = True

    def clear(self) -> None:
        """Erase the line if it is shown (cheap when it is not: call it before every write)."""
        if self.shown:
            self._stream.write(self._ERASE)
            self._stream.flush()
            self.shown = False
