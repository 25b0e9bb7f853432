"""asyncio streams: ``asyncio.start_server`` with a StreamReader/StreamWriter pair.

The way the asyncio documentation writes a TCP echo server: read, write,
``await drain()``.
"""

from __future__ import annotations

import asyncio
import signal

from .common import (
    BACKLOG,
    RECEIVE_SIZE,
    announce,
    answer_function,
    listening_socket,
    main_guard,
    parse_args,
    raise_open_files_limit,
)


async def serve(port: int, protocol: str) -> None:
    answer = answer_function(protocol)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await reader.read(RECEIVE_SIZE)
                if not data:
                    break
                writer.write(answer(data))
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    server = await asyncio.start_server(
        handle, sock=listening_socket(port), limit=RECEIVE_SIZE, backlog=BACKLOG
    )
    announce(protocol, "asyncio streams", server.sockets[0].getsockname()[1])
    async with server:
        await stop.wait()


def main() -> None:
    args = parse_args(__doc__ or "")
    raise_open_files_limit()
    main_guard(lambda: asyncio.run(serve(args.port, args.protocol)))


if __name__ == "__main__":
    main()
