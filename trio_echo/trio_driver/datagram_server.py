"""The Trio driver's UDP listener: every datagram answered on its own (RFC 862 section 2).

:func:`serve_datagrams` is one task per bound UDP socket. It moves bytes
only; what to answer, what to count and what to log is the
:class:`~trio_echo.transport.datagram_service.DatagramResponder`'s, shared
with the blocking driver.

Fairness: on a real socket (:class:`~.fast_datagram.FastDatagramSocket`)
the loop yields whenever it waits for a datagram and at least once every
:data:`~.fast_datagram.DATAGRAMS_PER_YIELD` datagrams, so a flood on one
socket lets every other task run; Trio's own sockets (the simulated
network's) yield on every call. Memory stays bounded: one datagram is held
at a time, and the guard's table has a fixed size.
"""

from __future__ import annotations

from typing import Any

import trio

from ..codec.whoami import NAMELESS, Identity
from ..connection_log import EventSink, ServerStats
from ..faults.spec import FaultSpec
from ..transport.datagram_service import Answer, DatagramResponder, is_peer_error
from ..transport.reflection import ReflectionPolicy
from ..transport.spec import ListenSpec
from .fast_datagram import DatagramSocket


async def serve_datagrams(
    sock: DatagramSocket,
    listener: ListenSpec,
    *,
    policy: ReflectionPolicy,
    sink: EventSink,
    stats: ServerStats,
    receive_size: int = 65536,
    faults: FaultSpec | None = None,
    seed: int = 0,
    identity: Identity = NAMELESS,
) -> None:
    """Answer every datagram *sock* receives until cancelled.

    *sock* is a bound UDP socket (a :class:`~.fast_datagram.FastDatagramSocket`
    over one :func:`~trio_echo.transport.sockets.bind` gave, or a
    ``trio.socket`` one); the caller keeps it and closes it. *listener* is
    its spec as bound, with its protocol decided. Per-peer socket errors
    are counted and logged, rate-limited, and never end the loop; any other
    ``OSError`` (the socket was closed, say) is raised.
    """
    responder = DatagramResponder(
        listener,
        policy=policy,
        sink=sink,
        stats=stats,
        faults=faults,
        seed=seed,
        identity=identity,
    )
    clock = trio.lowlevel.current_clock()
    due = responder.next_report_at()
    while True:
        received = await _receive(sock, responder, receive_size, due)
        now = clock.current_time()
        if received is not None:
            data, sockaddr = received
            for answer in responder.receive(data, sockaddr, now).parts():
                if answer.wait:
                    await trio.sleep(answer.wait)
                    now = clock.current_time()
                sent = await _send(sock, responder, answer)
                responder.answered(answer, sent, now)
        due = responder.report(now)


async def _receive(
    sock: DatagramSocket, responder: DatagramResponder, size: int, due: float | None
) -> tuple[bytes, Any] | None:
    """The next datagram and its source; None when a report fell due first or a peer error came.

    Waiting stops at *due*, the responder's next report time, so a burst of
    refusals followed by silence is still reported on time. With nothing
    to report, there is no deadline to set (a cancel scope per datagram).
    """
    if due is None:
        return await _receive_or_note(sock, responder, size)
    with trio.move_on_at(due):
        return await _receive_or_note(sock, responder, size)
    return None


async def _receive_or_note(
    sock: DatagramSocket, responder: DatagramResponder, size: int
) -> tuple[bytes, Any] | None:
    """The next datagram and its source, or None after noting a peer's error."""
    try:
        return await sock.recvfrom(size)
    except OSError as exc:
        if not is_peer_error(exc):
            raise
        responder.socket_error(exc, "receive")
    await trio.lowlevel.checkpoint()
    return None


async def _send(sock: DatagramSocket, responder: DatagramResponder, answer: Answer) -> int:
    """Send *answer*'s replies to its source; how many went before a peer error stopped them."""
    for sent, reply in enumerate(answer.replies):
        try:
            await sock.sendto(reply, answer.sockaddr)
        except OSError as exc:
            if not is_peer_error(exc):
                raise
            responder.socket_error(exc, "send to", answer.sockaddr)
            return sent
    return len(answer.replies)
