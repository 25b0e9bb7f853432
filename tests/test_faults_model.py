"""The fault model, sans I/O: the spec text read and written, and the seeded plans."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_echo.errors import ConfigError
from trio_echo.faults import (
    Fault,
    FaultKind,
    FaultSpec,
    merge_faults,
    parse_faults,
    plan_connection,
    plan_datagram,
)
from trio_echo.faults.plan import Ending
from trio_echo.faults.spec import VALUES

_VALUES = {
    "duration": st.integers(1, 100_000).map(lambda ms: ms / 1000),
    "range": st.tuples(st.integers(1, 64), st.integers(0, 64)).map(lambda p: (p[0], p[0] + p[1])),
    "size": st.integers(1, 1 << 30),
    "chance": st.integers(0, 1000).map(lambda n: n / 1000),
}
_SHAPE = {
    FaultKind.DELAY: "duration",
    FaultKind.JITTER: "duration",
    FaultKind.STALL: "duration",
    FaultKind.SLOW_CLOSE: "duration",
    FaultKind.SPLIT: "range",
    FaultKind.BANDWIDTH: "size",
    FaultKind.RESET_AFTER: "size",
    FaultKind.CLOSE_AFTER: "size",
    FaultKind.DROP: "chance",
    FaultKind.DUPLICATE: "chance",
    FaultKind.REORDER: "chance",
}


@st.composite
def faults(draw: st.DrawFn) -> FaultSpec:
    kinds = draw(st.lists(st.sampled_from(list(FaultKind)), min_size=1, unique=True))
    chosen = []
    for kind in kinds:
        value = draw(_VALUES[_SHAPE[kind]]) if VALUES[kind] is not None else None
        chance: float = draw(st.one_of(st.just(1.0), st.integers(0, 1000).map(lambda n: n / 1000)))
        chosen.append(Fault(kind, value, chance))
    return FaultSpec(chosen)


@given(faults())
def test_str_of_a_spec_parses_back_to_it(spec: FaultSpec) -> None:
    assert parse_faults(str(spec)) == spec


def test_the_documented_example_reads_as_written() -> None:
    spec = parse_faults("delay=20ms,jitter=5ms,split=1-16@0.5,bandwidth=64KiB/s,slow-close=2s")
    assert spec.get(FaultKind.DELAY) == Fault(FaultKind.DELAY, 0.02)
    assert spec.get(FaultKind.SPLIT) == Fault(FaultKind.SPLIT, (1, 16), 0.5)
    assert spec.get(FaultKind.BANDWIDTH) == Fault(FaultKind.BANDWIDTH, 65536)
    assert str(spec) == "delay=20ms,jitter=5ms,split=1-16@0.5,bandwidth=64KiB/s,slow-close=2s"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        ("delay=20ms,,split=1", "empty item"),
        ("latency=20ms", "unknown fault 'latency'"),
        ("delay", "delay needs ="),
        ("delay=20", "is not a duration"),
        ("delay=-1s", "is not a duration"),
        ("delay=1e9s", "is not a duration"),
        ("split=0-4", "is not a piece size range"),
        ("split=9-2", "is not a piece size range"),
        ("bandwidth=64KiB", "is not a rate"),
        ("bandwidth=0B/s", "is not a rate"),
        ("reset-after=0", "is not a byte count"),
        ("drop=1.5", "is not a probability"),
        ("timeout=5s", "takes no value"),
        ("delay=1s@2", "chance '2' is not a probability"),
        ("delay=1s@", "chance '' is not a probability"),
        ("delay=1s,delay=2s", "given twice"),
        ("delay=\x1b[31m", "\\x1b[31m"),
        ("\udcff", "\\xff"),
    ],
)
def test_a_malformed_spec_is_one_line_quoting_it(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_faults(text)
    message = str(caught.value)
    assert "\n" not in message
    assert "\x1b" not in message
    assert fragment in message


def test_faults_given_separately_merge_and_a_kind_twice_is_refused() -> None:
    merged = merge_faults([parse_faults("delay=1s"), parse_faults("split=2")])
    assert str(merged) == "delay=1s,split=2"
    assert merge_faults([]) is None
    with pytest.raises(ConfigError, match="given twice"):
        merge_faults([parse_faults("delay=1s"), parse_faults("delay=2s")])


# -- plans ---------------------------------------------------------------------------------------

HALF = parse_faults("split=1-8@0.5,delay=10ms@0.5,jitter=5ms,reset-after=100@0.3")


def _descriptions(seed: int, keys: list[str]) -> dict[str, str | None]:
    return {key: _describe(seed, key) for key in keys}


def _describe(seed: int, key: str) -> str | None:
    plan = plan_connection(HALF, seed, key)
    return plan.description if plan is not None else None


def test_the_same_seed_gives_the_same_assignment_in_any_order() -> None:
    keys = [str(n) for n in range(1, 101)]
    forwards = _descriptions(7, keys)
    backwards = _descriptions(7, list(reversed(keys)))
    assert forwards == backwards
    assert _descriptions(8, keys) != forwards


def test_a_chance_gives_some_connections_the_fault_and_not_others() -> None:
    got = [_describe(1, str(n)) for n in range(1, 201)]
    assert None in got
    assert any(text is not None and "split" in text for text in got)
    assert any(text is not None and "split" not in text for text in got)
    assert plan_connection(parse_faults("delay=1s@0"), 1, "1") is None
    assert plan_connection(None, 1, "1") is None


def test_a_connection_plan_schedules_the_same_writes_for_the_same_key() -> None:
    def schedule(key: str) -> list[object]:
        plan = plan_connection(parse_faults("split=1-8,delay=10ms,jitter=5ms"), 3, key)
        assert plan is not None
        return [plan.schedule(bytes(50)) for _ in range(3)]

    assert schedule("4") == schedule("4")
    assert schedule("4") != schedule("5")


def test_split_pieces_stay_in_range_and_keep_every_byte() -> None:
    plan = plan_connection(parse_faults("split=3-5"), 0, "1")
    assert plan is not None
    data = bytes(range(200))
    steps, ending = plan.schedule(data)
    assert ending is None
    assert b"".join(step.data for step in steps) == data
    assert all(3 <= len(step.data) <= 5 for step in steps[:-1])
    assert len(steps) > 1


def test_delay_with_jitter_stays_within_its_spread() -> None:
    plan = plan_connection(parse_faults("delay=20ms,jitter=5ms,split=1"), 0, "1")
    assert plan is not None
    steps, _ = plan.schedule(bytes(100))
    waits = [step.wait for step in steps]
    assert all(0.015 <= wait <= 0.025 for wait in waits)
    assert len(set(waits)) > 1


def test_stall_holds_only_the_first_write() -> None:
    plan = plan_connection(parse_faults("stall=5s"), 0, "1")
    assert plan is not None
    assert [step.wait for step in plan.schedule(b"ab")[0]] == [5.0]
    assert [step.wait for step in plan.schedule(b"cd")[0]] == [0.0]


def test_bandwidth_slices_writes_and_paces_them() -> None:
    plan = plan_connection(parse_faults("bandwidth=100B/s"), 0, "1")
    assert plan is not None
    steps, _ = plan.schedule(bytes(35))
    assert [len(step.data) for step in steps] == [10, 10, 10, 5]
    assert plan.pace(10) == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("text", "ending"), [("reset-after=10", Ending.RESET), ("close-after=10", Ending.CLOSE)]
)
def test_a_byte_limit_cuts_the_write_that_reaches_it(text: str, ending: Ending) -> None:
    plan = plan_connection(parse_faults(text), 0, "1")
    assert plan is not None
    assert plan.schedule(bytes(6)) == ([_step(6)], None)
    steps, end = plan.schedule(bytes(6))
    assert [len(step.data) for step in steps] == [4]
    assert end is ending


def _step(size: int) -> object:
    from trio_echo.faults.plan import Step

    return Step(0.0, bytes(size))


def test_close_before_reply_and_timeout_send_nothing() -> None:
    closing = plan_connection(parse_faults("close-before-reply"), 0, "1")
    holding = plan_connection(parse_faults("timeout"), 0, "1")
    assert closing is not None and holding is not None
    assert closing.schedule(b"hi") == ([], Ending.CLOSE)
    assert holding.schedule(b"hi") == ([], Ending.HANG)


def test_datagram_faults_are_decided_per_datagram_and_repeatably() -> None:
    spec = parse_faults("drop=0.3,duplicate=0.3,reorder=0.3")
    plans = [plan_datagram(spec, 2, str(n)) for n in range(200)]
    assert plans == [plan_datagram(spec, 2, str(n)) for n in range(200)]
    copies = {plan.copies if plan is not None else 1 for plan in plans}
    assert copies == {0, 1, 2}
    assert any(plan is not None and plan.hold for plan in plans)
    assert plan_connection(spec, 2, "1") is None  # datagram faults leave streams alone
