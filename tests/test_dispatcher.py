"""The dispatcher answers connections inline and wakes their tasks only when needed.

Each test has the dispatcher serve the server end of a local socket pair (data the test writes
to the other end is readable at once) and drives that peer end itself, with
a fake conversation that records what the dispatcher asks of it. Idle tests
run on the autojump clock and check exact virtual times; every test is
bounded by ``fail_after``.
"""

from __future__ import annotations

import errno
import math
import socket
import struct
import weakref
from collections import Counter
from collections.abc import Callable

import pytest
import trio
import trio.testing
from trio.lowlevel import Task, current_task

from trio_echo.address import Address
from trio_echo.trio_driver.dispatcher import IDLE, Dispatcher, Seat, current_dispatcher
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

    def sent(self, size: int) -> None:
        self.sent_sizes.append(size)


class Background:
    """One relay call in a task of its own: the task, and what the call returned or raised."""

    def __init__(self) -> None:
        self.task: Task | None = None
        self.result: bytes | None = None
        self.error: Exception | None = None
        self.done = trio.Event()

    async def relay(self, stream: FastSocketStream, conversation: FakeConversation) -> None:
        self.task = current_task()
        try:
            self.result = await relay(stream, conversation)
        except Exception as exc:
            self.error = exc
        finally:
            self.done.set()


class StepCounter(trio.abc.Instrument):
    """Counts how many times each task was scheduled."""

    def __init__(self) -> None:
        self.steps: Counter[Task] = Counter()

    def before_task_step(self, task: Task) -> None:
        self.steps[task] += 1


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
) -> bytes:
    """Have the dispatcher serve *stream* until it hands it back; what it returned.

    Without an idle timeout; a test that wants one calls :func:`serve` instead.
    """
    result = await serve(stream, conversation, receive_size=receive_size, idle=idle)
    assert isinstance(result, bytes), "handed back as idle without an idle timeout"
    return result


async def serve(
    stream: FastSocketStream,
    conversation: FakeConversation,
    *,
    receive_size: int = RECEIVE_SIZE,
    idle: float = math.inf,
) -> bytes | object:
    """One :meth:`Dispatcher.serve_until_needed` call, with the stream's own seat."""
    return await current_dispatcher().serve_until_needed(
        seat_of(stream), conversation, receive_size=receive_size, idle=idle
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

    def sent(self, size: int) -> None:
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
    """epoll_wait running out of memory once costs a pause and a log line, not the run."""
    stream, peer = relayed_pair()
    dispatcher = current_dispatcher()
    real_poll = dispatcher._epoll.poll
    failures = [MemoryError("epoll_wait")]

    def poll_failing_once(*args: object) -> list[tuple[int, int]]:
        if failures:
            raise failures.pop()
        return real_poll(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(dispatcher, "_epoll", _EpollWith(dispatcher._epoll, poll_failing_once))
    with trio.fail_after(5), peer:
        async with stream:
            peer.send(b"ping")
            peer.shutdown(socket.SHUT_WR)
            assert await relay(stream, FakeConversation()) == b""
            assert await receive_exactly(peer, 4) == b"ping"
    assert "dispatcher round failed, retrying: internal error: MemoryError: epoll_wait" in (
        caplog.text
    )


class _EpollWith:
    """An epoll object whose poll() is replaced, everything else delegated."""

    def __init__(self, epoll: object, poll: Callable[..., list[tuple[int, int]]]) -> None:
        self._epoll = epoll
        self.poll = poll

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
