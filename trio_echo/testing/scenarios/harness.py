"""A row of the scenario table, and running it against either driver in virtual time.

A :class:`Scenario` is a script plus the server configuration and network
it runs on. :func:`play` starts the chosen driver's server on a fresh
:class:`~trio_echo.testing.SimulatedNetwork`, runs the script (which starts
sessions of the *same* driver's client, or scripted peers), stops the server
and returns the :class:`~.transcript.Transcript`.
:func:`check` plays a scenario with both drivers and fails, naming the seed
and the command that replays it, if their transcripts differ or the
scenario's own expectations do not hold.
"""

from __future__ import annotations

import collections
import math
import shlex
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio

from ...blocking_driver import run_session as run_blocking_session
from ...config import ClientConfig, ServerConfig
from ...session import SessionResult
from ...trio_driver import run_session
from ..clock import run_virtual
from ..faults import NO_FAULTS, Faults
from ..network import DEFAULT_LATENCY, SimulatedNetwork
from ..recorder import EventRecorder
from ..serving import Driver, Serving, serve
from ..stream import SimulatedStream
from .transcript import Transcript, build_transcript, show_time

__all__ = [
    "Scenario",
    "ScenarioContext",
    "ScenarioFailed",
    "check",
    "play",
    "replay_command",
    "run_scenario",
]


async def _client_session(serving: Serving, config: ClientConfig, label: str) -> SessionResult:
    """One session of the serving driver's own client, as client *label* on its network."""
    network, runtime = serving.network, serving.runtime
    assert network is not None, "scenarios run on a simulated network"
    if runtime is None:
        return await run_session(config, network=network.client(label))
    client = runtime.client(label)
    return await runtime.run_in_thread(
        lambda: run_blocking_session(config, runtime=client), name=f"client {label}"
    )


class ScenarioContext:
    """What a scenario's script works with: the server, the network, its clients.

    Times the script sees (:meth:`now`, :meth:`sleep_until`, notes) count
    from the scenario's start.
    """

    def __init__(self, serving: Serving, network: SimulatedNetwork, nursery: trio.Nursery) -> None:
        self.driver = serving.driver
        self.network = network
        self.address = serving.address
        self.sessions: dict[str, SessionResult] = {}
        self.notes: dict[str, list[str]] = collections.defaultdict(list)
        self._serving = serving
        self._nursery = nursery
        self._start = trio.current_time()

    def now(self) -> float:
        """Virtual seconds since the scenario started."""
        return trio.current_time() - self._start

    async def sleep_until(self, moment: float) -> None:
        """Sleep until *moment* virtual seconds after the start."""
        await trio.sleep_until(self._start + moment)

    def client_config(self, **changes: Any) -> ClientConfig:
        """A client configuration aimed at the server, with *changes*."""
        settings: dict[str, Any] = {"host": self.address.host, "port": self.address.port}
        return ClientConfig(**(settings | changes))

    async def session(self, label: str, **changes: Any) -> SessionResult:
        """Hold one session of the driver's own client as *label*; keep its result."""
        result = await _client_session(self._serving, self.client_config(**changes), label)
        self.sessions[label] = result
        return result

    def start_session(self, label: str, *, at: float = 0.0, **changes: Any) -> None:
        """Start :meth:`session` in the background, *at* seconds after the start."""

        async def later() -> None:
            await self.sleep_until(at)
            await self.session(label, **changes)

        self._nursery.start_soon(later, name=f"session {label}")

    def start_soon(self, peer: Callable[..., Awaitable[object]], *args: object) -> None:
        """Run a scripted peer in the background; the scenario waits for it."""
        self._nursery.start_soon(peer, *args)

    async def connect(self, label: str, port: int | None = None) -> SimulatedStream:
        """Connect a scripted peer named *label* to the server (or to *port*)."""
        port = self.address.port if port is None else port
        return await self.network.client(label).connect(self.address.host, port)

    def note(self, label: str, text: str) -> None:
        """Add an observation of peer *label* to the transcript, stamped with the time."""
        self.notes[label].append(f"{show_time(self.now())} {text}")

    async def shutdown(self, grace: float | None = None) -> None:
        """Shut the server down (grace as configured if None); wait until it stopped."""
        await self._serving.shutdown(grace)


Script = Callable[[ScenarioContext], Awaitable[None]]
Expectation = Callable[[Transcript], None]


def _nothing_expected(_transcript: Transcript) -> None:
    pass


@attrs.frozen(kw_only=True)
class Scenario:
    """One row of the scenario table."""

    name: str
    checks: str
    """What the scenario checks, in one sentence."""
    script: Script
    server: ServerConfig = attrs.field(factory=ServerConfig)
    faults: Faults = NO_FAULTS
    latency: float = DEFAULT_LATENCY
    seeded: bool = False
    """True for fault scenarios: the seed changes what happens, and sweeps vary it."""
    expect: Expectation = _nothing_expected
    """Assertions about one driver's transcript (both drivers must satisfy them)."""
    differences: str = ""
    """Where the two drivers may legitimately differ, and why ('' when they may not)."""
    excluded: frozenset[str] = frozenset()
    """Transcript fields (``section.field``) left out of the cross-driver comparison."""
    time_limit: float = 3600.0
    """Virtual seconds after which the scenario counts as hung."""


async def play(scenario: Scenario, driver: Driver, seed: int = 0) -> Transcript:
    """Run *scenario* once with *driver* in the current Trio run; return its transcript."""
    network = SimulatedNetwork(seed=seed, faults=scenario.faults, latency=scenario.latency)
    recorder = EventRecorder()
    start = trio.current_time()
    with trio.fail_after(scenario.time_limit):
        async with (
            serve(
                driver, scenario.server, network=network, recorder=recorder, final_grace=math.inf
            ) as serving,
            trio.open_nursery() as nursery,
        ):
            context = ScenarioContext(serving, network, nursery)
            await scenario.script(context)
    return build_transcript(
        scenario=scenario.name,
        seed=seed,
        driver=driver.value,
        network=network,
        events=recorder.events,
        sessions=context.sessions,
        notes=context.notes,
        stats=serving.stats,
        start=start,
    )


def run_scenario(scenario: Scenario, driver: Driver, seed: int = 0) -> Transcript:
    """Run *scenario* in a Trio run of its own, on an autojumping virtual clock."""
    return run_virtual(play, scenario, driver, seed)


def replay_command(scenario: Scenario, seed: int, driver: str = "both") -> str:
    """The one command that replays *scenario* with *seed* and prints its transcript."""
    return (
        f"python -m trio_echo.testing replay {shlex.quote(scenario.name)} "
        f"--seed {seed} --driver {driver}"
    )


class ScenarioFailed(AssertionError):
    """A scenario's drivers disagreed, or its expectations failed; says how to replay it."""


def expect(scenario: Scenario, transcript: Transcript) -> None:
    """Check the scenario's expectations; on failure name the seed and the replay command."""
    try:
        scenario.expect(transcript)
    except AssertionError as exc:
        raise ScenarioFailed(
            f"scenario {scenario.name!r} with the {transcript.driver} driver, seed "
            f"{transcript.seed}: {exc}\nreplay: "
            f"{replay_command(scenario, transcript.seed, transcript.driver)}"
        ) from exc


def compare(scenario: Scenario, first: Transcript, second: Transcript) -> None:
    """Fail unless the two transcripts agree outside the scenario's excluded fields."""
    if first.canonical(scenario.excluded) == second.canonical(scenario.excluded):
        return
    raise ScenarioFailed(
        f"scenario {scenario.name!r}, seed {first.seed}: the {first.driver} and "
        f"{second.driver} drivers disagree\nreplay: {replay_command(scenario, first.seed)}\n"
        + first.diff(second, scenario.excluded)
    )


def check(scenario: Scenario, seed: int = 0) -> tuple[Transcript, Transcript]:
    """Play *scenario* with both drivers; check each, then compare them."""
    trio_transcript = run_scenario(scenario, Driver.TRIO, seed)
    expect(scenario, trio_transcript)
    blocking_transcript = run_scenario(scenario, Driver.BLOCKING, seed)
    expect(scenario, blocking_transcript)
    compare(scenario, trio_transcript, blocking_transcript)
    return trio_transcript, blocking_transcript
