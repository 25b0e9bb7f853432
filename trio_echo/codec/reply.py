"""The ``reply`` protocol: the seed's "Re:" pair, without its truncation.

The server answers every chunk it reads with ``Re:`` followed by that chunk,
in pieces of at most 124 bytes, so no reply exceeds the seed's 127-byte
buffer and no byte is ever cut. TCP may split any write, so the client
cannot count on one reply arriving in one read, or on the server reading a
message in one piece: :class:`ReplyMatcher` accepts every way of splitting
the message into ``Re:`` pieces and rejects everything else.
"""

from __future__ import annotations

from ..errors import WrongReply
from ..escape import escape
from .base import ClientCodec, ServerCodec
from .events import Close, Received, ReplyReceived, Send, ServerEvent

PREFIX = b"Re:"
MAX_PIECE = 124
"""Payload bytes per ``Re:`` piece: 3 + 124 = the seed's 127-byte limit."""


def reply_for(chunk: bytes) -> bytes:
    """The server's answer to one chunk it read."""
    if len(chunk) <= MAX_PIECE:
        return PREFIX + chunk
    return b"".join(PREFIX + chunk[i : i + MAX_PIECE] for i in range(0, len(chunk), MAX_PIECE))


class ReplyServer(ServerCodec):
    """Server side: every chunk read goes straight back, prefixed."""

    def _on_data(self, data: bytes) -> list[ServerEvent]:
        return [Received(data), Send(reply_for(data))]

    def _on_eof(self) -> list[ServerEvent]:
        return [Close()]


# NFA state: (message bytes matched, phase). Phases 0-2 are inside a "Re:"
# prefix (that many of its bytes matched); phase 3 + n is inside a piece
# that holds n payload bytes so far.
_State = tuple[int, int]
_IN_PIECE = len(PREFIX)


class ReplyMatcher:
    """Recognises the reply to one message, however the server split it.

    A valid reply is ``Re:p1 Re:p2 ... Re:pk`` where ``p1 + ... + pk`` is the
    message and each piece holds 1 to 124 bytes. Usually the server read the
    message whole, so the bytes are compared with that canonical reply;
    otherwise a small non-deterministic automaton tracks every split still
    possible, and the reply is wrong the moment none is.
    """

    def __init__(self, message: bytes) -> None:
        self._message = message
        self._canonical = reply_for(message)
        self._received = bytearray()
        self._states: set[_State] | None = None

    @property
    def received(self) -> bytes:
        """Every byte fed so far."""
        return bytes(self._received)

    def feed(self, data: bytes) -> bool:
        """Add *data*; return True once the reply is complete.

        Raises :class:`~trio_echo.errors.WrongReply` when no split can match.
        """
        offset = len(self._received)
        self._received += data
        if self._states is None:
            if self._canonical.startswith(data, offset):
                return len(self._received) == len(self._canonical)
            self._states = self._advance({(0, 0)}, self._received)
        else:
            self._states = self._advance(self._states, data)
        end = len(self._message)
        return any(matched == end and phase > _IN_PIECE for matched, phase in self._states)

    def _advance(self, states: set[_State], data: bytes | bytearray) -> set[_State]:
        message = self._message
        end = len(message)
        for byte in data:
            following: set[_State] = set()
            for matched, phase in states:
                if phase < _IN_PIECE:
                    if byte == PREFIX[phase]:
                        following.add((matched, phase + 1))
                    continue
                piece = phase - _IN_PIECE
                if matched < end and piece < MAX_PIECE and byte == message[matched]:
                    following.add((matched + 1, phase + 1))
                if matched < end and piece > 0 and byte == PREFIX[0]:
                    following.add((matched, 1))
            if not following:
                raise WrongReply(
                    f"reply {escape(bytes(self._received))} does not answer {escape(message)}"
                )
            states = following
        return states


class ReplyClient(ClientCodec):
    """Client side: sends messages as they are, recognises their replies."""

    def __init__(self) -> None:
        super().__init__()
        self._matcher: ReplyMatcher | None = None

    def _start(self, message: bytes) -> bytes:
        self._matcher = ReplyMatcher(message)
        return message

    def _on_data(self, data: bytes) -> ReplyReceived | None:
        assert self._matcher is not None
        if self._matcher.feed(data):
            return ReplyReceived(self._matcher.received)
        return None

    def _received_so_far(self) -> bytes:
        return b"" if self._matcher is None else self._matcher.received
