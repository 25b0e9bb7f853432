"""``trio-echo serve``: run either driver's server until a signal stops it.

The first SIGINT or SIGTERM stops accepting and gives connections in flight
``--grace`` seconds; a second one cancels them at once. Either way the
server exits 0 with a one-line summary.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from types import FrameType

import attrs
import trio

from ..address import Address
from ..blocking_driver import BlockingServer
from ..config import ServerConfig, WireProtocol
from ..connection_log import LoggingSink, ServerStats
from ..escape import escape_text
from ..transport.reflection import ReflectionPolicy
from ..transport.spec import ListenSpec, Transport
from ..transport.tls import TlsServerSettings
from ..trio_driver import TrioServer
from .common import EXIT_OK, build_config, silence_stdout
from .workers import Supervisor, WorkerSettings

logger = logging.getLogger("trio_echo.server")


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
        line_timeout=args.line_timeout,
        reclaim_after=args.reclaim_after,
        grace=args.grace,
    )
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(message)s", datefmt="%H:%M:%S"
    )
    workers = build_config(
        WorkerSettings, count=args.workers, once=args.once, flags={"count": "--workers"}
    )
    if workers.count > 1:
        summary = Supervisor(config, workers.count, args.blocking, args.log_level).run(_say)
    else:
        summary = serve_stats(config, blocking=args.blocking).summary()
    try:
        print(summary, flush=True)
    except BrokenPipeError:  # stdout went away (| head): the summary goes to stderr
        silence_stdout()
        print(summary, file=sys.stderr, flush=True)
    return EXIT_OK


def serve_stats(config: ServerConfig, *, blocking: bool) -> ServerStats:
    """Serve *config* with the chosen driver until stopped; the server's final counts."""
    return _serve_blocking(config) if blocking else _serve_trio(config)


def _announce(config: ServerConfig, listeners: Sequence[ListenSpec], driver: str) -> None:
    """One line: the default protocol, the driver, and every bound listener.

    A TCP listener speaking the default protocol is written as its address
    alone (``127.0.0.1:3100``); any other as its spec, with its protocol
    only where it is not the default.
    """
    listening = ", ".join(_shown(spec, config.protocol) for spec in listeners)
    _say(f"{config.protocol.value} server ({driver}) listening on {listening}")


def _say(line: str) -> None:
    try:
        print(line, flush=True)
    except BrokenPipeError:  # nobody reads stdout: serve on, the logs go to stderr
        silence_stdout()


def _shown(spec: ListenSpec, default: WireProtocol) -> str:
    if spec.protocol is default:
        if spec.transport is Transport.TCP:
            return str(spec.address)
        spec = attrs.evolve(spec, protocol=None)
    return escape_text(str(spec))


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""What stops a server: Ctrl-C, a supervisor's SIGTERM, the terminal closing (SIGHUP)."""


def _serve_trio(config: ServerConfig) -> ServerStats:
    server = TrioServer(config, sink=LoggingSink())

    async def serve() -> None:
        with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_shut_down_on_signals, signals, server)
                await nursery.start(_serve_then_stop, server, nursery.cancel_scope)
                _announce(config, server.listeners, "trio")

    # A signal before Trio's receiver is in place (during start-up) arrives as
    # KeyboardInterrupt, which Trio delivers cleanly: the server never started.
    with _signals_interrupt(), contextlib.suppress(KeyboardInterrupt):
        trio.run(serve)
    return server.stats


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
        _say_stopping(server.config, server.active_connections, grace)
        server.shutdown(grace)
        grace = 0


def _say_stopping(config: ServerConfig, active: int, grace: float | None) -> None:
    """One line, at once, saying what the shutdown now waits for."""
    if grace == 0:
        logger.warning("second signal: stopping now, cutting %s", _plural(active, "connection"))
    elif active:
        logger.warning(
            "shutting down: no new connections; waiting up to %g s for %s to finish "
            "(a second signal stops now)",
            config.grace,
            _plural(active, "connection"),
        )
    else:
        logger.warning("shutting down: no connection open")


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


BLOCKING_SWITCH_INTERVAL = 0.05
"""Seconds a thread may hold the GIL before another asks for it, in a blocking server.

CPython's default, 5 ms, makes every thread waiting for the GIL wake every
5 ms to ask for it. When thousands of connections become ready at once
(10,000 idle clients closing together) that is a storm of wake-ups that
starved the server for minutes: 9,000 connections took 35 s to release, 104 s
with logging. At 50 ms they take 5 s. A connection's thread holds the GIL
only between system calls, which give it up anyway, so steady traffic does
not notice (see benchmarks/RESULTS.md). The Trio driver runs one thread and
is not concerned.
"""


def _serve_blocking(config: ServerConfig) -> ServerStats:
    """Serve until the server ends by itself or signals stop it, however many come at once.

    Signal handlers only count and wake the main thread; the main thread
    starts the graceful shutdown at the first and the hard one at the
    second, each in a thread of its own, and waits for the server to end, so
    no burst of signals can interrupt a shutdown half-way.
    """
    sys.setswitchinterval(BLOCKING_SWITCH_INTERVAL)
    server = BlockingServer(config, sink=LoggingSink())
    wake = threading.Event()
    signals = _SignalCount(wake)
    with signals.installed():
        server.start()
        # Announce only once signals are handled: whoever waits for this
        # line may stop the server at once and must still get its summary.
        _announce(config, server.listeners, "blocking")
        ended = threading.Event()

        def wait_for_the_end() -> None:
            server.wait()
            ended.set()
            wake.set()

        threading.Thread(target=wait_for_the_end, name="trio-echo wait", daemon=True).start()
        stages = 0
        while not ended.is_set():
            wake.wait()
            wake.clear()
            while stages < min(signals.count, 2) and not ended.is_set():
                grace = None if stages == 0 else 0.0
                _say_stopping(config, server.active_connections, grace)
                stages += 1
                try:
                    threading.Thread(
                        target=server.shutdown, args=(grace,), name="trio-echo stop", daemon=True
                    ).start()
                except RuntimeError:  # no thread can be started (a process limit): stop here
                    server.shutdown(grace)
    return server.stats


class _SignalCount:
    """Counts stop signals in the main thread and wakes whoever waits on *wake*."""

    def __init__(self, wake: threading.Event) -> None:
        self.count = 0
        self._wake = wake

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        saved = {signum: signal.signal(signum, self._handle) for signum in STOP_SIGNALS}
        try:
            yield
        finally:
            for signum, handler in saved.items():
                signal.signal(signum, handler)

    def _handle(self, _signum: int, _frame: FrameType | None) -> None:
        self.count += 1
        self._wake.set()


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP interrupt as SIGINT does.

    They are raised again as SIGINT, so whichever SIGINT handler is in place
    (Python's KeyboardInterrupt, or Trio's, which delivers it safely) handles
    them; once Trio's signal receiver is open it takes all three itself.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {
        signum: signal.signal(signum, _as_sigint) for signum in (signal.SIGTERM, signal.SIGHUP)
    }
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def _as_sigint(_signum: int, _frame: FrameType | None) -> None:
    signal.raise_signal(signal.SIGINT)
