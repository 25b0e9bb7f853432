"""The sans-IO codec: every protocol, both sides, however the bytes are split.

TCP may cut a stream anywhere, so every conversation is fed whole, byte by
byte and at split points hypothesis picks, and must give the same result.
Replies of the ``reply`` protocol are judged by :func:`classify`, an oracle
written here straight from the wire contract (``Re:`` pieces of 1 to 124
bytes that add up to the message), independently of the codec's matcher.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_echo.codec import (
    MAX_PIECE,
    SERVER_GREETING,
    ClientCodec,
    Close,
    Discarded,
    EchoClient,
    EchoServer,
    GreetingClient,
    GreetingServer,
    Received,
    ReplyClient,
    ReplyMatcher,
    ReplyReceived,
    ReplyServer,
    Send,
    ServerCodec,
    ServerEvent,
    client_codec,
    reply_for,
    server_codec,
    server_codec_factory,
)
from trio_echo.codec.reply import (
    FIRST_READING,
    IN_PIECE,
    IN_PREFIX,
    NEW_PIECE,
    NEXT_REPLY,
    PAYLOAD,
    PREFIX,
    PREFIX_BYTE,
    PREFIX_END,
    TRANSITIONS,
    Input,
    Place,
    Reading,
    ReplyTracker,
    follow,
    inputs_for,
)
from trio_echo.config import WireProtocol
from trio_echo.errors import (
    IncompleteReply,
    LineTooLong,
    LocalProtocolError,
    RemoteProtocolError,
    UnexpectedData,
    WrongReply,
)
from trio_echo.wire import CONVERSATIONAL

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
"""Enough examples to find a split-dependent bug, few enough for a shared 2-core machine."""

EVERY_BYTE = bytes(range(256))
AWKWARD = b"\x00NUL\xff\xfe\xc3\x28 invalid \xed\xa0\x80 utf-8 \r\n\x1b[2J"
"""NUL, bytes that are never valid UTF-8, CR LF and a terminal escape."""


# --- feeding helpers ----------------------------------------------------------


def cut(data: bytes, points: Iterable[int]) -> list[bytes]:
    """*data* cut at *points*; points outside it or repeated are ignored, no chunk is empty."""
    inner = sorted({point for point in points if 0 < point < len(data)})
    edges = [0, *inner, len(data)]
    return [data[start:end] for start, end in itertools.pairwise(edges) if end > start]


def byte_by_byte(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


@st.composite
def chunkings(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """*data* cut at random points."""
    points = draw(st.lists(st.integers(0, len(data)), max_size=12))
    return cut(data, points)


def three_ways(data: bytes, draw: st.DataObject) -> dict[str, list[bytes]]:
    """*data* whole, byte by byte, and cut at random points."""
    return {
        "whole": [data],
        "bytes": byte_by_byte(data),
        "random": draw.draw(chunkings(data), label="chunks"),
    }


def feed_server(codec: ServerCodec, chunks: Sequence[bytes], *, eof: bool) -> list[ServerEvent]:
    events: list[ServerEvent] = []
    for chunk in chunks:
        events += codec.receive_data(chunk)
    if eof:
        events += codec.receive_eof()
    return events


def joined(events: Iterable[object], kind: type[Received] | type[Send]) -> bytes:
    return b"".join(event.data for event in events if isinstance(event, kind))


# --- the reply oracle -----------------------------------------------------------

COMPLETE, PARTIAL, WRONG = "complete", "partial", "wrong"


def classify(message: bytes, reply: bytes) -> str:
    """What the wire contract makes of *reply* as the answer to *message*.

    ``COMPLETE``: ``Re:p1 ... Re:pk`` with ``p1 + ... + pk == message`` and
    every piece 1 to 124 bytes. ``PARTIAL``: not that, but more bytes could
    make it so. ``WRONG``: no continuation can.
    """

    @functools.cache
    def from_piece_start(i: int, j: int) -> frozenset[str]:
        rest = reply[i:]
        if not rest:
            return frozenset({COMPLETE if j == len(message) and i > 0 else PARTIAL})
        if j == len(message) or not b"Re:".startswith(rest[:3]):
            return frozenset({WRONG})
        if len(rest) <= 3:
            return frozenset({PARTIAL})
        body = rest[3:]
        outcomes: set[str] = set()
        for size in range(1, min(MAX_PIECE, len(body), len(message) - j) + 1):
            if body[size - 1] != message[j + size - 1]:
                break
            outcomes |= from_piece_start(i + 3 + size, j + size)
        return frozenset(outcomes or {WRONG})

    outcomes = from_piece_start(0, 0)
    return next(verdict for verdict in (COMPLETE, PARTIAL, WRONG) if verdict in outcomes)


def build_reply(message: bytes, sizes: Sequence[int]) -> bytes:
    """The ``Re:`` reply whose payload pieces have *sizes*."""
    assert sum(sizes) == len(message)
    pieces, start = [], 0
    for size in sizes:
        pieces.append(b"Re:" + message[start : start + size])
        start += size
    return b"".join(pieces)


@st.composite
def piece_sizes(draw: st.DrawFn, length: int, largest: int = MAX_PIECE) -> list[int]:
    """A random way to cut *length* payload bytes into pieces of 1 to *largest* bytes."""
    sizes: list[int] = []
    while (left := length - sum(sizes)) > 0:
        sizes.append(draw(st.integers(1, min(largest, left))))
    return sizes


messages = st.one_of(
    st.binary(min_size=1, max_size=300),
    st.lists(
        st.sampled_from([b"Re:", b"R", b"e", b":", b"Re", b"e:", b"x", b"\x00", b"\xff"]),
        min_size=1,
        max_size=80,
    ).map(b"".join),
)
"""Any bytes, and messages made to look like replies themselves."""

plain_messages = st.binary(min_size=1, max_size=300).map(
    lambda data: bytes(byte for byte in data if byte not in b"Re:") or b"x"
)
"""Messages without the bytes of ``Re:``, whose replies parse one way only."""


def test_oracle_agrees_with_hand_made_cases() -> None:
    assert classify(b"abc", b"Re:abc") == COMPLETE
    assert classify(b"abc", b"Re:aRe:bRe:c") == COMPLETE
    assert classify(b"abc", b"Re:ab") == PARTIAL
    assert classify(b"abc", b"Re:abcRe:") == WRONG
    assert classify(b"abc", b"Re:") == PARTIAL
    assert classify(b"abc", b"Re:Re:abc") == WRONG
    assert classify(b"Re:", b"Re:Re:") == COMPLETE
    long = b"x" * (MAX_PIECE + 1)
    assert classify(long, b"Re:" + long) == WRONG
    assert classify(long, b"Re:" + long[:MAX_PIECE] + b"Re:x") == COMPLETE


# --- reply: server side -----------------------------------------------------------


@FAST
@given(data=st.binary(min_size=1, max_size=600), draw=st.data())
def test_reply_server_answers_every_byte_however_split(data: bytes, draw: st.DataObject) -> None:
    for way, chunks in three_ways(data, draw).items():
        events = feed_server(ReplyServer(), chunks, eof=True)
        assert events[-1] == Close(), way
        assert joined(events, Received) == data, way
        assert classify(data, joined(events, Send)) == COMPLETE, way
        for received, sent in zip(events[0:-1:2], events[1:-1:2], strict=True):
            assert isinstance(received, Received) and isinstance(sent, Send), way
            assert classify(received.data, sent.data) == COMPLETE, way


@FAST
@given(data=plain_messages, draw=st.data())
def test_reply_server_pieces_hold_1_to_124_bytes(data: bytes, draw: st.DataObject) -> None:
    for way, chunks in three_ways(data, draw).items():
        sent = joined(feed_server(ReplyServer(), chunks, eof=True), Send)
        head, *pieces = sent.split(b"Re:")
        assert head == b"", way
        assert all(1 <= len(piece) <= MAX_PIECE for piece in pieces), way
        assert b"".join(pieces) == data, way


def test_reply_server_keeps_the_seed_answer_and_its_127_byte_bound() -> None:
    codec = ReplyServer()
    assert codec.receive_data(b"0 - Send Message") == [
        Received(b"0 - Send Message"),
        Send(b"Re:0 - Send Message"),
    ]
    assert reply_for(b"x" * MAX_PIECE) == b"Re:" + b"x" * MAX_PIECE
    assert len(reply_for(b"x" * MAX_PIECE)) == 127
    assert reply_for(b"x" * (MAX_PIECE + 1)) == b"Re:" + b"x" * MAX_PIECE + b"Re:x"
    assert codec.receive_eof() == [Close()]
    assert codec.finished


@pytest.mark.parametrize("data", [EVERY_BYTE, AWKWARD, b"\x00", b"\n"], ids=repr)
def test_reply_and_echo_servers_are_byte_transparent(data: bytes) -> None:
    assert ReplyServer().receive_data(data) == [Received(data), Send(reply_for(data))]
    assert EchoServer().receive_data(data) == [Received(data), Send(data)]


# --- echo: server side ------------------------------------------------------------


@FAST
@given(data=st.binary(min_size=1, max_size=600), draw=st.data())
def test_echo_server_sends_back_every_byte_however_split(data: bytes, draw: st.DataObject) -> None:
    for way, chunks in three_ways(data, draw).items():
        events = feed_server(EchoServer(), chunks, eof=True)
        expected: list[ServerEvent] = []
        for chunk in chunks:
            expected += [Received(chunk), Send(chunk)]
        assert events == [*expected, Close()], way
        assert joined(events, Send) == joined(events, Received) == data, way


# --- greeting: server side ----------------------------------------------------------

lines = st.binary(max_size=300).map(lambda data: data.replace(b"\n", b""))


@FAST
@given(line=lines, draw=st.data())
def test_greeting_server_gives_the_same_events_however_split(
    line: bytes, draw: st.DataObject
) -> None:
    for way, chunks in three_ways(line + b"\n", draw).items():
        codec = GreetingServer(1000)
        for chunk in chunks[:-1]:
            assert codec.receive_data(chunk) == [], way
        assert codec.receive_data(chunks[-1]) == [
            Received(line),
            Send(SERVER_GREETING),
            Close(),
        ], way
        assert codec.finished, way


@FAST
@given(line=lines, rest=st.binary(min_size=1, max_size=100))
def test_greeting_server_reports_bytes_after_the_line(line: bytes, rest: bytes) -> None:
    codec = GreetingServer(1000)
    assert codec.receive_data(line + b"\n" + rest) == [
        Received(line),
        Send(SERVER_GREETING),
        Discarded(len(rest)),
        Close(),
    ]
    with pytest.raises(LocalProtocolError):
        codec.receive_data(b"more")


@FAST
@given(partial=lines, draw=st.data())
def test_greeting_server_answers_a_partial_line_at_eof(partial: bytes, draw: st.DataObject) -> None:
    chunks = draw.draw(chunkings(partial)) if partial else []
    events = feed_server(GreetingServer(1000), chunks, eof=True)
    assert events == [Received(partial), Send(SERVER_GREETING), Close()]


def test_greeting_server_is_byte_transparent() -> None:
    line = EVERY_BYTE.replace(b"\n", b"")
    events = GreetingServer(1000).receive_data(line + b"\n")
    assert events[0] == Received(line)


@FAST
@given(limit=st.integers(1, 200), draw=st.data())
def test_greeting_line_limit_is_exact(limit: int, draw: st.DataObject) -> None:
    longest = b"a" * limit
    codec = GreetingServer(limit)
    events = feed_server(codec, draw.draw(chunkings(longest + b"\n")), eof=False)
    assert events[0] == Received(longest)

    codec = GreetingServer(limit)
    fed = 0
    chunks = draw.draw(chunkings(longest + b"b\n"))
    for chunk in chunks:
        line_bytes = len(chunk.split(b"\n")[0])
        if fed + line_bytes > limit:
            with pytest.raises(LineTooLong) as caught:
                codec.receive_data(chunk)
            assert caught.value.limit == limit
            assert isinstance(caught.value, RemoteProtocolError)
            return
        assert codec.receive_data(chunk) == []
        fed += line_bytes
    raise AssertionError("a line one byte over the limit was accepted")


# --- the answer shortcut ----------------------------------------------------------


@FAST
@given(data=st.binary(min_size=1, max_size=600), protocol=st.sampled_from(list(CONVERSATIONAL)))
def test_answer_is_exactly_what_the_events_would_send(data: bytes, protocol: WireProtocol) -> None:
    """Where the shortcut answers, it sends what the events send; greeting never answers."""
    answered = server_codec(protocol).answer(data)
    events = server_codec(protocol).receive_data(data)
    if protocol is WireProtocol.GREETING:
        assert answered is None
    else:
        assert answered == b"".join(e.data for e in events if isinstance(e, Send))
        assert events[0] == Received(data)


@pytest.mark.parametrize("protocol", [WireProtocol.REPLY, WireProtocol.ECHO], ids=lambda p: p.value)
def test_answer_leaves_empty_input_and_a_finished_conversation_to_receive_data(
    protocol: WireProtocol,
) -> None:
    codec = server_codec(protocol)
    assert codec.answer(b"") is None
    codec.receive_eof()
    assert codec.answer(b"late") is None


@pytest.mark.parametrize("protocol", list(WireProtocol), ids=lambda p: p.value)
def test_a_codec_factory_makes_a_fresh_codec_of_server_codecs_kind_each_time(
    protocol: WireProtocol,
) -> None:
    make = server_codec_factory(protocol, max_line=10)
    first, second = make(), make()
    assert first is not second
    assert type(first) is type(second) is type(server_codec(protocol, max_line=10))
    first.receive_eof()
    assert first.peer_closed and not second.peer_closed


# --- server misuse --------------------------------------------------------------


@pytest.mark.parametrize("protocol", list(CONVERSATIONAL), ids=lambda p: p.value)
def test_server_codec_rejects_misuse(protocol: WireProtocol) -> None:
    codec = server_codec(protocol)
    with pytest.raises(LocalProtocolError):
        codec.receive_data(b"")
    codec.receive_eof()
    assert codec.finished
    with pytest.raises(LocalProtocolError):
        codec.receive_data(b"late")
    with pytest.raises(LocalProtocolError):
        codec.receive_eof()


# --- reply: client side -----------------------------------------------------------


def feed_client(codec: ClientCodec, chunks: Sequence[bytes]) -> list[ReplyReceived]:
    """Feed every chunk; the reply may only arrive with the last one."""
    for chunk in chunks[:-1]:
        assert codec.receive_data(chunk) == []
    return codec.receive_data(chunks[-1])


def judge(message: bytes, chunks: Sequence[bytes]) -> tuple[str, bytes]:
    """Feed a reply to a client chunk by chunk, checking at every step that it
    does what the oracle says; return the final verdict and the bytes accepted.

    The client takes a reply as soon as the bytes so far form a complete one
    (it cannot wait for bytes that may never come); bytes after it are
    accepted only while they can still be part of a valid reply (see
    :func:`test_a_reply_is_taken_as_soon_as_it_is_complete`).
    """
    codec = ReplyClient()
    codec.send(message)
    received = b""
    for index, chunk in enumerate(chunks):
        received += chunk
        verdict = classify(message, received)
        if verdict == WRONG:
            with pytest.raises(WrongReply):
                codec.receive_data(chunk)
            return WRONG, b""
        events = codec.receive_data(chunk)
        if verdict == COMPLETE:
            assert events == [ReplyReceived(received)]
            assert not codec.awaiting_reply
            if rest := b"".join(chunks[index + 1 :]):
                if classify(message, received + rest) == WRONG:
                    with pytest.raises(UnexpectedData):
                        codec.receive_data(rest)
                else:
                    assert codec.receive_data(rest) == []
            return COMPLETE, received
        assert events == []
        assert codec.awaiting_reply
    with pytest.raises(IncompleteReply):
        codec.receive_eof()
    return PARTIAL, b""


@FAST
@given(message=messages, draw=st.data())
def test_reply_client_accepts_every_valid_split(message: bytes, draw: st.DataObject) -> None:
    reply = build_reply(message, draw.draw(piece_sizes(len(message)), label="sizes"))
    assert classify(message, reply) == COMPLETE
    for way, chunks in three_ways(reply, draw).items():
        verdict, accepted = judge(message, chunks)
        assert verdict == COMPLETE, way
        assert reply.startswith(accepted), way


@FAST
@given(message=plain_messages, draw=st.data())
def test_reply_client_accepts_every_split_of_a_plain_message_whole(
    message: bytes, draw: st.DataObject
) -> None:
    reply = build_reply(message, draw.draw(piece_sizes(len(message)), label="sizes"))
    for way, chunks in three_ways(reply, draw).items():
        codec = ReplyClient()
        assert codec.send(message) == message
        assert codec.awaiting_reply
        assert feed_client(codec, chunks) == [ReplyReceived(reply)], way
        assert not codec.awaiting_reply

        matcher = ReplyMatcher(message)
        assert [matcher.feed(chunk) for chunk in chunks] == [False] * (len(chunks) - 1) + [True]
        assert matcher.received == reply


def test_a_reply_is_taken_as_soon_as_it_is_complete() -> None:
    """``Re:abR`` answers ``abR`` completely, yet also begins ``Re:abRe:R``.

    When a message ends in ``R`` (or ``Re``, ``Re:``) the wire format cannot
    tell the two apart at that point, so the client takes the reply that is
    complete now rather than wait for bytes that may never come. The rest of
    the longer reading is still accepted when it comes, even after the next
    message was sent; a byte that fits no reading is not.
    """
    codec = ReplyClient()
    codec.send(b"abR")
    assert codec.receive_data(b"Re:abR") == [ReplyReceived(b"Re:abR")]
    assert codec.receive_data(b"e:R") == []
    with pytest.raises(UnexpectedData):
        codec.receive_data(b"R")

    codec = ReplyClient()
    codec.send(b"abR")
    assert codec.receive_data(b"Re:abRe:R") == [ReplyReceived(b"Re:abRe:R")]

    codec = ReplyClient()
    codec.send(b"abR")
    assert codec.receive_data(b"Re:abR") == [ReplyReceived(b"Re:abR")]
    codec.send(b"next")
    (late,) = codec.receive_data(b"e:RRe:next")
    assert late.data.endswith(b"Re:next")
    assert not codec.awaiting_reply

    codec = ReplyClient()
    codec.send(b"abR")
    codec.receive_data(b"Re:abR")
    codec.send(b"next")
    with pytest.raises(WrongReply):
        codec.receive_data(b"e:XRe:next")


@FAST
@given(sent=st.lists(messages, min_size=1, max_size=5), draw=st.data())
def test_reply_client_holds_a_lockstep_conversation_however_split(
    sent: list[bytes], draw: st.DataObject
) -> None:
    """Message after message, the server's pieces read at random boundaries.

    The client sends the next message only once it has a reply, and the
    server answers a message only once it has it, so the client never sees
    bytes of a reply before sending its message; it must never reject a valid
    split, and never wait for bytes that the server has already sent.
    """
    codec = ReplyClient()
    unread = b""
    answered = 0

    def send_next() -> None:
        nonlocal unread
        message = sent[answered]
        assert codec.send(message) == message
        unread += build_reply(message, draw.draw(piece_sizes(len(message)), label="sizes"))

    send_next()
    while answered < len(sent):
        assert unread, "the client waits for bytes the server has already sent"
        size = draw.draw(st.integers(1, len(unread)), label="read")
        chunk, unread = unread[:size], unread[size:]
        events = codec.receive_data(chunk)
        assert len(events) <= 1
        if events:
            answered += 1
            if answered < len(sent):
                send_next()
    if unread:
        assert codec.receive_data(unread) == []
    assert not codec.awaiting_reply


@st.composite
def corruptions(draw: st.DrawFn, message: bytes) -> tuple[str, bytes]:
    """A valid reply to *message*, then damaged one way; returns (how, reply)."""
    reply = build_reply(message, draw(piece_sizes(len(message))))
    kinds = ["change", "drop", "insert"] + (["long piece"] if len(message) > MAX_PIECE else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "long piece":
        first = draw(st.integers(MAX_PIECE + 1, len(message)))
        rest = draw(piece_sizes(len(message) - first))
        return kind, build_reply(message, [first, *rest])
    index = draw(st.integers(0, len(reply) - 1))
    if kind == "drop":
        return kind, reply[:index] + reply[index + 1 :]
    byte = draw(st.integers(0, 255))
    if kind == "insert":
        return kind, reply[:index] + bytes([byte]) + reply[index:]
    if byte == reply[index]:
        byte ^= 0x01
    return kind, reply[:index] + bytes([byte]) + reply[index + 1 :]


@FAST
@given(message=messages, draw=st.data())
def test_reply_client_follows_the_contract_on_damaged_replies(
    message: bytes, draw: st.DataObject
) -> None:
    _kind, reply = draw.draw(corruptions(message), label="damaged")
    if reply:
        judge(message, draw.draw(chunkings(reply), label="chunks"))


@FAST
@given(message=plain_messages, draw=st.data())
def test_reply_client_rejects_damaged_replies(message: bytes, draw: st.DataObject) -> None:
    kind, reply = draw.draw(corruptions(message), label="damaged")
    chunks = draw.draw(chunkings(reply), label="chunks")
    verdict = judge(message, chunks)[0] if reply else PARTIAL
    if kind == "drop":
        assert verdict in (WRONG, PARTIAL)
    else:
        assert verdict == WRONG


@pytest.mark.parametrize(
    "reply",
    [
        b"Rf:0 - Send Message",
        b"Re:0 - Send Massage",
        b"Re:0 - SendMessage",
        b"Re:Re:0 - Send Message",
        b"re:0 - Send Message",
        b"Re:0 - Send Message\x00",
    ],
    ids=["prefix", "changed", "missing", "doubled prefix", "lower case", "extra"],
)
def test_reply_client_names_wrong_replies(reply: bytes) -> None:
    codec = ReplyClient()
    codec.send(b"0 - Send Message")
    with pytest.raises(WrongReply):
        codec.receive_data(reply)
    codec = ReplyClient()
    codec.send(b"0 - Send Message")
    with pytest.raises(RemoteProtocolError):
        for byte in byte_by_byte(reply):
            if codec.receive_data(byte):
                assert reply.startswith(b"Re:0 - Send Message")
                assert not codec.awaiting_reply


def test_reply_client_rejects_a_piece_over_124_bytes() -> None:
    message = EVERY_BYTE * 2
    longest = MAX_PIECE + 1
    for sizes in ([longest, len(message) - longest], [len(message)]):
        codec = ReplyClient()
        codec.send(message)
        with pytest.raises(WrongReply):
            codec.receive_data(build_reply(message, sizes))
    codec = ReplyClient()
    codec.send(message)
    assert codec.receive_data(b"Re:" + message[:MAX_PIECE]) == []


def test_reply_client_needs_the_whole_reply_before_eof() -> None:
    codec = ReplyClient()
    codec.send(b"0 - Send Message")
    with pytest.raises(IncompleteReply):
        codec.receive_eof()
    codec = ReplyClient()
    codec.send(b"0 - Send Message")
    assert codec.receive_data(b"Re:0 - Se") == []
    with pytest.raises(IncompleteReply, match="Re:0 - Se"):
        codec.receive_eof()


# --- reply: the tracker's table -----------------------------------------------------


def test_reply_table_has_one_row_per_input_and_a_way_into_and_out_of_every_place() -> None:
    """Every input belongs to one place, and no place is a dead end or unreachable."""
    assert sorted(what for _place, what in TRANSITIONS) == sorted(Input)
    assert {place for place, _what in TRANSITIONS} == set(Place)
    assert {move.to for move in TRANSITIONS.values()} == set(Place)


def test_reply_table_names_its_transitions() -> None:
    in_piece = Reading(message=0, matched=2, place=IN_PIECE, offset=2)
    assert follow(FIRST_READING, PREFIX_BYTE) == Reading(0, 0, IN_PREFIX, 1)
    assert follow(Reading(0, 0, IN_PREFIX, 2), PREFIX_END) == Reading(0, 0, IN_PIECE, 0)
    assert follow(in_piece, PAYLOAD) == Reading(0, 3, IN_PIECE, 3)
    assert follow(in_piece, NEW_PIECE) == Reading(0, 2, IN_PREFIX, 1)
    assert follow(in_piece, NEXT_REPLY) == Reading(1, 0, IN_PREFIX, 1)
    r = b"R"[0]
    assert inputs_for(r, in_piece, b"abRc", next_sent=False) == (PAYLOAD, NEW_PIECE)
    assert inputs_for(r, in_piece, b"ab", next_sent=True) == (NEXT_REPLY,)
    assert inputs_for(r, in_piece, b"ab", next_sent=False) == ()
    assert inputs_for(r, Reading(0, 2, IN_PIECE, 0), b"abR", next_sent=True) == (PAYLOAD,)
    full = Reading(0, MAX_PIECE, IN_PIECE, MAX_PIECE)
    assert inputs_for(r, full, b"R" * (MAX_PIECE + 1), next_sent=False) == (NEW_PIECE,)


@st.composite
def readings(draw: st.DrawFn) -> tuple[Reading, bytes]:
    """A reading anywhere in a reply, and the message it answers."""
    message = draw(messages)
    place = draw(st.sampled_from(Place))
    if place is IN_PREFIX:
        offset = draw(st.integers(0, len(PREFIX) - 1))
        matched = draw(st.integers(0, len(message) - 1))
    else:
        matched = draw(st.integers(0, len(message)))
        offset = draw(st.integers(0, min(matched, MAX_PIECE)))
    return Reading(0, matched, place, offset), message


@FAST
@given(reading=readings(), byte=st.integers(0, 255), next_sent=st.booleans())
def test_reply_table_covers_every_input_a_byte_can_be(
    reading: tuple[Reading, bytes], byte: int, next_sent: bool
) -> None:
    at, message = reading
    inputs = inputs_for(byte, at, message, next_sent)
    assert len(set(inputs)) == len(inputs) <= 2
    for what in inputs:
        assert (at.place, what) in TRANSITIONS
        moved = follow(at, what)
        if moved.place is IN_PREFIX:
            assert 0 < moved.offset < len(PREFIX)
        else:
            assert 0 <= moved.offset <= MAX_PIECE
            assert moved.matched <= len(message)


def table_readings(sent: Sequence[bytes], data: bytes) -> set[Reading]:
    """The readings of *data*, one byte at a time by the table alone."""
    current = {FIRST_READING}
    for byte in data:
        current = {
            follow(reading, what)
            for reading in current
            if reading.message < len(sent)
            for what in inputs_for(
                byte, reading, sent[reading.message], reading.message + 1 < len(sent)
            )
        }
    return current


@FAST
@given(sent=st.lists(messages, min_size=1, max_size=3), draw=st.data())
def test_reply_tracker_runs_of_bytes_land_where_the_table_does(
    sent: list[bytes], draw: st.DataObject
) -> None:
    """The tracker takes runs of bytes in one go; it must end where byte-by-byte steps do.

    The messages are all expected at once, so chunks end at each reply's end
    (as the lockstep client's reads would) and only the last reply is damaged.
    """
    replies = [
        build_reply(message, draw.draw(piece_sizes(len(message)), label="sizes"))
        for message in sent
    ]
    before_last = len(b"".join(replies[:-1]))
    if draw.draw(st.booleans(), label="damaged"):
        index = draw.draw(st.integers(0, len(replies[-1]) - 1), label="index")
        byte = draw.draw(st.integers(0, 255), label="byte")
        replies[-1] = replies[-1][:index] + bytes([byte]) + replies[-1][index + 1 :]
    tracker = ReplyTracker()
    for message in sent:
        tracker.expect(message)
    fed = b""
    for chunk in (part for reply in replies for part in draw.draw(chunkings(reply))):
        fed += chunk
        expected = table_readings(sent, fed)
        if not expected:
            with pytest.raises(WrongReply):
                tracker.feed(chunk)
            assert len(fed) > before_last
            return
        tracker.feed(chunk)
        assert tracker.readings == expected


# --- echo and greeting: client side -------------------------------------------------


@FAST
@given(message=st.binary(min_size=1, max_size=600), draw=st.data())
def test_echo_client_accepts_its_message_however_split(message: bytes, draw: st.DataObject) -> None:
    for way, chunks in three_ways(message, draw).items():
        codec = EchoClient()
        assert codec.send(message) == message
        assert feed_client(codec, chunks) == [ReplyReceived(message)], way


@FAST
@given(message=st.binary(min_size=1, max_size=100), index=st.integers(0), byte=st.integers(0, 255))
def test_echo_client_rejects_a_changed_or_extra_byte(message: bytes, index: int, byte: int) -> None:
    index %= len(message)
    if byte == message[index]:
        byte ^= 0x80
    changed = message[:index] + bytes([byte]) + message[index + 1 :]
    for wrong in (changed, message + bytes([byte])):
        codec = EchoClient()
        codec.send(message)
        with pytest.raises(WrongReply):
            codec.receive_data(wrong)


def test_echo_client_needs_the_whole_echo_before_eof() -> None:
    codec = EchoClient()
    codec.send(AWKWARD)
    assert codec.receive_data(AWKWARD[:5]) == []
    with pytest.raises(IncompleteReply):
        codec.receive_eof()


@FAST
@given(draw=st.data())
def test_greeting_client_reads_one_line_however_split(draw: st.DataObject) -> None:
    for way, chunks in three_ways(SERVER_GREETING, draw).items():
        codec = GreetingClient(1000)
        assert codec.send(b"Hello from client") == b"Hello from client\n"
        assert feed_client(codec, chunks) == [ReplyReceived(SERVER_GREETING)], way


def test_greeting_client_takes_the_greeting_without_newline_at_eof_and_nothing_else() -> None:
    codec = GreetingClient(1000)
    codec.send(b"Hello from client")
    assert codec.receive_data(b"Hello From Server") == []
    assert codec.receive_eof() == [ReplyReceived(b"Hello From Server")]

    codec = GreetingClient(1000)
    codec.send(b"Hello from client")
    assert codec.receive_data(b"Hello From") == []
    with pytest.raises(IncompleteReply, match="part of the greeting"):
        codec.receive_eof()

    codec = GreetingClient(1000)
    codec.send(b"Hello from client")
    with pytest.raises(IncompleteReply):
        codec.receive_eof()

    codec = GreetingClient(1000)
    codec.send(b"Hello from client")
    with pytest.raises(UnexpectedData):
        codec.receive_data(SERVER_GREETING + b"more")


@pytest.mark.parametrize(
    "reply",
    [b"Re:Hello from client\n", b"Hello from client\n", b"Hello From Server!\n", b"H\n", b"x"],
    ids=["reply", "echo", "longer", "shorter", "other"],
)
def test_greeting_client_refuses_what_no_greeting_server_sends(reply: bytes) -> None:
    codec = GreetingClient(1000)
    codec.send(b"Hello from client")
    with pytest.raises(WrongReply, match="is not a greeting server's"):
        codec.receive_data(reply)


@pytest.mark.parametrize("limit", [1, 16])
def test_greeting_client_line_limit_is_exact(limit: int) -> None:
    """Under a limit shorter than the greeting, the line is too long before it is wrong."""
    codec = GreetingClient(limit)
    codec.send(b"hi")
    assert codec.receive_data(SERVER_GREETING[:limit]) == []
    codec = GreetingClient(limit)
    codec.send(b"hi")
    with pytest.raises(LineTooLong):
        codec.receive_data(SERVER_GREETING[: limit + 1])


# --- every client -----------------------------------------------------------------


@pytest.mark.parametrize("protocol", list(CONVERSATIONAL), ids=lambda p: p.value)
def test_client_codec_rejects_data_nobody_asked_for(protocol: WireProtocol) -> None:
    codec = client_codec(protocol)
    with pytest.raises(UnexpectedData):
        codec.receive_data(b"unsolicited")
    message = b"ping"
    wire = codec.send(message)
    answer = server_codec(protocol).receive_data(wire)
    reply = b"".join(event.data for event in answer if isinstance(event, Send))
    assert codec.receive_data(reply) == [ReplyReceived(reply)]
    with pytest.raises(UnexpectedData):
        codec.receive_data(b"x")


@pytest.mark.parametrize("protocol", list(CONVERSATIONAL), ids=lambda p: p.value)
def test_client_codec_rejects_misuse(protocol: WireProtocol) -> None:
    codec = client_codec(protocol)
    with pytest.raises(LocalProtocolError):
        codec.send(b"")
    codec.send(b"ping")
    with pytest.raises(LocalProtocolError):
        codec.send(b"again")
    with pytest.raises(LocalProtocolError):
        codec.receive_data(b"")
    with pytest.raises(IncompleteReply):
        codec.receive_eof()
    with pytest.raises(LocalProtocolError):
        codec.send(b"after the end")
    with pytest.raises(LocalProtocolError):
        codec.receive_data(b"after the end")


@FAST
@given(message=st.binary(min_size=1, max_size=300), draw=st.data())
def test_client_and_server_codecs_hold_a_conversation(message: bytes, draw: st.DataObject) -> None:
    """Each protocol's two sides agree, however the request and the reply are cut.

    The ``reply`` message leaves out the bytes of ``Re:``, whose replies can
    be complete early (:func:`test_a_reply_is_taken_as_soon_as_it_is_complete`).
    """
    sent = {
        WireProtocol.REPLY: bytes(byte for byte in message if byte not in b"Re:") or b"x",
        WireProtocol.GREETING: message.replace(b"\n", b"") or b"x",
        WireProtocol.ECHO: message,
    }
    for protocol, text in sent.items():
        client, server = client_codec(protocol), server_codec(protocol)
        events: list[ServerEvent] = []
        for chunk in draw.draw(chunkings(client.send(text)), label="request"):
            events += server.receive_data(chunk)
        if not server.finished:
            events += server.receive_eof()
        reply = joined(events, Send)
        assert joined(events, Received) == text
        assert feed_client(client, draw.draw(chunkings(reply), label="reply")) == [
            ReplyReceived(reply)
        ]
