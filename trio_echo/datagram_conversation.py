"""One UDP client session, independent of I/O: what to send when, what it all came to.

The UDP twin of :class:`~trio_echo.session.ClientSession`. A
:class:`DatagramConversation` wraps the codec's
:class:`~trio_echo.codec.DatagramSession` for the messages a
:class:`~trio_echo.config.ClientConfig` asks for, reports the conversation
line by line (``sent:``, ``received:``, and ``sent again:`` / ``no answer:``
where UDP needs them), and turns the session's counts into a
:class:`~trio_echo.session.SessionResult` with a named error. The Trio and
blocking UDP clients only move datagrams between it and a connected socket
and pass their clock in, so they hold the very same conversation.
"""

from __future__ import annotations

from .codec import DatagramReport, DatagramSession, MessageOutcome, answer_datagram
from .config import ClientConfig
from .errors import NetworkError, Timeout, TrioEchoError, WrongReply
from .escape import escape
from .os_errors import from_os_error
from .session import Exchange, Report, SessionResult, show_reply, silent
from .words import counted

DEFAULT_TIMEOUT = 2.0
"""Seconds to wait for an answer when the configuration says "wait forever" (``timeout=None``).

A datagram has no connection to wait on: past some time it is lost, and
only a retry or giving up makes progress.
"""


class DatagramConversation:
    """The messages of one UDP session, their retries, their answers and the verdict."""

    def __init__(
        self, config: ClientConfig, report: Report = silent, *, keep_exchanges: bool = True
    ) -> None:
        self._config = config
        self._keep = keep_exchanges
        self._report = report
        self._messages = config.messages()
        self.where = f"udp://{config.target}"
        """The server, as errors name it."""
        self.timeout = DEFAULT_TIMEOUT if config.timeout is None else config.timeout
        """Seconds each send waits for its answer."""
        self.session = DatagramSession(
            config.protocol, self._messages, timeout=self.timeout, retries=config.retries
        )
        self.exchanges: list[Exchange] = []
        """The messages answered, each with its whole answer, in the order they were answered
        (empty unless exchanges are kept)."""
        self.round_trips = 0
        """Messages answered so far."""
        self._first_sends = 0

    @property
    def done(self) -> bool:
        """True once every message is answered or given up."""
        return self.session.done

    def outgoing(self, now: float) -> list[bytes]:
        """Every datagram due at *now*, in order (first sends and retries); each is reported."""
        due = []
        while (send := self.session.next_send(now)) is not None:
            self._settle()  # a message given up to make room is reported before the next
            index, datagram = send
            message = escape(self._messages[index])
            if index < self._first_sends:
                self._report(f"sent again: {message}")
            else:
                self._first_sends = index + 1
                self._report(f"sent: {message}")
            due.append(datagram)
        self._settle()
        return due

    def deadline(self) -> float | None:
        """When to stop waiting for a datagram and call :meth:`outgoing` again."""
        return self.session.next_deadline()

    def receive(self, datagram: bytes, now: float) -> None:
        """A datagram from the server arrived at *now*."""
        self.session.receive(datagram, now)
        self._settle()

    def os_error(self, exc: OSError) -> NetworkError:
        """The named error for a socket failure (``ConnectionRefused`` for a closed port)."""
        return from_os_error(exc, f"talking to {self.where}")

    def error(self) -> TrioEchoError | None:
        """What went wrong, from the counts: wrong datagrams first, then lost messages."""
        report = self.session.report()
        if report.wrong:
            return WrongReply(self._wrong(report))
        if report.lost:
            return Timeout(self._lost(report))
        return None

    def result(self, index: int, seconds: float, error: TrioEchoError | None) -> SessionResult:
        """The session's result; *error* (a socket failure) wins over what the counts say."""
        report = self.session.report()
        return SessionResult(
            index,
            tuple(self.exchanges),
            error if error is not None else self.error(),
            seconds,
            report,
            round_trips=self.round_trips,
        )

    def _settle(self) -> None:
        for outcome in self.session.take_outcomes():
            self._report_outcome(outcome)

    def _report_outcome(self, outcome: MessageOutcome) -> None:
        if not outcome.answered:
            self._report(
                f"no answer: {escape(outcome.message)} (sent {counted(outcome.sends, 'time')})"
            )
            return
        answer = b"".join(answer_datagram(self._config.protocol, outcome.message))
        self.round_trips += 1
        if self._keep:
            self.exchanges.append(Exchange(outcome.message, answer))
        self._report(f"received: {show_reply(self._config.protocol, answer)}")

    def _lost(self, report: DatagramReport) -> str:
        retries = self._config.retries
        each = (
            "no retries" if retries == 0 else f"{retries} retr{'y' if retries == 1 else 'ies'} each"
        )
        line = (
            f"{report.lost} of {counted(report.sent, 'message')} to {self.where} got no answer "
            f"within {self.timeout:g} s ({each})"
        )
        if report.late:
            line += f"; {report.late} answered after being given up"
        return line

    def _wrong(self, report: DatagramReport) -> str:
        noun = "datagram" if report.wrong == 1 else "datagrams"
        sample = report.wrong_samples[0] if report.wrong_samples else "(not kept)"
        line = f"{report.wrong} {noun} from {self.where} answered nothing sent, first {sample}"
        if report.lost:
            line += f"; {report.lost} of {counted(report.sent, 'message')} got no answer"
        return line
