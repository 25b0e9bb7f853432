"""The event recorder and :func:`serve`, the pieces every server test stands on.

The recorder is fed by hand here, from the Trio thread and from a worker
thread, so each promise (order, filtering, waking a waiter whichever thread
reports) is checked without a server. :func:`serve` is checked where its
two drivers could differ: the blocking server's final shutdown must not
hold the Trio loop.
"""

from __future__ import annotations

import trio
import trio.testing
from loopback import HOST, server_config

from reliability.clients import connect
from trio_echo import Address, WireProtocol
from trio_echo.connection_log import (
    Connected,
    ConnectionEvent,
    ConnectionFailed,
    Disconnected,
    MessageReceived,
    ServerStats,
)
from trio_echo.testing import Driver, EventRecorder, serve

PEER = Address("127.0.0.1", 40000)
OTHER = Address("127.0.0.1", 40001)
BOUND = 10.0
"""Wall-clock bound on a test that uses real threads or sockets."""

EVENTS: list[ConnectionEvent] = [
    Connected(1, PEER, 0.0),
    Connected(2, OTHER, 0.1),
    MessageReceived(1, PEER, 0.5, b"hi"),
    ConnectionFailed(2, OTHER, 0.7, 104, "reset", 0, 0),
    Disconnected(1, PEER, 1.0, "closed by peer", 2, 5),
]


def test_the_recorder_asks_for_every_message_and_keeps_events_in_order() -> None:
    recorder = EventRecorder()
    events: list[ConnectionEvent] = [
        Connected(1, PEER, 0.0),
        MessageReceived(1, PEER, 0.5, b"hi"),
        Disconnected(1, PEER, 1.0, "closed by peer", 2, 5),
    ]
    for event in events:
        recorder(event)
    assert recorder.wants_messages
    assert recorder.events == events
    assert ServerStats().connections == 0


def test_a_quiet_recorder_declines_messages() -> None:
    assert not EventRecorder(wants_messages=False).wants_messages


def test_events_are_filtered_by_kind_and_ends_picked_out() -> None:
    recorder = EventRecorder()
    for event in EVENTS:
        recorder(event)
    assert recorder.of_kind(Connected) == EVENTS[:2]
    assert recorder.of_kind(MessageReceived) == [EVENTS[2]]
    assert recorder.ended() == [EVENTS[3], EVENTS[4]]


def test_every_event_is_forwarded_as_well() -> None:
    forwarded: list[ConnectionEvent] = []
    recorder = EventRecorder(forward_to=forwarded.append)
    for event in EVENTS:
        recorder(event)
    assert forwarded == EVENTS == recorder.events


async def test_waiters_wake_when_their_condition_holds_and_not_before() -> None:
    recorder = EventRecorder()
    woke: list[str] = []

    async def wait_ended(count: int) -> None:
        await recorder.wait_ended(count)
        woke.append(f"{count} ended")

    async def wait_connected(count: int) -> None:
        await recorder.wait_for_kind(Connected, count)
        woke.append(f"{count} connected")

    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_ended, 2)
            nursery.start_soon(wait_connected, 2)
            for event in EVENTS:
                await trio.testing.wait_all_tasks_blocked()
                recorder(event)
    assert woke == ["2 connected", "2 ended"]


async def test_an_event_from_a_worker_thread_wakes_the_trio_waiter() -> None:
    recorder = EventRecorder()
    ended: list[ConnectionEvent] = []

    async def wait() -> None:
        ended.append(await recorder.end_of(PEER))

    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait)
            await trio.testing.wait_all_tasks_blocked()
            for event in EVENTS:
                await trio.to_thread.run_sync(recorder, event)
    assert ended == [EVENTS[4]]


async def test_the_blocking_servers_final_shutdown_leaves_trio_running() -> None:
    """The final graceful shutdown waits for a client that Trio closes meanwhile.

    Were the shutdown run on the Trio loop, the closing task could not run,
    and the connection would end only by its idle timeout.
    """
    config = server_config(protocol=WireProtocol.ECHO, idle_timeout=BOUND / 4)
    recorder = EventRecorder()
    with trio.fail_after(BOUND):
        async with (
            trio.open_nursery() as nursery,
            serve(Driver.BLOCKING, config, recorder=recorder, final_grace=BOUND) as served,
        ):
            client = await connect(served.address.port, host=HOST)
            await client.send_all(b"ping")
            assert await client.receive_some(4) == b"ping"

            async def close_once_shutdown_began() -> None:
                await trio.testing.wait_all_tasks_blocked()
                await client.aclose()

            nursery.start_soon(close_once_shutdown_began)
    (end,) = recorder.ended()
    assert isinstance(end, Disconnected)
    assert end.reason == "closed by peer"
