"""Listener specs and client targets: ``tcp://HOST:PORT`` and friends, parsed once.

A server listens on one or more specs::

    tcp://127.0.0.1:3100        udp://[::1]:3100        tls://0.0.0.0:3443
    unix:/run/trio-echo.sock    unix:relative.sock      unix:///run/trio-echo.sock
    unix:@trio-echo             (a Linux abstract socket: no file on disk)

IPv6 hosts go in brackets. Port 0 asks the kernel for any free port. A spec
may end in settings for that listener alone, ``?KEY=VALUE&KEY=VALUE``; the
known keys are the table :data:`SETTINGS`, where adding a key is one entry
(its parser and its printer) plus the :class:`ListenSpec` field it fills.

A client target is the same spec or what people type: ``HOST``,
``HOST:PORT``, ``[V6]``, ``[V6]:PORT`` or a bare IPv6 address such as
``::1``; those short forms mean TCP, at the client's default port when none
is given. A port needs brackets after an IPv6 address: ``::1:3100`` is
refused as ambiguous (it is an address itself, and also ``::1`` with a
port), with both bracketed readings shown.

Parsing is strict: every malformed text is refused with one
:class:`~trio_echo.errors.ConfigError` line that quotes the text, escaped,
and shows the form expected. ``str()`` of a spec is its canonical text and
parses back to an equal spec.
"""

from __future__ import annotations

import enum
import ipaddress
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from ..address import Address
from ..codec.proxy_header import ProxyVersion
from ..errors import ConfigError
from ..escape import escape_text
from ..faults.spec import FaultSpec, parse_faults
from ..wire import WireProtocol


class Transport(enum.Enum):
    """How bytes reach a connection; the value is the spec's scheme."""

    TCP = "tcp"
    UDP = "udp"
    TLS = "tls"
    UNIX = "unix"

    @property
    def is_stream(self) -> bool:
        """True for the connection-oriented transports (all but UDP)."""
        return self is not Transport.UDP

    @property
    def is_network(self) -> bool:
        """True when the transport is addressed by host and port (all but UNIX)."""
        return self is not Transport.UNIX


NETWORK_FORMS = "tcp://HOST:PORT, udp://HOST:PORT, tls://HOST:PORT or unix:PATH"
"""The listener forms, as error messages show them."""

TARGET_FORMS = "HOST, HOST:PORT, [IPV6]:PORT or a spec like tcp://HOST:PORT"
"""The client target forms, as error messages show them."""

ABSTRACT_PREFIX = "@"
"""A unix path starting with this names a Linux abstract socket (as in systemd and ss)."""

UNIX_PATH_LIMIT = 107 if sys.platform.startswith("linux") else 103
"""Longest unix socket path in bytes: ``sun_path`` less its terminating NUL."""

_HOST_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_.])?")
_SCOPE = re.compile(r"[A-Za-z0-9_.-]+")
_LOOKS_LIKE_PORT = re.compile(r":[0-9]+\Z")


def _quote(text: str) -> str:
    """*text* in single quotes, escaped so that it fits on one unmistakable line."""
    return "'" + escape_text(text.replace("\\", "\\\\").replace("'", "\\'")) + "'"


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def host_problem(host: str) -> str | None:
    """What is wrong with *host* as a host name or address, or None if nothing."""
    if host == "":
        return "is empty"
    if ":" in host:
        _address, percent, scope = host.partition("%")
        if percent and _SCOPE.fullmatch(scope) is None:
            return "has a zone after '%' that is not a plain interface name"
        return None if _is_ipv6(host) else "is not an IPv6 address"
    if _HOST_NAME.fullmatch(host) is None:
        return "is not a host name or address"
    return None


def path_problem(path: str) -> str | None:
    """What is wrong with *path* as the path of a ``unix:`` listener, or None if nothing.

    Beyond what the kernel refuses (NUL, length), a path must not contain
    ``?`` (the settings start there), start with ``//`` (``unix://`` is the
    absolute-path form) or end like a port, so that ``str()`` of every spec
    parses back to it.
    """
    if path == "":
        return "is empty"
    if "\0" in path:
        return "contains a NUL byte"
    if "?" in path:
        return "contains '?', which starts the settings"
    if path.startswith("//"):
        return "starts with '//' (write one '/')"
    if _LOOKS_LIKE_PORT.search(path):
        return "ends like a port, and a unix socket takes no port"
    if path.startswith(ABSTRACT_PREFIX):
        if not sys.platform.startswith("linux"):
            return "names an abstract socket (@NAME), which only Linux has"
        if path == ABSTRACT_PREFIX:
            return "is '@' without a name"
    try:
        size = len(path.removeprefix(ABSTRACT_PREFIX).encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:
        return "cannot be encoded as a file name"
    if size > UNIX_PATH_LIMIT:
        return f"is {size} bytes long, over the limit of {UNIX_PATH_LIMIT}"
    return None


# -- settings: the ?KEY=VALUE table -------------------------------------------------------------


@attrs.frozen
class Setting:
    """One ``?KEY=VALUE`` setting: how its value is read and written back.

    The key is the name of the :class:`ListenSpec` field it fills; a field
    left at None means "the server's default".
    """

    expected: str
    """What a value looks like, for the error message (e.g. ``echo, reply or greeting``)."""
    parse: Callable[[str], Any]
    """Text to value; raises ValueError for a bad value."""
    render: Callable[[Any], str]
    """Value back to the text :attr:`parse` reads; it must not contain ``&``."""


def _parse_protocol(text: str) -> WireProtocol:
    return WireProtocol(text.lower())


def _render_protocol(value: WireProtocol) -> str:
    return value.value


def _parse_proxy(text: str) -> ProxyVersion:
    return ProxyVersion(text.lower())


def _render_proxy(value: ProxyVersion) -> str:
    return value.value


SETTINGS: Mapping[str, Setting] = {
    "protocol": Setting(
        expected="echo, reply or greeting", parse=_parse_protocol, render=_render_protocol
    ),
    "fault": Setting(
        expected="a fault spec such as delay=20ms,split=1-16", parse=parse_faults, render=str
    ),
    "proxy": Setting(expected="v1, v2 or any", parse=_parse_proxy, render=_render_proxy),
}
"""The keys a spec's ``?`` settings know, in the order ``str()`` writes them."""


# -- the spec -----------------------------------------------------------------------------------


def _check_protocol(_instance: Any, _attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not isinstance(value, WireProtocol):
        raise ConfigError(f"protocol must be reply, greeting, echo or None, not {value!r}")


def _check_proxy(_instance: Any, _attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not isinstance(value, ProxyVersion):
        raise ConfigError(f"proxy must be v1, v2, any or None, not {value!r}")


@attrs.frozen(kw_only=True)
class ListenSpec:
    """Where a server listens or a client connects, with its per-listener settings.

    Network transports have a *host* (an IPv6 address without brackets) and
    a *port* (0 to 65535; 0 means any free port) and no *path*; ``unix`` has
    a *path* (``@NAME`` for a Linux abstract socket) and neither host nor port.
    """

    transport: Transport = attrs.field(validator=attrs.validators.instance_of(Transport))
    host: str | None = None
    port: int | None = None
    path: str | None = None
    protocol: WireProtocol | None = attrs.field(default=None, validator=_check_protocol)
    """The wire protocol spoken here; None means the server's (or client's) default."""
    fault: FaultSpec | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(FaultSpec))
    )
    """Faults this listener's connections may get; None means the server's (``--fault``)."""
    proxy: ProxyVersion | None = attrs.field(default=None, validator=_check_proxy)
    """The PROXY header every connection must open with (v1, v2 or any); None: none is read."""

    def __attrs_post_init__(self) -> None:
        if self.transport.is_network:
            self._check_network()
        else:
            self._check_unix()
        if self.proxy is not None and not self.transport.is_stream:
            raise ConfigError(
                "proxy= is for stream listeners: a PROXY header opens a connection, "
                "and proxies send none in front of UDP datagrams"
            )

    def _check_network(self) -> None:
        scheme = self.transport.value
        if self.path is not None:
            raise ConfigError(f"a {scheme} listener has a host and port, not a path")
        if not isinstance(self.host, str):
            raise ConfigError(f"a {scheme} listener needs a host, not {self.host!r}")
        problem = host_problem(self.host)
        if problem:
            raise ConfigError(f"host {_quote(self.host)} {problem}")
        port = self.port
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise ConfigError(f"port must be a port number from 0 to 65535, not {port!r}")

    def _check_unix(self) -> None:
        if self.host is not None or self.port is not None:
            raise ConfigError("a unix listener has a path, not a host or port")
        if not isinstance(self.path, str):
            raise ConfigError(f"a unix listener needs a path, not {self.path!r}")
        problem = path_problem(self.path)
        if problem:
            raise ConfigError(f"unix path {_quote(self.path)} {problem}")

    @property
    def is_abstract(self) -> bool:
        """True for a Linux abstract unix socket (``unix:@NAME``), which has no file."""
        return self.path is not None and self.path.startswith(ABSTRACT_PREFIX)

    @property
    def address(self) -> Address | None:
        """The host and port of a network spec; None for ``unix``."""
        if self.host is None or self.port is None:
            return None
        return Address(self.host, self.port)

    @property
    def display(self) -> str:
        """Where, as logs show it: ``127.0.0.1:3100``, ``[::1]:3100`` or the unix path, escaped."""
        if self.path is not None:
            return escape_text(self.path)
        return escape_text(str(self.address))

    def settings(self) -> dict[str, str]:
        """The settings that are not left to the default, as ``key: text``."""
        written = {}
        for key, setting in SETTINGS.items():
            value = getattr(self, key)
            if value is not None:
                written[key] = setting.render(value)
        return written

    def __str__(self) -> str:
        if self.path is not None:
            text = f"unix:{self.path}"
        else:
            text = f"{self.transport.value}://{self.address}"
        query = "&".join(f"{key}={value}" for key, value in self.settings().items())
        return f"{text}?{query}" if query else text


# -- parsing ------------------------------------------------------------------------------------


@attrs.frozen
class _Parser:
    """Parses one text; :meth:`fail` builds the one-line refusal that quotes it."""

    role: str
    """``listener`` or ``target``: what the message calls the text."""
    text: str

    def fail(self, problem: str, form: str) -> ConfigError:
        return ConfigError(f"{self.role} {_quote(self.text)} {problem}: {form}")

    def spec(self, body: str, settings: dict[str, Any]) -> ListenSpec:
        """Parse a text with a scheme (``tcp://...``, ``unix:...``), settings already read."""
        if body[:5].lower() == "unix:":
            return self.unix(body[5:], settings)
        scheme, separator, rest = body.partition("://")
        if not separator:
            hint = f" (did you mean {_quote('tcp://' + body)}?)" if ":" in body else ""
            raise self.fail(f"has no scheme{hint}", NETWORK_FORMS)
        try:
            transport = Transport(scheme.lower())
        except ValueError:
            raise self.fail(f"has unknown scheme {_quote(scheme)}", NETWORK_FORMS) from None
        form = f"{transport.value}://HOST:PORT"
        host, port = self.host_and_port(rest, form, default_port=None, bare_ipv6=False)
        return self.build(form, transport=transport, host=host, port=port, **settings)

    def unix(self, path: str, settings: dict[str, Any]) -> ListenSpec:
        form = "unix:PATH"
        if path.startswith("//"):
            if not path.startswith("///"):
                raise self.fail("has unix:// without an absolute path", "unix:///PATH or unix:PATH")
            path = path[2:]
        if path == "":
            raise self.fail("needs a path", form)
        problem = path_problem(path)
        if problem:
            raise self.fail(f"has a path that {problem}", form)
        return self.build(form, transport=Transport.UNIX, path=path, **settings)

    def build(self, form: str, **fields: Any) -> ListenSpec:
        """The spec of *fields*; what its own checks refuse is still refused as this text."""
        try:
            return ListenSpec(**fields)
        except ConfigError as exc:
            raise self.fail(f"is refused ({exc})", form) from None

    def host_and_port(
        self, rest: str, form: str, *, default_port: int | None, bare_ipv6: bool
    ) -> tuple[str, int]:
        """Split ``HOST:PORT``, ``[V6]:PORT`` (and, if allowed, ``HOST``, ``[V6]``, ``V6``)."""
        if rest.startswith("["):
            host, closed, after = rest[1:].partition("]")
            if not closed:
                raise self.fail("has '[' without its ']'", form)
            if host == "":
                raise self.fail("needs a host", form)
            if ":" not in host:
                raise self.fail(f"has {_quote(host)} in brackets, which is not IPv6", form)
            problem = host_problem(host)
            if problem:
                raise self.fail(f"has host {_quote(host)}, which {problem}", form)
            if after and not after.startswith(":"):
                raise self.fail(f"has {_quote(after)} after ']'", form)
            port_text = after[1:] if after else None
        elif rest.count(":") > 1:
            if not bare_ipv6:
                bracketed = form.replace("//HOST", "//[HOST]")
                raise self.fail("has an IPv6 host without brackets", bracketed)
            problem = host_problem(rest)
            if problem:
                raise self.fail(f"has more than one ':' but {problem}", form)
            head, _colon, tail = rest.rpartition(":")
            if tail.isascii() and tail.isdigit() and _is_ipv6(head):
                forms = f"[{head}]:{tail} for a port, [{rest}] for the address"
                raise self.fail("is ambiguous", escape_text(forms))
            host, port_text = rest, None
        else:
            host, colon, port_text_or_empty = rest.partition(":")
            port_text = port_text_or_empty if colon else None
            if host == "":
                every = " (0.0.0.0 or [::] for every interface)" if self.role == "listener" else ""
                raise self.fail("needs a host", form + every)
            problem = host_problem(host)
            if problem:
                raise self.fail(f"has host {_quote(host)}, which {problem}", form)
        return host, self.port(port_text, form, default_port)

    def port(self, text: str | None, form: str, default_port: int | None) -> int:
        if text is None or text == "":
            if default_port is None or text == "":
                raise self.fail("needs a port", form)
            return default_port
        if not (text.isascii() and text.isdigit()):
            raise self.fail(f"has port {_quote(text)}, which is not a number", form)
        if len(text.lstrip("0")) > 5 or int(text) > 65535:
            raise self.fail(f"has port {text}, outside 0 to 65535", form)
        return int(text)

    def settings(self, query: str) -> dict[str, Any]:
        """Read ``KEY=VALUE&...`` through :data:`SETTINGS`: known keys, each at most once."""
        form = "...?KEY=VALUE&KEY=VALUE"
        values: dict[str, Any] = {}
        for item in query.split("&"):
            key, equals, value = item.partition("=")
            if not equals or key == "":
                raise self.fail(f"has setting {_quote(item)} that is not KEY=VALUE", form)
            setting = SETTINGS.get(key)
            if setting is None:
                known = ", ".join(SETTINGS)
                raise self.fail(f"has unknown setting {_quote(key)}", f"the known ones are {known}")
            if key in values:
                raise self.fail(f"sets {_quote(key)} twice", form)
            try:
                values[key] = setting.parse(value)
            except ValueError:
                raise self.fail(
                    f"has {key}={_quote(value)}", f"{key} must be {setting.expected}"
                ) from None
        return values

    def split_settings(self, text: str) -> tuple[str, dict[str, Any]]:
        body, question, query = text.partition("?")
        if not question:
            return body, {}
        return body, self.settings(query)


def parse_listen_spec(text: str) -> ListenSpec:
    """Parse a server's ``--listen`` text; one-line ConfigError on anything malformed."""
    parser = _Parser("listener", text)
    body, settings = parser.split_settings(text)
    return parser.spec(body, settings)


def parse_target(text: str, *, default_port: int) -> ListenSpec:
    """Parse what a client connects to: a spec, or ``HOST[:PORT]``, ``[V6][:PORT]``, ``V6``.

    The short forms mean TCP, at *default_port* when no port is written. A
    target returns the same :class:`ListenSpec` a listener does (one value,
    one canonical text, one display), but its port cannot be 0: there is no
    "any port" to connect to.
    """
    if not 1 <= default_port <= 65535:
        raise ConfigError(
            f"port must be a port number from 1 to 65535, not {default_port!r}", field="port"
        )
    parser = _Parser("target", text)
    body, settings = parser.split_settings(text)
    if "://" in body or body[:5].lower() == "unix:":
        spec = parser.spec(body, settings)
    else:
        host, port = parser.host_and_port(
            body, TARGET_FORMS, default_port=default_port, bare_ipv6=True
        )
        spec = parser.build(TARGET_FORMS, transport=Transport.TCP, host=host, port=port, **settings)
    if spec.port == 0:
        raise parser.fail("has port 0, which no server listens on", "a port from 1 to 65535")
    return spec
