"""One client session, independent of I/O: what to send, what came back.

A :class:`ClientSession` walks through the messages a
:class:`~trio_echo.config.ClientConfig` asks for, checks each reply with the
codec and reports the conversation line by line. The Trio and blocking
clients only move bytes between it and a socket, so they hold the very same
conversation.

A :class:`MeasuringSession` is the same conversation for a load-generating
run: nothing reported or kept, up to ``config.depth`` messages in flight,
each reply still checked byte for byte, each round trip timed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from itertools import islice, repeat

import attrs

from .codec import ClientCodec, DatagramReport, ReplyReceived, client_codec
from .codec.reply import MAX_PIECE, PREFIX, reply_for
from .config import ClientConfig, WireProtocol
from .errors import IncompleteReply, Timeout, TrioEchoError, UnexpectedData, WrongReply
from .escape import escape
from .words import counted

Report = Callable[[str], None]
"""Where a client's lines go: ``print`` on the command line, a list in a test."""


def silent(_line: str) -> None:
    """A report that discards every line."""
    pass


@attrs.frozen
class Exchange:
    """One message and its whole reply."""

    sent: bytes
    reply: bytes


@attrs.frozen
class SessionResult:
    """How one session went."""

    index: int
    exchanges: tuple[Exchange, ...]
    error: TrioEchoError | None
    seconds: float
    datagrams: DatagramReport | None = None
    """A UDP session's counts (lost, duplicated, late, round trips); None over a stream."""
    round_trips: int = attrs.field(
        default=attrs.Factory(lambda result: len(result.exchanges), takes_self=True)
    )
    """Messages answered; the same as ``len(exchanges)`` unless exchanges were not kept."""

    @property
    def ok(self) -> bool:
        return self.error is None


def show_reply(protocol: WireProtocol, reply: bytes) -> str:
    """A reply as a terminal shows it: escaped, a greeting or whoami line without its newline."""
    if protocol in (WireProtocol.GREETING, WireProtocol.WHOAMI) and reply.endswith(b"\n"):
        reply = reply[:-1]
    return escape(reply)


class ClientSession:
    """The conversation of one connection, message by message.

    Each message is made when it is sent. With *keep_exchanges* false the
    session only counts its round trips, so its memory stays the same
    however many messages it sends.
    """

    def __init__(
        self, config: ClientConfig, report: Report = silent, *, keep_exchanges: bool = True
    ) -> None:
        self._config = config
        self._codec: ClientCodec = client_codec(config.protocol, max_line=config.max_line)
        self._messages = config.messages()
        self._sent = 0
        self._report = report
        self._reporting = report is not silent
        """False for a silent report: the lines are then not even made (the hot path)."""
        self._current = b""
        self._keep = keep_exchanges or config.protocol is WireProtocol.WHOAMI
        # A whoami session's one answer is what a run of many summarises: always kept.
        self.where = str(config.target)
        """The server, as errors name it."""
        self.exchanges: list[Exchange] = []
        """Every message with its reply (empty unless exchanges are kept)."""
        self.round_trips = 0
        """Messages answered so far."""

    @property
    def done(self) -> bool:
        """True when every message has had its reply."""
        return self._sent >= len(self._messages) and not self._codec.awaiting_reply

    def next_outgoing(self) -> bytes | None:
        """The bytes of the next message to write, or None when the session is over."""
        if self._sent >= len(self._messages):
            return None
        self._current = self._messages[self._sent]
        self._sent += 1
        wire = self._codec.send(self._current)
        if self._reporting:
            self._report(f"sent: {escape(self._current)}")
        return wire

    def receive(self, data: bytes) -> bool:
        """Feed what the server sent (``b""`` for its close); True once the reply is whole."""
        events = self._codec.receive_data(data) if data else self._codec.receive_eof()
        for event in events:
            if isinstance(event, ReplyReceived):
                self.round_trips += 1
                if self._keep:
                    self.exchanges.append(Exchange(self._current, event.data))
                if self._reporting:
                    self._report(f"received: {show_reply(self._config.protocol, event.data)}")
                return True
        return False

    def result(self, index: int, error: TrioEchoError | None, seconds: float) -> SessionResult:
        """How the session went: what it exchanged, its error if any, how long it took."""
        return SessionResult(
            index, tuple(self.exchanges), error, seconds, round_trips=self.round_trips
        )

    def connect_timeout_error(self, seconds: float) -> Timeout:
        """The error for a connection that was not made within *seconds*."""
        return _connect_timeout(self.where, seconds)

    def timeout_error(self, seconds: float) -> TrioEchoError:
        """The error for a reply that did not complete within *seconds*.

        A server that sent part of a reply and stopped (one that truncates,
        say) is told apart from one that sent nothing at all.
        """
        return _reply_timeout(self.where, seconds, self._codec.partial_reply, self._current)


Record = Callable[[float, int], None]
"""Where a measuring session puts round trips' latency: seconds, and how many took it."""


def _ignore_latency(_seconds: float, _count: int) -> None:
    pass


_UNCLEAN_ENDS = (b"R", b"Re", b"Re:")
"""Endings after which a whole ``Re:`` reply may also be the start of a longer one."""


def _comparable(message: bytes) -> bool:
    """Whether the one-piece-per-124-bytes reply to *message* can be taken by comparison.

    Not when its bytes can also be read as the start of a longer valid
    reply (an ending of ``R``, ``Re``, ``Re:``), nor when a message of several
    pieces holds an ``R`` (a piece boundary could then fall elsewhere).
    """
    if message.endswith(_UNCLEAN_ENDS):
        return False
    return len(message) <= MAX_PIECE or b"R" not in message


class MeasuringSession:
    """The conversation of one load-generating connection: up to *depth* messages in flight.

    What :class:`ClientSession` does for a measuring run (no lines reported,
    no exchanges kept), built for the hot path: :meth:`take` hands out the
    bytes of the next messages, all at once, and :meth:`receive` says how
    many replies the server's bytes completed, timing each from its send.
    Replies are still checked byte for byte, in order: every byte must
    belong to the reply awaited, or the session fails with the errors the
    codecs raise (a wrong reply, an incomplete one, data nobody asked for).

    With several messages in flight a server may read two as one chunk and
    answer ``Re:`` once for both, so a reply is read as the C load generator
    reads it: ``Re:`` pieces of 1 to 124 bytes whose payloads, end to end,
    are the messages sent, a message's reply complete with its last byte.
    With one message in flight that is exactly what the codec accepts.

    The common reply is taken by comparison alone: the echo of a message is
    the message, and a server that read the message in one piece answers
    ``Re:`` and the message in 124-byte pieces. Any other split goes to a
    :class:`_PieceReader`, which follows every way of reading the bytes;
    the session comes back to comparing once one reading is left and it
    stands at the end of a reply (see :func:`_comparable` for the messages
    always read that way).

    Memory is bounded by *depth*: it keeps the messages in flight, their send
    times, and the bytes of one partial reply.
    """

    __slots__ = (
        "_batches",
        "_buffer",
        "_echo",
        "_expected",
        "_fixed",
        "_fixed_reply",
        "_in_flight",
        "_left",
        "_messages",
        "_next",
        "_piece",
        "_reader",
        "_record",
        "_sent_at",
        "round_trips",
        "where",
    )

    def __init__(self, config: ClientConfig, record: Record | None = None) -> None:
        if config.protocol not in (WireProtocol.REPLY, WireProtocol.ECHO):
            raise ValueError("a measuring session speaks the reply or echo protocol")
        self._echo = config.protocol is WireProtocol.ECHO
        self._messages = config.messages()
        self._fixed = self._messages.fixed
        """The one message of a template without ``{i}``: made once, not per send."""
        self._fixed_reply = b"" if self._fixed is None else self._expected_reply(self._fixed)
        self._left = len(self._messages)
        self._next = 0
        self._record: Record = record if record is not None else _ignore_latency
        self._in_flight: deque[bytes] = deque()
        """The messages sent and not yet answered, oldest first."""
        self._expected: deque[bytes] = deque()
        """Per message in flight, the reply taken by comparison (``b""``: never so taken)."""
        self._sent_at: deque[float] = deque()
        """When each batch of messages in flight was sent, oldest first."""
        self._batches: deque[int] = deque()
        """How many messages of each batch are still in flight (``take`` sends one batch)."""
        self._buffer = b""
        """Bytes of the oldest reply in flight received so far."""
        self._piece = 0
        """Payload bytes of the last ``Re:`` piece taken (0 before the first): it may go on."""
        self._reader: _PieceReader | None = None
        """Set while a reply split some other way is being followed (see the class doc)."""
        self.round_trips = 0
        """Messages answered so far."""
        self.where = str(config.target)
        """The server, as errors name it."""

    @property
    def in_flight(self) -> int:
        """Messages sent whose reply has not completed."""
        return len(self._in_flight)

    @property
    def done(self) -> bool:
        """True once no message is left to send and every one sent has its reply."""
        return self._left == 0 and not self._in_flight

    def stop(self) -> None:
        """Send nothing more (the run's time is up); the replies in flight are still awaited."""
        self._left = 0

    def take(self, count: int, now: float) -> bytes:
        """The bytes of up to *count* more messages, sent at *now*; ``b""`` when none is left."""
        count = min(count, self._left)
        if count <= 0:
            return b""
        self._left -= count
        self._sent_at.append(now)
        self._batches.append(count)
        fixed = self._fixed
        if fixed is not None and self._reader is None:
            # The same message each time: the batch in a few calls, however large.
            self._in_flight.extend(repeat(fixed, count))
            self._expected.extend(repeat(self._fixed_reply, count))
            return fixed if count == 1 else fixed * count
        if count == 1:
            return self._add(fixed or self._make())
        return b"".join([self._add(fixed or self._make()) for _ in range(count)])

    def receive(self, data: bytes, now: float) -> int:
        """Feed what the server sent at *now* (``b""``: it closed); how many replies completed.

        Each completed reply's latency, from its send to *now*, goes to the
        session's record. Raises :class:`~trio_echo.errors.WrongReply`,
        :class:`~trio_echo.errors.IncompleteReply` or
        :class:`~trio_echo.errors.UnexpectedData` as the codecs do.
        """
        if not data:
            if self._in_flight:
                raise IncompleteReply(
                    f"the server closed the connection before the whole reply to "
                    f"{escape(self._in_flight[0])} arrived (got {escape(self._buffer)})"
                )
            return 0
        expected = self._expected
        if self._reader is None and not self._buffer and len(expected) == 1 and data == expected[0]:
            # The lockstep round trip, its reply in one read: _answered() written out.
            expected.pop()
            self._piece = (len(self._in_flight.pop()) - 1) % MAX_PIECE + 1
            self._batches.pop()
            self._record(now - self._sent_at.pop(), 1)
            self.round_trips += 1
            return 1
        if self._reader is not None:
            answered = self._receive_read(data, 0)
        else:
            answered = self._receive_compared(self._buffer + data if self._buffer else data)
        if answered:
            self._answered(answered, now)
        return answered

    @property
    def partial_reply(self) -> bytes:
        """Bytes of the oldest reply in flight received so far."""
        return self._buffer

    def result(self, index: int, error: TrioEchoError | None, seconds: float) -> SessionResult:
        """How the session went: its round trips (no exchanges kept), its error if any."""
        return SessionResult(index, (), error, seconds, round_trips=self.round_trips)

    def connect_timeout_error(self, seconds: float) -> Timeout:
        """The error for a connection that was not made within *seconds*."""
        return _connect_timeout(self.where, seconds)

    def timeout_error(self, seconds: float) -> TrioEchoError:
        """The error for the oldest reply in flight not completed within *seconds*."""
        current = self._in_flight[0] if self._in_flight else b""
        return _reply_timeout(self.where, seconds, self._buffer, current)

    def oldest_sent_at(self) -> float | None:
        """When the oldest message in flight was sent; None when none is."""
        return self._sent_at[0] if self._sent_at else None

    def _make(self) -> bytes:
        """The next message of a template with ``{i}``."""
        message = self._messages.make(self._next)
        self._next += 1
        return message

    def _expected_reply(self, message: bytes) -> bytes:
        if self._echo:
            return message
        return reply_for(message) if _comparable(message) else b""

    def _add(self, message: bytes) -> bytes:
        self._in_flight.append(message)
        if self._reader is not None:
            self._reader.expect(message)
        if message is self._fixed:
            reply = self._fixed_reply
        elif self._echo:
            reply = message
        elif len(message) <= MAX_PIECE and not message.endswith(_UNCLEAN_ENDS):
            reply = PREFIX + message  # reply_for() and _comparable() for one piece, inline
        else:
            reply = self._expected_reply(message)
        self._expected.append(reply)
        return message

    def _answered(self, count: int, now: float) -> None:
        """The oldest *count* messages in flight have their replies at *now*: time and drop them.

        A batch's messages share their send time, so each batch's share of
        *count* is recorded in one call.
        """
        record, sent_at, batches = self._record, self._sent_at, self._batches
        left = count
        while left:
            size = batches[0]
            if size <= left:
                batches.popleft()
                record(now - sent_at.popleft(), size)
                left -= size
            else:
                batches[0] = size - left
                record(now - sent_at[0], left)
                left = 0
        in_flight, expected = self._in_flight, self._expected
        if count == len(in_flight):
            in_flight.clear()
            expected.clear()
        else:
            for _ in range(count):
                in_flight.popleft()
                expected.popleft()
        self.round_trips += count

    def _receive_compared(self, data: bytes) -> int:
        """Replies completed by *data* (the partial reply included), by comparison alone."""
        expected = self._expected
        answered = position = 0
        fixed = self._fixed_reply
        if fixed and len(expected) > 1:
            # Every reply in flight is the same one: as many whole ones as fit, in one comparison.
            whole = min(len(data) // len(fixed), len(expected))
            if whole > 1 and data.startswith(fixed * whole):
                answered, position = whole, whole * len(fixed)
        for want in islice(expected, answered, None):
            if not want or not data.startswith(want, position):
                break
            position += len(want)
            answered += 1
        if answered and not self._echo:
            self._piece = (len(self._in_flight[answered - 1]) - 1) % MAX_PIECE + 1
        rest = data[position:] if position else data
        if not rest:
            self._buffer = b""
            return answered
        if answered < len(expected):
            want = expected[answered]
            if len(rest) < len(want) and want.startswith(rest):
                self._buffer = rest
                return answered
        if answered >= len(self._in_flight):
            raise UnexpectedData(f"the server sent {escape(rest)} while no reply was expected")
        if self._echo:
            raise WrongReply(
                f"echo {escape(rest)} differs from {escape(self._in_flight[answered])}"
            )
        reader = _PieceReader(self._piece)
        for index in range(answered, len(self._in_flight)):
            reader.expect(self._in_flight[index])
        self._reader = reader
        self._buffer = b""
        return answered + self._receive_read(rest, answered)

    def _receive_read(self, data: bytes, skip: int) -> int:
        """Replies completed by *data*, read by the piece reader; back to comparing when clean.

        *skip* is how many replies in flight were already completed by
        comparison (they are not the reader's).
        """
        reader = self._reader
        assert reader is not None
        try:
            answered = reader.feed(data)
        except WrongReply:
            oldest = self._in_flight[skip] if skip < len(self._in_flight) else b""
            raise WrongReply(
                f"reply {escape(self._buffer + data)} does not answer {escape(oldest)}"
            ) from None
        self._buffer = b"" if answered else self._buffer + data
        piece = reader.settled()
        if piece is not None:
            self._reader, self._piece, self._buffer = None, piece, b""
        return answered


Reading = tuple[int, int]
"""One way of reading a reply so far: (payload bytes matched, state).

The state is the bytes of ``Re:`` matched (0 to 2), or 3 plus the
payload bytes of the piece the reading is in."""

_IN_PIECE = len(PREFIX)
_R = PREFIX[0]


class _PieceReader:
    """Reads ``Re:`` pieces whose payloads, end to end, must be the messages sent.

    Several readings live side by side while a byte is ambiguous (an ``R``
    that is the message's next byte and could also start a new piece); the
    bytes are wrong once none is left. A reply is complete when some reading
    has matched its last byte, as the codec's tracker takes a reply. A run
    of bytes with one reading is matched in one comparison, not byte by
    byte. It keeps the payload not yet matched by every reading, so its
    memory is bounded by the messages in flight.
    """

    __slots__ = ("_base", "_ends", "_last_end", "_payload", "_readings", "_total")

    def __init__(self, piece: int) -> None:
        self._payload = bytearray()
        """The messages' bytes from :attr:`_base` on."""
        self._base = 0
        self._total = 0
        """Payload bytes sent since the reader began."""
        self._ends: deque[int] = deque()
        """Where each message in flight ends in the payload."""
        self._last_end = 0
        """Where the last completed message ended."""
        self._readings: set[Reading] = {(0, _IN_PIECE + piece if piece else 0)}

    def expect(self, message: bytes) -> None:
        """A message was sent: its bytes come next in the payload."""
        self._payload += message
        self._total += len(message)
        self._ends.append(self._total)

    def feed(self, data: bytes) -> int:
        """Add bytes from the server; how many replies they completed (WrongReply if none can)."""
        readings = self._readings
        position, size = 0, len(data)
        while position < size:
            if len(readings) == 1:
                readings, position = self._run(next(iter(readings)), data, position)
            else:
                readings = self._step(readings, data[position])
                position += 1
            if not readings:
                raise WrongReply(f"reply bytes {escape(data)} do not answer what was sent")
        self._readings = readings
        top = max(matched for matched, _ in readings)
        answered = 0
        ends = self._ends
        while ends and ends[0] <= top:
            self._last_end = ends.popleft()
            answered += 1
        low = min(matched for matched, _ in readings)
        if low > self._base:
            del self._payload[: low - self._base]
            self._base = low
        return answered

    def settled(self) -> int | None:
        """The last piece's length when one reading is left at the end of a reply; else None."""
        if len(self._readings) != 1:
            return None
        ((matched, state),) = self._readings
        if state > _IN_PIECE and matched == self._last_end:
            return state - _IN_PIECE
        return None

    def _step(self, readings: set[Reading], byte: int) -> set[Reading]:
        """Every reading *byte* leads to from *readings*."""
        following: set[Reading] = set()
        payload, base, total = self._payload, self._base, self._total
        for matched, state in readings:
            if state < _IN_PIECE:
                if byte == PREFIX[state]:
                    following.add((matched, state + 1))
                continue
            if (
                state < _IN_PIECE + MAX_PIECE
                and matched < total
                and byte == payload[matched - base]
            ):
                following.add((matched + 1, state + 1))
            if byte == _R and state > _IN_PIECE:
                following.add((matched, 1))
        return following

    def _run(self, reading: Reading, data: bytes, position: int) -> tuple[set[Reading], int]:
        """Move a lone reading through as much of *data* as has one reading: one comparison.

        The rest of a ``Re:``, or payload up to the next ``R`` (the only byte
        that can be read two ways); anything else takes one :meth:`_step`.
        """
        matched, state = reading
        if state < _IN_PIECE:
            rest = _PREFIX_LEFT[state]
            if data.startswith(rest, position):
                return {(matched, _IN_PIECE)}, position + len(rest)
        else:
            room = min(_IN_PIECE + MAX_PIECE - state, self._total - matched)
            end = data.find(_R_BYTE, position, position + room)
            if end < 0:
                end = min(position + room, len(data))
            run = end - position
            offset = matched - self._base
            if run and data[position:end] == self._payload[offset : offset + run]:
                return {(matched + run, state + run)}, end
        return self._step({reading}, data[position]), position + 1


_PREFIX_LEFT = tuple(PREFIX[offset:] for offset in range(len(PREFIX)))
_R_BYTE = PREFIX[:1]


def _connect_timeout(where: str, seconds: float) -> Timeout:
    return Timeout(f"connect to {where}: no answer within {seconds:g} s")


def _reply_timeout(where: str, seconds: float, partial: bytes, current: bytes) -> TrioEchoError:
    """No reply within *seconds*, or only *partial* of the reply to *current*."""
    if not partial:
        return Timeout(f"no reply from {where} within {seconds:g} s")
    return IncompleteReply(
        f"reply from {where} still incomplete after {seconds:g} s: "
        f"got {counted(len(partial), 'byte')}, "
        f"{escape(partial)}, for {escape(current)}"
    )


def describe_datagram_report(report: DatagramReport) -> str:
    """One line about a UDP session: what was answered, lost and doubled, and round trips."""
    line = (
        f"{report.sent} sent, {report.answered} answered, {report.lost} lost "
        f"({report.late} late), {report.duplicated} duplicated, {report.wrong} wrong"
    )
    if report.in_flight:
        line += f", {report.in_flight} in flight"
    if report.round_trip_min is None:
        return line
    assert report.round_trip_mean is not None and report.round_trip_max is not None
    return (
        f"{line}; round trip min {_milliseconds(report.round_trip_min)}, "
        f"mean {_milliseconds(report.round_trip_mean)}, max {_milliseconds(report.round_trip_max)}"
    )


def _milliseconds(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def summarise(results: Sequence[SessionResult], seconds: float) -> str:
    """One line over many sessions: how many succeeded, round trips, rate."""
    ok = sum(result.ok for result in results)
    trips = sum(result.round_trips for result in results)
    return describe_run(ok, len(results), trips, seconds)


def describe_run(ok: int, sessions: int, round_trips: int, seconds: float) -> str:
    """``7/10 sessions ok, 70 round trips in 0.012 s (5833 round trips/s)``; singular for one."""
    rate = round_trips / seconds if seconds > 0 else float("inf")
    noun = "session" if sessions == 1 else "sessions"
    trips = "round trip" if round_trips == 1 else "round trips"
    return (
        f"{ok}/{sessions} {noun} ok, {round_trips} {trips} in {seconds:.3f} s "
        f"({rate:.0f} round trips/s)"
    )
