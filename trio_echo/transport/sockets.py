"""Bind the sockets a :class:`~trio_echo.transport.spec.ListenSpec` names, with ``socket`` alone.

Both drivers bind here and then put the sockets under their own I/O (Trio
wraps them, the blocking driver accepts on them), so a spec means the same
sockets whichever driver serves it. Every socket returned is non-blocking;
stream sockets are already listening. Failures are the named errors of
:mod:`trio_echo.errors` (``AddressInUse`` above all), raised after closing
whatever was opened.

Choices, and why:

- **One socket per address.** A host resolving to several addresses
  (``localhost`` to ``127.0.0.1`` and ``::1``) gets a socket on each. With
  port 0, the first socket's port, chosen by the kernel, is reused for the
  others, so one port reaches the server on every address; if that port is
  taken on a later address, the whole set is tried again a few times.
- **IPv6 sockets are IPv6 only** (``IPV6_V6ONLY=1``): ``[::]`` listens on
  every IPv6 address and no IPv4 one, as nginx's ``listen [::]:80`` and
  Trio's ``open_tcp_listeners`` do. ``tcp://0.0.0.0:P`` and
  ``tcp://[::]:P`` are then two listeners that can run side by side, and a
  spec never takes more than it says.
- **SO_REUSEADDR on stream sockets only.** It lets a restarted TCP server
  bind while old connections sit in TIME_WAIT. On a UDP socket Linux would
  let a second server bind the same port and silently share its traffic,
  so UDP does without it and a taken port is ``AddressInUse``.
- **A stale unix socket file is replaced, a live one is not.** A server
  that died leaves its socket file behind; binding over it fails forever
  unless someone removes it. Before binding, a path that exists and is a
  socket is probed with a connect: refused means nobody listens, so the
  file is removed; anything else means a server answers and binding stops
  with ``AddressInUse``. The probe is a real connection: a live server
  accepts one client that leaves at once. A path that is not a socket (a
  regular file, a directory, a symbolic link) is never removed. Two servers starting on the
  same stale path at the same instant can still race; one of them then
  fails to bind or leaves the other's file unreachable, as with any
  check-then-act on a shared file system.
- **A server removes its socket file only if it is still its own.** See
  :class:`UnixSocketFile`: if another server replaced the file meanwhile,
  closing ours must not cut that server off.
- **Abstract sockets** (``unix:@NAME``, Linux only) live in a namespace of
  their own: nothing is probed, nothing is removed, and a taken name is
  ``AddressInUse`` from ``bind`` itself.
- **Listeners shared by worker processes** (``serve --workers N``): a worker
  either binds its own TCP and UDP sockets with ``SO_REUSEPORT`` (Linux: the
  kernel spreads connections and datagrams across the workers' sockets), or
  adopts sockets its supervisor bound and handed down (unix sockets, and
  every transport where ``SO_REUSEPORT`` does not spread load). See
  :func:`share_listeners`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import stat
from typing import Any

import attrs

from ..address import Address
from ..errors import AddressInUse, ConfigError
from ..escape import escape_text
from ..os_errors import from_os_error
from .spec import ABSTRACT_PREFIX, ListenSpec, Transport

PORT_RETRIES = 5
"""How often a port-0 spec with several addresses looks for a port free on all of them."""

_SOCKET_IN_USE = {errno.EAGAIN, errno.EWOULDBLOCK, errno.EINPROGRESS, errno.EPROTOTYPE}
"""A probe connect failing with one of these still found a live socket (busy, or not a stream)."""


REUSE_PORT_SPREADS = hasattr(socket, "SO_REUSEPORT") and os.uname().sysname == "Linux"
"""Whether ``SO_REUSEPORT`` makes the kernel spread load across sockets bound alike.

On Linux it does, for TCP and UDP; on the BSDs and macOS the last socket
bound takes everything, so workers there share an inherited socket instead.
"""

BindKey = tuple[bool, str | None, int | None]
"""What a driver binds: (stream or not, host, port), or (True, path, None) for unix."""


@attrs.define
class _Sharing:
    """How this process binds listeners: alone (the default), or as one of several workers."""

    reuse_port: bool = False
    inherited: dict[BindKey, list[socket.socket]] = attrs.field(factory=dict)


_sharing = _Sharing()


def share_listeners(
    *, reuse_port: bool, inherited: dict[BindKey, list[socket.socket]] | None = None
) -> None:
    """Make this process a worker: bind with ``SO_REUSEPORT`` and adopt *inherited* sockets.

    A later :func:`bind` of a spec whose :func:`bind_key` is in *inherited*
    returns those sockets (once) instead of binding new ones.
    """
    _sharing.reuse_port = reuse_port
    _sharing.inherited = dict(inherited or {})


def bind_key(spec: ListenSpec) -> BindKey:
    """The sockets *spec* needs, as a driver asks for them (a TLS listener binds TCP)."""
    if spec.transport is Transport.UNIX:
        return (True, spec.path, None)
    return (spec.transport.is_stream, spec.host, spec.port)


def bind(spec: ListenSpec, *, backlog: int, reuse_port: bool | None = None) -> list[socket.socket]:
    """Open, bind and (for stream transports) listen on every socket *spec* names.

    Returns non-blocking sockets: one per distinct address for TCP, TLS and
    UDP, one for unix. Raises a :class:`~trio_echo.errors.NetworkError`
    (``AddressInUse``, ``HostNotFound``, ...) naming the spec, after closing
    anything already opened. *reuse_port* sets ``SO_REUSEPORT`` on TCP, TLS
    and UDP sockets (default: as :func:`share_listeners` said, else not).
    """
    if backlog < 1:
        raise ConfigError(f"backlog must be a positive integer, not {backlog!r}")
    adopted = _sharing.inherited.pop(bind_key(spec), None)
    if adopted is not None:
        return adopted
    if spec.transport is Transport.UNIX:
        return [_bind_unix(spec, backlog)]
    return _bind_network(spec, backlog, _sharing.reuse_port if reuse_port is None else reuse_port)


def bound_address(sock: socket.socket) -> str:
    """Where *sock* is bound, for reports: ``127.0.0.1:4012``, ``[::1]:4012``, a path or ``@NAME``.

    The real port when port 0 was asked for. Escaped: a unix path may hold
    any byte but NUL, and reports go to terminals.
    """
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return escape_text(_unix_name(name))
    return escape_text(str(Address.from_sockaddr(name)))


def unix_path(sock: socket.socket | Any) -> str:
    """The path a unix socket is bound to, unescaped (``@NAME`` for an abstract one)."""
    return _unix_name(sock.getsockname())


def bound_spec(sock: socket.socket, spec: ListenSpec) -> ListenSpec:
    """*spec* as *sock* realised it: the address bound and the real port, settings kept.

    ``tcp://localhost:0`` bound on two addresses gives ``tcp://127.0.0.1:P``
    and ``tcp://[::1]:P``, each a spec a client can be given as its target.
    """
    if spec.transport is Transport.UNIX:
        return attrs.evolve(spec, path=_unix_name(sock.getsockname()))
    address = Address.from_sockaddr(sock.getsockname())
    return attrs.evolve(spec, host=address.host, port=address.port)


def _doing(spec: ListenSpec) -> str:
    """What failed, for the error message: ``listen on SPEC``, escaped to one line."""
    return f"listen on {escape_text(str(spec))}"


# -- network: TCP, TLS, UDP ---------------------------------------------------------------------


def ensure_unclaimed(spec: ListenSpec) -> None:
    """Raise ``AddressInUse`` if anything holds *spec*'s port, even a socket that shares it.

    Sockets that all set ``SO_REUSEPORT`` may bind one port together: a
    second server told to listen where a first one listens that way would
    silently take half its traffic. Binding once without the option, and
    without listening (so no client can reach the probe), tells the two cases
    apart. Port 0 is never claimed.
    """
    if spec.port == 0:
        return
    for sock in _bind_network(spec, 1, reuse_port=False, listening=False):
        sock.close()


def _bind_network(
    spec: ListenSpec, backlog: int, reuse_port: bool, *, listening: bool = True
) -> list[socket.socket]:
    assert spec.host is not None and spec.port is not None
    kind = socket.SOCK_STREAM if spec.transport.is_stream else socket.SOCK_DGRAM
    try:
        infos = socket.getaddrinfo(spec.host, spec.port, type=kind, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise from_os_error(exc, _doing(spec)) from None
    addresses = _distinct(infos)
    attempts = PORT_RETRIES if spec.port == 0 and len(addresses) > 1 else 1
    for attempt in range(attempts):
        try:
            listen_backlog = backlog if spec.transport.is_stream and listening else None
            return _bind_each(addresses, spec.port, listen_backlog, reuse_port)
        except _LaterAddressInUse as taken:
            if attempt + 1 == attempts:
                raise from_os_error(taken.error, _doing(spec)) from None
        except OSError as exc:
            raise from_os_error(exc, _doing(spec)) from None
    raise AssertionError("unreachable")  # pragma: no cover


class _LaterAddressInUse(Exception):
    """The port the first socket was given is taken on a later address; try another."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


_AddrInfo = tuple[int, int, int, Any]
"""(family, type, proto, sockaddr): what binding one address needs."""


def _distinct(infos: list[tuple[Any, ...]]) -> list[_AddrInfo]:
    """One entry per (family, sockaddr), in getaddrinfo's order."""
    seen: set[tuple[int, Any]] = set()
    distinct: list[_AddrInfo] = []
    for family, kind, proto, _canonical, sockaddr in infos:
        if (family, sockaddr) not in seen:
            seen.add((family, sockaddr))
            distinct.append((family, kind, proto, sockaddr))
    return distinct


def _bind_each(
    addresses: list[_AddrInfo], port: int, backlog: int | None, reuse_port: bool = False
) -> list[socket.socket]:
    """Bind every address to *port*, or, when *port* is 0, to the port the first one got."""
    opened: list[socket.socket] = []
    chosen = port
    try:
        for family, kind, proto, sockaddr in addresses:
            try:
                sock = _open_bound(
                    family, kind, proto, (sockaddr[0], chosen, *sockaddr[2:]), reuse_port
                )
            except OSError as exc:
                if port == 0 and opened and exc.errno == errno.EADDRINUSE:
                    raise _LaterAddressInUse(exc) from None
                raise
            opened.append(sock)
            if backlog is not None:
                sock.listen(backlog)
            if chosen == 0:
                chosen = sock.getsockname()[1]
    except BaseException:
        for sock in opened:
            sock.close()
        raise
    return opened


def _open_bound(
    family: int, kind: int, proto: int, sockaddr: Any, reuse_port: bool = False
) -> socket.socket:
    sock = socket.socket(family, kind, proto)
    try:
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


# -- unix ---------------------------------------------------------------------------------------


def _bind_unix(spec: ListenSpec, backlog: int) -> socket.socket:
    assert spec.path is not None
    if spec.is_abstract:
        address = "\0" + spec.path.removeprefix(ABSTRACT_PREFIX)
    else:
        address = spec.path
        _clear_stale_socket_file(spec)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise from_os_error(exc, _doing(spec)) from None
    return sock


def _clear_stale_socket_file(spec: ListenSpec) -> None:
    """Remove a socket file at *spec*'s path that nobody listens on; refuse anything else."""
    assert spec.path is not None
    try:
        mode = os.lstat(spec.path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise from_os_error(exc, _doing(spec)) from None
    if not stat.S_ISSOCK(mode):
        raise AddressInUse(f"{_doing(spec)}: {spec.display} exists and is not a socket; left alone")
    if _someone_listens(spec):
        raise AddressInUse(f"{_doing(spec)}: a server is already listening on {spec.display}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(spec.path)


def _someone_listens(spec: ListenSpec) -> bool:
    """Probe the socket file at *spec*'s path: True if a live socket is bound to it."""
    path = spec.path
    assert path is not None
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.setblocking(False)
        probe.connect(path)
    except ConnectionRefusedError:
        return False
    except OSError as exc:
        if exc.errno in _SOCKET_IN_USE:
            return True
        raise from_os_error(exc, _doing(spec)) from None
    finally:
        probe.close()
    return True


def _unix_name(name: str | bytes) -> str:
    """A unix socket address as a spec writes it: the path, or ``@NAME`` for abstract ones."""
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    if name.startswith("\0"):
        return ABSTRACT_PREFIX + name[1:]
    return name


@attrs.frozen
class UnixSocketFile:
    """The socket file a unix listener created, known by its device and inode.

    A server takes one with :meth:`of` right after :func:`bind` and, when
    it shuts down, calls :meth:`remove` *before* closing the socket. The
    file is removed only if the path still names the very file this server
    created: if an operator moved it aside, or a newer server replaced it,
    that other file stays. This identity, not the path, is what "our socket
    file" means.

    Why before closing: file systems hand a freed inode number to the next
    file created, so once our socket is closed (and its file, if unlinked
    by someone else, freed) a newer file may carry our old device and
    inode. While our socket is open it holds its inode, so no other file
    can have that number and the comparison is exact. Removing first also
    stops new clients from finding a server that is going away.
    """

    path: str
    device: int
    inode: int

    @classmethod
    def of(cls, sock: socket.socket) -> UnixSocketFile | None:
        """The file *sock* is bound to, or None when it has none (not unix, abstract, unnamed).

        Call it at once after :func:`bind`, before anyone else could
        replace the file.
        """
        if sock.family != socket.AF_UNIX:
            return None
        name = _unix_name(sock.getsockname())
        if name == "" or name.startswith(ABSTRACT_PREFIX):
            return None
        info = os.stat(name, follow_symlinks=False)
        return cls(path=name, device=info.st_dev, inode=info.st_ino)

    def is_ours(self) -> bool:
        """True while the path still names the socket file this server created."""
        try:
            info = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return (info.st_dev, info.st_ino) == (self.device, self.inode)

    def remove(self) -> bool:
        """Remove the file if it is still ours; True if it was removed.

        Call it while the socket is still open (see the class notes). Never
        raises for a file that is already gone or no longer ours.
        """
        if not self.is_ours():
            return False
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            return False
        return True


DRAIN_LIMIT = 262144
"""Most bytes :func:`end_gently` reads and drops before closing."""


def end_gently(sock: socket.socket) -> None:
    """Before a close a shutdown forces: send end of input, drop what is already in.

    Closing a socket with unread input makes the kernel send a reset in
    place of the end of input, and the peer may lose what it had not read
    yet. Sending end of input first and reading what already arrived (at
    most :data:`DRAIN_LIMIT` bytes, without waiting) lets the peer read a
    clean end wherever the kernel allows; what arrives later still resets.
    Never raises: the socket may be broken already.
    """
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
    drained = 0
    with contextlib.suppress(OSError):
        while drained < DRAIN_LIMIT:
            data = sock.recv(65536, socket.MSG_DONTWAIT)
            if not data:
                break
            drained += len(data)


def clients_waiting(sock: socket.socket | Any) -> bool:
    """Whether the listening socket *sock* has a connection waiting to be accepted."""
    if sock.fileno() == -1:
        return False
    readable, _, _ = select.select([sock.fileno()], [], [], 0)
    return bool(readable)
