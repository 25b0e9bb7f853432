"""Trio, tutorial style: ``trio.serve_tcp`` and a handler looping on
``SocketStream.receive_some`` / ``send_all``.

The naive Trio baseline: what the Trio tutorial's echo server does, with no
timeouts and no limits.
"""

from __future__ import annotations

import functools
import signal

import trio

from .common import (
    BACKLOG,
    HOST,
    RECEIVE_SIZE,
    announce,
    answer_function,
    main_guard,
    parse_args,
    raise_open_files_limit,
)


async def serve(port: int, protocol: str) -> None:
    answer = answer_function(protocol)

    async def handler(stream: trio.SocketStream) -> None:
        try:
            while True:
                data = await stream.receive_some(RECEIVE_SIZE)
                if not data:
                    return
                await stream.send_all(answer(data))
        except trio.BrokenResourceError:
            return

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                functools.partial(trio.serve_tcp, handler, port, host=HOST, backlog=BACKLOG)
            )
            announce(protocol, "trio tutorial", listeners[0].socket.getsockname()[1])
            async for _signum in signals:
                nursery.cancel_scope.cancel()
                break


def main() -> None:
    args = parse_args(__doc__ or "")
    raise_open_files_limit()
    main_guard(lambda: trio.run(serve, args.port, args.protocol))


if __name__ == "__main__":
    main()
