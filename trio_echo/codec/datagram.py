"""The protocols over datagrams: a server's answer to one, a client's view of a session.

Over UDP (RFC 862 section 2) every datagram is answered on its own, by the
same rule as the stream codec: :func:`answer_datagram` says what a server
sends back for one datagram. There is no connection, no order and no
delivery guarantee, so the client side is a different object from the
stream codec: a :class:`DatagramSession` sends messages, retries those
whose answer does not come in time, matches every datagram that arrives
against what it sent, and ends with a :class:`DatagramReport` saying what
was answered, lost, duplicated, late or wrong.

Nothing here does I/O or reads a clock: a driver passes the current time
(any monotonic float, in seconds) into every call and does the sending and
waiting itself.
"""

from __future__ import annotations

import enum
import math
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import attrs

from ..config import WireProtocol
from ..errors import ConfigError, LocalProtocolError
from ..escape import escape
from .greeting import NEWLINE, SERVER_GREETING
from .reply import MAX_PIECE, PREFIX, reply_for

MAX_REPLY_DATAGRAM = len(PREFIX) + MAX_PIECE
"""The longest datagram a ``reply`` server sends: the note's 127 bytes."""


def answer_datagram(protocol: WireProtocol, data: bytes) -> list[bytes]:
    """The datagrams a server sends, in order, for one datagram *data* it received.

    - ``echo``: ``[data]``, one datagram with the same bytes (RFC 862 section 2).
    - ``reply``: ``b"Re:" + piece`` for each 124-byte piece of *data*, each
      its own datagram of at most 127 bytes; nothing is cut.
    - ``greeting``: ``[b"Hello From Server\\n"]``, whatever the datagram held.

    An empty datagram is a real message over UDP (unlike an empty read on a
    stream, which means the peer closed), so it is answered too: ``echo``
    sends one empty datagram back, which is what RFC 862's "send back the
    data" implies for no data; ``reply`` sends ``[b"Re:"]``, the prefix
    followed by the (empty) payload, as :func:`~trio_echo.codec.reply_for`
    gives for ``b""``. Either way one datagram in gets at least one out, so
    a client can tell "answered" from "lost" for every message it sends.
    """
    if protocol is WireProtocol.ECHO:
        return [bytes(data)]
    if protocol is WireProtocol.GREETING:
        return [SERVER_GREETING]
    if protocol is WireProtocol.WHOAMI:
        raise LocalProtocolError("a whoami answer depends on the server: see codec.whoami")
    starts = range(0, max(len(data), 1), MAX_PIECE)
    return [reply_for(bytes(data[start : start + MAX_PIECE])) for start in starts]


def request_datagram(protocol: WireProtocol, message: bytes) -> bytes:
    """The datagram a client sends for *message*: a greeting goes as a line, with its newline."""
    if protocol is WireProtocol.GREETING:
        return message + NEWLINE
    return message


class Arrival(enum.Enum):
    """What one datagram a client received turned out to be."""

    PIECE = "piece"
    """A piece of a message's answer; more pieces are still missing."""
    ANSWERED = "answered"
    """The datagram that made a message's answer whole."""
    LATE = "late"
    """Part of the answer to a message already given up (after its last timeout)."""
    REDUNDANT = "redundant"
    """A copy of an answer that a retry explains (the message was sent more than once)."""
    DUPLICATE = "duplicate"
    """A copy of an answer beyond what the sends explain: the network or the server doubled it."""
    WRONG = "wrong"
    """Not the answer, or a piece of it, to any message this session remembers."""


def _validator(predicate: Callable[[Any], bool], what: str) -> Callable[[Any, Any, Any], None]:
    def validate(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if isinstance(value, bool) or not predicate(value):
            raise ConfigError(f"{attribute.name} must be {what}, not {value!r}")

    return validate


def _is_count(minimum: int) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, int) and value >= minimum


@attrs.frozen(kw_only=True)
class SessionLimits:
    """How a :class:`DatagramSession` waits, retries and remembers."""

    timeout: float = attrs.field(
        validator=_validator(
            lambda v: isinstance(v, int | float) and 0 < v < math.inf,
            "a positive number of seconds",
        )
    )
    """Seconds after each send before the message is sent again or given up."""
    retries: int = attrs.field(validator=_validator(_is_count(0), "zero or a positive integer"))
    """Sends after the first one for a message whose answer does not come in time."""
    window: int = attrs.field(default=1, validator=_validator(_is_count(1), "a positive integer"))
    """Messages in flight at once (sent, neither answered nor given up).

    1 is lockstep, as the note's client does over TCP: send a message, wait
    for its answer or for its retries to run out, then send the next.
    """
    history: int = attrs.field(
        default=64, validator=_validator(_is_count(0), "zero or a positive integer")
    )
    """Settled messages remembered, to tell a late or doubled answer from a wrong datagram.

    An answer arriving after more than this many later messages have
    settled is counted as wrong: the session no longer knows what it sent.
    """
    wrong_samples: int = attrs.field(
        default=8, validator=_validator(_is_count(0), "zero or a positive integer")
    )
    """Wrong datagrams kept, escaped, for the report; the rest are only counted."""


@attrs.frozen
class MessageOutcome:
    """How one message of a session ended."""

    index: int
    """Position of the message in the session, from 0."""
    message: bytes
    answered: bool
    """True if its whole answer came before its last timeout; False if it was given up."""
    sends: int
    """How many times it was sent (1 + the retries used)."""
    sent_at: float
    """When it was first sent."""
    round_trip: float | None
    """Seconds from the send its answer is attributed to until the answer was whole.

    That send is the latest one made before the answer's first datagram
    arrived. Content cannot say which copy of a retried message the server
    answered (Karn's ambiguity), so for ``sends > 1`` this is a lower
    bound. None for a message given up.
    """


@attrs.frozen(kw_only=True)
class DatagramReport:
    """What a :class:`DatagramSession` saw, counted (see :meth:`DatagramSession.report`).

    Messages: ``answered + lost + in_flight == sent``, and ``late`` counts
    those of the ``lost`` whose answer turned up after they were given up
    (so ``lost - late`` never got an answer at all). Datagrams received:
    every one is exactly one :class:`Arrival`; ``duplicated``,
    ``redundant`` and ``wrong`` count theirs.
    """

    protocol: WireProtocol
    sent: int
    """Messages sent at least once."""
    datagrams_sent: int
    """Every send, retries included."""
    datagrams_received: int
    answered: int
    lost: int
    """Messages given up: no whole answer within their timeout, after every retry."""
    late: int
    """Given-up messages of which some answer datagram arrived afterwards."""
    in_flight: int
    """Messages sent and not yet settled when the report was taken."""
    duplicated: int
    redundant: int
    wrong: int
    wrong_samples: tuple[str, ...]
    """The first wrong datagrams, escaped (at most :attr:`SessionLimits.wrong_samples`)."""
    round_trip_min: float | None
    round_trip_mean: float | None
    round_trip_max: float | None
    outcomes: tuple[MessageOutcome, ...]
    """Outcomes not yet taken with :meth:`~DatagramSession.take_outcomes`, in settling order."""


class _Message:
    """One message sent and not forgotten: its expected answer datagrams and what came."""

    __slots__ = (
        "answered",
        "answering_send",
        "data",
        "expected",
        "given_up",
        "index",
        "last_sent",
        "late",
        "missing",
        "received",
        "sends",
        "sent_at",
    )

    def __init__(self, index: int, data: bytes, answer: list[bytes], now: float) -> None:
        self.index = index
        self.data = data
        self.expected: dict[bytes, int] = {}
        for datagram in answer:
            self.expected[datagram] = self.expected.get(datagram, 0) + 1
        self.received: dict[bytes, int] = {}
        self.missing = len(answer)
        self.sends = 1
        self.sent_at = self.last_sent = now
        self.answering_send: float | None = None
        self.answered = self.given_up = self.late = False

    @property
    def settled(self) -> bool:
        return self.answered or self.given_up

    def needs(self, datagram: bytes) -> bool:
        """True while fewer copies of *datagram* arrived than one answer holds."""
        return self.received.get(datagram, 0) < self.expected[datagram]

    def explains(self, datagram: bytes) -> bool:
        """True while the sends so far account for another copy of *datagram*."""
        return self.received.get(datagram, 0) < self.sends * self.expected[datagram]

    def take(self, datagram: bytes) -> None:
        if self.needs(datagram):
            self.missing -= 1
        self.received[datagram] = self.received.get(datagram, 0) + 1


class DatagramSession:
    """One UDP client session: what to send when, and what each datagram received means.

    *messages* may be any iterable, even an endless generator: it is read
    one message ahead of need, and the session holds only the messages in
    flight (at most ``window``), the last ``history`` settled ones and the
    outcomes not yet taken, so memory does not grow with the run's length.

    Matching is by content, since a datagram carries nothing else: an
    ``echo`` answer equals a message sent, a ``reply`` answer is the set of
    ``Re:`` pieces :func:`answer_datagram` gives for the message (they may
    arrive in any order; the session counts which have come), and the
    greeting line answers whichever message is oldest. When several
    messages could take a datagram (identical messages, or any two
    ``greeting`` messages), it goes to the oldest message still waiting for
    it, then to the oldest given-up one (a late answer), then to a message
    whose retries explain another copy; only then is it a duplicate, and a
    datagram no remembered message could take is wrong.

    The driver's loop: call :meth:`next_send` until it returns None,
    sending each datagram; wait for a datagram until :meth:`next_deadline`;
    hand what arrives to :meth:`receive`; stop when :attr:`done`. Times
    must not go backwards; a deadline is reached at exactly its time.
    """

    def __init__(
        self,
        protocol: WireProtocol,
        messages: Iterable[bytes],
        *,
        timeout: float,
        retries: int,
        window: int = 1,
        history: int = 64,
        wrong_samples: int = 8,
    ) -> None:
        if not isinstance(protocol, WireProtocol):
            raise ConfigError(f"protocol must be reply, greeting or echo, not {protocol!r}")
        self.protocol = protocol
        self.limits = SessionLimits(
            timeout=timeout,
            retries=retries,
            window=window,
            history=history,
            wrong_samples=wrong_samples,
        )
        self._source: Iterator[bytes] = iter(messages)
        self._upcoming = self._pull()
        self._next_index = 0
        self._now = -math.inf
        # In order of last send, which is the order of deadlines: every
        # deadline is the last send plus the same timeout.
        self._live: OrderedDict[int, _Message] = OrderedDict()
        self._settled: deque[_Message] = deque()
        self._by_answer: dict[bytes, list[_Message]] = {}
        self._outcomes: deque[MessageOutcome] = deque()
        self._wrong_samples: list[str] = []
        self._counts = dict.fromkeys(Arrival, 0)
        self._datagrams_sent = self._answered = self._lost = self._late = 0
        self._round_trips = 0
        self._round_trip_total = 0.0
        self._round_trip_min = math.inf
        self._round_trip_max = -math.inf

    # --- what the driver calls ------------------------------------------------

    @property
    def done(self) -> bool:
        """True once every message has been sent and settled (answered or given up)."""
        return self._upcoming is None and not self._live

    def next_send(self, now: float) -> tuple[int, bytes] | None:
        """The next datagram to send at *now*, with its message's index; None if none is due.

        A retry of a message whose timeout has passed comes first, then a
        new message if the window has room. Messages out of retries are
        given up here. Call it again until it returns None.
        """
        self._advance(now)
        self._give_up_expired(now)
        first = next(iter(self._live.values()), None)
        if first is not None and self._deadline(first) <= now:
            return self._resend(first, now)
        if self._upcoming is not None and len(self._live) < self.limits.window:
            return self._send_next(now)
        return None

    def next_deadline(self) -> float | None:
        """When :meth:`next_send` will next have something to do; None with nothing in flight.

        Meaningful once :meth:`next_send` has returned None: until then there
        is something to send already.
        """
        first = next(iter(self._live.values()), None)
        return None if first is None else self._deadline(first)

    def receive(self, datagram: bytes, now: float) -> Arrival:
        """Match a datagram that arrived at *now*; say what it was."""
        self._advance(now)
        self._give_up_expired(now)
        datagram = bytes(datagram)
        arrival = self._classify(datagram, self._by_answer.get(datagram, []), now)
        self._counts[arrival] += 1
        if arrival is Arrival.WRONG and len(self._wrong_samples) < self.limits.wrong_samples:
            self._wrong_samples.append(escape(datagram))
        return arrival

    def take_outcomes(self) -> list[MessageOutcome]:
        """The outcomes settled since the last call, in settling order; the session forgets them.

        A long-running caller takes them as it goes; one that does not finds
        them all in :meth:`report`.
        """
        taken = list(self._outcomes)
        self._outcomes.clear()
        return taken

    def report(self) -> DatagramReport:
        """Everything counted so far, as a frozen value."""
        rounds = self._round_trips
        return DatagramReport(
            protocol=self.protocol,
            sent=self._next_index,
            datagrams_sent=self._datagrams_sent,
            datagrams_received=sum(self._counts.values()),
            answered=self._answered,
            lost=self._lost,
            late=self._late,
            in_flight=len(self._live),
            duplicated=self._counts[Arrival.DUPLICATE],
            redundant=self._counts[Arrival.REDUNDANT],
            wrong=self._counts[Arrival.WRONG],
            wrong_samples=tuple(self._wrong_samples),
            round_trip_min=self._round_trip_min if rounds else None,
            round_trip_mean=self._round_trip_total / rounds if rounds else None,
            round_trip_max=self._round_trip_max if rounds else None,
            outcomes=tuple(self._outcomes),
        )

    # --- sending ----------------------------------------------------------------

    def _pull(self) -> bytes | None:
        message = next(self._source, None)
        if message is None or isinstance(message, bytes):
            return message
        if isinstance(message, bytearray):
            return bytes(message)
        raise ConfigError(f"messages must be bytes, not {type(message).__name__}")

    def _advance(self, now: float) -> None:
        if not now >= self._now or math.isinf(now):
            raise LocalProtocolError(
                f"time must be finite and never go back: {now!r} after {self._now!r}"
            )
        self._now = now

    def _deadline(self, message: _Message) -> float:
        return message.last_sent + self.limits.timeout

    def _send_next(self, now: float) -> tuple[int, bytes]:
        data = self._upcoming
        assert data is not None
        message = _Message(self._next_index, data, answer_datagram(self.protocol, data), now)
        self._next_index += 1
        self._upcoming = self._pull()
        self._live[message.index] = message
        for datagram in message.expected:
            self._by_answer.setdefault(datagram, []).append(message)
        self._datagrams_sent += 1
        return message.index, request_datagram(self.protocol, data)

    def _resend(self, message: _Message, now: float) -> tuple[int, bytes]:
        message.sends += 1
        message.last_sent = now
        self._live.move_to_end(message.index)
        self._datagrams_sent += 1
        return message.index, request_datagram(self.protocol, message.data)

    def _give_up_expired(self, now: float) -> None:
        expired = []
        for message in self._live.values():
            if self._deadline(message) > now:
                break
            if message.sends > self.limits.retries:
                expired.append(message)
        for message in expired:
            message.given_up = True
            self._lost += 1
            self._settle(message, round_trip=None)

    # --- receiving --------------------------------------------------------------

    def _classify(self, datagram: bytes, candidates: list[_Message], now: float) -> Arrival:
        for message in candidates:
            if not message.settled and message.needs(datagram):
                return self._answer_piece(message, datagram, now)
        for message in candidates:
            if message.given_up and message.needs(datagram):
                message.take(datagram)
                self._late += not message.late
                message.late = True
                return Arrival.LATE
        for message in candidates:
            if message.explains(datagram):
                message.take(datagram)
                return Arrival.REDUNDANT
        return Arrival.DUPLICATE if candidates else Arrival.WRONG

    def _answer_piece(self, message: _Message, datagram: bytes, now: float) -> Arrival:
        if message.answering_send is None:
            message.answering_send = message.last_sent
        message.take(datagram)
        if message.missing:
            return Arrival.PIECE
        message.answered = True
        self._answered += 1
        round_trip = now - message.answering_send
        self._round_trips += 1
        self._round_trip_total += round_trip
        self._round_trip_min = min(self._round_trip_min, round_trip)
        self._round_trip_max = max(self._round_trip_max, round_trip)
        self._settle(message, round_trip=round_trip)
        return Arrival.ANSWERED

    def _settle(self, message: _Message, *, round_trip: float | None) -> None:
        """Move a message out of flight into the bounded history, and record its outcome."""
        del self._live[message.index]
        self._outcomes.append(
            MessageOutcome(
                index=message.index,
                message=message.data,
                answered=message.answered,
                sends=message.sends,
                sent_at=message.sent_at,
                round_trip=round_trip,
            )
        )
        self._settled.append(message)
        if len(self._settled) > self.limits.history:
            self._forget(self._settled.popleft())

    def _forget(self, message: _Message) -> None:
        for datagram in message.expected:
            takers = self._by_answer[datagram]
            takers.remove(message)
            if not takers:
                del self._by_answer[datagram]
