"""The command line's grammar: sub-commands, flags, defaults and help."""

from __future__ import annotations

import argparse

from .. import __version__
from ..config import DEFAULT_HOST, DEFAULT_PORT, ClientConfig, ServerConfig, WireProtocol
from ..errors import ConfigError
from ..transport.reflection import ReflectionPolicy
from ..transport.spec import ListenSpec, parse_listen_spec
from ..transport.tls import DEFAULT_HANDSHAKE_TIMEOUT
from .client import client_command
from .common import PROG
from .demo import demo_command
from .serve import serve_command

LOG_LEVELS = ("debug", "info", "warning", "error")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Echo, reply and greeting servers and clients for Trio."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run a server", description="Run a server.")
    serve.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help="address of the one TCP listener without --listen (default: %(default)s)",
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
        type=seconds,
        default=DEFAULT_HANDSHAKE_TIMEOUT,
        metavar="SECONDS",
        help="fail a TLS handshake not done in this long; 0 never (default: %(default)s)",
    )
    udp = serve.add_argument_group("UDP (for udp:// listeners)")
    policy = ReflectionPolicy()
    udp.add_argument(
        "--udp-rate",
        type=float,
        default=policy.rate,
        metavar="N",
        help="answers per second per source host (default: %(default)g)",
    )
    udp.add_argument(
        "--udp-burst",
        type=float,
        default=policy.burst,
        metavar="N",
        help="answers a quiet source host may get at once (default: %(default)g)",
    )
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
        type=seconds,
        default=defaults.idle_timeout,
        metavar="SECONDS",
        help="close a client that sends nothing this long; 0 never (default: %(default)s)",
    )
    serve.add_argument(
        "--send-timeout",
        type=seconds,
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
    serve.set_defaults(command=serve_command)

    client = commands.add_parser("client", help="run a client", description="Run a client.")
    client.add_argument(
        "target",
        nargs="?",
        default=DEFAULT_HOST,
        metavar="TARGET",
        help=(
            "server to talk to: HOST, HOST:PORT, [V6]:PORT, or a spec such as "
            "udp://HOST:PORT, tls://HOST:PORT, unix:PATH (default: %(default)s)"
        ),
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
        help=(
            "message to send; {i} becomes its index "
            "(default: the original program's '{i} - Send Message')"
        ),
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
        type=seconds,
        default=ClientConfig().timeout,
        metavar="SECONDS",
        help="limit on connecting and on each reply; 0 never (default: %(default)s)",
    )
    client.add_argument(
        "--retries",
        type=int,
        default=ClientConfig().retries,
        metavar="N",
        help="UDP: sends of a message again after its timeout (default: %(default)s)",
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
        type=WireProtocol,
        default=WireProtocol.REPLY,
        choices=list(WireProtocol),
        metavar="{reply,greeting,echo}",
        help="protocol to demonstrate (default: reply)",
    )
    demo.set_defaults(command=demo_command)
    return parser


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="TCP port (default: %(default)s)"
    )
    parser.add_argument(
        "--protocol",
        type=WireProtocol,
        default=WireProtocol.REPLY,
        choices=list(WireProtocol),
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


def seconds(text: str) -> float | None:
    """A number of seconds for a timeout flag; 0 means no timeout."""
    value = float(text)
    return None if value == 0 else value
