"""The fault model: what a server does wrong on purpose, decided per connection, sans I/O.

:mod:`.spec` reads and writes the spec text (``delay=20ms@0.5,split=1-16``);
:mod:`.plan` turns a spec, a seed and a connection key into that
connection's decisions. Both drivers apply a plan on real sockets, and the
simulated network draws from the same seeded generators.
"""

from __future__ import annotations

from .plan import ConnectionPlan, DatagramPlan, plan_connection, plan_datagram, seeded
from .spec import Fault, FaultKind, FaultSpec, merge_faults, parse_faults

__all__ = [
    "ConnectionPlan",
    "DatagramPlan",
    "Fault",
    "FaultKind",
    "FaultSpec",
    "merge_faults",
    "parse_faults",
    "plan_connection",
    "plan_datagram",
    "seeded",
]
