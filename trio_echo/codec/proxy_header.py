"""The PROXY protocol header (HAProxy's v1 text and v2 binary), read and written.

A proxy in front of a server sends one header at the very start of the
connection, before any byte of the conversation (before a TLS handshake
too), naming the client's original source and destination addresses. The
format follows HAProxy's ``doc/proxy-protocol.txt`` byte for byte:

* v1: ``PROXY TCP4|TCP6 SRC DST SRCPORT DSTPORT\\r\\n`` or
  ``PROXY UNKNOWN ...\\r\\n``, at most 107 bytes with the CRLF;
* v2: the 12-byte signature, a version/command byte (``0x20`` LOCAL,
  ``0x21`` PROXY), a family/protocol byte, a 16-bit big-endian length, the
  addresses (12, 36 or 216 bytes for IPv4, IPv6, unix) and TLVs.

:class:`ProxyHeaderParser` is fed bytes as they arrive, however they are
split, and returns the header with the bytes that followed it (they belong
to the conversation: none is lost). It buffers at most one header's bound,
so memory stays bounded whatever a peer sends, and refuses at the first
byte that cannot begin an accepted header. No sockets and no Trio here.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from typing import Literal, NoReturn

import attrs

from ..address import Address
from ..errors import RemoteProtocolError

V1_PREFIX = b"PROXY "
V1_MAX = 107
"""Longest v1 header, CRLF included (the spec's worst case, ``TCP6`` with full addresses)."""

V1_SHORTEST = len(b"PROXY UNKNOWN\r\n")
"""Shortest v1 header."""

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED = 16
"""Signature, version/command, family/protocol and the 16-bit length."""

V2_MAX_LENGTH = 16384
"""Longest v2 address-and-TLV block accepted: HAProxy's own buffer size (``tune.bufsize``)."""

_V2_VERSION = 0x2
_V2_LOCAL = 0x0
_V2_PROXY = 0x1
_FAMILY_UNSPEC, _FAMILY_INET, _FAMILY_INET6, _FAMILY_UNIX = 0x0, 0x1, 0x2, 0x3
_PROTO_UNSPEC, _PROTO_STREAM, _PROTO_DGRAM = 0x0, 0x1, 0x2
_UNIX_PATH = 108
_ADDRESS_BLOCK = {_FAMILY_INET: 12, _FAMILY_INET6: 36, _FAMILY_UNIX: 2 * _UNIX_PATH}

Command = Literal["proxy", "local", "unknown"]
"""``proxy``: addresses given; ``local``: the proxy's own connection (a health
check); ``unknown``: the proxy did not know the addresses. For the last two
the connection's real endpoints stand."""


class ProxyVersion(enum.Enum):
    """Which header a listener requires; the value is how settings spell it."""

    V1 = "v1"
    V2 = "v2"
    ANY = "any"

    @property
    def signatures(self) -> tuple[bytes, ...]:
        """The opening bytes of the headers this setting accepts."""
        return {
            ProxyVersion.V1: (V1_PREFIX,),
            ProxyVersion.V2: (V2_SIGNATURE,),
            ProxyVersion.ANY: (V1_PREFIX, V2_SIGNATURE),
        }[self]


class ProxyHeaderError(RemoteProtocolError):
    """A PROXY header could not be read; the connection must be refused."""


class MalformedProxyHeader(ProxyHeaderError):
    """The bytes are not a PROXY header the listener accepts."""


class TruncatedProxyHeader(ProxyHeaderError):
    """The peer closed (or the time ran out) before the header was complete."""


class OversizedProxyHeader(ProxyHeaderError):
    """The header runs past its bound (107 bytes for v1, :data:`V2_MAX_LENGTH` for v2)."""


@attrs.frozen
class ProxyHeader:
    """What a PROXY header said: the client's original addresses, or why there are none."""

    version: int
    command: Command
    source: Address | None = None
    destination: Address | None = None
    tlvs: tuple[tuple[int, bytes], ...] = ()
    """v2 type-length-value extensions, in order, as (type, value)."""

    def __str__(self) -> str:
        if self.source is None:
            return f"PROXY v{self.version} {self.command}"
        return f"PROXY v{self.version} {self.source} -> {self.destination}"


@attrs.frozen
class ParsedHeader:
    """A complete header and the conversation's bytes that arrived with it."""

    header: ProxyHeader
    rest: bytes


class ProxyHeaderParser:
    """Reads one PROXY header of the versions *accept* allows, fed in pieces."""

    __slots__ = ("_accept", "_buffer", "_done")

    def __init__(self, accept: ProxyVersion) -> None:
        self._accept = accept
        self._buffer = bytearray()
        self._done = False

    def receive_data(self, data: bytes | bytearray) -> ParsedHeader | None:
        """Add *data*; return the header once complete, else ``None``.

        Raises a :class:`ProxyHeaderError` as soon as the bytes cannot be an
        accepted header. After the header is returned the parser is spent.
        """
        if self._done:
            raise RuntimeError("the PROXY header was already read")
        self._buffer += data
        buffered = bytes(self._buffer)
        if buffered.startswith(V1_PREFIX) and V1_PREFIX in self._accept.signatures:
            parsed = _take_v1(buffered)
        elif buffered.startswith(V2_SIGNATURE) and V2_SIGNATURE in self._accept.signatures:
            parsed = _take_v2(buffered)
        else:
            _check_could_begin(buffered, self._accept)
            parsed = None
        if parsed is not None:
            self._done = True
            self._buffer.clear()
        return parsed

    def receive_read(self, data: bytes | bytearray) -> ParsedHeader | None:
        """What one read gave, as a driver sees it: empty *data* means the peer closed."""
        if not data:
            self.receive_eof()
        return self.receive_data(data)

    def receive_eof(self) -> NoReturn:
        """The peer closed before the header was complete: always an error."""
        raise TruncatedProxyHeader(
            f"connection closed after {len(self._buffer)} bytes of a PROXY header"
        )

    @property
    def wanted(self) -> int:
        """Most bytes a read may take without going past the header's end (at least 1).

        A driver that reads no more than this never takes a byte of the
        conversation with the header, so a TLS handshake can follow on the
        same socket untouched.
        """
        held = bytes(self._buffer)
        if held.startswith(V2_SIGNATURE) and len(held) >= V2_FIXED:
            length: int = struct.unpack_from("!H", held, 14)[0]
            return max(1, V2_FIXED + length - len(held))
        shortest = V2_FIXED if self._accept is ProxyVersion.V2 else V1_SHORTEST
        if held.startswith(V2_SIGNATURE[:1]):
            shortest = V2_FIXED
        if len(held) < shortest:
            return shortest - len(held)
        return 1 if held.endswith(b"\r") else 2

    @property
    def buffered(self) -> int:
        """Bytes held so far (never more than one header's bound)."""
        return len(self._buffer)


def _check_could_begin(buffered: bytes, accept: ProxyVersion) -> None:
    """Refuse *buffered* unless it is the start of some accepted signature."""
    for signature in accept.signatures:
        if signature.startswith(buffered[: len(signature)]):
            return
    which = "" if accept is ProxyVersion.ANY else f" {accept.value}"
    raise MalformedProxyHeader(f"no PROXY{which} header at the start of the connection")


def _take_v1(buffered: bytes) -> ParsedHeader | None:
    """Parse a v1 line once its CRLF is in (within :data:`V1_MAX` bytes)."""
    end = buffered.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if b"\n" in buffered[:V1_MAX]:
            raise MalformedProxyHeader("PROXY v1 header not ended by CRLF")
        if len(buffered) >= V1_MAX:
            raise OversizedProxyHeader(f"PROXY v1 header longer than {V1_MAX} bytes")
        return None
    line = buffered[:end]
    if not all(0x20 <= byte < 0x7F for byte in line):
        raise MalformedProxyHeader("PROXY v1 header holds a byte that is not printable ASCII")
    header = _v1_header(line.decode("ascii").split(" "))
    return ParsedHeader(header, buffered[end + 2 :])


def _v1_header(words: list[str]) -> ProxyHeader:
    """The header a v1 line's space-separated words describe."""
    if len(words) >= 2 and words[1] == "UNKNOWN":
        return ProxyHeader(1, "unknown")
    if len(words) != 6 or words[1] not in ("TCP4", "TCP6"):
        raise MalformedProxyHeader("PROXY v1 header is not 'PROXY TCP4|TCP6 SRC DST SPORT DPORT'")
    version = 4 if words[1] == "TCP4" else 6
    source = Address(_v1_ip(words[2], version), _v1_port(words[4]))
    destination = Address(_v1_ip(words[3], version), _v1_port(words[5]))
    return ProxyHeader(1, "proxy", source, destination)


def _v1_ip(text: str, version: int) -> str:
    """An address of a v1 header, in its canonical form; refuse one of the wrong family."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise MalformedProxyHeader("PROXY v1 header holds an invalid address") from None
    if address.version != version:
        raise MalformedProxyHeader(f"PROXY v1 header holds an address that is not IPv{version}")
    return str(address)


def _v1_port(text: str) -> int:
    """A v1 port: 1 to 5 decimal digits, no sign or leading zero, at most 65535."""
    valid = text.isascii() and text.isdigit() and len(text) <= 5
    if not valid or (len(text) > 1 and text[0] == "0") or int(text) > 0xFFFF:
        raise MalformedProxyHeader("PROXY v1 header holds an invalid port")
    return int(text)


def _take_v2(buffered: bytes) -> ParsedHeader | None:
    """Parse a v2 header once its fixed part and announced length are in."""
    if len(buffered) < V2_FIXED:
        return None
    version_command, family_protocol, length = struct.unpack_from("!BBH", buffered, 12)
    if version_command >> 4 != _V2_VERSION:
        raise MalformedProxyHeader(f"PROXY v2 header has version {version_command >> 4}")
    command = version_command & 0x0F
    family, protocol = family_protocol >> 4, family_protocol & 0x0F
    if command not in (_V2_LOCAL, _V2_PROXY):
        raise MalformedProxyHeader(f"PROXY v2 header has unknown command {command}")
    if family > _FAMILY_UNIX or protocol > _PROTO_DGRAM:
        raise MalformedProxyHeader("PROXY v2 header has an unknown address family or protocol")
    if length > V2_MAX_LENGTH:
        raise OversizedProxyHeader(
            f"PROXY v2 header announces {length} bytes (most {V2_MAX_LENGTH})"
        )
    if len(buffered) < V2_FIXED + length:
        return None
    body = buffered[V2_FIXED : V2_FIXED + length]
    header = _v2_header(command, family, protocol, body)
    return ParsedHeader(header, buffered[V2_FIXED + length :])


def _v2_header(command: int, family: int, protocol: int, body: bytes) -> ProxyHeader:
    """The header a v2 body describes (addresses, then TLVs)."""
    block = _ADDRESS_BLOCK.get(family, 0)
    if len(body) < block:
        raise MalformedProxyHeader("PROXY v2 header is too short for its address family")
    if family == _FAMILY_UNSPEC:
        return ProxyHeader(2, "local" if command == _V2_LOCAL else "unknown")
    tlvs = _v2_tlvs(body[block:])
    if command == _V2_LOCAL:
        return ProxyHeader(2, "local", tlvs=tlvs)
    if protocol == _PROTO_UNSPEC:
        return ProxyHeader(2, "unknown", tlvs=tlvs)
    source, destination = _v2_addresses(family, body[:block])
    return ProxyHeader(2, "proxy", source, destination, tlvs)


def _v2_addresses(family: int, block: bytes) -> tuple[Address, Address]:
    """Source and destination from a v2 address block of *family*."""
    if family == _FAMILY_UNIX:
        return _unix_address(block[:_UNIX_PATH]), _unix_address(block[_UNIX_PATH:])
    size = 4 if family == _FAMILY_INET else 16
    source_ip = ipaddress.ip_address(block[:size])
    destination_ip = ipaddress.ip_address(block[size : 2 * size])
    source_port, destination_port = struct.unpack_from("!HH", block, 2 * size)
    return Address(str(source_ip), source_port), Address(str(destination_ip), destination_port)


def _unix_address(field: bytes) -> Address:
    """A unix path from its NUL-padded 108-byte field."""
    return Address.unix(field.split(b"\x00", 1)[0].decode("utf-8", "surrogateescape"))


def _v2_tlvs(data: bytes) -> tuple[tuple[int, bytes], ...]:
    """The TLVs after the addresses; one running past the header is malformed."""
    tlvs: list[tuple[int, bytes]] = []
    offset = 0
    while offset < len(data):
        if offset + 3 > len(data):
            raise MalformedProxyHeader("PROXY v2 header ends inside a TLV")
        kind, size = struct.unpack_from("!BH", data, offset)
        value = data[offset + 3 : offset + 3 + size]
        if len(value) != size:
            raise MalformedProxyHeader("PROXY v2 header has a TLV longer than the header")
        tlvs.append((kind, value))
        offset += 3 + size
    return tuple(tlvs)


def build_header(version: int, source: Address | None, destination: Address | None) -> bytes:
    """The v1 or v2 header announcing *source* -> *destination*.

    ``None`` addresses give ``PROXY UNKNOWN`` (v1) or a LOCAL header (v2).
    """
    if version == 1:
        return build_v1(source, destination)
    if version == 2:
        return build_v2(source, destination)
    raise ValueError(f"no PROXY protocol version {version}")


def build_v1(source: Address | None, destination: Address | None) -> bytes:
    """A v1 line; addresses v1 cannot carry (unix, mixed families) give UNKNOWN."""
    pair = _ip_pair(source, destination)
    if pair is None or source is None or destination is None:
        return b"PROXY UNKNOWN\r\n"
    source_ip, destination_ip = pair
    family = "TCP4" if source_ip.version == 4 else "TCP6"
    text = f"PROXY {family} {source_ip} {destination_ip} {source.port} {destination.port}\r\n"
    return text.encode("ascii")


def build_v2(
    source: Address | None,
    destination: Address | None,
    *,
    datagram: bool = False,
    tlvs: tuple[tuple[int, bytes], ...] = (),
) -> bytes:
    """A v2 header; ``None`` addresses give the LOCAL command."""
    protocol = _PROTO_DGRAM if datagram else _PROTO_STREAM
    extensions = b"".join(struct.pack("!BH", kind, len(value)) + value for kind, value in tlvs)
    if source is None or destination is None:
        return _v2_frame(_V2_LOCAL, _FAMILY_UNSPEC, _PROTO_UNSPEC, extensions)
    if source.path is not None and destination.path is not None:
        block = _unix_field(source.path) + _unix_field(destination.path)
        return _v2_frame(_V2_PROXY, _FAMILY_UNIX, protocol, block + extensions)
    pair = _ip_pair(source, destination)
    if pair is None:
        return _v2_frame(_V2_PROXY, _FAMILY_UNSPEC, _PROTO_UNSPEC, extensions)
    source_ip, destination_ip = pair
    family = _FAMILY_INET if source_ip.version == 4 else _FAMILY_INET6
    ports = struct.pack("!HH", source.port, destination.port)
    block = source_ip.packed + destination_ip.packed + ports
    return _v2_frame(_V2_PROXY, family, protocol, block + extensions)


def _v2_frame(command: int, family: int, protocol: int, body: bytes) -> bytes:
    """Signature, the two type bytes, the length, then *body*."""
    head = struct.pack("!BBH", _V2_VERSION << 4 | command, family << 4 | protocol, len(body))
    return V2_SIGNATURE + head + body


def _unix_field(path: str) -> bytes:
    """A unix path as v2's NUL-padded 108-byte field."""
    raw = path.encode("utf-8", "surrogateescape")[: _UNIX_PATH - 1]
    return raw.ljust(_UNIX_PATH, b"\x00")


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _ip_pair(
    source: Address | None, destination: Address | None
) -> tuple[IPAddress, IPAddress] | None:
    """Both addresses as IPs of one family (IPv4 mapped into IPv6 when mixed), or None."""
    if source is None or destination is None or source.path is not None:
        return None
    try:
        source_ip = ipaddress.ip_address(source.host.split("%", 1)[0])
        destination_ip = ipaddress.ip_address(destination.host.split("%", 1)[0])
    except ValueError:
        return None
    if source_ip.version != destination_ip.version:
        source_ip, destination_ip = _as_v6(source_ip), _as_v6(destination_ip)
    return source_ip, destination_ip


def _as_v6(address: IPAddress) -> ipaddress.IPv6Address:
    """*address* in IPv6 form (an IPv4 one mapped to ``::ffff:a.b.c.d``)."""
    if isinstance(address, ipaddress.IPv6Address):
        return address
    return ipaddress.IPv6Address(f"::ffff:{address}")
