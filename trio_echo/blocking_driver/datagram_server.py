"""The blocking driver's UDP listener: one thread answering every datagram on its own.

A :class:`DatagramService` owns one bound UDP socket. :meth:`~DatagramService.run`
is the body of its thread; :meth:`~DatagramService.close`, from any other
thread, wakes it at once through a socketpair and makes it return. What to
answer, count and log is the shared
:class:`~trio_echo.transport.datagram_service.DatagramResponder`'s; this
module only waits, receives and sends.

Every descriptor the service owns (the UDP socket, the selector, the wake-up
pair) is freed by whichever of ``close`` and ``run`` ends last, as
:class:`~trio_echo.blocking_driver.runtime.SocketListener` does, so a
process that starts and stops many servers keeps none of them.

Sending never blocks: the socket is non-blocking, and a reply the kernel
has no room for (``EAGAIN``, ``ENOBUFS``) is dropped and counted, as UDP
allows, so a peer that floods cannot stall the loop on its answers.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

from ..codec.whoami import NAMELESS, Identity
from ..connection_log import EventSink, ServerStats
from ..faults.spec import FaultSpec
from ..transport.datagram_service import Answer, DatagramResponder, is_peer_error
from ..transport.reflection import ReflectionPolicy
from ..transport.spec import ListenSpec
from .waiting import InterruptibleSocket, SocketClosed


class DatagramService:
    """Answers the datagrams of one UDP socket, on the thread that calls :meth:`run`."""

    def __init__(
        self,
        sock: socket.socket,
        listener: ListenSpec,
        *,
        policy: ReflectionPolicy,
        sink: EventSink,
        stats: ServerStats,
        clock: Callable[[], float] = time.monotonic,
        receive_size: int = 65536,
        faults: FaultSpec | None = None,
        seed: int = 0,
        sleep: Callable[[float], None] = time.sleep,
        identity: Identity = NAMELESS,
    ) -> None:
        sock.setblocking(False)
        self._clock = clock
        self._receive_size = receive_size
        self._sleep = sleep
        self.responder = DatagramResponder(
            listener,
            policy=policy,
            sink=sink,
            stats=stats,
            faults=faults,
            seed=seed,
            identity=identity,
        )
        """The listener's decisions and counts (its guard included)."""
        self._socket = InterruptibleSocket(sock)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._socket.closed

    def run(self) -> None:
        """Answer datagrams until :meth:`close`; then free what is left and return.

        Per-peer socket errors are counted and logged, rate-limited, and never
        end the loop; any other ``OSError`` is raised (after the descriptors
        are freed, if ``close`` came first).
        """
        try:
            with self._socket.in_use():
                self._serve()
        except SocketClosed:
            pass

    def close(self) -> None:
        """Stop serving: wake :meth:`run` at once; free every descriptor if it is not running."""
        self._socket.close()

    def _serve(self) -> None:
        """The Trio listener's loop, written for a thread (see ``trio_driver.datagram_server``)."""
        responder = self.responder
        due = responder.next_report_at()
        while not self._socket.closed:
            received = self._receive(due)
            now = self._clock()
            if received is not None:
                data, sockaddr = received
                for answer in responder.receive(data, sockaddr, now).parts():
                    if answer.wait:
                        self._sleep(answer.wait)
                        now = self._clock()
                    responder.answered(answer, self._send(answer), now)
            due = responder.report(now)

    def _receive(self, due: float | None) -> tuple[bytes, Any] | None:
        """The next datagram and its source; None if woken, *due* came, or on a peer error."""
        try:
            return self._socket.sock.recvfrom(self._receive_size)
        except BlockingIOError:
            self._wait(due)
        except OSError as exc:
            if self._socket.closed:
                return None
            if not is_peer_error(exc):
                raise
            self.responder.socket_error(exc, "receive")
        return None

    def _wait(self, due: float | None) -> None:
        """Sleep until a datagram, :meth:`close`, or *due* (the responder's next report time)."""
        timeout = None if due is None else max(0.0, due - self._clock())
        self._socket.wait(timeout)

    def _send(self, answer: Answer) -> int:
        """Send *answer*'s replies without blocking; how many went before any peer error."""
        for sent, reply in enumerate(answer.replies):
            try:
                self._socket.sock.sendto(reply, answer.sockaddr)
            except OSError as exc:
                if self._socket.closed:
                    return sent
                if not is_peer_error(exc):
                    raise
                self.responder.socket_error(exc, "send to", answer.sockaddr)
                return sent
        return len(answer.replies)
