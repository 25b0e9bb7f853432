"""asyncio ``DatagramProtocol`` (and, with ``--uvloop``, uvloop's): a UDP reply/echo server.

Each datagram is answered with one datagram, as trio-echo's UDP listener
answers (``Re:`` + payload for reply, the payload for echo), without
trio-echo's per-source rate limit: the peer is the floor, not a match.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from typing import Any

from .common import HOST, PREFIX, main_guard


class Reflector(asyncio.DatagramProtocol):
    def __init__(self, prefix: bytes) -> None:
        self.prefix = prefix
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # a DatagramTransport (uvloop's is not a subclass)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(self.prefix + data, addr)


async def serve(port: int, protocol: str, driver: str) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, port))
    loop = asyncio.get_running_loop()
    prefix = PREFIX if protocol == "reply" else b""
    transport, _ = await loop.create_datagram_endpoint(lambda: Reflector(prefix), sock=sock)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print(
        f"{protocol} server ({driver}) listening on udp://{HOST}:{sock.getsockname()[1]}",
        flush=True,
    )
    await stop.wait()
    transport.close()


def main(argv: list[str]) -> None:
    use_uvloop = "--uvloop" in argv
    protocol = "echo" if "echo" in argv else "reply"
    port = int(argv[argv.index("--port") + 1]) if "--port" in argv else 0
    driver = "uvloop DatagramProtocol" if use_uvloop else "asyncio DatagramProtocol"
    if use_uvloop:
        import uvloop  # optional: only this variant needs it

        main_guard(lambda: uvloop.run(serve(port, protocol, driver)))
    else:
        main_guard(lambda: asyncio.run(serve(port, protocol, driver)))


if __name__ == "__main__":
    main(sys.argv[1:])
