"""Keep-alive in a process with more than 1024 descriptors open (a prober's or a server's everyday state).

Whether a pooled connection is still usable is checked by peeking at its socket; ``select.select`` cannot
take a descriptor of 1024 or more (FD_SETSIZE) and raises ValueError -- which must not read as "the peer
closed it", or no connection would ever be reused there.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator
from typing import Any

import pytest
from scripted_server import ReadRequest, Repeat, ScriptedServer, Send, response

from aiotcp import Client, Timeouts

pytestmark = pytest.mark.anyio

HIGH = 1100


@pytest.fixture
def many_fds() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < HIGH + 64:
        pytest.skip(f"the hard RLIMIT_NOFILE ({hard}) does not allow {HIGH} descriptors")
    if soft < HIGH + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (HIGH + 64, hard))
    fillers: list[int] = []
    try:
        with open(os.devnull, "rb") as devnull:
            while len(fillers) < HIGH:
                fillers.append(os.dup(devnull.fileno()))
        yield
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_keep_alive_with_descriptors_above_fd_setsize(
    anyio_backend: str, many_fds: None, reliability: Any
) -> None:
    label = f"keepalive-above-fd-setsize[h11,whole,{anyio_backend}]"
    reliability.start(label)
    with ScriptedServer([Repeat([ReadRequest(), Send(response(200, b"again"))], 5)]) as server:
        async with Client(timeout=Timeouts(total=5)) as client:
            for _ in range(3):
                assert (await client.get(f"{server.url}/")).content == b"again"
            assert client.pool.reused == 2, client.pool
        assert server.connections_accepted == 1
    reliability.survive(label)
