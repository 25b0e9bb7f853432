"""Every fault on real sockets, both drivers, TCP, Unix and TLS; the same decisions simulated."""

from __future__ import annotations

import errno
import logging
import ssl
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import trio
from loopback import server_config

from trio_echo.config import WireProtocol
from trio_echo.connection_log import (
    Connected,
    ConnectionFailed,
    DatagramAnswered,
    Disconnected,
    LoggingSink,
)
from trio_echo.faults import parse_faults, plan_connection
from trio_echo.testing import SimulatedNetwork
from trio_echo.testing.recorder import EventRecorder
from trio_echo.testing.serving import serve
from trio_echo.transport.spec import ListenSpec, Transport, parse_listen_spec

if TYPE_CHECKING:
    from tls_certs import TlsFiles

pytest_plugins = ["tls_certs"]

BOUND = 20
"""Seconds any one test may take (a bound, never a measured time)."""

MESSAGE = b"0123456789" * 20


async def _echo_through(stream: trio.abc.Stream, data: bytes = MESSAGE) -> tuple[bytes, bool]:
    """Send *data*, read until it all came back or the stream ended; (bytes, ended by an error)."""
    await stream.send_all(data)
    got = b""
    try:
        while len(got) < len(data):
            chunk = await stream.receive_some()
            if not chunk:
                return got, False
            got += chunk
    except trio.BrokenResourceError:
        return got, True
    return got, False


async def _run(driver: str, fault: str, **fields: object) -> tuple[bytes, bool, EventRecorder]:
    config = server_config(protocol=WireProtocol.ECHO, faults=parse_faults(fault), **fields)
    recorder = EventRecorder()
    with trio.fail_after(BOUND):
        async with serve(driver, config, recorder=recorder) as serving:
            stream = await trio.open_tcp_stream(serving.address.host, serving.address.port)
            async with stream:
                got, broken = await _echo_through(stream)
            await recorder.wait_ended()
    return got, broken, recorder


@pytest.mark.parametrize(
    "fault",
    [
        "delay=20ms",
        "delay=20ms,jitter=10ms",
        "split=1-16",
        "stall=50ms",
        "bandwidth=4KiB/s",
        "slow-close=50ms",
    ],
)
async def test_faults_that_keep_every_byte_echo_it_all(server_driver: str, fault: str) -> None:
    got, broken, recorder = await _run(server_driver, fault)
    assert got == MESSAGE and not broken
    assert recorder.of_kind(Connected)[0].fault == fault


async def test_reset_after_resets_once_that_many_bytes_went(server_driver: str) -> None:
    got, broken, recorder = await _run(server_driver, "reset-after=50")
    assert got == MESSAGE[:50]
    assert broken
    assert recorder.of_kind(ConnectionFailed)[0].errno == errno.ECONNRESET


async def test_close_after_closes_cleanly_once_that_many_bytes_went(server_driver: str) -> None:
    got, broken, _ = await _run(server_driver, "close-after=50")
    assert (got, broken) == (MESSAGE[:50], False)


async def test_close_before_reply_sends_nothing_and_closes(server_driver: str) -> None:
    got, broken, recorder = await _run(server_driver, "close-before-reply")
    assert (got, broken) == (b"", False)
    assert recorder.of_kind(ConnectionFailed)[0].errno == errno.EPIPE


async def test_timeout_answers_nothing_until_the_send_timeout(server_driver: str) -> None:
    config = server_config(
        protocol=WireProtocol.ECHO, faults=parse_faults("timeout"), send_timeout=0.2
    )
    recorder = EventRecorder()
    with trio.fail_after(BOUND):
        async with serve(server_driver, config, recorder=recorder) as serving:
            stream = await trio.open_tcp_stream(serving.address.host, serving.address.port)
            async with stream:
                await stream.send_all(MESSAGE)
                [ended] = await recorder.wait_ended()
                assert await stream.receive_some() == b""
    assert ended.bytes_out == 0


async def test_a_fault_chance_and_seed_give_a_repeatable_assignment(server_driver: str) -> None:
    spec = "split=1-4@0.5,delay=1ms@0.5"

    async def assignment() -> list[str | None]:
        config = server_config(protocol=WireProtocol.ECHO, faults=parse_faults(spec), seed=11)
        recorder = EventRecorder()
        with trio.fail_after(BOUND):
            async with serve(server_driver, config, recorder=recorder) as serving:
                for _ in range(8):
                    stream = await trio.open_tcp_stream(serving.address.host, serving.address.port)
                    async with stream:
                        assert (await _echo_through(stream, b"abcdefgh"))[0] == b"abcdefgh"
                await recorder.wait_ended(8)
        return [event.fault for event in sorted(recorder.of_kind(Connected), key=_number)]

    first = await assignment()
    assert first == await assignment()
    expected = [plan_connection(parse_faults(spec), 11, str(n)) for n in range(1, 9)]
    assert first == [plan.description if plan else None for plan in expected]
    assert None in first and any(first)


def _number(event: Connected) -> int:
    return event.connection


async def test_a_listener_fault_overrides_the_server_fault(server_driver: str) -> None:
    spec = parse_listen_spec("tcp://127.0.0.1:0?fault=close-after=5")
    got, _, recorder = await _run(server_driver, "delay=1ms", listen=[spec])
    assert got == MESSAGE[:5]
    assert recorder.of_kind(Connected)[0].fault == "close-after=5"


async def test_faults_apply_over_a_unix_socket(server_driver: str, short_dir: Path) -> None:
    path = str(short_dir / "echo.sock")
    config = server_config(
        protocol=WireProtocol.ECHO,
        faults=parse_faults("split=1-3,close-after=40"),
        listen=[ListenSpec(transport=Transport.UNIX, path=path)],
    )
    with trio.fail_after(BOUND):
        async with serve(server_driver, config) as serving:
            stream = await trio.open_unix_socket(path)
            async with stream:
                got, broken = await _echo_through(stream)
            await serving.recorder.wait_ended()
    assert (got, broken) == (MESSAGE[:40], False)


async def test_faults_fall_on_the_wire_under_tls(server_driver: str, tls_files: TlsFiles) -> None:
    config = server_config(
        protocol=WireProtocol.ECHO,
        faults=parse_faults("split=1-7,delay=1ms"),
        tls=tls_files.server_settings(),
        listen=[ListenSpec(transport=Transport.TLS, host="127.0.0.1", port=0)],
    )
    context = ssl.create_default_context(cafile=str(tls_files.ca))
    with trio.fail_after(BOUND):
        async with serve(server_driver, config) as serving:
            stream = await trio.open_ssl_over_tcp_stream(
                "127.0.0.1", serving.address.port, ssl_context=context
            )
            async with stream:
                got, broken = await _echo_through(stream)
            await serving.recorder.wait_ended()
    assert (got, broken) == (MESSAGE, False)
    assert serving.recorder.of_kind(Connected)[0].fault == "split=1-7,delay=1ms"


async def test_the_same_fault_names_decide_the_same_in_simulation() -> None:
    """Connection K with seed S gets the same fault, and the same pieces, simulated or real."""
    spec = "split=1-4@0.5,close-after=30@0.5"

    async def run(network: SimulatedNetwork | None) -> list[tuple[str | None, bytes]]:
        config = server_config(protocol=WireProtocol.ECHO, faults=parse_faults(spec), seed=5)
        outcomes: list[tuple[str | None, bytes]] = []
        async with serve("trio", config, network=network) as serving:
            for _ in range(6):
                if network is None:
                    stream: trio.abc.Stream = await trio.open_tcp_stream(
                        serving.address.host, serving.address.port
                    )
                else:
                    stream = await network.connect(serving.address.host, serving.address.port)
                async with stream:
                    got, _ = await _echo_through(stream, bytes(range(60)))
                [*_, ended] = await serving.recorder.wait_ended(len(outcomes) + 1)
                fault = serving.recorder.of_kind(Connected)[-1].fault
                assert isinstance(ended, Disconnected | ConnectionFailed)
                outcomes.append((fault, got))
        return outcomes

    with trio.fail_after(BOUND):
        real = await run(None)
    simulated = await run(SimulatedNetwork(seed=5))
    assert real == simulated
    assert {fault for fault, _ in real} > {None}


async def test_delay_waits_on_virtual_time_in_simulation(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = SimulatedNetwork(latency=0.0)
    config = server_config(protocol=WireProtocol.ECHO, faults=parse_faults("delay=750ms"))
    async with serve("trio", config, network=network) as serving:
        stream = await network.connect(serving.address.host, serving.address.port)
        async with stream:
            start = trio.current_time()
            got, _ = await _echo_through(stream, b"ping")
            assert got == b"ping"
            assert trio.current_time() - start >= 0.75


async def _datagram_replies(
    driver: str, fault: str, count: int, recorder: EventRecorder | None = None
) -> list[bytes]:
    """Send *count* numbered datagrams, one at a time; the answers that came back, in order."""
    config = server_config(
        protocol=WireProtocol.ECHO,
        faults=parse_faults(fault),
        seed=3,
        listen=[ListenSpec(transport=Transport.UDP, host="127.0.0.1", port=0)],
    )
    replies = []
    with trio.fail_after(BOUND):
        async with serve(driver, config, recorder=recorder) as serving:
            sock = trio.socket.socket(type=trio.socket.SOCK_DGRAM)
            with sock:
                await sock.connect((serving.address.host, serving.address.port))
                for n in range(count):
                    await sock.send(b"%d" % n)
                    with trio.move_on_after(0.1):  # a dropped answer never comes
                        while True:
                            replies.append(await sock.recv(100))
    return replies


async def test_udp_drop_takes_some_answers_and_no_others(server_driver: str) -> None:
    replies = await _datagram_replies(server_driver, "drop=0.5", 12)
    assert 0 < len(replies) < 12
    assert replies == sorted(set(replies), key=replies.index)  # none twice, order kept


async def test_udp_duplicate_sends_some_answers_twice(server_driver: str) -> None:
    replies = await _datagram_replies(server_driver, "duplicate=0.5", 12)
    assert set(replies) == {b"%d" % n for n in range(12)}
    assert 12 < len(replies) < 24


async def test_each_answered_datagram_names_the_faults_its_answer_got(
    server_driver: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_echo")
    recorder = EventRecorder(forward_to=LoggingSink())
    replies = await _datagram_replies(server_driver, "drop=0.3,duplicate=0.3", 12, recorder)
    answered = recorder.of_kind(DatagramAnswered)
    assert len(answered) == 12
    assert sum(event.replies for event in answered) == len(replies)
    for event in answered:
        expected = {0: "drop", 1: None, 2: "duplicate"}[event.replies]
        assert event.fault == expected, event
    assert {event.fault for event in answered} == {"drop", None, "duplicate"}
    lines = [r.getMessage() for r in caplog.records if "datagram of" in r.getMessage()]
    assert sum(line.endswith("(answered with 2; fault: duplicate)") for line in lines) == sum(
        event.fault == "duplicate" for event in answered
    )
    assert sum(line.endswith("(answered with 1)") for line in lines) == sum(
        event.fault is None for event in answered
    )


async def test_udp_reorder_sends_a_held_answer_after_the_next(server_driver: str) -> None:
    replies = await _datagram_replies(server_driver, "reorder=0.5", 12)
    sent = [b"%d" % n for n in range(12)]
    assert set(sent[:-1]) <= set(replies) <= set(sent)  # only the last can still be held
    assert len(replies) == len(set(replies))
    assert replies != sorted(replies, key=sent.index)


async def test_udp_delay_still_answers_every_datagram(server_driver: str) -> None:
    replies = await _datagram_replies(server_driver, "delay=10ms", 4)
    assert replies == [b"0", b"1", b"2", b"3"]
