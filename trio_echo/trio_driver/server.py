"""The Trio server: a task in the caller's nursery, a task per client.

Start it with ``await nursery.start(server.run)``: it opens its listeners,
reports their addresses through ``task_status`` (so port 0 works) and serves
any number of clients at once, each in its own task, until it is cancelled
or :meth:`TrioServer.shutdown` is called. A connection's failure ends that
connection only.

On real TCP (Linux), a connection's task hands its steady state to the
run's :class:`~.dispatcher.Dispatcher`, which reads, answers and writes for
every ready connection in one task, and takes the connection back only for
what needs it: a reply the kernel will not take at once, the end of the
conversation, an error, the idle timeout, cancellation. On any other stream
the task runs the same conversation with ``receive_some`` and ``send_all``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import socket
from collections.abc import Callable
from typing import Protocol, cast

import attrs
import trio

from ..address import Address
from ..capacity_log import CapacityLog
from ..codec import ServerCodec
from ..codec.proxy_header import ProxyHeaderError
from ..config import ServerConfig
from ..connection_log import ConnectionLog, EventSink, LoggingSink, ServerStats
from ..conversation import Conversation
from ..errors import TlsError
from ..faults.plan import plan_connection
from ..lifecycle import LINGER_READ_SIZE, Ending, Phase, Timeouts, next_phase
from ..listeners import ListenerPlan, plan_listeners
from ..memory_guard import MemoryGuard
from ..proxy_gate import ProxyGate, log_refused, original_peer
from ..reclaim import RECLAIM_CHECK_SECONDS, Occupants
from ..shortages import ACCEPT_RETRY_SECONDS, OUT_OF_RESOURCES, AcceptFailureLog
from ..transport import sockets
from ..transport.spec import ListenSpec, Transport
from ..wire import WireProtocol
from .datagram_server import serve_datagrams
from .dispatcher import (
    IDLE,
    STALLED,
    Dispatcher,
    Seat,
    current_dispatcher,
    dispatcher_available,
)
from .fast_datagram import DatagramSocket
from .fast_stream import FastSocketStream
from .faulty_stream import FaultyStream
from .network import Listener, Network, SocketNetwork, has_waiting

logger = logging.getLogger("trio_echo.server")

CONNECTION_TASK = "trio_echo.connection"
"""The name of every connection's task: one string for all, where Trio would format one per
task (its formatting and about 100 bytes per connection, for as long as it is open)."""


class TrioServer:
    """Serves one protocol on one or more listeners, with Trio."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        network: Network | None = None,
        sink: EventSink | None = None,
        codec_factory: Callable[[], ServerCodec] | None = None,
        memory: MemoryGuard | None = None,
    ) -> None:
        self.config = config
        self._timeouts = Timeouts.of(config)
        self.network: Network = network if network is not None else SocketNetwork()
        self._plans = plan_listeners(config, codec_factory)
        self._accept_failures = AcceptFailureLog(trio.current_time)
        self._memory = (
            memory if memory is not None else MemoryGuard.for_this_process(trio.current_time)
        )
        self.sink: EventSink = sink if sink is not None else LoggingSink()
        self.stats = ServerStats()
        self.addresses: tuple[Address, ...] = ()
        """Where each bound socket listens, in the order of the listener specs."""
        self.listeners: tuple[ListenSpec, ...] = ()
        """Each bound socket as a spec (real address and port, protocol), a client's target."""
        self._slots = trio.Semaphore(config.max_connections)
        self._capacity = CapacityLog(trio.current_time, config.max_connections)
        self._occupants = (
            Occupants(config.reclaim_after) if config.reclaim_after is not None else None
        )
        self._active = 0
        self._ids = itertools.count(1)
        self._accepting = trio.CancelScope()
        self._handlers: trio.Nursery | None = None
        self._shutdown_deadline = math.inf
        self._clock: trio.abc.Clock | None = None
        """The run's clock, looked up once as the server starts: every connection reads it."""

    async def run(
        self, *, task_status: trio.TaskStatus[tuple[Address, ...]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen on every spec, report the bound addresses, then serve until stopped."""
        self._clock = trio.lowlevel.current_clock()
        opened: list[_Opened] = []
        try:
            for plan in self._plans:
                opened += await self._open(plan)
            self.addresses = tuple(item.address for item in opened)
            self.listeners = tuple(item.plan.spec for item in opened)
            async with trio.open_nursery() as handlers:
                self._handlers = handlers
                handlers.cancel_scope.deadline = self._shutdown_deadline
                with self._accepting:
                    task_status.started(self.addresses)
                    async with trio.open_nursery() as acceptors:
                        for item in opened:
                            if item.datagrams is not None:
                                acceptors.start_soon(self._serve_datagrams, item)
                            else:
                                acceptors.start_soon(self._accept_loop, item, handlers)
                await _close_all(opened)
        finally:
            with trio.CancelScope(shield=True):
                await _close_all(opened)

    async def _open(self, plan: ListenerPlan) -> list[_Opened]:
        """Bind *plan*'s spec: one opened listener per socket it names."""
        spec, network, backlog = plan.spec, self.network, self.config.backlog
        if spec.transport is Transport.UNIX:
            assert spec.path is not None
            listener = await network.open_unix_listener(spec.path, backlog=backlog)
            return [_Opened(plan, network.listener_address(listener), listener=listener)]
        assert spec.host is not None and spec.port is not None
        if spec.transport is Transport.UDP:
            socks = await network.open_datagram_sockets(spec.host, spec.port)
            return [_Opened.datagram(plan, sock) for sock in socks]
        listeners = await network.open_listeners(spec.host, spec.port, backlog=backlog)
        return [_Opened.stream(plan, network.listener_address(lst), lst) for lst in listeners]

    async def _serve_datagrams(self, opened: _Opened) -> None:
        assert opened.datagrams is not None
        await serve_datagrams(
            opened.datagrams,
            opened.plan.spec,
            policy=self.config.reflection,
            sink=self.sink,
            stats=self.stats,
            receive_size=self.config.receive_size,
            faults=opened.plan.faults,
            seed=self.config.seed,
            identity=opened.plan.identity,
        )

    @property
    def active_connections(self) -> int:
        """Connections being served now."""
        return self._active

    def shutdown(self, grace: float | None = None) -> None:
        """Stop accepting now; cancel connections still open after *grace* seconds.

        *grace* defaults to the configured one; ``0`` cancels them at once.
        """
        grace = self.config.grace if grace is None else grace
        self._accepting.cancel()
        self._shutdown_deadline = min(self._shutdown_deadline, trio.current_time() + grace)
        if self._handlers is not None:
            self._handlers.cancel_scope.deadline = self._shutdown_deadline

    async def _accept_loop(self, opened: _Opened, handlers: trio.Nursery) -> None:
        assert opened.listener is not None
        listener, plan = opened.listener, opened.plan
        while True:
            try:
                self._slots.acquire_nowait()  # accept() below is this turn's checkpoint
            except trio.WouldBlock:
                self._capacity.full()
                await self._wait_for_a_slot(listener)
                self._capacity.room()
            try:
                stream = await self._accept(listener)
            except BaseException:
                self._slots.release()
                raise
            self._accept_failures.succeeded()
            if self.config.once:
                self._accepting.cancel()
            try:
                handlers.start_soon(self._serve, stream, plan, name=CONNECTION_TASK)
            except MemoryError as exc:  # no room for its task: refuse it, wait, go on
                self._memory.ran_out(self._active)
                await _close_now(stream)
                self._slots.release()
                self._accept_failures.failed(exc, ACCEPT_RETRY_SECONDS)
                await trio.sleep(ACCEPT_RETRY_SECONDS)

    async def _wait_for_a_slot(self, listener: Listener) -> None:
        """Take a slot once one frees; while clients wait, reclaim the quietest connection.

        See :mod:`trio_echo.reclaim`: a connection quiet for ``reclaim_after``
        makes room for a client waiting in the backlog.
        """
        occupants = self._occupants
        if occupants is None:
            await self._slots.acquire()
            return
        while True:
            with trio.move_on_after(RECLAIM_CHECK_SECONDS):
                await self._slots.acquire()
                return
            if has_waiting(listener):
                occupants.reclaim_quietest(trio.current_time())

    async def _accept(self, listener: Listener) -> trio.abc.Stream:
        """The next connection, once the process has the descriptors and memory for it.

        While the :class:`~trio_echo.memory_guard.MemoryGuard` says memory is
        short, newcomers wait in the backlog and the log says so, rate-limited.
        """
        memory = self._memory
        while True:
            if not memory.room_for_one_more(self._active):
                self._accept_failures.failed(MemoryError(memory.describe()), ACCEPT_RETRY_SECONDS)
            else:
                try:
                    return await listener.accept()
                except OSError as exc:
                    if exc.errno not in OUT_OF_RESOURCES:
                        raise
                    self._accept_failures.failed(exc, ACCEPT_RETRY_SECONDS)
                except MemoryError as exc:  # out of memory in the process, like ENOMEM
                    memory.ran_out(self._active)
                    self._accept_failures.failed(exc, ACCEPT_RETRY_SECONDS)
            await trio.sleep(ACCEPT_RETRY_SECONDS)

    async def _serve(self, stream: trio.abc.Stream, plan: ListenerPlan) -> None:
        """Hold one connection from accept to close; its failure ends it and nothing else.

        The phases of :mod:`~trio_echo.lifecycle` are written out here rather
        than in helper coroutines: an idle connection's memory is mostly the
        frames it waits in.
        """
        config, timeouts = self.config, self._timeouts
        self._active += 1
        try:
            number = next(self._ids)
            faults = plan_connection(plan.faults, config.seed, str(number)) if plan.faults else None
            peer, via = self.network.peer_address(stream), None
            if plan.proxy is not None:
                client, via = await _read_proxy_header(stream, plan.proxy, peer)
                if client is None:
                    return
                peer = client
            log = ConnectionLog(
                number,
                peer,
                sink=self.sink,
                clock=trio.current_time,
                stats=self.stats,
                fault=faults.description if faults is not None else None,
                via=via,
            )
            if faults is not None:
                stream = FaultyStream(stream, faults)
            conversation = Conversation(plan.codec_factory(), log)
            assert self._clock is not None
            now = self._clock.current_time()
            occupant = _Occupant(stream, now)
            if self._occupants is not None:
                self._occupants.add(occupant)
            cap = math.inf  # when reading must be over, however steadily the peer trickles
            if plan.reading_limit != math.inf:
                cap = now + plan.reading_limit
            try:
                if plan.tls is not None:
                    stream = await _handshake(stream, plan)
                seat = occupant.seat = _seat_for(stream)
                outgoing = b""
                step: Phase | Ending = Phase.READING
                if conversation.speaks_first:
                    outgoing = conversation.open(plan.opening(peer, via))
                    step = next_phase(
                        bool(outgoing), conversation.finished, conversation.peer_closed
                    )
                while step is Phase.READING or step is Phase.SENDING:
                    if step is Phase.READING:
                        if seat is not None:
                            served = await current_dispatcher().serve_until_needed(
                                seat,
                                conversation,
                                receive_size=config.receive_size,
                                idle=timeouts.idle,
                                cap=cap,
                                send_timeout=timeouts.send,
                                reads_per_turn=_reads_per_turn(plan),
                                close_at_eof=True,
                            )
                            if served is IDLE:
                                step = _timed_out_reading(cap)
                                break
                            if served is STALLED:
                                step = Ending.STALLED
                                break
                            outgoing = served
                        else:
                            deadline = min(trio.current_time() + timeouts.idle, cap)
                            with trio.move_on_at(deadline) as waiting:
                                received = await stream.receive_some(config.receive_size)
                            if waiting.cancelled_caught:
                                step = _timed_out_reading(cap)
                                break
                            occupant.last_input = trio.current_time()
                            outgoing = conversation.respond(received)
                    else:
                        if not await _send_or_stall(stream, outgoing, timeouts.send):
                            step = Ending.STALLED
                            break
                        conversation.sent(len(outgoing))
                        outgoing = b""  # nothing kept alive while idle
                    step = next_phase(
                        bool(outgoing), conversation.finished, conversation.peer_closed
                    )
                if step is Phase.LINGERING:
                    await _linger(stream, conversation, timeouts.linger)
                    step = Ending.COMPLETE
                assert isinstance(step, Ending)
                log.ended(step, timeouts, conversation.bytes_in, conversation.bytes_out)
            except trio.Cancelled:
                log.ended(Ending.SHUT_DOWN, timeouts, conversation.bytes_in, conversation.bytes_out)
                _end_gently(stream)
                raise
            except Exception as exc:
                if occupant.reclaimed:
                    log.ended(
                        Ending.RECLAIMED, timeouts, conversation.bytes_in, conversation.bytes_out
                    )
                else:
                    log.failed_with(exc, conversation.bytes_in, conversation.bytes_out)
            finally:
                if self._occupants is not None:
                    self._occupants.discard(occupant)
                await _close_now(stream)
        finally:
            self._active -= 1
            self._slots.release()


class PatientStream(Protocol):
    """A stream that can time a write by the peer's progress (``SO_SNDTIMEO``'s way)."""

    async def send_all_within(
        self, data: bytes | bytearray | memoryview, patience: float
    ) -> None: ...


async def _send_or_stall(stream: trio.abc.Stream, data: bytes, patience: float) -> bool:
    """Send *data*; False if the peer took nothing for *patience* seconds.

    Streams that see partial progress (the fast TCP stream, the simulated
    one) restart the timer whenever the peer takes a byte, as the blocking
    driver's sockets do; any other stream (TLS) gives the write as a whole
    *patience* seconds.
    """
    if hasattr(stream, "send_all_within"):
        try:
            await cast(PatientStream, stream).send_all_within(data, patience)
        except TimeoutError:
            return False
        return True
    with trio.move_on_after(patience) as waiting:
        await stream.send_all(data)
    return not waiting.cancelled_caught


class _Occupant:
    """A Trio connection as :mod:`trio_echo.reclaim` sees it: its last input, its close."""

    __slots__ = ("last_input", "reclaimed", "seat", "stream")

    def __init__(self, stream: trio.abc.Stream, now: float) -> None:
        self.stream = stream
        self.seat: Seat | None = None
        self.last_input = now
        self.reclaimed = False

    def quiet_since(self) -> float:
        seat = self.seat
        if seat is not None and seat.last_input > self.last_input:
            return seat.last_input
        return self.last_input

    def reclaim(self) -> None:
        """Close the stream under its task, which then reports the connection reclaimed."""
        self.reclaimed = True
        stream = _under_tls(self.stream)
        if isinstance(stream, FastSocketStream):
            stream.close()
        elif isinstance(stream, trio.SocketStream):
            stream.socket.close()
        else:
            close = getattr(stream, "close", None)
            if close is not None:
                close()


def _under_tls(stream: trio.abc.Stream) -> trio.abc.Stream:
    """The stream carrying *stream*'s bytes: itself, or what its TLS layer runs over."""
    while isinstance(stream, trio.SSLStream | FaultyStream):
        stream = stream.transport_stream
    return stream


STREAM_READS_PER_TURN = 4
"""Full reads an echo connection gets in a row at the dispatcher: 256 KiB a turn by default."""


def _reads_per_turn(plan: ListenerPlan) -> int:
    """How many full reads a connection may have per dispatcher turn: a stream's (echo) several."""
    return STREAM_READS_PER_TURN if plan.spec.protocol is WireProtocol.ECHO else 1


def _timed_out_reading(cap: float) -> Ending:
    """How a read that ran out of time ends: past the line's deadline, or merely idle."""
    return Ending.SLOW_LINE if trio.current_time() >= cap else Ending.IDLE


async def _close_now(stream: trio.abc.Stream) -> None:
    """Close *stream* at once, even in a cancelled task; a fast stream without a checkpoint."""
    if isinstance(stream, FastSocketStream):
        stream.close()
    else:
        await trio.aclose_forcefully(stream)


def _end_gently(stream: trio.abc.Stream) -> None:
    """End a connection the server's shutdown cuts as cleanly as the kernel allows.

    See ``transport.sockets.end_gently``; the blocking server does the same.
    """
    stream = _under_tls(stream)
    if isinstance(stream, FastSocketStream):
        sockets.end_gently(stream.socket)
    elif isinstance(stream, trio.SocketStream):
        with contextlib.suppress(OSError):
            stream.socket.shutdown(socket.SHUT_WR)


_INLINE = dispatcher_available()
"""Whether this platform serves fast TCP connections inline (asked once, not per connection)."""


def _seat_for(stream: trio.abc.Stream) -> Seat | None:
    """*stream*'s seat at the dispatcher, if it can be served inline (fast TCP, on epoll)."""
    if _INLINE and isinstance(stream, FastSocketStream):
        return Dispatcher.seat_for(stream)
    return None


async def _linger(stream: trio.abc.Stream, conversation: Conversation, seconds: float) -> None:
    """Half-close, then read and discard what the peer still sends, for up to *seconds*.

    Closing with unread input would reset the connection and could destroy
    the reply still on its way (see :mod:`trio_echo.shortages`). What is
    drained is counted and reported as discarded, never dropped silently.
    """
    drained = 0
    with trio.move_on_after(seconds):
        try:
            if isinstance(stream, trio.abc.HalfCloseableStream):
                await stream.send_eof()
            while data := await stream.receive_some(LINGER_READ_SIZE):
                drained += len(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
    if drained:
        conversation.drained(drained)


async def _read_proxy_header(
    stream: trio.abc.Stream, gate: ProxyGate, peer: Address
) -> tuple[Address | None, Address | None]:
    """Read the connection's PROXY header: (client, proxy), or (None, None) once refused.

    Reads never take a byte past the header (``wanted``), so the conversation,
    or a TLS handshake, starts on the stream untouched. A refusal is one log
    line and the stream closed; a cancellation closes it too.
    """
    try:
        parser = gate.parser(peer)
        with trio.move_on_after(gate.timeout):
            while True:
                try:
                    data = await stream.receive_some(parser.wanted)
                except (trio.BrokenResourceError, OSError):
                    data = b""
                parsed = parser.receive_read(data)
                if parsed is not None:
                    return original_peer(parsed.header, peer)
        raise gate.timed_out()
    except ProxyHeaderError as exc:
        log_refused(peer, exc)
    except trio.Cancelled:
        await _close_now(stream)
        raise
    await _close_now(stream)
    return None, None


async def _handshake(
    stream: trio.abc.Stream, plan: ListenerPlan
) -> trio.SSLStream[trio.abc.Stream]:
    """TLS over *stream*, its handshake done within the plan's timeout.

    A handshake that fails or runs out of time ends the connection with one
    line naming what went wrong (see ``transport.tls.describe_tls_error``).
    """
    assert plan.tls is not None
    secure = trio.SSLStream(stream, plan.tls, server_side=True)
    with trio.move_on_after(plan.handshake_timeout) as waiting:
        await secure.do_handshake()  # a failure is worded by the connection's log
    if waiting.cancelled_caught:
        raise TlsError(f"TLS handshake not finished within {plan.handshake_timeout:g} s")
    return secure


@attrs.frozen
class _Opened:
    """One bound socket of a listener: its plan (spec as bound), and what serves it."""

    plan: ListenerPlan
    address: Address
    listener: Listener | None = None
    datagrams: DatagramSocket | None = None

    @classmethod
    def stream(cls, plan: ListenerPlan, address: Address, listener: Listener) -> _Opened:
        spec = attrs.evolve(plan.spec, host=address.host, port=address.port)
        return cls(plan.bound_as(spec), address, listener=listener)

    @classmethod
    def datagram(cls, plan: ListenerPlan, sock: DatagramSocket) -> _Opened:
        address = Address.from_sockaddr(sock.getsockname())
        spec = attrs.evolve(plan.spec, host=address.host, port=address.port)
        return cls(plan.bound_as(spec), address, datagrams=sock)

    async def aclose(self) -> None:
        if self.listener is not None:
            await trio.aclose_forcefully(self.listener)
        if self.datagrams is not None:
            self.datagrams.close()


async def _close_all(opened: list[_Opened]) -> None:
    for item in opened:
        await item.aclose()
