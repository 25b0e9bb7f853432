"""``trio-echo serve``: run either driver's server until a signal stops it.

The first SIGINT or SIGTERM stops accepting and gives connections in flight
``--grace`` seconds; a second one cancels them at once. Either way the
server exits 0 with a one-line summary.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import AsyncIterator, Sequence
from types import FrameType

import attrs
import trio

from ..address import Address
from ..blocking_driver import BlockingServer
from ..config import ServerConfig, WireProtocol
from ..connection_log import LoggingSink
from ..escape import escape_text
from ..transport.reflection import ReflectionPolicy
from ..transport.spec import ListenSpec, Transport
from ..transport.tls import TlsServerSettings
from ..trio_driver import TrioServer
from .common import EXIT_OK, build_config


def serve_command(args: argparse.Namespace) -> int:
    tls = None
    if args.certfile is not None:
        tls = build_config(
            TlsServerSettings,
            certfile=args.certfile,
            keyfile=args.keyfile,
            client_ca=args.client_ca,
            handshake_timeout=args.handshake_timeout,
        )
    config = build_config(
        ServerConfig,
        host=args.host,
        port=args.port,
        listen=args.listen,
        tls=tls,
        reflection=build_config(ReflectionPolicy, rate=args.udp_rate, burst=args.udp_burst),
        protocol=args.protocol,
        once=args.once,
        idle_timeout=args.idle_timeout,
        send_timeout=args.send_timeout,
        max_connections=args.max_connections,
        max_line=args.max_line,
        grace=args.grace,
    )
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(message)s", datefmt="%H:%M:%S"
    )
    serve = _serve_blocking if args.blocking else _serve_trio
    summary = serve(config)
    print(summary, flush=True)
    return EXIT_OK


def _announce(config: ServerConfig, listeners: Sequence[ListenSpec], driver: str) -> None:
    """One line: the default protocol, the driver, and every bound listener.

    A TCP listener speaking the default protocol is written as its address
    alone (``127.0.0.1:3100``); any other as its spec, with its protocol
    only where it is not the default.
    """
    listening = ", ".join(_shown(spec, config.protocol) for spec in listeners)
    print(f"{config.protocol.value} server ({driver}) listening on {listening}", flush=True)


def _shown(spec: ListenSpec, default: WireProtocol) -> str:
    if spec.protocol is default:
        if spec.transport is Transport.TCP:
            return str(spec.address)
        spec = attrs.evolve(spec, protocol=None)
    return escape_text(str(spec))


def _serve_trio(config: ServerConfig) -> str:
    server = TrioServer(config, sink=LoggingSink())

    async def serve() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_shut_down_on_signals, signals, server)
                await nursery.start(_serve_then_stop, server, nursery.cancel_scope)
                _announce(config, server.listeners, "trio")

    trio.run(serve)
    return server.stats.summary()


async def _serve_then_stop(
    server: TrioServer,
    watchers: trio.CancelScope,
    *,
    task_status: trio.TaskStatus[tuple[Address, ...]] = trio.TASK_STATUS_IGNORED,
) -> None:
    await server.run(task_status=task_status)
    watchers.cancel()


async def _shut_down_on_signals(signals: AsyncIterator[int], server: TrioServer) -> None:
    """The first signal starts a graceful shutdown; the next cancels everything at once."""
    grace: float | None = None
    async for _signum in signals:
        server.shutdown(grace)
        grace = 0


def _serve_blocking(config: ServerConfig) -> str:
    server = BlockingServer(config, sink=LoggingSink())
    server.start()
    with _signals_raise(_Stop):
        try:
            # Announce only once a signal is handled: whoever waits for this
            # line may stop the server at once and must still get its summary.
            _announce(config, server.listeners, "blocking")
            server.wait()
        except _Stop:
            try:
                server.shutdown()
            except _Stop:
                server.shutdown(0)
    return server.stats.summary()


class _Stop(Exception):
    """SIGINT or SIGTERM arrived."""


class _signals_raise:
    """Within the block, SIGINT and SIGTERM raise *exception* in the main thread."""

    def __init__(self, exception: type[BaseException]) -> None:
        self._exception = exception
        self._saved: dict[int, object] = {}

    def __enter__(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._saved[signum] = signal.signal(signum, self._raise)

    def __exit__(self, *_exc: object) -> None:
        for signum, handler in self._saved.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]

    def _raise(self, _signum: int, _frame: FrameType | None) -> None:
        raise self._exception()
