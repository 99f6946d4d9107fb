"""Local faults: our own limits failing us must be kind ``local`` -- never blamed on the target.

* EMFILE, for real: a child process lowers RLIMIT_NOFILE once its event loop runs and takes every descriptor
  left, then calls ``aiotcp.get`` and the probe. The probe retries ``local`` with back-off (even with
  ``retries=0``) and reports it as ``local``; when descriptors come back mid-way, the target gets its answer.
* Ephemeral port exhaustion (EADDRNOTAVAIL), for real: a child runs in a network namespace of its own
  (``unshare -rn``: a user namespace makes it unprivileged where the kernel allows it), where it may narrow
  ``net.ipv4.ip_local_port_range`` to two ports and hold connections from them to a loopback listener, so
  the next connect to that listener finds no source port. Where namespaces are not allowed the test is
  skipped, saying so; the errno mapping itself is covered by tests/test_errors.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest
from hostile_table import BY_NAME, SLACK

from aiotcp.serve import TargetServer

RUN_TIMEOUT_S = 40.0

_COMMON = textwrap.dedent(
    """
    import contextlib, json, os, resource, sys, time
    import anyio, aiotcp
    from aiotcp.probe import probe_many

    def fds():  # without opening a descriptor (listing /proc/self/fd would need one)
        count = 0
        for fd in range(resource.getrlimit(resource.RLIMIT_NOFILE)[0]):
            try:
                os.fstat(fd)
            except OSError:
                continue
            count += 1
        return count

    async def timed_get(url):
        started = time.perf_counter()
        try:
            await aiotcp.get(url, timeout=aiotcp.Timeouts(connect=2, read=2, total=3))
        except aiotcp.AiotcpError as exc:
            return {"kind": exc.kind, "target": exc.target, "message": exc.message,
                    "elapsed": time.perf_counter() - started}
        return {"kind": "ok", "elapsed": time.perf_counter() - started}

    async def timed_probe(target, timeout):
        started = time.perf_counter()
        async with contextlib.aclosing(probe_many([target], timeout=timeout, backoff=0.05)) as results:
            (record,) = [r async for r in results]
        return {"error": record.error, "attempts": record.attempts, "status": record.status_code,
                "message": record.error_message, "elapsed": time.perf_counter() - started}
    """
)

EMFILE_CHILD = _COMMON + textwrap.dedent(
    """
    async def main(host, port):
        url = f"http://{host}:{port}/"
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        files = []
        for _ in range(64):
            try:
                files.append(open("/dev/null", "rb"))
            except OSError:
                break
        held = fds()
        out = {"get": await timed_get(url), "probe": await timed_probe(f"{host}:{port}", 1.5)}
        out["fds_held"], out["fds_after"] = held, fds()

        async def give_back():  # descriptors come back while the probe backs off
            await anyio.sleep(0.3)
            for file in files:
                file.close()

        async with anyio.create_task_group() as group:
            group.start_soon(give_back)
            out["recovered"] = await timed_probe(f"{host}:{port}", 5)
        print(json.dumps(out))

    anyio.run(main, sys.argv[1], int(sys.argv[2]), backend=sys.argv[3])
    """
)

PORTS_CHILD = _COMMON + textwrap.dedent(
    """
    import errno, fcntl, socket, struct

    def loopback_up():
        SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            flags = struct.unpack("16sh", fcntl.ioctl(sock, SIOCGIFFLAGS, struct.pack("16sh", b"lo", 0)))[1]
            fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sh", b"lo", flags | IFF_UP))

    async def main(backend_name):
        loopback_up()
        with open("/proc/sys/net/ipv4/ip_local_port_range", "w") as file:
            file.write("40000 40001")
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        port = listener.getsockname()[1]
        held = []
        for _ in range(16):  # two ports in the range: a couple of connects take them all
            sock = socket.socket()
            try:
                sock.connect(("127.0.0.1", port))
            except OSError as exc:
                sock.close()
                assert exc.errno == errno.EADDRNOTAVAIL, exc
                break
            held.append(sock)
        else:
            raise AssertionError("the port range did not run out")
        out = {"held": len(held), "get": await timed_get(f"http://127.0.0.1:{port}/"),
               "probe": await timed_probe(f"127.0.0.1:{port}", 1.5)}
        for sock in held:
            sock.close()
        listener.close()
        print(json.dumps(out))

    anyio.run(main, sys.argv[1], backend=sys.argv[1])
    """
)


def run_child(args: list[str]) -> dict[str, Any]:
    done = subprocess.run(args, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr  # -W error: a ResourceWarning or any other would show here
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def check_local_get(result: dict[str, Any], url: str) -> None:
    assert result["kind"] == "local", result
    assert result["target"] == url, result
    assert "client-side limit" in result["message"], result
    assert result["elapsed"] <= 3 + SLACK, result


def check_local_probe(result: dict[str, Any], timeout: float) -> None:
    # Retried with back-off within the target's deadline, and reported as ours.
    assert result["error"] == "local", result
    assert result["attempts"] >= 2, result
    assert result["elapsed"] <= timeout + SLACK, result


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_emfile_is_local_and_retried(backend: str, shared_server: TargetServer, reliability: Any) -> None:
    labels = [f"{name}[{backend}]" for name in ("emfile-get", "emfile-probe")]
    for label in labels:
        reliability.start(label)
    started = time.perf_counter()
    host, port = "127.0.0.1", shared_server.port
    out = run_child([sys.executable, "-W", "error", "-c", EMFILE_CHILD, host, str(port), backend])
    check_local_get(out["get"], f"http://{host}:{port}/")
    reliability.survive(labels[0], out["get"]["elapsed"] - 3)
    check_local_probe(out["probe"], 1.5)
    assert out["fds_after"] == out["fds_held"], out  # nothing leaked while failing
    recovered = out["recovered"]
    assert (recovered["error"], recovered["status"]) == (None, 200), recovered  # once descriptors came back
    assert recovered["attempts"] >= 2, recovered
    reliability.survive(labels[1], out["probe"]["elapsed"] - 1.5)
    assert BY_NAME["emfile-get"].expect == BY_NAME["emfile-probe"].expect == "local"
    assert time.perf_counter() - started < RUN_TIMEOUT_S


def _namespace_command() -> list[str] | None:
    """A command prefix that runs a child in a network namespace of its own, or None where none is allowed."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    for prefix in ([unshare, "-rn"], [unshare, "-n"]):
        try:
            probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=10, check=False)
        except (OSError, subprocess.SubprocessError):
            continue
        if probe.returncode == 0:
            return prefix
    return None


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_ephemeral_port_exhaustion_is_local(backend: str, reliability: Any) -> None:
    prefix = _namespace_command()
    if prefix is None:
        pytest.skip(
            "needs a network namespace (unshare -rn or root) to narrow ip_local_port_range without touching the "
            "host; unprivileged user namespaces are off here (the EADDRNOTAVAIL mapping is in test_errors.py)"
        )
    labels = [f"{name}[{backend}]" for name in ("ephemeral-ports-exhausted-get", "ephemeral-ports-exhausted-probe")]
    for label in labels:
        reliability.start(label)
    out = run_child([*prefix, sys.executable, "-W", "error", "-c", PORTS_CHILD, backend])
    assert out["held"] >= 1, out
    assert "Cannot assign requested address" in out["get"]["message"], out
    check_local_get(out["get"], out["get"]["target"])
    reliability.survive(labels[0], out["get"]["elapsed"] - 3)
    check_local_probe(out["probe"], 1.5)
    reliability.survive(labels[1], out["probe"]["elapsed"] - 1.5)
