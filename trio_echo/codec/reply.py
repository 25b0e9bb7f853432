"""The ``reply`` protocol: the note's "Re:" pair, without its truncation.

The server answers every chunk it reads with ``Re:`` followed by that chunk,
in pieces of at most 124 bytes, so no reply exceeds the note's 127-byte
buffer and no byte is ever cut. TCP may split any write, so the client
cannot count on one reply arriving in one read, or on the server reading a
message in one piece: :class:`ReplyMatcher` accepts every way of splitting
the message into ``Re:`` pieces and rejects everything else.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Mapping
from typing import Final, NamedTuple

from ..errors import WrongReply
from ..escape import escape
from .base import AnsweringServer, ClientCodec
from .events import ReplyReceived

PREFIX = b"Re:"
MAX_PIECE = 124
"""Payload bytes per ``Re:`` piece: 3 + 124 = the note's 127-byte limit."""


def reply_for(chunk: bytes) -> bytes:
    """The server's answer to one chunk it read."""
    if len(chunk) <= MAX_PIECE:
        return PREFIX + chunk
    # The pieces joined by the prefix, after an empty first one that puts a prefix before
    # the first piece too: one join builds the reply, where a prefix added to each piece
    # would copy every piece twice (a third faster on 1 KB reads).
    pieces = [chunk[i : i + MAX_PIECE] for i in range(0, len(chunk), MAX_PIECE)]
    return PREFIX.join([b"", *pieces])


class ReplyServer(AnsweringServer):
    """Server side: every chunk read goes straight back, prefixed."""

    __slots__ = ()

    def _answer(self, data: bytes) -> bytes:
        return reply_for(data)

    def answer(self, data: bytes) -> bytes | None:
        # The shortcut with reply_for's one-piece case written in: every read a
        # server answers passes here, and the two calls were most of its cost.
        if self._finished or not data:
            return None
        if len(data) <= MAX_PIECE:
            return PREFIX + data
        return reply_for(data)


# --- the automaton ----------------------------------------------------------------
#
# The client reads the server's bytes as replies to the messages it sent. A
# *reading* is one way of doing so: it stands either in a ``Re:`` prefix or in
# a piece, and each byte moves it on by one row of TRANSITIONS, or ends it.
# Several readings live side by side while a byte is ambiguous (an ``R`` that
# is also the message's next byte); the reply is wrong when none is left.


# Both enums are str-valued so that hashing a Reading, as a set of them does at
# every step, stays in C (a plain Enum member hashes in Python).


class Place(str, enum.Enum):
    """Where in a reply a reading stands; the reading's ``offset`` says how far in."""

    PREFIX = "in a Re: prefix, offset = bytes of it matched (0 to 2)"
    PIECE = "in a piece, offset = payload bytes in it so far (0 to 124)"


class Input(str, enum.Enum):
    """What one byte is to one reading; a byte that is none of these ends the reading."""

    PREFIX_BYTE = "the next byte of Re:, before its last"
    PREFIX_END = "the ':' that ends Re:, so a piece begins"
    PAYLOAD = "the message's next byte, while the piece holds fewer than 124"
    NEW_PIECE = "an R after payload, the message unfinished: its next piece begins"
    NEXT_REPLY = "an R after payload, the message whole: the next message's reply begins"


# Module-level names for the members, as h11 names its states: they keep the
# table short, and a global is quicker to look up than an Enum attribute.
IN_PREFIX: Final = Place.PREFIX
IN_PIECE: Final = Place.PIECE
PREFIX_BYTE: Final = Input.PREFIX_BYTE
PREFIX_END: Final = Input.PREFIX_END
PAYLOAD: Final = Input.PAYLOAD
NEW_PIECE: Final = Input.NEW_PIECE
NEXT_REPLY: Final = Input.NEXT_REPLY


class Reading(NamedTuple):
    """One way of reading the bytes so far as replies to the messages sent."""

    message: int
    """Index of the message whose reply is being read, 0 for the first one sent."""
    matched: int
    """Bytes of that message its reply has given so far."""
    place: Place
    """In a ``Re:`` prefix or in a piece."""
    offset: int
    """How far into its place the reading is (see :class:`Place`)."""


FIRST_READING: Final = Reading(message=0, matched=0, place=IN_PREFIX, offset=0)
"""Before any byte: the first message's reply begins with its ``Re:``."""


ONE_MORE: Final = None
"""A :attr:`Move.offset` meaning "one more than before"."""


class Move(NamedTuple):
    """Where one input takes a reading, and what becomes of its offset and match."""

    to: Place
    offset: int | None
    """The offset in the new place, or :data:`ONE_MORE`."""
    payload: bool
    """The byte is the message's next one: ``matched`` grows by one."""
    next_message: bool
    """The reading turns to the next message's reply, none of it matched yet."""


# fmt: off
TRANSITIONS: Final[Mapping[tuple[Place, Input], Move]] = {
    # where     what the byte is      to         offset    payload  next message
    (IN_PREFIX, PREFIX_BYTE): Move(IN_PREFIX, ONE_MORE, False,   False),
    (IN_PREFIX, PREFIX_END):  Move(IN_PIECE,  0,        False,   False),
    (IN_PIECE,  PAYLOAD):     Move(IN_PIECE,  ONE_MORE, True,    False),
    (IN_PIECE,  NEW_PIECE):   Move(IN_PREFIX, 1,        False,   False),
    (IN_PIECE,  NEXT_REPLY):  Move(IN_PREFIX, 1,        False,   True),
}
"""(where a reading is, what the byte is to it) -> where the reading goes.

A byte is classified by :func:`inputs_for` and applied by :func:`follow`.
After ``NEW_PIECE`` or ``NEXT_REPLY`` the offset is 1: the ``R`` is the
first byte of the ``Re:`` it starts.
"""
# fmt: on


def inputs_for(byte: int, reading: Reading, message: bytes, next_sent: bool) -> tuple[Input, ...]:
    """What *byte* is to *reading*: nothing (the reading ends), one input, or two.

    *message* is the one *reading* answers, and *next_sent* whether another
    was sent after it. Two inputs come only in a piece, from an ``R`` that is
    both the message's next byte and the start of another ``Re:``.
    """
    _message, matched, place, offset = reading
    if place is IN_PREFIX:
        if byte != PREFIX[offset]:
            return ()
        return (PREFIX_END,) if offset == _LAST_OF_PREFIX else (PREFIX_BYTE,)
    inputs: tuple[Input, ...] = ()
    unfinished = matched < len(message)
    if unfinished and offset < MAX_PIECE and byte == message[matched]:
        inputs = (PAYLOAD,)
    if byte == _R and offset > 0:
        if unfinished:
            inputs += (NEW_PIECE,)
        elif next_sent:
            inputs += (NEXT_REPLY,)
    return inputs


def follow(reading: Reading, what: Input) -> Reading:
    """The reading *reading* becomes on a byte that is *what* to it: one TRANSITIONS row."""
    message, matched, place, offset = reading
    to, new_offset, payload, next_message = TRANSITIONS[place, what]
    if new_offset is ONE_MORE:
        new_offset = offset + 1
    if next_message:
        return _reading((message + 1, 0, to, new_offset))
    return _reading((message, matched + payload, to, new_offset))


def follow_each(reading: Reading, inputs: tuple[Input, ...]) -> set[Reading]:
    """The readings *reading* becomes on a byte that is each of *inputs* to it."""
    following: set[Reading] = set()
    for what in inputs:
        following.add(follow(reading, what))
    return following


_LAST_OF_PREFIX = len(PREFIX) - 1
_PREFIX_LEFT = tuple(PREFIX[offset:] for offset in range(len(PREFIX)))
"""What is left of ``Re:`` once *offset* of its bytes are matched."""
_R = PREFIX[0]
_R_BYTE = PREFIX[:1]
_reading: Callable[[tuple[int, int, Place, int]], Reading] = functools.partial(
    tuple.__new__, Reading
)
"""Builds a :class:`Reading` from a tuple of its fields, as ``Reading._make`` does
but without a Python call: the hot path makes one for every run of bytes."""


class ReplyTracker:
    """Follows the replies to every message sent on a connection, however split.

    A valid reply to a message is ``Re:p1 Re:p2 ... Re:pk`` where the pieces,
    each of 1 to 124 bytes, add up to the message. The tracker keeps every
    :class:`Reading` of the bytes still possible, moves each on by the
    :data:`TRANSITIONS` table, and declares the reply wrong the moment none is
    left.

    One subtlety makes it span messages: when a message ends in ``R``, ``Re``
    or ``Re:``, a complete reply can also be the beginning of a longer valid
    one (``Re:abR`` answers ``abR``, and so does ``Re:abRe:R``, the server
    having read ``ab`` and ``R`` separately). The reply is taken as soon as it
    is complete, and the longer readings stay alive: bytes that follow are
    matched against them as well as against the next reply, so no valid split
    is ever rejected and no invalid byte is ever accepted.
    """

    def __init__(self) -> None:
        self._messages: dict[int, bytes] = {}
        self._sent = 0
        self._answered = 0
        self._readings: set[Reading] = {FIRST_READING}

    @property
    def awaiting(self) -> bool:
        """True while the reply to the last message sent is incomplete."""
        return self._answered < self._sent

    @property
    def readings(self) -> frozenset[Reading]:
        """Every way the bytes fed so far can still be read."""
        return frozenset(self._readings)

    def expect(self, message: bytes) -> None:
        """A message was sent: its reply is awaited next."""
        self._messages[self._sent] = message
        self._sent += 1

    def feed(self, data: bytes | bytearray) -> bool:
        """Add bytes from the server; True if they completed the awaited reply.

        Raises :class:`~trio_echo.errors.WrongReply` when no reading is left.
        """
        self._readings = self._advance(self._readings, data)
        self._forget_settled()
        if self.awaiting and self._complete(self._answered):
            self._answered += 1
            return True
        return False

    def _complete(self, index: int) -> bool:
        """Whether some reading has the whole reply to message *index* behind it."""
        end = len(self._messages[index])
        return any(
            message > index
            or (message == index and matched == end and place is IN_PIECE and offset > 0)
            for message, matched, place, offset in self._readings
        )

    def _forget_settled(self) -> None:
        oldest = min(reading.message for reading in self._readings)
        for index in [index for index in self._messages if index < oldest]:
            del self._messages[index]

    def _advance(self, readings: set[Reading], data: bytes | bytearray) -> set[Reading]:
        """The readings *data* leaves of *readings*, or WrongReply if none."""
        position = 0
        while position < len(data):
            if len(readings) == 1:
                readings, position = self._go_alone(next(iter(readings)), data, position)
            else:
                readings = self._step(readings, data[position])
                position += 1
            if not readings:
                raise WrongReply(self._describe_wrong(data))
        return readings

    def _step(self, readings: set[Reading], byte: int) -> set[Reading]:
        """Every reading *byte* leads to from *readings*: :func:`follow` for each input."""
        following: set[Reading] = set()
        sent = self._sent
        for reading in readings:
            index = reading.message
            if index >= sent:
                continue
            for what in inputs_for(byte, reading, self._messages[index], index + 1 < sent):
                following.add(follow(reading, what))
        return following

    def _go_alone(
        self, reading: Reading, data: bytes | bytearray, position: int
    ) -> tuple[set[Reading], int]:
        """Move a lone reading on through *data*; the readings it leads to, and where.

        The same as :meth:`_step` byte by byte, only quicker. While each byte
        has one input, runs go in one go: the rest of a ``Re:`` (PREFIX_BYTE
        rows, then PREFIX_END) and payload up to the next ``R`` (PAYLOAD rows:
        only an ``R`` can have two inputs), and an ``R`` with one input
        follows its row. It stops at the end of *data*, or just after a byte
        with two inputs (two readings) or none (no reading).
        """
        sent = self._sent
        index, matched, place, offset = reading
        if index >= sent:
            return set(), position + 1
        size = len(data)
        message = self._messages[index]
        while position < size:
            if place is IN_PREFIX:
                # The rest of Re: (PREFIX_BYTE rows, then PREFIX_END), or as much as there is.
                rest = _PREFIX_LEFT[offset]
                if data.startswith(rest, position):
                    place, offset = IN_PIECE, 0
                    position += len(rest)
                    continue
                tail = data[position : position + len(rest)]
                if len(tail) < len(rest) and rest.startswith(tail):
                    return {_reading((index, matched, IN_PREFIX, offset + len(tail)))}, size
                return set(), position + 1
            # Payload up to the next R (PAYLOAD rows), as far as the message and the piece go.
            room = len(message) - matched
            if room > MAX_PIECE - offset:
                room = MAX_PIECE - offset
            end = data.find(_R_BYTE, position, position + room)
            if end < 0:
                end = position + room if position + room < size else size
            taken = end - position
            if taken and message.startswith(data[position:end], matched):
                matched += taken
                offset += taken
                position = end
                continue
            # Any other byte: its inputs, and the table's row for each.
            reading = _reading((index, matched, place, offset))
            inputs = inputs_for(data[position], reading, message, index + 1 < sent)
            if len(inputs) != 1:
                return follow_each(reading, inputs), position + 1
            index, matched, place, offset = follow(reading, inputs[0])
            message = self._messages[index]
            position += 1
        return {_reading((index, matched, place, offset))}, position

    def _describe_wrong(self, data: bytes | bytearray) -> str:
        index = min(self._answered, self._sent - 1)
        message = self._messages.get(index, b"")
        return f"reply bytes {escape(bytes(data))} do not answer {escape(message)}"


class ReplyMatcher:
    """Recognises the reply to a single message (see :class:`ReplyTracker`)."""

    def __init__(self, message: bytes) -> None:
        self._tracker = ReplyTracker()
        self._tracker.expect(message)
        self._received = bytearray()

    @property
    def received(self) -> bytes:
        """Every byte fed so far."""
        return bytes(self._received)

    def feed(self, data: bytes) -> bool:
        """Add *data*; return True once the reply is complete.

        Raises :class:`~trio_echo.errors.WrongReply` when no split can match.
        """
        self._received += data
        return self._tracker.feed(data) or not self._tracker.awaiting


class ReplyClient(ClientCodec):
    """Client side: sends messages as they are, recognises their replies."""

    def __init__(self) -> None:
        super().__init__()
        self._tracker = ReplyTracker()
        self._received = bytearray()

    def _start(self, message: bytes) -> bytes:
        self._tracker.expect(message)
        self._received = bytearray()
        return message

    def _on_data(self, data: bytes) -> ReplyReceived | None:
        self._received += data
        try:
            complete = self._tracker.feed(data)
        except WrongReply:
            raise WrongReply(
                f"reply {escape(bytes(self._received))} does not answer "
                f"{escape(self._awaiting or b'')}"
            ) from None
        return ReplyReceived(bytes(self._received)) if complete else None

    def _on_unawaited(self, data: bytes) -> None:
        try:
            self._tracker.feed(data)
        except WrongReply:
            super()._on_unawaited(data)

    def _received_so_far(self) -> bytes:
        return bytes(self._received)
