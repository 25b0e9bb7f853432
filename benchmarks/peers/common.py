"""What every peer server shares: arguments, the wire contract, start-up.

The wire contract is trio-echo's (DESIGN.md section 2):

- ``reply``: every chunk the server reads goes back as ``b"Re:" + chunk``, in
  pieces of at most 124 payload bytes, so no reply exceeds 127 bytes and no
  byte is ever cut.
- ``echo``: RFC 862, every byte goes back unchanged until the peer closes.

Peers read at most :data:`RECEIVE_SIZE` bytes at a time, as trio-echo does.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import socket
import sys
from collections.abc import Callable

PREFIX = b"Re:"
MAX_PIECE = 124
RECEIVE_SIZE = 65536
BACKLOG = 1024
HOST = "127.0.0.1"
PROTOCOLS = ("reply", "echo")


def reply_for(chunk: bytes) -> bytes:
    """The ``reply`` protocol's answer to one chunk read."""
    if len(chunk) <= MAX_PIECE:
        return PREFIX + chunk
    return b"".join(PREFIX + chunk[i : i + MAX_PIECE] for i in range(0, len(chunk), MAX_PIECE))


def echo_for(chunk: bytes) -> bytes:
    """The ``echo`` protocol's answer to one chunk read: the chunk itself."""
    return chunk


def answer_function(protocol: str) -> Callable[[bytes], bytes]:
    """The function that turns a chunk read into the bytes to send back."""
    return reply_for if protocol == "reply" else echo_for


def parse_args(description: str, argv: list[str] | None = None) -> argparse.Namespace:
    """The arguments every peer takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any)")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="reply")
    parser.add_argument(
        "--max-connections",
        type=int,
        default=None,
        help="accepted for symmetry with trio-echo; peers serve without a limit",
    )
    return parser.parse_args(argv)


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def listening_socket(port: int) -> socket.socket:
    """A bound, listening TCP socket on 127.0.0.1.

    asyncio calls ``listen()`` again with its own ``backlog`` argument (100 by
    default): pass ``backlog=BACKLOG`` there too.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, port))
    sock.listen(BACKLOG)
    return sock


def announce(protocol: str, driver: str, port: int) -> None:
    """Print the start-up line the suite waits for (same shape as trio-echo's)."""
    print(f"{protocol} server ({driver}) listening on {HOST}:{port}", flush=True)


def set_nodelay(sock: socket.socket) -> None:
    """Disable Nagle's algorithm, as Trio and asyncio do for their TCP streams."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def main_guard(run: Callable[[], None]) -> None:
    """Run a server; exit 0 on Ctrl-C."""
    with contextlib.suppress(KeyboardInterrupt):
        run()
    sys.exit(0)
