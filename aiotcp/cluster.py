"""Dask, shared by the jobs that run on it (``aiotcp probe --dask``, ``aiotcp bench --dask``): what
``--dask`` names (:class:`DaskTarget`), connecting to a scheduler or starting a local cluster on loopback
(:func:`connect`), and the check that every worker runs this aiotcp.

Dask is imported only inside the functions that need it: ``import aiotcp`` never pulls it in.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from distributed import Client

__all__ = [
    "DaskError",
    "DaskTarget",
    "DaskUnavailable",
    "check_workers",
    "connect",
    "import_distributed",
    "local_cluster_options",
    "parse_dask_target",
]

_CONNECT_TIMEOUT_S = 30.0
_CLOSE_TIMEOUT_S = 10.0
_LOCAL = re.compile(r"local(?::([1-9][0-9]{0,3}))?")


class DaskError(Exception):
    """A run on Dask could not start or finish. A target's own failures are records or counts, never this."""


class DaskUnavailable(DaskError):
    """Dask is not installed: ``pip install 'aiotcp[dask]'``."""


def import_distributed() -> ModuleType:
    try:
        import distributed
    except ImportError as exc:
        raise DaskUnavailable(f"Dask is not installed ({exc}): pip install 'aiotcp[dask]'") from exc
    return distributed


def _worker_version() -> str:
    return __version__


def check_workers(client: Client) -> None:
    """Raise :class:`DaskError` unless every worker of ``client`` runs this version of aiotcp."""
    try:
        versions: dict[str, str] = client.run(_worker_version)
    except Exception as exc:
        raise DaskError(
            f"the Dask workers cannot run aiotcp ({type(exc).__name__}: {exc}); "
            f"install aiotcp[dask] {__version__} on every worker"
        ) from exc
    wrong = {worker: version for worker, version in versions.items() if version != __version__}
    if wrong:
        raise DaskError(f"workers run another aiotcp version than this client's {__version__}: {wrong}")


@dataclass(frozen=True, slots=True)
class DaskTarget:
    """What ``--dask`` names: a scheduler ``address``, or a LocalCluster of ``workers`` processes on loopback.

    Raises ``ValueError`` unless exactly one is given (and ``workers >= 1``).
    """

    address: str | None = None
    workers: int | None = None

    def __post_init__(self) -> None:
        if (self.address is None) == (self.workers is None):
            raise ValueError("give a scheduler address or a number of local workers, not both or neither")
        if self.workers is not None and not (type(self.workers) is int and self.workers >= 1):
            raise ValueError(f"local workers must be at least 1, got {self.workers!r}")
        if self.address is not None and (not self.address or any(c.isspace() for c in self.address)):
            raise ValueError(f"invalid Dask scheduler address {self.address!r}")

    def __str__(self) -> str:
        return f"local:{self.workers}" if self.address is None else self.address


def parse_dask_target(text: str) -> DaskTarget:
    """``local:W`` (``local``: one worker per CPU), else a scheduler address such as ``tcp://192.0.2.5:8786``.

    Raises ``ValueError`` quoting ``text``.
    """
    match = _LOCAL.fullmatch(text)
    if match is not None:
        return DaskTarget(workers=int(match.group(1)) if match.group(1) else (os.cpu_count() or 1))
    if text.startswith("local"):
        raise ValueError(f"--dask {text!r}: write local:W with W from 1 to 9999 workers")
    try:
        return DaskTarget(address=text)
    except ValueError as exc:
        raise ValueError(f"--dask {text!r}: {exc}") from None


def local_cluster_options(workers: int) -> dict[str, Any]:
    """The ``LocalCluster`` keywords of ``--dask local:W``: W worker processes of one thread each, everything
    on 127.0.0.1 and free ports."""
    return {
        "n_workers": workers,
        "threads_per_worker": 1,
        "processes": True,
        "host": "127.0.0.1",
        "scheduler_port": 0,
        "dashboard_address": None,
        "worker_dashboard_address": None,
        # No dashboard; the scheduler's remaining HTTP routes (health, metrics) on loopback and a free port,
        # not its default 8787, which another cluster on this machine may hold.
        "scheduler_kwargs": {"dashboard": False, "dashboard_address": "127.0.0.1:0"},
    }


@contextlib.contextmanager
def connect(target: DaskTarget, *, timeout: float = _CONNECT_TIMEOUT_S) -> Iterator[Client]:
    """A synchronous Client for ``target`` with at least one worker that runs this aiotcp; on exit the client
    is closed and a local cluster stopped.

    ``local:W`` starts W worker processes, one thread each, with the scheduler and workers bound to
    127.0.0.1 and no dashboard.

    Raises:
        DaskUnavailable: Dask is not installed.
        DaskError: the scheduler cannot be reached, no worker (for ``local:W``: not all W) joins within
            ``timeout`` seconds, or a worker cannot run this version of aiotcp.
    """
    distributed = import_distributed()
    with contextlib.ExitStack() as stack:
        where: Any = target.address
        if target.workers is not None:
            try:
                cluster = distributed.LocalCluster(**local_cluster_options(target.workers))
            except Exception as exc:  # whatever stopped a process or a port: the user needs the sentence
                raise DaskError(f"cannot start a local Dask cluster of {target.workers} workers: {exc}") from exc
            where = stack.enter_context(cluster)
        try:
            client = distributed.Client(where, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            raise DaskError(f"cannot reach the Dask scheduler at {target}: {exc}") from exc
        stack.callback(client.close, _CLOSE_TIMEOUT_S)
        wanted = target.workers or 1  # a local cluster starts all its workers; a remote one, whoever is there
        try:
            client.wait_for_workers(wanted, timeout=timeout)
        except TimeoutError as exc:
            raise DaskError(f"fewer than {wanted} Dask workers joined {target} within {timeout:g} s") from exc
        check_workers(client)
        yield client
