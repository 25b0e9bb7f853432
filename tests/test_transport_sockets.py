"""Binding what a spec names, on real loopback sockets and short-lived unix socket files."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from loopback import can_bind, has_ipv6_loopback

from trio_echo.errors import AddressInUse, ConfigError, NetworkError
from trio_echo.transport import sockets
from trio_echo.transport.sockets import UnixSocketFile, bind, bound_address, bound_spec
from trio_echo.transport.spec import ListenSpec, Transport, parse_listen_spec

TIMEOUT = 5.0
"""Bound on every blocking socket call in these tests."""


needs_ipv6 = pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback here")
needs_127_0_0_2 = pytest.mark.skipif(
    not can_bind(socket.AF_INET, "127.0.0.2"), reason="127.0.0.2 not loopback"
)
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")


@pytest.fixture
def bound() -> Iterator[list[socket.socket]]:
    """Collects the sockets a test binds and closes them after it."""
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def listen(spec: str, opened: list[socket.socket], backlog: int = 16) -> list[socket.socket]:
    socks = bind(parse_listen_spec(spec), backlog=backlog)
    opened.extend(socks)
    return socks


@pytest.fixture
def short_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory whose socket paths stay well inside the AF_UNIX limit."""
    if len(str(tmp_path)) < 60:
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(prefix="te-") as directory:
        yield Path(directory)


def port_of(sock: socket.socket) -> int:
    port: int = sock.getsockname()[1]
    return port


def assert_accepts_on(listener: socket.socket, family: int, address: Any) -> None:
    """A client connects to *address*, and *listener* is the socket that accepts it."""
    with socket.socket(family, socket.SOCK_STREAM) as client:
        client.settimeout(TIMEOUT)
        client.connect(address)
        listener.settimeout(TIMEOUT)
        try:
            peer, _ = listener.accept()
        finally:
            listener.setblocking(False)
        with peer:
            client.sendall(b"ping")
            peer.settimeout(TIMEOUT)
            assert peer.recv(4) == b"ping"


# -- TCP, TLS, UDP ------------------------------------------------------------------------------


def test_tcp_on_port_0_gets_a_free_port_and_listens(bound: list[socket.socket]) -> None:
    [listener] = listen("tcp://127.0.0.1:0", bound)
    assert listener.type == socket.SOCK_STREAM and not listener.getblocking()
    assert listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
    assert listener.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) != 0
    port = port_of(listener)
    assert port != 0
    assert bound_address(listener) == f"127.0.0.1:{port}"
    assert_accepts_on(listener, socket.AF_INET, ("127.0.0.1", port))


def test_tls_binds_like_tcp(bound: list[socket.socket]) -> None:
    [listener] = listen("tls://127.0.0.1:0?protocol=echo", bound)
    assert listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
    realised = bound_spec(listener, parse_listen_spec("tls://127.0.0.1:0?protocol=echo"))
    assert str(realised) == f"tls://127.0.0.1:{port_of(listener)}?protocol=echo"


@needs_ipv6
def test_tcp_on_ipv6_loopback_is_ipv6_only(bound: list[socket.socket]) -> None:
    [listener] = listen("tcp://[::1]:0", bound)
    assert listener.family == socket.AF_INET6
    assert listener.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
    port = port_of(listener)
    assert bound_address(listener) == f"[::1]:{port}"
    assert_accepts_on(listener, socket.AF_INET6, ("::1", port))


@needs_ipv6
def test_the_ipv6_wildcard_leaves_ipv4_to_its_own_listener(bound: list[socket.socket]) -> None:
    [v6] = listen("tcp://[::]:0", bound)
    [v4] = listen(f"tcp://0.0.0.0:{port_of(v6)}", bound)
    assert port_of(v4) == port_of(v6)
    assert_accepts_on(v4, socket.AF_INET, ("127.0.0.1", port_of(v4)))
    assert_accepts_on(v6, socket.AF_INET6, ("::1", port_of(v6)))


def _two_loopback_addresses() -> tuple[list[tuple[Any, ...]], int]:
    if has_ipv6_loopback():
        return [
            (socket.AF_INET, "127.0.0.1", ("127.0.0.1", 0)),
            (socket.AF_INET6, "::1", ("::1", 0, 0, 0)),
        ], socket.AF_INET6
    return [
        (socket.AF_INET, "127.0.0.1", ("127.0.0.1", 0)),
        (socket.AF_INET, "127.0.0.2", ("127.0.0.2", 0)),
    ], socket.AF_INET


@pytest.fixture
def two_addresses(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, Any]]:
    """Make the name ``both`` resolve to two loopback addresses (IPv4 and IPv6 when possible)."""
    entries, _family = _two_loopback_addresses()
    if not has_ipv6_loopback() and not can_bind(socket.AF_INET, "127.0.0.2"):
        pytest.skip("only one loopback address here")  # pragma: no cover
    real = socket.getaddrinfo

    def resolve(host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        if host != "both":
            return real(host, port, *args, **kwargs)
        kind = kwargs.get("type", socket.SOCK_STREAM)
        proto = socket.IPPROTO_TCP if kind == socket.SOCK_STREAM else socket.IPPROTO_UDP
        return [
            (family, kind, proto, "", (sockaddr[0], port, *sockaddr[2:]))
            for family, _name, sockaddr in entries
        ]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    return [(family, sockaddr) for family, _name, sockaddr in entries]


def test_port_0_on_several_addresses_shares_one_port(
    bound: list[socket.socket], two_addresses: list[tuple[int, Any]]
) -> None:
    first, second = listen("tcp://both:0", bound)
    port = port_of(first)
    assert port != 0 and port_of(second) == port
    for listener, (family, sockaddr) in zip((first, second), two_addresses, strict=True):
        assert_accepts_on(listener, family, (sockaddr[0], port, *sockaddr[2:]))
    realised = {str(bound_spec(sock, parse_listen_spec("tcp://both:0"))) for sock in bound}
    assert len(realised) == 2 and all(text.endswith(f":{port}") for text in realised)


def test_a_port_taken_on_a_later_address_is_retried_with_another(
    bound: list[socket.socket],
    two_addresses: list[tuple[int, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = sockets._open_bound
    opened: list[socket.socket] = []
    refused: list[Any] = []

    def open_bound(
        family: int, kind: int, proto: int, sockaddr: Any, reuse_port: bool = False
    ) -> socket.socket:
        if sockaddr[1] != 0 and not refused:  # the second address, on the first try
            refused.append(sockaddr)
            raise OSError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE))
        sock = real(family, kind, proto, sockaddr, reuse_port)
        opened.append(sock)
        return sock

    monkeypatch.setattr(sockets, "_open_bound", open_bound)
    socks = listen("tcp://both:0", bound)
    assert len(socks) == 2 and port_of(socks[0]) == port_of(socks[1])
    assert opened[0].fileno() == -1, "the first try's socket was closed"
    assert len(opened) == 3


def test_a_port_never_free_on_every_address_is_address_in_use(
    two_addresses: list[tuple[int, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = sockets._open_bound
    opened: list[socket.socket] = []

    def open_bound(
        family: int, kind: int, proto: int, sockaddr: Any, reuse_port: bool = False
    ) -> socket.socket:
        if sockaddr[1] != 0:  # every later address finds the first one's port taken
            raise OSError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE))
        sock = real(family, kind, proto, sockaddr, reuse_port)
        opened.append(sock)
        return sock

    monkeypatch.setattr(sockets, "_open_bound", open_bound)
    with pytest.raises(AddressInUse, match=r"^listen on tcp://both:0: "):
        bind(parse_listen_spec("tcp://both:0"), backlog=4)
    assert len(opened) == sockets.PORT_RETRIES
    assert all(sock.fileno() == -1 for sock in opened)


def test_a_failure_after_the_first_address_closes_what_was_opened(
    two_addresses: list[tuple[int, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = sockets._open_bound
    opened: list[socket.socket] = []

    def open_bound(
        family: int, kind: int, proto: int, sockaddr: Any, reuse_port: bool = False
    ) -> socket.socket:
        if opened:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        opened.append(real(family, kind, proto, sockaddr, reuse_port))
        return opened[-1]

    monkeypatch.setattr(sockets, "_open_bound", open_bound)
    with pytest.raises(NetworkError, match="listen on tcp://both:3100: Permission denied"):
        bind(parse_listen_spec("tcp://both:3100"), backlog=4)
    assert [sock.fileno() for sock in opened] == [-1]


def test_a_taken_tcp_port_is_address_in_use(bound: list[socket.socket]) -> None:
    [first] = listen("tcp://127.0.0.1:0", bound)
    spec = f"tcp://127.0.0.1:{port_of(first)}"
    with pytest.raises(AddressInUse) as caught:
        listen(spec, bound)
    assert str(caught.value).startswith(f"listen on {spec}: ")
    assert caught.value.errno == errno.EADDRINUSE


def test_udp_binds_a_datagram_socket_that_answers(bound: list[socket.socket]) -> None:
    [server] = listen("udp://127.0.0.1:0", bound)
    assert server.type == socket.SOCK_DGRAM and not server.getblocking()
    port = port_of(server)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(TIMEOUT)
        client.sendto(b"ping", ("127.0.0.1", port))
        server.settimeout(TIMEOUT)
        data, peer = server.recvfrom(16)
        server.sendto(data, peer)
        assert client.recv(16) == b"ping"
    assert bound_address(server) == f"127.0.0.1:{port}"


def test_a_taken_udp_port_is_address_in_use_not_shared(bound: list[socket.socket]) -> None:
    [first] = listen("udp://127.0.0.1:0", bound)
    with pytest.raises(AddressInUse):
        listen(f"udp://127.0.0.1:{port_of(first)}", bound)


@needs_ipv6
def test_udp_on_ipv6_loopback(bound: list[socket.socket]) -> None:
    [server] = listen("udp://[::1]:0", bound)
    assert server.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
    assert bound_address(server) == f"[::1]:{port_of(server)}"


def test_the_backlog_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="backlog"):
        bind(parse_listen_spec("tcp://127.0.0.1:0"), backlog=0)


# -- unix ---------------------------------------------------------------------------------------


def unix_spec(path: Path) -> ListenSpec:
    return parse_listen_spec(f"unix:{path}")


def leave_stale_socket_file(path: Path) -> None:
    """Bind a socket to *path* and close it without removing the file, as a crash would."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(path))


def assert_unix_accepts(listener: socket.socket, path: Path) -> None:
    assert_accepts_on(listener, socket.AF_UNIX, str(path))


def test_unix_binds_a_listening_socket_file(bound: list[socket.socket], short_dir: Path) -> None:
    path = short_dir / "echo.sock"
    [listener] = listen(f"unix:{path}", bound)
    assert stat.S_ISSOCK(path.lstat().st_mode) and not listener.getblocking()
    assert bound_address(listener) == str(path)
    assert bound_spec(listener, unix_spec(path)) == unix_spec(path)
    assert_unix_accepts(listener, path)


def test_a_stale_socket_file_is_replaced(bound: list[socket.socket], short_dir: Path) -> None:
    path = short_dir / "stale.sock"
    leave_stale_socket_file(path)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with client, pytest.raises(ConnectionRefusedError):
        client.connect(str(path))
    [listener] = listen(f"unix:{path}", bound)
    assert_unix_accepts(listener, path)


def test_a_live_socket_file_is_refused_and_kept(
    bound: list[socket.socket], short_dir: Path
) -> None:
    path = short_dir / "live.sock"
    [first] = listen(f"unix:{path}", bound)
    inode = path.stat().st_ino
    with pytest.raises(AddressInUse, match="a server is already listening on "):
        listen(f"unix:{path}", bound)
    assert path.stat().st_ino == inode
    first.settimeout(TIMEOUT)
    probe, _ = first.accept()  # the probe was a real connection, gone at once
    with probe:
        probe.settimeout(TIMEOUT)
        assert probe.recv(1) == b""
    assert_unix_accepts(first, path)


def test_a_busy_socket_file_counts_as_live(bound: list[socket.socket], short_dir: Path) -> None:
    path = short_dir / "busy.sock"
    listen(f"unix:{path}", bound, backlog=1)
    waiting = []
    with contextlib.ExitStack() as stack:
        for _ in range(4):  # fill the backlog: the probe's connect would block
            client = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
            client.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                client.connect(str(path))
            waiting.append(client)
        with pytest.raises(AddressInUse, match="already listening"):
            listen(f"unix:{path}", bound)


def test_a_regular_file_is_never_removed(bound: list[socket.socket], short_dir: Path) -> None:
    path = short_dir / "notes.txt"
    path.write_text("keep me")
    with pytest.raises(AddressInUse, match="exists and is not a socket; left alone"):
        listen(f"unix:{path}", bound)
    assert path.read_text() == "keep me"


def test_a_symlink_to_a_stale_socket_is_left_alone(
    bound: list[socket.socket], short_dir: Path
) -> None:
    target = short_dir / "target.sock"
    leave_stale_socket_file(target)
    link = short_dir / "link.sock"
    link.symlink_to(target)
    with pytest.raises(AddressInUse, match="is not a socket"):
        listen(f"unix:{link}", bound)
    assert link.is_symlink() and stat.S_ISSOCK(target.lstat().st_mode)


def test_our_socket_file_is_removed_on_close(bound: list[socket.socket], short_dir: Path) -> None:
    path = short_dir / "ours.sock"
    [listener] = listen(f"unix:{path}", bound)
    socket_file = UnixSocketFile.of(listener)
    assert socket_file is not None and socket_file.path == str(path)
    assert socket_file.is_ours()
    assert socket_file.remove() is True  # before close: the inode cannot be recycled yet
    listener.close()
    assert not path.exists()
    assert socket_file.remove() is False


def test_a_replaced_socket_file_is_not_removed(bound: list[socket.socket], short_dir: Path) -> None:
    path = short_dir / "shared.sock"
    [old] = listen(f"unix:{path}", bound)
    old_file = UnixSocketFile.of(old)
    assert old_file is not None
    path.unlink()  # an operator clears the way and a newer server takes the path
    [new] = listen(f"unix:{path}", bound)
    assert old_file.is_ours() is False
    assert old_file.remove() is False
    old.close()
    assert_unix_accepts(new, path)


def test_only_a_unix_socket_file_has_an_identity(
    bound: list[socket.socket], short_dir: Path
) -> None:
    [tcp] = listen("tcp://127.0.0.1:0", bound)
    assert UnixSocketFile.of(tcp) is None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unnamed:
        assert UnixSocketFile.of(unnamed) is None


def test_a_missing_directory_is_a_network_error(short_dir: Path) -> None:
    with pytest.raises(NetworkError, match="No such file or directory"):
        bind(unix_spec(short_dir / "absent" / "echo.sock"), backlog=4)


def test_a_path_too_long_for_af_unix_is_a_config_error(short_dir: Path) -> None:
    path = short_dir / ("x" * 120)
    with pytest.raises(ConfigError, match="over the limit of"):
        parse_listen_spec(f"unix:{path}")


@linux_only
def test_an_abstract_socket_has_no_file(bound: list[socket.socket]) -> None:
    name = f"@trio-echo-test-{os.getpid()}-{id(bound)}"
    [listener] = listen(f"unix:{name}", bound)
    assert bound_address(listener) == name
    assert UnixSocketFile.of(listener) is None
    assert_accepts_on(listener, socket.AF_UNIX, "\0" + name[1:])
    with pytest.raises(AddressInUse):
        listen(f"unix:{name}", bound)


@pytest.mark.skipif(not sockets.REUSE_PORT_SPREADS, reason="SO_REUSEPORT spreads load on Linux")
def test_reuse_port_lets_two_sockets_share_a_port_and_is_off_by_default() -> None:
    first = sockets.bind(ListenSpec(transport=Transport.TCP, host="127.0.0.1", port=0), backlog=1)
    try:
        port = first[0].getsockname()[1]
        spec = ListenSpec(transport=Transport.TCP, host="127.0.0.1", port=port)
        with pytest.raises(AddressInUse):
            sockets.bind(spec, backlog=1, reuse_port=True)  # the first did not set it
    finally:
        for sock in first:
            sock.close()
    spec = ListenSpec(transport=Transport.UDP, host="127.0.0.1", port=0)
    (one,) = sockets.bind(spec, backlog=1, reuse_port=True)
    try:
        same = attrs.evolve(spec, port=one.getsockname()[1])
        (two,) = sockets.bind(same, backlog=1, reuse_port=True)
        two.close()
    finally:
        one.close()


def test_an_inherited_socket_is_adopted_once_instead_of_bound() -> None:
    spec = ListenSpec(transport=Transport.TCP, host="127.0.0.1", port=0)
    (sock,) = sockets.bind(spec, backlog=1)
    shared = attrs.evolve(spec, port=sock.getsockname()[1])
    sockets.share_listeners(reuse_port=False, inherited={sockets.bind_key(shared): [sock]})
    try:
        assert sockets.bind(shared, backlog=1) == [sock]
        with pytest.raises(AddressInUse):
            sockets.bind(shared, backlog=1)  # adopted once: a second bind is a real one
    finally:
        sockets.share_listeners(reuse_port=False)
        sock.close()
