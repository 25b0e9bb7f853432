"""FastSocketStream keeps every promise of a Trio stream while skipping scheduler passes.

Trio's own conformance checks run against it, then the guarantees the fast
path could endanger: cancellation before any byte moves, and fairness when
one peer never lets the kernel run dry.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio._highlevel_socket
import trio.testing
from scheduler_steps import StepCounter

from trio_echo.address import Address
from trio_echo.trio_driver import fast_stream
from trio_echo.trio_driver.fast_stream import (
    _IGNORABLE_ACCEPT_ERRNOS,
    ACCEPTS_PER_YIELD,
    YIELD_EVERY,
    FastSocketListener,
    FastSocketStream,
)

PEER = Address("local", 0)


def fast_pair(yield_every: int = YIELD_EVERY) -> tuple[FastSocketStream, FastSocketStream]:
    """Two connected fast streams over a local socket pair."""
    left, right = socket.socketpair()
    return (
        FastSocketStream(left, PEER, yield_every=yield_every),
        FastSocketStream(right, PEER, yield_every=yield_every),
    )


async def make_pair() -> tuple[FastSocketStream, FastSocketStream]:
    """Streams that yield on every operation, as Trio's checks demand of any stream."""
    return fast_pair(yield_every=1)


async def make_clogged_pair() -> tuple[FastSocketStream, FastSocketStream]:
    """A pair whose send buffers are full in both directions."""
    left, right = fast_pair(yield_every=1)
    for stream in (left, right):
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        for size in (65536, 1):
            try:
                while True:
                    stream.socket.send(b"x" * size)
            except BlockingIOError:
                pass
    return left, right


async def test_passes_trios_half_closeable_stream_checks() -> None:
    """Apart from its yield budget (1 here), the stream is a conforming Trio stream."""
    with trio.fail_after(20):
        await trio.testing.check_half_closeable_stream(make_pair, make_clogged_pair)


async def test_cancelled_receive_consumes_nothing() -> None:
    left, right = fast_pair()
    async with left, right:
        await left.send_all(b"kept")
        with trio.CancelScope() as scope:
            scope.cancel()
            await right.receive_some()
        assert scope.cancelled_caught
        with trio.fail_after(5):
            assert await right.receive_some() == b"kept"


async def test_cancelled_send_sends_nothing() -> None:
    left, right = fast_pair()
    async with left, right:
        with trio.CancelScope() as scope:
            scope.cancel()
            await left.send_all(b"lost")
        assert scope.cancelled_caught
        await left.send_all(b"sent")
        with trio.fail_after(5):
            assert await right.receive_some() == b"sent"


async def test_a_stream_that_never_parks_still_lets_others_run() -> None:
    left, right = fast_pair()
    other_task_ran = trio.Event()

    async def other() -> None:
        other_task_ran.set()

    async with left, right, trio.open_nursery() as nursery:
        await left.send_all(b"x" * (YIELD_EVERY * 4))
        nursery.start_soon(other)
        with trio.fail_after(5):
            for _ in range(YIELD_EVERY * 4):
                assert await right.receive_some(1) == b"x"
                if other_task_ran.is_set():
                    break
        assert other_task_ran.is_set()


async def test_deadline_fires_while_data_keeps_arriving() -> None:
    left, right = fast_pair()
    async with left, right:
        await left.send_all(b"y" * 200_000)
        received = 0
        with trio.move_on_after(0) as scope:
            while True:
                received += len(await right.receive_some(1))
        assert scope.cancelled_caught
        assert received < 200_000


async def test_close_wakes_a_blocked_receiver() -> None:
    left, right = fast_pair()
    async with left:

        async def receive() -> None:
            with pytest.raises(trio.ClosedResourceError):
                await right.receive_some()

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(receive)
                await trio.testing.wait_all_tasks_blocked()
                await right.aclose()


async def test_close_wakes_a_blocked_sender() -> None:
    left, right = await make_clogged_pair()
    async with left:

        async def send() -> None:
            with pytest.raises(trio.ClosedResourceError):
                await right.send_all(b"more")

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send)
                await trio.testing.wait_all_tasks_blocked()
                right.close()


async def expect_closed(operation: Callable[[], Awaitable[object]]) -> None:
    with pytest.raises(trio.ClosedResourceError):
        await operation()


@pytest.mark.parametrize("parked", [True, False], ids=["parked", "never-parked"])
async def test_close_tells_trio_only_about_a_socket_a_task_parked_on(
    parked: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream no task ever waited on through Trio is closed without ``notify_closing``
    (a failing ``epoll_ctl`` per connection); the hook for other waiters is still called."""
    notified: list[int] = []
    real_notify = trio.lowlevel.notify_closing

    def counting_notify(sock: socket.socket) -> None:
        notified.append(sock.fileno())
        real_notify(sock)

    monkeypatch.setattr(fast_stream, "notify_closing", counting_notify)
    left, right = fast_pair()
    hooked: list[str] = []
    right.on_close = lambda: hooked.append("closed")
    async with left:
        await left.send_all(b"x")
        assert await right.receive_some() == b"x"  # data waiting: no park
        fd = right.socket.fileno()
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                if parked:  # nothing to read: it parks in Trio's epoll until the close
                    nursery.start_soon(expect_closed, right.receive_some)
                    await trio.testing.wait_all_tasks_blocked()
                right.close()
    assert notified == ([fd] if parked else [])
    assert hooked == ["closed"]
    assert right.socket.fileno() == -1


async def test_listener_accepts_fast_streams_with_peer_address() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    listener = FastSocketListener(sock)
    with trio.fail_after(5):
        async with listener:
            client = await trio.open_tcp_stream("127.0.0.1", listener.address.port)
            async with client:
                accepted = await listener.accept()
                async with accepted:
                    assert accepted.peer == Address(*client.socket.getsockname()[:2])
                    await client.send_all(b"hello")
                    assert await accepted.receive_some() == b"hello"


def listening() -> FastSocketListener:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return FastSocketListener(sock)


def waiting_clients(listener: FastSocketListener, count: int) -> list[socket.socket]:
    """*count* clients connected (the kernel completes the handshake) and waiting in the backlog."""
    return [socket.create_connection(("127.0.0.1", listener.address.port)) for _ in range(count)]


async def test_a_burst_of_clients_is_accepted_with_a_scheduler_pass_per_few() -> None:
    """Waiting clients are handed out without a scheduler pass each, yet the accepting task
    yields once every ACCEPTS_PER_YIELD of them, so the others (new connections) run."""
    listener = listening()
    clients = waiting_clients(listener, ACCEPTS_PER_YIELD * 3)
    accepted: list[FastSocketStream] = []
    counter = StepCounter()
    with trio.fail_after(5):
        async with listener:
            trio.lowlevel.add_instrument(counter)
            try:
                for _ in clients:
                    accepted.append(await listener.accept())
            finally:
                trio.lowlevel.remove_instrument(counter)
    for stream in accepted:
        stream.close()
    for client in clients:
        client.close()
    assert len(accepted) == len(clients)
    steps = counter.steps[trio.lowlevel.current_task()]
    assert steps == len(clients) // ACCEPTS_PER_YIELD  # a yield per so many


def nodelay(sock: socket.socket) -> bool:
    return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


@pytest.mark.parametrize("listener_keeps_it", [True, False])
async def test_every_accepted_stream_has_nagle_off_inherited_or_set(
    listener_keeps_it: bool,
) -> None:
    """Accepted streams send each reply at once (TCP_NODELAY), whether the kernel copied the
    listener's option into them or, where it did not, the stream set its own."""
    listener = listening()
    if not listener_keeps_it:  # as a kernel that does not copy it would leave the connections
        listener.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
    clients = waiting_clients(listener, 3)
    with trio.fail_after(5):
        async with listener:
            accepted = [await listener.accept() for _ in clients]
    assert [nodelay(stream.socket) for stream in accepted] == [True, True, True]
    assert listener._inherits_nodelay is listener_keeps_it
    for stream in accepted:
        stream.close()
    for client in clients:
        client.close()


async def test_an_accept_in_a_cancelled_scope_takes_no_client() -> None:
    listener = listening()
    (client,) = waiting_clients(listener, 1)
    with trio.fail_after(5):
        async with listener:
            with trio.CancelScope() as scope:
                scope.cancel()
                await listener.accept()
            assert scope.cancelled_caught
            assert listener.has_waiting()
            (await listener.accept()).close()
    client.close()


def test_listener_skips_the_same_accept_errors_as_trios_own() -> None:
    """Trio keeps its list private, so ours is a copy: this fails the day they part."""
    assert trio._highlevel_socket._ignorable_accept_errnos == _IGNORABLE_ACCEPT_ERRNOS


async def test_receives_take_turns_when_data_is_always_waiting() -> None:
    """A peer that is always ahead does not let its connection run ahead of others."""
    pairs = [fast_pair(), fast_pair()]
    order: list[int] = []

    async def read(index: int, stream: FastSocketStream) -> None:
        for _ in range(20):
            assert await stream.receive_some(1) == b"x"
            order.append(index)

    with trio.fail_after(5):
        for left, _right in pairs:
            await left.send_all(b"x" * 20)
        async with trio.open_nursery() as nursery:
            for index, (_left, right) in enumerate(pairs):
                nursery.start_soon(read, index, right)
    longest_run = max(len(list(run)) for _index, run in itertools.groupby(order))
    assert longest_run <= 2, order
    for left, right in pairs:
        await left.aclose()
        await right.aclose()


async def test_a_patient_send_times_out_by_the_peers_progress_not_the_whole_write(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The peer takes what is queued every 5 s for 50 s, then stops: with 10 s of patience
    the write lasts until 10 s after the peer's last read, far past 10 s in all."""
    sender, reader = fast_pair()
    sender.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    reader.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    last_read = 0.0

    async def read_slowly() -> None:
        nonlocal last_read
        for _ in range(10):
            await trio.sleep(5)
            with contextlib.suppress(BlockingIOError):
                while reader.socket.recv(65536):
                    pass
            last_read = trio.current_time()

    with trio.fail_after(1000):
        async with sender, reader, trio.open_nursery() as nursery:
            nursery.start_soon(read_slowly)
            start = trio.current_time()
            with pytest.raises(TimeoutError, match="took nothing for 10 s"):
                await sender.send_all_within(b"x" * (64 << 20), 10)
            gave_up = trio.current_time()
    assert last_read - start == 50
    assert gave_up - last_read == 10
