"""The Trio driver's UDP listener: every datagram answered on its own (RFC 862 section 2).

:func:`serve_datagrams` is one task per bound UDP socket. It moves bytes
only; what to answer, what to count and what to log is the
:class:`~trio_echo.transport.datagram_service.DatagramResponder`'s, shared
with the blocking driver.

Fairness: Trio's socket methods checkpoint on every call, even when a
datagram is already waiting (``recvfrom`` and ``sendto`` end in a
cancel-shielded checkpoint after a successful system call), so a flood on
one socket yields to every other task between datagrams. Memory stays
bounded: one datagram is held at a time, and the guard's table has a fixed
size.
"""

from __future__ import annotations

import math
from typing import Any

import trio

from ..codec.whoami import NAMELESS, Identity
from ..connection_log import EventSink, ServerStats
from ..faults.spec import FaultSpec
from ..transport.datagram_service import Answer, DatagramResponder, is_peer_error
from ..transport.reflection import ReflectionPolicy
from ..transport.spec import ListenSpec


async def serve_datagrams(
    sock: trio.socket.SocketType,
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

    *sock* is a bound UDP socket (``trio.socket.from_stdlib_socket`` of one
    :func:`~trio_echo.transport.sockets.bind` gave); the caller keeps it and
    closes it. *listener* is its spec as bound, with its protocol decided.
    Per-peer socket errors are counted and logged, rate-limited, and never
    end the loop; any other ``OSError`` (the socket was closed, say) is
    raised.
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
    while True:
        received = await _receive(sock, responder, receive_size)
        responder.report(trio.current_time())
        if received is None:
            continue
        data, sockaddr = received
        for answer in responder.receive(data, sockaddr, trio.current_time()).parts():
            if answer.wait:
                await trio.sleep(answer.wait)
            sent = await _send(sock, responder, answer)
            responder.answered(answer, sent, trio.current_time())
        responder.report(trio.current_time())


async def _receive(
    sock: trio.socket.SocketType, responder: DatagramResponder, size: int
) -> tuple[bytes, Any] | None:
    """The next datagram and its source; None when a report fell due first or a peer error came.

    Waiting stops at the responder's next report time, so a burst of
    refusals followed by silence is still reported on time.
    """
    due = responder.next_report_at()
    with trio.move_on_at(math.inf if due is None else due):
        try:
            data, sockaddr = await sock.recvfrom(size)
        except OSError as exc:
            if not is_peer_error(exc):
                raise
            responder.socket_error(exc, "receive")
            await trio.lowlevel.checkpoint()
            return None
        return data, sockaddr
    return None


async def _send(sock: trio.socket.SocketType, responder: DatagramResponder, answer: Answer) -> int:
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
