"""Running the ``aiotcp`` command for real in tests: ``python -W error -m aiotcp ARGS`` in a subprocess, with
stdin closed unless given (``tcp`` reads stdin when ``--send`` is absent)."""

from __future__ import annotations

import subprocess
import sys

PROCESS_TIMEOUT = 30.0


def run_cli(
    *args: str, stdin: bytes | None = None, timeout: float = PROCESS_TIMEOUT
) -> subprocess.CompletedProcess[bytes]:
    """``python -W error -m aiotcp ARGS``; warnings (ResourceWarning included) fail the command. Nothing the
    command prints may be a Python traceback."""
    done = subprocess.run(
        [sys.executable, "-W", "error", "-m", "aiotcp", *args],
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    assert b"Traceback" not in done.stderr, done.stderr.decode("utf-8", "replace")
    return done


def text(data: bytes) -> str:
    return data.decode("utf-8")
