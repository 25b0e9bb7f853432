"""Both servers under faults and hostile input, on real sockets.

Every test runs against the Trio server and the blocking server, on
127.0.0.1 and a port the kernel picks, under a wall-clock ``fail_after``.
Trio's autojump clock cannot be used here: the kernel moves bytes while
every task is parked, so the clock would jump past timeouts mid-transfer.
Virtual time is left to the simulated network; these tests wait only for
conditions (an event from the server, end of input, a log line), each
within a bound, and a timeout under test is kept short (0.3 s). Where a
test must show that something does *not* happen (a client beyond the
connection cap being served), it says how long it looked, and where it
measures (CPU time while out of descriptors), over which window.

The tests that need a process of their own (out of descriptors, SIGTERM)
run ``trio-echo serve`` as a child with
:func:`reliability.procs.running_server`, which kills it if it is still
running when the test ends.
"""

from __future__ import annotations

import errno
import logging
import random
import re
import resource
import socket
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import pytest
import trio
import trio.testing
from hardening_helpers import (
    DRIVERS,
    connect_to,
    half_close_round_trip,
    logging_recorder,
    peer_of,
)

from reliability.clients import HOST, exchange, flood, read_to_eof, reset
from reliability.procs import running_server
from trio_echo import (
    Address,
    BlockingServer,
    ClientConfig,
    ConnectionFailed,
    Disconnected,
    ServerConfig,
    WireProtocol,
)
from trio_echo.blocking_driver import run_session as run_blocking_session
from trio_echo.blocking_driver.runtime import Worker
from trio_echo.codec import SERVER_GREETING, EchoServer, ReplyMatcher, ServerEvent
from trio_echo.connection_log import BytesDiscarded, Connected, MessageReceived
from trio_echo.shortages import ACCEPT_LOG_INTERVAL, ACCEPT_RETRY_SECONDS, AcceptFailureLog
from trio_echo.testing import Serving, SimulatedNetwork, serve, virtual_runtime
from trio_echo.wire import CONVERSATIONAL

BOUND = 10.0
"""Wall-clock limit on one test; each takes well under a second when healthy."""


@pytest.fixture(params=DRIVERS)
def driver(request: pytest.FixtureRequest) -> str:
    """The server under test: ``trio`` or ``blocking``."""
    name: str = request.param
    return name


def echo_config(**limits: Any) -> ServerConfig:
    """An echo server on a free loopback port, with the given limits."""
    return ServerConfig(port=0, protocol=WireProtocol.ECHO, **limits)


async def assert_still_serving(served: Serving) -> None:
    """A client that arrives now holds a normal conversation."""
    client = await connect_to(served)
    async with client:
        assert await exchange(client, b"still here") == b"still here"


# --- Faults on the wire --------------------------------------------------------------------------


async def test_reset_mid_stream_ends_that_connection_only(driver: str) -> None:
    with trio.fail_after(BOUND):
        async with serve(driver, echo_config(), recorder=logging_recorder()) as served:
            bystander = await connect_to(served)
            assert await exchange(bystander, b"before") == b"before"
            victim = await connect_to(served)
            victim_peer = peer_of(victim)
            assert await exchange(victim, b"x" * 1000) == b"x" * 1000
            await victim.send_all(b"y" * 100_000)
            await reset(victim)

            ended = await served.recorder.end_of(victim_peer)
            if isinstance(ended, ConnectionFailed):
                assert ended.errno in (errno.ECONNRESET, errno.EPIPE)
            assert await exchange(bystander, b"after") == b"after"
            await bystander.aclose()
            await assert_still_serving(served)


async def test_broken_pipe_while_replying(driver: str) -> None:
    """A client floods the server, reads nothing and leaves while replies are still owed."""
    with trio.fail_after(BOUND):
        async with serve(driver, echo_config(), recorder=logging_recorder()) as served:
            sock = trio.socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            await sock.connect((served.address.host, served.address.port))
            peer = Address.from_sockaddr(sock.getsockname())
            chunk = b"\xa5" * 65536
            while True:
                # The server stops reading once it cannot write: our sends stall.
                with trio.move_on_after(0.1) as stalled:
                    await sock.send(chunk)
                if stalled.cancelled_caught:
                    break
            sock.close()

            ended = await served.recorder.end_of(peer)
            assert isinstance(ended, ConnectionFailed)
            assert ended.errno in (errno.EPIPE, errno.ECONNRESET)
            assert ended.bytes_in > ended.bytes_out, "the server still owed replies"
            await assert_still_serving(served)


@pytest.mark.parametrize("protocol", list(CONVERSATIONAL))
async def test_half_close_gets_every_byte_then_eof(driver: str, protocol: WireProtocol) -> None:
    payload = bytes(range(256)).replace(b"\n", b"") * 2048
    if protocol is WireProtocol.GREETING:
        payload = payload[:1000]  # one line, ended by end of input instead of a newline
    with trio.fail_after(BOUND):
        async with serve(
            driver, ServerConfig(port=0, protocol=protocol), recorder=logging_recorder()
        ) as served:
            client = await connect_to(served)
            received = await half_close_round_trip(client, payload)
            ended = await served.recorder.end_of(peer_of(client))
            await client.aclose()
    assert_answers(protocol, payload, received)
    assert isinstance(ended, Disconnected)
    assert ended.bytes_in == len(payload)
    assert ended.bytes_out == len(received)


def assert_answers(protocol: WireProtocol, payload: bytes, received: bytes) -> None:
    """*received* is the whole, exact answer to *payload* sent before a half-close."""
    if protocol is WireProtocol.ECHO:
        assert received == payload
    elif protocol is WireProtocol.REPLY:
        assert ReplyMatcher(payload).feed(received)
    else:
        assert received == SERVER_GREETING


async def test_greeting_with_unread_input_still_arrives(driver: str) -> None:
    """The server lingers: input it did not read cannot reset the connection over the reply."""
    junk = b"j" * (4 * 2**20)
    config = ServerConfig(port=0, protocol=WireProtocol.GREETING)
    with trio.fail_after(BOUND):
        async with serve(driver, config, recorder=logging_recorder()) as served:
            client = await connect_to(served)
            await client.send_all(b"hello\n" + junk)
            assert await read_to_eof(client) == SERVER_GREETING
            peer = peer_of(client)
            await client.aclose()
            ended = await served.recorder.end_of(peer)
    assert isinstance(ended, Disconnected)
    assert ended.bytes_in == len(b"hello\n" + junk)
    discarded = [e.size for e in served.recorder.events if isinstance(e, BytesDiscarded)]
    assert sum(discarded) == len(junk)


# --- A bug in one connection -------------------------------------------------------------------


class PlantedBug(RuntimeError):
    """The failure a buggy codec raises."""


class BuggyEcho(EchoServer):
    """An echo codec with a planted bug: a read holding ``boom`` raises.

    The codec is the code a server runs for each connection, so a codec
    factory is where a test can put a bug without patching the server.
    """

    def _on_data(self, data: bytes) -> list[ServerEvent]:
        if b"boom" in data:
            raise PlantedBug("planted bug")
        return super()._on_data(data)


async def test_a_bug_in_one_handler_ends_that_connection_only(
    driver: str, caplog: pytest.LogCaptureFixture
) -> None:
    with trio.fail_after(BOUND):
        async with serve(
            driver, echo_config(), recorder=logging_recorder(), codec_factory=BuggyEcho
        ) as served:
            bystander = await connect_to(served)
            assert await exchange(bystander, b"before") == b"before"
            victim = await connect_to(served)
            await victim.send_all(b"boom")
            assert await read_to_eof(victim) == b""
            ended = await served.recorder.end_of(peer_of(victim))
            assert await exchange(bystander, b"after") == b"after"
            await victim.aclose()
            await bystander.aclose()
            await assert_still_serving(served)
    assert isinstance(ended, ConnectionFailed)
    assert ended.message == "internal error: PlantedBug: planted bug"
    assert any("internal error: PlantedBug" in r.getMessage() for r in caplog.records)


# --- Limits ---------------------------------------------------------------------------------------


async def test_a_client_over_the_cap_waits_for_a_free_slot(driver: str) -> None:
    with trio.fail_after(BOUND):
        async with serve(
            driver, echo_config(max_connections=2), recorder=logging_recorder()
        ) as served:
            first, second = await connect_to(served), await connect_to(served)
            for client in (first, second):
                assert await exchange(client, b"in") == b"in"
            third = await connect_to(served)
            await third.send_all(b"waiting")
            with trio.move_on_after(0.3) as looked:
                await third.receive_some(100)
            assert looked.cancelled_caught, "the third client was served while two were"
            assert sum(isinstance(e, Connected) for e in served.recorder.events) == 2

            await first.aclose()
            received = b""
            while len(received) < len(b"waiting"):
                received += await third.receive_some(100)
            assert received == b"waiting"
            await second.aclose()
            await third.aclose()


async def test_idle_client_is_closed_and_activity_keeps_it_open(driver: str) -> None:
    """Real sockets and real time: the timeout is long enough that a round trip on a
    loaded machine never comes near it (the exact timing is checked in virtual time, in
    the scenario table's ``drip`` and ``idle-timeout`` rows)."""
    idle = 1.0
    with trio.fail_after(BOUND):
        async with serve(
            driver, echo_config(idle_timeout=idle), recorder=logging_recorder()
        ) as served:
            client = await connect_to(served)
            started = trio.current_time()
            # Round trips for twice the idle timeout: each receive restarts the timer.
            while trio.current_time() - started < 2 * idle:
                assert await exchange(client, b"tick") == b"tick"
            quiet_since = trio.current_time()
            assert await read_to_eof(client) == b""
            waited = trio.current_time() - quiet_since
            ended = await served.recorder.end_of(peer_of(client))
            await client.aclose()
    assert idle * 0.9 <= waited < idle + 2.0
    assert isinstance(ended, Disconnected)
    assert ended.reason == f"idle for {idle:g} s"


async def test_a_flooding_client_does_not_hold_up_the_others(driver: str) -> None:
    """While one client sends and reads as fast as it can, another's round trips go through,
    and the flood keeps being served meanwhile: neither waits for the other to stop."""
    echoed = 0

    async def read_the_flood(stream: trio.SocketStream) -> None:
        nonlocal echoed
        with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while data := await stream.receive_some(65536):
                echoed += len(data)

    with trio.fail_after(BOUND):
        async with serve(driver, echo_config(), recorder=logging_recorder()) as served:
            flooder = await connect_to(served)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(flood, flooder)
                nursery.start_soon(read_the_flood, flooder)
                while echoed < 1 << 20:
                    await trio.sleep(0)
                client = await connect_to(served)
                before = echoed
                for i in range(50):
                    assert await exchange(client, b"turn %d" % i) == b"turn %d" % i
                during = echoed - before
                nursery.cancel_scope.cancel()
            await client.aclose()
            await flooder.aclose()
    assert during > 0


async def test_client_that_stops_reading_is_dropped_with_bounded_buffering(driver: str) -> None:
    config = echo_config(send_timeout=0.3)
    with trio.fail_after(BOUND):
        async with serve(driver, config, recorder=logging_recorder()) as served:
            client = await connect_to(served, receive_buffer=4096)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(flood, client)
                ended = await served.recorder.end_of(peer_of(client))
                nursery.cancel_scope.cancel()
            await client.aclose()
            await assert_still_serving(served)
    assert isinstance(ended, ConnectionFailed)
    assert ended.message == "peer took no data for 0.3 s"
    assert ended.bytes_in - ended.bytes_out <= config.receive_size


async def test_over_long_greeting_line_ends_that_connection(
    driver: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = ServerConfig(port=0, protocol=WireProtocol.GREETING, max_line=1000)
    with trio.fail_after(BOUND):
        async with serve(driver, config, recorder=logging_recorder()) as served:
            client = await connect_to(served)
            await client.send_all(b"A" * 5000)
            # Closed with our bytes unread: a reset is as good as an end of input.
            with suppress(trio.BrokenResourceError):
                assert await read_to_eof(client) == b""
            ended = await served.recorder.end_of(peer_of(client))
            await client.aclose()
            greeter = await connect_to(served)
            await greeter.send_all(b"hi\n")
            assert await read_to_eof(greeter) == SERVER_GREETING
            await greeter.aclose()
    assert isinstance(ended, ConnectionFailed)
    assert ended.message == "line longer than 1000 bytes"
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any(m.endswith(" failed: line longer than 1000 bytes") for m in errors)


# --- Bad input ------------------------------------------------------------------------------------

GARBAGE = {
    "every byte value": bytes(range(256)) * 4,
    "NUL": b"\0" * 1000,
    "invalid UTF-8": b"\xff\xfe\xc3\x28\xa0\xa1\xe2\x28\xa1\xf0\x90\x28\xbc\xed\xa0\x80\xc0\xaf",
    "terminal controls": b"\x1b[2J\x1b]0;owned\x07\r\x08\x7f\x9b\x85\x00",
    "random": random.Random(862).randbytes(65536),
}


def printable(text: str) -> bool:
    """No control character (C0, C1, DEL), no bidi override, nothing unprintable."""
    return text.isprintable()


@pytest.mark.parametrize("protocol", list(CONVERSATIONAL))
async def test_garbage_is_echoed_exactly_and_logged_escaped(
    driver: str, protocol: WireProtocol, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_echo")
    with trio.fail_after(BOUND):
        async with serve(
            driver, ServerConfig(port=0, protocol=protocol), recorder=logging_recorder()
        ) as served:
            for payload in GARBAGE.values():
                client = await connect_to(served)
                received = await half_close_round_trip(client, payload)
                peer = peer_of(client)
                await client.aclose()
                assert_answers(protocol, payload, received)
                await served.recorder.end_of(peer)
                seen = b"".join(
                    e.data
                    for e in served.recorder.events
                    if isinstance(e, MessageReceived) and e.peer == peer
                )
                expected = payload.split(b"\n")[0] if protocol is WireProtocol.GREETING else payload
                assert seen == expected
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("trio_echo")]
    assert len(lines) >= 3 * len(GARBAGE)
    assert all(printable(line) for line in lines), [line for line in lines if not printable(line)]


# --- Out of descriptors ---------------------------------------------------------------------------

ACCEPT_FAILED = re.compile(rb"accept failed: Too many open files")
ACCEPT_LOG = re.compile(rb"accept (failed|still failing|recovered)")
RECOVERED = re.compile(rb"accept recovered after \d+ failures")
NOFILE = 40
"""The child server's descriptor limit: low enough to reach with a few dozen clients."""


async def test_out_of_descriptors_waits_quietly_and_recovers(driver: str) -> None:
    flags = ["--protocol", "echo", "--log-level", "warning"]
    with trio.fail_after(3 * BOUND):
        async with running_server(driver, flags, nofile=NOFILE) as server:
            clients: list[trio.SocketStream] = []
            try:
                while server.count(ACCEPT_FAILED) == 0:
                    clients.append(await trio.open_tcp_stream(HOST, server.port))
                    if len(clients) > NOFILE:
                        await server.wait_for_lines(ACCEPT_FAILED)
                # Out of descriptors: measure CPU and log lines over a fixed window.
                cpu_before, lines_before = server.cpu_seconds(), server.count(ACCEPT_LOG)
                await trio.sleep(0.5)
                cpu_used = server.cpu_seconds() - cpu_before
                assert server.process.returncode is None, "the server died"
                assert cpu_used < 0.15, f"{cpu_used:.2f} s of CPU in 0.5 s: spinning"
                assert server.count(ACCEPT_LOG) == lines_before == 1

                for client in clients:
                    await client.aclose()
                late = await trio.open_tcp_stream(HOST, server.port)
                async with late:
                    assert await exchange(late, b"recovered") == b"recovered"
                await server.wait_for_lines(RECOVERED)
                assert await server.terminate() == 0
            finally:
                for client in clients:
                    await client.aclose()


def test_accept_failure_log_writes_a_few_lines_for_a_long_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """1000 failed accepts over 100 s make 11 lines: first, one per 10 s, recovery."""
    now = 0.0
    log = AcceptFailureLog(lambda: now)
    failure = OSError(errno.EMFILE, "Too many open files")
    for step in range(1000):
        now = step * ACCEPT_RETRY_SECONDS
        log.failed(failure, ACCEPT_RETRY_SECONDS)
    log.succeeded()
    log.succeeded()
    lines = [r.getMessage() for r in caplog.records]
    assert ACCEPT_LOG_INTERVAL == 10
    assert lines[0] == (
        "accept failed: Too many open files; retrying every 0.1 s (repeats logged every 10 s)"
    )
    assert lines[1] == "accept still failing: Too many open files; 100 failures in the last 10 s"
    assert len(lines) == 11
    assert lines[-1] == "accept recovered after 1000 failures in 99.9 s"


SIGTERMED_SUMMARY = re.compile(rb"^served 3 connections, \d+ bytes in, \d+ bytes out, 0 errors$")


async def test_sigterm_ends_sessions_after_the_grace_and_exits_zero(driver: str) -> None:
    grace = 0.3
    flags = ["--protocol", "echo", "--log-level", "warning", "--grace", str(grace)]
    with trio.fail_after(BOUND):
        async with running_server(driver, flags) as server:
            clients = [await trio.open_tcp_stream(HOST, server.port) for _ in range(3)]
            for client in clients:
                assert await exchange(client, b"mid-session") == b"mid-session"
            started = trio.current_time()
            assert await server.terminate() == 0
            took = trio.current_time() - started
            for client in clients:
                assert await read_to_eof(client) == b""
                await client.aclose()
    assert grace * 0.9 <= took < grace + 2.0
    assert server.count(SIGTERMED_SUMMARY) == 1


# --- Many clients ---------------------------------------------------------------------------------

CROWD = 1000


def make_room_for_descriptors(needed: int) -> None:
    """Raise this process's soft descriptor limit so *needed* more sockets fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed + 100:
        return
    if hard != resource.RLIM_INFINITY and hard < needed + 100:
        pytest.skip(f"the descriptor limit ({hard}) is too low for {needed} sockets")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed + 100, hard))


async def test_a_thousand_concurrent_clients_without_an_error(driver: str) -> None:
    make_room_for_descriptors(2 * CROWD)
    errors: list[BaseException] = []
    arrived = 0
    everyone_in = trio.Event()

    async def client(served: Serving, index: int) -> None:
        nonlocal arrived
        message = f"{index} - Send Message".encode()
        try:
            stream = await connect_to(served)
            async with stream:
                assert await exchange(stream, message) == message
                arrived += 1
                if arrived == CROWD:
                    everyone_in.set()
                await everyone_in.wait()  # all connections are open and served at once
                assert await exchange(stream, message) == message
        except (OSError, trio.BrokenResourceError, AssertionError) as exc:
            errors.append(exc)
            everyone_in.set()

    with trio.fail_after(3 * BOUND):
        async with serve(driver, echo_config(), recorder=logging_recorder()) as served:
            async with trio.open_nursery() as nursery:
                for index in range(CROWD):
                    nursery.start_soon(client, served, index)
            await served.recorder.wait_for(lambda _events: len(served.recorder.ended()) == CROWD)
    assert errors == []
    assert all(isinstance(e, Disconnected) for e in served.recorder.ended())


async def test_the_blocking_server_holds_a_connection_while_no_thread_can_start(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A process limit that refuses threads for 1 s: the client is served late, not lost,
    the acceptor survives, and the log says so in two lines (the failure, the recovery)."""
    network = SimulatedNetwork()
    async with virtual_runtime(network) as runtime:
        refusing_until = trio.current_time() + 1.0
        real_start_thread = runtime.start_thread

        def start_thread(target: Callable[[], None], name: str) -> Worker:
            if name.startswith("trio-echo 127.") and runtime.monotonic() < refusing_until:
                raise RuntimeError("can't start new thread")
            return real_start_thread(target, name)

        runtime.start_thread = start_thread  # type: ignore[method-assign]
        server = BlockingServer(ServerConfig(), runtime=runtime, sink=lambda _event: None)
        with caplog.at_level(logging.WARNING, logger="trio_echo.server"):
            await runtime.run_in_thread(server.start)
            started = trio.current_time()
            results = [
                await runtime.run_in_thread(
                    lambda label=label: run_blocking_session(  # type: ignore[misc]
                        ClientConfig(), runtime=runtime.client(label)
                    )
                )
                for label in ("first", "second")
            ]
            await runtime.run_in_thread(lambda: server.shutdown(grace=0))
    assert all(result.ok for result in results), [result.error for result in results]
    assert results[0].seconds >= 1.0 > results[1].seconds  # held, then served at once
    assert trio.current_time() - started >= 1.0
    lines = [record.getMessage() for record in caplog.records]
    assert lines[0].startswith(
        "starting a connection's thread failed: can't start new thread; retrying every 0.1 s"
    )
    assert lines[1].startswith("starting a connection's thread recovered after 10 failures")
    assert len(lines) == 2


async def test_a_full_server_reclaims_a_quiet_connection_for_a_waiting_client(
    driver: str,
) -> None:
    """Real sockets, through the dispatcher for Trio: one quiet client holds the only
    slot; a newcomer is served once the holder has been quiet for 0.2 s."""
    config = echo_config(max_connections=1, reclaim_after=0.2)
    with trio.fail_after(BOUND):
        async with serve(driver, config, recorder=logging_recorder()) as served:
            holder = await connect_to(served)
            assert await exchange(holder, b"hello") == b"hello"
            newcomer = await connect_to(served)  # waits in the backlog
            assert await exchange(newcomer, b"let me in") == b"let me in"
            assert await read_to_eof(holder) == b""
            ended = await served.recorder.end_of(peer_of(holder))
            await newcomer.aclose()
            await holder.aclose()
    assert isinstance(ended, Disconnected)
    assert ended.reason == "reclaimed for a waiting client"
