"""What a server says about each connection, whichever driver runs it.

Drivers report through a :class:`ConnectionRecord` per connection. It turns
the codec's events into the bytes to write, counts bytes both ways, stamps
every :data:`ConnectionEvent` with the driver's clock and hands it to a sink:
:class:`LoggingSink` by default (the note's console lines, escaped), or a
test's recorder. Keeping this in one place is what lets the two drivers
produce the same transcript.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Protocol

import attrs

from .address import Address
from .codec.base import ServerCodec
from .codec.events import Discarded, Received, Send, ServerEvent
from .errors import NetworkError
from .escape import escape
from .os_errors import describe_failure

logger = logging.getLogger("trio_echo.server")


@attrs.frozen
class Connected:
    """A client connected."""

    connection: int
    peer: Address
    at: float


@attrs.frozen
class MessageReceived:
    """A client sent a message (a chunk as read, or a greeting line)."""

    connection: int
    peer: Address
    at: float
    data: bytes


@attrs.frozen
class BytesDiscarded:
    """A client sent bytes the protocol has no use for."""

    connection: int
    peer: Address
    at: float
    size: int


@attrs.frozen
class Disconnected:
    """A connection ended; *reason* says how, the counts say how much it carried."""

    connection: int
    peer: Address
    at: float
    reason: str
    bytes_in: int
    bytes_out: int


@attrs.frozen
class ConnectionFailed:
    """A connection ended in an error: its number (when the OS gave one) and message."""

    connection: int
    peer: Address
    at: float
    errno: int | None
    message: str
    bytes_in: int
    bytes_out: int


ConnectionEvent = Connected | MessageReceived | BytesDiscarded | Disconnected | ConnectionFailed


class EventSink(Protocol):
    """Receives every connection event; must be cheap and must not raise.

    It is called synchronously, from whichever task or thread moves the
    connection's bytes: with the Trio driver that can be the dispatcher's
    task rather than the connection's own.

    A sink may also have a ``wants_messages`` attribute: when it is false as
    a connection opens, that connection skips building
    :class:`MessageReceived` events, the one event of the hot path.
    """

    def __call__(self, event: ConnectionEvent, /) -> None: ...


def wants_messages(sink: EventSink) -> bool:
    """Whether *sink* wants a :class:`MessageReceived` for every message."""
    return bool(getattr(sink, "wants_messages", True))


class LoggingSink:
    """Writes events to the ``trio_echo.server`` logger, the note's lines made safe.

    Messages are logged at INFO, errors at WARNING, so ``--log-level warning``
    keeps only the errors. Received bytes are always escaped.
    """

    def __init__(self, log: logging.Logger = logger) -> None:
        self._log = log

    @property
    def wants_messages(self) -> bool:
        """Messages are logged at INFO: below that level they are not worth building."""
        return self._log.isEnabledFor(logging.INFO)

    def __call__(self, event: ConnectionEvent, /) -> None:
        log = self._log
        match event:
            case ConnectionFailed(peer=peer, errno=errno, message=message):
                number = "-" if errno is None else str(errno)
                log.warning("%s error No: %s Message: %s", peer, number, message)
            case _ if not log.isEnabledFor(logging.INFO):
                return
            case Connected(peer=peer):
                log.info("%s connected", peer)
            case MessageReceived(peer=peer, data=data):
                log.info("%s received %d bytes: %s", peer, len(data), escape(data))
            case BytesDiscarded(peer=peer, size=size):
                log.info("%s ignored %d bytes after the greeting line", peer, size)
            case Disconnected(peer=peer, reason=reason, bytes_in=bytes_in, bytes_out=bytes_out):
                log.info(
                    "%s disconnected (%s; %d bytes in, %d out)", peer, reason, bytes_in, bytes_out
                )


@attrs.define
class ServerStats:
    """Totals over a server's life, safe to update from several threads."""

    connections: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    errors: int = 0
    _lock: threading.Lock = attrs.field(factory=threading.Lock, repr=False, eq=False)

    def add(self, bytes_in: int, bytes_out: int, *, failed: bool) -> None:
        """Count one finished connection."""
        with self._lock:
            self.connections += 1
            self.bytes_in += bytes_in
            self.bytes_out += bytes_out
            self.errors += failed

    def summary(self) -> str:
        """One line for the end of a server's life."""
        return (
            f"served {_count(self.connections, 'connection')}, {self.bytes_in} bytes in, "
            f"{self.bytes_out} bytes out, {_count(self.errors, 'error')}"
        )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def stalled_send(timeout: float) -> NetworkError:
    """The error for a peer that took no bytes for *timeout* seconds."""
    return NetworkError(f"peer took no data for {timeout:g} s")


class ConnectionRecord:
    """The life of one server connection, as both drivers report it."""

    __slots__ = (
        "_clock",
        "_codec",
        "_ended",
        "_sink",
        "_stats",
        "_wants_messages",
        "bytes_in",
        "bytes_out",
        "connection",
        "finished",
        "peer",
    )

    def __init__(
        self,
        connection: int,
        peer: Address,
        codec: ServerCodec,
        *,
        sink: EventSink,
        clock: Callable[[], float],
        stats: ServerStats,
    ) -> None:
        self.connection = connection
        self.peer = peer
        self._codec = codec
        self.finished = codec.finished
        """True once the codec has ended the conversation: nothing more is read.

        An attribute, not a property: both drivers test it on every read."""
        self.bytes_in = 0
        self.bytes_out = 0
        self._sink = sink
        self._clock = clock
        self._stats = stats
        self._ended = False
        self._wants_messages = wants_messages(sink)
        sink(Connected(connection, peer, clock()))

    @property
    def peer_closed(self) -> bool:
        """True once the peer ended its side (end of input was read)."""
        return self._codec.peer_closed

    def respond(self, data: bytes | bytearray) -> bytes:
        """Feed what was read (``b""`` for end of input) to the codec; return what to send.

        Both drivers call this for every read, so the conversation itself is
        one piece of code whichever driver moves the bytes.
        """
        if type(data) is not bytes:
            data = bytes(data)
        codec = self._codec
        if not self._wants_messages:
            answer = codec.answer(data)
            if answer is not None:
                self.bytes_in += len(data)
                return answer
        events = codec.receive_data(data) if data else codec.receive_eof()
        self.finished = codec.finished
        return self.handle(events, len(data))

    def handle(self, events: Iterable[ServerEvent], received: int = 0) -> bytes:
        """Report the codec's *events* for a read of *received* bytes; return what to send.

        All of a read's ``Send`` events become one write.
        """
        self.bytes_in += received
        outgoing = b""
        for event in events:
            if isinstance(event, Send):
                outgoing += event.data
            elif isinstance(event, Received):
                if self._wants_messages:
                    self._report_message(event.data)
            elif isinstance(event, Discarded):
                self._sink(BytesDiscarded(self.connection, self.peer, self._clock(), event.size))
        return outgoing

    def _report_message(self, data: bytes) -> None:
        self._sink(MessageReceived(self.connection, self.peer, self._clock(), data))

    def sent(self, size: int) -> None:
        """*size* bytes reached the peer's side of the connection."""
        self.bytes_out += size

    def discarded(self, size: int) -> None:
        """*size* bytes were read and thrown away (while lingering); report them."""
        self.handle([Discarded(size)], size)

    def close_finished(self, peer_closed: bool) -> None:
        """The conversation ran to its end, by the peer's close or the protocol's."""
        self.close("closed by peer" if peer_closed else "conversation complete")

    def close_idle(self, timeout: float) -> None:
        """The peer sent nothing for *timeout* seconds."""
        self.close(f"idle for {timeout:g} s")

    def close_for_shutdown(self) -> None:
        """The server's shutdown cut the connection."""
        self.close("server shut down")

    def close(self, reason: str) -> None:
        """The connection ended normally (or by a limit, as *reason* says)."""
        if self._ended:
            return
        self._ended = True
        self._stats.add(self.bytes_in, self.bytes_out, failed=False)
        self._sink(
            Disconnected(
                self.connection, self.peer, self._clock(), reason, self.bytes_in, self.bytes_out
            )
        )

    def fail_with(self, exc: Exception) -> None:
        """The connection ended because *exc* was raised; report it as an error.

        Named errors and OS errors are the peer's or the network's doing; any
        other exception is a bug, reported as an internal error (its traceback
        goes to the DEBUG log) so it ends this connection and nothing else.
        """
        failure = describe_failure(exc)
        self.fail(failure.message, failure.errno)
        if failure.internal:
            logger.debug("connection %d crashed", self.connection, exc_info=exc)

    def fail(self, message: str, errno: int | None = None) -> None:
        """The connection ended in an error."""
        if self._ended:
            return
        self._ended = True
        self._stats.add(self.bytes_in, self.bytes_out, failed=True)
        self._sink(
            ConnectionFailed(
                self.connection,
                self.peer,
                self._clock(),
                errno,
                message,
                self.bytes_in,
                self.bytes_out,
            )
        )
