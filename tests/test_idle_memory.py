"""What an idle connection costs the Trio server in Python memory.

W7 in the benchmarks measures it as RSS (the goal is at most 4 KiB per idle
connection); this test pins the Python part down with tracemalloc, which is
exact and does not depend on the allocator's mood: what the server allocates
for a few hundred connections that connected and said nothing, divided by
their number. A coroutine frame or a closure more per waiting connection
(each a few hundred bytes) breaks the bound.
"""

from __future__ import annotations

import gc
import socket
import sys
import tracemalloc

import pytest
import trio
import trio.testing
from loopback import HOST, server_config

from trio_echo import TrioServer
from trio_echo.connection_log import LoggingSink

CONNECTIONS = 300
BATCH = 50
BOUND = 3584
"""Bytes per idle connection: 3.5 KiB, measured at about 3.2 KiB on CPython 3.11."""

pytestmark = pytest.mark.skipif(
    sys.version_info[:2] != (3, 11), reason="the bound is CPython 3.11's object sizes"
)


async def connected(server: TrioServer, port: int, count: int) -> list[socket.socket]:
    """*count* clients connected to *port*, each accepted and waiting in the server.

    They connect in batches the listen backlog holds; a loopback connect is
    complete as it returns, so each batch is accepted once the server's tasks
    have run (the loop only repeats if the kernel was slower than that).
    """
    clients: list[socket.socket] = []
    while len(clients) < count:
        batch = min(BATCH, count - len(clients))
        target = server.active_connections + batch
        for _ in range(batch):
            client = socket.socket()
            client.setblocking(False)
            client.connect_ex((HOST, port))
            clients.append(client)
        while server.active_connections < target:
            await trio.testing.wait_all_tasks_blocked()
    return clients


async def test_an_idle_connection_costs_the_server_under_three_and_a_half_kib() -> None:
    server = TrioServer(server_config(idle_timeout=600.0), sink=LoggingSink())
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            (address,) = await nursery.start(server.run)
            warm = await connected(server, address.port, 20)
            gc.collect()
            tracemalloc.start()
            try:
                before = tracemalloc.take_snapshot()
                clients = await connected(server, address.port, CONNECTIONS)
                gc.collect()
                after = tracemalloc.take_snapshot()
            finally:
                tracemalloc.stop()
            nursery.cancel_scope.cancel()
    for client in warm + clients:
        client.close()
    here = tracemalloc.Filter(False, __file__)
    growth = sum(
        stat.size_diff
        for stat in after.filter_traces([here]).compare_to(before.filter_traces([here]), "filename")
    )
    assert growth / CONNECTIONS < BOUND
