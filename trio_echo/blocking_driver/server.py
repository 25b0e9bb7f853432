"""The blocking server: a thread per client, on plain sockets and the same codec.

It is the note's synchronous server made to serve many clients the classic
way, so it can be compared with the Trio driver: same configuration, same
codec, same events, same limits.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import socket
import threading
from collections.abc import Callable

import attrs

from ..address import Address
from ..capacity_log import CapacityLog
from ..codec import Opening, ServerCodec
from ..codec.proxy_header import ProxyHeaderError
from ..config import ServerConfig
from ..connection_log import ConnectionLog, EventSink, LoggingSink, ServerStats
from ..conversation import Conversation
from ..errors import TlsError
from ..faults.plan import plan_connection
from ..lifecycle import LINGER_READ_SIZE, Ending, Phase, Timeouts, next_phase
from ..listeners import ListenerPlan, plan_listeners
from ..proxy_gate import ProxyGate, log_refused, original_peer
from ..reclaim import RECLAIM_CHECK_SECONDS, SharedOccupants
from ..shortages import ACCEPT_RETRY_SECONDS, OUT_OF_RESOURCES, AcceptFailureLog
from ..transport.spec import ListenSpec, Transport
from .datagram_server import DatagramService
from .faulty_socket import FaultySocket
from .runtime import Listener, ListenerClosed, Runtime, SocketRuntime, Stream, Worker
from .tls_stream import TlsStream

logger = logging.getLogger("trio_echo.server")


class BlockingServer:
    """Serves one protocol with one accepting thread per listener and one thread per client."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        runtime: Runtime | None = None,
        sink: EventSink | None = None,
        codec_factory: Callable[[], ServerCodec] | None = None,
    ) -> None:
        self.config = config
        self._timeouts = Timeouts.of(config)
        self.runtime: Runtime = runtime if runtime is not None else SocketRuntime()
        self._plans = plan_listeners(config, codec_factory)
        self._accept_failures = AcceptFailureLog(self.runtime.monotonic)
        self._thread_failures = AcceptFailureLog(
            self.runtime.monotonic, what="starting a connection's thread"
        )
        self.sink: EventSink = sink if sink is not None else LoggingSink()
        self.stats = ServerStats()
        self.addresses: tuple[Address, ...] = ()
        """Where each bound socket listens, in the order of the listener specs."""
        self.listeners: tuple[ListenSpec, ...] = ()
        """Each bound socket as a spec (real address and port, protocol), a client's target."""
        self._listeners: list[Listener] = []
        self._datagram_services: list[DatagramService] = []
        self._acceptors: list[Worker] = []
        self._slots = self.runtime.semaphore(config.max_connections)
        self._capacity = CapacityLog(self.runtime.monotonic, config.max_connections)
        self._occupants = (
            SharedOccupants(config.reclaim_after) if config.reclaim_after is not None else None
        )
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._connections: dict[int, tuple[Stream, Worker | None]] = {}
        self._aborting = False
        self._shutting_down = False

    def start(self) -> tuple[Address, ...]:
        """Listen on every spec and serve in the background; return the bound addresses."""
        opened: list[tuple[ListenerPlan, Address, Callable[[], None]]] = []
        try:
            for plan in self._plans:
                opened += self._open(plan)
        except BaseException:
            self._stop_accepting()
            raise
        self.addresses = tuple(address for _plan, address, _serve in opened)
        self.listeners = tuple(plan.spec for plan, _address, _serve in opened)
        self._acceptors = [
            self.runtime.start_thread(serve, f"trio-echo {plan.spec}")
            for plan, _address, serve in opened
        ]
        return self.addresses

    def _open(self, plan: ListenerPlan) -> list[tuple[ListenerPlan, Address, Callable[[], None]]]:
        """Bind *plan*'s spec: for each socket, its plan as bound and what serves it."""
        spec, runtime, backlog = plan.spec, self.runtime, self.config.backlog
        if spec.transport is Transport.UNIX:
            assert spec.path is not None
            listeners = [runtime.listen_unix(spec.path, backlog=backlog)]
        elif spec.transport is Transport.UDP:
            assert spec.host is not None and spec.port is not None
            return [
                self._open_datagrams(plan, sock)
                for sock in runtime.open_datagram_sockets(spec.host, spec.port)
            ]
        else:
            assert spec.host is not None and spec.port is not None
            listeners = runtime.listen(spec.host, spec.port, backlog=backlog)
        self._listeners += listeners
        opened: list[tuple[ListenerPlan, Address, Callable[[], None]]] = []
        for listener in listeners:
            address = listener.address
            bound = (
                plan
                if address.path is not None
                else plan.bound_as(attrs.evolve(spec, host=address.host, port=address.port))
            )
            opened.append((bound, address, functools.partial(self._accept_loop, listener, bound)))
        return opened

    def _open_datagrams(
        self, plan: ListenerPlan, sock: socket.socket
    ) -> tuple[ListenerPlan, Address, Callable[[], None]]:
        address = Address.from_sockaddr(sock.getsockname())
        bound = plan.bound_as(attrs.evolve(plan.spec, host=address.host, port=address.port))
        service = DatagramService(
            sock,
            bound.spec,
            policy=self.config.reflection,
            sink=self.sink,
            stats=self.stats,
            clock=self.runtime.monotonic,
            faults=bound.faults,
            seed=self.config.seed,
            sleep=self.runtime.sleep,
            identity=bound.identity,
        )
        self._datagram_services.append(service)
        return bound, address, service.run

    def wait(self) -> None:
        """Block until the server stops accepting and every connection has ended."""
        for acceptor in self._acceptors:
            acceptor.join()
        for worker in self._workers():
            worker.join()

    def serve(self) -> None:
        """Start, then serve until shut down (or until the one client left, with ``once``)."""
        self.start()
        self.wait()

    @property
    def active_connections(self) -> int:
        """Connections being served now."""
        with self._lock:
            return len(self._connections)

    def shutdown(self, grace: float | None = None) -> None:
        """Stop accepting now; abort connections still open after *grace* seconds."""
        grace = self.config.grace if grace is None else grace
        self._shutting_down = True
        self._stop_accepting()
        deadline = self.runtime.monotonic() + grace
        for worker in self._workers():
            worker.join(max(0.0, deadline - self.runtime.monotonic()))
        with self._lock:
            self._aborting = True
            streams = [stream for stream, _worker in self._connections.values()]
        for stream in streams:
            stream.abort()
        self.wait()

    def _stop_accepting(self) -> None:
        for listener in self._listeners:
            listener.close()
        for service in self._datagram_services:
            service.close()

    def _workers(self) -> list[Worker]:
        with self._lock:
            return [worker for _stream, worker in self._connections.values() if worker]

    def _accept_loop(self, listener: Listener, plan: ListenerPlan) -> None:
        while True:
            self._take_a_slot(listener)
            try:
                stream, peer = self._accept(listener)
            except ListenerClosed:
                self._slots.release()
                return
            self._accept_failures.succeeded()
            if self.config.once:
                self._stop_accepting()
            self._start_connection(stream, peer, plan)

    def _take_a_slot(self, listener: Listener) -> None:
        """Take a slot once one frees; while clients wait, reclaim the quietest connection.

        See :mod:`trio_echo.reclaim` (and the Trio server, which does the same).
        """
        occupants = self._occupants
        if occupants is None:
            self._slots.acquire()
            return
        while not self._slots.acquire(timeout=RECLAIM_CHECK_SECONDS):
            if listener.has_waiting():
                occupants.reclaim_quietest(self.runtime.monotonic())

    def _accept(self, listener: Listener) -> tuple[Stream, Address]:
        while True:
            try:
                return listener.accept()
            except OSError as exc:
                if exc.errno not in OUT_OF_RESOURCES:
                    raise
                self._accept_failures.failed(exc, ACCEPT_RETRY_SECONDS)
                self.runtime.sleep(ACCEPT_RETRY_SECONDS)

    def _start_connection(self, stream: Stream, peer: Address, plan: ListenerPlan) -> None:
        """Serve the connection in a thread of its own, holding it while none can be started.

        A thread that cannot be started (``RuntimeError``: a process or
        memory limit) is a resource running out, like EMFILE for accept: the
        connection waits, accepting pauses with it (the next clients wait in
        the backlog), and the start is retried every
        :data:`~trio_echo.shortages.ACCEPT_RETRY_SECONDS`, logged a few lines a
        run. A shutdown meanwhile closes the held connection.
        """
        connection = next(self._ids)
        with self._lock:
            self._connections[connection] = (stream, None)
            full = len(self._connections) >= self.config.max_connections
        if full:
            self._capacity.full()
        while True:
            try:
                worker = self.runtime.start_thread(
                    lambda: self._serve(connection, stream, peer, plan), f"trio-echo {peer}"
                )
                break
            except RuntimeError as exc:
                self._thread_failures.failed(exc, ACCEPT_RETRY_SECONDS)
                self.runtime.sleep(ACCEPT_RETRY_SECONDS)
                if self._shutting_down:
                    with self._lock:
                        del self._connections[connection]
                    stream.close()
                    self._slots.release()
                    return
        self._thread_failures.succeeded()
        with self._lock:
            if connection in self._connections:
                self._connections[connection] = (stream, worker)

    def _serve(self, connection: int, stream: Stream, peer: Address, plan: ListenerPlan) -> None:
        timeouts = self._timeouts
        try:
            faults = plan_connection(plan.faults, self.config.seed, str(connection))
            via = None
            if plan.proxy is not None:
                client, via = self._read_proxy_header(stream, plan.proxy, peer)
                if client is None:
                    return
                peer = client
            log = ConnectionLog(
                connection,
                peer,
                sink=self.sink,
                clock=self.runtime.monotonic,
                stats=self.stats,
                fault=faults.description if faults is not None else None,
                via=via,
            )
            if faults is not None:
                stream = FaultySocket(stream, faults, self.runtime.sleep)
            conversation = Conversation(plan.codec_factory(), log)
            occupant = _Occupant(stream, self.runtime.monotonic())
            if self._occupants is not None:
                self._occupants.add(occupant)
            try:
                if plan.tls is not None:
                    stream = self._handshake(stream, plan)
                opening = plan.opening(peer, via) if conversation.speaks_first else None
                ending = self._converse(stream, conversation, plan, opening, occupant)
            except Exception as exc:
                if self._aborting and isinstance(exc, OSError):
                    ending = Ending.SHUT_DOWN
                elif occupant.reclaimed and isinstance(exc, OSError):
                    ending = Ending.RECLAIMED
                else:
                    log.failed_with(exc, conversation.bytes_in, conversation.bytes_out)
                    return
            finally:
                if self._occupants is not None:
                    self._occupants.discard(occupant)
                stream.close()
            log.ended(ending, timeouts, conversation.bytes_in, conversation.bytes_out)
        finally:
            with self._lock:
                del self._connections[connection]
                was_full = len(self._connections) + 1 >= self.config.max_connections
            self._slots.release()
            if was_full:
                self._capacity.room()

    def _read_proxy_header(
        self, stream: Stream, gate: ProxyGate, peer: Address
    ) -> tuple[Address | None, Address | None]:
        """The connection's PROXY header as (client, proxy), or (None, None) once refused.

        As the Trio server does: reads never go past the header, a refusal
        is one log line and the stream closed.
        """
        clock = self.runtime.monotonic
        deadline = clock() + gate.timeout
        try:
            parser = gate.parser(peer)
            while True:
                try:
                    data = stream.recv(parser.wanted, max(0.0, deadline - clock()))
                except TimeoutError:
                    raise gate.timed_out() from None
                except OSError:
                    data = b""
                parsed = parser.receive_read(data)
                if parsed is not None:
                    return original_peer(parsed.header, peer)
        except ProxyHeaderError as exc:
            log_refused(peer, exc)
        stream.close()
        return None, None

    def _handshake(self, stream: Stream, plan: ListenerPlan) -> Stream:
        """TLS over *stream*, its handshake done within the plan's timeout (see the Trio server)."""
        assert plan.tls is not None
        secure = TlsStream(stream, plan.tls, server_side=True)
        timeout = None if plan.handshake_timeout == math.inf else plan.handshake_timeout
        try:
            secure.handshake(timeout, self.runtime.monotonic)
        except TimeoutError:
            raise TlsError(
                f"TLS handshake not finished within {plan.handshake_timeout:g} s"
            ) from None
        return secure

    def _converse(
        self,
        stream: Stream,
        conversation: Conversation,
        plan: ListenerPlan,
        opening: Opening | None,
        occupant: _Occupant,
    ) -> Ending:
        """Run the phases of :mod:`~trio_echo.lifecycle` to the connection's ending.

        Reading must be over within the plan's reading limit from now (a
        greeting line's deadline; ``math.inf`` for none), whatever the idle
        timeout. A conversation the server opens starts with *opening*.
        """
        size, timeouts, clock = self.config.receive_size, self._timeouts, self.runtime.monotonic
        idle, patience = self.config.idle_timeout, self.config.send_timeout
        limit = plan.reading_limit
        cap = math.inf if limit == math.inf else clock() + limit
        outgoing = b""
        step: Phase | Ending = Phase.READING
        if opening is not None:
            outgoing = conversation.open(opening)
            step = next_phase(bool(outgoing), conversation.finished, conversation.peer_closed)
        while step is Phase.READING or step is Phase.SENDING:
            if step is Phase.READING:
                timeout = idle if cap == math.inf else _within(idle, cap - clock())
                try:
                    received = stream.recv(size, timeout)
                except TimeoutError:
                    return Ending.SLOW_LINE if clock() >= cap else Ending.IDLE
                occupant.last_input = clock()
                outgoing = conversation.respond(received)
            else:
                try:
                    stream.sendall(outgoing, patience)
                except TimeoutError:
                    return Ending.STALLED
                conversation.sent(len(outgoing))
                outgoing = b""
            step = next_phase(bool(outgoing), conversation.finished, conversation.peer_closed)
        if step is Phase.LINGERING:
            self._linger(stream, conversation, timeouts.linger)
            return Ending.COMPLETE
        assert isinstance(step, Ending)
        return step

    def _linger(self, stream: Stream, conversation: Conversation, seconds: float) -> None:
        """Half-close, then read and discard what the peer still sends, for up to *seconds*.

        Closing with unread input would reset the connection and could destroy
        the reply still on its way (see :mod:`trio_echo.shortages`). What is
        drained is counted and reported as discarded, never dropped silently.
        """
        deadline = self.runtime.monotonic() + seconds
        drained = 0
        try:
            stream.send_eof()
            while (left := deadline - self.runtime.monotonic()) > 0:
                data = stream.recv(LINGER_READ_SIZE, left)
                if not data:
                    break
                drained += len(data)
        except (TimeoutError, OSError):
            if self._aborting:
                raise  # cut by shutdown: reported as "server shut down", as by the Trio server
        if drained:
            conversation.drained(drained)


def _within(idle: float | None, left: float) -> float:
    """The read timeout that respects both the idle timeout and what is left of a deadline."""
    left = max(left, 0.000001)  # a socket timeout of 0 would mean "never"
    return left if idle is None else min(idle, left)


class _Occupant:
    """A blocking connection as :mod:`trio_echo.reclaim` sees it: its last input, its abort."""

    __slots__ = ("last_input", "reclaimed", "stream")

    def __init__(self, stream: Stream, accepted: float) -> None:
        self.stream = stream
        self.last_input = accepted
        self.reclaimed = False

    def quiet_since(self) -> float:
        return self.last_input

    def reclaim(self) -> None:
        """Abort the stream under its thread, which then reports the connection reclaimed."""
        self.reclaimed = True
        self.stream.abort()
