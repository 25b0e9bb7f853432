"""The PROXY header parser and builder: every header whole, byte by byte and at random splits.

Each case is fed whole, one byte at a time and at split points hypothesis
picks; the outcome (the header and the bytes after it, or the error's
class) must not depend on how the bytes were cut.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_echo.address import Address
from trio_echo.codec.proxy_header import (
    V1_MAX,
    V2_MAX_LENGTH,
    V2_SIGNATURE,
    MalformedProxyHeader,
    OversizedProxyHeader,
    ParsedHeader,
    ProxyHeader,
    ProxyHeaderError,
    ProxyHeaderParser,
    ProxyVersion,
    TruncatedProxyHeader,
    build_header,
    build_v1,
    build_v2,
)

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

Outcome = ParsedHeader | type[ProxyHeaderError]


def feed(pieces: Sequence[bytes], accept: ProxyVersion = ProxyVersion.ANY) -> Outcome:
    """Feed *pieces* then EOF; the parsed header (with all bytes after it) or the error class."""
    parser = ProxyHeaderParser(accept)
    try:
        for index, piece in enumerate(pieces):
            parsed = parser.receive_data(piece)
            if parsed is not None:
                rest = parsed.rest + b"".join(pieces[index + 1 :])
                return ParsedHeader(parsed.header, rest)
        parser.receive_eof()
    except ProxyHeaderError as error:
        return type(error)
    raise AssertionError("receive_eof returned")


def split_at(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    """*data* cut at the sorted positions *cuts*."""
    points = [0, *sorted(cut % (len(data) + 1) for cut in cuts), len(data)]
    return [data[start:end] for start, end in itertools.pairwise(points)]


def every_way(data: bytes, accept: ProxyVersion = ProxyVersion.ANY) -> Outcome:
    """The outcome fed whole, and checked equal fed byte by byte."""
    whole = feed([data], accept)
    assert feed([bytes([byte]) for byte in data], accept) == whole
    return whole


V4 = (Address("192.0.2.7", 51000), Address("198.51.100.1", 443))
V6 = (Address("2001:db8::7", 51000), Address("2001:db8::1", 443))
UNIX = (Address.unix("/run/client.sock"), Address.unix("/run/server.sock"))


def test_v1_tcp4_gives_the_addresses_and_keeps_the_rest() -> None:
    data = b"PROXY TCP4 192.0.2.7 198.51.100.1 51000 443\r\nhello\n"
    assert every_way(data) == ParsedHeader(ProxyHeader(1, "proxy", *V4), b"hello\n")


def test_v1_tcp6() -> None:
    data = b"PROXY TCP6 2001:db8::7 2001:db8::1 51000 443\r\n"
    assert every_way(data) == ParsedHeader(ProxyHeader(1, "proxy", *V6), b"")


def test_v1_unknown_ignores_the_rest_of_its_line() -> None:
    data = b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nx"
    assert every_way(data) == ParsedHeader(ProxyHeader(1, "unknown"), b"x")


def test_v1_of_the_spec_worst_case_size_is_accepted() -> None:
    full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    data = f"PROXY UNKNOWN {full} {full} 65535 65535\r\n".encode()
    assert len(data) == V1_MAX
    assert every_way(data + b"x") == ParsedHeader(ProxyHeader(1, "unknown"), b"x")
    longest = f"PROXY TCP6 {full} {full} 65535 65535\r\n".encode()
    parsed = every_way(longest)
    assert isinstance(parsed, ParsedHeader)
    assert parsed.header.source == Address(full, 65535)


@pytest.mark.parametrize(
    "data",
    [
        b"PROXY TCP4 192.0.2.7 198.51.100.1 51000\r\n",
        b"PROXY TCP4 192.0.2.7 198.51.100.1 51000 443 9\r\n",
        b"PROXY TCP4 2001:db8::7 198.51.100.1 51000 443\r\n",
        b"PROXY TCP6 192.0.2.7 2001:db8::1 51000 443\r\n",
        b"PROXY TCP4 192.0.2.300 198.51.100.1 51000 443\r\n",
        b"PROXY TCP4 192.0.2.7 198.51.100.1 65536 443\r\n",
        b"PROXY TCP4 192.0.2.7 198.51.100.1 0443 443\r\n",
        b"PROXY TCP4 192.0.2.7 198.51.100.1 +443 443\r\n",
        b"PROXY TCP4  192.0.2.7 198.51.100.1 51000 443\r\n",
        b"PROXY UDP4 192.0.2.7 198.51.100.1 51000 443\r\n",
        b"PROXY TCP4 192.0.2.7 198.51.100.1 51000 443\n",
        b"PROXY TCP4 192.0.2.7\x00 198.51.100.1 51000 443\r\n",
        b"PROXY tcp4 192.0.2.7 198.51.100.1 51000 443\r\n",
        b"proxy TCP4 192.0.2.7 198.51.100.1 51000 443\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"\x00",
    ],
)
def test_malformed_v1_is_refused(data: bytes) -> None:
    assert every_way(data) is MalformedProxyHeader


def test_v1_without_crlf_in_107_bytes_is_oversized() -> None:
    data = b"PROXY UNKNOWN " + b"x" * 200
    assert every_way(data) is OversizedProxyHeader


def test_v1_cut_short_is_truncated() -> None:
    assert every_way(b"PROXY TCP4 192.0.2.7 198") is TruncatedProxyHeader
    assert every_way(b"") is TruncatedProxyHeader
    assert every_way(b"PRO") is TruncatedProxyHeader


def test_the_wrong_version_is_refused_at_its_first_byte() -> None:
    parser = ProxyHeaderParser(ProxyVersion.V2)
    with pytest.raises(MalformedProxyHeader):
        parser.receive_data(b"P")
    parser = ProxyHeaderParser(ProxyVersion.V1)
    with pytest.raises(MalformedProxyHeader):
        parser.receive_data(b"\r")


def test_a_spent_parser_refuses_more() -> None:
    parser = ProxyHeaderParser(ProxyVersion.V1)
    assert parser.receive_data(b"PROXY UNKNOWN\r\n") is not None
    with pytest.raises(RuntimeError):
        parser.receive_data(b"x")


def v2(command: int, family_protocol: int, body: bytes) -> bytes:
    """A v2 header built by hand, independently of the builder."""
    return (
        V2_SIGNATURE
        + bytes([0x20 | command, family_protocol])
        + struct.pack("!H", len(body))
        + body
    )


def test_v2_inet_gives_the_addresses_and_tlvs() -> None:
    body = bytes([192, 0, 2, 7, 198, 51, 100, 1]) + struct.pack("!HH", 51000, 443)
    tlv = b"\x04" + struct.pack("!H", 3) + b"abc"
    data = v2(1, 0x11, body + tlv) + b"after"
    assert every_way(data) == ParsedHeader(ProxyHeader(2, "proxy", *V4, ((4, b"abc"),)), b"after")


def test_v2_inet6_and_unix() -> None:
    parsed = every_way(build_v2(*V6))
    assert isinstance(parsed, ParsedHeader) and parsed.header == ProxyHeader(2, "proxy", *V6)
    parsed = every_way(build_v2(*UNIX))
    assert isinstance(parsed, ParsedHeader) and parsed.header == ProxyHeader(2, "proxy", *UNIX)


def test_v2_local_and_unspec() -> None:
    assert every_way(v2(0, 0x00, b"")) == ParsedHeader(ProxyHeader(2, "local"), b"")
    assert every_way(v2(1, 0x00, b"ignored")) == ParsedHeader(ProxyHeader(2, "unknown"), b"")
    body = bytes(12)
    assert every_way(v2(0, 0x11, body)) == ParsedHeader(ProxyHeader(2, "local"), b"")


@pytest.mark.parametrize(
    "data",
    [
        V2_SIGNATURE + b"\x11\x11\x00\x00",  # version 1 in a v2 frame
        V2_SIGNATURE + b"\x22\x11\x00\x0c" + bytes(12),  # command 2
        V2_SIGNATURE + b"\x21\x41\x00\x00",  # family 4
        V2_SIGNATURE + b"\x21\x13\x00\x0c" + bytes(12),  # protocol 3
        V2_SIGNATURE + b"\x21\x11\x00\x0b" + bytes(11),  # too short for IPv4
        V2_SIGNATURE + b"\x21\x21\x00\x0c" + bytes(12),  # too short for IPv6
        V2_SIGNATURE + b"\x21\x11\x00\x0e" + bytes(14),  # TLV cut inside its head
        V2_SIGNATURE + b"\x21\x11\x00\x10" + bytes(12) + b"\x01\x00\x09x",  # TLV too long
        V2_SIGNATURE[:-1] + b"X",
    ],
)
def test_malformed_v2_is_refused(data: bytes) -> None:
    assert every_way(data) is MalformedProxyHeader


def test_v2_longer_than_the_bound_is_oversized_before_it_is_buffered() -> None:
    parser = ProxyHeaderParser(ProxyVersion.V2)
    with pytest.raises(OversizedProxyHeader):
        parser.receive_data(V2_SIGNATURE + b"\x21\x11" + struct.pack("!H", V2_MAX_LENGTH + 1))


def test_v2_cut_short_is_truncated() -> None:
    assert every_way(build_v2(*V4)[:-1]) is TruncatedProxyHeader
    assert every_way(V2_SIGNATURE[:5]) is TruncatedProxyHeader


def test_builders_follow_the_spec_byte_for_byte() -> None:
    assert build_v1(*V4) == b"PROXY TCP4 192.0.2.7 198.51.100.1 51000 443\r\n"
    assert build_v1(None, None) == b"PROXY UNKNOWN\r\n"
    assert build_v1(*UNIX) == b"PROXY UNKNOWN\r\n"
    assert build_v2(None, None) == V2_SIGNATURE + b"\x20\x00\x00\x00"
    assert build_v2(*V4)[12:16] == b"\x21\x11\x00\x0c"
    assert build_v2(*V6, datagram=True)[12:16] == b"\x21\x22\x00\x24"
    assert build_v2(*UNIX)[12:16] == b"\x21\x31\x00\xd8"
    mixed = build_v1(Address("192.0.2.7", 1), Address("::1", 2))
    assert mixed == b"PROXY TCP6 ::ffff:c000:207 ::1 1 2\r\n"
    with pytest.raises(ValueError):
        build_header(3, *V4)


ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
ports = st.integers(0, 0xFFFF)
addresses = st.one_of(st.tuples(ipv4, ports, ipv4, ports), st.tuples(ipv6, ports, ipv6, ports)).map(
    lambda t: (Address(t[0], t[1]), Address(t[2], t[3]))
)


@FAST
@given(
    pair=addresses,
    version=st.sampled_from([1, 2]),
    rest=st.binary(max_size=64),
    cuts=st.lists(st.integers(0, 200), max_size=6),
)
def test_any_built_header_parses_back_at_any_split(
    pair: tuple[Address, Address], version: int, rest: bytes, cuts: list[int]
) -> None:
    data = build_header(version, *pair) + rest
    expected = ParsedHeader(ProxyHeader(version, "proxy", *pair), rest)
    assert feed(split_at(data, cuts)) == expected
    accept = ProxyVersion.V1 if version == 1 else ProxyVersion.V2
    assert feed(split_at(data, cuts), accept) == expected


@FAST
@given(data=st.binary(max_size=150), cuts=st.lists(st.integers(0, 200), max_size=6))
def test_arbitrary_bytes_give_the_same_outcome_at_any_split(data: bytes, cuts: list[int]) -> None:
    assert feed(split_at(data, cuts)) == feed([data])


@FAST
@given(
    prefix=st.sampled_from([b"PROXY ", b"PROXY TCP4 ", V2_SIGNATURE, V2_SIGNATURE + b"\x21\x11"]),
    data=st.binary(max_size=150),
    cuts=st.lists(st.integers(0, 200), max_size=6),
)
def test_near_headers_give_the_same_outcome_at_any_split(
    prefix: bytes, data: bytes, cuts: list[int]
) -> None:
    whole = prefix + data
    assert feed(split_at(whole, cuts)) == feed([whole])


@FAST
@given(data=st.binary(min_size=1, max_size=300))
def test_the_parser_never_holds_more_than_one_header(data: bytes) -> None:
    parser = ProxyHeaderParser(ProxyVersion.ANY)
    try:
        for byte in data:
            if parser.receive_data(bytes([byte])) is not None:
                break
            assert parser.buffered <= max(V1_MAX, 16 + V2_MAX_LENGTH)
    except ProxyHeaderError:
        pass


@FAST
@given(
    pair=addresses,
    version=st.sampled_from([1, 2]),
    accept=st.sampled_from(list(ProxyVersion)),
    rest=st.binary(min_size=1, max_size=32),
)
def test_reading_what_the_parser_wants_never_takes_a_byte_past_the_header(
    pair: tuple[Address, Address], version: int, accept: ProxyVersion, rest: bytes
) -> None:
    if (accept, version) in ((ProxyVersion.V1, 2), (ProxyVersion.V2, 1)):
        return
    data = build_header(version, *pair) + rest
    parser = ProxyHeaderParser(accept)
    offset = 0
    while True:
        piece = data[offset : offset + parser.wanted]
        offset += len(piece)
        parsed = parser.receive_data(piece)
        if parsed is not None:
            break
    assert parsed.rest == b"" and data[offset:] == rest


def test_an_empty_read_is_the_end_of_input() -> None:
    parser = ProxyHeaderParser(ProxyVersion.ANY)
    assert parser.receive_read(b"PROXY ") is None
    with pytest.raises(TruncatedProxyHeader):
        parser.receive_read(b"")
