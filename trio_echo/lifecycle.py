"""A server connection's life, the same in both drivers, as a table.

A connection is always in one :class:`Phase`, each with one operation and
one timeout of its own::

    phase       operation                      its timeout        when it runs out
    (HANDSHAKE  TLS handshake, tls:// only     handshake_timeout  ended FAILED)
    READING     receive what the peer sends    idle_timeout       ended IDLE
                (a greeting line, in all)      line_timeout       ended SLOW_LINE
    SENDING     write the reply                send_timeout       ended STALLED
    LINGERING   half-close, drain the input    linger_seconds     ended COMPLETE

A TLS connection first completes its handshake, under one deadline for the
whole of it; every connection then starts READING.

After every operation :func:`next_phase` reads the conversation's state
from :data:`NEXT` and says where the connection goes: another phase, or an
:class:`Ending`. Cancellation by the server's shutdown ends a connection
SHUT_DOWN wherever it is, and an error ends it FAILED. Each ending is decided
where it happens, by the operation that saw it, never inferred afterwards.
"""

from __future__ import annotations

import enum
import math

import attrs

from .config import ServerConfig

LINGER_SECONDS = 5.0
"""Longest drain of a finished connection's input (nginx's ``lingering_timeout``)."""

LINGER_READ_SIZE = 65536
"""Bytes read and discarded at a time while lingering."""


class Phase(enum.Enum):
    """What a live connection is doing."""

    READING = "reading"
    """Waiting for the peer's next bytes, under the idle timeout."""
    SENDING = "sending"
    """Writing a reply, under the send timeout."""
    LINGERING = "lingering"
    """The conversation is over but the peer may still send: drain, then close."""


class Ending(enum.Enum):
    """How a connection ended."""

    CLOSED_BY_PEER = "closed by peer"
    """The peer ended its side, and every reply was written."""
    COMPLETE = "conversation complete"
    """The protocol ended the conversation (a greeting was answered)."""
    IDLE = "idle"
    """The peer sent nothing for the idle timeout."""
    STALLED = "stalled"
    """The peer took no bytes of a reply for the send timeout."""
    SLOW_LINE = "slow line"
    """A greeting line was not whole within the line timeout, however steadily it trickled."""
    RECLAIMED = "reclaimed for a waiting client"
    """The server was full, a client waited, and this connection was the quietest."""
    SHUT_DOWN = "server shut down"
    """The server's shutdown cut the connection."""
    FAILED = "failed"
    """An error ended it: the network's, the peer's protocol error, or a bug."""


NEXT: dict[tuple[bool, bool, bool], Phase | Ending] = {
    # (a reply is waiting, the conversation is finished, the peer closed)
    (True, False, False): Phase.SENDING,
    (True, True, False): Phase.SENDING,
    (True, True, True): Phase.SENDING,
    (False, False, False): Phase.READING,
    (False, True, False): Phase.LINGERING,
    (False, True, True): Ending.CLOSED_BY_PEER,
}
"""Where a connection goes after an operation, by the conversation's state.

A conversation cannot be unfinished once the peer closed (end of input
finishes every protocol), so ``(_, False, True)`` has no entry.
"""


def next_phase(reply_waiting: bool, finished: bool, peer_closed: bool) -> Phase | Ending:
    """The phase a connection enters next, or how it ends (see :data:`NEXT`)."""
    return NEXT[reply_waiting, finished, peer_closed]


@attrs.frozen
class Timeouts:
    """Each phase's timeout in seconds, ``math.inf`` where there is none."""

    idle: float
    send: float
    linger: float
    line: float = math.inf
    """A greeting line's deadline from accept (``math.inf`` for other protocols)."""

    @classmethod
    def of(cls, config: ServerConfig) -> Timeouts:
        """The timeouts *config* asks for; lingering never outlasts the idle timeout."""
        idle = math.inf if config.idle_timeout is None else config.idle_timeout
        send = math.inf if config.send_timeout is None else config.send_timeout
        line = math.inf if config.line_timeout is None else config.line_timeout
        return cls(idle=idle, send=send, linger=min(LINGER_SECONDS, idle), line=line)
