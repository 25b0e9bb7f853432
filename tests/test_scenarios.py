"""The scenario table: every row, against both drivers, must give one transcript.

Each row runs with the Trio driver and with the blocking driver (server and
client of the same driver) on the simulated network in virtual time; its
own expectations must hold for both and the two transcripts must be equal,
outside the fields the row declares as legitimately different. A failure
names the seed and the command that replays it.

Seeded rows run with seeds 0-2 here (``TRIO_ECHO_SEEDS=5,6`` picks others);
``-m slow`` sweeps them over 1000 seeds, as does
``python -m trio_echo.testing sweep``.
"""

from __future__ import annotations

import os
import time

import attrs
import pytest

from trio_echo.testing import SCENARIOS, Driver, Scenario, ScenarioFailed, by_name, check
from trio_echo.testing import run_scenario as run
from trio_echo.testing.scenarios import ScenarioContext, seeded

SEEDS = [int(seed) for seed in os.environ.get("TRIO_ECHO_SEEDS", "0,1,2").split(",")]
SWEEP = range(1000)
THOUSAND = by_name("thousand-clients")
TABLE = [scenario for scenario in SCENARIOS if scenario is not THOUSAND]


def name(scenario: Scenario) -> str:
    return scenario.name


def seeds_for(scenario: Scenario) -> list[int]:
    return SEEDS if scenario.seeded else [0]


def test_the_table_covers_what_it_promises() -> None:
    assert len(SCENARIOS) >= 12
    assert len({scenario.name for scenario in SCENARIOS}) == len(SCENARIOS)
    for scenario in SCENARIOS:
        assert scenario.checks
        assert bool(scenario.differences) == bool(scenario.excluded), scenario.name


@pytest.mark.parametrize("scenario", TABLE, ids=name)
def test_both_drivers_give_the_same_transcript(scenario: Scenario) -> None:
    for seed in seeds_for(scenario):
        check(scenario, seed)


@pytest.mark.parametrize("scenario", TABLE, ids=name)
def test_every_run_gives_the_same_digest(scenario: Scenario) -> None:
    seed = 5 if scenario.seeded else 0
    for driver in Driver:
        assert run(scenario, driver, seed).digest() == run(scenario, driver, seed).digest()


def test_a_thousand_concurrent_clients_with_each_driver() -> None:
    transcripts, times = {}, {}
    for driver in Driver:
        wall, cpu = time.perf_counter(), time.process_time()
        transcripts[driver] = run(THOUSAND, driver)
        times[driver] = (time.perf_counter() - wall, time.process_time() - cpu)
    print(
        {
            driver.value: f"{wall:.2f} s real, {cpu:.2f} s CPU"
            for driver, (wall, cpu) in times.items()
        }
    )
    for driver, transcript in transcripts.items():
        THOUSAND.expect(transcript)
        assert times[driver][1] < 10, f"{driver.value}: {times[driver]}"
    assert transcripts[Driver.TRIO].digest() == transcripts[Driver.BLOCKING].digest()


@pytest.mark.slow
def test_a_thousand_clients_give_the_same_digest_every_run() -> None:
    for driver in Driver:
        assert run(THOUSAND, driver).digest() == run(THOUSAND, driver).digest()


@pytest.mark.parametrize("row", ["idle-timeout", "stops-reading", "slow-reader"])
def test_minutes_of_virtual_timeouts_take_well_under_a_second(row: str) -> None:
    for driver in Driver:
        started = time.perf_counter()
        run(by_name(row), driver)
        assert time.perf_counter() - started < 1.0


def test_no_row_declares_a_difference_between_the_drivers() -> None:
    """The slow reader was the last: both drivers now time a send by the peer's progress."""
    assert [scenario.name for scenario in SCENARIOS if scenario.differences] == []
    slow = by_name("slow-reader")
    assert run(slow, Driver.TRIO).digest() == run(slow, Driver.BLOCKING).digest()


def test_a_declared_difference_is_real_and_confined_to_its_fields() -> None:
    async def confess(context: ScenarioContext) -> None:
        context.note("witness", f"served by {context.driver.value}")

    scenario = attrs.evolve(
        by_name("note-session"),
        script=confess,
        expect=lambda _transcript: None,
        differences="who served",
        excluded=frozenset({"notes.witness"}),
    )
    trio_side, blocking_side = (run(scenario, driver) for driver in Driver)
    assert trio_side.digest() != blocking_side.digest()
    assert trio_side.digest(scenario.excluded) == blocking_side.digest(scenario.excluded)
    check(scenario)  # a declared difference passes the check


def test_a_failed_expectation_names_the_seed_and_the_replay_command() -> None:
    def never(_transcript: object) -> None:
        raise AssertionError("expected something else")

    scenario = attrs.evolve(by_name("faulty-network"), expect=never)
    with pytest.raises(ScenarioFailed) as caught:
        check(scenario, 42)
    message = str(caught.value)
    assert "seed 42" in message and "expected something else" in message
    assert "python -m trio_echo.testing replay faulty-network --seed 42 --driver trio" in message


def test_drivers_that_disagree_are_shown_side_by_side() -> None:
    async def confess(context: ScenarioContext) -> None:
        context.note("witness", f"served by {context.driver.value}")

    def anything(_transcript: object) -> None:
        pass

    scenario = attrs.evolve(by_name("note-session"), script=confess, expect=anything)
    with pytest.raises(ScenarioFailed) as caught:
        check(scenario, 3)
    message = str(caught.value)
    assert "replay note-session --seed 3 --driver both" in message
    assert '-   "0.000000 served by trio"' in message
    assert '+   "0.000000 served by blocking"' in message


@pytest.mark.slow
@pytest.mark.parametrize("scenario", seeded(), ids=name)
def test_a_thousand_seeds_of_faults(scenario: Scenario) -> None:
    for seed in SWEEP:
        check(scenario, seed)
