"""Listener specs and client targets: every accepted form, every refusal, and the round trip."""

from __future__ import annotations

import sys
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_echo import WireProtocol
from trio_echo.address import Address
from trio_echo.errors import ConfigError
from trio_echo.transport.spec import (
    SETTINGS,
    UNIX_PATH_LIMIT,
    ListenSpec,
    Transport,
    parse_listen_spec,
    parse_target,
    path_problem,
)

TCP, UDP, TLS, UNIX = Transport.TCP, Transport.UDP, Transport.TLS, Transport.UNIX
linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="abstract sockets are Linux only"
)


def net(transport: Transport, host: str, port: int, **settings: Any) -> ListenSpec:
    return ListenSpec(transport=transport, host=host, port=port, **settings)


def unix(path: str, **settings: Any) -> ListenSpec:
    return ListenSpec(transport=UNIX, path=path, **settings)


ACCEPTED = [
    # (text, spec, canonical text)
    ("tcp://127.0.0.1:3100", net(TCP, "127.0.0.1", 3100), "tcp://127.0.0.1:3100"),
    ("udp://127.0.0.1:7", net(UDP, "127.0.0.1", 7), "udp://127.0.0.1:7"),
    ("tls://0.0.0.0:3443", net(TLS, "0.0.0.0", 3443), "tls://0.0.0.0:3443"),
    ("tcp://localhost:0", net(TCP, "localhost", 0), "tcp://localhost:0"),
    ("tcp://[::1]:3100", net(TCP, "::1", 3100), "tcp://[::1]:3100"),
    ("udp://[::]:65535", net(UDP, "::", 65535), "udp://[::]:65535"),
    ("tcp://[fe80::1%eth0]:9", net(TCP, "fe80::1%eth0", 9), "tcp://[fe80::1%eth0]:9"),
    ("TCP://example.org:03100", net(TCP, "example.org", 3100), "tcp://example.org:3100"),
    ("unix:/run/echo.sock", unix("/run/echo.sock"), "unix:/run/echo.sock"),
    ("unix:echo.sock", unix("echo.sock"), "unix:echo.sock"),
    ("unix:///run/echo.sock", unix("/run/echo.sock"), "unix:/run/echo.sock"),
    ("unix:/run/a:b c", unix("/run/a:b c"), "unix:/run/a:b c"),
    (
        "tcp://127.0.0.1:3100?protocol=echo",
        net(TCP, "127.0.0.1", 3100, protocol=WireProtocol.ECHO),
        "tcp://127.0.0.1:3100?protocol=echo",
    ),
    (
        "udp://[::1]:0?protocol=GREETING",
        net(UDP, "::1", 0, protocol=WireProtocol.GREETING),
        "udp://[::1]:0?protocol=greeting",
    ),
    (
        "unix:/run/echo.sock?protocol=Reply",
        unix("/run/echo.sock", protocol=WireProtocol.REPLY),
        "unix:/run/echo.sock?protocol=reply",
    ),
]


@pytest.mark.parametrize(("text", "spec", "canonical"), ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_every_listen_form_parses_and_prints_canonically(
    text: str, spec: ListenSpec, canonical: str
) -> None:
    parsed = parse_listen_spec(text)
    assert parsed == spec
    assert str(parsed) == canonical
    assert parse_listen_spec(canonical) == spec


@linux_only
def test_an_abstract_unix_socket_is_written_with_an_at_sign() -> None:
    spec = parse_listen_spec("unix:@trio-echo")
    assert spec == unix("@trio-echo")
    assert spec.is_abstract and not unix("/run/echo.sock").is_abstract
    assert str(spec) == "unix:@trio-echo"


TARGETS = [
    ("localhost", net(TCP, "localhost", 3100)),
    ("example.org:7", net(TCP, "example.org", 7)),
    ("127.0.0.1", net(TCP, "127.0.0.1", 3100)),
    ("127.0.0.1:9", net(TCP, "127.0.0.1", 9)),
    ("[::1]", net(TCP, "::1", 3100)),
    ("[::1]:7", net(TCP, "::1", 7)),
    ("::1", net(TCP, "::1", 3100)),
    ("2001:db8::1", net(TCP, "2001:db8::1", 3100)),
    ("fe80::1%eth0", net(TCP, "fe80::1%eth0", 3100)),
    ("h:7?protocol=echo", net(TCP, "h", 7, protocol=WireProtocol.ECHO)),
    ("udp://[::1]:7", net(UDP, "::1", 7)),
    ("tls://example.org:3443", net(TLS, "example.org", 3443)),
    ("unix:/run/echo.sock", unix("/run/echo.sock")),
]


@pytest.mark.parametrize(("text", "spec"), TARGETS, ids=[t[0] for t in TARGETS])
def test_every_target_form_parses(text: str, spec: ListenSpec) -> None:
    assert parse_target(text, default_port=3100) == spec
    assert parse_target(str(spec), default_port=1) == spec


LISTEN_REFUSALS = [
    # (text, what the message must say)
    ("tcp://127.0.0.1", "'tcp://127.0.0.1' needs a port: tcp://HOST:PORT"),
    ("tcp://127.0.0.1:", "'tcp://127.0.0.1:' needs a port: tcp://HOST:PORT"),
    ("tcp://[::1]", "'tcp://[::1]' needs a port: tcp://HOST:PORT"),
    ("sctp://h:1", "unknown scheme 'sctp': tcp://HOST:PORT, udp://HOST:PORT"),
    ("127.0.0.1:3100", "has no scheme (did you mean 'tcp://127.0.0.1:3100'?)"),
    ("tcp://h:http", "port 'http', which is not a number"),
    ("tcp://h:-1", "port '-1', which is not a number"),
    ("tcp://h:65536", "port 65536, outside 0 to 65535"),
    ("tcp://h:99999999999999999999", "outside 0 to 65535"),
    ("tcp://::1:3100", "IPv6 host without brackets: tcp://[HOST]:PORT"),
    ("udp://::1", "IPv6 host without brackets: udp://[HOST]:PORT"),
    ("tcp://:3100", "needs a host: tcp://HOST:PORT (0.0.0.0 or [::] for every interface)"),
    ("tcp://[]:3100", "'tcp://[]:3100' needs a host"),
    ("tcp://[example.org]:1", "'example.org' in brackets, which is not IPv6"),
    ("tcp://[::1:1", "'[' without its ']'"),
    ("tcp://[1:2:3]:1", "host '1:2:3', which is not an IPv6 address"),
    ("tcp://[fe80::1%a b]:1", "host 'fe80::1%a b', which has a zone after '%'"),
    ("tcp://[::1]3100", "'3100' after ']'"),
    ("tcp://a b:1", "host 'a b', which is not a host name or address"),
    ("tcp://h/x:1", "host 'h/x', which is not a host name or address"),
    ("unix:", "'unix:' needs a path: unix:PATH"),
    ("unix:/tmp/a\0b", "'unix:/tmp/a\\x00b' has a path that contains a NUL byte"),
    ("unix:/tmp/echo.sock:3100", "a unix socket takes no port"),
    ("unix://tmp/echo.sock", "unix:// without an absolute path: unix:///PATH or unix:PATH"),
    ("unix:/" + "a" * 200, f"201 bytes long, over the limit of {UNIX_PATH_LIMIT}"),
    ("tcp://h:1?protocol=echo&protocol=echo", "sets 'protocol' twice"),
    ("tcp://h:1?colour=red", "unknown setting 'colour': the known ones are protocol, fault"),
    ("tcp://h:1?fault=reset", "fault='reset': fault must be a fault spec"),
    ("tcp://h:1?protocol=chargen", "protocol='chargen': protocol must be echo, reply or greeting"),
    ("tcp://h:1?protocol", "setting 'protocol' that is not KEY=VALUE"),
    ("tcp://h:1?", "setting '' that is not KEY=VALUE"),
    ("tcp://h:1?protocol=echo&", "setting '' that is not KEY=VALUE"),
    ("", "listener '' has no scheme"),
]


@pytest.mark.parametrize(("text", "says"), LISTEN_REFUSALS, ids=[r[0] for r in LISTEN_REFUSALS])
def test_a_malformed_listener_is_refused_in_one_line_that_quotes_it(text: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_listen_spec(text)
    message = str(caught.value)
    assert message.startswith("listener '")
    assert "\n" not in message and message.isprintable() and message.isascii()
    assert says in message


def test_no_two_refusals_read_the_same() -> None:
    messages = []
    for text, _says in LISTEN_REFUSALS:
        with pytest.raises(ConfigError) as caught:
            parse_listen_spec(text)
        messages.append(str(caught.value))
    assert len(set(messages)) == len(messages)


def test_a_refusal_escapes_what_could_fool_a_terminal() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_listen_spec("tcp://evil\n\x1b[2J'host:1")
    assert "'tcp://evil\\n\\x1b[2J\\'host:1'" in str(caught.value)


def test_an_unknown_setting_lists_every_known_key() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_listen_spec("tcp://h:1?nope=1")
    assert str(caught.value).endswith("the known ones are " + ", ".join(SETTINGS))


@pytest.mark.skipif(sys.platform.startswith("linux"), reason="Linux has abstract sockets")
def test_an_abstract_socket_is_refused_off_linux() -> None:  # pragma: no cover
    with pytest.raises(ConfigError, match="only Linux"):
        parse_listen_spec("unix:@trio-echo")


@linux_only
def test_an_abstract_socket_needs_a_name() -> None:
    with pytest.raises(ConfigError, match="'@' without a name"):
        parse_listen_spec("unix:@")


TARGET_REFUSALS = [
    ("h:0", "has port 0, which no server listens on"),
    ("tcp://h:0", "has port 0, which no server listens on"),
    ("::1:3100", "is ambiguous: [::1]:3100 for a port, [::1:3100] for the address"),
    ("a:b:c", "more than one ':' but is not an IPv6 address"),
    ("", "'' needs a host: HOST, HOST:PORT, [IPV6]:PORT"),
    ("h:x", "port 'x', which is not a number"),
    ("[::1]:", "needs a port"),
    ("ftp://h:1", "unknown scheme 'ftp'"),
    ("h?protocol=nope", "protocol must be echo, reply or greeting"),
]


@pytest.mark.parametrize(("text", "says"), TARGET_REFUSALS, ids=[r[0] for r in TARGET_REFUSALS])
def test_a_malformed_target_is_refused_in_one_line(text: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_target(text, default_port=3100)
    message = str(caught.value)
    assert message.startswith("target '") and "\n" not in message
    assert says in message


def test_a_target_needs_a_real_default_port() -> None:
    with pytest.raises(ConfigError, match="port must be a port number from 1 to 65535, not 0"):
        parse_target("h", default_port=0)


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"transport": TCP, "host": "h", "port": 70000}, "port must be a port number"),
        ({"transport": TCP, "host": "h", "port": True}, "port must be a port number"),
        ({"transport": TCP, "host": "h"}, "port must be a port number"),
        ({"transport": TCP, "port": 1}, "needs a host"),
        ({"transport": UDP, "host": "", "port": 1}, "host '' is empty"),
        ({"transport": TCP, "host": "[::1]", "port": 1}, "is not an IPv6 address"),
        ({"transport": TCP, "host": "fe80::1%]", "port": 1}, "zone after '%'"),
        ({"transport": TCP, "host": "h", "port": 1, "path": "/x"}, "not a path"),
        ({"transport": UNIX, "path": "/x", "port": 1}, "not a host or port"),
        ({"transport": UNIX}, "needs a path"),
        ({"transport": UNIX, "path": "/a?b"}, "contains '?'"),
        ({"transport": UNIX, "path": "//x"}, "starts with '//'"),
        ({"transport": UNIX, "path": "/x" * 60}, "over the limit"),
        ({"transport": TCP, "host": "h", "port": 1, "protocol": "echo"}, "protocol must be"),
    ],
)
def test_a_spec_is_validated_when_built(fields: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError, match=says.replace("?", r"\?").replace("[", r"\[")):
        ListenSpec(**fields)


def test_a_spec_is_frozen() -> None:
    spec = parse_listen_spec("tcp://h:1")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        spec.port = 2  # type: ignore[misc]


def test_the_display_is_the_address_or_path_escaped() -> None:
    assert parse_listen_spec("tcp://[::1]:3100").display == "[::1]:3100"
    assert parse_listen_spec("udp://127.0.0.1:7").address == Address("127.0.0.1", 7)
    spec = parse_listen_spec("unix:/tmp/odd\tname")
    assert spec.display == "/tmp/odd\\tname"
    assert spec.address is None


def test_transports_know_their_kind() -> None:
    assert [t for t in Transport if t.is_stream] == [TCP, TLS, UNIX]
    assert [t for t in Transport if t.is_network] == [TCP, UDP, TLS]
    assert [t.value for t in Transport] == ["tcp", "udp", "tls", "unix"]


def test_the_unix_path_limit_counts_bytes_not_characters() -> None:
    assert path_problem("/" + "é" * 53) is None  # 107 bytes
    assert path_problem("/" + "é" * 54) == f"is 109 bytes long, over the limit of {UNIX_PATH_LIMIT}"


# -- properties ---------------------------------------------------------------------------------

host_names = st.from_regex(r"[A-Za-z0-9_]([A-Za-z0-9_.-]{0,20}[A-Za-z0-9_.])?", fullmatch=True)
hosts = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    host_names,
)
protocols = st.none() | st.sampled_from(list(WireProtocol))
network_specs = st.builds(
    ListenSpec,
    transport=st.sampled_from([TCP, UDP, TLS]),
    host=hosts,
    port=st.integers(0, 65535),
    protocol=protocols,
)
unix_paths = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\0?"), min_size=1, max_size=40
)
unix_specs = st.builds(
    ListenSpec,
    transport=st.just(UNIX),
    path=unix_paths.filter(lambda path: path_problem(path) is None),
    protocol=protocols,
)


@given(st.one_of(network_specs, unix_specs))
def test_every_valid_spec_round_trips_through_its_text(spec: ListenSpec) -> None:
    text = str(spec)
    assert parse_listen_spec(text) == spec
    assert str(parse_listen_spec(text)) == text
    if spec.port != 0:
        assert parse_target(text, default_port=3100) == spec


spec_alphabet = st.sampled_from([*"tcpudlsnix:/[]?&=@%.0123456789abf-_ \0\n", "protocol"])


@given(st.one_of(st.text(), st.lists(spec_alphabet, max_size=20).map("".join)))
def test_any_text_is_a_spec_that_round_trips_or_one_line_of_refusal(text: str) -> None:
    for parse in (parse_listen_spec, lambda t: parse_target(t, default_port=3100)):
        try:
            spec = parse(text)
        except ConfigError as exc:
            message = str(exc)
            assert "\n" not in message and message.isprintable()
        else:
            assert parse_listen_spec(str(spec)) == spec


def test_what_the_spec_itself_refuses_is_still_refused_as_the_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lenient = attrs.evolve(SETTINGS["protocol"], parse=str)  # a parser letting a bad value by
    monkeypatch.setitem(SETTINGS, "protocol", lenient)
    with pytest.raises(ConfigError) as caught:
        parse_listen_spec("unix:/run/echo.sock?protocol=chargen")
    message = str(caught.value)
    assert message.startswith("listener 'unix:/run/echo.sock?protocol=chargen' is refused (")
    assert "protocol must be" in message and message.endswith(": unix:PATH")
