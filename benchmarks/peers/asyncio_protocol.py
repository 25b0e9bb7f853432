"""asyncio Protocol: callbacks on the transport, no coroutine per read.

``--loop uvloop`` runs the very same Protocol on uvloop's event loop (the
suite's ``bench`` extra installs it).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable
from typing import cast

from .common import (
    BACKLOG,
    announce,
    answer_function,
    listening_socket,
    main_guard,
    parse_args,
    raise_open_files_limit,
)


class AnswerProtocol(asyncio.Protocol):
    """Answers every chunk received; stops reading while the peer is not reading."""

    def __init__(self, answer: Callable[[bytes], bytes]) -> None:
        self._answer = answer
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        self._transport.write(self._answer(data))

    def eof_received(self) -> bool:
        return False  # close the transport

    def pause_writing(self) -> None:
        assert self._transport is not None
        self._transport.pause_reading()

    def resume_writing(self) -> None:
        assert self._transport is not None
        self._transport.resume_reading()


async def serve(port: int, protocol: str, driver: str) -> None:
    answer = answer_function(protocol)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    server = await loop.create_server(
        lambda: AnswerProtocol(answer), sock=listening_socket(port), backlog=BACKLOG
    )
    announce(protocol, driver, server.sockets[0].getsockname()[1])
    async with server:
        await stop.wait()


def main() -> None:
    loop_parser = argparse.ArgumentParser(add_help=False)
    loop_parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    known, rest = loop_parser.parse_known_args(sys.argv[1:])
    args = parse_args(__doc__ or "", rest)
    raise_open_files_limit()
    if known.loop == "uvloop":
        import uvloop

        def run() -> None:
            loop = uvloop.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(serve(args.port, args.protocol, "uvloop Protocol"))
            finally:
                loop.close()

    else:

        def run() -> None:
            asyncio.run(serve(args.port, args.protocol, "asyncio Protocol"))

    main_guard(run)


if __name__ == "__main__":
    main()
