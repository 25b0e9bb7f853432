"""The simulated network keeps TCP's promises, on Trio's virtual clock.

Every test runs under pytest-trio's ``autojump_clock``: waits cost no real
time, and timestamps are exact multiples of the network's latency.
"""

from __future__ import annotations

import errno

import pytest
import trio
import trio.testing

from trio_echo import (
    Address,
    AddressInUse,
    ClientConfig,
    ConfigError,
    ConnectionRefused,
    TrioServer,
)
from trio_echo import run_session as run_trio_session
from trio_echo.config import ServerConfig
from trio_echo.testing import Faults, SimulatedNetwork, SimulatedStream

PORT = 3100
LATENCY = 0.001


async def open_pair(
    network: SimulatedNetwork, label: str = "peer", port: int = PORT
) -> tuple[SimulatedStream, SimulatedStream]:
    """A connected (client, server) pair on *network*, through a listener on *port*."""
    listener = network.listen("127.0.0.1", port)
    client = await network.client(label).connect("127.0.0.1", port)
    server = await listener.accept()
    return client, server


def reset_errno(exc: trio.BrokenResourceError) -> int | None:
    """The errno behind a broken stream, where a driver digs for it."""
    cause = exc.__cause__
    return cause.errno if isinstance(cause, OSError) else None


async def test_passes_trios_half_closeable_stream_checks(
    autojump_clock: trio.testing.MockClock,
) -> None:
    counter = iter(range(10_000, 20_000))

    async def make_pair() -> tuple[SimulatedStream, SimulatedStream]:
        return await open_pair(SimulatedNetwork(), port=next(counter))

    async def make_clogged_pair() -> tuple[SimulatedStream, SimulatedStream]:
        client, server = await open_pair(SimulatedNetwork(buffer_size=16), port=next(counter))
        await client.send_all(b"x" * 16)
        await server.send_all(b"y" * 16)
        return client, server

    await trio.testing.check_half_closeable_stream(make_pair, make_clogged_pair)


async def test_bytes_arrive_in_order_one_latency_later(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client, server = await open_pair(SimulatedNetwork())
    sent_at = trio.current_time()
    for word in (b"one ", b"two ", b"three"):
        await client.send_all(word)
    assert await server.receive_some() == b"one "
    assert trio.current_time() == pytest.approx(sent_at + LATENCY)
    received = b"one "
    while len(received) < len(b"one two three"):
        received += await server.receive_some(3)
    assert received == b"one two three"


async def test_half_close_delivers_eof_after_the_data_and_keeps_the_other_way_open(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client, server = await open_pair(SimulatedNetwork())
    await client.send_all(b"last words")
    await client.send_eof()
    with pytest.raises(trio.ClosedResourceError):
        await client.send_all(b"more")
    assert await server.receive_some() == b"last words"
    assert await server.receive_some() == b""
    await server.send_all(b"reply")
    assert await client.receive_some() == b"reply"


async def test_closing_with_unread_bytes_resets_the_peer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client, server = await open_pair(SimulatedNetwork())
    await client.send_all(b"never read")
    await trio.sleep(1)
    await server.aclose()
    with pytest.raises(trio.BrokenResourceError) as caught:
        await client.receive_some()
    assert reset_errno(caught.value) == errno.ECONNRESET


async def test_reset_arrives_after_the_data_already_sent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client, server = await open_pair(SimulatedNetwork())
    await client.send_all(b"in flight")
    await client.reset()
    assert await server.receive_some() == b"in flight"
    with pytest.raises(trio.BrokenResourceError) as caught:
        await server.receive_some()
    assert reset_errno(caught.value) == errno.ECONNRESET
    with pytest.raises(trio.BrokenResourceError):
        await server.send_all(b"too late")


async def test_bytes_sent_to_a_closed_peer_draw_a_reset(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client, server = await open_pair(SimulatedNetwork())
    await server.aclose()
    assert await client.receive_some() == b""
    await client.send_all(b"anyone there?")
    await trio.sleep(1)
    with pytest.raises(trio.BrokenResourceError) as caught:
        await client.send_all(b"hello?")
    assert reset_errno(caught.value) == errno.ECONNRESET


async def test_connecting_where_nothing_listens_is_refused_like_tcp(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with pytest.raises(ConnectionRefused) as caught:
        await SimulatedNetwork().connect("127.0.0.1", PORT)
    assert caught.value.errno == errno.ECONNREFUSED
    assert str(caught.value) == "connect to 127.0.0.1:3100: Connection refused (errno 111)"


async def test_listening_twice_on_an_address_fails(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = SimulatedNetwork()
    network.listen("127.0.0.1", PORT)
    with pytest.raises(AddressInUse):
        await network.open_listeners("0.0.0.0", PORT, backlog=8)
    (other,) = await network.open_listeners("127.0.0.1", 0, backlog=8)
    assert network.listener_address(other).port not in (0, PORT)


async def test_a_writer_waits_for_a_reader_that_reads_slowly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client, server = await open_pair(SimulatedNetwork(buffer_size=100))

    async def slow_reader() -> None:
        for _ in range(10):
            await trio.sleep(1)
            assert await server.receive_some(20) == b"z" * 20

    async with trio.open_nursery() as nursery:
        nursery.start_soon(slow_reader)
        started = trio.current_time()
        await client.send_all(b"z" * 200)
        elapsed = trio.current_time() - started
    # 100 bytes go at once; each read frees 20 more one latency after it.
    assert elapsed == pytest.approx(5 + LATENCY)


async def test_closing_a_listener_resets_connections_still_in_its_backlog(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = SimulatedNetwork()
    listener = network.listen("127.0.0.1", PORT, backlog=4)
    waiting = await network.client("queued").connect("127.0.0.1", PORT)
    await listener.aclose()
    with pytest.raises(trio.BrokenResourceError) as caught:
        await waiting.receive_some()
    assert reset_errno(caught.value) == errno.ECONNRESET
    with pytest.raises(ConnectionRefused):
        await network.connect("127.0.0.1", PORT)


async def test_a_full_backlog_holds_connect_until_accept_makes_room(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = SimulatedNetwork()
    listener = network.listen("127.0.0.1", PORT, backlog=1)
    await network.client("first").connect("127.0.0.1", PORT)
    connected = trio.Event()

    async def second() -> None:
        await network.client("second").connect("127.0.0.1", PORT)
        connected.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(second)
        await trio.sleep(10)
        assert not connected.is_set()
        await listener.accept()
        await connected.wait()


async def test_addresses_come_from_labels_not_from_the_order_of_connecting(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def addresses(order: list[str]) -> dict[str, Address]:
        network = SimulatedNetwork()
        network.listen("127.0.0.1", PORT)
        found = {}
        for label in order:
            stream = await network.client(label).connect("127.0.0.1", PORT)
            found[label] = stream.local_address
            assert network.key_of(stream.local_address) == label
        return found

    assert await addresses(["ann", "bob", "cy"]) == await addresses(["cy", "bob", "ann"])
    network = SimulatedNetwork()
    network.listen("127.0.0.1", PORT)
    alice = network.client("alice")
    first = await alice.connect("127.0.0.1", PORT)
    second = await alice.connect("127.0.0.1", PORT)
    assert (first.key, second.key) == ("alice", "alice#2")
    assert first.local_address != second.local_address


async def test_split_writes_arrive_in_pieces_that_rebuild_the_whole(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client, server = await open_pair(SimulatedNetwork(seed=3, faults=Faults(split=1.0)))
    message = bytes(range(200))
    await client.send_all(message)
    pieces: list[bytes] = []
    while sum(map(len, pieces)) < len(message):
        pieces.append(await server.receive_some())
    assert b"".join(pieces) == message
    assert len(pieces) > 1


async def test_faults_depend_on_seed_and_label_only(
    autojump_clock: trio.testing.MockClock,
) -> None:
    faults = Faults(split=1.0, max_pieces=16, delay=1.0, max_delay=0.5)

    async def observe(seed: int, label: str) -> list[tuple[bytes, float]]:
        client, server = await open_pair(SimulatedNetwork(seed=seed, faults=faults), label)
        start = trio.current_time()
        await client.send_all(bytes(100))
        seen = []
        for _ in range(16):
            with trio.move_on_after(5):
                data = await server.receive_some()
                seen.append((data, round(trio.current_time() - start, 6)))
        return seen

    assert await observe(1, "x") == await observe(1, "x")
    assert await observe(1, "x") != await observe(2, "x")
    assert await observe(1, "x") != await observe(1, "y")


async def test_a_planned_reset_strikes_mid_stream(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = SimulatedNetwork(seed=0, faults=Faults(reset=1.0, reset_within=50))
    client, server = await open_pair(network)
    with pytest.raises(trio.BrokenResourceError) as caught:
        for _ in range(100):
            await client.send_all(b"0123456789")
            await server.receive_some()
            await server.send_all(b"9876543210")
            await client.receive_some()
    assert reset_errno(caught.value) == errno.ECONNRESET
    (connection,) = network.connections
    assert connection.reset_plan is not None
    delivered = len(connection.to_server) + len(connection.to_client)
    assert 0 < delivered <= 2 * connection.reset_plan.after + 10


async def test_the_trio_driver_runs_on_it_unchanged(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = SimulatedNetwork()
    async with trio.open_nursery() as nursery:
        server = TrioServer(ServerConfig(port=PORT), network=network)
        (address,) = await nursery.start(server.run)
        assert address == Address("127.0.0.1", PORT)
        result = await run_trio_session(ClientConfig(port=PORT), network=network.client("seed"))
        assert result.ok and len(result.exchanges) == 7
        nursery.cancel_scope.cancel()
    (connection,) = network.connections
    assert bytes(connection.to_client).startswith(b"Re:0 - Send Message")


def test_nonsense_settings_are_refused_when_built() -> None:
    with pytest.raises(ConfigError, match="split must be a probability"):
        Faults(split=1.5)
    with pytest.raises(ConfigError, match="max_pieces must be at least 2"):
        Faults(max_pieces=1)
    with pytest.raises(ConfigError, match="latency"):
        SimulatedNetwork(latency=-1)
    with pytest.raises(ConfigError, match="buffer_size"):
        SimulatedNetwork(buffer_size=0)
