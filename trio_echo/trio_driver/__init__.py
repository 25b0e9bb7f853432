"""The Trio driver: server and client as tasks in nurseries."""

from __future__ import annotations

from .client import run_client, run_session
from .network import Network, TcpNetwork
from .server import TrioServer

__all__ = ["Network", "TcpNetwork", "TrioServer", "run_client", "run_session"]
