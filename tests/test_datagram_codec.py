"""The datagram codec: a server's answer to one datagram, and a client's UDP session.

Answers are checked byte by byte against the wire contract, over arbitrary
bytes. The session is driven with explicit times (no clock, no sockets):
datagrams are lost, doubled, reordered and delayed past their timeouts by
hand, and by a seeded simulated network whose every datagram must be
accounted for exactly once.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_echo.codec import (
    MAX_PIECE,
    MAX_REPLY_DATAGRAM,
    SERVER_GREETING,
    Arrival,
    DatagramSession,
    answer_datagram,
    request_datagram,
)
from trio_echo.config import WireProtocol
from trio_echo.errors import ConfigError, LocalProtocolError
from trio_echo.wire import CONVERSATIONAL

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ECHO, REPLY, GREETING = WireProtocol.ECHO, WireProtocol.REPLY, WireProtocol.GREETING
EVERY_BYTE = bytes(range(256))


def is_printable_ascii(text: str) -> bool:
    return all(0x20 <= ord(char) < 0x7F for char in text)


# --- answer_datagram ------------------------------------------------------------


@FAST
@given(data=st.binary(max_size=1000))
def test_reply_datagrams_are_prefixed_bounded_pieces_of_the_whole_input(data: bytes) -> None:
    answers = answer_datagram(REPLY, data)
    assert all(answer.startswith(b"Re:") for answer in answers)
    assert all(len(answer) <= MAX_REPLY_DATAGRAM == 127 for answer in answers)
    assert b"".join(answer[3:] for answer in answers) == data
    assert len(answers) == max(1, math.ceil(len(data) / MAX_PIECE))
    assert all(len(answer) == 127 for answer in answers[:-1]), "only the last piece is short"


@FAST
@given(data=st.binary(max_size=1000))
def test_echo_sends_the_datagram_back_whole_and_greeting_sends_the_greeting(data: bytes) -> None:
    assert answer_datagram(ECHO, data) == [data]
    assert answer_datagram(GREETING, data) == [SERVER_GREETING]


def test_reply_to_every_byte_value_byte_by_byte() -> None:
    assert answer_datagram(REPLY, EVERY_BYTE) == [
        b"Re:" + EVERY_BYTE[:124],
        b"Re:" + EVERY_BYTE[124:248],
        b"Re:" + EVERY_BYTE[248:],
    ]


@pytest.mark.parametrize(
    ("size", "lengths"), [(1, [4]), (124, [127]), (125, [127, 4]), (248, [127, 127])]
)
def test_reply_piece_boundaries(size: int, lengths: list[int]) -> None:
    assert [len(answer) for answer in answer_datagram(REPLY, b"x" * size)] == lengths


def test_an_empty_datagram_is_answered() -> None:
    assert answer_datagram(ECHO, b"") == [b""]
    assert answer_datagram(REPLY, b"") == [b"Re:"]
    assert answer_datagram(GREETING, b"") == [SERVER_GREETING]


def test_a_greeting_request_is_a_line_and_others_go_as_they_are() -> None:
    assert request_datagram(GREETING, b"Hello from client") == b"Hello from client\n"
    assert request_datagram(ECHO, b"a\x00b") == b"a\x00b"
    assert request_datagram(REPLY, b"") == b""


# --- the session, step by step -----------------------------------------------------


def session(protocol: WireProtocol, messages: Iterable[bytes], **limits: Any) -> DatagramSession:
    """A session with a 1 s timeout and 2 retries unless *limits* say otherwise."""
    return DatagramSession(protocol, messages, **{"timeout": 1.0, "retries": 2, **limits})


def test_lockstep_sends_the_next_message_only_once_the_previous_is_answered() -> None:
    tracker = session(ECHO, [b"one", b"two"])
    assert not tracker.done
    assert tracker.next_send(0.0) == (0, b"one")
    assert tracker.next_send(0.0) is None
    assert tracker.next_deadline() == 1.0
    assert tracker.receive(b"one", 0.5) is Arrival.ANSWERED
    assert tracker.next_send(0.5) == (1, b"two")
    assert tracker.receive(b"two", 0.75) is Arrival.ANSWERED
    assert tracker.next_send(0.75) is None
    assert tracker.done
    assert tracker.next_deadline() is None
    report = tracker.report()
    assert (report.sent, report.answered, report.lost, report.in_flight) == (2, 2, 0, 0)
    assert (report.datagrams_sent, report.datagrams_received) == (2, 2)
    assert [outcome.round_trip for outcome in report.outcomes] == [0.5, 0.25]
    assert (report.round_trip_min, report.round_trip_mean, report.round_trip_max) == (
        0.25,
        0.375,
        0.5,
    )


def test_an_empty_message_is_a_message() -> None:
    tracker = session(REPLY, [b""])
    assert tracker.next_send(0.0) == (0, b"")
    assert tracker.receive(b"Re:", 0.5) is Arrival.ANSWERED
    assert tracker.done


def test_a_lost_message_is_retried_then_given_up_and_its_late_answer_counted() -> None:
    tracker = session(ECHO, [b"a", b"b"], timeout=1.0, retries=2)
    assert tracker.next_send(0.0) == (0, b"a")
    assert tracker.next_send(0.99) is None
    assert tracker.next_send(1.0) == (0, b"a")
    assert tracker.next_deadline() == 2.0
    assert tracker.next_send(2.0) == (0, b"a")
    assert tracker.next_send(2.5) is None
    assert tracker.next_send(3.0) == (1, b"b"), "message 0 given up, message 1 goes"
    (lost,) = tracker.take_outcomes()
    assert (lost.index, lost.answered, lost.sends, lost.sent_at, lost.round_trip) == (
        0,
        False,
        3,
        0.0,
        None,
    )
    assert tracker.receive(b"a", 3.5) is Arrival.LATE
    assert tracker.receive(b"a", 3.6) is Arrival.REDUNDANT
    assert tracker.receive(b"a", 3.7) is Arrival.REDUNDANT
    assert tracker.receive(b"a", 3.8) is Arrival.DUPLICATE, "three sends explain three copies"
    assert tracker.receive(b"b", 3.9) is Arrival.ANSWERED
    report = tracker.report()
    assert (report.answered, report.lost, report.late) == (1, 1, 1)
    assert (report.redundant, report.duplicated, report.wrong) == (2, 1, 0)
    assert report.datagrams_sent == 4


def test_an_answer_after_a_retry_is_timed_from_the_retry() -> None:
    tracker = session(ECHO, [b"a"], timeout=1.0, retries=1)
    tracker.next_send(0.0)
    assert tracker.next_send(1.0) == (0, b"a")
    assert tracker.receive(b"a", 1.25) is Arrival.ANSWERED
    (outcome,) = tracker.take_outcomes()
    assert (outcome.answered, outcome.sends, outcome.round_trip) == (True, 2, 0.25)
    assert tracker.receive(b"a", 1.5) is Arrival.REDUNDANT
    assert tracker.receive(b"a", 1.5) is Arrival.DUPLICATE


def test_an_answer_at_exactly_the_last_deadline_is_late() -> None:
    tracker = session(ECHO, [b"a"], timeout=1.0, retries=0)
    tracker.next_send(0.0)
    assert tracker.receive(b"a", 1.0) is Arrival.LATE
    assert tracker.done
    assert tracker.report().late == 1


def test_a_doubled_answer_is_a_duplicate() -> None:
    tracker = session(ECHO, [b"a"])
    tracker.next_send(0.0)
    assert tracker.receive(b"a", 0.1) is Arrival.ANSWERED
    assert tracker.receive(b"a", 0.2) is Arrival.DUPLICATE
    assert tracker.report().duplicated == 1


def test_reply_pieces_may_arrive_in_any_order() -> None:
    message = EVERY_BYTE + b"tail"
    tracker = session(REPLY, [message])
    tracker.next_send(0.0)
    first, second, third = answer_datagram(REPLY, message)
    assert tracker.receive(third, 0.1) is Arrival.PIECE
    assert tracker.receive(first, 0.2) is Arrival.PIECE
    assert tracker.receive(first, 0.3) is Arrival.DUPLICATE
    assert tracker.receive(second, 0.4) is Arrival.ANSWERED
    (outcome,) = tracker.take_outcomes()
    assert outcome.round_trip == 0.4, "timed to the whole answer"


def test_identical_reply_pieces_are_counted_not_merged() -> None:
    message = b"a" * (2 * MAX_PIECE)
    piece = b"Re:" + b"a" * MAX_PIECE
    tracker = session(REPLY, [message])
    tracker.next_send(0.0)
    assert tracker.receive(piece, 0.1) is Arrival.PIECE
    assert tracker.receive(piece, 0.2) is Arrival.ANSWERED
    assert tracker.receive(piece, 0.3) is Arrival.DUPLICATE


def test_wrong_datagrams_are_counted_and_a_bounded_escaped_sample_kept() -> None:
    tracker = session(REPLY, [b"abc"], wrong_samples=2)
    tracker.next_send(0.0)
    assert tracker.receive(b"abc", 0.1) is Arrival.WRONG, "an echo does not answer reply"
    assert tracker.receive(b"Re:ab", 0.2) is Arrival.WRONG, "a cut piece"
    assert tracker.receive(b"\x1b[2J\r\n", 0.3) is Arrival.WRONG
    assert tracker.receive(b"Re:abc", 0.4) is Arrival.ANSWERED
    report = tracker.report()
    assert report.wrong == 3
    assert report.wrong_samples == ('"abc"', '"Re:ab"')


def test_the_wrong_sample_is_escaped() -> None:
    tracker = session(ECHO, [b"a"])
    tracker.next_send(0.0)
    tracker.receive(b"\x1b[2J\r\n\x00\xff", 0.1)
    (sample,) = tracker.report().wrong_samples
    assert is_printable_ascii(sample)
    assert sample == '"\\x1b[2J\\r\\n\\x00\\xff"'


def test_identical_messages_are_answered_oldest_first() -> None:
    tracker = session(ECHO, [b"x", b"x", b"y"], window=3)
    assert [tracker.next_send(0.0) for _ in range(4)] == [(0, b"x"), (1, b"x"), (2, b"y"), None]
    assert tracker.receive(b"x", 0.5) is Arrival.ANSWERED
    assert tracker.receive(b"y", 0.5) is Arrival.ANSWERED
    assert tracker.receive(b"x", 0.75) is Arrival.ANSWERED
    assert [(o.index, o.round_trip) for o in tracker.take_outcomes()] == [
        (0, 0.5),
        (2, 0.5),
        (1, 0.75),
    ]


def test_a_waiting_message_takes_an_answer_before_an_identical_given_up_one() -> None:
    tracker = session(ECHO, [b"x", b"x"], timeout=1.0, retries=0)
    tracker.next_send(0.0)
    assert tracker.next_send(1.0) == (1, b"x")
    assert tracker.receive(b"x", 1.5) is Arrival.ANSWERED
    assert tracker.receive(b"x", 1.6) is Arrival.LATE
    report = tracker.report()
    assert (report.answered, report.lost, report.late) == (1, 1, 1)


def test_the_greeting_line_answers_the_oldest_waiting_message() -> None:
    tracker = session(GREETING, [b"Hello from client"] * 3, window=3)
    sent = [tracker.next_send(0.0) for _ in range(3)]
    assert sent == [(i, b"Hello from client\n") for i in range(3)]
    for when in (0.25, 0.5, 0.75):
        assert tracker.receive(SERVER_GREETING, when) is Arrival.ANSWERED
    assert [(o.index, o.round_trip) for o in tracker.take_outcomes()] == [
        (0, 0.25),
        (1, 0.5),
        (2, 0.75),
    ]
    assert tracker.receive(SERVER_GREETING, 0.8) is Arrival.DUPLICATE
    assert tracker.receive(b"Hello From Server", 0.9) is Arrival.WRONG


def test_the_window_bounds_messages_in_flight() -> None:
    tracker = session(ECHO, [bytes([i]) for i in range(5)], window=2)
    assert [tracker.next_send(0.0) for _ in range(3)] == [(0, b"\x00"), (1, b"\x01"), None]
    tracker.receive(b"\x01", 0.1)
    assert tracker.next_send(0.1) == (2, b"\x02")
    assert tracker.next_send(0.1) is None
    assert tracker.report().in_flight == 2


def test_retries_go_before_new_messages_and_deadlines_follow_the_last_send() -> None:
    tracker = session(ECHO, [b"a", b"b", b"c"], window=2, timeout=1.0, retries=1)
    tracker.next_send(0.0)
    tracker.next_send(0.5)
    assert tracker.next_deadline() == 1.0
    assert tracker.next_send(1.0) == (0, b"a")
    assert tracker.next_deadline() == 1.5
    assert tracker.next_send(1.5) == (1, b"b")
    assert tracker.next_send(2.0) == (2, b"c"), "a given up at its second deadline"
    assert tracker.next_deadline() == 2.5


def test_an_endless_stream_holds_only_what_is_in_flight() -> None:
    pulled = 0

    def messages() -> Iterator[bytes]:
        nonlocal pulled
        for i in itertools.count():
            pulled += 1
            yield b"%d" % (i % 50)

    window, history = 4, 8
    tracker = DatagramSession(
        ECHO, messages(), timeout=1.0, retries=0, window=window, history=history
    )
    now, answered = 0.0, 0
    for step in range(5000):
        now += 0.001
        while (send := tracker.next_send(now)) is not None:
            index, datagram = send
            if index % 7 != 3:
                tracker.receive(datagram, now)
        answered += sum(o.answered for o in tracker.take_outcomes())
        assert pulled <= tracker.report().sent + 1, "read one message ahead, no more"
        if step % 500 == 0:
            assert tracker.report().in_flight <= window
            assert len(tracker._settled) <= history
            assert len(tracker._by_answer) <= window + history
    report = tracker.report()
    assert report.answered == answered
    assert report.answered + report.lost + report.in_flight == report.sent
    assert report.lost > 0 and report.wrong == 0
    assert report.outcomes == ()


def test_time_cannot_go_back() -> None:
    tracker = session(ECHO, [b"a"])
    tracker.next_send(5.0)
    with pytest.raises(LocalProtocolError, match="go back"):
        tracker.receive(b"a", 4.0)
    with pytest.raises(LocalProtocolError):
        tracker.next_send(math.nan)


@pytest.mark.parametrize(
    ("limits", "named"),
    [
        ({"timeout": 0}, "timeout"),
        ({"timeout": -1.0}, "timeout"),
        ({"timeout": math.inf}, "timeout"),
        ({"timeout": math.nan}, "timeout"),
        ({"retries": -1}, "retries"),
        ({"retries": True}, "retries"),
        ({"retries": 1.5}, "retries"),
        ({"window": 0}, "window"),
        ({"history": -1}, "history"),
        ({"wrong_samples": -1}, "wrong_samples"),
    ],
)
def test_session_limits_are_validated(limits: dict[str, float], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        session(ECHO, [b"a"], **limits)


def test_messages_must_be_bytes() -> None:
    with pytest.raises(ConfigError, match="bytes"):
        DatagramSession(ECHO, ["text"], timeout=1.0, retries=0)  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="protocol"):
        DatagramSession("echo", [b"a"], timeout=1.0, retries=0)  # type: ignore[arg-type]


# --- the session over a simulated network ----------------------------------------


def simulate(
    protocol: WireProtocol,
    messages: list[bytes],
    *,
    seed: int,
    drop: float,
    double: float,
    max_delay: float,
    window: int,
    retries: int,
) -> tuple[DatagramSession, int, int]:
    """Run a session against a server over a lossy, doubling, reordering network.

    Returns the session, the datagrams delivered to it and the extra copies
    the network made. Times are multiples of 1/64 s, exact in binary.
    """
    rng = random.Random(seed)
    tracker = DatagramSession(
        protocol, messages, timeout=1.0, retries=retries, window=window, history=1000
    )
    in_transit: list[tuple[float, int, bytes]] = []
    delivered = doubled = 0
    now, order = 0.0, itertools.count()
    while not tracker.done or in_transit:
        while (send := tracker.next_send(now)) is not None:
            _index, request = send
            for answer in answer_datagram(protocol, request):
                if rng.random() < drop:
                    continue
                copies = 2 if rng.random() < double else 1
                doubled += copies - 1
                for _copy in range(copies):
                    delay = rng.randint(1, int(max_delay * 64)) / 64
                    in_transit.append((now + delay, next(order), answer))
        in_transit.sort()
        deadline = tracker.next_deadline()
        if in_transit and (deadline is None or in_transit[0][0] <= deadline):
            now, _order, answer = in_transit.pop(0)
            tracker.receive(answer, now)
            delivered += 1
        elif deadline is not None:
            now = deadline
    return tracker, delivered, doubled


small_messages = st.lists(
    st.one_of(st.sampled_from([b"", b"x", b"Re:", b"x" * 130]), st.binary(max_size=300)),
    min_size=1,
    max_size=12,
)


@FAST
@given(
    protocol=st.sampled_from(list(CONVERSATIONAL)),
    messages=small_messages,
    seed=st.integers(0, 2**32),
    window=st.integers(1, 4),
    double=st.sampled_from([0.0, 0.3]),
)
def test_a_network_that_loses_nothing_in_time_gets_every_message_answered(
    protocol: WireProtocol, messages: list[bytes], seed: int, window: int, double: float
) -> None:
    tracker, delivered, doubled = simulate(
        protocol,
        messages,
        seed=seed,
        drop=0.0,
        double=double,
        max_delay=0.9,
        window=window,
        retries=2,
    )
    report = tracker.report()
    assert report.answered == report.sent == len(messages)
    assert report.lost == report.late == report.wrong == report.redundant == 0
    assert report.duplicated == doubled
    assert report.datagrams_received == delivered
    assert all(
        o.answered and o.round_trip is not None and o.round_trip < 1 for o in report.outcomes
    )


@FAST
@given(
    protocol=st.sampled_from(list(CONVERSATIONAL)),
    messages=small_messages,
    seed=st.integers(0, 2**32),
    window=st.integers(1, 4),
    retries=st.integers(0, 2),
)
def test_every_datagram_of_a_bad_network_is_accounted_for_once(
    protocol: WireProtocol, messages: list[bytes], seed: int, window: int, retries: int
) -> None:
    tracker, delivered, _doubled = simulate(
        protocol,
        messages,
        seed=seed,
        drop=0.3,
        double=0.3,
        max_delay=2.5,
        window=window,
        retries=retries,
    )
    report = tracker.report()
    assert tracker.done
    assert report.answered + report.lost == report.sent == len(messages)
    assert 0 <= report.late <= report.lost
    assert report.wrong == 0, "every datagram answers something sent"
    assert report.datagrams_received == delivered
    assert report.datagrams_sent <= len(messages) * (retries + 1)
    assert sorted(o.index for o in report.outcomes) == list(range(len(messages)))
    assert all(o.sends <= retries + 1 for o in report.outcomes)
    for outcome in report.outcomes:
        assert (outcome.round_trip is not None) == outcome.answered
