"""Seeded task scheduling: the order Trio runs ready tasks in, fixed by a seed.

Trio runs the tasks that became ready at the same moment in an order it
picks at random (it reverses each batch half the time), so two clients that
connect at the same virtual instant reach the network in either order, and
whatever the network numbers in arrival order (a connection's key, and so
its address and its seeded faults) would follow that coin. Trio has a switch
for exactly this, the one Hypothesis turns on: ``_ALLOW_DETERMINISTIC_SCHEDULING``
sorts each batch by the order its tasks were created and shuffles it with
Trio's own generator ``_r``. :func:`seed_scheduling` turns the switch on and
seeds that generator for the rest of the current run, and puts both back as
they were when the run ends. Same program, same seed: same order, on every
run; another seed explores another order.

Both names are private to Trio; :func:`seed_scheduling` fails with a
ConfigError naming them if a Trio release drops them, rather than silently
scheduling at random.
"""

from __future__ import annotations

import random
from typing import Any

import trio

from ..errors import ConfigError

__all__ = ["seed_scheduling"]

_RESTORING: trio.lowlevel.RunVar[bool] = trio.lowlevel.RunVar("trio-echo scheduling restored")


def _trio_run_module() -> Any:
    from trio._core import _run

    if not hasattr(_run, "_ALLOW_DETERMINISTIC_SCHEDULING") or not isinstance(
        getattr(_run, "_r", None), random.Random
    ):
        raise ConfigError(
            f"trio {trio.__version__} has no deterministic scheduling hook "
            "(trio._core._run._ALLOW_DETERMINISTIC_SCHEDULING and _r)"
        )
    return _run


class _RestoreAfterRun(trio.abc.Instrument):
    """Puts Trio's scheduling switch and generator back as they were once the run ends."""

    def __init__(self, run_module: Any) -> None:
        self._run_module = run_module
        self._allowed: bool = run_module._ALLOW_DETERMINISTIC_SCHEDULING
        self._state: Any = run_module._r.getstate()

    def after_run(self) -> None:
        self._run_module._ALLOW_DETERMINISTIC_SCHEDULING = self._allowed
        self._run_module._r.setstate(self._state)


def seed_scheduling(seed: int) -> None:
    """Run this Trio run's ready tasks in an order decided by *seed* alone, from now on."""
    run_module = _trio_run_module()
    if not _RESTORING.get(False):
        _RESTORING.set(True)
        trio.lowlevel.add_instrument(_RestoreAfterRun(run_module))
    run_module._ALLOW_DETERMINISTIC_SCHEDULING = True
    run_module._r.seed(f"trio-echo/{seed}/scheduling")
