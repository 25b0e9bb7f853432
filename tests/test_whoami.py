"""The ``whoami`` protocol: the codec whole and broken, both drivers on every transport.

The server speaks first: one JSON line naming itself, its process, the
listener and the addresses it saw, then a clean close, whatever the client
sends. Behind a ``?proxy=`` listener ``client`` is the proxy and
``original`` the address the header gave. The client refuses anything
that is not such a line, escaped, and a run of many summarises the answers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from loopback import HOST, client_config, run_session, server_config

from trio_echo import Connected, Disconnected
from trio_echo.codec import Close, Opening, Send, client_codec, server_codec
from trio_echo.codec.whoami import Answer, Identity, WhoamiServer, answer_line, parse_answer
from trio_echo.config import MAX_NAME, ClientConfig, ServerConfig, WireProtocol
from trio_echo.errors import (
    ConfigError,
    IncompleteReply,
    LocalProtocolError,
    UnexpectedData,
    WrongReply,
)
from trio_echo.session import Exchange, SessionResult
from trio_echo.testing import EventRecorder, serve
from trio_echo.transport.spec import parse_listen_spec, parse_target
from trio_echo.whoami_tally import WhoamiTally, host_of

if TYPE_CHECKING:
    from tls_certs import TlsFiles

pytest_plugins = ["tls_certs"]

TIMEOUT = 30.0
CLI = (sys.executable, "-m", "trio_echo")
WHOAMI_CLIENT = (*CLI, "client", "--protocol", "whoami")
IDENTITY = Identity("alpha", 4242)
OPENING = Opening("tcp://127.0.0.1:7?protocol=whoami", "127.0.0.1:5000")


# --- the codec ------------------------------------------------------------------------------


def test_the_server_speaks_first_one_line_then_closes() -> None:
    codec = server_codec(WireProtocol.WHOAMI, identity=IDENTITY)
    assert codec.speaks_first
    events = codec.open(OPENING)
    assert isinstance(events[0], Send) and isinstance(events[1], Close)
    assert codec.finished
    assert json.loads(events[0].data) == {
        "server": "alpha",
        "pid": 4242,
        "listener": OPENING.listener,
        "client": "127.0.0.1:5000",
        "original": None,
    }
    with pytest.raises(LocalProtocolError):
        codec.receive_data(b"more")
    with pytest.raises(LocalProtocolError):
        codec.open(OPENING)


def test_other_protocols_do_not_speak_first() -> None:
    for protocol in (WireProtocol.REPLY, WireProtocol.GREETING, WireProtocol.ECHO):
        codec = server_codec(protocol)
        assert not codec.speaks_first
        assert codec.open(OPENING) == [] and not codec.finished


@given(name=st.text(min_size=1, max_size=60), pid=st.integers(0, 2**22))
def test_any_name_makes_one_printable_ascii_line_that_reads_back(name: str, pid: int) -> None:
    line = answer_line(Identity(name, pid), Opening("l", "[::1]:9", "10.0.0.1:8"))
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert all(0x20 <= byte < 0x7F for byte in line[:-1])
    assert parse_answer(line) == Answer(name, pid, "l", "[::1]:9", "10.0.0.1:8")


@given(cut=st.integers(1, 130))
def test_the_client_takes_the_line_split_anywhere(cut: int) -> None:
    line = answer_line(IDENTITY, OPENING)
    codec = client_codec(WireProtocol.WHOAMI)
    assert codec.send(b"whoami") == b"whoami"
    first = codec.receive_data(line[:cut])
    rest = codec.receive_data(line[cut:]) if line[cut:] else []
    (reply,) = first + rest
    assert parse_answer(reply.data).server == "alpha"


@pytest.mark.parametrize(
    "line",
    [
        b"Hello From Server",
        b"Re:whoami",
        b"[1, 2]",
        b'{"server": "a"}',
        b'{"server": 1, "pid": 2, "listener": "l", "client": "c", "original": null}',
        b'{"server": "a", "pid": true, "listener": "l", "client": "c", "original": null}',
        b'{"server": "a", "pid": 1, "listener": "l", "client": "c", "original": 5}',
        b"\xff\xfe\x1b[31m",
    ],
)
def test_a_line_that_is_not_whoami_json_is_a_wrong_reply_escaped(line: bytes) -> None:
    codec = client_codec(WireProtocol.WHOAMI)
    codec.send(b"whoami")
    with pytest.raises(WrongReply, match="not a whoami server's JSON line") as caught:
        codec.receive_data(line + b"\n")
    assert "\x1b" not in str(caught.value)


def test_bytes_after_the_line_or_a_close_mid_line_are_errors() -> None:
    line = answer_line(IDENTITY, OPENING)
    codec = client_codec(WireProtocol.WHOAMI)
    codec.send(b"whoami")
    with pytest.raises(UnexpectedData, match="after its whoami line"):
        codec.receive_data(line + b"extra")
    codec = client_codec(WireProtocol.WHOAMI)
    codec.send(b"whoami")
    codec.receive_data(line[:20])
    with pytest.raises(IncompleteReply, match="not a whole whoami line"):
        codec.receive_eof()
    codec = client_codec(WireProtocol.WHOAMI)
    codec.send(b"whoami")
    (reply,) = codec.receive_data(line[:-1]) + codec.receive_eof()  # no newline, then close
    assert parse_answer(reply.data).pid == 4242


# --- the name ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "x" * (MAX_NAME + 1), "a\x1b[2Jb", "tab\there", "\u202e", 7])
def test_a_hostile_name_is_refused_in_one_escaped_line(name: object) -> None:
    with pytest.raises(ConfigError, match="server name must be") as caught:
        ServerConfig(name=name)  # type: ignore[arg-type]
    message = str(caught.value)
    assert message.isprintable() and "\n" not in message


def test_the_name_defaults_to_the_host_name() -> None:
    assert ServerConfig().name == os.uname().nodename


def test_a_hostile_name_on_the_command_line_is_one_line_and_no_traceback() -> None:
    completed = subprocess.run(
        [*CLI, "serve", "--name", "evil\x1b]0;pwned\x07"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert completed.returncode == 2
    (line,) = completed.stderr.splitlines()
    assert "server name must be" in line and "\x1b" not in line and "\x07" not in line


# --- both drivers, every stream transport ------------------------------------------------------


async def whoami_over(
    server_driver: str, client_driver: str, config: ServerConfig, client: ClientConfig
) -> tuple[Answer, EventRecorder]:
    log = EventRecorder()
    with trio.fail_after(TIMEOUT):
        async with serve(server_driver, config, recorder=log):
            result = await run_session(client_driver, client)
            await log.wait_ended(1)
    assert result.error is None
    (exchange,) = result.exchanges
    return parse_answer(exchange.reply), log


async def test_whoami_over_tcp_says_who_and_whom_then_closes_cleanly(
    server_driver: str, client_driver: str
) -> None:
    config = server_config(protocol=WireProtocol.WHOAMI, name="alpha")
    log = EventRecorder()
    with trio.fail_after(TIMEOUT):
        async with serve(server_driver, config, recorder=log) as server:
            client = client_config(server.address, protocol=WireProtocol.WHOAMI)
            result = await run_session(client_driver, client)
            (end,) = await log.wait_ended(1)
    assert result.error is None
    answer = parse_answer(result.exchanges[0].reply)
    assert answer.server == "alpha" and answer.pid == os.getpid()
    assert answer.listener == f"tcp://{server.address}?protocol=whoami"
    assert answer.original is None and host_of(answer.client) == HOST
    (connected,) = log.of_kind(Connected)
    assert answer.client == str(connected.peer)
    assert isinstance(end, Disconnected) and end.reason == "conversation complete"
    assert end.bytes_out == len(result.exchanges[0].reply)
    assert end.bytes_in == len(b"whoami")  # what the client sent is read and discarded


async def test_whoami_over_unix_and_tls(
    server_driver: str, client_driver: str, tls_files: TlsFiles, short_dir: Path
) -> None:
    path = str(short_dir / "w.sock")
    specs = [
        parse_listen_spec(f"tls://{HOST}:0?protocol=whoami"),
        parse_listen_spec(f"unix:{path}?protocol=whoami"),
    ]
    config = server_config(listen=specs, tls=tls_files.server_settings(), name="beta")
    answers = []
    with trio.fail_after(TIMEOUT):
        async with serve(server_driver, config) as server:
            tls_target = parse_target(f"tls://{server.address}", default_port=3100)
            unix_target = parse_target(f"unix:{path}", default_port=3100)
            for target, tls in ((tls_target, tls_files.client_settings()), (unix_target, None)):
                client = ClientConfig.for_target(
                    target, protocol=WireProtocol.WHOAMI, tls=tls, timeout=20
                )
                result = await run_session(client_driver, client)
                assert result.error is None
                answers.append(parse_answer(result.exchanges[0].reply))
    tls_answer, unix_answer = answers
    assert tls_answer.server == unix_answer.server == "beta"
    assert tls_answer.listener.startswith("tls://") and host_of(tls_answer.client) == HOST
    assert unix_answer.listener.startswith("unix:") and unix_answer.client.startswith("unix:")


async def test_behind_a_proxy_v2_listener_original_is_the_header_address(
    server_driver: str, client_driver: str
) -> None:
    spec = parse_listen_spec(f"tcp://{HOST}:0?protocol=whoami&proxy=v2")
    config = server_config(listen=[spec])
    with trio.fail_after(TIMEOUT):
        async with serve(server_driver, config) as server:
            client = client_config(server.address, protocol=WireProtocol.WHOAMI, proxy_protocol=2)
            result = await run_session(client_driver, client)
    assert result.error is None
    answer = parse_answer(result.exchanges[0].reply)
    assert answer.original is not None and host_of(answer.original) == HOST
    assert host_of(answer.client) == HOST
    # the client sent the header itself: the proxy's port and the original one are its own
    assert answer.client == answer.original


async def test_a_greeting_client_refuses_a_whoami_server(server_driver: str) -> None:
    config = server_config(protocol=WireProtocol.WHOAMI)
    with trio.fail_after(TIMEOUT):
        async with serve(server_driver, config) as server:
            client = client_config(server.address, protocol=WireProtocol.GREETING)
            result = await run_session("trio", client)
    assert isinstance(result.error, WrongReply)


# --- the summary of many ---------------------------------------------------------------------


def result_with(index: int, answer: Answer) -> SessionResult:
    line = answer_line(
        Identity(answer.server, answer.pid),
        Opening(answer.listener, answer.client, answer.original),
    )
    return SessionResult(index, (Exchange(b"whoami", line),), None, 0.0, round_trips=1)


def test_the_summary_counts_servers_and_client_hosts_most_first() -> None:
    answers = [
        Answer("a", 1, "l", "10.0.0.1:5000", None),
        Answer("b", 2, "l", "10.0.0.1:5001", None),
        Answer("b", 2, "l", "[::1]:5002", "192.0.2.7:80"),
        Answer("evil\x1b[2J", 3, "l", "unix:", None),
    ]
    tally = WhoamiTally()
    tally.add_results(result_with(i, answer) for i, answer in enumerate(answers))
    lines = tally.lines()
    assert lines[0] == "4 whoami answers from 3 servers"
    assert lines[1] == "  server b pid 2: 2"
    assert "  client seen as 10.0.0.1: 2" in lines
    assert "  client seen as ::1: 1" in lines
    assert "  original client 192.0.2.7: 1" in lines
    assert all("\x1b" not in line for line in lines)


def test_host_of_keeps_what_is_not_host_and_port() -> None:
    assert host_of("[::1]:80") == "::1"
    assert host_of("1.2.3.4:80") == "1.2.3.4"
    assert host_of("unix:/tmp/s") == "unix:/tmp/s"
    assert host_of("no-port") == "no-port"


def test_one_server_answering_many_connections_from_the_command_line() -> None:
    server = subprocess.Popen(
        [*CLI, "serve", "--protocol", "whoami", "--port", "0", "--name", "gamma"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = server.stdout.readline().rsplit(":", 1)[1].strip()
        completed = subprocess.run(
            [*WHOAMI_CLIENT, "--port", port, "--connections", "30"],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        as_json = subprocess.run(
            [*WHOAMI_CLIENT, "--port", port, "--connections", "4", "--json"],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    finally:
        server.terminate()
        server.wait(TIMEOUT)
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    assert lines[0].startswith("30/30 sessions ok")
    assert lines[1:] == [
        "30 whoami answers from 1 server",
        f"  server gamma pid {server.pid}: 30",
        f"  client seen as {HOST}: 30",
    ]
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["whoami"] == {
        "answers": 4,
        "servers": [{"server": "gamma", "pid": server.pid, "answers": 4}],
        "clients": {HOST: 4},
        "originals": {},
    }


def test_whoami_server_class_is_what_the_factory_gives() -> None:
    assert isinstance(server_codec(WireProtocol.WHOAMI), WhoamiServer)


# --- UDP: one answer per datagram ---------------------------------------------------------


async def test_every_datagram_gets_one_whoami_datagram(server_driver: str) -> None:
    spec = parse_listen_spec(f"udp://{HOST}:0?protocol=whoami")
    config = server_config(listen=[spec], name="delta")
    with trio.fail_after(TIMEOUT):
        async with serve(server_driver, config) as server:
            sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
            with sock:
                await sock.connect((server.address.host, server.address.port))
                answers = []
                for datagram in (b"", b"x" * 2000, b"\x1b[31m"):
                    await sock.send(datagram)
                    answers.append(await sock.recv(65536))
                (me, port) = sock.getsockname()
    for data in answers:
        assert data.endswith(b"\n")
        answer = parse_answer(data)
        assert answer.server == "delta" and answer.pid == os.getpid()
        assert answer.listener == f"udp://{server.address}?protocol=whoami"
        assert answer.client == f"{me}:{port}" and answer.original is None


def test_the_whoami_client_is_for_stream_targets_and_one_count() -> None:
    with pytest.raises(ConfigError, match="not for udp"):
        ClientConfig.for_target(
            parse_target("udp://127.0.0.1:9", default_port=3100), protocol=WireProtocol.WHOAMI
        )
    completed = subprocess.run(
        [*CLI, "client", "--protocol", "whoami", "--count", "3"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert completed.returncode == 2
    (line,) = completed.stderr.splitlines()
    assert "--count must be 1 with --protocol whoami" in line
