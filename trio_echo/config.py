"""Configuration shared by both drivers: frozen, validated at construction.

The same classes configure the Trio driver, the blocking driver and the CLI,
so a knob means the same thing, with the same default, everywhere. A bad
value fails when the object is built, with a :class:`~trio_echo.errors.ConfigError`
that names the field.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, overload

import attrs

from .address import Address
from .errors import ConfigError
from .escape import escape_text
from .faults.spec import FaultSpec
from .proxy_gate import LOOPBACK, parse_networks
from .transport.reflection import ReflectionPolicy
from .transport.spec import ListenSpec, Transport
from .transport.tls import TlsClientSettings, TlsServerSettings
from .validation import (
    check,
    flag,
    host,
    non_negative_int,
    non_negative_seconds,
    optional,
    port,
    positive_int,
    positive_seconds,
)
from .wire import WireProtocol as WireProtocol  # re-exported: configuration names it

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


WHOAMI_MESSAGE = "whoami"
"""What a whoami client sends (the server answers before reading and discards it)."""


_protocol = check(lambda v: isinstance(v, WireProtocol), "reply, greeting, echo or whoami")

MAX_DEPTH = 1024
"""Most messages a client keeps in flight on one connection (``--depth``)."""

MAX_NAME = 255
"""The longest server ``--name``, in characters (a DNS name's limit)."""


def host_name() -> str:
    """This host's name, as a server calls itself by default: escaped and bounded to be valid."""
    return escape_text(socket.gethostname())[:MAX_NAME] or "localhost"


def _name(_instance: Any, _attribute: attrs.Attribute[Any], value: Any) -> None:
    valid = isinstance(value, str) and 0 < len(value) <= MAX_NAME and value.isprintable()
    if not valid:
        shown = escape_text(value) if isinstance(value, str) else repr(value)
        raise ConfigError(f"server name must be 1 to {MAX_NAME} printable characters, not {shown}")


def _proxy_timeout(_instance: Any, _attribute: attrs.Attribute[Any], value: Any) -> None:
    valid = isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 1e9
    if not valid:
        raise ConfigError(f"proxy timeout must be a positive number of seconds, not {value!r}")


def _proxy_trusted(_instance: Any, _attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, tuple) or not value or not all(isinstance(t, str) for t in value):
        raise ConfigError(f"trusted proxies must be one or more CIDR texts, not {value!r}")
    try:
        parse_networks(value)
    except ValueError as exc:
        raise ConfigError(f"trusted proxy {exc}") from None


def _proxy_protocol(instance: Any, _attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    if value not in (1, 2) or isinstance(value, bool):
        raise ConfigError(f"PROXY protocol version must be 1 or 2, not {value!r}")
    if not instance.transport.is_stream:
        raise ConfigError("a PROXY header opens a stream connection: not for udp:// targets")


def _listen_specs(specs: Iterable[ListenSpec]) -> tuple[ListenSpec, ...]:
    return tuple(specs)


@attrs.frozen(kw_only=True)
class ServerConfig:
    """How a server listens, speaks and protects itself.

    The limits default to what production servers ship: nginx closes a client
    that sends nothing for 60 s (``client_body_timeout``) and gives up on a
    client that reads nothing for 60 s (``send_timeout``); HAProxy and nginx
    cap concurrent clients per worker around a thousand; hypercorn waits a few
    seconds for requests in flight on shutdown.
    """

    host: str = attrs.field(default=DEFAULT_HOST, validator=host)
    port: int = attrs.field(default=DEFAULT_PORT, validator=port)
    protocol: WireProtocol = attrs.field(default=WireProtocol.REPLY, validator=_protocol)
    once: bool = attrs.field(default=False, validator=flag)
    """Serve one client, then exit (the note's server's behaviour)."""
    max_line: int = attrs.field(default=65536, validator=positive_int)
    """Longest greeting line accepted, in bytes, not counting the newline."""
    line_timeout: float | None = attrs.field(default=60.0, validator=positive_seconds)
    """Longest time a greeting line may take to arrive in all, from accept; None: no limit.

    The idle timeout restarts with every byte, so a peer sending one byte
    every few seconds would hold its slot for ever; this deadline does not
    move (nginx's ``client_header_timeout``, 60 s).
    """
    idle_timeout: float | None = attrs.field(default=60.0, validator=positive_seconds)
    """Close a connection that sends nothing for this long; None waits forever."""
    send_timeout: float | None = attrs.field(default=60.0, validator=positive_seconds)
    """Close a connection whose peer stops taking bytes for this long; None waits forever.

    Both drivers restart the timer whenever the peer takes a byte (the
    blocking one through ``SO_SNDTIMEO``, the Trio one through streams that
    see partial progress), so a client reading slowly but steadily is not
    dropped, and one that stops reading cannot hold its slot. Over TLS, whose
    stream reports no partial progress, each write gets this long as a whole.
    """
    max_connections: int = attrs.field(default=1024, validator=positive_int)
    """Clients served at once; later ones wait in the listen backlog."""
    reclaim_after: float | None = attrs.field(default=1.0, validator=positive_seconds)
    """With every slot taken and a client waiting, close the connection quiet longest
    if it has been quiet this long, to serve the newcomer; None: never (see ``reclaim``)."""
    grace: float = attrs.field(default=5.0, validator=non_negative_seconds)
    """On shutdown, how long connections in flight may take to finish."""
    backlog: int = attrs.field(default=1024, validator=positive_int)
    """The listen backlog handed to the kernel."""
    receive_size: int = attrs.field(default=65536, validator=positive_int)
    """Most bytes taken from the network in one read."""
    listen: tuple[ListenSpec, ...] = attrs.field(default=(), converter=_listen_specs)
    """Where to listen, one spec per listener; empty means ``tcp://host:port``."""
    tls: TlsServerSettings | None = attrs.field(default=None, validator=optional(TlsServerSettings))
    """Certificate, key and client CA for ``tls://`` listeners."""
    reflection: ReflectionPolicy = attrs.field(
        factory=ReflectionPolicy, validator=attrs.validators.instance_of(ReflectionPolicy)
    )
    """How ``udp://`` listeners bound their answers per source (see ``transport.reflection``)."""
    faults: FaultSpec | None = attrs.field(default=None, validator=optional(FaultSpec))
    """Faults every listener's connections may get (``?fault=`` overrides); None: none."""
    seed: int = attrs.field(default=0, validator=non_negative_int)
    """Seeds which connection gets which fault, and how (keyed by connection number)."""
    drain: float = attrs.field(default=0.0, validator=non_negative_seconds)
    """On the first stop signal, serve and accept on this long before the grace period; 0: no drain.

    It lets a load balancer take the instance out first (agnhost's ``--delay-shutdown``).
    """
    stats_every: float | None = attrs.field(default=None, validator=positive_seconds)
    """Log the summary line every this many seconds while serving; None: only on exit."""
    proxy_timeout: float = attrs.field(default=5.0, validator=_proxy_timeout)
    """Seconds a ``?proxy=`` listener waits for a connection's whole PROXY header."""
    proxy_trusted: tuple[str, ...] = attrs.field(default=LOOPBACK, validator=_proxy_trusted)
    """Addresses or CIDR networks a ``?proxy=`` listener accepts a PROXY header from."""
    name: str = attrs.field(factory=host_name, validator=_name)
    """What a ``whoami`` answer calls this server (the host name unless given)."""

    @listen.validator
    def _check_listen(self, _attribute: attrs.Attribute[Any], value: tuple[Any, ...]) -> None:
        for spec in value:
            if not isinstance(spec, ListenSpec):
                raise ConfigError(f"listen takes listener specs, not {spec!r}")

    @tls.validator
    def _check_tls(self, _attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is None and any(spec.transport is Transport.TLS for spec in self.listen):
            raise ConfigError("a tls:// listener needs a certificate: give --certfile")

    def listeners(self) -> tuple[ListenSpec, ...]:
        """Every listener, each with its protocol decided (its own, or the default)."""
        specs = self.listen or (
            ListenSpec(transport=Transport.TCP, host=self.host, port=self.port),
        )
        return tuple(
            spec if spec.protocol is not None else attrs.evolve(spec, protocol=self.protocol)
            for spec in specs
        )


@attrs.frozen(kw_only=True)
class ClientConfig:
    """What a client connects to and what conversation it holds."""

    host: str = attrs.field(default=DEFAULT_HOST, validator=host)
    port: int = attrs.field(default=DEFAULT_PORT, validator=port)
    protocol: WireProtocol = attrs.field(default=WireProtocol.REPLY, validator=_protocol)
    count: int = attrs.field(default=NOTE_COUNT, validator=positive_int)
    """Messages per session (reply and echo; a greeting session is one line)."""
    message: str | None = attrs.field(default=None)
    """Message template, ``{i}`` replaced by the index; None means the note's."""
    connections: int = attrs.field(default=1, validator=positive_int)
    """Sessions run at once."""
    timeout: float | None = attrs.field(default=30.0, validator=positive_seconds)
    """Limit on connecting and on waiting for each reply; None waits forever."""
    max_line: int = attrs.field(default=65536, validator=positive_int)
    """Longest greeting line accepted from the server."""
    receive_size: int = attrs.field(default=65536, validator=positive_int)
    """Most bytes taken from the network in one read."""
    transport: Transport = attrs.field(
        default=Transport.TCP, validator=attrs.validators.instance_of(Transport)
    )
    """How to reach the server: ``tcp``, ``udp``, ``tls`` or ``unix``."""
    path: str | None = attrs.field(default=None)
    """The socket file of a ``unix`` server (host and port are then unused)."""
    tls: TlsClientSettings | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(attrs.validators.instance_of(TlsClientSettings)),
    )
    """Trust and identity for a ``tls`` server; None: the system's trust, SNI from the host."""
    retries: int = attrs.field(default=2, validator=non_negative_int)
    """UDP: how often a message whose answer did not come within the timeout is sent again."""
    duration: float | None = attrs.field(default=None, validator=positive_seconds)
    """Seconds each session sends for, ``count`` then unused; None: ``count`` messages."""
    rate: float | None = attrs.field(
        default=None,
        validator=check(
            lambda v: v is None or (isinstance(v, int | float) and 0 < v <= 1e9 and v == v),
            "a positive number of round trips per second, at most 1e9",
        ),
    )
    """Round trips per second over all sessions, paced; None: each as fast as replies come."""
    depth: int = attrs.field(
        default=1,
        validator=check(
            lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_DEPTH,
            f"a whole number of messages in flight, 1 to {MAX_DEPTH}",
        ),
    )
    """Messages in flight per connection: 1 sends each after the last one's reply (lockstep)."""

    @duration.validator
    def _check_duration(self, _attribute: attrs.Attribute[Any], value: float | None) -> None:
        if value is None:
            return
        if self.protocol is WireProtocol.GREETING:
            raise ConfigError("--duration needs the reply or echo protocol: a greeting is one line")
        if self.transport is Transport.UDP:
            raise ConfigError("--duration is for stream transports (tcp, tls, unix), not udp")

    @rate.validator
    def _check_rate(self, _attribute: attrs.Attribute[Any], value: float | None) -> None:
        if value is not None and self.transport is Transport.UDP:
            raise ConfigError("--rate is for stream transports (tcp, tls, unix), not udp")

    @depth.validator
    def _check_depth(self, _attribute: attrs.Attribute[Any], value: int) -> None:
        if value == 1:
            return
        if self.protocol not in (WireProtocol.REPLY, WireProtocol.ECHO):
            raise ConfigError("--depth needs the reply or echo protocol: the server answers once")
        if not self.transport.is_stream:
            raise ConfigError("--depth is for stream transports (tcp, tls, unix), not udp")
        if self.rate is not None:
            raise ConfigError("--depth and --rate: a paced session holds one message in flight")

    proxy_protocol: int | None = attrs.field(default=None, validator=_proxy_protocol)
    """Send a PROXY header of this version (1 or 2) first, naming this client's addresses."""

    @path.validator
    def _check_path(self, _attribute: attrs.Attribute[Any], value: str | None) -> None:
        if self.transport is Transport.UNIX and not value:
            raise ConfigError("a unix client needs the server's socket path")

    @transport.validator
    def _check_whoami_stream(self, _attribute: attrs.Attribute[Any], value: Transport) -> None:
        if self.protocol is WireProtocol.WHOAMI and not value.is_stream:
            raise ConfigError(
                "the whoami client reads one answer per connection: not for udp:// targets"
            )

    @classmethod
    def for_target(cls, target: ListenSpec, **fields: Any) -> ClientConfig:
        """A client of the server *target* names (a spec from ``parse_target``)."""
        where: dict[str, Any] = {"transport": target.transport}
        if target.transport is Transport.UNIX:
            where["path"] = target.path
        else:
            where["host"], where["port"] = target.host, target.port
        if target.protocol is not None:
            where["protocol"] = target.protocol
        return cls(**where, **fields)

    @property
    def target(self) -> Address:
        """The server, as errors and reports name it."""
        if self.transport is Transport.UNIX:
            assert self.path is not None
            return Address.unix(self.path)
        return Address(self.host, self.port)

    @message.validator
    def _check_message(self, _attribute: attrs.Attribute[Any], value: str | None) -> None:
        if value is None:
            return
        if not isinstance(value, str) or value == "":
            raise ConfigError("message must be a non-empty string", field="message")
        if self.protocol is WireProtocol.GREETING and "\n" in value:
            raise ConfigError("a greeting message is one line: it cannot contain a newline")

    def messages(self) -> Messages:
        """The bytes of each message one session sends, in order, each made when asked for.

        Nothing is built up front, so a session of a billion messages costs
        no more memory than a session of one.
        """
        if self.protocol is WireProtocol.GREETING:
            template = GREETING_MESSAGE if self.message is None else self.message
            return Messages(template, 1)
        if self.protocol is WireProtocol.WHOAMI:
            return Messages(WHOAMI_MESSAGE if self.message is None else self.message, 1)
        template = NOTE_MESSAGE if self.message is None else self.message
        return Messages(template, self.count if self.duration is None else sys.maxsize)


class Messages(Sequence[bytes]):
    """The messages of a session: *count* of them, ``{i}`` in *template* made the index."""

    __slots__ = ("_count", "_parts", "_template")

    def __init__(self, template: str, count: int) -> None:
        self._template = template
        self._count = count
        self._parts = [encode_argument(part) for part in template.split("{i}")]
        """The template's bytes around each ``{i}``: a message is its index's digits between."""

    def __len__(self) -> int:
        return self._count

    @property
    def fixed(self) -> bytes | None:
        """The one message every index gives when the template has no ``{i}``; else None."""
        return self._parts[0] if len(self._parts) == 1 else None

    @overload
    def __getitem__(self, index: int) -> bytes: ...

    @overload
    def __getitem__(self, index: slice) -> list[bytes]: ...

    def __getitem__(self, index: int | slice) -> bytes | list[bytes]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._count))]
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError("message index out of range")
        return self.make(index)

    def make(self, index: int) -> bytes:
        """Message *index*, which must be in range: indexing, minus its checks (a hot path)."""
        return str(index).encode("ascii").join(self._parts)

    def __iter__(self) -> Iterator[bytes]:
        return (self[i] for i in range(self._count))

    def __eq__(self, other: object) -> bool:
        """Equal to any sequence holding the same messages (a list, in a test)."""
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(other) == self._count and all(a == b for a, b in zip(self, other, strict=True))

    def __hash__(self) -> int:
        return hash((self._template, self._count))

    def __repr__(self) -> str:
        return f"Messages({self._template!r}, {self._count})"


def encode_argument(text: str) -> bytes:
    """Encode command-line text back to the exact bytes the user typed."""
    return text.encode("utf-8", "surrogateescape")
