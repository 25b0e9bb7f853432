"""Configuration: frozen values, checked when built, with errors that name the field."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import trio

from trio_echo import BlockingServer, ClientConfig, ConfigError, ServerConfig, WireProtocol
from trio_echo.blocking_driver import run_session as run_blocking_session


def test_defaults_follow_the_seed_but_listen_on_loopback() -> None:
    server, client = ServerConfig(), ClientConfig()
    assert (server.host, server.port, server.protocol, server.once) == (
        "127.0.0.1",
        3100,
        WireProtocol.REPLY,
        False,
    )
    assert (client.host, client.port, client.count, client.connections) == ("127.0.0.1", 3100, 7, 1)
    assert client.messages() == [f"{i} - Send Message".encode() for i in range(7)]


@pytest.mark.parametrize("config", [ServerConfig(), ClientConfig()], ids=["server", "client"])
def test_configuration_is_frozen(config: ServerConfig | ClientConfig) -> None:
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.port = 1  # type: ignore[misc]
    assert attrs.evolve(config, port=1).port == 1


@pytest.mark.parametrize(
    ("kind", "field", "value"),
    [
        (ServerConfig, "port", -1),
        (ServerConfig, "port", 65536),
        (ServerConfig, "port", "3100"),
        (ServerConfig, "port", True),
        (ServerConfig, "host", ""),
        (ServerConfig, "host", "evil\nhost"),
        (ServerConfig, "protocol", "reply"),
        (ServerConfig, "once", "yes"),
        (ServerConfig, "max_line", 0),
        (ServerConfig, "idle_timeout", -1.0),
        (ServerConfig, "idle_timeout", 0),
        (ServerConfig, "idle_timeout", float("inf")),
        (ServerConfig, "idle_timeout", float("nan")),
        (ServerConfig, "idle_timeout", 1e20),
        (ServerConfig, "send_timeout", 1e19),
        (ServerConfig, "grace", 2e9),
        (ClientConfig, "timeout", 1e10),
        (ServerConfig, "send_timeout", -5),
        (ServerConfig, "grace", -0.5),
        (ServerConfig, "max_connections", 0),
        (ServerConfig, "backlog", -1),
        (ServerConfig, "receive_size", 0),
        (ClientConfig, "port", 70000),
        (ClientConfig, "protocol", None),
        (ClientConfig, "count", 0),
        (ClientConfig, "count", -3),
        (ClientConfig, "count", 2.5),
        (ClientConfig, "connections", 0),
        (ClientConfig, "timeout", -1),
        (ClientConfig, "timeout", 0.0),
        (ClientConfig, "max_line", -1),
        (ClientConfig, "message", ""),
        (ClientConfig, "message", 5),
    ],
)
def test_bad_values_fail_at_construction_naming_the_field(
    kind: type[ServerConfig | ClientConfig], field: str, value: Any
) -> None:
    with pytest.raises(ConfigError, match=field):
        kind(**{field: value})


def test_a_greeting_message_is_one_line() -> None:
    with pytest.raises(ConfigError, match="message"):
        ClientConfig(protocol=WireProtocol.GREETING, message="two\nlines")
    assert ClientConfig(protocol=WireProtocol.REPLY, message="two\nlines").messages()[0] == (
        b"two\nlines"
    )


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="port"):
        ServerConfig(port=-1)


@pytest.mark.parametrize(
    "fields",
    [
        {"idle_timeout": None, "send_timeout": None, "grace": 0},
        {"port": 0, "idle_timeout": 0.001},
        {"port": 65535, "protocol": WireProtocol.ECHO, "once": True},
    ],
)
def test_good_server_values_are_kept(fields: dict[str, Any]) -> None:
    config = ServerConfig(**fields)
    assert all(getattr(config, name) == value for name, value in fields.items())


def test_messages_follow_the_template_and_protocol() -> None:
    assert ClientConfig(message="m{i}", count=3).messages() == [b"m0", b"m1", b"m2"]
    assert ClientConfig(protocol=WireProtocol.GREETING).messages() == [b"Hello from client"]
    assert ClientConfig(protocol=WireProtocol.GREETING, count=5).messages() == [
        b"Hello from client"
    ]
    assert ClientConfig(protocol=WireProtocol.ECHO, count=2).messages() == [
        b"0 - Send Message",
        b"1 - Send Message",
    ]


def test_messages_keep_bytes_that_are_not_utf8() -> None:
    raw = b"\x00\xff\xc3\x28 caf\xc3\xa9"
    text = raw.decode("utf-8", "surrogateescape")
    assert ClientConfig(message=text, count=1).messages() == [raw]


async def test_the_longest_timeouts_allowed_work_in_the_blocking_driver() -> None:
    """1e9 s, the bound, fits a kernel socket timeout: a session runs, nothing overflows."""
    longest = ServerConfig(port=0, idle_timeout=1e9, send_timeout=1e9)
    server = BlockingServer(longest, sink=lambda _event: None)
    (address, *_) = server.start()
    try:
        result = await trio.to_thread.run_sync(
            lambda: run_blocking_session(
                ClientConfig(host=address.host, port=address.port, timeout=1e9)
            )
        )
    finally:
        await trio.to_thread.run_sync(lambda: server.shutdown(grace=0))
    assert result.ok, result.error


@pytest.mark.parametrize("depth", [0, -1, 1025, 2.0, True, "2"])
def test_client_depth_is_a_whole_number_in_range(depth: object) -> None:
    with pytest.raises(ConfigError, match="depth must be a whole number"):
        ClientConfig(depth=depth)  # type: ignore[arg-type]


def test_client_depth_above_one_needs_an_unpaced_stream_conversation() -> None:
    assert ClientConfig(depth=1024).depth == 1024
    assert ClientConfig(protocol=WireProtocol.GREETING, depth=1).depth == 1
    with pytest.raises(ConfigError, match="reply or echo"):
        ClientConfig(protocol=WireProtocol.WHOAMI, depth=2)
    with pytest.raises(ConfigError, match="--rate"):
        ClientConfig(rate=10.0, depth=2)


def test_messages_without_an_index_are_one_message() -> None:
    assert ClientConfig(message="same").messages().fixed == b"same"
    assert ClientConfig(message="{i}-{i}").messages().fixed is None
    assert ClientConfig(message="{i}-{i}", count=20).messages()[12] == b"12-12"
    assert ClientConfig(message="caf\udce9 {i}").messages()[3] == b"caf\xe9 3"
