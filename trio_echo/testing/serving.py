"""Either driver's server, running for the length of an ``async with`` block.

:func:`serve` starts a :class:`~trio_echo.TrioServer` or a
:class:`~trio_echo.BlockingServer` on real sockets, or on a given
:class:`~trio_echo.testing.network.SimulatedNetwork`, with an
:class:`~trio_echo.testing.recorder.EventRecorder` as its sink, and yields a
:class:`Serving`: where it listens, the server itself, what it reported.
A test is written once and run against both drivers.

The blocking server's calls that wait (``shutdown``, ``wait``) never run on
the Trio loop: on sockets they go to a worker thread
(``trio.to_thread.run_sync``), in simulation to a virtual thread
(:meth:`~trio_echo.testing.runtime.VirtualRuntime.run_in_thread`), so the
Trio tasks of the test keep running meanwhile.
"""

from __future__ import annotations

import abc
import contextlib
import enum
import functools
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import trio

from ..address import Address
from ..blocking_driver import BlockingServer
from ..codec import ServerCodec
from ..config import ServerConfig
from ..connection_log import ServerStats
from ..trio_driver import TrioServer
from .network import SimulatedNetwork
from .recorder import EventRecorder
from .runtime import VirtualRuntime, virtual_runtime

__all__ = ["CLEANUP_SECONDS", "Driver", "Serving", "serve"]

T = TypeVar("T")

CLEANUP_SECONDS = 10.0
"""Bound on stopping a server when its block raised: the exception must not wait on it."""


class Driver(enum.Enum):
    """Which implementation serves (and, in a scenario, whose client talks to it)."""

    TRIO = "trio"
    BLOCKING = "blocking"


class Serving(abc.ABC):
    """A running server of either driver, as :func:`serve` yields it."""

    def __init__(
        self,
        driver: Driver,
        server: TrioServer | BlockingServer,
        recorder: EventRecorder,
        network: SimulatedNetwork | None,
        runtime: VirtualRuntime | None = None,
    ) -> None:
        self.driver = driver
        self.server = server
        self.recorder = recorder
        """The server's sink: every event it reported, to read or wait on."""
        self.network = network
        """The simulated network it serves on, None on real sockets."""
        self.runtime = runtime
        """The virtual runtime the blocking server's threads run in (simulation only)."""
        self.addresses: tuple[Address, ...] = server.addresses

    @property
    def address(self) -> Address:
        """The first address the server listens on (the only one, on port 0)."""
        return self.addresses[0]

    @property
    def stats(self) -> ServerStats:
        """The server's running totals."""
        return self.server.stats

    @abc.abstractmethod
    async def stopped(self) -> None:
        """Wait until the server stops on its own (``once``) or by :meth:`shutdown`."""

    @abc.abstractmethod
    async def shutdown(self, grace: float | None = None) -> None:
        """Shut the server down (*grace* as configured if None); wait until it stopped."""


class _TrioServing(Serving):
    server: TrioServer

    def __init__(
        self,
        server: TrioServer,
        recorder: EventRecorder,
        network: SimulatedNetwork | None,
        stopped: trio.Event,
    ) -> None:
        super().__init__(Driver.TRIO, server, recorder, network)
        self._stopped = stopped

    async def stopped(self) -> None:
        await self._stopped.wait()

    async def shutdown(self, grace: float | None = None) -> None:
        if not self._stopped.is_set():
            self.server.shutdown(grace)
        await self._stopped.wait()


class _BlockingServing(Serving):
    server: BlockingServer

    def __init__(
        self,
        server: BlockingServer,
        recorder: EventRecorder,
        network: SimulatedNetwork | None,
        runtime: VirtualRuntime | None,
    ) -> None:
        super().__init__(Driver.BLOCKING, server, recorder, network, runtime)
        self._stopping: trio.Event | None = None

    async def in_thread(self, function: Callable[[], T], name: str) -> T:
        """Run blocking *function* off the Trio loop: a virtual thread, or a worker thread."""
        if self.runtime is not None:
            return await self.runtime.run_in_thread(function, name=name)
        return await trio.to_thread.run_sync(function, abandon_on_cancel=True)

    async def stopped(self) -> None:
        await self.in_thread(self.server.wait, "wait")

    async def shutdown(self, grace: float | None = None) -> None:
        if self._stopping is not None:
            await self._stopping.wait()
            return
        self._stopping = trio.Event()
        try:
            await self.in_thread(functools.partial(self.server.shutdown, grace), "shutdown")
        finally:
            self._stopping.set()


@contextlib.asynccontextmanager
async def serve(
    driver: Driver | str,
    config: ServerConfig,
    *,
    network: SimulatedNetwork | None = None,
    recorder: EventRecorder | None = None,
    codec_factory: Callable[[], ServerCodec] | None = None,
    final_grace: float = 0.0,
) -> AsyncIterator[Serving]:
    """Run *driver*'s server on *config* for the block, on *network* or real sockets.

    When the block ends the server is shut down with *final_grace*: 0 cuts its
    connections at once, ``math.inf`` waits for each to end by itself (in
    simulation: the blocking server on sockets takes a finite grace). When
    the block raises, the server is cut at once instead, within
    :data:`CLEANUP_SECONDS`, and the exception goes on.
    """
    events = recorder if recorder is not None else EventRecorder()
    start = _serve_trio if Driver(driver) is Driver.TRIO else _serve_blocking
    async with start(config, network, events, codec_factory) as serving:
        try:
            yield serving
        except BaseException:
            with trio.CancelScope(shield=True) as cleanup:
                cleanup.deadline = trio.current_time() + CLEANUP_SECONDS
                await serving.shutdown(0)
            raise
        await serving.shutdown(final_grace)


@contextlib.asynccontextmanager
async def _serve_trio(
    config: ServerConfig,
    network: SimulatedNetwork | None,
    recorder: EventRecorder,
    codec_factory: Callable[[], ServerCodec] | None,
) -> AsyncIterator[Serving]:
    server = TrioServer(config, network=network, sink=recorder, codec_factory=codec_factory)
    stopped = trio.Event()

    async def run(
        task_status: trio.TaskStatus[tuple[Address, ...]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            await server.run(task_status=task_status)
        finally:
            stopped.set()

    async with trio.open_nursery() as nursery:
        await nursery.start(run)
        yield _TrioServing(server, recorder, network, stopped)


@contextlib.asynccontextmanager
async def _serve_blocking(
    config: ServerConfig,
    network: SimulatedNetwork | None,
    recorder: EventRecorder,
    codec_factory: Callable[[], ServerCodec] | None,
) -> AsyncIterator[Serving]:
    if network is None:
        server = BlockingServer(config, sink=recorder, codec_factory=codec_factory)
        server.start()
        yield _BlockingServing(server, recorder, None, None)
        return
    async with virtual_runtime(network) as runtime:
        server = BlockingServer(config, runtime=runtime, sink=recorder, codec_factory=codec_factory)
        server.start()
        yield _BlockingServing(server, recorder, network, runtime)
