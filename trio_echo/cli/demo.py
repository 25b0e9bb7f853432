"""``trio-echo demo``: the note's two programs, in one process, in one nursery.

A server starts on a free loopback port, the note's client session runs
against it, and both sides' lines are printed in the order they happen.
"""

from __future__ import annotations

import argparse

import trio

from ..config import ClientConfig, ServerConfig, WireProtocol
from ..connection_log import (
    BytesDiscarded,
    Connected,
    ConnectionEvent,
    ConnectionFailed,
    DatagramAnswered,
    Disconnected,
    MessageReceived,
    failure_text,
)
from ..escape import escape, escape_text
from ..session import Report
from ..trio_driver import TrioServer, run_session
from ..words import counted
from .common import EXIT_FAILED, EXIT_OK


def describe(event: ConnectionEvent) -> str:
    """A server event as one printable line."""
    match event:
        case Connected(peer=peer):
            return f"{peer} connected"
        case MessageReceived(peer=peer, data=data):
            return f"{peer} received {escape(data)}"
        case BytesDiscarded(peer=peer, size=size):
            return f"{peer} ignored {counted(size, 'byte')} the protocol does not read"
        case Disconnected(peer=peer, reason=reason):
            return f"{peer} disconnected ({reason})"
        case ConnectionFailed(peer=peer, errno=errno, message=message):
            return f"{peer} failed: {failure_text(message, errno)}"
        case DatagramAnswered(peer=peer, data=data):
            return f"{peer} sent a datagram {escape(data)}"


async def run_demo(protocol: WireProtocol, report: Report) -> bool:
    """Serve on 127.0.0.1, port 0, hold one session; True if it succeeded."""
    ended = trio.Event()

    def show(event: ConnectionEvent) -> None:
        report(f"server | {describe(event)}")
        if isinstance(event, Disconnected | ConnectionFailed):
            ended.set()

    server = TrioServer(ServerConfig(port=0, protocol=protocol), sink=show)
    async with trio.open_nursery() as nursery:
        (address, *_rest) = await nursery.start(server.run)
        report(f"server | {protocol.value} server listening on {address}")
        config = ClientConfig(host=address.host, port=address.port, protocol=protocol)
        result = await run_session(config, report=lambda line: report(f"client | {line}"))
        with trio.move_on_after(5):
            await ended.wait()
        nursery.cancel_scope.cancel()
    if result.error is not None:
        report(f"client | error: {escape_text(str(result.error))}")
    return result.ok


def demo_command(args: argparse.Namespace) -> int:
    """Run the demo for ``args.protocol``; exit 0 if the session succeeded."""
    return EXIT_OK if trio.run(run_demo, args.protocol, print) else EXIT_FAILED
