"""What a UDP listener does with one datagram, whichever driver moves the bytes.

Both drivers receive a datagram, hand it to a :class:`DatagramResponder`,
send what it returns and tell it how the sending went. The responder holds
everything else once: the :class:`~trio_echo.transport.reflection.ReflectionGuard`
that refuses loops and floods, the codec's answer
(:func:`~trio_echo.codec.answer_datagram`), the
:class:`~trio_echo.connection_log.DatagramAnswered` event, the server's
counts, and the rate-limited WARNING lines about refusals and socket errors.

Sans-IO: the time is passed in, as any monotonic float in seconds, and
nothing here touches a socket. A driver's loop reads::

    answer = responder.receive(data, sockaddr, now)
    for datagram in answer.replies: send it to sockaddr (count what went)
    responder.answered(answer, sent, now)   # each of answer.parts(), after answer.wait
    due = responder.report(now)      # also at due (next_report_at()), if nothing arrives

A socket error that concerns one peer (:data:`PEER_ERRNOS`) goes to
:meth:`DatagramResponder.socket_error` and the loop goes on; any other
error ends the listener.
"""

from __future__ import annotations

import errno
import logging
from typing import Any, NamedTuple

from ..address import UNKNOWN, Address
from ..codec.base import Opening
from ..codec.datagram import answer_datagram
from ..codec.whoami import NAMELESS, Identity, answer_line
from ..connection_log import DatagramAnswered, EventSink, ServerStats, wants_messages
from ..escape import escape_text
from ..faults.plan import plan_datagram
from ..faults.spec import FaultSpec
from ..os_errors import describe_os_error
from ..wire import WireProtocol
from .reflection import ReflectionGuard, ReflectionPolicy, Verdict
from .spec import ListenSpec

logger = logging.getLogger("trio_echo.server")

PEER_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,  # an earlier answer met an ICMP port unreachable
        errno.ECONNRESET,  # the same, as some systems say it
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.EMSGSIZE,  # an answer too big for the path
        errno.ENOBUFS,  # the kernel's queue is full: drop this one
        errno.EAGAIN,
        errno.EWOULDBLOCK,
        errno.EINTR,
        errno.EPERM,  # a firewall refused this destination
        errno.EACCES,  # a broadcast destination
        errno.EADDRNOTAVAIL,
        errno.EINVAL,  # a source address no answer can go to
    }
)
"""Errors from ``recvfrom``/``sendto`` that concern one peer or one datagram, not the socket.

A UDP listener counts and reports them, then goes on serving everyone else.
"""


def is_peer_error(exc: OSError) -> bool:
    """True when *exc* concerns one peer or datagram and the listener should go on."""
    return exc.errno in PEER_ERRNOS


class Answer(NamedTuple):
    """What to send back for one datagram received: *replies* to *sockaddr*, in order.

    *replies* is empty when the datagram was refused; the driver then sends
    nothing, and :meth:`DatagramResponder.answered` has nothing to count.
    A named tuple rather than a frozen attrs class: one is made for every
    datagram, and a tuple is made several times faster.
    """

    sockaddr: Any
    """Where the datagram came from, as ``recvfrom`` gave it: where the replies go."""
    data: bytes
    verdict: Verdict
    replies: tuple[bytes, ...]
    wait: float = 0.0
    """Seconds to wait before sending (a ``delay`` fault)."""
    held: bool = False
    """Not sent now: it goes out after the next answer (a ``reorder`` fault)."""
    after: Answer | None = None
    """An answer held back earlier, to send after this one."""
    fault: str | None = None
    """The faults this answer got, as the log names them; None for none."""

    @property
    def peer(self) -> Address:
        """Where the datagram came from, as an address (made when asked: most never are)."""
        return _peer(self.sockaddr)

    def parts(self) -> tuple[Answer, ...]:
        """What to send now, in order: this answer unless held, then the one held before it."""
        mine = () if self.held else (self,)
        return mine if self.after is None else (*mine, self.after)


class _ErrorReport:
    """Socket errors since the last line: the first at once, then one line per interval."""

    __slots__ = ("_interval", "_last_line", "count", "last", "total")

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._last_line: float | None = None
        self.count = 0
        self.total = 0
        self.last = ""

    def note(self, description: str) -> None:
        self.count += 1
        self.total += 1
        self.last = description

    def next_at(self) -> float | None:
        if not self.count:
            return None
        return -float("inf") if self._last_line is None else self._last_line + self._interval

    def due(self, now: float) -> str | None:
        due = self.next_at()
        if due is None or now < due:
            return None
        count, self.count = self.count, 0
        self._last_line = now
        if count == 1:
            return f"socket error, going on: {self.last}"
        return f"{count:,} socket errors, going on (last: {self.last})"


class DatagramResponder:
    """One UDP listener's decisions, datagram by datagram; the drivers only move bytes.

    Made once per listener (one guard per listener, so its table and its
    rate limits are that listener's). Calls must come from one task or
    thread at a time; the stats it updates are safe to share.
    """

    def __init__(
        self,
        listener: ListenSpec,
        *,
        policy: ReflectionPolicy,
        sink: EventSink,
        stats: ServerStats,
        log: logging.Logger = logger,
        faults: FaultSpec | None = None,
        seed: int = 0,
        identity: Identity = NAMELESS,
    ) -> None:
        self.listener = str(listener)
        """The listener's spec, as events name it."""
        self.protocol = listener.protocol if listener.protocol is not None else WireProtocol.REPLY
        """What this listener speaks: its spec's protocol, the server's default otherwise."""
        self.guard = ReflectionGuard(
            rate=policy.rate,
            burst=policy.burst,
            max_sources=policy.max_sources,
            report_interval=policy.report_interval,
        )
        self._sink = sink
        self._stats = stats
        self._log = log
        self._wants_messages = wants_messages(sink)
        self._errors = _ErrorReport(policy.report_interval)
        self._faults = faults
        self._seed = seed
        self._datagrams = 0
        self._held: Answer | None = None
        self._identity = identity

    @property
    def socket_errors(self) -> int:
        """Socket errors this listener has gone on after, since it was made."""
        return self._errors.total

    def receive(self, data: bytes, sockaddr: Any, now: float) -> Answer:
        """Judge a datagram from *sockaddr* that arrived at *now*; say what to send back.

        A refused datagram is counted here (and its report line made due);
        an admitted one is counted by :meth:`answered`, once the driver knows
        how many replies went out.
        """
        data = bytes(data)
        host, port = _host_and_port(sockaddr)
        verdict = self.guard.admit(host, port, len(data), now)
        if verdict is not Verdict.ANSWER:
            self._stats.refuse_datagram(len(data))
            return Answer(sockaddr, data, verdict, ())
        answer = Answer(sockaddr, data, verdict, self._replies(data, sockaddr))
        return self._misbehave(answer) if self._faults else answer

    def _replies(self, data: bytes, sockaddr: Any) -> tuple[bytes, ...]:
        """The datagrams answering *data* from *sockaddr*: one whoami line, else the codec's."""
        if self.protocol is WireProtocol.WHOAMI:
            return (answer_line(self._identity, Opening(self.listener, str(_peer(sockaddr)))),)
        return tuple(answer_datagram(self.protocol, data))

    def _misbehave(self, answer: Answer) -> Answer:
        """*answer* as the fault plan of its datagram (numbered 1, 2, 3... per listener) says."""
        self._datagrams += 1
        plan = plan_datagram(self._faults, self._seed, str(self._datagrams))
        held, self._held = self._held, None
        if plan is not None:
            answer = answer._replace(
                replies=answer.replies * plan.copies, wait=plan.wait, fault=plan.description
            )
            if plan.hold:
                answer, self._held = answer._replace(held=True), answer
        return answer._replace(after=held) if held is not None else answer

    def answered(self, answer: Answer, sent: int, now: float) -> None:
        """The driver sent the first *sent* of *answer*'s replies; count it, tell the sink."""
        if answer.verdict is not Verdict.ANSWER or answer.held:
            return
        replied = sum(map(len, answer.replies[:sent]))
        self._stats.add_datagram(len(answer.data), sent, replied)
        if self._wants_messages:
            self._sink(
                DatagramAnswered(self.listener, answer.peer, now, answer.data, sent, answer.fault)
            )

    def socket_error(self, exc: OSError, doing: str, sockaddr: Any = None) -> None:
        """A per-peer socket error (see :func:`is_peer_error`); it is counted and reported."""
        where = "" if sockaddr is None else f" {_peer(sockaddr)}"
        number = "" if exc.errno is None else f" (errno {exc.errno})"
        self._errors.note(escape_text(f"{doing}{where}: {describe_os_error(exc)}{number}"))

    def next_report_at(self) -> float | None:
        """When :meth:`report` will next have a line to log; None while there is nothing to say."""
        refusals, errors = self.guard.next_report_at(), self._errors.next_at()
        if errors is None:
            return refusals
        return errors if refusals is None else min(refusals, errors)

    def report(self, now: float) -> float | None:
        """Log, at WARNING, what was refused and which socket errors were met, if a line is due.

        Returns :meth:`next_report_at` as it is afterwards, for the driver's
        next wait. Called after every datagram: with nothing due, it returns
        at once.
        """
        due = self.next_report_at()
        if due is None or now < due:
            return due
        for line in (self.guard.due_report(now), self._errors.due(now)):
            if line is not None:
                self._log.warning("%s: %s", self.listener, line)
        return self.next_report_at()


def _peer(sockaddr: Any) -> Address:
    try:
        return Address.from_sockaddr(sockaddr)
    except (TypeError, ValueError):
        return UNKNOWN


def _host_and_port(sockaddr: Any) -> tuple[str, int]:
    """*sockaddr*'s host and port, as :func:`_peer` reads them, without making an address."""
    if type(sockaddr) is tuple and len(sockaddr) >= 2:
        host, port = sockaddr[0], sockaddr[1]
        if type(host) is str and type(port) is int:
            return host, port
    peer = _peer(sockaddr)
    return peer.host, peer.port
