"""What the probe's facts cost: records/s over https targets with TLS facts and fingerprints on and off, side
by side, and the CPU one certificate costs to parse and verify when no other target shares it.

    python benchmarks/bench_facts.py                 # 2,000 https targets, 3 rounds, on/off alternating
    python benchmarks/bench_facts.py --targets 5000 --rounds 5

The server (one asyncio TLS server on 127.0.0.1, a certificate from a local trustme CA, in its own process)
answers each request with a small HTML page and closes. Every target is a new connection and a new handshake.
All the targets share one certificate, so after the first the verdict comes from the cache; the per-certificate
line says what each new certificate costs on top (parse + verify against the CA, no cache).

For the plaintext 10,000-target list (fingerprints only) see ``benchmarks/bench_probe.py --probe-args=--no-facts``.
Traffic stays on 127.0.0.1; every run is bounded by the number of targets.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import ssl
import sys
import tempfile
import time
from typing import Any

BODY = b"<html><head><title>bench</title></head><body>" + b"x" * 600 + b"</body></html>"
REPLY = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY


def _serve(cert_dir: str, ports: multiprocessing.Queue, stop: multiprocessing.Event) -> None:  # type: ignore[type-arg]
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(os.path.join(cert_dir, "server.pem"))

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(REPLY)
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context, backlog=1024)
        ports.put(server.sockets[0].getsockname()[1])
        await asyncio.get_running_loop().run_in_executor(None, stop.wait)
        server.close()

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())


async def probe_all(lines: list[str], facts: bool, ca: str) -> tuple[float, float, int]:
    """Wall seconds, the prober's CPU seconds (the server runs in another process) and the records ok."""
    from aiotcp.probe import probe_many

    started, cpu = time.perf_counter(), time.process_time()
    ok = 0
    async for result in probe_many(lines, concurrency=50, timeout=10, facts=facts, ca=ca):
        ok += result.ok and (result.cert_verify_error is None or not facts)
    return time.perf_counter() - started, time.process_time() - cpu, ok


def per_certificate_cost(ca: Any, count: int = 200) -> float:
    """Microseconds to parse and verify a certificate no earlier target had (no cache helps)."""
    from aiotcp.tlsfacts import parse_certificate, verify_chain

    with tempfile.NamedTemporaryFile(suffix=".pem") as bundle:
        bundle.write(ca.cert_pem.bytes())
        bundle.flush()
        leaves = [
            ssl.PEM_cert_to_DER_cert(ca.issue_cert(f"h{i}.test").cert_chain_pems[0].bytes().decode())
            for i in range(count)
        ]
        verify_chain((leaves[0],), "h0.test", bundle.name)  # the store is loaded once per run
        started = time.perf_counter()
        for i, der in enumerate(leaves):
            parse_certificate(der)
            assert verify_chain((der,), f"h{i}.test", bundle.name) is None
        return (time.perf_counter() - started) / count * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import trustme

    ca = trustme.CA()
    with tempfile.TemporaryDirectory() as tmp:
        ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(os.path.join(tmp, "server.pem"))
        ca_file = os.path.join(tmp, "ca.pem")
        ca.cert_pem.write_to_path(ca_file)
        ports: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
        stop = multiprocessing.Event()
        server = multiprocessing.Process(target=_serve, args=(tmp, ports, stop), daemon=True)
        server.start()
        try:
            port = ports.get(timeout=30)
            lines = [f"https://127.0.0.1:{port}/"] * args.targets
            print(f"# {args.targets:,} https targets, concurrency 50, one certificate, python {sys.version.split()[0]}")
            rates: dict[bool, list[float]] = {True: [], False: []}
            cpus: dict[bool, list[float]] = {True: [], False: []}
            for round_ in range(1, args.rounds + 1):
                for facts in (False, True):
                    wall, cpu, ok = asyncio.run(probe_all(lines, facts, ca_file))
                    rates[facts].append(args.targets / wall)
                    cpus[facts].append(cpu / args.targets * 1e6)
                    label = "facts on " if facts else "facts off"
                    print(
                        f"round {round_} {label}: {wall:.2f} s, {args.targets / wall:,.0f} records/s, "
                        f"prober CPU {cpu / args.targets * 1e6:,.0f} µs/record, {ok:,} ok"
                    )
            best_on, best_off = max(rates[True]), max(rates[False])
            print(f"best: on {best_on:,.0f} records/s, off {best_off:,.0f} records/s, on/off {best_on / best_off:.3f}")
            low_on, low_off = min(cpus[True]), min(cpus[False])
            print(
                f"least prober CPU: on {low_on:,.0f} µs/record, off {low_off:,.0f} µs/record, "
                f"on/off {low_on / low_off:.3f}"
            )
        finally:
            stop.set()
            server.join(timeout=10)
            if server.is_alive():
                server.kill()
        print(f"a certificate no other target shares: {per_certificate_cost(ca):,.0f} µs to parse and verify")
    return 0


if __name__ == "__main__":
    sys.exit(main())
