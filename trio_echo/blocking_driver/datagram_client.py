"""The blocking UDP client: the note's messages as datagrams on a plain socket.

The same conversation as the Trio UDP client
(:class:`~trio_echo.datagram_conversation.DatagramConversation`), on a
stdlib socket connected to the server, each wait a socket timeout up to the
session's next deadline on *clock* (``time.monotonic`` unless given).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from ..client_tally import ClientTally
from ..config import ClientConfig
from ..datagram_conversation import DatagramConversation
from ..errors import TrioEchoError
from ..os_errors import from_os_error
from ..session import Report, SessionResult, silent


def run_datagram_session(
    config: ClientConfig,
    *,
    report: Report = silent,
    index: int = 0,
    tally: ClientTally | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> SessionResult:
    """Send *config*'s messages to its UDP server, match the answers; never raises a TrioEchoError.

    As :func:`trio_echo.trio_driver.datagram_client.run_datagram_session`.
    """
    conversation = DatagramConversation(config, report, keep_exchanges=tally is None)
    if tally is not None:
        tally.started(index, conversation)
    started = clock()
    error: TrioEchoError | None = None
    try:
        with _connect(config, conversation.where) as sock:
            _converse(sock, conversation, config.receive_size, clock)
    except TrioEchoError as exc:
        error = exc
    except OSError as exc:
        error = conversation.os_error(exc)
    result = conversation.result(index, clock() - started, error)
    if tally is not None:
        tally.finished(result)
    return result


def _connect(config: ClientConfig, where: str) -> socket.socket:
    """A UDP socket connected to the server's first address."""
    try:
        infos = socket.getaddrinfo(config.host, config.port, type=socket.SOCK_DGRAM)
        family, kind, proto, _name, sockaddr = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise from_os_error(exc, f"reach {where}") from None
    try:
        sock.connect(sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


def _converse(
    sock: socket.socket,
    conversation: DatagramConversation,
    receive_size: int,
    clock: Callable[[], float],
) -> None:
    while not conversation.done:
        for datagram in conversation.outgoing(clock()):
            sock.send(datagram)
        if conversation.done:
            return
        deadline = conversation.deadline()
        sock.settimeout(None if deadline is None else max(0.0, deadline - clock()))
        try:
            data = sock.recv(receive_size)
        except (TimeoutError, BlockingIOError):
            continue
        conversation.receive(data, clock())
