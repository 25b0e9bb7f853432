"""Deterministic concurrency tests for trio-echo: a simulated network and virtual time.

* :class:`SimulatedNetwork` is an in-memory TCP network (ordered bytes,
  half-close, reset, connection refused, bounded buffers, seeded faults) that
  implements the Trio driver's ``Network``: ``TrioServer(config, network=net)``
  and ``run_session(config, network=net)`` run on it unchanged.
* :func:`virtual_runtime` runs the blocking driver on the same network, its
  threads in lockstep with Trio, so its timeouts and clock are virtual too.
* :func:`serve` runs either driver's server for an ``async with`` block, on
  real sockets or a simulated network; its :class:`EventRecorder` sink keeps
  what the server reported and lets a test wait for it.
* The scenario table (:data:`SCENARIOS`) runs against both drivers and
  compares their :class:`Transcript` objects; :func:`check` does one row,
  ``python -m trio_echo.testing`` lists, replays and sweeps them.

Everything waits on Trio's clock: under ``trio.testing.MockClock(autojump_threshold=0)``
(pytest-trio's ``autojump_clock``, or :func:`run_virtual`) a minute-long
timeout takes no real time.
"""

from __future__ import annotations

from .baton import VirtualThreadExit
from .clock import run_virtual, virtual_clock
from .faults import NO_FAULTS, Faults
from .harness import (
    Scenario,
    ScenarioContext,
    ScenarioFailed,
    check,
    play,
    replay_command,
    run_scenario,
)
from .network import DEFAULT_BUFFER_SIZE, DEFAULT_LATENCY, SimulatedListener, SimulatedNetwork
from .recorder import EndEvent, EventRecorder
from .runtime import VirtualRuntime, virtual_runtime
from .scenarios import SCENARIOS, by_name
from .serving import Driver, Serving, serve
from .stream import SimulatedStream
from .transcript import Transcript

__all__ = [
    "DEFAULT_BUFFER_SIZE",
    "DEFAULT_LATENCY",
    "NO_FAULTS",
    "SCENARIOS",
    "Driver",
    "EndEvent",
    "EventRecorder",
    "Faults",
    "Scenario",
    "ScenarioContext",
    "ScenarioFailed",
    "Serving",
    "SimulatedListener",
    "SimulatedNetwork",
    "SimulatedStream",
    "Transcript",
    "VirtualRuntime",
    "VirtualThreadExit",
    "by_name",
    "check",
    "play",
    "replay_command",
    "run_scenario",
    "run_virtual",
    "serve",
    "virtual_clock",
    "virtual_runtime",
]
