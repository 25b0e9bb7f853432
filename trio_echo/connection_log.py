"""What a server says about each connection, whichever driver runs it.

Drivers report through a :class:`ConnectionRecord` per connection. It turns
the codec's events into the bytes to write, counts bytes both ways, stamps
every :data:`ConnectionEvent` with the driver's clock and hands it to a sink:
:class:`LoggingSink` by default (the note's console lines, escaped), or a
test's recorder. Keeping this in one place is what lets the two drivers
produce the same transcript.
"""

from __future__ import annotations

import errno as errno_codes
import logging
import threading
from collections.abc import Callable
from typing import Protocol

import attrs

from .address import Address
from .errors import NetworkError
from .escape import escape, escape_text
from .lifecycle import Ending, Timeouts
from .log_budget import BURST, PER_SECOND, MessageBudget
from .os_errors import describe_failure
from .words import counted

logger = logging.getLogger("trio_echo.server")

PEER_RESETS = frozenset({errno_codes.ECONNRESET, errno_codes.EPIPE})
"""Errors that mean the peer went away abruptly: its doing, not the server's."""


@attrs.frozen
class Connected:
    """A client connected."""

    connection: int
    peer: Address
    at: float
    fault: str | None = None
    """The faults this connection got on purpose (``--fault``), as spec text."""
    via: Address | None = None
    """The proxy that sent a PROXY header; *peer* is then the client address it gave."""


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


@attrs.frozen
class DatagramAnswered:
    """A UDP listener received a datagram and sent *replies* datagrams back."""

    listener: str
    """The listener's spec, as bound (``udp://127.0.0.1:3100``)."""
    peer: Address
    at: float
    data: bytes
    replies: int
    fault: str | None = None
    """The faults its answer got (``drop``, ``duplicate,delay=20ms``...); None for none."""


ConnectionEvent = (
    Connected
    | MessageReceived
    | BytesDiscarded
    | Disconnected
    | ConnectionFailed
    | DatagramAnswered
)


class EventSink(Protocol):
    """Receives every connection event; must be cheap and must not raise.

    It is called synchronously, from whichever task or thread moves the
    connection's bytes: with the Trio driver that can be the dispatcher's
    task rather than the connection's own.

    A sink may also have a ``wants_messages`` attribute: when it is false as
    a connection opens, that connection skips building
    :class:`MessageReceived` events, the one event of the hot path. Likewise
    ``wants_connections``: when it is false, the connection skips its
    :class:`Connected` and (ordinary) :class:`Disconnected` events, which a
    stream of short connections would otherwise pay for each time. Failures
    are always reported, and the server's stats always count.
    """

    def __call__(self, event: ConnectionEvent, /) -> None: ...


def wants_messages(sink: EventSink) -> bool:
    """Whether *sink* wants a :class:`MessageReceived` for every message."""
    return bool(getattr(sink, "wants_messages", True))


def wants_connections(sink: EventSink) -> bool:
    """Whether *sink* wants a :class:`Connected` and a :class:`Disconnected` per connection."""
    return bool(getattr(sink, "wants_connections", True))


class LoggingSink:
    """Writes events to the ``trio_echo.server`` logger, the note's lines made safe.

    Connections and messages are logged at INFO, a connection's failure at
    ERROR, so each level shows what its name says: ``--log-level error``
    keeps the failures and nothing else. Received bytes are always escaped,
    and each connection's message lines are bounded by a
    :class:`~trio_echo.log_budget.MessageBudget`: what goes over is said in
    one line as the connection ends.
    """

    def __init__(self, log: logging.Logger = logger, budget: MessageBudget | None = None) -> None:
        self._log = log
        self._budget = budget if budget is not None else MessageBudget()

    @property
    def wants_messages(self) -> bool:
        """Messages are logged at INFO: below that level they are not worth building."""
        return self._log.isEnabledFor(logging.INFO)

    @property
    def wants_connections(self) -> bool:
        """Connections are logged at INFO, and so is what a connection's messages left unlogged.

        Below INFO neither is written, and no message was counted against the
        budget either (see :attr:`wants_messages`): a connection's start and
        ordinary end are then not worth building.
        """
        return self._log.isEnabledFor(logging.INFO)

    def __call__(self, event: ConnectionEvent, /) -> None:
        log = self._log
        if isinstance(event, Disconnected | ConnectionFailed):
            self._say_unlogged(event)
        match event:
            case ConnectionFailed(peer=peer, errno=errno, message=message) if (
                errno not in PEER_RESETS
            ):
                log.error("%s failed: %s", peer, failure_text(message, errno))
            case _ if not log.isEnabledFor(logging.INFO):
                return
            case ConnectionFailed(peer=peer, errno=errno, message=message):
                log.info("%s went away: %s", peer, failure_text(message, errno))
            case Connected(peer=peer, fault=None, via=None):
                log.info("%s connected", peer)
            case Connected(peer=peer, fault=fault, via=via):
                log.info("%s connected%s", peer, _connected_details(fault, via))
            case MessageReceived(connection=connection, peer=peer, at=at, data=data):
                if self._budget.allow(connection, at, len(data)):
                    log.info("%s received %s: %s", peer, counted(len(data), "byte"), escape(data))
            case BytesDiscarded(peer=peer, size=size):
                log.info("%s ignored %s the protocol does not read", peer, counted(size, "byte"))
            case Disconnected(peer=peer, reason=reason, bytes_in=bytes_in, bytes_out=bytes_out):
                log.info(
                    "%s disconnected (%s; %s in, %d out)",
                    peer,
                    reason,
                    counted(bytes_in, "byte"),
                    bytes_out,
                )
            case DatagramAnswered(
                listener=listener, peer=peer, data=data, replies=replies, fault=fault
            ):
                log.info(
                    "%s on %s: datagram of %s: %s (answered with %d%s)",
                    peer,
                    listener,
                    counted(len(data), "byte"),
                    escape(data),
                    replies,
                    "" if fault is None else f"; fault: {fault}",
                )

    def _say_unlogged(self, end: Disconnected | ConnectionFailed) -> None:
        unlogged = self._budget.end(end.connection)
        if unlogged is not None and self._log.isEnabledFor(logging.INFO):
            self._log.info(
                "%s sent %s (%s) more than the log takes (%d at once, then %g a second)",
                end.peer,
                counted(unlogged.messages, "message"),
                counted(unlogged.size, "byte"),
                BURST,
                PER_SECOND,
            )


@attrs.define
class ServerStats:
    """Totals over a server's life, safe to update from several threads."""

    connections: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    errors: int = 0
    """Connections that failed by the server's doing or a protocol error; not peer resets."""
    resets: int = 0
    """Connections the peer reset (or closed while a reply was being written)."""
    datagrams_in: int = 0
    datagrams_out: int = 0
    datagrams_refused: int = 0
    _lock: threading.Lock = attrs.field(factory=threading.Lock, repr=False, eq=False)

    def add(self, bytes_in: int, bytes_out: int, *, failed: bool, reset: bool = False) -> None:
        """Count one finished connection: failed, reset by its peer, or neither."""
        with self._lock:
            self.connections += 1
            self.bytes_in += bytes_in
            self.bytes_out += bytes_out
            self.errors += failed and not reset
            self.resets += reset

    def add_datagram(self, size: int, replies: int, replied: int) -> None:
        """Count one datagram received (*size* bytes) and its *replies* (*replied* bytes)."""
        with self._lock:
            self.datagrams_in += 1
            self.datagrams_out += replies
            self.bytes_in += size
            self.bytes_out += replied

    def refuse_datagram(self, size: int) -> None:
        """Count one datagram received and not answered (see ``transport.reflection``)."""
        with self._lock:
            self.datagrams_in += 1
            self.datagrams_refused += 1
            self.bytes_in += size

    def summary(self) -> str:
        """One line for the end of a server's life."""
        line = (
            f"served {counted(self.connections, 'connection')}, "
            f"{counted(self.bytes_in, 'byte')} in, {counted(self.bytes_out, 'byte')} out, "
            f"{counted(self.errors, 'error')}"
        )
        if self.resets:
            line += f", {self.resets} reset by the peer"
        if self.datagrams_in:
            line += (
                f"; {counted(self.datagrams_in, 'datagram')} in, {self.datagrams_out} out, "
                f"{self.datagrams_refused} refused"
            )
        return line


def failure_text(message: str, errno: int | None) -> str:
    """A failure as a person reads it: the message, escaped, and the OS's error number.

    ``line longer than 65536 bytes``, ``Connection reset by peer (errno 104)``.
    """
    text = escape_text(message)
    if errno is not None and f"(errno {errno})" not in text:
        text += f" (errno {errno})"
    return text


def _ending_reason(ending: Ending, timeouts: Timeouts) -> str:
    """The reason a :class:`Disconnected` event gives for *ending*."""
    if ending is Ending.IDLE:
        return f"idle for {timeouts.idle:g} s"
    return str(ending.value)


class ConnectionLog:
    """What one server connection says, from its :class:`Connected` to its one ending."""

    __slots__ = (
        "_clock",
        "_ended",
        "_sink",
        "_stats",
        "connection",
        "peer",
        "wants_connections",
        "wants_messages",
    )

    def __init__(
        self,
        connection: int,
        peer: Address,
        *,
        sink: EventSink,
        clock: Callable[[], float],
        stats: ServerStats,
        fault: str | None = None,
        via: Address | None = None,
    ) -> None:
        self.connection = connection
        self.peer = peer
        self._sink = sink
        self._clock = clock
        self._stats = stats
        self._ended = False
        self.wants_messages = wants_messages(sink)
        """Whether each message is worth an event (read once, as the connection opens)."""
        self.wants_connections = wants_connections(sink)
        """Whether the start and the ordinary end are worth events (read once, here too)."""
        if self.wants_connections:
            sink(Connected(connection, peer, clock(), fault, via))

    def message(self, data: bytes) -> None:
        """The peer sent a message (a chunk as read, or a greeting line)."""
        self._sink(MessageReceived(self.connection, self.peer, self._clock(), data))

    def discarded(self, size: int) -> None:
        """The peer sent *size* bytes the protocol has no use for."""
        self._sink(BytesDiscarded(self.connection, self.peer, self._clock(), size))

    def ended(self, ending: Ending, timeouts: Timeouts, bytes_in: int, bytes_out: int) -> None:
        """The connection ended as *ending*, having carried the given byte counts.

        A stalled peer is reported as a failure (it broke the send timeout);
        every other ending is a :class:`Disconnected`. Only the first ending
        of a connection counts.
        """
        if ending is Ending.STALLED:
            self.failed_with(stalled_send(timeouts.send), bytes_in, bytes_out)
            return
        if ending is Ending.SLOW_LINE:
            self.failed(f"no whole line within {timeouts.line:g} s", None, bytes_in, bytes_out)
            return
        if self._close(bytes_in, bytes_out, failed=False) and self.wants_connections:
            reason = _ending_reason(ending, timeouts)
            self._sink(
                Disconnected(self.connection, self.peer, self._clock(), reason, bytes_in, bytes_out)
            )

    def failed_with(self, exc: BaseException, bytes_in: int, bytes_out: int) -> None:
        """The connection ended because *exc* was raised; report it as an error.

        Named errors and OS errors are the peer's or the network's doing; any
        other exception is a bug, reported as an internal error (its traceback
        goes to the DEBUG log) so it ends this connection and nothing else.
        """
        failure = describe_failure(exc)
        self.failed(failure.message, failure.errno, bytes_in, bytes_out)
        if failure.internal:
            logger.debug("connection %d crashed", self.connection, exc_info=exc)

    def failed(self, message: str, errno: int | None, bytes_in: int, bytes_out: int) -> None:
        """The connection ended in an error: *message*, and the OS's number when there is one.

        A reset by the peer is counted apart from the server's own failures
        (and logged at INFO): a storm of clients resetting must not read like
        a broken server.
        """
        if self._close(bytes_in, bytes_out, failed=True, reset=errno in PEER_RESETS):
            self._sink(
                ConnectionFailed(
                    self.connection, self.peer, self._clock(), errno, message, bytes_in, bytes_out
                )
            )

    def _close(self, bytes_in: int, bytes_out: int, *, failed: bool, reset: bool = False) -> bool:
        """Count the connection in the server's stats; False if it had ended already."""
        if self._ended:
            return False
        self._ended = True
        self._stats.add(bytes_in, bytes_out, failed=failed, reset=reset)
        return True


def stalled_send(timeout: float) -> NetworkError:
    """The error for a peer that took no bytes for *timeout* seconds."""
    return NetworkError(f"peer took no data for {timeout:g} s")


def _connected_details(fault: str | None, via: Address | None) -> str:
    """What a connected line adds: the proxy it came through, the faults it got."""
    details = f" via {via}" if via is not None else ""
    return details + (f" (fault: {fault})" if fault is not None else "")
