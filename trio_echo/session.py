"""One client session, independent of I/O: what to send, what came back.

A :class:`ClientSession` walks through the messages a
:class:`~trio_echo.config.ClientConfig` asks for, checks each reply with the
codec and reports the conversation line by line. The Trio and blocking
clients only move bytes between it and a socket, so they hold the very same
conversation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import attrs

from .codec import ClientCodec, DatagramReport, ReplyReceived, client_codec
from .config import ClientConfig, WireProtocol
from .errors import IncompleteReply, Timeout, TrioEchoError
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
        return Timeout(f"connect to {self.where}: no answer within {seconds:g} s")

    def timeout_error(self, seconds: float) -> TrioEchoError:
        """The error for a reply that did not complete within *seconds*.

        A server that sent part of a reply and stopped (one that truncates,
        say) is told apart from one that sent nothing at all.
        """
        where = self.where
        partial = self._codec.partial_reply
        if not partial:
            return Timeout(f"no reply from {where} within {seconds:g} s")
        return IncompleteReply(
            f"reply from {where} still incomplete after {seconds:g} s: "
            f"got {counted(len(partial), 'byte')}, "
            f"{escape(partial)}, for {escape(self._current)}"
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
