"""``-w/--write-out FORMAT`` of ``aiotcp get``: curl's variables, taken from the library's own figures.

A format is text with ``%{name}`` variables, ``%header{Name}`` (a header of the final response), ``%%`` and
the escapes ``\\n``, ``\\r``, ``\\t``, ``\\\\``. It is parsed once, before anything is sent, so an unknown
variable is a usage error rather than a silent blank.

Times are seconds with six decimals, as curl prints them, made from :class:`~aiotcp.response.Timings` (the
library's milliseconds) of the final hop: ``time_namelookup`` is its ``dns_ms``, ``time_connect`` adds
``connect_ms``, ``time_appconnect`` adds ``tls_ms`` (0 without TLS), ``time_starttransfer`` is its
``ttfb_ms``. ``time_redirect`` is the sum of the ``total_ms`` of the redirect hops before it, and
``time_total`` that plus the final hop's ``total_ms``. A phase that did not run (a reused connection) is 0.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import AiotcpError
from ..response import Response
from ..text import escape_control
from .common import UsageError

__all__ = ["SUMMARY", "VARIABLES", "Facts", "parse", "render", "variables"]


@dataclass(frozen=True, slots=True)
class Facts:
    """What a transfer ended with, beyond the response: the body bytes written, the error, the exit code."""

    response: Response | None
    size_download: int
    error: AiotcpError | None
    errormsg: str
    exit_code: int


def _seconds(ms: float | None) -> str:
    return f"{(ms or 0.0) / 1000.0:.6f}"


def _phase_sum(response: Response | None, *names: str) -> str:
    if response is None:
        return _seconds(0.0)
    timings = response.timings
    return _seconds(sum(getattr(timings, name) or 0.0 for name in names))


def _redirect_ms(response: Response | None) -> float:
    return sum(hop.timings.total_ms or 0.0 for hop in response.history) if response is not None else 0.0


def _appconnect(f: Facts) -> str:
    if f.response is None or f.response.timings.tls_ms is None:
        return _seconds(0.0)
    return _phase_sum(f.response, "dns_ms", "connect_ms", "tls_ms")


def _content_type(f: Facts) -> str:
    return f.response.headers.get("content-type", "") if f.response is not None else ""


#: name -> (what it is, how it is made). ``--help`` and the README list these names.
VARIABLES: dict[str, tuple[str, Callable[[Facts], str]]] = {
    "http_code": ("status code of the final response (000 if none)",
                  lambda f: f"{f.response.status_code:03d}" if f.response else "000"),
    "response_code": ("same as http_code", lambda f: f"{f.response.status_code:03d}" if f.response else "000"),
    "http_version": ("1.1 or 1.0", lambda f: f.response.http_version if f.response else ""),
    "time_namelookup": ("DNS, seconds", lambda f: _phase_sum(f.response, "dns_ms")),
    "time_connect": ("DNS + TCP connect", lambda f: _phase_sum(f.response, "dns_ms", "connect_ms")),
    "time_appconnect": ("DNS + TCP + TLS handshake (0 without TLS)", _appconnect),
    "time_starttransfer": ("to the first byte of the response",
                           lambda f: _phase_sum(f.response, "ttfb_ms")),
    "time_redirect": ("spent in the redirects before the final request", lambda f: _seconds(_redirect_ms(f.response))),
    "time_total": ("the whole transfer",
                   lambda f: _seconds(_redirect_ms(f.response) + ((f.response.timings.total_ms or 0.0)
                                                                   if f.response else 0.0))),
    "size_download": ("body bytes written", lambda f: str(f.size_download)),
    "remote_ip": ("address connected to", lambda f: f.response.peer[0] if f.response and f.response.peer else ""),
    "remote_port": ("port connected to",
                    lambda f: str(f.response.peer[1]) if f.response and f.response.peer else ""),
    "num_redirects": ("redirects followed", lambda f: str(len(f.response.history)) if f.response else "0"),
    "url_effective": ("URL of the final request", lambda f: f.response.url if f.response else ""),
    "method": ("method of the final request", lambda f: f.response.method if f.response else ""),
    "content_type": ("Content-Type of the final response", _content_type),
    "exitcode": ("the exit code", lambda f: str(f.exit_code)),
    "errormsg": ("the error message (empty on success)", lambda f: f.errormsg),
    "error_kind": ("aiotcp's error kind (empty on success)", lambda f: f.error.kind if f.error else ""),
}  # fmt: skip

SUMMARY = "%%{" + "}, %%{".join(VARIABLES) + "}, %%header{NAME}"

_TOKEN = re.compile(r"%\{([^}]*)\}|%header\{([^}]*)\}|%%|\\([nrt\\])")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\"}

#: A parsed format: literal text, ``("var", name)`` or ``("header", name)``.
Piece = str | tuple[str, str]


def parse(text: str) -> list[Piece]:
    """Parse a ``-w`` format. Raises UsageError naming an unknown variable."""
    pieces: list[Piece] = []
    position = 0
    for match in _TOKEN.finditer(text):
        pieces.append(text[position : match.start()])
        position = match.end()
        variable, header, escape = match.group(1), match.group(2), match.group(3)
        if variable is not None:
            if variable not in VARIABLES:
                raise UsageError(f"-w/--write-out: unknown variable %{{{variable}}}; known: {', '.join(VARIABLES)}")
            pieces.append(("var", variable))
        elif header is not None:
            pieces.append(("header", header))
        elif escape is not None:
            pieces.append(_ESCAPES[escape])
        else:
            pieces.append("%")
    pieces.append(text[position:])
    return [piece for piece in pieces if piece != ""]


def variables(facts: Facts) -> dict[str, str]:
    """Every variable's value for one transfer."""
    return {name: make(facts) for name, (_, make) in VARIABLES.items()}


def render(pieces: list[Piece], facts: Facts) -> str:
    """The format with every variable filled in; what the server chose (a header, an error message quoting
    it) has its control characters escaped, as everywhere aiotcp prints server text."""
    values = variables(facts)
    out: list[str] = []
    for piece in pieces:
        if isinstance(piece, str):
            out.append(piece)
        elif piece[0] == "var":
            out.append(escape_control(values[piece[1]]))
        elif facts.response is not None:
            out.append(escape_control(", ".join(facts.response.headers.get_all(piece[1]))))
    return "".join(out)
