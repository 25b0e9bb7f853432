"""Raw loopback clients for the figures and the fault tests: connect, exchange, flood, reset."""

from __future__ import annotations

import socket
import ssl
import struct

import trio

HOST = "127.0.0.1"
MIB = 2**20


async def connect(
    port: int, *, host: str = HOST, receive_buffer: int | None = None
) -> trio.SocketStream:
    """A TCP connection to *host*:*port*; *receive_buffer* shrinks the kernel's receive buffer."""
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    try:
        await sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


async def connect_tls(
    port: int, context: ssl.SSLContext, *, server_name: str = "localhost"
) -> trio.SSLStream[trio.SocketStream]:
    """A TLS connection to 127.0.0.1:*port*, its handshake done."""
    stream = trio.SSLStream(await connect(port), context, server_hostname=server_name)
    try:
        await stream.do_handshake()
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return stream


async def exchange(stream: trio.abc.Stream, message: bytes, *, expect: int | None = None) -> bytes:
    """Send *message* and read back as many bytes, or *expect* (fewer at the server's close)."""
    await stream.send_all(message)
    received = b""
    while len(received) < (len(message) if expect is None else expect):
        data = await stream.receive_some(65536)
        if not data:
            break
        received += data
    return received


async def read_to_eof(stream: trio.abc.ReceiveStream) -> bytes:
    """Everything the peer sends until it closes its side."""
    chunks = []
    while data := await stream.receive_some(65536):
        chunks.append(data)
    return b"".join(chunks)


async def flood(stream: trio.SocketStream) -> None:
    """Send to *stream* without reading until the server breaks the connection or it is closed."""
    chunk = b"\x5a" * 65536
    try:
        while True:
            await stream.send_all(chunk)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def reset(stream: trio.SocketStream) -> None:
    """Close with SO_LINGER {on, 0}, so the kernel sends RST instead of FIN."""
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await stream.aclose()


async def close_all(streams: list[trio.SocketStream]) -> None:
    """Close every stream, ignoring ones the server already broke."""
    for stream in streams:
        await trio.aclose_forcefully(stream)


def udp_socket(host: str = HOST, port: int = 0) -> socket.socket:
    """A non-blocking UDP socket bound to *host*:*port* (port 0 lets the kernel pick).

    A standard socket rather than a Trio one, so that :func:`drain` can read
    what is queued without waiting; :func:`receive_datagram` waits the Trio way.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


async def send_datagram(sock: socket.socket, data: bytes, port: int) -> None:
    """Send *data* to 127.0.0.1:*port*, waiting only while the kernel's send queue is full."""
    while True:
        try:
            sock.sendto(data, (HOST, port))
            return
        except BlockingIOError:
            await trio.lowlevel.wait_writable(sock)


async def receive_datagram(sock: socket.socket) -> bytes:
    """The next datagram *sock* receives."""
    while True:
        try:
            return sock.recv(65536)
        except BlockingIOError:
            await trio.lowlevel.wait_readable(sock)


async def udp_ask(
    sock: socket.socket, port: int, message: bytes, *, wait: float, tries: int
) -> float | None:
    """Send *message* to 127.0.0.1:*port* until its echo comes back; seconds taken, or None.

    Each try waits *wait* seconds for the answer (a datagram may be lost);
    other datagrams arriving meanwhile are skipped.
    """
    started = trio.current_time()
    for _ in range(tries):
        await send_datagram(sock, message, port)
        with trio.move_on_after(wait):
            while await receive_datagram(sock) != message:
                pass
            return trio.current_time() - started
    return None


def drain(sock: socket.socket) -> int:
    """How many datagrams were already queued on *sock*; reads them all without waiting."""
    count = 0
    while True:
        try:
            sock.recv(65536)
        except BlockingIOError:
            return count
        count += 1
