"""One server connection's conversation: what to send for what was read.

Both drivers move bytes and nothing else: every read goes to
:meth:`Conversation.respond`, which feeds the codec and returns the bytes to
write, and every write that lands is counted in :attr:`Conversation.bytes_out`
(by the dispatcher, which adds to it, or through :meth:`Conversation.sent`).
So the conversation is one piece of code, whichever driver runs it. What the
codec reports on the way (a message, bytes it discards) goes to the
connection's :class:`~trio_echo.connection_log.ConnectionLog`.
"""

from __future__ import annotations

from .codec.base import Opening, ServerCodec
from .codec.events import Discarded, Received, Send, ServerEvent
from .connection_log import ConnectionLog


class Conversation:
    """The server side of one connection's exchange, and the bytes it carried."""

    __slots__ = ("_codec", "_log", "_quiet", "bytes_in", "bytes_out", "finished")

    def __init__(self, codec: ServerCodec, log: ConnectionLog) -> None:
        self._codec = codec
        self._log = log
        self._quiet = not log.wants_messages
        self.finished = codec.finished
        """True once the codec has ended the conversation: nothing more is read.

        An attribute, not a property: both drivers test it on every read."""
        self.bytes_in = 0
        self.bytes_out = 0

    @property
    def peer_closed(self) -> bool:
        """True once the peer ended its side (end of input was read)."""
        return self._codec.peer_closed

    def respond(self, data: bytes | bytearray) -> bytes:
        """Feed what was read (``b""`` for end of input) to the codec; return what to send.

        All of a read's ``Send`` events become one write. When no one logs
        messages, a read that is simply answered skips building events.
        """
        if type(data) is not bytes:
            data = bytes(data)
        codec = self._codec
        if self._quiet:
            answer = codec.answer(data)
            if answer is not None:
                self.bytes_in += len(data)
                return answer
        self.bytes_in += len(data)  # read, whatever the codec makes of it (a line too long)
        return self._carry_out(codec.receive_data(data) if data else codec.receive_eof())

    @property
    def speaks_first(self) -> bool:
        """True when the server sends before reading: call :meth:`open` first."""
        return self._codec.speaks_first

    def open(self, opening: Opening) -> bytes:
        """What to send as the connection opens, before any read (see :attr:`speaks_first`)."""
        return self._carry_out(self._codec.open(opening))

    def _carry_out(self, events: list[ServerEvent]) -> bytes:
        """Log what *events* report; return the bytes they send, as one write."""
        self.finished = self._codec.finished
        outgoing = b""
        for event in events:
            if isinstance(event, Send):
                outgoing += event.data
            elif isinstance(event, Received):
                if not self._quiet:
                    self._log.message(event.data)
            elif isinstance(event, Discarded):
                self._log.discarded(event.size)
        return outgoing

    def sent(self, size: int) -> None:
        """*size* bytes reached the peer's side of the connection."""
        self.bytes_out += size

    def drained(self, size: int) -> None:
        """*size* bytes were read and thrown away while lingering; report them."""
        self.bytes_in += size
        self._log.discarded(size)
