"""The blocking driver's runtime in virtual time, on the simulated network.

:class:`VirtualRuntime` implements :class:`trio_echo.blocking_driver.runtime.Runtime`.
The blocking server and client run in :class:`~trio_echo.testing.baton.VirtualThread`
objects, real threads that take turns with the Trio loop, and every call
that could block (``recv``, ``sendall``, ``accept``, ``connect``, ``join``,
``acquire``, ``sleep``) is carried out inside Trio: a socket timeout is a
``trio.move_on_after`` on Trio's clock, raising :class:`TimeoutError` in the
thread when it expires. ``monotonic()`` is Trio's clock. So the unchanged
blocking driver runs in virtual time, deterministically, against the same
simulated network the Trio driver uses::

    async with virtual_runtime(network) as runtime:
        server = BlockingServer(config, runtime=runtime)
        server.start()
        result = await runtime.run_in_thread(
            lambda: run_session(client_config, runtime=runtime.client("alice"))
        )
        await runtime.run_in_thread(server.shutdown)
"""

from __future__ import annotations

import contextlib
import math
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TypeVar

import trio
from outcome import Error

from ..address import Address
from ..blocking_driver.runtime import Listener, ListenerClosed, Semaphore, Stream, Worker
from ..os_errors import closed_socket_error
from ..trio_driver.network import not_simulated
from . import baton
from .baton import VirtualThread, VirtualThreadExit, current_virtual_thread
from .connection import Endpoint, EndpointClosed
from .network import SimulatedListener, SimulatedNetwork

__all__ = [
    "VirtualListener",
    "VirtualRuntime",
    "VirtualSemaphore",
    "VirtualStream",
    "VirtualWorker",
    "virtual_runtime",
]

T = TypeVar("T")


def _seconds(timeout: float | None) -> float:
    return math.inf if timeout is None else timeout


@contextlib.contextmanager
def _socket_errors() -> Iterator[None]:
    """Use after close fails as it does on a closed socket (see ``os_errors``)."""
    try:
        yield
    except EndpointClosed:
        raise closed_socket_error() from None


@contextlib.contextmanager
def _listener_errors() -> Iterator[None]:
    """A closed listener interrupts ``accept`` the way the blocking driver expects.

    Not an OS error: Trio's closed-listener signal becomes the blocking
    runtime's, as the real :class:`~trio_echo.blocking_driver.runtime.SocketListener`
    raises it.
    """
    try:
        yield
    except trio.ClosedResourceError:
        raise ListenerClosed() from None


class VirtualRuntime:
    """Sockets, threads and time for the blocking driver, all inside Trio.

    Build it with :func:`virtual_runtime`. Threads it starts run in a
    nursery it owns; run your own blocking code with :meth:`run_in_thread`.
    """

    def __init__(self, network: SimulatedNetwork, nursery: trio.Nursery) -> None:
        self.network = network
        self._nursery = nursery

    def client(self, label: str) -> VirtualRuntime:
        """This runtime, connecting as client *label* (see ``SimulatedNetwork.client``)."""
        return VirtualRuntime(self.network.client(label), self._nursery)

    async def run_in_thread(self, function: Callable[[], T], name: str = "virtual thread") -> T:
        """Run blocking *function* in a virtual thread; return or raise what it did."""
        thread = VirtualThread(function, name)
        outcome = await thread.run()
        return outcome.unwrap()

    # ---- the Runtime protocol --------------------------------------------------

    def listen(self, host: str, port: int, *, backlog: int) -> list[Listener]:
        """Listen on the simulated network (never waits)."""
        listener = self.network.listen(host, port, backlog=backlog)
        return [VirtualListener(self, listener)]

    def listen_unix(self, path: str, *, backlog: int) -> Listener:
        """Unix sockets are not simulated: a NetworkError saying so."""
        raise not_simulated("a unix socket listener")

    def open_datagram_sockets(self, host: str, port: int) -> list[socket.socket]:
        """UDP is not simulated yet: a NetworkError saying so."""
        raise not_simulated("UDP")

    def connect_unix(self, path: str, timeout: float | None) -> Stream:
        """Unix sockets are not simulated: a NetworkError saying so."""
        raise not_simulated("a unix socket connection")

    def connect(self, host: str, port: int, timeout: float | None) -> Stream:
        """Connect as this runtime's client; TimeoutError after *timeout* virtual seconds."""

        async def connect() -> Stream:
            with trio.move_on_after(_seconds(timeout)):
                return VirtualStream(self, await self.network.connect_endpoint(host, port))
            raise TimeoutError("timed out")

        return self.block(connect)

    def start_thread(self, target: Callable[[], None], name: str) -> Worker:
        """Start *target* in a new virtual thread of this runtime.

        Like a real thread it starts soon, not at once: when the caller next
        waits (or at once, when called from Trio).
        """
        thread: VirtualThread[None] = VirtualThread(target, name)
        baton.run_soon(lambda: self._nursery.start_soon(self._run_worker, thread, name=name))
        return VirtualWorker(self, thread)

    def semaphore(self, slots: int) -> Semaphore:
        """A semaphore whose ``acquire`` waits inside Trio."""
        return VirtualSemaphore(self, slots)

    def monotonic(self) -> float:
        """Trio's clock (virtual under MockClock)."""
        return baton.now()

    def sleep(self, seconds: float) -> None:
        """Sleep on Trio's clock."""
        self.block(lambda: trio.sleep(seconds))

    # ---- plumbing --------------------------------------------------------------

    def block(self, operation: Callable[[], Awaitable[T]]) -> T:
        """From a virtual thread: await *operation* in Trio and return its result."""
        thread = current_virtual_thread()
        if thread is None:
            if trio.lowlevel.in_trio_run():
                raise RuntimeError(
                    "this call would block the Trio loop: run the blocking code with "
                    "`await runtime.run_in_thread(...)`"
                )
            raise RuntimeError("call the virtual runtime from its own threads only")
        return thread.call(operation)

    async def _run_worker(self, thread: VirtualThread[None]) -> None:
        result = await thread.run()
        if isinstance(result, Error) and not isinstance(result.error, VirtualThreadExit):
            raise result.error


class VirtualWorker:
    """A thread started by :meth:`VirtualRuntime.start_thread`."""

    def __init__(self, runtime: VirtualRuntime, thread: VirtualThread[None]) -> None:
        self._runtime = runtime
        self._thread = thread

    @property
    def done(self) -> trio.Event:
        """Set once the thread has finished (for Trio code to wait on)."""
        return self._thread.done

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to finish; True if it did within *timeout* virtual seconds."""
        done = self._thread.done
        if done.is_set():
            return True

        async def join() -> bool:
            with trio.move_on_after(_seconds(timeout)):
                await done.wait()
            return done.is_set()

        return self._runtime.block(join)


class VirtualSemaphore:
    """A counting semaphore whose ``acquire`` waits inside Trio when no slot is free."""

    def __init__(self, runtime: VirtualRuntime, slots: int) -> None:
        self._runtime = runtime
        self._free = slots
        self._lot = trio.lowlevel.ParkingLot()

    def acquire(self, *, timeout: float | None = None) -> bool:
        """Take a slot, waiting for one to free (for *timeout* virtual seconds at most)."""
        if not self._free and not self._runtime.block(lambda: self._wait(timeout)):
            return False
        self._free -= 1
        return True

    async def _wait(self, timeout: float | None) -> bool:
        with trio.move_on_after(_seconds(timeout)):
            while not self._free:
                await self._lot.park()
            return True
        return False

    def release(self) -> None:
        """Give a slot back."""
        self._free += 1
        baton.wake(self._lot)


class VirtualStream:
    """A blocking socket on a simulated endpoint; its timeouts are virtual.

    Calls that need not wait (a read of bytes that already arrived, a write
    that fits the buffer, close) are done by the calling thread itself while
    it holds the baton; only waiting goes through Trio.
    """

    def __init__(self, runtime: VirtualRuntime, endpoint: Endpoint) -> None:
        self._runtime = runtime
        self._endpoint = endpoint

    def recv(self, size: int, timeout: float | None) -> bytes:
        """Up to *size* bytes, ``b""`` at end of input; TimeoutError after *timeout*."""
        endpoint = self._endpoint
        with _socket_errors():
            data = endpoint.poll_receive(size)
        if data is not None:
            return data

        async def recv() -> bytes:
            with _socket_errors():
                return await endpoint.wait_receive(size, timeout)

        return self._runtime.block(recv)

    def sendall(self, data: bytes, timeout: float | None) -> None:
        """Send every byte; TimeoutError once the peer took nothing for *timeout*."""
        endpoint = self._endpoint
        with _socket_errors():
            pieces = endpoint.start_send(bytes(data))
            endpoint.push(pieces)
        if not pieces:
            return

        async def sendall() -> None:
            with _socket_errors():
                await endpoint.wait_send(pieces, timeout)

        self._runtime.block(sendall)

    def send_eof(self) -> None:
        """``shutdown(SHUT_WR)``: the peer reads end of input after what was sent."""
        with _socket_errors():
            self._endpoint.send_eof()

    def abort(self) -> None:
        """``shutdown(SHUT_RDWR)``: blocked and later reads fail with ECONNABORTED."""
        self._endpoint.abort()

    def close(self) -> None:
        """Close the socket."""
        self._endpoint.close()


class VirtualListener:
    """A blocking listener on the simulated network; ``close`` wakes ``accept``."""

    def __init__(self, runtime: VirtualRuntime, listener: SimulatedListener) -> None:
        self.address = listener.address
        self._runtime = runtime
        self._listener = listener

    def accept(self) -> tuple[Stream, Address]:
        """Wait for a client; ListenerClosed once the listener is closed."""
        listener = self._listener
        with _listener_errors():
            endpoint = listener.poll_accept()
        if endpoint is None:

            async def accept() -> Endpoint:
                with _listener_errors():
                    return await listener.accept_endpoint()

            endpoint = self._runtime.block(accept)
        return VirtualStream(self._runtime, endpoint), endpoint.peer.address

    def close(self) -> None:
        """Stop listening."""
        self._listener.close()

    def has_waiting(self) -> bool:
        """Whether a connection waits in the backlog to be accepted."""
        return not self._listener.closed and self._listener.has_waiting()


@contextlib.asynccontextmanager
async def virtual_runtime(network: SimulatedNetwork) -> AsyncIterator[VirtualRuntime]:
    """A :class:`VirtualRuntime` on *network*, for the duration of the block.

    Threads still running when the block ends are unwound: each blocking
    call they make raises :class:`~trio_echo.testing.baton.VirtualThreadExit`.
    A thread that dies of any other exception fails the block with it.
    """
    async with trio.open_nursery() as nursery:
        try:
            yield VirtualRuntime(network, nursery)
        finally:
            nursery.cancel_scope.cancel()
