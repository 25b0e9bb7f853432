"""Deterministic tests in virtual time: a simulated network, and trio-echo's scenario table.

**The simulated network**, a general tool for Trio code and blocking code:

* :class:`SimulatedNetwork` (``network``) is an in-memory TCP network:
  ordered bytes, half-close, reset, connection refused, bounded windows and
  seeded :class:`Faults` (``faults``). It implements the Trio driver's
  ``Network``, so ``TrioServer(config, network=net)`` and
  ``run_session(config, network=net)`` run on it unchanged. Beneath it: one
  direction of a connection (``pipe``), a connection's two endpoints
  (``connection``), Trio's stream over an endpoint (``stream``) and the one
  timer that wakes every waiter (``alarm``).
* :func:`install` (``sockets``) puts a network under Trio's own socket API
  through Trio's hooks, so unmodified ``trio.open_tcp_stream``,
  ``trio.serve_tcp`` and ``trio.socket`` UDP run on it: TCP sockets
  (``sockets``) and UDP sockets (``udp``) over one shared base
  (``socket_base``), named :class:`Hosts` and the resolver (``hosts``),
  seeded :class:`DatagramFaults` and partitions in :class:`Links`
  (``links``). The pytest plugin (``pytest_plugin``) gives a Trio test the
  ``simulated_network`` fixture.
* :func:`virtual_runtime` (``runtime``) runs the blocking driver on the same
  network, its threads in lockstep with Trio (``baton``), so its timeouts and
  clock are virtual too.
* :func:`run_virtual` and :func:`virtual_clock` (``clock``): Trio's clock set
  to jump whenever everything waits.

**trio-echo's servers under test**: :func:`serve` (``serving``) runs either
:class:`Driver`'s server for an ``async with`` block, on real sockets or a
simulated network; its :class:`EventRecorder` sink (``recorder``) keeps what
the server reported and lets a test wait for it.

**trio-echo's scenario table** (the :mod:`.scenarios` subpackage) is how
trio-echo tests itself on that network: :data:`SCENARIOS` runs against both
drivers and compares their :class:`Transcript` objects; :func:`check` does
one row, ``python -m trio_echo.testing`` lists, replays and sweeps them.

Everything waits on Trio's clock: under ``trio.testing.MockClock(autojump_threshold=0)``
(pytest-trio's ``autojump_clock``, or :func:`run_virtual`) a minute-long
timeout takes no real time.
"""

from __future__ import annotations

from .baton import VirtualThreadExit
from .clock import run_virtual, virtual_clock
from .faults import NO_FAULTS, Faults
from .hosts import Host, Hosts
from .links import NO_DATAGRAM_FAULTS, DatagramFaults, Links
from .network import DEFAULT_BUFFER_SIZE, DEFAULT_LATENCY, SimulatedListener, SimulatedNetwork
from .recorder import EndEvent, EventRecorder
from .runtime import VirtualRuntime, virtual_runtime
from .scenarios import (
    SCENARIOS,
    Scenario,
    ScenarioContext,
    ScenarioFailed,
    Transcript,
    by_name,
    check,
    play,
    replay_command,
    run_scenario,
)
from .serving import Driver, Serving, serve
from .sockets import Installed, SimulatedSocket, install
from .stream import SimulatedStream
from .udp import SimulatedDatagramSocket

__all__ = [
    "DEFAULT_BUFFER_SIZE",
    "DEFAULT_LATENCY",
    "NO_DATAGRAM_FAULTS",
    "NO_FAULTS",
    "SCENARIOS",
    "DatagramFaults",
    "Driver",
    "EndEvent",
    "EventRecorder",
    "Faults",
    "Host",
    "Hosts",
    "Installed",
    "Links",
    "Scenario",
    "ScenarioContext",
    "ScenarioFailed",
    "Serving",
    "SimulatedDatagramSocket",
    "SimulatedListener",
    "SimulatedNetwork",
    "SimulatedSocket",
    "SimulatedStream",
    "Transcript",
    "VirtualRuntime",
    "VirtualThreadExit",
    "by_name",
    "check",
    "install",
    "play",
    "replay_command",
    "run_scenario",
    "run_virtual",
    "serve",
    "virtual_clock",
    "virtual_runtime",
]
