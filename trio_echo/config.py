"""Configuration shared by both drivers: frozen, validated at construction.

The same classes configure the Trio driver, the blocking driver and the CLI,
so a knob means the same thing, with the same default, everywhere. A bad
value fails when the object is built, with a :class:`~trio_echo.errors.ConfigError`
that names the field.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

import attrs

from .errors import ConfigError

DEFAULT_HOST = "127.0.0.1"
"""Loopback: exposing a server to the network must be an explicit choice."""

DEFAULT_PORT = 3100
"""The note's port, for every protocol (its greeting pair used privileged port 13)."""

NOTE_MESSAGE = "{i} - Send Message"
"""The note's client's message; ``{i}`` becomes the message's index."""

NOTE_COUNT = 7
"""How many messages the note's client sends."""

GREETING_MESSAGE = "Hello from client"
"""The line the note's greeting client sends (the codec adds the newline)."""


class WireProtocol(enum.Enum):
    """The three wire protocols (DESIGN.md section 2)."""

    REPLY = "reply"
    """Every chunk read goes back as ``Re:`` + at most 124 bytes (the note's pair A)."""
    GREETING = "greeting"
    """One line in, ``Hello From Server\\n`` out, close (the note's pair B)."""
    ECHO = "echo"
    """RFC 862: every byte back unchanged until the peer closes."""


def _check(predicate: Callable[[Any], bool], what: str) -> Callable[[Any, Any, Any], None]:
    def validate(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not predicate(value):
            raise ConfigError(f"{attribute.name} must be {what}, not {value!r}")

    return validate


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_port = _check(lambda v: _is_int(v) and 0 <= v <= 65535, "a port number from 0 to 65535")
_positive_int = _check(lambda v: _is_int(v) and v > 0, "a positive integer")
_host = _check(lambda v: isinstance(v, str) and v != "" and v.isprintable(), "a host name")
_positive_seconds = _check(
    lambda v: v is None or (_is_number(v) and 0 < v < float("inf")), "a positive number of seconds"
)
_non_negative_seconds = _check(
    lambda v: _is_number(v) and 0 <= v < float("inf"), "zero or a positive number of seconds"
)
_protocol = _check(lambda v: isinstance(v, WireProtocol), "reply, greeting or echo")
_flag = _check(lambda v: isinstance(v, bool), "True or False")


@attrs.frozen(kw_only=True)
class ServerConfig:
    """How a server listens, speaks and protects itself.

    The limits default to what production servers ship: nginx closes a client
    that sends nothing for 60 s (``client_body_timeout``) and gives up on a
    client that reads nothing for 60 s (``send_timeout``); HAProxy and nginx
    cap concurrent clients per worker around a thousand; hypercorn waits a few
    seconds for requests in flight on shutdown.
    """

    host: str = attrs.field(default=DEFAULT_HOST, validator=_host)
    port: int = attrs.field(default=DEFAULT_PORT, validator=_port)
    protocol: WireProtocol = attrs.field(default=WireProtocol.REPLY, validator=_protocol)
    once: bool = attrs.field(default=False, validator=_flag)
    """Serve one client, then exit (the note's server's behaviour)."""
    max_line: int = attrs.field(default=65536, validator=_positive_int)
    """Longest greeting line accepted, in bytes, not counting the newline."""
    idle_timeout: float | None = attrs.field(default=60.0, validator=_positive_seconds)
    """Close a connection that sends nothing for this long; None waits forever."""
    send_timeout: float | None = attrs.field(default=60.0, validator=_positive_seconds)
    """Close a connection whose peer stops taking bytes for this long; None waits forever.

    The blocking driver restarts the timer whenever the peer takes a byte
    (``SO_SNDTIMEO``); the Trio driver, whose streams report no partial
    progress, gives each write this long as a whole. Either way a client that
    stops reading cannot hold its slot.
    """
    max_connections: int = attrs.field(default=1024, validator=_positive_int)
    """Clients served at once; later ones wait in the listen backlog."""
    grace: float = attrs.field(default=5.0, validator=_non_negative_seconds)
    """On shutdown, how long connections in flight may take to finish."""
    backlog: int = attrs.field(default=1024, validator=_positive_int)
    """The listen backlog handed to the kernel."""
    receive_size: int = attrs.field(default=65536, validator=_positive_int)
    """Most bytes taken from the network in one read."""


@attrs.frozen(kw_only=True)
class ClientConfig:
    """What a client connects to and what conversation it holds."""

    host: str = attrs.field(default=DEFAULT_HOST, validator=_host)
    port: int = attrs.field(default=DEFAULT_PORT, validator=_port)
    protocol: WireProtocol = attrs.field(default=WireProtocol.REPLY, validator=_protocol)
    count: int = attrs.field(default=NOTE_COUNT, validator=_positive_int)
    """Messages per session (reply and echo; a greeting session is one line)."""
    message: str | None = attrs.field(default=None)
    """Message template, ``{i}`` replaced by the index; None means the note's."""
    connections: int = attrs.field(default=1, validator=_positive_int)
    """Sessions run at once."""
    timeout: float | None = attrs.field(default=30.0, validator=_positive_seconds)
    """Limit on connecting and on waiting for each reply; None waits forever."""
    max_line: int = attrs.field(default=65536, validator=_positive_int)
    """Longest greeting line accepted from the server."""
    receive_size: int = attrs.field(default=65536, validator=_positive_int)
    """Most bytes taken from the network in one read."""

    @message.validator
    def _check_message(self, _attribute: attrs.Attribute[Any], value: str | None) -> None:
        if value is None:
            return
        if not isinstance(value, str) or value == "":
            raise ConfigError("message must be a non-empty string")
        if self.protocol is WireProtocol.GREETING and "\n" in value:
            raise ConfigError("a greeting message is one line: it cannot contain a newline")

    def messages(self) -> list[bytes]:
        """The bytes of each message one session sends, in order."""
        if self.protocol is WireProtocol.GREETING:
            template = GREETING_MESSAGE if self.message is None else self.message
            return [encode_argument(template.replace("{i}", "0"))]
        template = NOTE_MESSAGE if self.message is None else self.message
        return [encode_argument(template.replace("{i}", str(i))) for i in range(self.count)]


def encode_argument(text: str) -> bytes:
    """Encode command-line text back to the exact bytes the user typed."""
    return text.encode("utf-8", "surrogateescape")
