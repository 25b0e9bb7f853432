"""The measuring session: several messages in flight, each reply checked byte for byte.

Sans-IO: the tests play the server, splitting its reads and its replies
every way a TCP connection may, and check that every valid split is
accepted with each reply completed by the read holding its last byte,
and that a wrong byte is refused wherever it falls.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_echo.codec.reply import reply_for
from trio_echo.config import ClientConfig, WireProtocol
from trio_echo.errors import IncompleteReply, UnexpectedData, WrongReply
from trio_echo.session import MeasuringSession


def measuring(
    message: str | None = None, *, count: int = 7, protocol: WireProtocol = WireProtocol.REPLY
) -> tuple[MeasuringSession, list[float]]:
    latencies: list[float] = []

    def record(seconds: float, times: int) -> None:
        latencies.extend([seconds] * times)

    config = ClientConfig(protocol=protocol, message=message, count=count)
    return MeasuringSession(config, record), latencies


def cut(data: bytes, points: list[int]) -> list[bytes]:
    """*data* in pieces, cut at *points* (positions into it, any order, repeats ignored)."""
    edges = sorted({0, len(data), *(p % (len(data) + 1) for p in points)})
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def server_replies(messages: list[bytes], reads: list[int], protocol: WireProtocol) -> bytes:
    """What a server sends for *messages*, having read their bytes in chunks cut at *reads*."""
    stream = b"".join(messages)
    if protocol is WireProtocol.ECHO:
        return stream
    return b"".join(reply_for(chunk) for chunk in cut(stream, reads))


def feed(session: MeasuringSession, pieces: list[bytes]) -> list[int]:
    """Replies completed by each piece, fed at times 1, 2, 3, ..."""
    return [session.receive(piece, float(time)) for time, piece in enumerate(pieces, 1)]


def test_lockstep_reply_is_timed_from_its_send() -> None:
    session, latencies = measuring()
    assert session.take(1, 10.0) == b"0 - Send Message"
    assert session.receive(b"Re:0 - Send", 10.5) == 0
    assert session.partial_reply == b"Re:0 - Send"
    assert session.receive(b" Message", 10.25 + 0.5) == 1
    assert latencies == [0.75]
    assert (session.round_trips, session.in_flight, session.done) == (1, 0, False)


def test_a_count_run_is_done_after_its_last_reply() -> None:
    session, _ = measuring("x{i}", count=2)
    wire = session.take(5, 0.0)
    assert wire == b"x0x1"
    assert session.take(1, 0.0) == b""
    assert session.receive(b"Re:x0x1", 1.0) == 2  # the server read both as one chunk
    assert session.done


def test_a_template_without_index_is_made_once() -> None:
    session, _ = measuring("same")
    first, second = session.take(1, 0.0), session.take(1, 0.0)
    assert first == second == b"same"
    assert first is second


@pytest.mark.parametrize("protocol", [WireProtocol.REPLY, WireProtocol.ECHO])
@given(
    reads=st.lists(st.integers(min_value=0, max_value=2000), max_size=8),
    writes=st.lists(st.integers(min_value=0, max_value=2000), max_size=8),
    template=st.sampled_from(["{i} - Send Message", "m" * 124, "R{i}Re:R" * 30, "abR", "{i}Re"]),
    batch=st.sampled_from([1, 5]),
)
def test_every_split_of_pipelined_replies_is_accepted(
    protocol: WireProtocol, reads: list[int], writes: list[int], template: str, batch: int
) -> None:
    session, latencies = measuring(template, count=5, protocol=protocol)
    messages = [session.take(batch, 0.0) for _ in range(0, 5, batch)]
    replies = server_replies(messages, reads, protocol)
    completed = feed(session, cut(replies, writes))
    assert sum(completed) == 5
    assert session.done
    assert len(latencies) == 5
    assert latencies == sorted(latencies)


@pytest.mark.parametrize("protocol", [WireProtocol.REPLY, WireProtocol.ECHO])
@given(
    reads=st.lists(st.integers(min_value=0, max_value=400), max_size=4),
    writes=st.lists(st.integers(min_value=0, max_value=400), max_size=4),
    wrong=st.integers(min_value=0, max_value=10_000),
    template=st.sampled_from(["{i} - Send Message", "m" * 130, "abR"]),
)
def test_a_wrong_byte_anywhere_is_a_wrong_reply(
    protocol: WireProtocol, reads: list[int], writes: list[int], wrong: int, template: str
) -> None:
    session, _ = measuring(template, count=3, protocol=protocol)
    messages = [session.take(1, 0.0) for _ in range(3)]
    replies = bytearray(server_replies(messages, reads, protocol))
    position = wrong % len(replies)
    replies[position] = ord("#")  # in no message, and not R, e or :
    with pytest.raises(WrongReply):
        feed(session, cut(bytes(replies), writes))


def test_a_reply_completes_when_its_last_byte_arrives() -> None:
    session, _ = measuring("ab{i}", count=3)
    session.take(3, 0.0)
    # The server read "ab0a" and then "b1ab2": pieces span messages.
    assert feed(session, [b"Re:ab0a", b"Re:b", b"1ab2"]) == [1, 0, 2]
    assert session.done


def test_after_a_split_reply_comparing_resumes() -> None:
    session, _ = measuring("ab{i}", count=4)
    session.take(2, 0.0)
    assert session.receive(b"Re:ab0ab1", 1.0) == 2  # one piece for both
    session.take(2, 1.0)
    assert session.receive(b"Re:ab2Re:ab3", 2.0) == 2
    assert session.done


def test_messages_sent_while_a_split_reply_is_read_are_followed_too() -> None:
    session, latencies = measuring("ab", count=8)
    assert session.take(4, 0.0) == b"abababab"
    assert session.receive(b"Re:abab", 1.0) == 2  # one piece for two: read, not compared
    assert session.take(2, 1.0) == b"abab"
    assert session.receive(b"Re:abRe:a", 2.0) == 1
    assert session.receive(b"babab", 3.0) == 3
    assert session.take(5, 3.0) == b"abab"
    assert session.receive(b"Re:abRe:ab", 4.0) == 2
    assert session.done
    assert latencies == [1.0, 1.0, 2.0, 3.0, 2.0, 2.0, 1.0, 1.0]


def test_an_echo_of_unasked_bytes_is_unexpected_data() -> None:
    session, _ = measuring("ab", count=1, protocol=WireProtocol.ECHO)
    session.take(1, 0.0)
    with pytest.raises(UnexpectedData):
        session.receive(b"abc", 1.0)


def test_reply_bytes_after_the_last_reply_are_unexpected() -> None:
    session, _ = measuring("ab", count=1)
    session.take(1, 0.0)
    with pytest.raises(UnexpectedData):
        session.receive(b"Re:abRe:", 1.0)


def test_a_close_before_the_whole_reply_is_an_incomplete_reply() -> None:
    session, _ = measuring("ab{i}")
    session.take(2, 0.0)
    session.receive(b"Re:ab0Re:a", 1.0)
    with pytest.raises(IncompleteReply, match="ab1"):
        session.receive(b"", 2.0)


def test_a_close_with_nothing_in_flight_completes_nothing() -> None:
    session, _ = measuring("ab", count=1)
    session.take(1, 0.0)
    assert session.receive(b"Re:ab", 1.0) == 1
    assert session.receive(b"", 2.0) == 0


def test_stop_sends_no_more_but_awaits_the_replies_in_flight() -> None:
    session, _ = measuring()
    session.take(2, 0.0)
    session.stop()
    assert session.take(1, 0.0) == b""
    assert not session.done
    assert session.receive(b"Re:0 - Send MessageRe:1 - Send Message", 1.0) == 2
    assert session.done


def test_memory_stays_within_the_messages_in_flight() -> None:
    session, latencies = measuring("{i}", count=100_000)
    session.take(4, 0.0)
    for index in range(4, 100_000):
        answered = session.receive(b"Re:" + str(index - 4).encode(), float(index))
        assert answered == 1
        session.take(answered, float(index))
        assert session.in_flight == 4
    assert session.round_trips == 100_000 - 4
    assert len(latencies) == session.round_trips


def test_timeout_errors_name_the_oldest_message_and_its_partial_reply() -> None:
    session, _ = measuring("ab{i}")
    session.take(2, 0.0)
    session.receive(b"Re:ab0Re:a", 1.0)
    error = session.timeout_error(30)
    assert isinstance(error, IncompleteReply)
    assert "got 4 bytes" in str(error) and '"ab1"' in str(error)
    assert "no reply" in str(measuring()[0].timeout_error(30))


def test_only_the_reply_and_echo_protocols_measure() -> None:
    with pytest.raises(ValueError, match="reply or echo"):
        MeasuringSession(ClientConfig(protocol=WireProtocol.GREETING))
