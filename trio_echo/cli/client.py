"""``trio-echo client``: one session printed line by line, or many summarised.

A run keeps counts, never its messages (see :mod:`trio_echo.client_tally`),
so its memory does not depend on ``--count`` or ``--duration``. Failures are
summarised one line per kind. A summary also gives the latency percentiles
and the failed sessions by class; ``--json`` prints the same figures as one
object (see :func:`run_figures`). SIGINT or SIGTERM stops the run with one line saying what it
did so far, and the exit code a shell expects (130, 143).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from types import FrameType

import attrs
import trio

from ..blocking_driver import run_client as run_blocking_client
from ..blocking_driver.client import DEPTH_REFUSED
from ..client_tally import ClientTally, FailureGroup
from ..config import ClientConfig, WireProtocol
from ..session import Report, SessionResult, describe_datagram_report, silent
from ..transport.spec import ListenSpec, parse_target
from ..transport.tls import TlsClientSettings
from ..trio_driver import run_client as run_trio_client
from ..whoami_tally import WhoamiTally
from .common import EXIT_FAILED, EXIT_OK, build_config, fail_line, show, usage_error
from .progress import progress_line

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
"""What stops a client: Ctrl-C, or a supervisor's SIGTERM."""

OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE})


def client_command(args: argparse.Namespace) -> int:
    target = _target(args)
    protocol = target.protocol if target.protocol is not None else args.protocol
    target = attrs.evolve(target, protocol=protocol)
    if args.duration is not None and args.count is not None:
        usage_error("--count and --duration both say when a session ends: give one")
    if protocol in (WireProtocol.GREETING, WireProtocol.WHOAMI) and args.count not in (None, 1):
        usage_error(
            f"--count must be 1 with --protocol {protocol.value}, not {args.count}: the server "
            "answers one line and closes (--connections N holds N sessions)"
        )
    if args.blocking and args.depth != 1:
        usage_error(DEPTH_REFUSED)
    tls = build_config(
        TlsClientSettings,
        cafile=args.cafile,
        insecure=args.insecure,
        server_hostname=args.server_name,
        certfile=args.certfile,
        keyfile=args.keyfile,
    )
    optional = {"count": args.count} if args.count is not None else {}
    config = build_config(
        ClientConfig.for_target,
        target,
        tls=tls,
        retries=args.retries,
        message=args.message,
        connections=args.connections,
        timeout=args.timeout,
        proxy_protocol=args.proxy_protocol,
        duration=args.duration,
        rate=args.rate,
        depth=args.depth,
        **optional,
        flags={"port": "--port" if target.port == args.port else "the port in TARGET"},
    )
    line_by_line = _line_by_line(config, as_json=args.json)
    report: Report = show if line_by_line else silent
    tally = ClientTally()
    started = time.perf_counter()
    run = _run_blocking if args.blocking else _run_trio
    with progress_line(tally, config.connections, sys.stderr):
        results, stopped_by = run(config, report, tally)
    seconds = time.perf_counter() - started
    if args.json:
        figures = run_figures(config, tally, seconds, stopped_by)
        if config.protocol is WireProtocol.WHOAMI:
            figures["whoami"] = _whoami_tally(results).fields()
        print(json.dumps(figures, sort_keys=False), flush=True)
        if stopped_by is not None:
            return 128 + stopped_by
        return EXIT_FAILED if tally.ok < config.connections else EXIT_OK
    if stopped_by is not None:
        print(fail_line(_stopped_line(stopped_by, config, tally, seconds)), file=sys.stderr)
        return 128 + stopped_by
    return _report_results(config, results, tally, seconds, line_by_line=line_by_line)


def _line_by_line(config: ClientConfig, *, as_json: bool) -> bool:
    """Whether the run prints its conversation: one lockstep session of ``--count``, no --json."""
    return config.connections == 1 and config.duration is None and config.depth == 1 and not as_json


def run_figures(
    config: ClientConfig, tally: ClientTally, seconds: float, stopped_by: int | None
) -> dict[str, object]:
    """The run's figures as ``--json`` prints them; latencies in milliseconds."""
    trips = tally.round_trips
    latency = {
        name: None if value is None else round(value * 1000, 4)
        for name, value in tally.latencies().summary().items()
    }
    return {
        "target": str(config.target),
        "transport": config.transport.value,
        "connections": config.connections,
        "rate": config.rate,
        "depth": config.depth,
        "duration": config.duration,
        "seconds": round(seconds, 6),
        "sessions_ok": tally.ok,
        "sessions_failed": tally.ended - tally.ok,
        "round_trips": trips,
        "round_trips_per_second": round(trips / seconds, 1) if seconds > 0 else None,
        "latency_ms": latency,
        "errors": tally.error_classes(),
        "stopped_by": None if stopped_by is None else signal.Signals(stopped_by).name,
    }


def _target(args: argparse.Namespace) -> ListenSpec:
    """The server, from TARGET or ``--host`` (the same thing; both only if they agree)."""
    given = [text for text in (args.target, args.host) if text is not None]
    specs = [build_config(parse_target, text, default_port=args.port) for text in given]
    if len(specs) == 2 and specs[0] != specs[1]:
        usage_error(
            f"TARGET {args.target!r} and --host {args.host!r} name different servers: give one"
        )
    if specs:
        return specs[0]
    return build_config(parse_target, ClientConfig().host, default_port=args.port)


_Outcome = tuple[list[SessionResult], int | None]
"""The sessions' results, and the signal that stopped the run early (None if none did)."""


def _run_trio(config: ClientConfig, report: Report, tally: ClientTally) -> _Outcome:
    results: list[SessionResult] = []
    stopped_by: int | None = None

    async def run() -> None:
        nonlocal results, stopped_by
        with _signal_receiver() as signals:
            async with trio.open_nursery() as nursery:

                async def watch() -> None:
                    nonlocal stopped_by
                    async for signum in signals:
                        stopped_by = signum
                        nursery.cancel_scope.cancel()

                nursery.start_soon(watch)
                results = await run_trio_client(config, report=report, tally=tally)
                nursery.cancel_scope.cancel()

    try:
        trio.run(run)
    except KeyboardInterrupt:  # Ctrl-C before the signal receiver was open
        stopped_by = signal.SIGINT
    return results, stopped_by


@contextlib.contextmanager
def _signal_receiver() -> Iterator[trio.abc.ReceiveChannel[int] | _NoSignals]:
    """Trio's receiver for the stop signals; none outside the main thread (where none can be)."""
    if threading.current_thread() is not threading.main_thread():
        yield _NoSignals()
        return
    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        yield signals  # type: ignore[misc]


class _NoSignals:
    """An endless wait for a signal that cannot come."""

    def __aiter__(self) -> _NoSignals:
        return self

    async def __anext__(self) -> int:
        await trio.sleep_forever()
        raise AssertionError("unreachable")


class _Stopped(BaseException):
    """A stop signal arrived while the blocking client ran; its sessions' threads are left."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _run_blocking(config: ClientConfig, report: Report, tally: ClientTally) -> _Outcome:
    """Run the blocking client; a stop signal ends it in the main thread at once.

    The sessions' threads are daemon threads, blocked in their sockets'
    calls: the process leaves them behind as it exits.
    """
    try:
        with _raising_on_signals():
            return run_blocking_client(config, report=report, tally=tally), None
    except _Stopped as stop:
        return [], stop.signum


@contextlib.contextmanager
def _raising_on_signals() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _frame: FrameType | None) -> None:
        raise _Stopped(signum)

    saved = {signum: signal.signal(signum, stop) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def _stopped_line(signum: int, config: ClientConfig, tally: ClientTally, seconds: float) -> str:
    """``stopped by SIGINT: 2/10 sessions ok, ...``: what the run did before the signal."""
    name = signal.Signals(signum).name
    return (
        f"stopped by {name}: {tally.summary(config.connections, seconds)}; "
        f"{config.connections - tally.ended} still running"
    )


def _report_results(
    config: ClientConfig,
    results: Sequence[SessionResult],
    tally: ClientTally,
    seconds: float,
    *,
    line_by_line: bool,
) -> int:
    failures = [result for result in results if result.error is not None]
    if not line_by_line:
        for group in tally.failures():
            print(fail_line(describe_failures(group)), file=sys.stderr)
        show(summary_line(config, tally, seconds))
        if config.protocol is WireProtocol.WHOAMI:
            _show_whoami(results)
    else:
        datagrams = results[0].datagrams
        if datagrams is not None:
            show(describe_datagram_report(datagrams))
        if failures:
            error = failures[0].error
            print(fail_line(f"{error}{_hint(getattr(error, 'errno', None))}"), file=sys.stderr)
    return EXIT_FAILED if failures else EXIT_OK


def _show_whoami(results: Sequence[SessionResult]) -> None:
    """The servers that answered a whoami run, and whom they saw, with counts."""
    for line in _whoami_tally(results).lines():
        show(line)


def _whoami_tally(results: Sequence[SessionResult]) -> WhoamiTally:
    whoami = WhoamiTally()
    whoami.add_results(results)
    return whoami


def summary_line(config: ClientConfig, tally: ClientTally, seconds: float) -> str:
    """The run's one line: sessions and rate, then latencies and error classes if any."""
    parts = [
        tally.summary(config.connections, seconds),
        describe_latency(tally),
        describe_error_classes(tally.error_classes()),
    ]
    return "; ".join(part for part in parts if part is not None)


def describe_latency(tally: ClientTally) -> str | None:
    """``latency p50 0.112 ms, p90 0.153 ms, p99 0.301 ms, max 2.410 ms``; None if none timed."""
    figures = tally.latencies().summary()
    if figures["max"] is None:
        return None
    parts = ", ".join(f"{name} {(value or 0.0) * 1000:.3f} ms" for name, value in figures.items())
    return f"latency {parts}"


def describe_error_classes(classes: dict[str, int]) -> str | None:
    """``errors: 3 refused, 1 timed out`` over the classes that occurred; None if none did."""
    seen = [f"{count} {name}" for name, count in classes.items() if count]
    return f"errors: {', '.join(seen)}" if seen else None


def describe_failures(group: FailureGroup) -> str:
    """One line for every session that failed the same way, with a hint where one helps."""
    sessions = "1 session" if group.count == 1 else f"{group.count} sessions"
    if group.same:
        line = f"{sessions} failed: {group.example}"
    else:
        line = f"{sessions} failed with {group.kind}, the first: {group.example}"
    return line + _hint(group.errno)


def _hint(number: int | None) -> str:
    if number in OUT_OF_DESCRIPTORS:
        return " (out of file descriptors: raise the limit with 'ulimit -n' or lower --connections)"
    return ""
