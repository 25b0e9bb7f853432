"""The dispatcher answers connections inline and wakes their tasks only when needed.

Each test has the dispatcher serve the server end of a local socket pair (data the test writes
to the other end is readable at once) and drives that peer end itself, with
a fake conversation that records what the dispatcher asks of it. Idle tests
run on the autojump clock and check exact virtual times; every test is
bounded by ``fail_after``.
"""

from __future__ import annotations

import errno
import functools
import math
import select
import socket
import struct
import weakref
from collections.abc import Callable

import pytest
import trio
import trio.testing
from scheduler_steps import StepCounter
from trio.lowlevel import Task, current_task

from trio_echo.address import Address
from trio_echo.trio_driver import dispatcher as dispatcher_module
from trio_echo.trio_driver.dispatcher import IDLE, STALLED, Dispatcher, Seat, current_dispatcher
from trio_echo.trio_driver.fast_stream import FastSocketStream

PEER = Address("local", 0)
RECEIVE_SIZE = 1024


def echo(data: bytes) -> bytes:
    """Answer every request with itself."""
    return data


class FakeConversation:
    """A conversation that answers through *answer* and records every call made on it.

    It finishes once it has received *finish_on*, and raises *error* from
    ``respond`` if one is given.
    """

    def __init__(
        self,
        answer: Callable[[bytes], bytes] = echo,
        *,
        finish_on: bytes | None = None,
        error: Exception | None = None,
        name: str = "",
        log: list[tuple[str, bytes]] | None = None,
    ) -> None:
        self.finished = False
        self.received: list[bytes] = []
        self.sent_sizes: list[int] = []
        self.error = error
        self.name = name
        self.log: list[tuple[str, bytes]] = [] if log is None else log
        self._answer = answer
        self._finish_on = finish_on

    def respond(self, data: bytes) -> bytes:
        self.received.append(data)
        self.log.append((self.name, data))
        if self.error is not None:
            raise self.error
        if data == self._finish_on:
            self.finished = True
        return self._answer(data)

    @property
    def bytes_out(self) -> int:
        return sum(self.sent_sizes)

    @bytes_out.setter
    def bytes_out(self, total: int) -> None:
        """Each write the dispatcher adds is recorded on its own (an empty one is not)."""
        if total != self.bytes_out:
            self.sent_sizes.append(total - self.bytes_out)


class Background:
    """One relay call in a task of its own: the task, and what the call returned or raised."""

    def __init__(self) -> None:
        self.task: Task | None = None
        self.result: bytes | None = None
        self.error: Exception | None = None
        self.done = trio.Event()

    async def relay(
        self,
        stream: FastSocketStream,
        conversation: FakeConversation,
        send_timeout: float | None = None,
    ) -> None:
        self.task = current_task()
        try:
            self.result = await relay(stream, conversation, send_timeout=send_timeout)
        except Exception as exc:
            self.error = exc
        finally:
            self.done.set()


def relayed_pair() -> tuple[FastSocketStream, socket.socket]:
    """A fast stream for the dispatcher to relay, and the non-blocking peer the test drives."""
    server, peer = socket.socketpair()
    peer.setblocking(False)
    return FastSocketStream(server, PEER), peer


def tcp_pair() -> tuple[FastSocketStream, socket.socket]:
    """As :func:`relayed_pair`, over TCP on 127.0.0.1."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        peer = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    peer.setblocking(False)
    return FastSocketStream(server, PEER), peer


_SEATS: weakref.WeakKeyDictionary[FastSocketStream, Seat] = weakref.WeakKeyDictionary()


def seat_of(stream: FastSocketStream) -> Seat:
    """The stream's one seat at the dispatcher, as a server keeps it for a connection's life."""
    if stream not in _SEATS:
        _SEATS[stream] = Dispatcher.seat_for(stream)
    return _SEATS[stream]


async def relay(
    stream: FastSocketStream,
    conversation: FakeConversation,
    *,
    receive_size: int = RECEIVE_SIZE,
    idle: float = math.inf,
    send_timeout: float | None = None,
) -> bytes:
    """Have the dispatcher serve *stream* until it hands it back; what it returned.

    Without an idle timeout; a test that wants one calls :func:`serve` instead.
    """
    result = await serve(
        stream, conversation, receive_size=receive_size, idle=idle, send_timeout=send_timeout
    )
    assert isinstance(result, bytes), "handed back as idle or stalled without a timeout"
    return result


async def serve(
    stream: FastSocketStream,
    conversation: FakeConversation,
    *,
    receive_size: int = RECEIVE_SIZE,
    idle: float = math.inf,
    send_timeout: float | None = None,
    close_at_eof: bool = False,
) -> bytes | object:
    """One :meth:`Dispatcher.serve_until_needed` call, with the stream's own seat."""
    return await current_dispatcher().serve_until_needed(
        seat_of(stream),
        conversation,
        receive_size=receive_size,
        idle=idle,
        send_timeout=send_timeout,
        close_at_eof=close_at_eof,
    )


async def receive_exactly(peer: socket.socket, size: int) -> bytes:
    """Wait for and read *size* bytes from *peer*."""
    data = b""
    while len(data) < size:
        await trio.lowlevel.wait_readable(peer)
        chunk = peer.recv(size - len(data))
        assert chunk, f"end of input after {data!r}"
        data += chunk
    return data


def drain(sock: socket.socket) -> bytes:
    """Everything already readable on the non-blocking *sock*."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except BlockingIOError:
            return data
        if not chunk:
            return data
        data += chunk


async def test_round_trips_are_answered_while_the_task_stays_parked() -> None:
    """50 request/reply exchanges are answered without the relaying task running once."""
    stream, peer = relayed_pair()
    conversation = FakeConversation()
    parked = Background()
    counter = StepCounter()
    requests = [f"request {i:02d}".encode() for i in range(50)]
    trio.lowlevel.add_instrument(counter)
    try:
        with trio.fail_after(5), peer:
            async with stream, trio.open_nursery() as nursery:
                nursery.start_soon(parked.relay, stream, conversation)
                for request in requests:
                    peer.send(request)
                    assert await receive_exactly(peer, len(request)) == request
                assert not parked.done.is_set()
                assert parked.task is not None
                assert counter.steps[parked.task] == 1  # the step that parked it
                peer.shutdown(socket.SHUT_WR)
                await parked.done.wait()
    finally:
        trio.lowlevel.remove_instrument(counter)
    assert parked.error is None
    assert parked.result == b""
    assert conversation.received == [*requests, b""]
    assert conversation.sent_sizes == [len(request) for request in requests]
    assert sum(conversation.sent_sizes) == sum(map(len, requests))


async def test_relay_returns_empty_once_the_conversation_finishes() -> None:
    """The reply that finishes the conversation is sent, relay returns b"", nothing more is read."""
    stream, peer = relayed_pair()
    conversation = FakeConversation(finish_on=b"bye")
    with trio.fail_after(5), peer:
        async with stream:
            peer.send(b"byeafter")
            assert await relay(stream, conversation, receive_size=3) == b""
            assert conversation.finished
            assert conversation.received == [b"bye"]
            assert conversation.sent_sizes == [3]
            assert await receive_exactly(peer, 3) == b"bye"
            assert stream.socket.recv(100) == b"after"


async def test_end_of_input_is_responded_to_and_ends_the_relay() -> None:
    """When the peer shuts down its write side, respond gets b"" and relay returns b""."""
    stream, peer = relayed_pair()
    conversation = FakeConversation()
    parked = Background()
    with trio.fail_after(5), peer:
        async with stream, trio.open_nursery() as nursery:
            nursery.start_soon(parked.relay, stream, conversation)
            peer.send(b"last words")
            assert await receive_exactly(peer, 10) == b"last words"
            assert not parked.done.is_set()
            peer.shutdown(socket.SHUT_WR)
            await parked.done.wait()
    assert parked.error is None
    assert parked.result == b""
    assert conversation.received == [b"last words", b""]


@pytest.mark.parametrize("close_at_eof", [True, False])
async def test_end_of_input_closes_the_stream_only_for_a_seat_that_asked(
    close_at_eof: bool,
) -> None:
    """With close_at_eof, the stream of a peer that closed is closed before b"" comes back
    (its last reply out first); without, it is handed back open, as it is whenever the
    conversation rather than the peer ends."""
    stream, peer = relayed_pair()
    conversation = FakeConversation()
    with trio.fail_after(5), peer:
        async with stream:
            peer.send(b"last words")
            peer.shutdown(socket.SHUT_WR)
            served = await serve(stream, conversation, close_at_eof=close_at_eof)
            assert served == b""
            assert (stream.socket.fileno() == -1) is close_at_eof
            assert conversation.received == [b"last words", b""]
            assert await receive_exactly(peer, 10) == b"last words"


async def test_a_finished_conversation_is_handed_back_open_even_with_close_at_eof() -> None:
    stream, peer = relayed_pair()
    conversation = FakeConversation(finish_on=b"bye")
    with trio.fail_after(5), peer:
        async with stream:
            peer.send(b"bye")
            served = await serve(stream, conversation, close_at_eof=True)
            assert served == b""
            assert stream.socket.fileno() != -1
            assert await receive_exactly(peer, 3) == b"bye"


async def test_a_reply_the_kernel_cannot_take_returns_its_unsent_remainder() -> None:
    """A reply beyond the send buffer: relay returns exactly what the one send left over."""
    stream, peer = relayed_pair()
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    reply = bytes(range(256)) * 4096  # 1 MiB, patterned so a misplaced slice shows
    conversation = FakeConversation(lambda _: reply)
    with trio.fail_after(5), peer:
        async with stream:
            peer.send(b"big")
            remainder = await relay(stream, conversation)
            assert conversation.received == [b"big"]
            assert len(conversation.sent_sizes) == 1
            sent = conversation.sent_sizes[0]
            assert 0 < sent < len(reply)
            assert sent + len(remainder) == len(reply)
            assert remainder == reply[sent:]
            assert drain(peer) == reply[:sent]


async def test_an_exception_from_respond_is_raised_from_relay() -> None:
    """respond's own exception comes out of relay; the dispatcher then relays a fresh stream."""
    stream, peer = relayed_pair()
    failing = FakeConversation(error=ValueError("no answer"))
    with trio.fail_after(5), peer:
        async with stream:
            peer.send(b"ask")
            with pytest.raises(ValueError, match="no answer") as caught:
                await relay(stream, failing)
            assert caught.value is failing.error
            assert failing.received == [b"ask"]
            assert failing.sent_sizes == []

    fresh, fresh_peer = relayed_pair()
    conversation = FakeConversation()
    with trio.fail_after(5), fresh_peer:
        async with fresh:
            fresh_peer.send(b"again")
            fresh_peer.shutdown(socket.SHUT_WR)
            assert await relay(fresh, conversation) == b""
            assert await receive_exactly(fresh_peer, 5) == b"again"
    assert conversation.received == [b"again", b""]


class FailingSent(FakeConversation):
    """A conversation whose bookkeeping after a write raises (memory running out, say)."""

    @property
    def bytes_out(self) -> int:
        return 0

    @bytes_out.setter
    def bytes_out(self, total: int) -> None:
        raise MemoryError("no room to count")


async def test_any_exception_of_one_connection_ends_that_connection_only() -> None:
    """Outside respond() too: the task gets the exception, the dispatcher serves on."""
    broken, broken_peer = relayed_pair()
    healthy, healthy_peer = relayed_pair()
    conversation = FakeConversation()
    with trio.fail_after(5), broken_peer, healthy_peer:
        async with broken, healthy, trio.open_nursery() as nursery:
            parked = Background()
            nursery.start_soon(parked.relay, healthy, conversation)
            broken_peer.send(b"ask")
            with pytest.raises(MemoryError, match="no room"):
                await relay(broken, FailingSent())
            healthy_peer.send(b"still here")
            assert await receive_exactly(healthy_peer, 10) == b"still here"
            healthy_peer.shutdown(socket.SHUT_WR)
            await parked.done.wait()
    assert parked.error is None and parked.result == b""


async def test_a_round_that_fails_as_a_whole_is_retried(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """epoll_wait running out of memory once costs a pause and a log line, not the run.

    A second, quiet connection is served alongside: with one alone the set is
    not polled at all (see the next test)."""
    stream, peer = relayed_pair()
    quiet, quiet_peer = relayed_pair()
    failures = [MemoryError("epoll_wait")]

    def fail_once() -> None:
        if failures:
            raise failures.pop()

    watch_polls(monkeypatch, fail_once)
    with trio.fail_after(5), peer, quiet_peer:
        async with stream, quiet, trio.open_nursery() as nursery:
            nursery.start_soon(relay, quiet, FakeConversation())
            await trio.testing.wait_all_tasks_blocked()
            peer.send(b"ping")
            peer.shutdown(socket.SHUT_WR)
            assert await relay(stream, FakeConversation()) == b""
            assert await receive_exactly(peer, 4) == b"ping"
            nursery.cancel_scope.cancel()
    assert "dispatcher round failed, retrying: internal error: MemoryError: epoll_wait" in (
        caplog.text
    )


async def test_a_lone_connection_is_served_without_polling_the_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With one connection served, its readiness is what woke the set: no epoll_wait of ours.

    With two served, the set is polled again, and both are answered."""
    polls: list[None] = []
    watch_polls(monkeypatch, lambda: polls.append(None))

    async def echoed(stream: FastSocketStream, peer: socket.socket, data: bytes) -> None:
        peer.send(data)
        peer.shutdown(socket.SHUT_WR)
        assert await relay(stream, FakeConversation()) == b""
        assert await receive_exactly(peer, len(data)) == data

    async def waiting(stream: FastSocketStream) -> None:
        assert await relay(stream, FakeConversation()) == b""

    lone, lone_peer = relayed_pair()
    quiet, quiet_peer = relayed_pair()
    second, second_peer = relayed_pair()
    with trio.fail_after(5), lone_peer, quiet_peer, second_peer:
        async with lone, quiet, second:
            await echoed(lone, lone_peer, b"ping")
            assert polls == []
            async with trio.open_nursery() as nursery:
                nursery.start_soon(waiting, quiet)
                await trio.testing.wait_all_tasks_blocked()
                await echoed(second, second_peer, b"ping")
                assert polls != []
                quiet_peer.send(b"pong")
                quiet_peer.shutdown(socket.SHUT_WR)
            assert await receive_exactly(quiet_peer, 4) == b"pong"


def watch_polls(monkeypatch: pytest.MonkeyPatch, before_poll: Callable[[], None]) -> None:
    """Have the run's dispatcher call *before_poll* ahead of every poll of its set.

    What *before_poll* raises is raised from the poll, as epoll_wait's own errors are.
    """
    dispatcher = current_dispatcher()
    monkeypatch.setattr(dispatcher, "_epoll", _EpollWatched(dispatcher._epoll, before_poll))


class _EpollWatched:
    """An epoll object whose poll() first calls a hook; everything else delegated."""

    def __init__(self, epoll: select.epoll, before_poll: Callable[[], None]) -> None:
        self._epoll = epoll
        self._before_poll = before_poll

    def poll(self, timeout: float | None = None, maxevents: int = -1) -> list[tuple[int, int]]:
        self._before_poll()
        return self._epoll.poll(timeout, maxevents)

    def __getattr__(self, name: str) -> object:
        return getattr(self._epoll, name)


@pytest.mark.parametrize("transport", ["unix", "tcp"])
async def test_a_reset_connection_raises_broken_resource_error(transport: str) -> None:
    """A reset peer wakes the relaying task with BrokenResourceError caused by ECONNRESET."""
    if transport == "unix":
        # Closing an AF_UNIX socket with unread data resets its peer.
        stream, peer = relayed_pair()
        stream.socket.send(b"unread")
    else:
        stream, peer = tcp_pair()
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conversation = FakeConversation()
    parked = Background()
    with trio.fail_after(5):
        async with stream, trio.open_nursery() as nursery:
            nursery.start_soon(parked.relay, stream, conversation)
            await trio.testing.wait_all_tasks_blocked()
            assert not parked.done.is_set()
            peer.close()
            await parked.done.wait()
    assert isinstance(parked.error, trio.BrokenResourceError)
    cause = parked.error.__cause__
    assert isinstance(cause, OSError)
    assert cause.errno == errno.ECONNRESET
    assert conversation.received == []


async def test_cancelling_the_relaying_task_takes_its_socket_out_of_the_dispatcher(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Cancel lands at once; input arriving afterwards waits until the stream is relayed again."""
    stream, peer = relayed_pair()
    conversation = FakeConversation()
    cancelled = trio.CancelScope()
    outcomes: list[str] = []

    async def relay_until_cancelled() -> None:
        with cancelled:
            try:
                await relay(stream, conversation)
            except trio.Cancelled:
                outcomes.append("cancelled")
                raise
            outcomes.append("returned")

    with trio.fail_after(100), peer:
        async with stream:
            start = trio.current_time()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(relay_until_cancelled)
                await trio.testing.wait_all_tasks_blocked()
                cancelled.cancel()
            assert trio.current_time() == start
            assert cancelled.cancelled_caught
            assert outcomes == ["cancelled"]

            peer.send(b"while away")
            await trio.testing.wait_all_tasks_blocked()
            assert conversation.received == []

            again = Background()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(again.relay, stream, conversation)
                assert await receive_exactly(peer, 10) == b"while away"
                peer.shutdown(socket.SHUT_WR)
                await again.done.wait()
    assert again.error is None
    assert again.result == b""
    assert conversation.received == [b"while away", b""]


async def test_an_idle_connection_is_handed_back_exactly_idle_seconds_after_serving(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Without input, the task is woken with IDLE (not cancelled) at exactly t=5."""
    stream, peer = relayed_pair()
    conversation = FakeConversation()
    with trio.fail_after(100), peer:
        async with stream:
            start = trio.current_time()
            with trio.CancelScope() as scope:
                result = await serve(stream, conversation, idle=5)
            fired_at = trio.current_time() - start
    assert result is IDLE
    assert not scope.cancel_called
    assert fired_at == 5
    assert conversation.received == []


async def test_input_moves_the_idle_deadline_to_exactly_idle_after_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With idle=5, input at t=3 keeps the connection past t=5; it is idle at exactly t=8."""
    stream, peer = relayed_pair()
    conversation = FakeConversation()
    fired: list[float] = []
    pending_at_6: list[bool] = []

    with trio.fail_after(100), peer:
        async with stream:
            start = trio.current_time()

            async def feed() -> None:
                await trio.sleep_until(start + 3)
                peer.send(b"ping")

            async def look_at_6() -> None:
                await trio.sleep_until(start + 6)
                pending_at_6.append(not fired)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(feed)
                nursery.start_soon(look_at_6)
                result = await serve(stream, conversation, idle=5)
                fired.append(trio.current_time() - start)
    assert result is IDLE
    assert pending_at_6 == [True]
    assert fired == [8]
    assert conversation.received == [b"ping"]


async def test_a_flooding_peer_does_not_monopolise_a_round() -> None:
    """With receive_size 4, a peer 400 bytes ahead gets one read per round like a 4-byte one."""
    log: list[tuple[str, bytes]] = []
    flood, flood_peer = relayed_pair()
    quiet, quiet_peer = relayed_pair()
    flooding = FakeConversation(name="flood", log=log)
    waiting = FakeConversation(name="quiet", log=log)

    async def relay_small(stream: FastSocketStream, conversation: FakeConversation) -> None:
        await relay(stream, conversation, receive_size=4)
        raise AssertionError("relay returned with its peer still connected")

    with trio.fail_after(5), flood_peer, quiet_peer:
        async with flood, quiet:
            flood_peer.send(b"f" * 400)
            quiet_peer.send(b"ping")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(relay_small, flood, flooding)
                nursery.start_soon(relay_small, quiet, waiting)
                await trio.testing.wait_all_tasks_blocked()
                nursery.cancel_scope.cancel()
    assert {name for name, _ in log[:2]} == {"flood", "quiet"}
    assert waiting.received == [b"ping"]
    assert flooding.received == [b"ffff"] * 100
    assert len(log) == 101


class ReadsPerStep(trio.abc.Instrument):
    """How many reads the dispatcher's task made in each of its steps (*log* counts them)."""

    def __init__(self, log: list[tuple[str, bytes]]) -> None:
        self.log = log
        self.served: list[int] = []
        self._before = 0

    def before_task_step(self, task: Task) -> None:
        if task.name == "trio_echo.dispatcher":
            self._before = len(self.log)

    def after_task_step(self, task: Task) -> None:
        if task.name == "trio_echo.dispatcher":
            self.served.append(len(self.log) - self._before)


async def reads_per_dispatcher_step(peers: int, sent: bytes) -> list[int]:
    """Have *peers* connections each send *sent*, read 4 bytes at a time; reads per step."""
    log: list[tuple[str, bytes]] = []
    pairs = [relayed_pair() for _ in range(peers)]
    current_dispatcher()  # its task started before the count begins
    counter = ReadsPerStep(log)
    trio.lowlevel.add_instrument(counter)
    try:
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                for number, (stream, peer) in enumerate(pairs):
                    peer.send(sent)
                    conversation = FakeConversation(name=str(number), log=log)
                    nursery.start_soon(
                        functools.partial(relay, stream, conversation, receive_size=4)
                    )
                await trio.testing.wait_all_tasks_blocked()
                nursery.cancel_scope.cancel()
    finally:
        trio.lowlevel.remove_instrument(counter)
        for stream, peer in pairs:
            stream.close()
            peer.close()
    assert len(log) == peers * len(sent) // 4
    return [served for served in counter.served if served]


async def test_while_several_connections_are_ready_they_are_polled_again_in_the_same_step() -> None:
    """Two peers 8 bytes ahead, read 4 at a time: all four reads in one step, not two rounds
    with a pass through the scheduler between them."""
    assert await reads_per_dispatcher_step(2, b"x" * 8) == [4]


async def test_a_step_serves_at_most_its_turns_before_it_yields(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With three turns a step, three peers 8 bytes ahead are served in two steps of three."""
    monkeypatch.setattr(dispatcher_module, "TURNS_BEFORE_YIELD", 3)
    assert await reads_per_dispatcher_step(3, b"x" * 8) == [3, 3]


async def test_closing_a_relayed_stream_from_another_task_raises_closed_resource_error() -> None:
    """aclose() from another task wakes the relaying task with ClosedResourceError."""
    stream, peer = relayed_pair()
    conversation = FakeConversation()
    parked = Background()
    with trio.fail_after(5), peer:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(parked.relay, stream, conversation)
            await trio.testing.wait_all_tasks_blocked()
            assert not parked.done.is_set()
            await stream.aclose()
            await parked.done.wait()
    assert isinstance(parked.error, trio.ClosedResourceError)
    assert stream.socket.fileno() == -1
    assert conversation.received == []


async def test_a_second_task_relaying_the_same_stream_is_refused() -> None:
    """Like any Trio stream, one stream serves one relaying task: the second gets BusyResourceError
    and the first goes on as if nothing happened."""
    stream, peer = relayed_pair()
    first = Background()
    with trio.fail_after(5), peer:
        async with stream, trio.open_nursery() as nursery:
            nursery.start_soon(first.relay, stream, FakeConversation())
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.BusyResourceError):
                await relay(stream, FakeConversation())
            peer.send(b"still mine")
            assert await receive_exactly(peer, 10) == b"still mine"
            peer.shutdown(socket.SHUT_WR)
            await first.done.wait()
    assert first.error is None
    assert first.result == b""


async def test_a_receive_size_below_one_is_refused() -> None:
    stream, peer = relayed_pair()
    with trio.fail_after(5), peer:
        async with stream:
            with pytest.raises(ValueError, match="receive_size"):
                await relay(stream, FakeConversation(), receive_size=0)


def test_a_stream_relayed_once_closes_after_its_run() -> None:
    """Closing needs the dispatcher only while a task relays the stream."""
    stream, peer = relayed_pair()

    async def relay_to_the_end() -> None:
        with trio.fail_after(5):
            peer.shutdown(socket.SHUT_WR)
            assert await relay(stream, FakeConversation()) == b""

    with peer:
        trio.run(relay_to_the_end)
        stream.close()
        assert stream.socket.fileno() == -1


async def test_short_connections_leave_a_bounded_deadline_heap() -> None:
    """Each connection that stops relaying leaves its heap entry behind, until the entries
    outnumber the live ones: 500 short connections under a long idle timeout leave few."""
    dispatcher = current_dispatcher()
    with trio.fail_after(5):
        for _ in range(500):
            stream, peer = relayed_pair()
            with peer:
                peer.shutdown(socket.SHUT_WR)
                assert await serve(stream, FakeConversation(), idle=60) == b""
            stream.close()
    assert len(dispatcher._deadlines) <= 2 * len(dispatcher._served) + 64


# --- Replies the kernel does not take at once -----------------------------------------------------

BIG = bytes(range(256)) * 4096
"""A 1 MiB reply, patterned so that a misplaced or repeated slice shows."""

SMALL_SEND_BUFFER = 4096


def big_reply_to(request: bytes) -> Callable[[bytes], bytes]:
    """Answer *request* with :data:`BIG`, anything else with itself."""
    return lambda data: BIG if data == request else data


def with_small_send_buffer(pair: tuple[FastSocketStream, socket.socket]) -> FastSocketStream:
    """The pair's served stream, its send buffer shrunk so that :data:`BIG` never fits."""
    stream, _ = pair
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_SEND_BUFFER)
    return stream


async def test_a_reply_the_kernel_cannot_take_at_once_is_finished_with_the_task_parked() -> None:
    """With a send timeout, the dispatcher writes the rest as room appears, reads nothing more
    meanwhile, then goes back to reading: the task never runs until the peer closes."""
    pair = relayed_pair()
    stream, peer = with_small_send_buffer(pair), pair[1]
    conversation = FakeConversation(big_reply_to(b"big"))
    parked = Background()
    counter = StepCounter()
    trio.lowlevel.add_instrument(counter)
    try:
        with trio.fail_after(5), peer:
            async with stream, trio.open_nursery() as nursery:
                nursery.start_soon(parked.relay, stream, conversation, 60.0)
                peer.send(b"big")
                await trio.testing.wait_all_tasks_blocked()
                peer.send(b"next")
                await trio.testing.wait_all_tasks_blocked()
                assert conversation.received == [b"big"], "read while a reply was pending"
                assert 0 < sum(conversation.sent_sizes) < len(BIG)
                assert await receive_exactly(peer, len(BIG)) == BIG
                assert await receive_exactly(peer, 4) == b"next"
                assert not parked.done.is_set()
                assert parked.task is not None
                assert counter.steps[parked.task] == 1  # the step that parked it
                peer.shutdown(socket.SHUT_WR)
                await parked.done.wait()
    finally:
        trio.lowlevel.remove_instrument(counter)
    assert parked.error is None
    assert parked.result == b""
    assert conversation.received == [b"big", b"next", b""]
    assert len(conversation.sent_sizes) > 2
    assert sum(conversation.sent_sizes) == len(BIG) + 4


async def test_a_pending_reply_that_ends_the_conversation_is_sent_before_it_is_handed_back() -> (
    None
):
    """The finishing reply is written out in full, then relay returns b"" and reads no more."""
    pair = relayed_pair()
    stream, peer = with_small_send_buffer(pair), pair[1]
    conversation = FakeConversation(big_reply_to(b"bye"), finish_on=b"bye")
    parked = Background()
    with trio.fail_after(5), peer:
        async with stream, trio.open_nursery() as nursery:
            nursery.start_soon(parked.relay, stream, conversation, 60.0)
            peer.send(b"bye")
            assert await receive_exactly(peer, len(BIG)) == BIG
            await parked.done.wait()
            peer.send(b"unread")
            assert stream.socket.recv(100) == b"unread"
    assert parked.error is None
    assert parked.result == b""
    assert conversation.received == [b"bye"]
    assert sum(conversation.sent_sizes) == len(BIG)


async def test_a_peer_that_takes_nothing_is_stalled_exactly_send_timeout_later(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """No byte taken for send_timeout=7 s: STALLED (not cancelled) at exactly t=7, and the
    shorter idle timeout does not fire while the reply is pending."""
    pair = relayed_pair()
    stream, peer = with_small_send_buffer(pair), pair[1]
    conversation = FakeConversation(lambda _: BIG)
    with trio.fail_after(100), peer:
        async with stream:
            start = trio.current_time()
            peer.send(b"big")
            with trio.CancelScope() as scope:
                result = await serve(stream, conversation, idle=5, send_timeout=7)
            stalled_at = trio.current_time() - start
            assert drain(peer) == BIG[: sum(conversation.sent_sizes)]
    assert result is STALLED
    assert not scope.cancel_called
    assert stalled_at == 7
    assert conversation.received == [b"big"]
    assert 0 < sum(conversation.sent_sizes) < len(BIG)


async def test_every_byte_the_peer_takes_restarts_the_send_timer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The peer reads at t=4, so the connection is still served at t=10 and stalls at t=11."""
    pair = relayed_pair()
    stream, peer = with_small_send_buffer(pair), pair[1]
    conversation = FakeConversation(lambda _: BIG)
    taken: list[bytes] = []
    stalled: list[float] = []
    pending_at_10: list[bool] = []

    with trio.fail_after(100), peer:
        async with stream:
            start = trio.current_time()

            async def read_some_at_4() -> None:
                await trio.sleep_until(start + 4)
                sent_before = sum(conversation.sent_sizes)
                taken.append(drain(peer))
                assert len(taken[0]) == sent_before

            async def look_at_10() -> None:
                await trio.sleep_until(start + 10)
                pending_at_10.append(not stalled)

            peer.send(b"big")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_some_at_4)
                nursery.start_soon(look_at_10)
                result = await serve(stream, conversation, idle=5, send_timeout=7)
                stalled.append(trio.current_time() - start)
            taken.append(drain(peer))
    assert result is STALLED
    assert pending_at_10 == [True]
    assert stalled == [11]
    assert len(conversation.sent_sizes) >= 2, "nothing written after the peer made room"
    assert b"".join(taken) == BIG[: sum(conversation.sent_sizes)]


async def test_a_connection_waiting_to_write_does_not_hold_up_the_others() -> None:
    """While one peer takes nothing of its reply, another's 20 round trips are answered."""
    slow_pair, quick_pair = relayed_pair(), relayed_pair()
    slow, slow_peer = with_small_send_buffer(slow_pair), slow_pair[1]
    quick, quick_peer = quick_pair
    writer = FakeConversation(big_reply_to(b"big"))
    other = FakeConversation()
    writing, answering = Background(), Background()
    requests = [f"request {i:02d}".encode() for i in range(20)]
    with trio.fail_after(5), slow_peer, quick_peer:
        async with slow, quick, trio.open_nursery() as nursery:
            nursery.start_soon(writing.relay, slow, writer, 60.0)
            nursery.start_soon(answering.relay, quick, other, 60.0)
            slow_peer.send(b"big")
            await trio.testing.wait_all_tasks_blocked()
            pending = sum(writer.sent_sizes)
            for request in requests:
                quick_peer.send(request)
                assert await receive_exactly(quick_peer, len(request)) == request
            assert sum(writer.sent_sizes) == pending, "written with no room made"
            assert 0 < pending < len(BIG)
            assert await receive_exactly(slow_peer, len(BIG)) == BIG
            slow_peer.shutdown(socket.SHUT_WR)
            quick_peer.shutdown(socket.SHUT_WR)
            await writing.done.wait()
            await answering.done.wait()
    assert writing.error is None and writing.result == b""
    assert answering.error is None and answering.result == b""
    assert other.received == [*requests, b""]


async def test_cancelling_a_task_whose_reply_is_pending_drops_the_rest_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Cancel lands at once and frees the rest; serving the stream again starts by reading."""
    pair = relayed_pair()
    stream, peer = with_small_send_buffer(pair), pair[1]
    conversation = FakeConversation(big_reply_to(b"big"))
    dispatcher = current_dispatcher()
    seat = seat_of(stream)
    cancelled = trio.CancelScope()

    async def relay_until_cancelled() -> None:
        with cancelled:
            await relay(stream, conversation, send_timeout=7)

    with trio.fail_after(100), peer:
        async with stream:
            start = trio.current_time()
            peer.send(b"big")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(relay_until_cancelled)
                await trio.testing.wait_all_tasks_blocked()
                assert seat.rest is not None
                cancelled.cancel()
            assert trio.current_time() == start
            assert cancelled.cancelled_caught
            assert seat.rest is None
            assert stream.socket.fileno() not in dispatcher._served
            assert drain(peer) == BIG[: sum(conversation.sent_sizes)]

            again = Background()
            peer.send(b"again")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(again.relay, stream, conversation, 7.0)
                assert await receive_exactly(peer, 5) == b"again"
                peer.shutdown(socket.SHUT_WR)
                await again.done.wait()
    assert again.error is None
    assert again.result == b""
    assert conversation.received == [b"big", b"again", b""]


async def test_a_peer_gone_while_a_reply_is_pending_raises_broken_resource_error() -> None:
    """The write of the rest fails: the task gets BrokenResourceError caused by the OSError."""
    pair = relayed_pair()
    stream, peer = with_small_send_buffer(pair), pair[1]
    conversation = FakeConversation(lambda _: BIG)
    parked = Background()
    with trio.fail_after(5):
        async with stream, trio.open_nursery() as nursery:
            nursery.start_soon(parked.relay, stream, conversation, 60.0)
            peer.send(b"big")
            await trio.testing.wait_all_tasks_blocked()
            assert not parked.done.is_set()
            peer.close()
            await parked.done.wait()
    assert isinstance(parked.error, trio.BrokenResourceError)
    cause = parked.error.__cause__
    assert isinstance(cause, OSError)
    assert cause.errno in (errno.EPIPE, errno.ECONNRESET)
    assert conversation.received == [b"big"]


# --- Several full reads a turn -----------------------------------------------------------------


async def test_a_stream_gets_its_reads_per_turn_in_a_row_then_the_others_theirs() -> None:
    """With receive_size 4 and reads_per_turn 4, a peer 400 bytes ahead is read in 4-byte pieces,
    four to a round: a quiet peer waits at most four of them, and 100 reads take ~25 rounds."""
    log: list[tuple[str, bytes]] = []
    flood, flood_peer = relayed_pair()
    quiet, quiet_peer = relayed_pair()
    flooding = FakeConversation(name="flood", log=log)
    waiting = FakeConversation(name="quiet", log=log)
    counter = StepCounter()
    dispatcher_steps: list[int] = []

    async def relay_in_runs(stream: FastSocketStream, conversation: FakeConversation) -> None:
        await current_dispatcher().serve_until_needed(
            seat_of(stream), conversation, receive_size=4, idle=math.inf, reads_per_turn=4
        )
        raise AssertionError("relay returned with its peer still connected")

    current_dispatcher()  # its task started before the count begins
    trio.lowlevel.add_instrument(counter)
    try:
        with trio.fail_after(5), flood_peer, quiet_peer:
            async with flood, quiet:
                flood_peer.send(b"f" * 400)
                quiet_peer.send(b"ping")
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(relay_in_runs, flood, flooding)
                    nursery.start_soon(relay_in_runs, quiet, waiting)
                    await trio.testing.wait_all_tasks_blocked()
                    dispatcher_steps.extend(
                        steps
                        for task, steps in counter.steps.items()
                        if task.name == "trio_echo.dispatcher"
                    )
                    nursery.cancel_scope.cancel()
                assert drain(flood_peer) == b"f" * 400
    finally:
        trio.lowlevel.remove_instrument(counter)
    assert log.index(("quiet", b"ping")) <= 4
    assert flooding.received == [b"ffff"] * 100
    assert waiting.received == [b"ping"]
    assert len(dispatcher_steps) == 1
    assert dispatcher_steps[0] <= 30, "fewer than four reads a round"


async def test_reads_per_turn_below_one_is_refused() -> None:
    stream, peer = relayed_pair()
    with trio.fail_after(5), peer:
        async with stream:
            with pytest.raises(ValueError, match="reads_per_turn"):
                await current_dispatcher().serve_until_needed(
                    seat_of(stream), FakeConversation(), receive_size=4, idle=1, reads_per_turn=0
                )
