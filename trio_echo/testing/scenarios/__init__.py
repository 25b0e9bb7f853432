"""trio-echo's own scenario table: regression rows run against both drivers.

This is not part of the simulated network; it is how trio-echo tests itself
on it. Each row (:class:`Scenario`) starts one driver's server on a fresh
:class:`~trio_echo.testing.SimulatedNetwork`, drives it with that driver's
client or with scripted peers, and keeps a :class:`Transcript`; :func:`check`
plays a row with both drivers and fails, naming the seed and the replay
command, if the transcripts differ or the row's expectations fail.

* :mod:`.harness`: :class:`Scenario`, :class:`ScenarioContext` (what a script
  works with), :func:`play`, :func:`run_scenario`, :func:`check`;
* :mod:`.transcript`: what a run did, as canonical JSON with a digest;
* :mod:`.expectations`: reading a transcript in a row's assertions;
* :mod:`.table`: the rows themselves, :data:`SCENARIOS`;
* :mod:`.command`: ``python -m trio_echo.testing list | replay | sweep``.
"""

from __future__ import annotations

from .harness import (
    Scenario,
    ScenarioContext,
    ScenarioFailed,
    check,
    play,
    replay_command,
    run_scenario,
)
from .table import SCENARIOS, NoSuchScenario, by_name, seeded
from .transcript import Transcript

__all__ = [
    "SCENARIOS",
    "NoSuchScenario",
    "Scenario",
    "ScenarioContext",
    "ScenarioFailed",
    "Transcript",
    "by_name",
    "check",
    "play",
    "replay_command",
    "run_scenario",
    "seeded",
]
