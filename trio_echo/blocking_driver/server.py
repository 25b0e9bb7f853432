"""The blocking server: a thread per client, on plain sockets and the same codec.

It is the note's synchronous server made to serve many clients the classic
way, so it can be compared with the Trio driver: same configuration, same
codec, same events, same limits.
"""

from __future__ import annotations

import functools
import itertools
import logging
import threading
from collections.abc import Callable

from ..address import Address
from ..codec import ServerCodec, server_codec
from ..config import ServerConfig
from ..connection_log import ConnectionLog, EventSink, LoggingSink, ServerStats
from ..conversation import Conversation
from ..faults import ACCEPT_RETRY_SECONDS, OUT_OF_RESOURCES, AcceptFailureLog
from ..lifecycle import LINGER_READ_SIZE, Ending, Phase, Timeouts, next_phase
from .runtime import Listener, ListenerClosed, Runtime, SocketRuntime, Stream, Worker

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
        self.codec_factory: Callable[[], ServerCodec] = codec_factory or functools.partial(
            server_codec, config.protocol, max_line=config.max_line
        )
        self._accept_failures = AcceptFailureLog(self.runtime.monotonic)
        self.sink: EventSink = sink if sink is not None else LoggingSink()
        self.stats = ServerStats()
        self.addresses: tuple[Address, ...] = ()
        self._listeners: list[Listener] = []
        self._acceptors: list[Worker] = []
        self._slots = self.runtime.semaphore(config.max_connections)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._connections: dict[int, tuple[Stream, Worker | None]] = {}
        self._aborting = False

    def start(self) -> tuple[Address, ...]:
        """Listen and start accepting in the background; return the bound addresses."""
        self._listeners = self.runtime.listen(
            self.config.host, self.config.port, backlog=self.config.backlog
        )
        self.addresses = tuple(listener.address for listener in self._listeners)
        self._acceptors = [
            self.runtime.start_thread(
                lambda listener=listener: self._accept_loop(listener),  # type: ignore[misc]
                f"trio-echo accept {listener.address}",
            )
            for listener in self._listeners
        ]
        return self.addresses

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

    def shutdown(self, grace: float | None = None) -> None:
        """Stop accepting now; abort connections still open after *grace* seconds."""
        grace = self.config.grace if grace is None else grace
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

    def _workers(self) -> list[Worker]:
        with self._lock:
            return [worker for _stream, worker in self._connections.values() if worker]

    def _accept_loop(self, listener: Listener) -> None:
        while True:
            self._slots.acquire()
            try:
                stream, peer = self._accept(listener)
            except ListenerClosed:
                self._slots.release()
                return
            self._accept_failures.succeeded()
            if self.config.once:
                self._stop_accepting()
            self._start_connection(stream, peer)

    def _accept(self, listener: Listener) -> tuple[Stream, Address]:
        while True:
            try:
                return listener.accept()
            except OSError as exc:
                if exc.errno not in OUT_OF_RESOURCES:
                    raise
                self._accept_failures.failed(exc, ACCEPT_RETRY_SECONDS)
                self.runtime.sleep(ACCEPT_RETRY_SECONDS)

    def _start_connection(self, stream: Stream, peer: Address) -> None:
        connection = next(self._ids)
        with self._lock:
            self._connections[connection] = (stream, None)
        worker = self.runtime.start_thread(
            lambda: self._serve(connection, stream, peer), f"trio-echo {peer}"
        )
        with self._lock:
            if connection in self._connections:
                self._connections[connection] = (stream, worker)

    def _serve(self, connection: int, stream: Stream, peer: Address) -> None:
        timeouts = self._timeouts
        try:
            log = ConnectionLog(
                connection, peer, sink=self.sink, clock=self.runtime.monotonic, stats=self.stats
            )
            conversation = Conversation(self.codec_factory(), log)
            try:
                ending = self._converse(stream, conversation)
            except Exception as exc:
                if self._aborting and isinstance(exc, OSError):
                    ending = Ending.SHUT_DOWN
                else:
                    log.failed_with(exc, conversation.bytes_in, conversation.bytes_out)
                    return
            finally:
                stream.close()
            log.ended(ending, timeouts, conversation.bytes_in, conversation.bytes_out)
        finally:
            with self._lock:
                del self._connections[connection]
            self._slots.release()

    def _converse(self, stream: Stream, conversation: Conversation) -> Ending:
        """Run the phases of :mod:`~trio_echo.lifecycle` to the connection's ending."""
        size, timeouts = self.config.receive_size, self._timeouts
        idle, patience = self.config.idle_timeout, self.config.send_timeout
        outgoing = b""
        step: Phase | Ending = Phase.READING
        while step is Phase.READING or step is Phase.SENDING:
            if step is Phase.READING:
                try:
                    received = stream.recv(size, idle)
                except TimeoutError:
                    return Ending.IDLE
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
        the reply still on its way (see :mod:`trio_echo.faults`). What is
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
