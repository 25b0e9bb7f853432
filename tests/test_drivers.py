"""Both drivers over real loopback sockets: every client against every server.

Each case runs against the Trio and the blocking server and, where a client
is involved, with the Trio and the blocking client, for the protocols it
concerns: the same cases, the same expected bytes. Everything happens on
127.0.0.1, port 0, under a wall-clock ``fail_after`` bound (real sockets
cannot run on a virtual clock); events are checked through a recording sink,
never through log text.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import trio
from loopback import (
    HOST,
    client_config,
    occupied_port,
    refusing_port,
    run_client,
    run_session,
    server_config,
    split_reply,
)

from trio_echo import (
    Address,
    AddressInUse,
    BlockingServer,
    BytesDiscarded,
    Connected,
    ConnectionFailed,
    ConnectionRefused,
    Disconnected,
    Exchange,
    IncompleteReply,
    MessageReceived,
    TrioServer,
    UnexpectedData,
    WireProtocol,
    WrongReply,
)
from trio_echo.codec import SERVER_GREETING, ClientCodec, ReplyReceived, client_codec, reply_for
from trio_echo.connection_log import ConnectionEvent
from trio_echo.testing import EventRecorder, serve

TIMEOUT = 30.0
"""Wall-clock bound on every test; generous, as the machine may be busy."""

SEED = [f"{i} - Send Message".encode() for i in range(7)]
GREETING_LINE = b"Hello from client"


def expected_exchanges(protocol: WireProtocol, messages: list[bytes]) -> list[Exchange]:
    """What a session of *messages* must bring back, each read whole by the server."""
    if protocol is WireProtocol.GREETING:
        return [Exchange(messages[0], SERVER_GREETING)]
    if protocol is WireProtocol.ECHO:
        return [Exchange(message, message) for message in messages]
    return [Exchange(message, reply_for(message)) for message in messages]


def answer(protocol: WireProtocol, message: bytes) -> bytes:
    """The reply to *message*, read whole by the server."""
    return expected_exchanges(protocol, [message])[0].reply


def messages_of(events: list[ConnectionEvent], peer: Address | None = None) -> bytes:
    return b"".join(
        event.data
        for event in events
        if isinstance(event, MessageReceived) and (peer is None or event.peer == peer)
    )


def template(raw: bytes) -> str:
    """The ``--message`` text that stands for exactly *raw*."""
    return raw.decode("utf-8", "surrogateescape")


# --- raw clients, to see a connection from the client's own end ----------------


class RawClient:
    """A client on a bare Trio stream, driven by the codec, whose address is known."""

    def __init__(self, stream: trio.SocketStream, protocol: WireProtocol) -> None:
        self.stream = stream
        self.codec: ClientCodec = client_codec(protocol)
        self.address = Address.from_sockaddr(stream.socket.getsockname())

    async def exchange(self, message: bytes) -> bytes:
        """Send *message*, return its whole reply."""
        await self.stream.send_all(self.codec.send(message))
        while True:
            data = await self.stream.receive_some(65536)
            events = self.codec.receive_data(data) if data else self.codec.receive_eof()
            for event in events:
                if isinstance(event, ReplyReceived):
                    return event.data


@contextlib.asynccontextmanager
async def raw_client(address: Address, protocol: WireProtocol) -> AsyncIterator[RawClient]:
    stream = await trio.open_tcp_stream(address.host, address.port)
    async with stream:
        yield RawClient(stream, protocol)


# --- the note's session, every client against every server -------------------------


async def test_seed_session_gives_the_expected_replies(
    server_driver: str, client_driver: str, protocol: WireProtocol
) -> None:
    log = EventRecorder()
    lines: list[str] = []
    with trio.fail_after(TIMEOUT):
        async with serve(server_driver, server_config(protocol=protocol), recorder=log) as server:
            config = client_config(server.address, protocol=protocol)
            result = await run_session(client_driver, config, report=lines.append)
            (end,) = await log.wait_ended(1)

    assert result.error is None
    sent = [GREETING_LINE] if protocol is WireProtocol.GREETING else SEED
    assert list(result.exchanges) == expected_exchanges(protocol, sent)
    if protocol is WireProtocol.GREETING:
        assert lines == ['sent: "Hello from client"', 'received: "Hello From Server"']
    else:
        prefix = "Re:" if protocol is WireProtocol.REPLY else ""
        assert lines == [
            line
            for i in range(7)
            for line in (f'sent: "{i} - Send Message"', f'received: "{prefix}{i} - Send Message"')
        ]
    assert messages_of(log.events) == b"".join(sent)
    assert isinstance(end, Disconnected)


async def test_fifty_clients_at_once_are_all_answered(
    server_driver: str, client_driver: str, protocol: WireProtocol
) -> None:
    """Fifty sessions at once, while another client holds its connection open."""
    log = EventRecorder()
    with trio.fail_after(TIMEOUT):
        async with serve(server_driver, server_config(protocol=protocol), recorder=log) as server:
            async with raw_client(server.address, protocol) as held:
                if protocol is not WireProtocol.GREETING:  # a greeting ends after one line
                    assert await held.exchange(b"before") == answer(protocol, b"before")
                config = client_config(server.address, protocol=protocol, connections=50)
                results = await run_client(client_driver, config)
                assert await held.exchange(b"after") == answer(protocol, b"after")
            await log.wait_ended(51)

    assert [result.index for result in results] == list(range(50))
    assert [result.error for result in results] == [None] * 50
    expected = expected_exchanges(
        protocol, [GREETING_LINE] if protocol is WireProtocol.GREETING else SEED
    )
    assert all(list(result.exchanges) == expected for result in results)
    assert server.stats.connections == 51
    assert server.stats.errors == 0


# --- bytes, not text ----------------------------------------------------------------

AWKWARD = b"\x00NUL\xff\xfe\xc3\x28{i}\xed\xa0\x80\r\x1b[2J\x00"
"""NUL, bytes that are never valid UTF-8, CR and a terminal escape; ``{i}`` is the index."""


@pytest.mark.parametrize(
    "raw", [AWKWARD, bytes(range(256)).replace(b"\n", b"")], ids=["awkward", "every-byte"]
)
async def test_binary_messages_travel_byte_exact(
    server_driver: str, client_driver: str, protocol: WireProtocol, raw: bytes
) -> None:
    log = EventRecorder()
    with trio.fail_after(TIMEOUT):
        async with serve(server_driver, server_config(protocol=protocol), recorder=log) as server:
            config = client_config(
                server.address, protocol=protocol, message=template(raw), count=2
            )
            result = await run_session(client_driver, config)
            await log.wait_ended(1)

    sent = [raw.replace(b"{i}", str(i).encode()) for i in range(2)]
    if protocol is WireProtocol.GREETING:
        sent = [raw.replace(b"{i}", b"0")]
    assert result.error is None
    assert list(result.exchanges) == expected_exchanges(protocol, sent)
    assert messages_of(log.events) == b"".join(sent)


@pytest.mark.parametrize("receive_size", [65536, 100])
async def test_a_long_message_comes_back_in_re_pieces(
    server_driver: str, client_driver: str, receive_size: int
) -> None:
    """10 KB through ``reply``: the server answers in pieces of at most 124 bytes,
    also when it reads the message in many small chunks, and the client
    recognises the whole split reply."""
    message = bytes(byte for byte in range(256) if byte != ord("R")) * 40
    assert len(message) > 10_000
    log = EventRecorder()
    with trio.fail_after(TIMEOUT):
        async with serve(
            server_driver, server_config(receive_size=receive_size), recorder=log
        ) as server:
            config = client_config(server.address, message=template(message), count=2)
            result = await run_session(client_driver, config)
            await log.wait_ended(1)

    assert result.error is None
    assert [exchange.sent for exchange in result.exchanges] == [message, message]
    for exchange in result.exchanges:
        pieces = split_reply(exchange.reply)
        assert b"".join(pieces) == message
        assert all(1 <= len(piece) <= 124 for piece in pieces)
        assert len(pieces) >= len(message) // 124
    assert messages_of(log.events) == message * 2
    reads = [event for event in log.events if isinstance(event, MessageReceived)]
    assert all(len(event.data) <= receive_size for event in reads)


async def test_a_long_message_echoes_back_whole(server_driver: str, client_driver: str) -> None:
    message = bytes(range(256)) * 40
    with trio.fail_after(TIMEOUT):
        async with serve(server_driver, server_config(protocol=WireProtocol.ECHO)) as server:
            config = client_config(
                server.address, protocol=WireProtocol.ECHO, message=template(message), count=2
            )
            result = await run_session(client_driver, config)
    assert result.error is None
    assert list(result.exchanges) == [Exchange(message, message)] * 2


# --- the greeting's line, over sockets ---------------------------------------------------


async def test_greeting_reports_bytes_after_the_line(server_driver: str) -> None:
    extra = b"bytes nobody asked for \x00\xff"
    log = EventRecorder()
    with trio.fail_after(TIMEOUT):
        async with serve(
            server_driver, server_config(protocol=WireProtocol.GREETING), recorder=log
        ) as server:
            stream = await trio.open_tcp_stream(HOST, server.address.port)
            async with stream:
                await stream.send_all(b"the line\n" + extra)
                received = b""
                while data := await stream.receive_some(1024):
                    received += data
            (end,) = await log.wait_ended(1)

    assert received == SERVER_GREETING
    assert messages_of(log.events) == b"the line"
    assert sum(event.size for event in log.events if isinstance(event, BytesDiscarded)) == len(
        extra
    )
    assert isinstance(end, Disconnected)
    assert end.bytes_in == len(b"the line\n" + extra)


async def test_greeting_answers_a_line_cut_short_by_eof(server_driver: str) -> None:
    log = EventRecorder()
    with trio.fail_after(TIMEOUT):
        async with serve(
            server_driver, server_config(protocol=WireProtocol.GREETING), recorder=log
        ) as server:
            stream = await trio.open_tcp_stream(HOST, server.address.port)
            async with stream:
                await stream.send_all(b"no newline \x00\xff")
                await stream.send_eof()
                received = b""
                while data := await stream.receive_some(1024):
                    received += data
            await log.wait_ended(1)
    assert received == SERVER_GREETING
    assert messages_of(log.events) == b"no newline \x00\xff"


# --- life cycle -------------------------------------------------------------------------


async def test_once_serves_one_client_then_stops(server_driver: str, client_driver: str) -> None:
    log = EventRecorder()
    with trio.fail_after(TIMEOUT):
        async with serve(server_driver, server_config(once=True), recorder=log) as server:
            config = client_config(server.address)
            first = await run_session(client_driver, config)
            await server.stopped()
            second = await run_session(client_driver, config)

    assert first.error is None
    assert len(first.exchanges) == 7
    assert isinstance(second.error, ConnectionRefused)
    assert server.stats.connections == 1
    assert [type(event) for event in log.events if not isinstance(event, MessageReceived)] == [
        Connected,
        Disconnected,
    ]


async def test_connection_refused_is_named(client_driver: str) -> None:
    with trio.fail_after(TIMEOUT), refusing_port() as port:
        result = await run_session(client_driver, client_config(Address(HOST, port)))
    assert isinstance(result.error, ConnectionRefused)
    assert result.error.errno == errno.ECONNREFUSED
    assert f"127.0.0.1:{port}" in str(result.error)
    assert result.exchanges == ()
    assert not result.ok


async def test_a_taken_port_is_address_in_use(server_driver: str) -> None:
    with trio.fail_after(TIMEOUT), occupied_port() as port:
        config = server_config(port=port)
        if server_driver == "trio":
            async with trio.open_nursery() as nursery:
                with pytest.raises(AddressInUse) as caught:
                    await nursery.start(TrioServer(config).run)
        else:
            with pytest.raises(AddressInUse) as caught:
                BlockingServer(config).start()
    assert caught.value.errno == errno.EADDRINUSE
    assert str(port) in str(caught.value)


# --- clients facing a server that breaks the contract ------------------------------------

Answer = Callable[[trio.SocketStream], Awaitable[None]]


@contextlib.asynccontextmanager
async def fake_server(answer: Answer) -> AsyncIterator[Address]:
    """A bare Trio server that runs *answer* on every connection."""
    listeners = await trio.open_tcp_listeners(0, host=HOST)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, answer, listeners)
        yield Address.from_sockaddr(listeners[0].socket.getsockname())
        nursery.cancel_scope.cancel()


async def drain(stream: trio.SocketStream) -> None:
    """Read until the client closes."""
    with contextlib.suppress(trio.BrokenResourceError):
        while await stream.receive_some(1024):
            pass


def answering(*replies: bytes, close: bool = False) -> Answer:
    """A fake server that answers each message with the next of *replies*."""

    async def answer(stream: trio.SocketStream) -> None:
        for reply in replies:
            await stream.receive_some(1024)
            await stream.send_all(reply)
        if close:
            await stream.aclose()
        else:
            await drain(stream)

    return answer


@pytest.mark.parametrize(
    ("protocol", "answer", "error", "exchanged"),
    [
        (WireProtocol.REPLY, answering(b"Re:something else"), WrongReply, 0),
        (
            WireProtocol.REPLY,
            answering(b"Re:0 - Send Message", b"Re:0 - Send Message"),
            WrongReply,
            1,
        ),
        (WireProtocol.REPLY, answering(b"Re:0 - Se", close=True), IncompleteReply, 0),
        (WireProtocol.REPLY, answering(b"", close=True), IncompleteReply, 0),
        (WireProtocol.ECHO, answering(b"0 - Send Massage"), WrongReply, 0),
        (WireProtocol.GREETING, answering(SERVER_GREETING + b"more"), UnexpectedData, 0),
    ],
    ids=["wrong", "wrong-second", "incomplete", "closed", "echo-wrong", "greeting-extra"],
)
async def test_a_contract_breaking_server_is_named(
    client_driver: str,
    protocol: WireProtocol,
    answer: Answer,
    error: type[Exception],
    exchanged: int,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with fake_server(answer) as address:
            result = await run_session(client_driver, client_config(address, protocol=protocol))
    assert isinstance(result.error, error)
    assert len(result.exchanges) == exchanged


# --- what the server reports ------------------------------------------------------------


@pytest.mark.parametrize("wants_messages", [True, False], ids=["messages", "quiet"])
async def test_server_reports_connection_events_in_order(
    server_driver: str, protocol: WireProtocol, wants_messages: bool
) -> None:
    """A quiet sink gets no message events (the hot path skips them), and the same counts."""
    log = EventRecorder(wants_messages=wants_messages)
    messages = [GREETING_LINE] if protocol is WireProtocol.GREETING else [b"one", b"two \x00\xff"]
    with trio.fail_after(TIMEOUT):
        async with serve(server_driver, server_config(protocol=protocol), recorder=log) as server:
            async with raw_client(server.address, protocol) as client:
                replies = [await client.exchange(message) for message in messages]
            (end,) = await log.wait_ended(1)

    events = log.events
    assert isinstance(events[0], Connected)
    assert all(isinstance(event, MessageReceived) for event in events[1:-1])
    assert len(events) == (2 + len(messages) if wants_messages else 2)
    assert events[-1] is end
    assert isinstance(end, Disconnected)
    assert {event.peer for event in events} == {client.address}
    assert {getattr(event, "connection", None) for event in events} == {events[0].connection}
    times = [event.at for event in events]
    assert times == sorted(times)
    assert messages_of(events) == (b"".join(messages) if wants_messages else b"")

    wire_in = sum(len(client_codec(protocol).send(message)) for message in messages)
    wire_out = sum(len(reply) for reply in replies)
    assert (end.bytes_in, end.bytes_out) == (wire_in, wire_out)
    assert end.reason == (
        "conversation complete" if protocol is WireProtocol.GREETING else "closed by peer"
    )
    stats = server.stats
    assert (stats.connections, stats.bytes_in, stats.bytes_out, stats.errors) == (
        1,
        wire_in,
        wire_out,
        0,
    )


async def test_server_stats_add_up_over_sessions(server_driver: str, client_driver: str) -> None:
    log = EventRecorder()
    with trio.fail_after(TIMEOUT):
        async with serve(server_driver, server_config(), recorder=log) as server:
            config = client_config(server.address, connections=3)
            results = await run_client(client_driver, config)
            await log.wait_ended(3)
    assert all(result.ok for result in results)
    sent = sum(len(message) for message in SEED) * 3
    assert server.stats.connections == 3
    assert server.stats.bytes_in == sent
    assert server.stats.bytes_out == sent + len(b"Re:") * len(SEED) * 3
    assert server.stats.summary() == (
        f"served 3 connections, {sent} bytes in, {server.stats.bytes_out} bytes out, 0 errors"
    )


async def test_a_reset_connection_leaves_the_others_alone(
    server_driver: str, client_driver: str
) -> None:
    log = EventRecorder()
    with trio.fail_after(TIMEOUT):
        async with serve(server_driver, server_config(), recorder=log) as server:
            async with raw_client(server.address, WireProtocol.REPLY) as steady:
                assert await steady.exchange(b"before") == b"Re:before"

                doomed = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                await doomed.connect((HOST, server.address.port))
                doomed_address = Address.from_sockaddr(doomed.getsockname())
                await doomed.send(b"hello")
                reply = b""
                while len(reply) < len(b"Re:hello"):
                    reply += await doomed.recv(1024)
                assert reply == b"Re:hello"
                doomed.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                doomed.close()
                (failed,) = await log.wait_ended(1)

                results = await run_client(
                    client_driver, client_config(server.address, connections=5)
                )
                assert await steady.exchange(b"after") == b"Re:after"
            await log.wait_ended(7)

    assert isinstance(failed, ConnectionFailed)
    assert failed.peer == doomed_address
    assert failed.errno == errno.ECONNRESET
    assert all(result.ok and len(result.exchanges) == 7 for result in results)
    assert server.stats.connections == 7
    assert (server.stats.errors, server.stats.resets) == (0, 1)
