"""Serve waiting connections' conversations inline, as their bytes arrive.

A Trio task per connection pays, on every round trip, a wake-up through the
scheduler and an ``epoll_ctl`` to re-arm its descriptor (Trio registers
one-shot). For an echo server that is most of the cost of a round trip.
While a conversation needs nothing but "read, answer, write", its task can
wait in :meth:`Dispatcher.serve_until_needed` instead: one :class:`Dispatcher`
per Trio run keeps those descriptors in its own level-triggered epoll set,
and for every connection that has input it reads once, asks the
conversation what to answer and writes it, all in its own task. The
connection's task is woken only when the conversation needs it: the end
of the conversation, the idle or send timeout, an error.

A reply the kernel does not take at once is finished here too, as an event
loop's transport does: the dispatcher keeps its unsent rest on the
connection's :class:`Seat`, stops reading that connection (the peer's
backpressure reaches the peer) and watches it for room instead, writes
more each time there is some, and goes back to reading once the rest is
out. The peer taking no bytes for the send timeout hands the task
:data:`STALLED`; the timer restarts on every byte taken, as a blocking
socket's ``SO_SNDTIMEO`` does.

Trio's guarantees hold:

* the waiting task is cancellable at any moment (its wait is a Trio wait,
  and cancelling it takes the descriptor out of the set), so shutdown and
  every cancel scope work as anywhere else;
* the idle and send timeouts are exact: each served connection's deadline
  is kept lazily in a heap, without touching Trio's deadlines: a read only
  notes its time, a byte the peer takes of a pending reply restarts the
  send timer, an entry falling due is requeued at the deadline they moved
  it to, and the task is woken with :data:`IDLE` or :data:`STALLED` when
  it passes;
* connections are served fairly: each ready connection gets one read of at
  most its receive size (or a few full ones in a row, for a stream that
  asks for them), or one write of its pending rest, per round (one poll of
  the set), and the dispatcher yields to the scheduler after at most
  :data:`TURNS_BEFORE_YIELD` turns, so a flooding peer waits its turn like
  the rest and so do the other tasks;
* memory stays bounded: a connection holds at most one reply's rest, and
  nothing more is read from it until that rest is out.

Only Linux has epoll; :func:`dispatcher_available` says whether serving
inline is possible, and callers fall back to plain receives without it. The
dispatcher knows streams only as sockets: it watches for a stream being
closed under a waiting task through the stream's ``on_close`` hook, which
it sets while it serves the stream and clears when it hands it back.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import logging
import math
import select
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Final, Protocol

import outcome
import trio
from trio.abc import Clock
from trio.lowlevel import (
    Abort,
    RaiseCancelT,
    RunVar,
    Task,
    current_clock,
    current_task,
    reschedule,
    spawn_system_task,
    wait_readable,
    wait_task_rescheduled,
)

from ..memory_guard import PROCESS_RESERVE
from ..os_errors import describe_failure, stream_error

if TYPE_CHECKING:
    from .fast_stream import FastSocketStream

logger = logging.getLogger("trio_echo.server")

TURNS_BEFORE_YIELD = 256
"""Connection turns the dispatcher serves, over one round or several, before it yields."""

SHORT_READ = 4096
"""Bytes read at a time while memory is short (a full read's buffer could not be had)."""

SHORT_READ_SECONDS = 1.0
"""How long reads stay short after memory ran out for a full one."""

ROUND_FAILURE_PAUSE = 0.1
"""Seconds the dispatcher waits after a round failed as a whole before the next."""

_HEAP_SLACK = 64
"""Stale deadline entries tolerated beyond the served connections' own."""


class _Timeout(enum.Enum):
    IDLE = "idle"
    STALLED = "stalled"


IDLE: Final = _Timeout.IDLE
"""What :meth:`Dispatcher.serve_until_needed` returns when the idle timeout passed."""

STALLED: Final = _Timeout.STALLED
"""What :meth:`Dispatcher.serve_until_needed` returns when the peer stopped taking a reply."""


class Conversation(Protocol):
    """The server side of one connection, as the dispatcher drives it."""

    @property
    def finished(self) -> bool:
        """True once nothing more is to be read."""
        ...

    bytes_out: int
    """Bytes of replies written so far: the dispatcher adds each write's.

    An attribute the dispatcher adds to, not a method it calls: every reply
    it writes passes here."""

    def respond(self, data: bytes) -> bytes:
        """Take what was read (``b""`` for end of input); return what to send."""
        ...


def dispatcher_available() -> bool:
    """Whether this platform can serve connections inline (it needs epoll)."""
    return hasattr(select, "epoll")


class Seat:
    """A connection's place at the dispatcher, held by its task for the connection's life.

    Kept, not made per :meth:`Dispatcher.serve_until_needed` call, so that a
    connection has at most one entry in the deadline heap however often it
    comes and goes: memory stays bounded by the number of connections. Its
    holder drops it with the connection; the dispatcher keeps none.
    """

    __slots__ = (
        "cap",
        "close_at_eof",
        "conversation",
        "deadline",
        "dispatcher",
        "fd",
        "idle",
        "last_input",
        "queued",
        "reads_per_turn",
        "receive_size",
        "rest",
        "send_timeout",
        "sock",
        "stream",
        "task",
        "then_end",
    )

    # What a serving call sets before anything reads it: assigned there, not here, so that a
    # connection's seat costs no more to make than what is read before it is served.
    fd: int
    """The descriptor it is served under, at :attr:`dispatcher`."""
    conversation: Conversation | None
    receive_size: int
    reads_per_turn: int
    close_at_eof: bool
    idle: float
    cap: float
    """A deadline no input moves (a greeting line's); ``math.inf`` for none."""
    deadline: float
    send_timeout: float | None
    then_end: bool
    """The read that made :attr:`rest` ended the conversation: hand back once it is out."""

    def __init__(self, stream: FastSocketStream) -> None:
        self.stream = stream
        self.sock = stream.socket
        self.dispatcher: Dispatcher | None = None
        """The dispatcher serving it now."""
        self.task: Task | None = None
        self.last_input = -math.inf
        """When the peer last sent something (set as each read is served)."""
        self.queued = math.inf
        """When this connection's entry in the deadline heap falls due (inf: none)."""
        self.rest: memoryview | None = None
        """What the kernel has not yet taken of a reply; while set, the socket is not read."""

    # Bound methods, not closures or partials, for Trio and the stream to call: an idle
    # connection keeps them for as long as it waits, and a bound method is the smallest.

    def abort(self, _: RaiseCancelT) -> Abort:
        """Trio's abort function for the waiting task: it is cancelled, so stop serving it."""
        assert self.dispatcher is not None
        self.dispatcher._release(self.fd, self)
        return Abort.SUCCEEDED

    def closing(self) -> None:
        """The stream's ``on_close`` hook: the socket is being closed under the waiting task."""
        if self.dispatcher is not None:
            self.dispatcher._abandon(self)


class Dispatcher:
    """Serves conversations inline for every connection of one Trio run; see the module doc."""

    def __init__(self) -> None:
        self._now = current_clock().current_time
        """The run's clock, looked up once: every connection's seating reads it."""
        self._epoll = select.epoll()
        self._served: dict[int, Seat] = {}
        self._deadlines: list[tuple[float, int, Seat]] = []
        self._order = itertools.count()
        self._sleep = trio.CancelScope()
        self._short_until = -math.inf
        """Until when reads are :data:`SHORT_READ` bytes: memory ran out for a full one."""
        self._starved = False
        """Memory ran out in this round: pause before the next, rather than spin on it."""

    def serve_until_needed(
        self,
        seat: Seat,
        conversation: Conversation,
        *,
        receive_size: int,
        idle: float,
        cap: float = math.inf,
        send_timeout: float | None = None,
        reads_per_turn: int = 1,
        close_at_eof: bool = False,
    ) -> Awaitable[bytes | _Timeout]:
        """Answer the peer from the dispatcher until the task is needed.

        Returns ``b""`` when the conversation has finished or the peer
        closed, or :data:`IDLE` when no input arrived for *idle* seconds or
        the absolute time *cap* came (a deadline that input does not move).
        With a *send_timeout*, a reply the kernel does not take at once is
        finished by the dispatcher, and :data:`STALLED` is returned if the
        peer takes no byte of it for *send_timeout* seconds; without one,
        what remains of such a reply is returned, for the caller to send
        before it comes back. A read that fills *receive_size* may be
        followed by up to *reads_per_turn* - 1 more before the others' turn
        (a stream's throughput for its fairness: keep 1 where reads are
        small messages). With *close_at_eof*, a peer that closed once every
        reply is out has its stream closed here, before ``b""`` is
        returned: for a caller that would close it next, closing it here
        also takes it out of the epoll set, which spares an unregister per
        connection. A socket or conversation error is raised here, in the
        connection's task. *seat* is the connection's, from
        :meth:`seat_for`.

        Await what it returns at once. It is not a coroutine function itself:
        it seats the connection and returns Trio's wait, so a connection
        waiting here keeps no frame of this call (memory per idle connection).
        """
        if receive_size < 1:
            raise ValueError("receive_size must be >= 1")
        if reads_per_turn < 1:
            raise ValueError("reads_per_turn must be >= 1")
        fd = seat.sock.fileno()
        if fd == -1:
            raise trio.ClosedResourceError("the socket was already closed")
        if seat.task is not None:
            raise trio.BusyResourceError("another task is already served on this stream")
        self._epoll.register(fd, select.EPOLLIN)
        seat.task = current_task()
        seat.dispatcher = self
        seat.fd = fd
        seat.conversation = conversation
        seat.receive_size = receive_size
        seat.reads_per_turn = reads_per_turn
        seat.close_at_eof = close_at_eof
        seat.idle = idle
        seat.cap = cap
        seat.send_timeout = send_timeout
        seat.stream.on_close = seat.closing
        self._served[fd] = seat
        self._watch(seat, min(self._now() + idle, cap))
        return wait_task_rescheduled(seat.abort)

    @staticmethod
    def seat_for(stream: FastSocketStream) -> Seat:
        """A new connection's place at the dispatcher, to pass to every serving call."""
        return Seat(stream)

    def _watch(self, state: Seat, deadline: float) -> None:
        state.deadline = deadline
        if deadline < state.queued:
            state.queued = deadline
            heapq.heappush(self._deadlines, (deadline, next(self._order), state))
            if deadline < self._sleep.deadline:
                self._sleep.deadline = deadline

    def _release(self, fd: int, state: Seat) -> None:
        if self._served.get(fd) is state:
            del self._served[fd]
            # OSError: closed behind our back, epoll forgot it; ValueError: the run is
            # over and the dispatcher's epoll with it.
            try:  # noqa: SIM105 (contextlib.suppress costs three calls per connection)
                self._epoll.unregister(fd)
            except (OSError, ValueError):
                pass
        self._unseat(state)

    def _unseat(self, state: Seat) -> None:
        state.task = state.conversation = state.dispatcher = None
        state.rest = None
        state.stream.on_close = None
        if len(self._deadlines) > 2 * len(self._served) + _HEAP_SLACK:
            self._drop_stale_deadlines()

    def _drop_stale_deadlines(self) -> None:
        """Forget the heap entries of connections no longer served.

        Entries are left in the heap when a connection is handed back (the
        heap cannot remove from its middle); without this, a stream of short
        connections would leave one behind each, for up to the idle timeout.
        Rebuilding once they outnumber the live ones keeps the heap within
        twice the served connections, at amortised constant cost.
        """
        live = []
        for entry in self._deadlines:
            if entry[2].task is not None:
                live.append(entry)
            else:
                entry[2].queued = math.inf
        heapq.heapify(live)
        self._deadlines = live

    def _abandon(self, state: Seat) -> None:
        """The socket is being closed under a waiting task: wake it with the error."""
        fd = state.sock.fileno()
        if state.task is not None and fd != -1:
            error = trio.ClosedResourceError("another task closed this socket")
            self._hand_back(fd, state, outcome.Error(error))

    def _hand_back(self, fd: int, state: Seat, result: outcome.Outcome[bytes | _Timeout]) -> None:
        task = state.task
        assert task is not None
        self._release(fd, state)
        reschedule(task, result)

    def _hand_back_at_eof(self, fd: int, state: Seat) -> None:
        """The peer closed and every reply is out: hand back ``b""``, closing first if asked.

        Closing the socket takes it out of the epoll set, so a seat that
        asked for it is unregistered for free.
        """
        if not state.close_at_eof:
            self._hand_back(fd, state, outcome.Value(b""))
            return
        task = state.task
        assert task is not None
        del self._served[fd]
        stream = state.stream
        self._unseat(state)
        stream.close()
        reschedule(task, outcome.Value(b""))

    async def run(self) -> None:
        """Serve rounds of ready connections, and expire idle ones, until cancelled.

        A failure of a whole round (memory running out in ``epoll_wait``)
        must not end the run, which would take every connection with it: it
        is logged, at most once per :data:`ROUND_FAILURE_PAUSE` seconds, and
        the next round tries again after that pause. A round in which a read
        found no memory is followed by the same pause: the epoll set is
        level-triggered, so retrying at once would spin on the same input.
        """
        # Looked up once: every round trip passes here, and the run's clock never changes.
        epoll_fd = self._epoll.fileno()
        clock = current_clock()
        try:
            while True:
                self._sleep = trio.CancelScope(deadline=self._next_deadline())
                try:
                    with self._sleep:
                        while True:
                            await wait_readable(epoll_fd)
                            self._serve_rounds(clock)
                            if self._starved:
                                self._starved = False
                                await trio.sleep(ROUND_FAILURE_PAUSE)
                    self._expire(trio.current_time())
                except Exception as exc:
                    if isinstance(exc, MemoryError):
                        PROCESS_RESERVE.release()
                    logger.error(
                        "dispatcher round failed, retrying: %s", describe_failure(exc).message
                    )
                    await trio.sleep(ROUND_FAILURE_PAUSE)
        finally:
            self._epoll.close()

    def _next_deadline(self) -> float:
        return self._deadlines[0][0] if self._deadlines else math.inf

    def _serve_rounds(self, clock: Clock) -> None:
        """Rounds of ready connections, polled again at once while several were ready.

        Coming back through Trio's scheduler costs many times what a poll
        does. When a round found several connections ready, more are likely
        to be by the time they are served (their peers answer in the
        meantime), so the set is polled again right away, within this step's
        :data:`TURNS_BEFORE_YIELD`; a lone ready connection is most likely a
        peer waiting for the very reply it is given, and a second poll would
        find nothing.

        With a single connection served, its being ready is all that can
        have woken the set, so it is served without a poll: one system call
        fewer per round trip. A stale wake costs one refused read, and the
        set's readiness is recomputed by the kernel as Trio waits on it again.
        """
        served = self._served
        if len(served) == 1:
            self._serve_round([(next(iter(served)), 0)], clock.current_time())
            return
        budget = TURNS_BEFORE_YIELD
        while True:
            ready = self._epoll.poll(0, budget)
            self._serve_round(ready, clock.current_time())
            budget -= len(ready)
            if len(ready) < 2 or budget <= 0 or self._starved:
                return

    def _serve_round(self, ready: list[tuple[int, int]], now: float) -> None:
        served = self._served
        for fd, _ in ready:
            state = served.get(fd)
            if state is not None:
                try:
                    if state.rest is None:
                        self._serve(fd, state, now)
                    else:
                        self._write_rest(fd, state, now)
                except Exception as exc:  # this connection's alone: a bug, or memory ran out
                    if isinstance(exc, MemoryError):
                        self._ran_out_of_memory(now)
                    if state.task is not None:
                        self._hand_back(fd, state, outcome.Error(exc))

    def _serve(self, fd: int, state: Seat, now: float) -> None:
        """A read, its answer and its write, for one connection; again while the socket has more.

        A read that filled the receive size may be followed by others in the
        same turn, up to the seat's ``reads_per_turn``, each only once the
        last one's reply is out: memory still holds one read and its reply.
        """
        conversation = state.conversation
        assert conversation is not None
        sock = state.sock
        size = state.receive_size if now >= self._short_until else SHORT_READ
        reads_left = state.reads_per_turn
        while True:
            try:
                data = sock.recv(size)
            except BlockingIOError:
                return
            except OSError as exc:
                self._hand_back(fd, state, outcome.Error(stream_error(exc)))
                return
            except MemoryError:
                # No room for a full read's buffer: read in small pieces for a while,
                # and let this connection wait for its turn rather than fail.
                self._ran_out_of_memory(now)
                return
            reply = conversation.respond(data)  # what it raises goes to the task (_serve_round)
            if reply:
                try:
                    sent = sock.send(reply)
                except BlockingIOError:
                    sent = 0
                except OSError as exc:
                    self._hand_back(fd, state, outcome.Error(stream_error(exc)))
                    return
                conversation.bytes_out += sent
                if sent < len(reply):
                    if state.send_timeout is None:
                        self._hand_back(fd, state, outcome.Value(reply[sent:]))
                    else:
                        ending = conversation.finished or not data
                        self._hold_rest(fd, state, reply, sent, now, ending)
                    return
            if not data or conversation.finished:
                if data:
                    self._hand_back(fd, state, outcome.Value(b""))
                else:
                    self._hand_back_at_eof(fd, state)
                return
            state.last_input = now  # moves the idle deadline on (see _due)
            reads_left -= 1
            if not reads_left or len(data) < size:  # this turn's reads are done, or the input
                return

    def _hold_rest(
        self, fd: int, state: Seat, reply: bytes, sent: int, now: float, then_end: bool
    ) -> None:
        """Keep what the kernel did not take of *reply*; watch for room instead of input."""
        assert state.send_timeout is not None
        state.rest = memoryview(reply)[sent:]
        state.then_end = then_end
        self._epoll.modify(fd, select.EPOLLOUT)
        self._watch(state, now + state.send_timeout)

    def _write_rest(self, fd: int, state: Seat, now: float) -> None:
        """One write of a pending reply's rest; once it is all out, read again (or end)."""
        rest = state.rest
        conversation = state.conversation
        assert rest is not None and conversation is not None and state.send_timeout is not None
        try:
            sent = state.sock.send(rest)
        except BlockingIOError:
            return
        except OSError as exc:
            self._hand_back(fd, state, outcome.Error(stream_error(exc)))
            return
        conversation.bytes_out += sent
        if sent < len(rest):
            state.rest = rest[sent:]
            self._watch(state, now + state.send_timeout)  # the peer took some: a new timer
            return
        state.rest = None
        if state.then_end:
            self._hand_back(fd, state, outcome.Value(b""))
            return
        self._epoll.modify(fd, select.EPOLLIN)
        self._watch(state, min(now + state.idle, state.cap))

    def _ran_out_of_memory(self, now: float) -> None:
        """Free the reserve, read short for a while, and pause after this round."""
        PROCESS_RESERVE.release()
        self._short_until = now + SHORT_READ_SECONDS
        self._starved = True

    def _expire(self, now: float) -> None:
        """Hand back connections past their deadline as :data:`IDLE` or :data:`STALLED`.

        A connection is stalled if a reply's rest was pending; the others'
        entries are requeued at their own deadlines.

        Handing back releases the connection at once, which may rebuild the
        heap: it is looked up afresh on every turn.
        """
        while self._deadlines and self._deadlines[0][0] <= now:
            _, _, state = heapq.heappop(self._deadlines)
            state.queued = math.inf
            if state.task is None:
                continue
            due = _due(state)
            if due <= now:
                timeout = IDLE if state.rest is None else STALLED
                self._hand_back(state.sock.fileno(), state, outcome.Value(timeout))
            else:
                self._watch(state, due)


def _due(state: Seat) -> float:
    """When a served connection's timer runs out.

    Its deadline, set as it was seated (or as its pending reply went out),
    or by the peer's last progress on a pending reply; while it reads, each
    input moves it on to *idle* after that input, never past *cap*.
    """
    if state.rest is not None or state.last_input == -math.inf:  # writing, or nothing read
        return state.deadline
    moved = min(state.last_input + state.idle, state.cap)
    return moved if moved > state.deadline else state.deadline


_DISPATCHER: RunVar[Dispatcher] = RunVar("trio_echo_dispatcher")


def current_dispatcher() -> Dispatcher:
    """This Trio run's dispatcher, started (as a system task) on first use."""
    try:
        return _DISPATCHER.get()
    except LookupError:
        dispatcher = Dispatcher()
        _DISPATCHER.set(dispatcher)
        spawn_system_task(dispatcher.run, name="trio_echo.dispatcher")
        return dispatcher
