"""The Trio UDP client: the note's messages as datagrams, retried, matched, counted.

:func:`run_datagram_session` opens a UDP socket *connected* to the server,
so the kernel delivers only the server's datagrams and reports an ICMP port
unreachable as ``ECONNREFUSED``. The conversation itself (what to send,
when to retry, what each datagram means, the verdict) is the shared
:class:`~trio_echo.datagram_conversation.DatagramConversation`'s, driven
with Trio's clock.
"""

from __future__ import annotations

import math
import socket

import trio

from ..client_tally import ClientTally
from ..config import ClientConfig
from ..datagram_conversation import DatagramConversation
from ..errors import TrioEchoError
from ..os_errors import from_os_error
from ..session import Report, SessionResult, silent


async def run_datagram_session(
    config: ClientConfig,
    *,
    report: Report = silent,
    index: int = 0,
    tally: ClientTally | None = None,
) -> SessionResult:
    """Send *config*'s messages to its UDP server, match the answers; never raises a TrioEchoError.

    The result's ``exchanges`` are the messages answered, its ``datagrams``
    the counts; its ``error`` is ``Timeout`` for lost messages,
    ``WrongReply`` for datagrams that answer nothing sent,
    ``ConnectionRefused`` when nothing listens on the port.
    """
    conversation = DatagramConversation(config, report, keep_exchanges=tally is None)
    if tally is not None:
        tally.started(index, conversation)
    started = trio.current_time()
    error: TrioEchoError | None = None
    try:
        sock = await _connect(config, conversation.where)
        with sock:
            await _converse(sock, conversation, config.receive_size)
    except TrioEchoError as exc:
        error = exc
    except OSError as exc:
        error = conversation.os_error(exc)
    result = conversation.result(index, trio.current_time() - started, error)
    if tally is not None:
        tally.finished(result)
    return result


async def _connect(config: ClientConfig, where: str) -> trio.socket.SocketType:
    """A UDP socket connected to the server's first address."""
    try:
        infos = await trio.socket.getaddrinfo(config.host, config.port, type=socket.SOCK_DGRAM)
        family, kind, proto, _name, sockaddr = infos[0]
        sock = trio.socket.socket(family, kind, proto)
    except OSError as exc:
        raise from_os_error(exc, f"reach {where}") from None
    try:
        await sock.connect(sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


async def _converse(
    sock: trio.socket.SocketType, conversation: DatagramConversation, receive_size: int
) -> None:
    while not conversation.done:
        for datagram in conversation.outgoing(trio.current_time()):
            await sock.send(datagram)
        if conversation.done:
            return
        deadline = conversation.deadline()
        with trio.move_on_at(math.inf if deadline is None else deadline):
            data = await sock.recv(receive_size)
            conversation.receive(data, trio.current_time())
