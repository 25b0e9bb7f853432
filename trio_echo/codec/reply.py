"""The ``reply`` protocol: the note's "Re:" pair, without its truncation.

The server answers every chunk it reads with ``Re:`` followed by that chunk,
in pieces of at most 124 bytes, so no reply exceeds the note's 127-byte
buffer and no byte is ever cut. TCP may split any write, so the client
cannot count on one reply arriving in one read, or on the server reading a
message in one piece: :class:`ReplyMatcher` accepts every way of splitting
the message into ``Re:`` pieces and rejects everything else.
"""

from __future__ import annotations

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
    return b"".join(PREFIX + chunk[i : i + MAX_PIECE] for i in range(0, len(chunk), MAX_PIECE))


class ReplyServer(AnsweringServer):
    """Server side: every chunk read goes straight back, prefixed."""

    __slots__ = ()

    def _answer(self, data: bytes) -> bytes:
        return reply_for(data)


# Automaton state: (message index, payload bytes of it matched, phase).
# Phases 0-2 are inside a "Re:" prefix (that many of its bytes matched);
# phase 3 + n is inside a piece that holds n payload bytes so far.
_State = tuple[int, int, int]
_IN_PIECE = len(PREFIX)
_R = PREFIX[0]


class ReplyTracker:
    """Follows the replies to every message sent on a connection, however split.

    A valid reply to a message is ``Re:p1 Re:p2 ... Re:pk`` where the pieces,
    each of 1 to 124 bytes, add up to the message. A small non-deterministic
    automaton tracks every split still possible and declares the reply wrong
    the moment none is.

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
        self._states: set[_State] = {(0, 0, 0)}

    @property
    def awaiting(self) -> bool:
        """True while the reply to the last message sent is incomplete."""
        return self._answered < self._sent

    def expect(self, message: bytes) -> None:
        """A message was sent: its reply is awaited next."""
        self._messages[self._sent] = message
        self._sent += 1

    def feed(self, data: bytes | bytearray) -> bool:
        """Add bytes from the server; True if they completed the awaited reply.

        Raises :class:`~trio_echo.errors.WrongReply` when no reading is left.
        """
        self._states = self._advance(self._states, data)
        self._forget_settled()
        if self.awaiting and self._complete(self._answered):
            self._answered += 1
            return True
        return False

    def _complete(self, index: int) -> bool:
        end = len(self._messages[index])
        return any(
            k > index or (k == index and matched == end and phase > _IN_PIECE)
            for k, matched, phase in self._states
        )

    def _forget_settled(self) -> None:
        oldest = min(k for k, _matched, _phase in self._states)
        for index in [index for index in self._messages if index < oldest]:
            del self._messages[index]

    def _advance(self, states: set[_State], data: bytes | bytearray) -> set[_State]:
        position = 0
        while position < len(data):
            if len(states) == 1:
                skipped = self._skip_payload(next(iter(states)), data, position)
                if skipped is not None:
                    states, position = {skipped[0]}, skipped[1]
                    continue
            states = self._step(states, data[position])
            if not states:
                raise WrongReply(self._describe_wrong(data))
            position += 1
        return states

    def _skip_payload(
        self, state: _State, data: bytes | bytearray, position: int
    ) -> tuple[_State, int] | None:
        """Consume a run of payload in one go where no other reading can branch off.

        Inside a piece, only an ``R`` can start another reading, so the bytes
        up to the next ``R`` either match the message or the reply is wrong.
        """
        index, matched, phase = state
        if phase < _IN_PIECE:
            return None
        message = self._messages[index]
        room = min(len(message) - matched, MAX_PIECE - (phase - _IN_PIECE))
        end = min(len(data), position + room)
        stop = data.find(PREFIX[:1], position, end)
        if stop >= 0:
            end = stop
        taken = end - position
        if taken == 0 or data[position:end] != message[matched : matched + taken]:
            return None
        return (index, matched + taken, phase + taken), end

    def _step(self, states: set[_State], byte: int) -> set[_State]:
        following: set[_State] = set()
        for index, matched, phase in states:
            if index >= self._sent:
                continue
            if phase < _IN_PIECE:
                if byte == PREFIX[phase]:
                    following.add((index, matched, phase + 1))
                continue
            message = self._messages[index]
            piece = phase - _IN_PIECE
            if matched < len(message) and piece < MAX_PIECE and byte == message[matched]:
                following.add((index, matched + 1, phase + 1))
            if piece > 0 and byte == _R:
                if matched < len(message):
                    following.add((index, matched, 1))
                elif index + 1 < self._sent:
                    following.add((index + 1, 0, 1))
        return following

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
