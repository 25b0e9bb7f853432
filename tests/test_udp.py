"""UDP (RFC 862 section 2) over real loopback sockets, both drivers, server and client.

Every server here is bound to 127.0.0.1 (or ::1) on a port the kernel
picks, every wait is bounded by ``trio.fail_after`` or a socket timeout,
and nothing sleeps: where a client must give up, its own timeout is what
runs out, and only its counts are checked, never how long it took. The
note's conversation is held by every client against every server, and
socat, when installed, is a third-party peer each way.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import attrs
import pytest
import trio
from loopback import has_ipv6_loopback

from trio_echo.blocking_driver import datagram_client as blocking_client
from trio_echo.blocking_driver.datagram_server import DatagramService
from trio_echo.codec import MAX_REPLY_DATAGRAM, SERVER_GREETING
from trio_echo.config import ClientConfig, WireProtocol
from trio_echo.connection_log import ConnectionEvent, DatagramAnswered, ServerStats
from trio_echo.errors import ConnectionRefused, Timeout, WrongReply
from trio_echo.session import Exchange, SessionResult, describe_datagram_report
from trio_echo.transport.datagram_service import DatagramResponder
from trio_echo.transport.reflection import ReflectionPolicy
from trio_echo.transport.sockets import bind, bound_spec
from trio_echo.transport.spec import ListenSpec, Transport
from trio_echo.trio_driver import datagram_client as trio_client
from trio_echo.trio_driver.datagram_server import serve_datagrams
from trio_echo.trio_driver.fast_datagram import FastDatagramSocket

HOST = "127.0.0.1"
BOUND = 10.0
"""Wall-clock bound on any one test's waits (never reached when things work)."""


HAS_IPV6 = has_ipv6_loopback()


@attrs.frozen
class UdpServer:
    """A UDP listener of either driver, running for the duration of a block."""

    spec: ListenSpec
    """As bound: the real port, a target a client can be given."""
    stats: ServerStats
    events: list[ConnectionEvent]
    service: DatagramService | None
    """The blocking driver's service (None for Trio), to look at its guard."""


@contextlib.asynccontextmanager
async def udp_server(
    driver: str,
    protocol: WireProtocol,
    *,
    host: str = HOST,
    policy: ReflectionPolicy | None = None,
) -> AsyncIterator[UdpServer]:
    """Serve *protocol* on ``udp://HOST:0`` with *driver*; stopped, sockets closed, at the end."""
    spec = ListenSpec(transport=Transport.UDP, host=host, port=0, protocol=protocol)
    (sock,) = bind(spec, backlog=1)
    bound = bound_spec(sock, spec)
    events: list[ConnectionEvent] = []
    stats = ServerStats()
    policy = policy if policy is not None else ReflectionPolicy()
    if driver == "trio":
        fast = FastDatagramSocket(sock)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    functools.partial(
                        serve_datagrams,
                        fast,
                        bound,
                        policy=policy,
                        sink=events.append,
                        stats=stats,
                    )
                )
                try:
                    yield UdpServer(bound, stats, events, None)
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            fast.close()
        return
    service = DatagramService(sock, bound, policy=policy, sink=events.append, stats=stats)
    thread = threading.Thread(target=service.run, name="udp service", daemon=True)
    thread.start()
    try:
        yield UdpServer(bound, stats, events, service)
    finally:
        service.close()
        thread.join(BOUND)
        assert not thread.is_alive(), "the blocking UDP service did not stop on close()"


async def run_udp_session(driver: str, config: ClientConfig, lines: list[str]) -> SessionResult:
    """One UDP session with the *driver* client; the blocking one in a worker thread."""
    if driver == "trio":
        return await trio_client.run_datagram_session(config, report=lines.append)
    return await trio.to_thread.run_sync(
        functools.partial(blocking_client.run_datagram_session, config, report=lines.append),
        abandon_on_cancel=True,
    )


def udp_client(spec: ListenSpec, **fields: Any) -> ClientConfig:
    return ClientConfig.for_target(spec, **{"timeout": BOUND, **fields})


def expected_exchanges(protocol: WireProtocol) -> list[Exchange]:
    """The note's conversation, byte for byte."""
    if protocol is WireProtocol.GREETING:
        return [Exchange(b"Hello from client", SERVER_GREETING)]
    messages = [f"{i} - Send Message".encode() for i in range(7)]
    if protocol is WireProtocol.ECHO:
        return [Exchange(message, message) for message in messages]
    return [Exchange(message, b"Re:" + message) for message in messages]


# -- the note's conversation -------------------------------------------------------------------


async def test_the_notes_conversation_byte_for_byte(
    server_driver: str, client_driver: str, protocol: WireProtocol
) -> None:
    with trio.fail_after(BOUND):
        async with udp_server(server_driver, protocol) as server:
            lines: list[str] = []
            result = await run_udp_session(client_driver, udp_client(server.spec), lines)
    expected = expected_exchanges(protocol)
    assert result.error is None
    assert list(result.exchanges) == expected
    assert result.datagrams is not None
    assert (result.datagrams.sent, result.datagrams.answered) == (len(expected), len(expected))
    assert lines[:2] == [
        f'sent: "{expected[0].sent.decode()}"',
        f'received: "{expected[0].reply.decode().rstrip(chr(10))}"',
    ]
    answered = [event for event in server.events if isinstance(event, DatagramAnswered)]
    newline = b"\n" if protocol is WireProtocol.GREETING else b""
    assert [event.data for event in answered] == [x.sent + newline for x in expected]
    assert {event.listener for event in answered} == {str(server.spec)}
    assert server.stats.datagrams_in == server.stats.datagrams_out == len(expected)


@pytest.mark.skipif(not HAS_IPV6, reason="no IPv6 loopback here")
async def test_the_conversation_over_ipv6(server_driver: str, client_driver: str) -> None:
    with trio.fail_after(BOUND):
        async with udp_server(server_driver, WireProtocol.REPLY, host="::1") as server:
            result = await run_udp_session(client_driver, udp_client(server.spec), [])
    assert str(server.spec).startswith("udp://[::1]:")
    assert result.error is None
    assert list(result.exchanges) == expected_exchanges(WireProtocol.REPLY)


async def test_a_long_message_comes_back_in_pieces_the_client_reassembles(
    server_driver: str, client_driver: str
) -> None:
    message = bytes(range(256)) + b"x" * 44  # 300 bytes, every byte value
    with trio.fail_after(BOUND):
        async with udp_server(server_driver, WireProtocol.REPLY) as server:
            raw = await _raw_exchange(server.spec, message, answers=3)
            text = message.decode("utf-8", "surrogateescape")  # the bytes a user typed
            config = udp_client(server.spec, count=1, message=text)
            result = await run_udp_session(client_driver, config, [])
    assert [len(datagram) for datagram in raw] == [127, 127, 55]
    assert all(len(datagram) <= MAX_REPLY_DATAGRAM for datagram in raw)
    assert b"".join(datagram[3:] for datagram in raw) == message
    assert result.error is None
    assert list(result.exchanges) == [Exchange(message, b"".join(raw))]
    assert result.datagrams is not None and result.datagrams.datagrams_received == 3


async def _raw_exchange(spec: ListenSpec, message: bytes, *, answers: int) -> list[bytes]:
    """Send *message* from a bare socket; the datagrams that come back."""
    assert spec.host is not None and spec.port is not None
    with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as sock:
        await sock.connect((spec.host, spec.port))
        await sock.send(message)
        return [await sock.recv(65536) for _ in range(answers)]


# -- the reflection guard in a real server ---------------------------------------------------


async def test_a_classic_port_is_never_answered_and_logged_once(
    server_driver: str, caplog: pytest.LogCaptureFixture
) -> None:
    classic = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        classic.bind((HOST, 19))
    except OSError as exc:
        classic.close()
        pytest.skip(f"cannot bind port 19 here: {exc}")
    caplog.set_level(logging.WARNING, logger="trio_echo.server")
    with classic, trio.fail_after(BOUND):
        async with udp_server(server_driver, WireProtocol.ECHO) as server:
            assert server.spec.port is not None
            for _ in range(2):
                classic.sendto(b"chargen\x1b[2J", (HOST, server.spec.port))
            # The server reads in order: once this is answered, both were judged.
            assert await _raw_exchange(server.spec, b"after", answers=1) == [b"after"]
            classic.setblocking(False)
            with pytest.raises(BlockingIOError):
                classic.recv(100)
    warnings = [r.getMessage() for r in caplog.records if r.name == "trio_echo.server"]
    assert len(warnings) == 1, warnings
    assert "refused 1 datagram from reflection ports (last from 127.0.0.1:19)" in warnings[0]
    assert "\x1b" not in warnings[0]
    assert server.stats.datagrams_refused == 2


async def test_a_flood_gets_its_burst_and_rate_and_another_host_is_still_answered(
    server_driver: str,
) -> None:
    policy = ReflectionPolicy(rate=50.0, burst=20.0, max_sources=4)
    flood = 10_000
    with trio.fail_after(BOUND):
        async with udp_server(server_driver, WireProtocol.ECHO, policy=policy) as server:
            assert server.spec.port is not None
            target = (HOST, server.spec.port)
            started = time.monotonic()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.to_thread.run_sync, _flood, target, flood)
                # Served while the flood runs: the server task must let this one in.
                assert await _exchange_from("127.0.0.2", target, b"meanwhile") == b"meanwhile"
            assert await _exchange_from("127.0.0.2", target, b"after") == b"after"
            if server.service is not None:
                assert server.service.responder.guard.sources <= policy.max_sources
    elapsed = time.monotonic() - started  # the server has stopped: every count is final
    stats = server.stats
    answered = [event for event in server.events if isinstance(event, DatagramAnswered)]
    flood_answered = sum(event.peer.host == HOST for event in answered)
    assert policy.burst <= flood_answered <= policy.burst + policy.rate * elapsed
    assert stats.datagrams_refused > 0
    assert stats.datagrams_out == len(answered)
    assert stats.datagrams_in == len(answered) + stats.datagrams_refused


def _flood(target: tuple[str, int], count: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        for index in range(count):
            sock.sendto(b"%d" % index, target)


async def _exchange_from(host: str, target: tuple[str, int], message: bytes) -> bytes:
    """Send *message* from *host* until it is answered (a flood may fill the server's queue)."""
    with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as sock:
        await sock.bind((host, 0))
        await sock.connect(target)
        while True:
            await sock.send(message)
            with trio.move_on_after(0.2):
                return await sock.recv(100)


class _Lines(logging.Handler):
    """Collects the server's log lines; a waiter in another thread learns of each."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []
        self.changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self.changed:
            self.lines.append(record.getMessage())
            self.changed.notify_all()

    def wait_for(self, count: int) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: len(self.lines) >= count, BOUND)


async def test_refusals_followed_by_silence_are_still_reported(server_driver: str) -> None:
    policy = ReflectionPolicy(rate=0.001, burst=1.0, report_interval=0.3)
    handler = _Lines()
    log = logging.getLogger("trio_echo.server")
    log.addHandler(handler)
    try:
        with trio.fail_after(BOUND):
            async with udp_server(server_driver, WireProtocol.ECHO, policy=policy) as server:
                assert await _raw_exchange(server.spec, b"first", answers=1) == [b"first"]
                assert server.spec.port is not None
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                    for _ in range(3):
                        sock.sendto(b"refused", (HOST, server.spec.port))
                # The first refusal is reported at once, the other two by the timer alone:
                # nothing arrives after them.
                assert await trio.to_thread.run_sync(handler.wait_for, 2)
    finally:
        log.removeHandler(handler)
    first, second = handler.lines[:2]
    assert "rate-limited 1 datagram from 1 source (last 127.0.0.1)" in first
    assert "rate-limited 2 datagrams from 1 source (last 127.0.0.1)" in second


def test_the_guard_table_stays_bounded_whatever_the_sources() -> None:
    stats = ServerStats()
    spec = ListenSpec(transport=Transport.UDP, host=HOST, port=3100, protocol=WireProtocol.ECHO)
    responder = DatagramResponder(
        spec, policy=ReflectionPolicy(max_sources=16), sink=lambda _e: None, stats=stats
    )
    for index in range(10_000):
        forged = (f"10.{index >> 16 & 255}.{index >> 8 & 255}.{index & 255}", 4000)
        answer = responder.receive(b"x", forged, now=index / 1000)
        responder.answered(answer, len(answer.replies), now=index / 1000)
    assert responder.guard.sources == 16
    assert stats.datagrams_out == 10_000


# -- what a client reports when things go wrong ------------------------------------------------


async def test_a_closed_port_is_connection_refused(client_driver: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
    config = ClientConfig(host=HOST, port=port, transport=Transport.UDP, timeout=BOUND)
    with trio.fail_after(BOUND):
        result = await run_udp_session(client_driver, config, [])
    assert isinstance(result.error, ConnectionRefused), result.error
    assert f"udp://{HOST}:{port}" in str(result.error)
    assert result.exchanges == ()


async def test_a_server_that_drops_everything_loses_every_message(client_driver: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent_server:
        silent_server.bind((HOST, 0))
        port = silent_server.getsockname()[1]
        config = ClientConfig(
            host=HOST, port=port, transport=Transport.UDP, timeout=0.1, retries=1, count=2
        )
        lines: list[str] = []
        with trio.fail_after(BOUND):
            result = await run_udp_session(client_driver, config, lines)
        silent_server.settimeout(0)
        received = []
        with contextlib.suppress(BlockingIOError):
            while True:
                received.append(silent_server.recv(100))
    assert isinstance(result.error, Timeout)
    assert str(result.error) == (
        f"2 of 2 messages to udp://{HOST}:{port} got no answer within 0.1 s (1 retry each)"
    )
    report = result.datagrams
    assert report is not None
    assert (report.sent, report.lost, report.answered, report.datagrams_sent) == (2, 2, 0, 4)
    assert received == [b"0 - Send Message"] * 2 + [b"1 - Send Message"] * 2
    assert lines == [
        'sent: "0 - Send Message"',
        'sent again: "0 - Send Message"',
        'no answer: "0 - Send Message" (sent 2 times)',
        'sent: "1 - Send Message"',
        'sent again: "1 - Send Message"',
        'no answer: "1 - Send Message" (sent 2 times)',
    ]
    assert describe_datagram_report(report) == (
        "2 sent, 0 answered, 2 lost (0 late), 0 duplicated, 0 wrong"
    )


async def test_a_wrong_answer_is_a_wrong_reply_quoted_escaped(client_driver: str) -> None:
    with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as liar:
        await liar.bind((HOST, 0))
        port = liar.getsockname()[1]

        async def answer_wrongly() -> None:
            _data, source = await liar.recvfrom(100)
            await liar.sendto(b"nonsense\x1b[0m", source)

        config = ClientConfig(
            host=HOST, port=port, transport=Transport.UDP, timeout=0.1, retries=0, count=1
        )
        with trio.fail_after(BOUND):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(answer_wrongly)
                result = await run_udp_session(client_driver, config, [])
    assert isinstance(result.error, WrongReply)
    assert str(result.error) == (
        f"1 datagram from udp://{HOST}:{port} answered nothing sent, "
        'first "nonsense\\x1b[0m"; 1 of 1 message got no answer'
    )


def test_the_report_line_with_round_trips() -> None:
    from trio_echo.codec import DatagramSession

    session = DatagramSession(WireProtocol.ECHO, [b"a", b"b"], timeout=1.0, retries=0)
    for start in (0.0, 1.0):
        send = session.next_send(start)
        assert send is not None
        session.receive(send[1], start + (0.0002 if start else 0.0004))
    assert describe_datagram_report(session.report()) == (
        "2 sent, 2 answered, 0 lost (0 late), 0 duplicated, 0 wrong; "
        "round trip min 0.2 ms, mean 0.3 ms, max 0.4 ms"
    )


# -- the blocking service's close --------------------------------------------------------------


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
@pytest.mark.parametrize("started", [True, False], ids=["running", "never-run"])
def test_close_wakes_the_service_and_frees_every_descriptor(started: bool) -> None:
    before = _open_descriptors()
    spec = ListenSpec(transport=Transport.UDP, host=HOST, port=0, protocol=WireProtocol.ECHO)
    (sock,) = bind(spec, backlog=1)
    service = DatagramService(
        sock,
        bound_spec(sock, spec),
        policy=ReflectionPolicy(),
        sink=lambda _e: None,
        stats=ServerStats(),
    )
    assert _open_descriptors() == before + 4  # the socket, the selector, the wake-up pair
    thread = threading.Thread(target=service.run, daemon=True)
    if started:
        thread.start()
        _answered_once(bound_spec(sock, spec))  # run() is in its loop now
    service.close()
    if started:
        thread.join(BOUND)
        assert not thread.is_alive()
    else:
        service.run()  # returns at once: closed before it ran
    assert service.closed
    assert _open_descriptors() == before


def _answered_once(spec: ListenSpec) -> None:
    assert spec.host is not None and spec.port is not None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(BOUND)
        client.connect((spec.host, spec.port))
        client.send(b"ping")
        assert client.recv(100) == b"ping"


# -- socat, a third-party peer -------------------------------------------------------------------

SOCAT = shutil.which("socat")
needs_socat = pytest.mark.skipif(SOCAT is None, reason="socat is not installed")


@contextlib.contextmanager
def _child(*argv: str) -> Iterator[subprocess.Popen[bytes]]:
    """Start *argv* in a process group of its own; kill the whole group at the end."""
    process = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True
    )
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(BOUND)


@needs_socat
async def test_socat_gets_its_line_back_from_our_echo_server(server_driver: str) -> None:
    assert SOCAT is not None
    with trio.fail_after(BOUND):
        async with udp_server(server_driver, WireProtocol.ECHO) as server:
            completed = await trio.run_process(
                [SOCAT, "-t", "0.5", "-", f"UDP:{HOST}:{server.spec.port}"],
                stdin=b"hello over udp\x00\xff\n",
                capture_stdout=True,
            )
    assert completed.stdout == b"hello over udp\x00\xff\n"


@needs_socat
async def test_our_client_against_a_socat_echo(client_driver: str) -> None:
    assert SOCAT is not None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
    with _child(SOCAT, f"UDP-RECVFROM:{port},bind={HOST},fork", "PIPE"), trio.fail_after(BOUND):
        await _until_echoed((HOST, port))
        config = ClientConfig(
            host=HOST, port=port, transport=Transport.UDP, protocol=WireProtocol.ECHO, timeout=BOUND
        )
        result = await run_udp_session(client_driver, config, [])
    assert result.error is None
    assert list(result.exchanges) == expected_exchanges(WireProtocol.ECHO)


async def _until_echoed(target: tuple[str, int]) -> None:
    """Probe until the child echoes (it binds some time after it starts); bounded by the caller."""
    with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as sock:
        while True:
            await sock.sendto(b"probe", target)
            with trio.move_on_after(0.05):
                if await sock.recv(100) == b"probe":
                    return
