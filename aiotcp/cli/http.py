"""``aiotcp get`` and ``aiotcp head``: one request, made and printed as curl makes and prints it.

A thin layer over the library. The flags become :class:`~aiotcp.client.Client` options
(:func:`client_options`) and one request (:func:`plan_request`): adding a flag is one ``add_argument`` and one
line in one of the two. The response streams to stdout or a file in constant memory through
``Client.stream``; every hop of a redirect chain is printed by the same functions for ``-i``, ``-I``, ``-D``
and ``-v``. ``head`` is ``get -I``. Exit codes are curl's (:data:`.common.EXIT_CODES`); ``-w`` is in
:mod:`.writeout`.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import quote

import anyio

from ..client import Client
from ..config import Limits, Timeouts
from ..errors import AiotcpError, InvalidInput
from ..response import Response
from ..targets import parse_resolve, parse_target
from ..text import escape_control
from ..transport import make_ssl_context
from . import writeout
from .common import (
    EXIT_HTTP_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    EXIT_WRITE_ERROR,
    UsageError,
    add_proxy_option,
    add_resolver_option,
    describe_os_error,
    exit_code_for,
    exit_codes_help,
    positive_float,
    read_input,
    resolver_options,
)

__all__ = ["client_options", "plan_request", "register"]

#: Without -m/--max-time there is no deadline for the whole transfer (a download takes what it takes), but
#: connecting and every silence have one: a dead peer cannot hold the command forever.
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_SILENCE_TIMEOUT = 30.0


def register(commands: Any) -> None:
    """Add ``head`` and ``get`` to the ``aiotcp`` subcommands."""
    for name, summary in (
        ("get", "one request, the body to stdout (-o FILE), as curl does"),
        ("head", "HEAD a URL: print the status line and headers (get -I)"),
    ):
        parser = commands.add_parser(
            name,
            help=summary,
            description=f"{summary}. A URL without a scheme is http://.",
            epilog=exit_codes_help(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        parser.add_argument("url", metavar="URL", help="http(s)://host[:port]/path, or host[:port][/path]")
        add_request_options(parser)
        add_output_options(parser)
        parser.set_defaults(handler=cmd_get, command_head=name == "head")


def add_request_options(parser: argparse.ArgumentParser) -> None:
    """What to send and how: the flags that become the request or Client options."""
    group = parser.add_argument_group("request")
    group.add_argument("-X", "--request", metavar="METHOD", help="request method (default GET, HEAD with -I)")
    group.add_argument("-I", "--head", action="store_true", help="HEAD: print every hop's status line and headers")
    for flags, kind, text in (
        (("-d", "--data"), "data", "body, form-encoded by default; @FILE (newlines dropped), @- stdin; repeat: &"),
        (("--data-binary",), "binary", "body as is; @FILE, @- stdin"),
        (("--json",), "json", "JSON body (sets Content-Type and Accept); @FILE, @- stdin"),
    ):
        group.add_argument(
            *flags, dest="data", action="append", default=[], type=_tagged(kind), metavar="DATA", help=text
        )
    group.add_argument("-T", "--upload-file", metavar="FILE", help="PUT the bytes of FILE (- for stdin)")
    group.add_argument(
        "-H",
        "--header",
        dest="headers",
        action="append",
        default=[],
        type=header_option,
        metavar="'NAME: VALUE'",
        help="add a header; 'NAME:' removes a default one, 'NAME;' sends it empty",
    )
    group.add_argument("-A", "--user-agent", metavar="TEXT", help="User-Agent ('' sends none)")
    group.add_argument("-e", "--referer", metavar="URL", help="Referer header")
    group.add_argument("-u", "--user", metavar="USER:PASSWORD", help="HTTP Basic authentication")
    group.add_argument(
        "-L", "--location", "--follow-redirects", dest="location", action="store_true", help="follow redirects"
    )
    group.add_argument("--max-redirs", type=_count, default=10, metavar="N", help="with -L: at most N (10)")
    group.add_argument(
        "--resolve",
        action="append",
        default=[],
        type=_resolve_entry,
        metavar="HOST:PORT:ADDR",
        help="connect to ADDR for HOST:PORT, without DNS (repeatable)",
    )
    add_resolver_option(group)
    add_proxy_option(group)
    group.add_argument("--unix-socket", metavar="PATH", help="connect to this Unix domain socket instead")
    group.add_argument(
        "--compressed", action="store_true", help="ask for a compressed body (gzip, deflate, br, zstd) and decode it"
    )
    group.add_argument("-k", "--insecure", action="store_true", help="do not verify TLS certificates")
    group.add_argument("--cacert", metavar="FILE", help="verify TLS certificates against the CAs in FILE")
    group.add_argument(
        "-m",
        "--max-time",
        "-t",
        "--timeout",
        dest="max_time",
        type=positive_float,
        metavar="SECONDS",
        help="deadline for the whole transfer (default: none)",
    )
    group.add_argument(
        "--connect-timeout",
        type=positive_float,
        metavar="SECONDS",
        help=f"DNS + TCP + TLS ({DEFAULT_CONNECT_TIMEOUT:g}); a silence of {DEFAULT_SILENCE_TIMEOUT:g} s fails too",
    )
    group.add_argument("--max-filesize", type=_count, metavar="BYTES", help="fail (63) on a larger body")


def add_output_options(parser: argparse.ArgumentParser) -> None:
    """Where the response goes and what is said about it."""
    group = parser.add_argument_group("output")
    group.add_argument("-o", "--output", metavar="FILE", help="write the body to FILE (- for stdout)")
    group.add_argument("-i", "--include", action="store_true", help="print every hop's status line and headers first")
    group.add_argument("-D", "--dump-header", metavar="FILE", help="write every hop's head to FILE (- for stdout)")
    group.add_argument("-f", "--fail", action="store_true", help="HTTP status >= 400: no output, exit 22")
    group.add_argument("-s", "--silent", action="store_true", help="no error messages")
    group.add_argument("-S", "--show-error", action="store_true", help="with -s: error messages anyway")
    group.add_argument("-v", "--verbose", action="store_true", help="request and response heads, timings (stderr)")
    group.add_argument(
        "-w", "--write-out", metavar="FORMAT", help="print FORMAT at the end (@FILE reads it): " + writeout.SUMMARY
    )


# -- flag types ---------------------------------------------------------------------------------------------


def header_option(text: str) -> tuple[str, str | None]:
    """curl's ``-H``: ``Name: value`` adds it, ``Name:`` removes a default header, ``Name;`` sends it empty."""
    name, sep, value = text.partition(":")
    if sep and name.strip():
        value = value.strip()
        return name.strip(), value if value else None
    if text.endswith(";") and ":" not in text and text[:-1].strip():
        return text[:-1].strip(), ""
    raise argparse.ArgumentTypeError(f"header must look like 'Name: value' (or 'Name:', 'Name;'), got {text!r}")


def _tagged(kind: str) -> Callable[[str], tuple[str, str]]:
    """A flag type that keeps which flag gave the value: -d, --data-binary and --json share one list, in order."""

    def tag(value: str) -> tuple[str, str]:
        return kind, value

    return tag


def _count(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text!r}")
    return int(text)


def _resolve_entry(text: str) -> tuple[tuple[str, int], tuple[str, ...]]:
    try:
        return parse_resolve(text)
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


# -- flags to the library -----------------------------------------------------------------------------------


@dataclass(slots=True)
class Plan:
    """The request the flags describe, ready for ``Client.stream``."""

    method: str
    url: str
    headers: list[tuple[str, str | None]]
    content: bytes = b""
    print_heads: bool = False  # -i or -I: every hop's head goes where the body goes
    body_wanted: bool = True  # False with -I (and for HEAD): no body to write


def client_options(args: argparse.Namespace) -> dict[str, Any]:
    """``Client(**client_options(args))``. Raises UsageError for a CA file that cannot be used."""
    return {
        "timeout": _timeouts(args),
        "limits": Limits(max_body_bytes=args.max_filesize),  # no cap unless asked: bodies stream
        "verify": _verify(args),
        "follow_redirects": args.location,
        "max_redirects": args.max_redirs,
        "resolve": dict(args.resolve) or None,
        **resolver_options(args),
        "proxy": args.proxy,
        "uds": args.unix_socket,
        "decode": args.compressed,  # as curl: the body as sent unless --compressed
    }


def _timeouts(args: argparse.Namespace) -> Timeouts:
    total: float | None = args.max_time

    def capped(seconds: float) -> float:
        return seconds if total is None else min(seconds, total)

    silence = capped(DEFAULT_SILENCE_TIMEOUT)
    connect = capped(args.connect_timeout or DEFAULT_CONNECT_TIMEOUT)
    return Timeouts(connect=connect, read=silence, write=silence, pool=total, total=total)


def _verify(args: argparse.Namespace) -> bool | ssl.SSLContext:
    if args.insecure:
        return False
    if args.cacert is None:
        return True
    read_input(args.cacert, "--cacert")  # missing, a directory, no permission: said as for every input file
    try:
        return make_ssl_context(args.cacert)
    except (OSError, ssl.SSLError):
        raise UsageError(f"--cacert: {escape_control(args.cacert)} holds no usable PEM certificate") from None


def _url(text: str) -> str:
    """curl's reading of a URL without a scheme: http://."""
    return text if "://" in text else f"http://{text}"


def plan_request(args: argparse.Namespace) -> Plan:
    """The method, URL, headers and body the flags ask for.

    Raises:
        UsageError: for flags that do not go together, or an input file that cannot be read.
    """
    head_only = args.head or args.command_head
    if head_only and (args.data or args.upload_file):
        raise UsageError("-I/head sends no body: drop -d/--data-binary/--json/-T, or use -X HEAD")
    if args.data and args.upload_file:
        raise UsageError("-T/--upload-file and -d/--data-binary/--json each give the body: use one")
    url = _url(args.url)
    headers: list[tuple[str, str | None]] = []
    content = b""
    method = "HEAD" if head_only else "GET"
    if args.upload_file:
        content = read_input(args.upload_file, "-T/--upload-file")
        method = "PUT"
        if url.endswith("/") and args.upload_file != "-":  # curl names the upload after the file
            url += quote(os.path.basename(args.upload_file))
    elif args.data:
        content, content_type = _body(args.data)
        method = "POST"
        headers.append(("Content-Type", content_type))
        if content_type == "application/json":
            headers.append(("Accept", "application/json"))
    if args.request:
        method = args.request
    if args.user_agent is not None:
        headers.append(("User-Agent", args.user_agent or None))
    if args.referer:
        headers.append(("Referer", args.referer))
    if args.user is not None:
        if ":" not in args.user:
            raise UsageError("-u/--user needs USER:PASSWORD (aiotcp does not prompt)")
        token = base64.b64encode(args.user.encode("utf-8")).decode("ascii")
        headers.append(("Authorization", f"Basic {token}"))
    headers.extend(args.headers)  # last: -H replaces what the flags above set
    return Plan(
        method=method,
        url=url,
        headers=headers,
        content=content,
        print_heads=args.include or head_only,
        body_wanted=not head_only and method.upper() != "HEAD",
    )


def _body(parts: list[tuple[str, str]]) -> tuple[bytes, str]:
    """The body of ``-d``/``--data-binary``/``--json`` in the order given, and its Content-Type."""
    kinds = {kind for kind, _ in parts}
    if "json" in kinds and len(kinds) > 1:
        raise UsageError("--json cannot be mixed with -d/--data-binary")
    pieces: list[bytes] = []
    for kind, value in parts:
        flag = {"data": "-d/--data", "binary": "--data-binary", "json": "--json"}[kind]
        if value.startswith("@"):
            data = read_input(value[1:], flag)
            if kind == "data":  # curl drops CR and LF from -d @FILE
                data = data.replace(b"\r", b"").replace(b"\n", b"")
        else:
            data = value.encode("utf-8", "surrogateescape")
        pieces.append(data)
    if kinds == {"json"}:
        return b"".join(pieces), "application/json"
    return b"&".join(pieces), "application/x-www-form-urlencoded"


# -- printing -----------------------------------------------------------------------------------------------


def head_text(response: Response) -> str:
    """A hop's status line and headers, one per line, then the blank line; server text escaped."""
    lines = [f"HTTP/{response.http_version} {response.status_code} {escape_control(response.reason)}".rstrip()]
    lines += [f"{escape_control(name)}: {escape_control(value)}" for name, value in response.headers.multi_items()]
    return "\n".join(lines) + "\n\n"


def verbose_text(hop: Response) -> str:
    """curl -v's account of one hop: ``*`` the connection, ``>`` the request head as sent, ``<`` the response
    head. The ``*`` timings line comes after the body (:func:`timings_text`)."""
    target = parse_target(hop.url)
    peer = f"{hop.peer[0]} port {hop.peer[1]}" if hop.peer else "?"
    how = "Re-using the connection to" if hop.timings.reused else "Connected to"
    lines = [f"* {how} {target.host} ({peer})"]
    if hop.proxy is not None:
        lines.append(f"* via proxy {hop.proxy}")
    if hop.request is not None:
        sent = hop.request.head().decode("latin-1").split("\r\n")[:-2]
        lines += [f"> {escape_control(line)}" for line in sent]
        lines.append(">")
        if hop.request.body:
            lines.append(f"* sent a body of {len(hop.request.body)} bytes")
    lines += [f"< {line}".rstrip() for line in head_text(hop).splitlines()]
    return "\n".join(lines) + "\n"


def timings_text(hop: Response) -> str:
    """The phase timings of one hop, in the library's milliseconds (``-`` for a phase not run)."""
    t = hop.timings
    peer = f"{hop.peer[0]}:{hop.peer[1]}" if hop.peer else "?"

    def show(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    return (
        f"* peer {peer}  dns_ms {show(t.dns_ms)}  connect_ms {show(t.connect_ms)}"
        + (f"  proxy_connect_ms {show(t.proxy_connect_ms)}" if hop.proxy is not None else "")
        + f"  tls_ms {show(t.tls_ms)}  ttfb_ms {show(t.ttfb_ms)}  total_ms {show(t.total_ms)}"
        + ("  (reused)" if t.reused else "")
        + "\n"
    )


# -- output ---------------------------------------------------------------------------------------------------


class OutputError(Exception):
    """Writing the output failed (curl's exit code 23). The message names the file and the reason."""


class BinaryOnTerminal(OutputError):
    """The body is binary and would go to a terminal (curl refuses too, unless ``-o -``)."""


class Sink:
    """One destination: stdout (``None`` or ``-``) or a file, opened on first use, so that a failed transfer
    (or ``-f`` on an error status) leaves no file behind."""

    def __init__(self, path: str | None, what: str) -> None:
        self.to_stdout = path is None or path == "-"
        self.path = path
        self.what = what
        self._file: IO[bytes] | None = None

    def __repr__(self) -> str:
        return f"<Sink {self.what} {'stdout' if self.to_stdout else self.path} open={self._file is not None}>"

    def _cannot(self, exc: OSError) -> OutputError:
        if isinstance(exc, BrokenPipeError):
            raise exc  # the reader left (`aiotcp get URL | head -1`): cli.main ends quietly
        where = "stdout" if self.to_stdout else escape_control(str(self.path))
        return OutputError(f"{self.what}: cannot write {where}: {describe_os_error(exc)}")

    def write(self, data: bytes) -> None:
        try:
            if self._file is None:
                self._file = sys.stdout.buffer if self.to_stdout else open(str(self.path), "wb")  # noqa: SIM115
            self._file.write(data)
        except OSError as exc:
            raise self._cannot(exc) from None

    def close(self, *, create: bool = False) -> None:
        """Flush stdout or close the file; ``create`` makes the file even if nothing was written (an empty
        body is an empty file)."""
        if self._file is None and create:
            self.write(b"")
        file, self._file = self._file, None
        if file is None:
            return
        try:
            if self.to_stdout:
                file.flush()
            else:
                file.close()
        except OSError as exc:
            raise self._cannot(exc) from None


def _err(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


@dataclass(slots=True)
class Outcome:
    """What a transfer ended with: the response (if one came), the body bytes written, the error, the exit
    code. ``-w`` reads it."""

    response: Response | None = None
    size_download: int = 0
    error: AiotcpError | None = None
    failure: str | None = None  # the message of -f, or of an output error
    exit_code: int = EXIT_OK


async def _transfer(args: argparse.Namespace, plan: Plan, options: dict[str, Any], outcome: Outcome) -> None:
    body = Sink(args.output, "-o/--output")  # -i puts the heads where the body goes, as curl does
    dump = Sink(args.dump_header, "-D/--dump-header") if args.dump_header else None
    try:
        async with (
            Client(**options) as client,
            client.stream(plan.method, plan.url, headers=plan.headers, content=plan.content) as response,
        ):
            outcome.response = response
            hops = [*response.history, response]
            if args.verbose:
                _err("".join(verbose_text(hop) + timings_text(hop) for hop in hops[:-1]) + verbose_text(response))
            if dump is not None:
                dump.write("".join(head_text(hop) for hop in hops).encode("utf-8"))
                dump.close()
            if args.fail and response.status_code >= 400:
                outcome.failure = f"{response.status_code} {escape_control(response.reason)} ({response.url})"
                outcome.exit_code = EXIT_HTTP_ERROR
                return
            if plan.print_heads:
                body.write("".join(head_text(hop) for hop in hops).encode("utf-8"))
            if plan.body_wanted:
                await _write_body(response, body, outcome)
            body.close(create=True)
        if args.verbose:
            _err(timings_text(response))
    finally:
        for sink in (body, dump):
            if sink is not None:
                with contextlib.suppress(OutputError, BrokenPipeError):
                    sink.close()


async def _write_body(response: Response, body: Sink, outcome: Outcome) -> None:
    """Stream the body to ``body`` chunk by chunk: memory stays at one chunk whatever the size."""
    check = body.path is None and sys.stdout.isatty()  # -o - prints to a terminal whatever it is
    async for chunk in response.stream():
        if check:
            check = False
            if b"\x00" in chunk[:4096]:
                raise BinaryOnTerminal("binary output not shown on a terminal: use -o FILE, or -o - to print it anyway")
        body.write(chunk)
        outcome.size_download += len(chunk)


def cmd_get(args: argparse.Namespace) -> int:
    """``aiotcp get`` and ``aiotcp head``; returns the exit code."""
    try:
        plan = plan_request(args)
        options = client_options(args)
        template = writeout.parse(_write_out_format(args.write_out)) if args.write_out is not None else None
    except UsageError as exc:
        print(f"error: usage: {exc}", file=sys.stderr)
        return EXIT_USAGE
    outcome = Outcome()
    show_errors = not args.silent or args.show_error
    try:
        anyio.run(_transfer, args, plan, options, outcome)
    except AiotcpError as exc:
        outcome.error = exc
        outcome.exit_code = exit_code_for(exc)
        if show_errors:
            print(f"error: {exc.kind}: {escape_control(str(exc))}", file=sys.stderr)
    except OutputError as exc:
        outcome.failure = str(exc)
        outcome.exit_code = EXIT_WRITE_ERROR
        if show_errors:
            kind = "warning" if isinstance(exc, BinaryOnTerminal) else "error: output"
            print(f"{kind}: {exc}", file=sys.stderr)
    else:
        if outcome.exit_code == EXIT_HTTP_ERROR and show_errors:
            print(f"error: http: {outcome.failure}", file=sys.stderr)
    if template is not None:
        errormsg = str(outcome.error) if outcome.error is not None else outcome.failure or ""
        facts = writeout.Facts(outcome.response, outcome.size_download, outcome.error, errormsg, outcome.exit_code)
        sys.stdout.flush()
        sys.stdout.buffer.write(writeout.render(template, facts).encode("utf-8", "surrogateescape"))
        sys.stdout.buffer.flush()
    return outcome.exit_code


def _write_out_format(text: str) -> str:
    """``-w FORMAT``, or the format read from ``@FILE`` (``@-``: stdin)."""
    if not text.startswith("@"):
        return text
    data = read_input(text[1:], "-w/--write-out")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"-w/--write-out: {escape_control(text[1:])} is not UTF-8 text") from None
