"""A simulated TCP connection: two endpoints joined by two pipes.

:class:`Endpoint` is one side's socket, with TCP's rules:

* bytes arrive in order, a read returns what has arrived (one piece at most);
* a write waits while the pipe is full (backpressure);
* ``send_eof`` is a half-close: the peer reads end of input after the data;
* closing with unread bytes resets the peer instead of closing politely, and
  bytes that reach a closed endpoint make it reset their sender, as a kernel
  does;
* a reset reaches the peer one latency later, behind the data already on the
  wire; from then on the peer's reads and writes fail with ``ECONNRESET``.

Every effect one side has on the other takes at least the link's latency, so
two ends acting at the same virtual instant can never observe each other's
actions in a scheduling-dependent order. The endpoints raise plain
:class:`OSError` (and :class:`EndpointClosed` for use after close); the Trio
stream and the blocking runtime translate those into their own vocabulary.
Endpoints are used from the Trio thread or from a virtual thread holding the
baton (see :mod:`.baton`); only the waiting methods must
run in Trio.
"""

from __future__ import annotations

import collections
import errno
import math
import os

from trio.lowlevel import (
    ParkingLot,
    cancel_shielded_checkpoint,
    checkpoint,
    checkpoint_if_cancelled,
)

from ..address import Address
from . import baton
from .alarm import AlarmClock
from .faults import DirectionPlan, Faults, ResetPlan, plan_reset
from .pipe import Pipe

__all__ = ["Connection", "Endpoint", "EndpointClosed"]


class EndpointClosed(Exception):
    """The endpoint was closed by its owner (or its sending side shut)."""


def os_error(code: int) -> OSError:
    """The OSError a socket raises for *code*, with the OS's own message.

    ``OSError(code, message)`` builds the matching subclass, e.g.
    :class:`ConnectionResetError` for ``ECONNRESET``.
    """
    return OSError(code, os.strerror(code))


class Endpoint:
    """One side of a connection, as its owner sees it."""

    def __init__(
        self,
        connection: Connection,
        direction: str,
        address: Address,
        incoming: Pipe,
        outgoing: Pipe,
    ) -> None:
        self.connection = connection
        self.direction = direction
        """The outgoing direction, ``to_server`` or ``to_client``, as fault plans name it."""
        self.address = address
        self.incoming = incoming
        self.outgoing = outgoing
        self.peer: Endpoint = self
        self.closed = False
        self.aborted = False
        self.eof_sent = False
        self.reset_at: float | None = None
        """When a reset reaches this endpoint, once one is on its way."""
        self.lot = ParkingLot()

    # ---- reading ---------------------------------------------------------------

    async def receive(self, max_bytes: int) -> bytes:
        """Up to *max_bytes* bytes, ``b""`` at end of input; a Trio checkpoint."""
        await checkpoint_if_cancelled()
        data = self.poll_receive(max_bytes)
        if data is None:
            return await self.wait_receive(max_bytes)
        await cancel_shielded_checkpoint()
        return data

    def poll_receive(self, max_bytes: int) -> bytes | None:
        """What a read returns now, or None if it would have to wait."""
        self._check_usable()
        now = baton.now()
        pipe = self.incoming
        if pipe.head_ready(now):
            data, acknowledged_at = pipe.take(max_bytes, now)
            self._wake_peer_at(acknowledged_at)
            return data
        if pipe.eof_ready(now):
            return b""
        if self._reset_due(now):
            raise os_error(errno.ECONNRESET)
        return None

    async def wait_receive(self, max_bytes: int, timeout: float | None = None) -> bytes:
        """Wait for something to read; TimeoutError after *timeout* seconds without any.

        Bytes that arrive at the very instant the timeout expires come too
        late, as they do for a Trio task whose cancel scope expires then.
        """
        give_up = math.inf if timeout is None else baton.now() + timeout
        while (data := self.poll_receive(max_bytes)) is None:
            await self._park(min(self.incoming.next_arrival(), self._reset_time(), give_up))
            if baton.now() >= give_up:
                raise TimeoutError("timed out")
        return data

    # ---- writing ---------------------------------------------------------------

    async def send(self, data: bytes, timeout: float | None = None) -> None:
        """Hand every byte of *data* to the network; a Trio checkpoint.

        With *timeout*, raise :class:`TimeoutError` once the network took
        nothing for that long (see :meth:`wait_send`).
        """
        await checkpoint_if_cancelled()
        pieces = self.start_send(data)
        self.push(pieces)
        if pieces:
            await self.wait_send(pieces, timeout)
        await cancel_shielded_checkpoint()

    def start_send(self, data: bytes) -> collections.deque[bytes]:
        """Check that this side may send, and cut *data* into the pieces the network carries."""
        self._check_can_send()
        return collections.deque(self.outgoing.plan.cut(data, self.outgoing.capacity))

    def push(self, pieces: collections.deque[bytes]) -> None:
        """Hand the network every piece it takes now; the rest stay in *pieces*."""
        while pieces:
            self._check_can_send()
            now = baton.now()
            pipe = self.outgoing
            if pipe.dead:
                if self.reset_at is None:
                    # The reader is gone: this write draws a reset, one round trip away.
                    self.connection.schedule_reset(self, pipe.arrival(now) + pipe.latency)
                    pieces.clear()
                return
            room = pipe.room(now)
            if room <= 0:
                return
            piece = pieces.popleft()
            rest = self._put(piece[:room], now) + piece[room:]
            if rest:
                pieces.appendleft(rest)

    async def wait_send(
        self, pieces: collections.deque[bytes], timeout: float | None = None
    ) -> None:
        """Wait until the network took every piece.

        With *timeout*, raise :class:`TimeoutError` once it took nothing for
        that long (a socket's ``SO_SNDTIMEO``).
        """
        patience = math.inf if timeout is None else timeout
        give_up = baton.now() + patience
        while pieces:
            left = sum(map(len, pieces))
            self.push(pieces)
            now = baton.now()
            if sum(map(len, pieces)) < left:
                give_up = now + patience
            if not pieces:
                return
            window = self.outgoing.next_acknowledgement(now)
            await self._park(min(give_up, self._reset_time(), window))
            if baton.now() >= give_up:
                raise TimeoutError("timed out")

    def _put(self, piece: bytes, now: float) -> bytes:
        """Put *piece* in the pipe; return what is left if a planned reset cut it."""
        pipe = self.outgoing
        plan = self.connection.reset_plan
        if (
            plan is None
            or plan.direction != self.direction
            or pipe.written + len(piece) <= plan.after
        ):
            self._wake_peer_at(pipe.put(piece, now))
            return b""
        keep = plan.after - pipe.written
        if keep:
            self._wake_peer_at(pipe.put(piece[:keep], now))
        self.connection.strike_reset(now)
        return piece[keep:]

    def _wake_peer_at(self, when: float) -> None:
        """Wake whoever waits on the peer at virtual time *when*, when this side's action
        reaches it (a piece, an acknowledgement), not before: it could only wait again."""
        alarm, lot = self.connection.alarm, self.peer.lot
        baton.run_soon(lambda: alarm.wake_at(when, lot))

    async def wait_writable(self) -> None:
        """Return once a write might not have to wait."""
        await checkpoint_if_cancelled()
        while True:
            self._check_usable()
            pipe = self.outgoing
            now = baton.now()
            if pipe.dead or pipe.room(now) > 0 or self._reset_due(now):
                break
            await self._park(min(self._reset_time(), pipe.next_acknowledgement(now)))
        await cancel_shielded_checkpoint()

    def send_eof(self) -> None:
        """Close the sending side: the peer reads end of input after the data."""
        self._check_usable()
        if self.eof_sent:
            return
        self.eof_sent = True
        self.outgoing.send_eof(baton.now())
        baton.wake(self.peer.lot)

    # ---- ending ----------------------------------------------------------------

    def close(self) -> None:
        """Close both sides, as ``close()`` on a socket does.

        Unread bytes that already arrived make it an abortive close (the peer
        is reset); otherwise the peer reads end of input, and bytes still on
        their way here will reset their sender when they arrive.
        """
        if self.closed:
            return
        self.closed = True
        now = baton.now()
        already_reset = self._reset_due(now)
        if not already_reset and self.incoming.head_ready(now):
            self.connection.schedule_reset(self.peer, self.outgoing.arrival(now))
            self.incoming.drop_all()
        else:
            self.outgoing.send_eof(now)
            first = self.incoming.drop_all()
            if first is not None and not already_reset:
                self.connection.schedule_reset(self.peer, first + self.incoming.latency)
        self._wake_both()

    def reset(self) -> None:
        """Close abortively (``SO_LINGER`` 0): the peer is reset after the data on the wire."""
        if self.closed:
            return
        self.closed = True
        now = baton.now()
        self.incoming.drop_all()
        if not self._reset_due(now):
            self.connection.schedule_reset(self.peer, self.outgoing.arrival(now))
        self._wake_both()

    def abort(self) -> None:
        """``shutdown(SHUT_RDWR)``: the peer reads end of input; this side's calls fail.

        Blocked and later reads raise ``ECONNABORTED`` and writes ``EPIPE``;
        the endpoint must still be closed.
        """
        if self.closed or self.aborted:
            return
        self.aborted = True
        self.outgoing.send_eof(baton.now())
        self._wake_both()

    # ---- helpers ---------------------------------------------------------------

    def _check_usable(self) -> None:
        """Reads fail once closed or aborted (``ECONNABORTED``, as ``SocketStream`` reports)."""
        if self.closed:
            raise EndpointClosed("the connection was closed")
        if self.aborted:
            raise os_error(errno.ECONNABORTED)

    def _check_can_send(self) -> None:
        """Writes fail once closed, half-closed, aborted (``EPIPE``) or reset."""
        if self.aborted and not self.closed:
            raise os_error(errno.EPIPE)
        self._check_usable()
        if self.eof_sent:
            raise EndpointClosed("can't send data after sending EOF")
        if self._reset_due(baton.now()):
            raise os_error(errno.ECONNRESET)

    def _reset_due(self, now: float) -> bool:
        return self.reset_at is not None and self.reset_at <= now

    def _reset_time(self) -> float:
        return math.inf if self.reset_at is None else self.reset_at

    def _wake_both(self) -> None:
        baton.wake(self.lot)
        baton.wake(self.peer.lot)

    async def _park(self, deadline: float) -> None:
        """Wait for a change on this connection, or until *deadline* at the latest.

        A deadline already reached means something is due now: the caller
        looks again after a checkpoint (parking would miss the wake-up).
        """
        if deadline <= baton.now():
            await checkpoint()
            return
        self.connection.alarm.wake_at(deadline, self.lot)
        await self.lot.park()


class Connection:
    """Two endpoints, the bytes delivered each way, and the faults planned for them."""

    def __init__(
        self,
        *,
        key: str,
        client_address: Address,
        server_address: Address,
        latency: float,
        capacity: int,
        faults: Faults,
        seed: int,
        alarm: AlarmClock,
    ) -> None:
        self.key = key
        self.alarm = alarm
        self.to_server = bytearray()
        self.to_client = bytearray()
        upstream = Pipe(
            capacity=capacity,
            latency=latency,
            plan=DirectionPlan(faults, seed, key, "to_server"),
            delivered=self.to_server,
        )
        downstream = Pipe(
            capacity=capacity,
            latency=latency,
            plan=DirectionPlan(faults, seed, key, "to_client"),
            delivered=self.to_client,
        )
        self.client = Endpoint(self, "to_server", client_address, downstream, upstream)
        self.server = Endpoint(self, "to_client", server_address, upstream, downstream)
        self.client.peer, self.server.peer = self.server, self.client
        self.reset_plan: ResetPlan | None = plan_reset(faults, seed, key)

    @property
    def finished(self) -> bool:
        """Both ends closed: nothing more can happen on this connection."""
        return self.client.closed and self.server.closed

    def hold(self, direction: str) -> None:
        """Cut the way *direction* (``to_server`` or ``to_client``): what is on it waits."""
        self._pipe(direction).hold(baton.now())

    def release(self, direction: str) -> None:
        """Mend the way *direction*: what was held arrives one latency later."""
        self._pipe(direction).release(baton.now())
        baton.wake(self.client.lot)
        baton.wake(self.server.lot)

    def _pipe(self, direction: str) -> Pipe:
        return self.client.outgoing if direction == "to_server" else self.server.outgoing

    def schedule_reset(self, endpoint: Endpoint, at: float) -> None:
        """A reset reaches *endpoint* at virtual time *at* (unless one comes sooner)."""
        if endpoint.reset_at is not None and endpoint.reset_at <= at:
            return
        endpoint.reset_at = at
        endpoint.incoming.cut_off(at)
        baton.wake(endpoint.lot)

    def strike_reset(self, now: float) -> None:
        """The network resets the connection: both ends learn it one latency later."""
        for endpoint in (self.client, self.server):
            self.schedule_reset(endpoint, endpoint.incoming.arrival(now))
