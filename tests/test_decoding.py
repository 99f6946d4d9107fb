"""Content decoding: :mod:`aiotcp.decoding` fed whole, byte by byte and at hypothesis-chosen splits with real
compressors' output; the bomb guard; the client against the built-in server's compressed routes on asyncio,
uvloop and trio; ``decode=False``; ``get --compressed``; and a 10 GB-decoded bomb measured in a subprocess."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import textwrap
import zlib
from typing import Any

import pytest
from cli_runner import run_cli
from hypothesis import given, settings
from hypothesis import strategies as st

from aiotcp import Client, Limits
from aiotcp.decoding import ACCEPT_ENCODING, DECODERS, STEP, make_decoder
from aiotcp.errors import ProtocolError, TooLarge
from aiotcp.serve import TargetServer

brotli = pytest.importorskip("brotli")
zstandard = pytest.importorskip("zstandard")

pytestmark = pytest.mark.anyio

BACKENDS = ["asyncio", pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"), "trio"]
TEXT = b"".join(b"line %d of a body that compresses as text does; " % n for n in range(20_000))


def compress(encoding: str, data: bytes) -> bytes:
    if encoding == "gzip":
        return gzip.compress(data)
    if encoding == "deflate":
        return zlib.compress(data)
    if encoding == "br":
        return bytes(brotli.compress(data))
    return bytes(zstandard.ZstdCompressor().compress(data))


def decode(encoding: str, body: bytes, cuts: list[int], **caps: Any) -> bytes:
    decoder = make_decoder(encoding, caps.get("max_size"), caps.get("max_ratio"))
    assert decoder is not None
    pieces: list[bytes] = []
    start = 0
    for cut in [*sorted(cuts), len(body)]:
        pieces += decoder.feed(body[start:cut])
        start = cut
    pieces += decoder.end()
    assert all(len(piece) <= STEP for piece in pieces)
    return b"".join(pieces)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd"])
def test_each_coding_decodes_whole_and_byte_by_byte(encoding: str) -> None:
    data = TEXT[:40_000]
    body = compress(encoding, data)
    assert decode(encoding, body, []) == data
    assert decode(encoding, body, list(range(1, len(body)))) == data


@settings(max_examples=60, deadline=None)
@given(encoding=st.sampled_from(["gzip", "deflate", "br", "zstd"]), cuts=st.lists(st.integers(0, 5000), max_size=8))
def test_any_split_decodes_the_same(encoding: str, cuts: list[int]) -> None:
    body = compress(encoding, TEXT)
    assert decode(encoding, body, [cut % len(body) for cut in cuts]) == TEXT


def test_several_gzip_members_and_zstd_frames_decode_whole() -> None:
    members = gzip.compress(b"first ") + gzip.compress(b"second ") + gzip.compress(TEXT)
    assert decode("gzip", members, list(range(0, len(members), 7))) == b"first second " + TEXT
    frames = zstandard.ZstdCompressor().compress(b"one ") + zstandard.ZstdCompressor().compress(TEXT)
    assert decode("zstd", frames, [3, 100]) == b"one " + TEXT


def test_raw_deflate_and_stacked_codings() -> None:
    raw = zlib.compressobj(wbits=-15)
    body = raw.compress(TEXT) + raw.flush()
    assert decode("deflate", body, [1]) == TEXT  # what some servers send as "deflate"
    stacked = brotli.compress(gzip.compress(TEXT))  # Content-Encoding: gzip, br (gzip applied first)
    assert decode("gzip, br", stacked, [10]) == TEXT


def test_what_cannot_be_decoded_is_left_alone() -> None:
    assert make_decoder("identity", None, None) is None
    assert make_decoder("compress", None, None) is None  # unknown coding: the body is kept as it came
    assert make_decoder("gzip, compress", None, None) is None
    assert "gzip" in ACCEPT_ENCODING
    assert set(ACCEPT_ENCODING.split(", ")) <= set(DECODERS)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd"])
def test_corrupt_bodies_are_protocol_errors(encoding: str) -> None:
    body = bytearray(compress(encoding, TEXT))
    if encoding == "br":  # brotli has no checksum: bytes it cannot parse at all
        body = bytearray(b"\xff\xff\xff\xff this is not brotli" * 4)
    elif encoding == "deflate":
        body[len(body) // 2 : len(body) // 2 + 8] = b"\xff" * 8  # the Adler-32 at the end no longer matches
    else:
        body[:4] = b"\x00\x00\x00\x00"  # not a gzip member nor a zstd frame
    with pytest.raises(ProtocolError, match=f"does not decode as {encoding}"):
        decode(encoding, bytes(body), [])


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd"])
def test_a_bomb_is_stopped_after_its_first_64_kib(encoding: str) -> None:
    bomb = compress(encoding, b"\0" * 20_000_000)
    decoder = make_decoder(encoding, None, 100)
    assert decoder is not None
    with pytest.raises(TooLarge, match="decompression bomb"):
        decoder.feed(bomb)
    assert decoder.size <= STEP  # the verdict came with the first piece


def test_the_ratio_is_judged_only_past_64_kib_and_the_size_cap_counts_decoded_bytes() -> None:
    small = gzip.compress(b"\0" * 60_000)  # 600 times smaller, but under 64 KiB decoded
    assert decode("gzip", small, [], max_ratio=100) == b"\0" * 60_000
    with pytest.raises(TooLarge, match=r"decoded body exceeds max_body_bytes \(1000\)"):
        decode("gzip", gzip.compress(TEXT), [], max_size=1000)
    assert decode("gzip", gzip.compress(b"\0" * 1_000_000), [], max_ratio=None) == b"\0" * 1_000_000


# -- the client against the built-in server --------------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    if isinstance(request.param, tuple):
        pytest.importorskip("uvloop")
    return request.param


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd"])
async def test_the_client_decodes_by_default(anyio_backend: Any, shared_server: TargetServer, encoding: str) -> None:
    async with Client(timeout=10) as client:
        plain = await client.get(f"{shared_server.url}/bytes/10")  # not encoded: as is
        response = await client.get(f"{shared_server.url}/{encoding}/300000")
        async with client.stream("GET", f"{shared_server.url}/{encoding}/300000") as streamed:
            pieces = [piece async for piece in streamed.stream()]
    assert plain.content == b"x" * 10
    assert response.headers["content-encoding"] == encoding  # the headers say how it was sent
    assert len(response.content) == 300_000
    assert int(response.headers["content-length"]) < 300_000
    assert response.content.startswith(b"kind ") or response.content[:1].isalpha()
    assert b"".join(pieces) == response.content
    assert max(len(piece) for piece in pieces) <= STEP


async def test_decode_false_keeps_the_bytes_as_sent(anyio_backend: Any, shared_server: TargetServer) -> None:
    async with Client(decode=False, timeout=10) as client:
        raw = await client.get(f"{shared_server.url}/gzip/1000", headers={"Accept-Encoding": "gzip"})
    assert raw.content[:2] == b"\x1f\x8b"
    assert len(gzip.decompress(raw.content)) == 1000


async def test_a_bomb_from_a_server_is_too_large(anyio_backend: Any) -> None:
    from scripted_server import ReadRequest, ScriptedServer, Send, response

    bomb = gzip.compress(b"\0" * 50_000_000)
    reply = response(200, bomb, headers=[("Content-Encoding", "gzip")])
    with ScriptedServer([ReadRequest(), Send(reply)]) as server:
        async with Client(timeout=10) as client:
            with pytest.raises(TooLarge) as caught:
                await client.get(f"{server.url}/")
            assert client.pool.open_connections == 0  # a body that does not decode leaves no connection behind
    assert caught.value.target == f"{server.url}/"
    async with Client(limits=Limits(max_decompression_ratio=None, max_body_bytes=None), timeout=10) as client:
        with ScriptedServer([ReadRequest(), Send(reply)]) as server:
            assert len((await client.get(f"{server.url}/")).content) == 50_000_000  # when asked for


def test_get_leaves_bodies_as_sent_unless_compressed(shared_server: TargetServer) -> None:
    raw = run_cli("get", f"{shared_server.url}/gzip/1000", "-o", "-", "-H", "Accept-Encoding: gzip")
    assert raw.returncode == 0
    assert raw.stdout[:2] == b"\x1f\x8b"  # as curl without --compressed
    done = run_cli("get", "--compressed", f"{shared_server.url}/gzip/1000")
    assert done.returncode == 0
    assert len(done.stdout) == 1000
    echoed = run_cli("get", "--compressed", f"{shared_server.url}/headers")
    assert ACCEPT_ENCODING.encode() in echoed.stdout


# -- 10 GB decoded, in constant memory ---------------------------------------------------------------------------

_BOMB_CHILD = textwrap.dedent(
    """
    import gzip, resource, socket, threading, anyio, aiotcp

    # One gzip member of 16 MiB of zeros (about 16 KB), sent 640 times: 10 GiB decoded, 10 MB on the wire.
    member = gzip.compress(bytes(16 * 1024 * 1024), compresslevel=9)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve():
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Encoding: gzip\\r\\nContent-Length: %d\\r\\n\\r\\n"
                         % (len(member) * 640))
            try:
                for _ in range(640):
                    conn.sendall(member)
            except OSError:
                pass  # the client stopped reading: what it should do

    threading.Thread(target=serve, daemon=True).start()

    async def main():
        async with aiotcp.Client(timeout=30) as client:
            try:
                await client.get(f"http://127.0.0.1:{port}/")
            except aiotcp.TooLarge as exc:
                print("kind", exc.kind)
            async with client.stream("GET", f"http://127.0.0.1:{port}/") as response:
                pass

    anyio.run(main)
    print("peak_kib", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    """
)


@pytest.mark.slow
def test_a_10_gb_bomb_ends_too_large_in_under_20_mb(tmp_path: Any) -> None:
    script = tmp_path / "bomb.py"
    script.write_text(_BOMB_CHILD.replace("async with client.stream", "#"), encoding="utf-8")
    baseline = tmp_path / "baseline.py"
    baseline.write_text(
        "import gzip, resource, socket, threading, anyio, aiotcp\n"
        "member = gzip.compress(bytes(16 * 1024 * 1024), compresslevel=9)\n"
        "print('peak_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n",
        encoding="utf-8",
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "kind too_large" in done.stdout
    floor = subprocess.run([sys.executable, str(baseline)], capture_output=True, text=True, timeout=120, check=False)
    peak = int(done.stdout.split("peak_kib")[1])
    base = int(floor.stdout.split("peak_kib")[1])
    # The process with aiotcp, anyio and the 16 MiB the server side compresses once is the floor; the request
    # adds what it holds.
    assert peak - base < 20 * 1024, (peak, base)


def test_the_prober_decodes_what_a_server_compresses_anyway() -> None:
    from scripted_server import ReadRequest, ScriptedServer, Send, response

    page = gzip.compress(b"<html><head><title>Packed page</title></head><body>...</body></html>")
    reply = response(200, page, headers=[("Content-Type", "text/html"), ("Content-Encoding", "gzip")])
    with ScriptedServer([ReadRequest(), Send(reply)]) as server:
        done = run_cli("probe", "-", "-q", stdin=f"{server.address}\n".encode())
        asked = server.requests(0)[0]
    record = json.loads(done.stdout)
    assert (record["title"], record["content_encoding"]) == ("Packed page", "gzip")
    assert b"\r\nAccept-Encoding: identity\r\n" in asked  # it did not ask for it
