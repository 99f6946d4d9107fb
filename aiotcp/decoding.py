"""Content decoding (``Content-Encoding``): gzip, deflate, br and zstd, streamed, with a decompression-bomb guard.

Theory of operation
-------------------
A :class:`BodyDecoder` is made per response whose ``Content-Encoding`` names codings it can decode (applied in
reverse order, as the server applied them in order). ``feed(raw)`` takes the body as it arrives and returns
decoded pieces; ``end()`` the rest. No I/O and no ``await``: the response drives it with the chunks it reads.

Every codec gives its output in pieces of at most :data:`STEP` (64 KiB) -- zlib through ``max_length``,
brotli through ``output_buffer_limit``, zstandard through a writer that receives ``write_size`` pieces -- and
after each piece the guard checks two caps:

- ``max_size`` (``Limits.max_body_bytes``): the decoded size;
- ``max_ratio`` (``Limits.max_decompression_ratio``): decoded bytes per encoded byte consumed, once at least
  :data:`STEP` bytes came out. A bomb (10 GB of zeros in 10 MB of gzip, or far more with brotli or zstd)
  is stopped after its first 64 KiB of output; a body that decodes to less than 64 KiB is never judged by
  its ratio. The default, 100, is Apache POI's for zip entries; gzip of ordinary text is 3-20.

Either raises :class:`~aiotcp.errors.TooLarge` (kind ``too_large``); bytes a codec cannot decode raise
:class:`~aiotcp.errors.ProtocolError` (kind ``protocol``). To know how much input produced a piece, zlib
reports what it did not consume; brotli and zstandard are fed at most :data:`_SLICE` bytes at a time, so the
count is exact to within that.

gzip may hold several members and zstd several frames, one after the other: both are decoded whole.
``deflate`` is zlib-wrapped (RFC 9110), or raw deflate as some servers send it: tried in that order.
brotli (``brotli`` or ``brotlicffi``) and zstd (``zstandard``) are used when installed: :data:`ACCEPT_ENCODING`
names only the codings that can be decoded here.
"""

from __future__ import annotations

import abc
import zlib
from collections.abc import Callable
from types import ModuleType
from typing import Any, Final

from .errors import ProtocolError, TooLarge

__all__ = ["ACCEPT_ENCODING", "DECODERS", "STEP", "BodyDecoder", "make_decoder"]

#: The most output a codec gives before the guard looks at it.
STEP: Final = 64 * 1024
# Input handed to brotli or zstandard at a time (they do not say how much of a larger piece they used).
_SLICE = 512


def _optional(*names: str) -> ModuleType | None:
    for name in names:
        try:
            return __import__(name)
        except ImportError:
            continue
    return None


_brotli: Any = _optional("brotli", "brotlicffi")
_zstandard: Any = _optional("zstandard")


class _Codec(abc.ABC):
    """One coding's incremental decoder. ``feed`` hands each piece (at most STEP bytes) to ``emit`` with the
    count of input bytes consumed so far; ``emit`` may raise to stop."""

    name = "identity"

    def __init__(self) -> None:
        self.consumed = 0

    @abc.abstractmethod
    def feed(self, data: bytes, emit: Callable[[bytes, int], None]) -> None: ...

    def end(self, emit: Callable[[bytes, int], None]) -> None:  # noqa: B027 - most codecs have nothing left
        """The end of the input: emit what the codec still holds."""

    def fail(self, exc: BaseException) -> ProtocolError:
        return ProtocolError(f"the body does not decode as {self.name}: {exc}")


class _Zlib(_Codec):
    """gzip (members one after the other) and deflate (zlib-wrapped, else raw)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self._wbits = 16 + zlib.MAX_WBITS if name == "gzip" else zlib.MAX_WBITS
        self._decompressor = zlib.decompressobj(self._wbits)
        self._started = False  # whether the first bytes were seen (deflate: which of the two it is)
        self._head = b""  # deflate: the first byte, while the second has not come
        self._done = False  # deflate ended, or gzip's last member ended and trailing bytes are ignored

    def feed(self, data: bytes, emit: Callable[[bytes, int], None]) -> None:
        pending = data
        if not self._started:
            # deflate: a zlib header (RFC 1950: method 8, a check that is a multiple of 31) or raw deflate, as
            # some servers send it; the first two bytes tell.
            pending = self._head = self._head + pending
            if self.name == "deflate":
                if len(pending) < 2:
                    return
                if not (pending[0] & 0x0F == 8 and (pending[0] << 8 | pending[1]) % 31 == 0):
                    self._wbits = -zlib.MAX_WBITS
                    self._decompressor = zlib.decompressobj(self._wbits)
            self._started = True
            self._head = b""
        full = False  # the last call filled STEP: zlib may hold more output, even with all input consumed
        while (pending or full) and not self._done:
            decompressor = self._decompressor
            if decompressor.eof:
                # A gzip member ended: another may follow ("\x1f\x8b", perhaps split over two reads); anything
                # else after the last member (padding) is ignored, as browsers do.
                if self.name == "gzip" and b"\x1f\x8b".startswith(pending[:2]):
                    decompressor = self._decompressor = zlib.decompressobj(self._wbits)
                else:
                    self._done = True
                    return
            try:
                out = decompressor.decompress(pending, STEP)
            except zlib.error as exc:
                raise self.fail(exc) from exc
            # At the end of a member, what follows it is in unused_data (which then holds unconsumed_tail too).
            rest = decompressor.unused_data if decompressor.eof else decompressor.unconsumed_tail
            self.consumed += len(pending) - len(rest)
            pending = rest
            full = len(out) == STEP and not decompressor.eof
            if out:
                emit(out, self.consumed)
            if decompressor.eof and self.name != "gzip":
                self._done = True

    def end(self, emit: Callable[[bytes, int], None]) -> None:
        if not self._done:
            try:
                out = self._decompressor.flush()
            except zlib.error as exc:  # pragma: no cover - flush raises only on a corrupt stream
                raise self.fail(exc) from exc
            for start in range(0, len(out), STEP):
                emit(out[start : start + STEP], self.consumed)


class _Brotli(_Codec):
    name = "br"

    def __init__(self) -> None:
        super().__init__()
        self._decompressor = _brotli.Decompressor()

    def feed(self, data: bytes, emit: Callable[[bytes, int], None]) -> None:
        decompressor = self._decompressor
        try:
            for start in range(0, len(data), _SLICE):
                piece = data[start : start + _SLICE]
                self.consumed += len(piece)
                out = decompressor.process(piece, output_buffer_limit=STEP)
                # The buffer stops growing once past the limit (so a piece may be a little larger than STEP),
                # and the decoder may hold more: ask again, with no input, until it has nothing more to give.
                while out:
                    for start_out in range(0, len(out), STEP):
                        emit(out[start_out : start_out + STEP], self.consumed)
                    out = decompressor.process(b"", output_buffer_limit=STEP)
        except _brotli.error as exc:
            raise self.fail(exc) from exc


class _Zstd(_Codec):
    """zstd, every frame: zstandard's stream writer hands the output to :meth:`write` STEP bytes at a time."""

    name = "zstd"

    def __init__(self) -> None:
        super().__init__()
        self._emit: Callable[[bytes, int], None] | None = None
        self._writer = _zstandard.ZstdDecompressor().stream_writer(self, write_size=STEP)

    def write(self, data: bytes) -> int:
        assert self._emit is not None
        self._emit(bytes(data), self.consumed)
        return len(data)

    def feed(self, data: bytes, emit: Callable[[bytes, int], None]) -> None:
        self._emit = emit
        try:
            for start in range(0, len(data), _SLICE):
                piece = data[start : start + _SLICE]
                self.consumed += len(piece)
                self._writer.write(piece)
        except _zstandard.ZstdError as exc:
            raise self.fail(exc) from exc
        finally:
            self._emit = None


def _gzip() -> _Codec:
    return _Zlib("gzip")


def _deflate() -> _Codec:
    return _Zlib("deflate")


#: The codings that can be decoded here, by name, each a factory of a fresh decoder.
DECODERS: Final[dict[str, Callable[[], _Codec]]] = {"gzip": _gzip, "x-gzip": _gzip, "deflate": _deflate}
if _brotli is not None:
    DECODERS["br"] = _Brotli
if _zstandard is not None:
    DECODERS["zstd"] = _Zstd

#: The ``Accept-Encoding`` the client sends when it decodes: every coding it can decode, best first.
ACCEPT_ENCODING: Final = ", ".join(name for name in ("zstd", "br", "gzip", "deflate") if name in DECODERS)


class BodyDecoder:
    """Decodes one body through one or more codings, within ``max_size`` decoded bytes and ``max_ratio``
    decoded bytes per encoded byte (see the module docstring). Raises :class:`~aiotcp.errors.TooLarge` or
    :class:`~aiotcp.errors.ProtocolError` from :meth:`feed` and :meth:`end`."""

    __slots__ = ("_codecs", "_out", "_stages", "encoding", "max_ratio", "max_size", "received", "size")

    def __init__(self, codecs: list[_Codec], encoding: str, max_size: int | None, max_ratio: float | None) -> None:
        self._codecs = codecs  # in the order they are undone
        self.encoding = encoding
        self.max_size = max_size
        self.max_ratio = max_ratio
        self.received = 0  # encoded bytes fed
        self.size = 0  # decoded bytes given out
        self._out: list[bytes] = []
        self._stages = [self._stage(index) for index in range(len(codecs))]

    def __repr__(self) -> str:
        return f"<BodyDecoder {self.encoding} received={self.received} size={self.size}>"

    def _stage(self, index: int) -> Callable[[bytes, int], None]:
        """What codec ``index`` hands its output to: the next codec, or the guard and the output."""
        if index + 1 < len(self._codecs):
            following = self._codecs[index + 1]
            after = self._stage(index + 1)

            def onward(piece: bytes, consumed: int) -> None:
                following.feed(piece, after)

            return onward
        first = self._codecs[0]

        def out(piece: bytes, consumed: int) -> None:
            size = self.size = self.size + len(piece)
            if self.max_size is not None and size > self.max_size:
                raise TooLarge(f"decoded body exceeds max_body_bytes ({self.max_size})")
            ratio = self.max_ratio
            if ratio is not None and size >= STEP and size > ratio * max(first.consumed, 1):
                raise TooLarge(
                    f"the {self.encoding} body decodes to more than {ratio:g} times its size ({size} bytes from "
                    f"{first.consumed}, stopped there): a decompression bomb? (Limits.max_decompression_ratio)"
                )
            self._out.append(piece)

        return out

    def feed(self, data: bytes) -> list[bytes]:
        """The decoded pieces ``data`` (the next encoded bytes) gives, possibly none."""
        self.received += len(data)
        self._codecs[0].feed(data, self._stages[0])
        out, self._out = self._out, []
        return out

    def end(self) -> list[bytes]:
        """The last decoded pieces, once the encoded body has ended."""
        for codec, stage in zip(self._codecs, self._stages, strict=True):
            codec.end(stage)
        out, self._out = self._out, []
        return out


def make_decoder(encoding: str, max_size: int | None, max_ratio: float | None) -> BodyDecoder | None:
    """A decoder for a ``Content-Encoding`` value, or None when there is nothing to decode or a coding cannot be
    decoded here (the body is then kept as it came)."""
    names = [name.strip().lower() for name in encoding.split(",")]
    names = [name for name in names if name and name != "identity"]
    if not names or any(name not in DECODERS for name in names):
        return None
    return BodyDecoder([DECODERS[name]() for name in reversed(names)], ", ".join(names), max_size, max_ratio)
