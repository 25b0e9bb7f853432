"""Raw loopback clients for the figures and the fault tests: connect, exchange, flood, reset."""

from __future__ import annotations

import socket
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


async def exchange(stream: trio.SocketStream, message: bytes) -> bytes:
    """Send *message* to an echo server and read back as many bytes (fewer at its close)."""
    await stream.send_all(message)
    received = b""
    while len(received) < len(message):
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
