"""The ``trio-echo`` command: ``serve``, ``client`` and ``demo``.

Parsing and exit codes live here; the work is done by the drivers. Every
failure a user can cause or meet is a named error, printed as one line:
exit 1 for a failed run, 2 for a usage error, 0 when a server is stopped
with Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import functools
import logging
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from types import FrameType
from typing import Any, NoReturn, TypeVar

import trio

from . import __version__
from .address import Address
from .blocking_driver import BlockingServer
from .blocking_driver import run_client as run_blocking_client
from .config import DEFAULT_HOST, DEFAULT_PORT, ClientConfig, Protocol, ServerConfig
from .connection_log import LoggingSink
from .demo import run_demo
from .errors import TrioEchoError
from .escape import escape_text
from .session import Report, SessionResult, silent, summarise
from .trio_driver import TrioServer
from .trio_driver import run_client as run_trio_client

PROG = "trio-echo"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
LOG_LEVELS = ("debug", "info", "warning", "error")
_Config = TypeVar("_Config")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        command: Callable[[argparse.Namespace], int] = args.command
        return command(args)
    except TrioEchoError as exc:
        print(f"{PROG}: {escape_text(str(exc))}", file=sys.stderr)
        return EXIT_FAILED


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Echo, reply and greeting servers and clients for Trio."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run a server", description="Run a server.")
    serve.add_argument(
        "--host", default=DEFAULT_HOST, help="address to listen on (default: %(default)s)"
    )
    _add_common(serve)
    serve.add_argument("--once", action="store_true", help="serve one client, then exit")
    serve.add_argument(
        "--log-level",
        default="info",
        type=str.lower,
        choices=LOG_LEVELS,
        help="'warning' silences per-message lines (default: %(default)s)",
    )
    defaults = ServerConfig()
    serve.add_argument(
        "--idle-timeout",
        type=_seconds_or_none,
        default=defaults.idle_timeout,
        metavar="SECONDS",
        help="close a client that sends nothing this long; 0 never (default: %(default)s)",
    )
    serve.add_argument(
        "--send-timeout",
        type=_seconds_or_none,
        default=defaults.send_timeout,
        metavar="SECONDS",
        help="close a client that reads nothing this long; 0 never (default: %(default)s)",
    )
    serve.add_argument(
        "--max-connections",
        type=int,
        default=defaults.max_connections,
        metavar="N",
        help="clients served at once; others wait (default: %(default)s)",
    )
    serve.add_argument(
        "--max-line",
        type=int,
        default=defaults.max_line,
        metavar="BYTES",
        help="longest greeting line (default: %(default)s)",
    )
    serve.add_argument(
        "--grace",
        type=float,
        default=defaults.grace,
        metavar="SECONDS",
        help="on SIGINT/SIGTERM, time for clients to finish (default: %(default)s)",
    )
    serve.set_defaults(command=_serve_command)

    client = commands.add_parser("client", help="run a client", description="Run a client.")
    client.add_argument(
        "host",
        nargs="?",
        default=DEFAULT_HOST,
        metavar="HOST",
        help="server to connect to (default: %(default)s)",
    )
    _add_common(client)
    client.add_argument(
        "--count",
        type=int,
        default=ClientConfig().count,
        help="messages per session (default: %(default)s)",
    )
    client.add_argument(
        "--message",
        default=None,
        metavar="TEXT",
        help="message to send; {i} becomes its index (default: the seed's '{i} - Send Message')",
    )
    client.add_argument(
        "--connections",
        type=int,
        default=1,
        metavar="N",
        help="sessions to run at once (default: %(default)s)",
    )
    client.add_argument(
        "--timeout",
        type=_seconds_or_none,
        default=ClientConfig().timeout,
        metavar="SECONDS",
        help="limit on connecting and on each reply; 0 never (default: %(default)s)",
    )
    client.set_defaults(command=_client_command)

    demo = commands.add_parser(
        "demo",
        help="run a server and the seed's client session in one process",
        description="Start a server on a free loopback port and hold the seed's session with it.",
    )
    demo.add_argument(
        "--protocol",
        type=Protocol,
        default=Protocol.REPLY,
        choices=list(Protocol),
        metavar="{reply,greeting,echo}",
        help="protocol to demonstrate (default: reply)",
    )
    demo.set_defaults(command=_demo_command)
    return parser


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="TCP port (default: %(default)s)"
    )
    parser.add_argument(
        "--protocol",
        type=Protocol,
        default=Protocol.REPLY,
        choices=list(Protocol),
        metavar="{reply,greeting,echo}",
        help="wire protocol (default: reply)",
    )
    parser.add_argument(
        "--blocking", action="store_true", help="use the blocking driver (threads) instead of Trio"
    )


def _seconds_or_none(text: str) -> float | None:
    value = float(text)
    return None if value == 0 else value


def _usage_error(message: str) -> NoReturn:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


def _serve_command(args: argparse.Namespace) -> int:
    config = _build(
        ServerConfig,
        host=args.host,
        port=args.port,
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


def _announce(config: ServerConfig, addresses: Sequence[Address], driver: str) -> None:
    listening = ", ".join(str(address) for address in addresses)
    print(f"{config.protocol.value} server ({driver}) listening on {listening}", flush=True)


def _serve_trio(config: ServerConfig) -> str:
    server = TrioServer(config, sink=LoggingSink())

    async def serve() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_shut_down_on_signals, signals, server)
                addresses = await nursery.start(_serve_then_stop, server, nursery.cancel_scope)
                _announce(config, addresses, "trio")

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
    addresses = server.start()
    _announce(config, addresses, "blocking")
    with _signals_raise(_Stop):
        try:
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


def _client_command(args: argparse.Namespace) -> int:
    config = _build(
        ClientConfig,
        host=args.host,
        port=args.port,
        protocol=args.protocol,
        count=args.count,
        message=args.message,
        connections=args.connections,
        timeout=args.timeout,
    )
    report: Report = print if config.connections == 1 else silent
    started = time.perf_counter()
    if args.blocking:
        results = run_blocking_client(config, report=report)
    else:
        results = trio.run(functools.partial(run_trio_client, config, report=report))
    return _report_results(config, results, time.perf_counter() - started)


def _report_results(config: ClientConfig, results: Sequence[SessionResult], seconds: float) -> int:
    failures = [result for result in results if result.error is not None]
    if config.connections > 1:
        for result in failures:
            print(f"session {result.index}: {escape_text(str(result.error))}", file=sys.stderr)
        print(summarise(results, seconds))
    elif failures:
        print(f"{PROG}: {escape_text(str(failures[0].error))}", file=sys.stderr)
    return EXIT_FAILED if failures else EXIT_OK


def _demo_command(args: argparse.Namespace) -> int:
    return EXIT_OK if trio.run(run_demo, args.protocol, print) else EXIT_FAILED


def _build(kind: Callable[..., _Config], **fields: Any) -> _Config:
    """Build a configuration; a value it rejects is a usage error."""
    try:
        return kind(**fields)
    except TrioEchoError as exc:
        _usage_error(str(exc))


def run() -> NoReturn:
    """Entry point for ``python -m trio_echo`` and the console script."""
    sys.exit(main())
