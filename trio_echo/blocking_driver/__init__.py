"""The blocking driver: the same server and client on plain sockets and threads."""

from __future__ import annotations

from .client import run_client, run_session
from .runtime import Runtime, SocketRuntime
from .server import BlockingServer

__all__ = ["BlockingServer", "Runtime", "SocketRuntime", "run_client", "run_session"]
