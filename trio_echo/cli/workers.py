"""``serve --workers N``: a supervisor running N worker processes on the same listeners.

Each worker is the single-process server, unchanged, in a process of its
own. How they share the listeners (see ``transport.sockets``):

- On Linux, TCP, TLS and UDP listeners are bound by every worker with
  ``SO_REUSEPORT``, so the kernel spreads connections and datagrams across
  them. A port-0 listener is bound once by the supervisor, which keeps that
  socket until every worker is serving and passes the chosen port on, so all
  workers share one port.
- Unix sockets (and every listener elsewhere) are bound by the supervisor
  and inherited: the workers accept on the same socket.

Workers are ``multiprocessing`` processes started with *spawn*: a fresh
interpreter that receives the configuration and sockets pickled, and a pipe
back to the supervisor. Spawn rather than fork because the parent holds
nothing a child may not safely inherit; rather than ``subprocess`` re-running
the command line, because the configuration, already validated, travels as
an object and not as flags to parse again. Over the pipe a worker sends its
announcement line once it serves, and its final counts (one message) when
it ends; a worker whose supervisor vanishes sees the pipe close and stops.

The supervisor restarts a worker that dies, after a back-off that doubles
while replacements die young, logging each death; more than
``RestartPolicy.per_minute`` restarts in a minute is a crash loop, which
ends the server with one error line. The first SIGINT, SIGTERM or SIGHUP is
passed to every worker (each then gives its connections ``--grace``), a
second one too (each stops at once); the workers run in their own process
group, so a terminal's Ctrl-C reaches them only this way, once. When all
have ended the supervisor prints one summary: the sum of their counts.
"""

from __future__ import annotations

import contextlib
import io
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import attrs

from ..config import ServerConfig
from ..connection_log import ServerStats
from ..errors import ConfigError, TrioEchoError
from ..json_log import json_line, stats_fields
from ..transport import sockets
from ..transport.spec import ListenSpec, Transport
from ..validation import check, flag, positive_int, positive_seconds

logger = logging.getLogger("trio_echo.workers")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""What stops a server: Ctrl-C, a supervisor's SIGTERM, the terminal closing (SIGHUP)."""

_COUNTS = tuple(field.name for field in attrs.fields(ServerStats) if not field.name.startswith("_"))
"""The counters a worker reports and the supervisor sums."""

Message = tuple[str, Any]
"""What a worker sends: ("line", announcement), ("counts", {...}) or ("failed", text)."""


MAX_WORKERS = 256
"""Most worker processes one supervisor runs: far past the cores of any one machine."""


@attrs.frozen(kw_only=True)
class WorkerSettings:
    """``--workers``: how many processes serve; 1 is the single process, as without it."""

    count: int = attrs.field(
        default=1,
        validator=check(
            lambda v: type(v) is int and 1 <= v <= MAX_WORKERS,
            f"an integer from 1 to {MAX_WORKERS}",
        ),
    )
    once: bool = attrs.field(default=False, validator=flag)

    def __attrs_post_init__(self) -> None:
        if self.once and self.count > 1:
            raise ConfigError("--workers cannot be combined with --once (one client, one process)")


class WorkersFailed(TrioEchoError):
    """The workers could not be kept running: a crash loop, or a worker that could not start."""


@attrs.frozen(kw_only=True)
class RestartPolicy:
    """When a dead worker is replaced: after *first_delay*, doubling up to *max_delay*.

    The delay doubles for each replacement that dies within *young* seconds
    of starting and returns to *first_delay* once one lives longer. More
    than *per_minute* restarts within 60 s is a crash loop: the server stops.
    """

    first_delay: float = attrs.field(default=0.1, validator=positive_seconds)
    max_delay: float = attrs.field(default=5.0, validator=positive_seconds)
    young: float = attrs.field(default=10.0, validator=positive_seconds)
    per_minute: int = attrs.field(default=10, validator=positive_int)

    def next_delay(self, previous: float | None, lived: float) -> float:
        """The back-off before replacing a worker that lived *lived* seconds."""
        if previous is None or lived >= self.young:
            return self.first_delay
        return min(previous * 2, self.max_delay)


# -- the worker side ----------------------------------------------------------------------------


def worker_main(
    config: ServerConfig,
    blocking: bool,
    log_level: str,
    json_logs: bool,
    conn: multiprocessing.connection.Connection,
    inherited: dict[sockets.BindKey, list[socket.socket]],
) -> None:
    """A worker process: the single-process server, reporting to its supervisor over *conn*."""
    os.setpgid(0, 0)  # a terminal's Ctrl-C reaches the supervisor alone, which passes it on
    from .serve import Output, serve_stats  # here: serve imports this module

    output = Output(json=json_logs, worker=os.getpid())
    output.configure_logging(log_level)
    sockets.share_listeners(reuse_port=sockets.REUSE_PORT_SPREADS, inherited=inherited)
    sys.stdout = _LinesTo(conn)
    threading.Thread(target=_stop_when_orphaned, args=(conn,), daemon=True).start()
    from . import sole_error  # here: the package imports serve, which imports this module

    try:
        stats = serve_stats(config, blocking=blocking, output=output)
    except BaseException as exc:
        error = sole_error(exc)  # Trio raises a named error inside a group
        if error is None:
            raise
        _send(conn, ("failed", str(error)))
        raise SystemExit(1) from None
    _send(conn, ("counts", {name: getattr(stats, name) for name in _COUNTS}))


def _send(conn: multiprocessing.connection.Connection, message: Message) -> None:
    """Tell the supervisor, if it is still there (if not, nobody is left to tell)."""
    with contextlib.suppress(OSError):
        conn.send(message)


class _LinesTo(io.TextIOBase):
    """A stdout that sends each whole line to the supervisor instead of printing it."""

    def __init__(self, conn: multiprocessing.connection.Connection) -> None:
        self._conn = conn
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            self._conn.send(("line", line))
        return len(text)


def _stop_when_orphaned(conn: multiprocessing.connection.Connection) -> None:
    """Wait for the supervisor's end of the pipe to close; then stop this worker gently."""
    with contextlib.suppress(EOFError, OSError):
        while True:
            conn.recv()
    os.kill(os.getpid(), signal.SIGTERM)


# -- the supervisor side ------------------------------------------------------------------------


@attrs.define(eq=False)
class _Worker:
    """One running worker process and the supervisor's end of its pipe."""

    process: multiprocessing.process.BaseProcess
    conn: multiprocessing.connection.Connection
    started: float
    delay: float | None = None
    """The back-off that preceded this worker's start (None for the first ones)."""
    announced: str | None = None


@attrs.define(eq=False)
class Supervisor:
    """Runs *count* workers of *config* until a signal stops them; see the module docstring."""

    config: ServerConfig
    count: int
    blocking: bool = False
    log_level: str = "info"
    json_logs: bool = False
    """Workers log, and the summary is, one JSON object a line (``--log-format json``)."""
    policy: RestartPolicy = attrs.field(factory=RestartPolicy)
    _context: Any = attrs.field(factory=lambda: multiprocessing.get_context("spawn"))
    _workers: list[_Worker] = attrs.field(factory=list)
    _pending: list[tuple[float, float]] = attrs.field(factory=list)
    """Restarts due: (when, the back-off that led there)."""
    _restarts: deque[float] = attrs.field(factory=deque)
    _inherited: dict[sockets.BindKey, list[socket.socket]] = attrs.field(factory=dict)
    _held: list[socket.socket] = attrs.field(factory=list)
    _totals: dict[str, int] = attrs.field(factory=lambda: dict.fromkeys(_COUNTS, 0))
    _signals: list[int] = attrs.field(factory=list)
    _lost: int = 0
    _failure: str | None = None

    def run(self, announce: Callable[[str], None]) -> str:
        """Serve until stopped; *announce* gets the listening line once all workers serve.

        Returns the summed summary. Raises :class:`WorkersFailed` on a crash
        loop or a worker that could not start.
        """
        self.config = self._shareable(self.config)
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        with _signals_recorded(self._signals, wake_w):
            try:
                for _ in range(self.count):
                    self._start(delay=None)
                self._wait_until_serving(wake_r)
                if self._failure is None and not self._signals:
                    self._release_held()
                    announce(self._workers[0].announced or "")
                    logger.info(
                        "%d workers serving: pids %s",
                        self.count,
                        ", ".join(str(w.process.pid) for w in self._workers),
                    )
                self._supervise(wake_r)
            finally:
                self._release_held()
                for socks in self._inherited.values():
                    for sock in socks:
                        sock.close()
                wake_r.close()
                wake_w.close()
        if self._failure is not None:
            raise WorkersFailed(self._failure)
        return self.summary()

    def summary(self) -> str:
        """The workers' counts summed, in the single server's words, and any counts lost."""
        stats = ServerStats()
        for name, value in self._totals.items():
            setattr(stats, name, value)
        if self.json_logs:
            fields = {**stats_fields(stats), "workers_lost": self._lost}
            return json_line("info", "summary", fields, time.time())
        line = stats.summary()
        if self._lost:
            died = "1 worker died; its" if self._lost == 1 else f"{self._lost} workers died; their"
            line += f" ({died} counts are lost)"
        return line

    # -- listeners

    def _shareable(self, config: ServerConfig) -> ServerConfig:
        """*config* with every listener made the same for all workers; sockets bound as needed."""
        specs = tuple(self._share(spec, config.backlog) for spec in config.listeners())
        return attrs.evolve(config, listen=specs)

    def _share(self, spec: ListenSpec, backlog: int) -> ListenSpec:
        if spec.transport is Transport.UNIX or not sockets.REUSE_PORT_SPREADS:
            socks = sockets.bind(spec, backlog=backlog)
            shared = _with_port(spec, socks)
            self._inherited[sockets.bind_key(shared)] = socks
            return shared
        # Bound here first, so a taken port is this process's one-line error, and a
        # port 0 is chosen once; held until every worker has bound it too. A port
        # another server shares out with SO_REUSEPORT counts as taken.
        kind = Transport.TCP if spec.transport.is_stream else Transport.UDP
        as_bound = ListenSpec(transport=kind, host=spec.host, port=spec.port)  # as drivers do
        sockets.ensure_unclaimed(as_bound)
        socks = sockets.bind(as_bound, backlog=backlog, reuse_port=True)
        self._held.extend(socks)
        return _with_port(spec, socks)

    def _release_held(self) -> None:
        for sock in self._held:
            sock.close()
        self._held.clear()

    # -- processes

    def _start(self, delay: float | None) -> None:
        ours, theirs = self._context.Pipe()
        process = self._context.Process(
            target=worker_main,
            args=(
                self.config,
                self.blocking,
                self.log_level,
                self.json_logs,
                theirs,
                self._inherited,
            ),
            name="trio-echo worker",
        )
        process.start()
        theirs.close()
        self._workers.append(_Worker(process, ours, time.monotonic(), delay))

    def _wait_until_serving(self, wake: socket.socket) -> None:
        while (
            self._failure is None
            and not self._signals
            and any(worker.announced is None for worker in self._workers)
        ):
            self._step(wake, timeout=None, restart=False)

    def _supervise(self, wake: socket.socket) -> None:
        """Restart dead workers and pass signals on, until no worker is left."""
        forwarded = 0
        while self._workers or (self._pending and not self._signals and self._failure is None):
            while forwarded < min(len(self._signals), 2):
                self._forward(self._signals[forwarded])
                forwarded += 1
            if self._failure is not None and forwarded == 0:
                self._forward(signal.SIGTERM)
                forwarded = 1
            timeout = None
            if self._pending and not self._signals and self._failure is None:
                timeout = max(0.0, min(when for when, _ in self._pending) - time.monotonic())
            self._step(wake, timeout, restart=True)
            self._start_due()

    def _step(self, wake: socket.socket, timeout: float | None, *, restart: bool) -> None:
        """Wait for a message, a worker's end or a signal, and handle what came."""
        waitables: list[Any] = [wake]
        for worker in self._workers:
            waitables += [worker.conn, worker.process.sentinel]
        ready = multiprocessing.connection.wait(waitables, timeout)
        if wake in ready:
            with contextlib.suppress(BlockingIOError):
                wake.recv(64)
        for worker in list(self._workers):
            if worker.conn in ready:
                self._read(worker)
            if worker.process.sentinel in ready:
                self._ended(worker, restart=restart)

    def _read(self, worker: _Worker) -> None:
        with contextlib.suppress(EOFError, OSError):
            while worker.conn.poll():
                self._handle(worker, worker.conn.recv())

    def _handle(self, worker: _Worker, message: Message) -> None:
        kind, value = message
        if kind == "line" and worker.announced is None:
            worker.announced = value
            if worker.delay is not None:
                logger.warning(
                    "worker %s serving, in place of the one that died", worker.process.pid
                )
        elif kind == "counts":
            for name in _COUNTS:
                self._totals[name] += int(value.get(name, 0))
            worker.announced = worker.announced or ""
        elif kind == "failed":
            self._failure = value

    def _ended(self, worker: _Worker, *, restart: bool) -> None:
        self._read(worker)
        worker.process.join()
        worker.conn.close()
        self._workers.remove(worker)
        if self._signals or self._failure is not None:
            return
        self._lost += 1
        lived = time.monotonic() - worker.started
        how = _how_it_ended(worker.process.exitcode)
        if not restart:
            self._failure = f"a worker {how} before it served"
            return
        now = time.monotonic()
        while self._restarts and self._restarts[0] <= now - 60:
            self._restarts.popleft()
        if len(self._restarts) >= self.policy.per_minute:
            self._failure = (
                f"workers keep dying: {len(self._restarts) + 1} in a minute "
                f"(the last {how}); stopping"
            )
            logger.error("%s", self._failure)
            return
        self._restarts.append(now)
        delay = self.policy.next_delay(worker.delay, lived)
        logger.warning(
            "worker %s %s after %.1f s; starting another in %g s",
            worker.process.pid,
            how,
            lived,
            delay,
        )
        self._pending.append((now + delay, delay))

    def _start_due(self) -> None:
        if self._signals or self._failure is not None:
            return
        now = time.monotonic()
        for due in [p for p in self._pending if p[0] <= now]:
            self._pending.remove(due)
            self._start(delay=due[1])

    def _forward(self, signum: int) -> None:
        for worker in self._workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.process.pid or 0, signum)


def _with_port(spec: ListenSpec, socks: list[socket.socket]) -> ListenSpec:
    """*spec* with the port its sockets got (the same on every address), if it has a port."""
    if spec.transport is Transport.UNIX:
        return spec
    return attrs.evolve(spec, port=socks[0].getsockname()[1])


def _how_it_ended(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"was killed by signal {-exitcode}"
    return f"exited with status {exitcode}"


@contextlib.contextmanager
def _signals_recorded(seen: list[int], wake: socket.socket) -> Iterator[None]:
    """Within the block, stop signals are appended to *seen* and wake whoever waits on *wake*."""

    def record(signum: int, _frame: FrameType | None) -> None:
        seen.append(signum)
        with contextlib.suppress(OSError):
            wake.send(b"!")

    saved = {signum: signal.signal(signum, record) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
