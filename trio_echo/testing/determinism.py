"""The determinism self-check: run a test twice with one seed, fail if the runs differ.

madsim's ``MADSIM_TEST_CHECK_DETERMINISM`` for Trio code on the simulated
network. :func:`traffic_digest` sums up what a run did on the network (every
TCP connection's key, addresses and the bytes delivered each way, the
datagrams delivered, and the virtual time the run ended at);
:func:`check_determinism` runs a test body in fresh Trio runs on virtual time
with the same seed and raises :class:`NondeterminismError` if two digests
differ, naming the seed and the command that replays it. What it catches is
what the simulation cannot fix: code that reads real time, an unseeded
``random``, iteration over a set of objects hashed by identity.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Awaitable, Callable

import trio
import trio.testing

from .faults import NO_FAULTS, Faults
from .links import NO_DATAGRAM_FAULTS, DatagramFaults
from .network import SimulatedNetwork
from .sockets import Installed, install

__all__ = ["NondeterminismError", "check_determinism", "traffic_digest"]


class NondeterminismError(AssertionError):
    """Two runs with the same seed did different things on the network."""


def traffic_digest(installed: Installed) -> str:
    """A SHA-256 hex digest of everything the run sent over the network, and when it ended."""
    digest = hashlib.sha256()

    def field(data: bytes) -> None:
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)

    for connection in installed.network.connections:
        field(connection.key.encode("utf-8", "surrogateescape"))
        field(str(connection.client.address).encode())
        field(str(connection.server.address).encode())
        field(bytes(connection.to_server))
        field(bytes(connection.to_client))
    field(str(installed.datagrams.delivered).encode())
    field(repr(trio.current_time()).encode())
    return digest.hexdigest()


def _replay_command(seed: int) -> str:
    """The command that reruns the current pytest test with *seed*."""
    current = os.environ.get("PYTEST_CURRENT_TEST", "")
    test = current.rsplit(" ", 1)[0] if current else "<test>"
    return f"pytest '{test}' --simnet-seed {seed}"


def _one_run(
    body: Callable[[Installed], Awaitable[None]],
    seed: int,
    faults: Faults,
    datagram_faults: DatagramFaults,
) -> str:
    async def main() -> str:
        installed = install(
            SimulatedNetwork(seed=seed, faults=faults), datagram_faults=datagram_faults
        )
        await body(installed)
        return traffic_digest(installed)

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def check_determinism(
    body: Callable[[Installed], Awaitable[None]],
    *,
    seed: int = 0,
    runs: int = 2,
    faults: Faults = NO_FAULTS,
    datagram_faults: DatagramFaults = NO_DATAGRAM_FAULTS,
) -> str:
    """Run *body* on a fresh simulated network *runs* times with *seed*; the digest.

    Each run is its own ``trio.run`` on an autojump clock with the network
    installed; *body* gets the :class:`Installed` network. Raises
    :class:`NondeterminismError` (seed and replay command included) at the
    first run whose digest differs from the first one's.
    """
    first = _one_run(body, seed, faults, datagram_faults)
    for number in range(2, runs + 1):
        again = _one_run(body, seed, faults, datagram_faults)
        if again != first:
            raise NondeterminismError(
                f"seed {seed}: run {number} differs from run 1 "
                f"(traffic digest {again[:12]} != {first[:12]}); "
                f"replay: {_replay_command(seed)}"
            )
    return first
