"""The command line's grammar: sub-commands, flags, defaults and help."""

from __future__ import annotations

import argparse
import math
import re
from typing import NoReturn

from .. import __version__
from ..config import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    NOTE_COUNT,
    ClientConfig,
    ServerConfig,
    WireProtocol,
)
from ..errors import ConfigError
from ..escape import escape_text
from ..faults.spec import FaultSpec, parse_faults
from ..proxy_gate import parse_networks
from ..transport.reflection import ReflectionPolicy
from ..transport.spec import ListenSpec, parse_listen_spec
from ..transport.tls import DEFAULT_HANDSHAKE_TIMEOUT
from ..validation import MAX_SECONDS
from .client import client_command
from .common import EXIT_USAGE, PROG
from .demo import demo_command
from .serve import serve_command

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")

_ARGUMENT = re.compile(r"^argument (?P<flag>[^:]+): (?P<rest>.*)$", re.DOTALL)


class Parser(argparse.ArgumentParser):
    """argparse with the one usage-error style of the whole command: ``trio-echo: error: ...``.

    Errors are one line, as every other usage error is, and name the flag
    first (``--count must be an integer, not 'x'``).
    """

    def error(self, message: str) -> NoReturn:
        match = _ARGUMENT.match(message)
        if match is not None:
            flag, rest = match["flag"].split("/")[-1], match["rest"]
            message = f"{flag} {rest}" if rest.startswith("must ") else f"{flag}: {rest}"
        self.exit(EXIT_USAGE, f"{PROG}: error: {escape_text(message)}\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = Parser(prog=PROG, description="Echo, reply and greeting servers and clients for Trio.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run a server", description="Run a server.")
    serve.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=(
            "address of the one TCP listener without --listen; '::' listens on IPv6 only "
            "(for IPv4 too, --listen tcp://0.0.0.0:PORT --listen 'tcp://[::]:PORT') "
            "(default: %(default)s)"
        ),
    )
    serve.add_argument(
        "--port",
        type=integer,
        default=DEFAULT_PORT,
        help="TCP port of that listener; 0 picks a free one (default: %(default)s)",
    )
    _add_common(serve)
    serve.add_argument(
        "--listen",
        action="append",
        type=listen_spec,
        default=[],
        metavar="SPEC",
        help=(
            "listen here, repeatable: tcp://HOST:PORT, udp://HOST:PORT, tls://HOST:PORT, "
            "unix:PATH; IPv6 in brackets; ?protocol=echo for this listener alone "
            "(default: tcp://HOST:PORT from --host and --port)"
        ),
    )
    tls = serve.add_argument_group("TLS (for tls:// listeners)")
    tls.add_argument("--certfile", metavar="PEM", help="the server's certificate chain")
    tls.add_argument("--keyfile", metavar="PEM", help="its private key (default: in --certfile)")
    tls.add_argument(
        "--client-ca", metavar="PEM", help="require client certificates signed by this CA"
    )
    tls.add_argument(
        "--handshake-timeout",
        type=seconds_or_never,
        default=DEFAULT_HANDSHAKE_TIMEOUT,
        metavar="SECONDS",
        help="fail a TLS handshake not done in this long; 0 never (default: %(default)s)",
    )
    udp = serve.add_argument_group("UDP (for udp:// listeners)")
    policy = ReflectionPolicy()
    udp.add_argument(
        "--udp-rate",
        type=number,
        default=policy.rate,
        metavar="N",
        help="answers per second per source host (default: %(default)g)",
    )
    udp.add_argument(
        "--udp-burst",
        type=number,
        default=policy.burst,
        metavar="N",
        help="answers a quiet source host may get at once (default: %(default)g)",
    )
    serve.add_argument("--once", action="store_true", help="serve one client, then exit")
    serve.add_argument(
        "--fault",
        type=fault_spec,
        action="append",
        metavar="SPEC",
        help="misbehave on purpose, e.g. delay=20ms,split=1-16@0.5 (repeatable; see README)",
    )
    serve.add_argument(
        "--seed",
        type=integer,
        default=0,
        metavar="N",
        help="which connection gets which fault, repeatably (default: %(default)s)",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        type=log_level,
        metavar="{debug,info,warning,error}",
        help=(
            "least severe lines shown: error shows failed connections and accepts, "
            "warning also a full server and shutdown, info also every connection and "
            "message, debug also tracebacks (default: %(default)s)"
        ),
    )
    defaults = ServerConfig()
    serve.add_argument(
        "--idle-timeout",
        type=seconds_or_never,
        default=defaults.idle_timeout,
        metavar="SECONDS",
        help="close a client that sends nothing this long; 0 never (default: %(default)s)",
    )
    serve.add_argument(
        "--send-timeout",
        type=seconds_or_never,
        default=defaults.send_timeout,
        metavar="SECONDS",
        help="close a client that reads nothing this long; 0 never (default: %(default)s)",
    )
    serve.add_argument(
        "--max-connections",
        type=integer,
        default=defaults.max_connections,
        metavar="N",
        help="clients served at once; others wait (default: %(default)s)",
    )
    serve.add_argument(
        "--max-line",
        type=integer,
        default=defaults.max_line,
        metavar="BYTES",
        help="longest greeting line (default: %(default)s)",
    )
    serve.add_argument(
        "--reclaim-after",
        type=seconds_or_never,
        default=defaults.reclaim_after,
        metavar="SECONDS",
        help=(
            "when full and a client waits, close the connection quiet this long or longer "
            "(the quietest) to serve it; 0 never (default: %(default)s)"
        ),
    )
    serve.add_argument(
        "--line-timeout",
        type=seconds_or_never,
        default=defaults.line_timeout,
        metavar="SECONDS",
        help=(
            "fail a greeting whose line is not whole this long after accept, however "
            "steadily it trickles; 0 never (default: %(default)s)"
        ),
    )
    serve.add_argument(
        "--grace",
        type=seconds,
        default=defaults.grace,
        metavar="SECONDS",
        help=(
            "on SIGINT/SIGTERM, time for clients to finish; 0 stops at once (default: %(default)s)"
        ),
    )
    serve.add_argument(
        "--drain",
        type=seconds,
        default=defaults.drain,
        metavar="SECONDS",
        help=(
            "on the first SIGINT/SIGTERM/SIGHUP, serve and accept on this long before the "
            "grace period, for a load balancer to take the server out; a second signal "
            "ends it (default: %(default)s)"
        ),
    )
    serve.add_argument(
        "--stats-every",
        type=seconds_or_never,
        default=defaults.stats_every,
        metavar="SECONDS",
        help="log the summary line every SECONDS while serving; 0 only on exit (default: 0)",
    )
    serve.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="text",
        help="log lines as text or one JSON object each (default: %(default)s)",
    )
    serve_proxy = serve.add_argument_group("PROXY protocol (for ?proxy=v1|v2|any listeners)")
    serve_proxy.add_argument(
        "--proxy-timeout",
        type=positive_seconds,
        default=defaults.proxy_timeout,
        metavar="SECONDS",
        help="refuse a connection whose PROXY header is not whole by then (default: %(default)s)",
    )
    serve_proxy.add_argument(
        "--proxy-trusted",
        type=cidr_list,
        default=defaults.proxy_trusted,
        metavar="CIDR,...",
        help="accept PROXY headers only from these (default: 127.0.0.0/8,::1/128; unix: always)",
    )
    serve.add_argument(
        "--workers",
        type=integer,
        default=1,
        metavar="N",
        help=(
            "worker processes sharing the listeners, restarted if they die; "
            "1 serves in this process (default: %(default)s)"
        ),
    )
    serve.add_argument(
        "--name",
        default=None,
        metavar="NAME",
        help="what whoami answers call this server (default: the host name)",
    )
    serve.set_defaults(command=serve_command)

    client = commands.add_parser("client", help="run a client", description="Run a client.")
    client.add_argument(
        "target",
        nargs="?",
        default=None,
        metavar="TARGET",
        help=(
            "server to talk to: HOST, HOST:PORT, [V6]:PORT, or a spec such as "
            f"udp://HOST:PORT, tls://HOST:PORT, unix:PATH (default: {DEFAULT_HOST})"
        ),
    )
    client.add_argument(
        "--host",
        default=None,
        metavar="TARGET",
        help="the same as TARGET, as serve spells it (give one, or both the same)",
    )
    client.add_argument(
        "--port",
        type=integer,
        default=DEFAULT_PORT,
        help="port of a TARGET written without one, 1 to 65535 (default: %(default)s)",
    )
    _add_common(client)
    client.add_argument(
        "--count",
        type=integer,
        default=None,
        metavar="N",
        help=(
            f"messages per session (default: {NOTE_COUNT}); a greeting session is one "
            "line, so greeting takes only 1"
        ),
    )
    client.add_argument(
        "--message",
        default=None,
        metavar="TEXT",
        help=(
            "message to send; {i} becomes its index "
            "(default: the original program's '{i} - Send Message')"
        ),
    )
    client.add_argument(
        "--connections",
        type=integer,
        default=1,
        metavar="N",
        help="sessions to run at once (default: %(default)s)",
    )
    client.add_argument(
        "--timeout",
        type=seconds_or_never,
        default=ClientConfig().timeout,
        metavar="SECONDS",
        help="limit on connecting and on each reply; 0 never (default: %(default)s)",
    )
    client.add_argument(
        "--retries",
        type=integer,
        default=ClientConfig().retries,
        metavar="N",
        help="UDP: sends of a message again after its timeout (default: %(default)s)",
    )
    client.add_argument(
        "--proxy-protocol",
        type=proxy_version,
        default=None,
        metavar="{v1,v2}",
        help="open each connection with a PROXY header naming its own endpoints",
    )
    client.add_argument(
        "--duration",
        type=seconds,
        default=None,
        metavar="SECONDS",
        help="each session sends for this long instead of --count messages",
    )
    client.add_argument(
        "--rate",
        type=number,
        default=None,
        metavar="R",
        help=(
            "round trips per second over all sessions, paced; latency counts from each "
            "intended send time (default: as fast as the server answers)"
        ),
    )
    client.add_argument(
        "--depth",
        type=integer,
        default=1,
        metavar="K",
        help=(
            "messages in flight per connection, each reply validated in order "
            "(default: %(default)s, lockstep; the Trio driver only)"
        ),
    )
    client.add_argument(
        "--json",
        action="store_true",
        help="print the run's figures as one JSON object instead of lines",
    )
    client_tls = client.add_argument_group("TLS (for tls:// targets)")
    client_tls.add_argument(
        "--cafile", metavar="PEM", help="trust these CAs (default: the system's trust store)"
    )
    client_tls.add_argument(
        "--insecure", action="store_true", help="do not verify the server's certificate"
    )
    client_tls.add_argument(
        "--server-name", metavar="NAME", help="name to send and verify (default: the host)"
    )
    client_tls.add_argument("--certfile", metavar="PEM", help="a client certificate to present")
    client_tls.add_argument("--keyfile", metavar="PEM", help="its private key")
    client.set_defaults(command=client_command)

    demo = commands.add_parser(
        "demo",
        help="run a server and the original program's client session in one process",
        description=(
            "Start a server on a free loopback port and hold the original program's "
            "client session with it."
        ),
    )
    demo.add_argument(
        "--protocol",
        type=protocol,
        default=WireProtocol.REPLY,
        metavar="{reply,greeting,echo}",
        help="protocol to demonstrate (default: reply)",
    )
    demo.set_defaults(command=demo_command)
    return parser


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--protocol",
        type=protocol,
        default=WireProtocol.REPLY,
        metavar="{reply,greeting,echo}",
        help="wire protocol (default: reply)",
    )
    parser.add_argument(
        "--blocking", action="store_true", help="use the blocking driver (threads) instead of Trio"
    )


def listen_spec(text: str) -> ListenSpec:
    """A ``--listen`` value; a malformed one is a usage error naming what is expected."""
    try:
        return parse_listen_spec(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def fault_spec(text: str) -> FaultSpec:
    """A ``--fault`` value; a malformed one is a usage error quoting it."""
    try:
        return parse_faults(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def integer(text: str) -> int:
    """A whole number; the configuration checks its range and names the flag."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, not {text!r}") from None


def number(text: str) -> float:
    """A finite number."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a number, not {text!r}")
    return value


def seconds(text: str) -> float:
    """A number of seconds from 0 to 1e9."""
    value = _seconds(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"must be a number of seconds from 0 to 1e9, not {text!r}")
    return value


def seconds_or_never(text: str) -> float | None:
    """A number of seconds for a timeout flag, from 0 to 1e9; 0 turns the timeout off (None)."""
    value = _seconds(text)
    if value is None:
        raise argparse.ArgumentTypeError(
            f"must be a number of seconds from 0 (never) to 1e9, not {text!r}"
        )
    return None if value == 0 else value


def _seconds(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0 <= value <= MAX_SECONDS else None


def positive_seconds(text: str) -> float:
    """A number of seconds above 0, up to 1e9."""
    value = _seconds(text)
    if not value:
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, not {text!r}")
    return value


def cidr_list(text: str) -> tuple[str, ...]:
    """Comma-separated addresses or CIDR networks (``10.0.0.0/8,::1``)."""
    items = tuple(item.strip() for item in text.split(","))
    try:
        parse_networks(items)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc}") from None
    return items


def proxy_version(text: str) -> int:
    """A PROXY protocol version to send: ``v1`` or ``v2`` (any case)."""
    versions = {"v1": 1, "v2": 2}
    if text.lower() not in versions:
        raise argparse.ArgumentTypeError(f"must be v1 or v2, not {text!r}")
    return versions[text.lower()]


def protocol(text: str) -> WireProtocol:
    """A wire protocol by name, in any case (``ECHO`` as ``echo``)."""
    try:
        return WireProtocol(text.lower())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be reply, greeting or echo, not {text!r}") from None


def log_level(text: str) -> str:
    """A log level by name, in any case."""
    if text.lower() not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(
            f"must be {', '.join(LOG_LEVELS[:-1])} or {LOG_LEVELS[-1]}, not {text!r}"
        )
    return text.lower()
