"""asyncio streams over ``ssl``: ``asyncio.start_server(ssl=context)``, read, write, drain.

The TLS peer of trio-echo's ``tls://`` listener: the same certificate and
key, the same reply/echo contract as the other peers.
"""

from __future__ import annotations

import asyncio
import signal
import ssl
import sys

from .common import (
    BACKLOG,
    HOST,
    RECEIVE_SIZE,
    answer_function,
    listening_socket,
    main_guard,
)


async def serve(port: int, protocol: str, certfile: str) -> None:
    answer = answer_function(protocol)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(RECEIVE_SIZE):
                writer.write(answer(data))
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    sock = listening_socket(port)
    server = await asyncio.start_server(handle, sock=sock, backlog=BACKLOG, ssl=context)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print(
        f"{protocol} server (asyncio streams + ssl) listening on "
        f"tls://{HOST}:{sock.getsockname()[1]}",
        flush=True,
    )
    async with server:
        await stop.wait()


def main(argv: list[str]) -> None:
    protocol = "echo" if "echo" in argv else "reply"
    port = int(argv[argv.index("--port") + 1]) if "--port" in argv else 0
    certfile = argv[argv.index("--certfile") + 1]
    main_guard(lambda: asyncio.run(serve(port, protocol, certfile)))


if __name__ == "__main__":
    main(sys.argv[1:])
