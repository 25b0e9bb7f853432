"""``trio-echo serve``: run either driver's server until a signal stops it.

The first SIGINT, SIGTERM or SIGHUP stops accepting and gives connections in
flight ``--grace`` seconds; a second one cancels them at once. With
``--drain SECONDS`` the first signal starts a drain instead: the server goes
on serving and accepting that long (a load balancer takes it out meanwhile),
then shuts down as the first signal otherwise would; a signal during the
drain ends it at once. Either way the server exits 0 with a one-line
summary, and ``--stats-every`` writes the same line periodically.
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import logging
import selectors
import signal
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from types import FrameType

import attrs
import trio

from ..address import Address
from ..blocking_driver import BlockingServer
from ..config import ServerConfig, WireProtocol, host_name
from ..connection_log import EventSink, LoggingSink, ServerStats
from ..escape import escape_text
from ..faults.spec import merge_faults
from ..json_log import JsonFormatter, JsonSink, json_extra, json_fields, json_line, stats_fields
from ..transport.reflection import ReflectionPolicy
from ..transport.spec import ListenSpec, Transport
from ..transport.tls import TlsServerSettings
from ..trio_driver import TrioServer
from .common import EXIT_OK, build_config, silence_stdout
from .workers import STOP_SIGNALS, Supervisor, WorkerSettings

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
        faults=build_config(merge_faults, args.fault or ()),
        seed=args.seed,
        drain=args.drain,
        stats_every=args.stats_every,
        proxy_timeout=args.proxy_timeout,
        proxy_trusted=args.proxy_trusted,
        name=host_name() if args.name is None else args.name,
    )
    output = Output(json=args.log_format == "json")
    output.configure_logging(args.log_level)
    workers = build_config(
        WorkerSettings, count=args.workers, once=args.once, flags={"count": "--workers"}
    )
    with _late_signals_ignored(restore=not args.process_exits):
        if workers.count > 1:
            supervisor = Supervisor(
                config, workers.count, args.blocking, args.log_level, json_logs=output.json
            )
            summary = supervisor.run(_say)
        else:
            summary = output.summary(serve_stats(config, blocking=args.blocking, output=output))
        try:
            print(summary, flush=True)
        except BrokenPipeError:  # stdout went away (| head): the summary goes to stderr
            silence_stdout()
            print(summary, file=sys.stderr, flush=True)
    return EXIT_OK


@attrs.frozen
class Output:
    """How the server writes its lines: timestamped text, or JSON objects (``--log-format``)."""

    json: bool = False
    worker: int | None = None
    """A worker's pid (``serve --workers``): every log line says which worker wrote it."""

    def configure_logging(self, level: str) -> None:
        """Log lines to standard error at *level* and above, in this format."""
        if not self.json:
            worker = "" if self.worker is None else f"[worker {self.worker}] "
            logging.basicConfig(
                level=level.upper(), format=f"%(asctime)s {worker}%(message)s", datefmt="%H:%M:%S"
            )
            return
        handler = logging.StreamHandler()
        constant = {} if self.worker is None else {"worker": self.worker}
        handler.setFormatter(JsonFormatter(constant=constant))
        logging.basicConfig(level=level.upper(), handlers=[handler])

    def sink(self) -> EventSink:
        """What connection events are written by."""
        return JsonSink() if self.json else LoggingSink()

    def summary(self, stats: ServerStats) -> str:
        """The exit summary of *stats*."""
        if self.json:
            return json_line("info", "summary", stats_fields(stats), time.time())
        return stats.summary()

    def announce(self, config: ServerConfig, listeners: Sequence[ListenSpec], driver: str) -> None:
        """One line: the default protocol, the driver, and every bound listener.

        A TCP listener speaking the default protocol, with no PROXY header due,
        is written as its address alone (``127.0.0.1:3100``); any other as its
        spec, with its protocol only where it is not the default.
        """
        listening = ", ".join(_shown(spec, config.protocol) for spec in listeners)
        line = f"{config.protocol.value} server ({driver}) listening on {listening}"
        if self.json:
            fields = {"protocol": config.protocol.value, "driver": driver, "listeners": listeners}
            line = json_line("info", "listening", json_fields(fields), time.time())
        _say(line)


def serve_stats(config: ServerConfig, *, blocking: bool, output: Output) -> ServerStats:
    """Serve *config* with the chosen driver until stopped; the server's final counts."""
    return _serve_blocking(config, output) if blocking else _serve_trio(config, output)


def _say(line: str) -> None:
    """Print one line on stdout; if nobody reads it, serve on (the logs go to stderr)."""
    try:
        print(line, flush=True)
    except BrokenPipeError:
        silence_stdout()


def _shown(spec: ListenSpec, default: WireProtocol) -> str:
    if spec.protocol is default:
        if spec.transport is Transport.TCP and spec.proxy is None:
            return str(spec.address)
        spec = attrs.evolve(spec, protocol=None)
    return escape_text(str(spec))


class Stage(enum.Enum):
    """What a stop signal (or the end of a drain) moves the server to."""

    DRAIN = "drain"
    """Serve and accept on for ``--drain`` seconds, then shut down gracefully."""
    GRACEFUL = "graceful"
    """Accept no more; connections in flight get ``--grace`` seconds."""
    NOW = "now"
    """Cut every connection at once."""


GRACE_OF = {Stage.GRACEFUL: None, Stage.NOW: 0.0}
"""The grace each shutdown stage hands ``server.shutdown`` (None: the configured one)."""


def stop_stages(config: ServerConfig) -> tuple[Stage, ...]:
    """The stages stop signals step through, in order; the last one repeats."""
    drain = (Stage.DRAIN,) if config.drain else ()
    return (*drain, Stage.GRACEFUL, Stage.NOW)


def _serve_trio(config: ServerConfig, output: Output) -> ServerStats:
    server = TrioServer(config, sink=output.sink())

    async def serve() -> None:
        with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_shut_down_on_signals, signals, server)
                await nursery.start(_serve_then_stop, server, nursery.cancel_scope)
                output.announce(config, server.listeners, "trio")
                if config.stats_every is not None:
                    nursery.start_soon(report_stats_every, config.stats_every, server.stats)

    # A signal before Trio's receiver is in place (during start-up) arrives as
    # KeyboardInterrupt, which Trio delivers cleanly: the server never started.
    with _signals_interrupt(), contextlib.suppress(KeyboardInterrupt):
        trio.run(serve)
    return server.stats


async def report_stats_every(seconds: float, stats: ServerStats) -> None:
    """Log the summary line every *seconds* until cancelled (with the server)."""
    while True:
        await trio.sleep(seconds)
        _say_stats(stats)


def _say_stats(stats: ServerStats) -> None:
    """The summary line, as a log line (a ``stats`` event in JSON)."""
    logger.info("stats: %s", stats.summary(), extra=json_extra("stats", **stats_fields(stats)))


async def _serve_then_stop(
    server: TrioServer,
    watchers: trio.CancelScope,
    *,
    task_status: trio.TaskStatus[tuple[Address, ...]] = trio.TASK_STATUS_IGNORED,
) -> None:
    await server.run(task_status=task_status)
    watchers.cancel()


async def _shut_down_on_signals(signals: AsyncIterator[int], server: TrioServer) -> None:
    """Each signal moves the server to its next stop stage; a drain also ends by itself."""
    config = server.config
    stages = stop_stages(config)
    for index, stage in enumerate(stages):
        if index and stages[index - 1] is Stage.DRAIN:
            with trio.move_on_after(config.drain):
                await anext(aiter(signals))
        else:
            await anext(aiter(signals))
        _enter_stage(stage, server)
    async for _signum in signals:
        _enter_stage(stages[-1], server)


def _enter_stage(stage: Stage, server: TrioServer | BlockingServer) -> None:
    """Say what *stage* now waits for and, unless it is the drain, start the shutdown."""
    _say_stopping(server.config, server.active_connections, stage)
    if stage is not Stage.DRAIN:
        server.shutdown(GRACE_OF[stage])


def _say_stopping(config: ServerConfig, active: int, stage: Stage) -> None:
    """One line, at once, saying what the shutdown now waits for."""
    fields = {"stage": stage.value, "active": active}
    if stage is Stage.DRAIN:
        logger.warning(
            "draining: serving and accepting for %g s more, then shutting down "
            "(a second signal shuts down now)",
            config.drain,
            extra=json_extra("draining", **fields, drain=config.drain),
        )
    elif stage is Stage.NOW:
        logger.warning(
            "second signal: stopping now, cutting %s",
            _plural(active, "connection"),
            extra=json_extra("stopping", **fields),
        )
    elif active:
        logger.warning(
            "shutting down: no new connections; waiting up to %g s for %s to finish "
            "(a second signal stops now)",
            config.grace,
            _plural(active, "connection"),
            extra=json_extra("stopping", **fields, grace=config.grace),
        )
    else:
        logger.warning("shutting down: no connection open", extra=json_extra("stopping", **fields))


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


def _serve_blocking(config: ServerConfig, output: Output) -> ServerStats:
    """Serve until the server ends by itself or signals stop it, however many come at once.

    Signal handlers only count and wake the main thread; the main thread
    moves through the stop stages (the drain, the graceful shutdown, the
    hard one), starting each shutdown in a thread of its own, and waits for
    the server to end, so no burst of signals can interrupt a shutdown
    half-way.
    """
    sys.setswitchinterval(BLOCKING_SWITCH_INTERVAL)
    server = BlockingServer(config, sink=output.sink())
    wake = _Wake()
    signals = _SignalCount(wake)
    with contextlib.closing(wake), signals.installed():
        server.start()
        # Announce only once signals are handled: whoever waits for this
        # line may stop the server at once and must still get its summary.
        output.announce(config, server.listeners, "blocking")
        ended = threading.Event()

        def wait_for_the_end() -> None:
            server.wait()
            ended.set()
            wake.set()

        threading.Thread(target=wait_for_the_end, name="trio-echo wait", daemon=True).start()
        if config.stats_every is not None:
            _start_thread(_report_stats_until, config.stats_every, server.stats, ended)
        _step_through_stages(server, signals, wake, ended)
    return server.stats


def _step_through_stages(
    server: BlockingServer, signals: _SignalCount, wake: _Wake, ended: threading.Event
) -> None:
    """Enter a stop stage for every signal (and a drain's end) until the server has ended."""
    stages = stop_stages(server.config)
    entered = 0
    drain_ends: float | None = None
    drains_over = 0
    while not ended.is_set():
        wake.wait(None if drain_ends is None else max(0.0, drain_ends - time.monotonic()))
        wake.clear()
        if drain_ends is not None and time.monotonic() >= drain_ends:
            drains_over, drain_ends = 1, None
        while entered < min(signals.count + drains_over, len(stages)) and not ended.is_set():
            stage = stages[entered]
            entered += 1
            _say_stopping(server.config, server.active_connections, stage)
            if stage is Stage.DRAIN:
                drain_ends = time.monotonic() + server.config.drain
                continue
            drain_ends = None
            try:
                _start_thread(server.shutdown, GRACE_OF[stage])
            except RuntimeError:  # no thread can be started (a process limit): stop here
                server.shutdown(GRACE_OF[stage])


def _start_thread(target: Callable[..., object], *args: object) -> None:
    threading.Thread(target=target, args=args, name="trio-echo stop", daemon=True).start()


def _report_stats_until(seconds: float, stats: ServerStats, ended: threading.Event) -> None:
    """Log the summary line every *seconds* until *ended* is set."""
    while not ended.wait(seconds):
        _say_stats(stats)


class _Wake:
    """Wakes the main thread, from a signal handler or from another thread.

    A ``threading.Event`` cannot be set from a signal handler: the handler
    runs in the main thread, which may be inside ``Event.wait`` holding the
    event's lock at that moment, and would wait for itself for ever. A byte
    written to a socket pair takes no lock.
    """

    def __init__(self) -> None:
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._reader, selectors.EVENT_READ)

    def set(self) -> None:
        """Wake the waiter (at once if it waits, else at its next wait)."""
        with contextlib.suppress(OSError):  # full: a wake-up is pending already
            self._writer.send(b"\0")

    def wait(self, timeout: float | None) -> None:
        """Return once woken, or after *timeout* seconds (None: no limit)."""
        self._selector.select(timeout)

    def pending(self) -> bool:
        """Whether a wake-up is waiting to be seen (a wait would return at once)."""
        return bool(self._selector.select(0))

    def clear(self) -> None:
        """Forget the wake-ups received so far."""
        with contextlib.suppress(BlockingIOError):
            while self._reader.recv(4096):
                pass

    def close(self) -> None:
        self._selector.close()
        self._reader.close()
        self._writer.close()


class _SignalCount:
    """Counts stop signals in the main thread and wakes whoever waits on *wake*."""

    def __init__(self, wake: _Wake) -> None:
        self.count = 0
        self._wake = wake

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._handle)
        try:
            yield
        finally:
            _ignore_stop_signals()

    def _handle(self, _signum: int, _frame: FrameType | None) -> None:
        self.count += 1
        self._wake.set()


@contextlib.contextmanager
def _late_signals_ignored(*, restore: bool = True) -> Iterator[None]:
    """Within the block, a stop signal landing once the server has stopped changes nothing.

    The drivers leave the stop signals ignored as they return (see
    :func:`_ignore_stop_signals`), so the last of a burst cannot kill the
    process, or raise KeyboardInterrupt, before its summary. With *restore*
    the handlers in place before are put back once the summary is written,
    for a caller that goes on; the console script, which exits next, keeps
    them ignored, since the burst's last signal may still be on its way.
    """
    if not restore or threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def _ignore_stop_signals() -> None:
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


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
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _as_sigint)
    try:
        yield
    finally:
        _ignore_stop_signals()


def _as_sigint(_signum: int, _frame: FrameType | None) -> None:
    signal.raise_signal(signal.SIGINT)
