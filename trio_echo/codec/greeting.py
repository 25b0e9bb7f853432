"""The ``greeting`` protocol: the note's iostream pair.

The client sends one line; the server reads it (to ``\\n``, or to end of
input), answers ``Hello From Server\\n`` and closes. Lines are bounded by a
limit so a peer that never sends a newline cannot grow a buffer forever.

The server's answer is always that one line, so the client accepts exactly
it: ``Hello From Server`` with its newline, or without it when the server
closes right after. Anything else (a ``Re:`` reply, an echo of the line
sent, a truncated greeting) cannot come from a greeting server and is
refused at the first byte that differs, as the echo client refuses a
wrong echo.
"""

from __future__ import annotations

from ..errors import IncompleteReply, LineTooLong, UnexpectedData, WrongReply
from ..escape import escape
from .base import ClientCodec, ServerCodec
from .events import Close, Discarded, Received, ReplyReceived, Send, ServerEvent

NEWLINE = b"\n"
SERVER_GREETING = b"Hello From Server\n"


class LineBuffer:
    """Collects one line of at most *limit* bytes (newline not counted)."""

    __slots__ = ("_limit", "_pending")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._pending = bytearray()

    @property
    def pending(self) -> bytes:
        """Bytes of the line received so far."""
        return bytes(self._pending)

    def feed(self, data: bytes) -> tuple[bytes, bytes] | None:
        """Add *data*; once the newline is in, return (line, bytes after it).

        Raises :class:`~trio_echo.errors.LineTooLong` past the limit.
        """
        end = data.find(NEWLINE)
        taken = len(data) if end < 0 else end
        if len(self._pending) + taken > self._limit:
            raise LineTooLong(self._limit)
        if end < 0:
            self._pending += data
            return None
        line = bytes(self._pending) + data[:end]
        self._pending.clear()
        return line, data[end + 1 :]


class GreetingServer(ServerCodec):
    """Server side: one line in, the greeting out, then close."""

    __slots__ = ("_line",)

    def __init__(self, max_line: int) -> None:
        super().__init__()
        self._line = LineBuffer(max_line)

    def _on_data(self, data: bytes) -> list[ServerEvent]:
        done = self._line.feed(data)
        if done is None:
            return []
        line, rest = done
        events: list[ServerEvent] = [Received(line), Send(SERVER_GREETING)]
        if rest:
            events.append(Discarded(len(rest)))
        events.append(Close())
        return events

    def _on_eof(self) -> list[ServerEvent]:
        return [Received(self._line.pending), Send(SERVER_GREETING), Close()]


class GreetingClient(ClientCodec):
    """Client side: sends its line, accepts the server's greeting line and nothing else."""

    def __init__(self, max_line: int) -> None:
        super().__init__()
        self._max_line = max_line
        self._line = LineBuffer(max_line)

    def _start(self, message: bytes) -> bytes:
        self._line = LineBuffer(self._max_line)
        return message + NEWLINE

    def _on_data(self, data: bytes) -> ReplyReceived | None:
        so_far = self._line.pending
        done = self._line.feed(data)
        if done is None:
            self._check(so_far + data)
            return None
        line, rest = done
        self._check(line + NEWLINE)
        if rest:
            raise UnexpectedData(f"the server sent {escape(rest)} after its greeting line")
        return ReplyReceived(line + NEWLINE)

    def _on_eof(self) -> ReplyReceived | None:
        pending = self._line.pending
        if not pending:
            return None
        if pending + NEWLINE != SERVER_GREETING:
            raise IncompleteReply(
                f"the server closed the connection after {escape(pending)}, part of the "
                f"greeting {escape(SERVER_GREETING)}"
            )
        return ReplyReceived(pending)

    def _check(self, received: bytes) -> None:
        """Refuse *received* as soon as it cannot be the start of the server's greeting."""
        if not SERVER_GREETING.startswith(received):
            raise WrongReply(
                f"reply {escape(received)} is not a greeting server's {escape(SERVER_GREETING)}"
            )

    def _received_so_far(self) -> bytes:
        return self._line.pending
