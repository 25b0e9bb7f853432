"""The scenario table: every row runs against both drivers and must agree.

Each :class:`~.harness.Scenario` starts a server of one
driver on a simulated network, drives it with that driver's own client or
with scripted peers (raw streams that misbehave on purpose), and states what
its transcript must show. Run one with ``python -m trio_echo.testing replay
NAME``; list them with ``python -m trio_echo.testing list``.

Scripted peers are plain Trio code on :class:`~trio_echo.testing.SimulatedStream`,
identical for both drivers, so any difference in a transcript comes from the
server (or, for sessions, the client) under test.
"""

from __future__ import annotations

import contextlib

import trio

from ...codec import SERVER_GREETING
from ...config import GREETING_MESSAGE, ServerConfig, WireProtocol
from ...escape import escape
from ..faults import Faults
from ..stream import SimulatedStream
from .expectations import (
    assert_ended,
    assert_ok,
    client,
    connection,
    events,
    kinds,
    last,
    notes,
)
from .harness import Scenario, ScenarioContext
from .transcript import Transcript, show_bytes

__all__ = ["SCENARIOS", "NoSuchScenario", "by_name", "seeded"]

ALL_BYTES = bytes(range(256))


# ---- scripted peers --------------------------------------------------------------


async def read_to_end(context: ScenarioContext, label: str, stream: SimulatedStream) -> bytes:
    """Read until end of input or an error; note how it ended and what came."""
    received = bytearray()
    try:
        while data := await stream.receive_some():
            received += data
        ending = "end of input"
    except trio.BrokenResourceError as exc:
        cause = exc.__cause__
        ending = f"broken: errno {getattr(cause, 'errno', None)}"
    context.note(label, f"received {show_bytes(bytes(received))}, then {ending}")
    return bytes(received)


# ---- the scenarios ---------------------------------------------------------------


async def note_session(context: ScenarioContext) -> None:
    await context.session("note")


def expect_note_session(transcript: Transcript) -> None:
    assert_ok(transcript, "note")
    assert kinds(transcript, "note") == ["Connected"] + ["MessageReceived"] * 7 + ["Disconnected"]
    assert_ended(transcript, "note", "Disconnected", reason="closed by peer", at="0.017000")


THOUSAND = [f"c{index:04d}" for index in range(1000)]


async def thousand_clients(context: ScenarioContext) -> None:
    for label in THOUSAND:
        context.start_session(label)


def expect_thousand_clients(transcript: Transcript) -> None:
    for label in THOUSAND:
        assert_ok(transcript, label)
        assert_ended(transcript, label, "Disconnected", reason="closed by peer")
    stats = transcript.body["stats"]
    assert stats["connections"] == 1000 and stats["errors"] == 0, stats


async def drip(context: ScenarioContext) -> None:
    stream = await context.connect("drip")
    for byte in GREETING_MESSAGE.encode() + b"\n":
        await stream.send_all(bytes([byte]))
        await trio.sleep(1)
    await read_to_end(context, "drip", stream)
    await stream.aclose()


def expect_drip(transcript: Transcript) -> None:
    received = [e for e in events(transcript, "drip") if e["event"] == "MessageReceived"]
    assert [e["data"] for e in received] == [escape(GREETING_MESSAGE.encode())], received
    assert received[0]["at"] == "17.003000", received
    assert_ended(transcript, "drip", "Disconnected", reason="conversation complete")
    assert connection(transcript, "drip")["to_client"] == show_bytes(SERVER_GREETING)


async def drip_at_the_limit(context: ScenarioContext) -> None:
    stream = await context.connect("punctual")
    await stream.send_all(b"H")
    await trio.sleep(60)
    await stream.send_all(b"ello\n")
    await read_to_end(context, "punctual", stream)
    await stream.aclose()


def expect_drip_at_the_limit(transcript: Transcript) -> None:
    assert_ended(transcript, "punctual", "Disconnected", reason="idle for 60 s", at="60.003000")
    assert connection(transcript, "punctual")["to_server"] == show_bytes(b"H")


async def trickle(context: ScenarioContext) -> None:
    stream = await context.connect("trickler")
    for byte in GREETING_MESSAGE.encode() + b"\n":
        with contextlib.suppress(trio.BrokenResourceError):
            await stream.send_all(bytes([byte]))
        await trio.sleep(5)
    await read_to_end(context, "trickler", stream)
    await stream.aclose()


def expect_trickle(transcript: Transcript) -> None:
    assert_ended(
        transcript,
        "trickler",
        "ConnectionFailed",
        message="no whole line within 60 s",
        at="60.001000",
    )
    assert connection(transcript, "trickler")["to_server"] == show_bytes(b"Hello from c")


async def idle(context: ScenarioContext) -> None:
    stream = await context.connect("idle")
    await read_to_end(context, "idle", stream)
    await stream.aclose()


def expect_idle(transcript: Transcript) -> None:
    assert_ended(transcript, "idle", "Disconnected", reason="idle for 60 s", at="60.001000")
    assert notes(transcript, "idle") == ['60.002000 received "", then end of input']


BIG = bytes(index % 251 for index in range(100_000))
"""More than the 64 KiB the network holds each way, so the reply cannot fit."""


async def reset_mid_reply(context: ScenarioContext) -> None:
    stream = await context.connect("resetter")
    await stream.send_all(BIG)
    part = await stream.receive_some(1000)
    context.note("resetter", f"read {len(part)} bytes of the reply, then reset")
    await stream.reset()


def expect_reset_mid_reply(transcript: Transcript) -> None:
    assert_ended(transcript, "resetter", "ConnectionFailed", errno=104, bytes_out=0)


HALF_CLOSE_WRITES = [b"first ", b"second ", b"\x00\xff third"]


async def half_close(context: ScenarioContext) -> None:
    stream = await context.connect("half")
    for data in HALF_CLOSE_WRITES:
        await stream.send_all(data)
    await stream.send_eof()
    await read_to_end(context, "half", stream)
    await stream.aclose()


def expect_half_close(transcript: Transcript) -> None:
    sent = b"".join(HALF_CLOSE_WRITES)
    record = connection(transcript, "half")
    assert record["to_server"] == record["to_client"] == show_bytes(sent), record
    assert_ended(transcript, "half", "Disconnected", reason="closed by peer")


async def long_line(context: ScenarioContext) -> None:
    stream = await context.connect("long")
    await stream.send_all(b"x" * 100)
    await read_to_end(context, "long", stream)
    await stream.aclose()


def expect_long_line(transcript: Transcript) -> None:
    assert_ended(
        transcript, "long", "ConnectionFailed", errno=None, message="line longer than 64 bytes"
    )


async def discarded(context: ScenarioContext) -> None:
    stream = await context.connect("chatty")
    await stream.send_all(b"hi\nand more after the line")
    await read_to_end(context, "chatty", stream)
    await stream.aclose()


def expect_discarded(transcript: Transcript) -> None:
    assert kinds(transcript, "chatty") == [
        "Connected",
        "MessageReceived",
        "BytesDiscarded",
        "Disconnected",
    ]
    assert events(transcript, "chatty")[2]["size"] == len(b"and more after the line")


async def split_replies(context: ScenarioContext) -> None:
    for index in range(3):
        context.start_session(f"split{index}", at=index * 0.01)


def expect_split_replies(transcript: Transcript) -> None:
    for index in range(3):
        assert_ok(transcript, f"split{index}", whole=False)
        received = kinds(transcript, f"split{index}").count("MessageReceived")
        assert received > 7, f"split{index}: only {received} reads for 7 messages"


SHUTDOWN_CLIENTS = ["early", "middle", "late"]
"""Sessions started 0, 1 and 2 s in; a round trip takes 1 s (latency 0.5 s)."""


async def shutdown_midway(context: ScenarioContext, grace: float) -> None:
    for index, label in enumerate(SHUTDOWN_CLIENTS):
        context.start_session(label, at=index)
    await context.sleep_until(3.25)
    await context.shutdown(grace)
    await context.sleep_until(20)
    await context.session("too-late")


def expect_graceful(transcript: Transcript) -> None:
    for label in SHUTDOWN_CLIENTS:
        assert_ok(transcript, label)
        assert_ended(transcript, label, "Disconnected", reason="closed by peer")
    assert client(transcript, "too-late")["errno"] == 111


def expect_cut_after_grace(transcript: Transcript) -> None:
    for label in SHUTDOWN_CLIENTS:
        assert client(transcript, label)["error"] is not None
        assert_ended(transcript, label, "Disconnected", reason="server shut down", at="5.250000")
    assert client(transcript, "too-late")["errno"] == 111


def expect_hard(transcript: Transcript) -> None:
    for label in SHUTDOWN_CLIENTS:
        assert client(transcript, label)["error"] is not None
        assert_ended(transcript, label, "Disconnected", reason="server shut down", at="3.250000")


async def graceful(context: ScenarioContext) -> None:
    await shutdown_midway(context, grace=30)


async def grace_expires(context: ScenarioContext) -> None:
    await shutdown_midway(context, grace=2)


async def hard(context: ScenarioContext) -> None:
    await shutdown_midway(context, grace=0)


async def refused(context: ScenarioContext) -> None:
    await context.session("nobody-home", port=context.address.port + 1)


def expect_refused(transcript: Transcript) -> None:
    outcome = client(transcript, "nobody-home")
    assert outcome["errno"] == 111, outcome
    assert outcome["error"] == (
        "ConnectionRefused: connect to 127.0.0.1:3101: Connection refused (errno 111)"
    ), outcome
    assert transcript.body["connections"] == {}


QUEUED = [f"q{index}" for index in range(5)]


async def queueing(context: ScenarioContext) -> None:
    for index, label in enumerate(QUEUED):
        context.start_session(label, at=index / 10)


def expect_queueing(transcript: Transcript) -> None:
    times = {}
    for label in QUEUED:
        assert_ok(transcript, label)
        first, final = events(transcript, label)[0], last(transcript, label)
        times[label] = (float(first["at"]), float(final["at"]))
    for waiting, finished in (("q2", "q0"), ("q3", "q1"), ("q4", "q2")):
        assert times[waiting][0] >= times[finished][1], times


async def quiet_holders(context: ScenarioContext) -> None:
    async def hold(label: str) -> None:
        stream = await context.connect(label)
        await read_to_end(context, label, stream)
        await stream.aclose()

    context.start_soon(hold, "quiet")
    await trio.sleep(0.01)
    context.start_soon(hold, "quieter")
    await trio.sleep(2)
    await context.session("newcomer")


def expect_quiet_holders(transcript: Transcript) -> None:
    assert_ok(transcript, "newcomer")
    assert_ended(transcript, "quiet", "Disconnected", reason="reclaimed for a waiting client")
    assert_ended(transcript, "quieter", "Disconnected", reason="idle for 60 s")
    reclaimed_at = float(last(transcript, "quiet")["at"])
    served_from = float(events(transcript, "newcomer")[0]["at"])
    assert 2 < reclaimed_at <= served_from < 2.5, (reclaimed_at, served_from)


async def stops_reading(context: ScenarioContext) -> None:
    stream = await context.connect("sleeper")
    await stream.send_all(BIG)
    await trio.sleep(90)
    await read_to_end(context, "sleeper", stream)
    await stream.aclose()


def expect_stops_reading(transcript: Transcript) -> None:
    assert_ended(
        transcript,
        "sleeper",
        "ConnectionFailed",
        errno=None,
        message="peer took no data for 60 s",
        at="60.003000",
    )


async def slow_then_stops(context: ScenarioContext) -> None:
    stream = await context.connect("slow")
    await stream.send_all(BIG)
    for _ in range(7):
        data = await stream.receive_some(1000)
        context.note("slow", f"read {len(data)} bytes")
        await trio.sleep(5)
    await trio.sleep(200)
    await read_to_end(context, "slow", stream)
    await stream.aclose()


SLOW_READER_GIVES_UP = "90.005000"
"""The peer's last read is acknowledged at 30.005 s; it takes nothing for 60 s after that.

Both drivers restart the send timeout whenever the peer takes a byte (the
blocking one with ``SO_SNDTIMEO``, the Trio one through streams that see
partial progress)."""


def expect_slow_then_stops(transcript: Transcript) -> None:
    assert_ended(
        transcript,
        "slow",
        "ConnectionFailed",
        message="peer took no data for 60 s",
        at=SLOW_READER_GIVES_UP,
    )


async def lingering_at_shutdown(context: ScenarioContext) -> None:
    stream = await context.connect("lingerer")
    await stream.send_all(b"hello\n")
    context.note("lingerer", f"got {show_bytes(await stream.receive_some())}")
    await context.sleep_until(1)
    await context.shutdown(0)
    await read_to_end(context, "lingerer", stream)
    await stream.aclose()


def expect_lingering_at_shutdown(transcript: Transcript) -> None:
    assert_ended(transcript, "lingerer", "Disconnected", reason="server shut down", at="1.000000")


ALL_BYTES_TEXT = ALL_BYTES.decode("utf-8", "surrogateescape")


async def all_byte_values(context: ScenarioContext) -> None:
    await context.session("bytes", message=ALL_BYTES_TEXT, count=2)


def expect_all_byte_values(transcript: Transcript) -> None:
    assert_ok(transcript, "bytes", [ALL_BYTES, ALL_BYTES])
    received = [e["data"] for e in events(transcript, "bytes") if e["event"] == "MessageReceived"]
    assert received == [escape(ALL_BYTES, limit=None)] * 2, received


FAULTY = [f"f{index}" for index in range(4)]


async def faulty_sessions(context: ScenarioContext) -> None:
    for index, label in enumerate(FAULTY):
        context.start_session(label, at=index * 0.25)


def expect_all_ok(transcript: Transcript) -> None:
    for label in FAULTY:
        assert_ok(transcript, label, whole=False)
        assert_ended(transcript, label, "Disconnected", reason="closed by peer")


def expect_resets_reported(transcript: Transcript) -> None:
    for label in FAULTY:
        outcome = client(transcript, label)
        if outcome["error"] is None:
            assert_ok(transcript, label, whole=False)
            continue
        assert outcome["errno"] == 104, outcome
        final = last(transcript, label)
        assert final.get("errno") == 104 or final.get("reason") == "closed by peer", final


async def faulty_greetings(context: ScenarioContext) -> None:
    for index, label in enumerate(FAULTY):
        context.start_session(label, at=index * 0.25, protocol=WireProtocol.GREETING)


def expect_greetings(transcript: Transcript) -> None:
    for label in FAULTY:
        outcome = client(transcript, label)
        assert outcome["error"] is None, outcome
        assert outcome["exchanges"] == [
            [show_bytes(GREETING_MESSAGE.encode()), show_bytes(SERVER_GREETING)]
        ]


NETWORK_FAULTS = Faults(split=0.5, max_pieces=16, delay=0.5, max_delay=0.2, stall=0.05)
"""Writes cut, pieces late, the odd two-second stall: nothing may be lost or reordered."""

RESET_FAULTS = Faults(split=0.3, delay=0.3, reset=0.5, reset_within=300)
"""Half the connections are reset by the network somewhere in their first 300 bytes."""

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        name="note-session",
        checks="the note's seven-message conversation, byte for byte, with its timestamps",
        script=note_session,
        expect=expect_note_session,
    ),
    Scenario(
        name="thousand-clients",
        checks="1000 concurrent sessions of the note all answered, none failed",
        script=thousand_clients,
        expect=expect_thousand_clients,
    ),
    Scenario(
        name="drip",
        checks="a greeting sent one byte per virtual second restarts the idle timer each time",
        script=drip,
        server=ServerConfig(protocol=WireProtocol.GREETING),
        expect=expect_drip,
    ),
    Scenario(
        name="slow-greeting",
        checks="a greeting line that trickles a byte every 5 s is cut at the 60 s line timeout",
        script=trickle,
        server=ServerConfig(protocol=WireProtocol.GREETING),
        expect=expect_trickle,
    ),
    Scenario(
        name="idle-timeout",
        checks="a client that sends nothing is closed after exactly the 60 s idle timeout",
        script=idle,
        expect=expect_idle,
    ),
    Scenario(
        name="timeout-tie",
        checks="bytes arriving at the very instant the idle timeout expires come too late",
        script=drip_at_the_limit,
        server=ServerConfig(protocol=WireProtocol.GREETING, line_timeout=None),
        expect=expect_drip_at_the_limit,
    ),
    Scenario(
        name="reset-mid-reply",
        checks="a peer that resets while the server is blocked sending is reported as errno 104",
        script=reset_mid_reply,
        expect=expect_reset_mid_reply,
    ),
    Scenario(
        name="half-close",
        checks="after the peer's EOF every byte is echoed, then the server closes",
        script=half_close,
        server=ServerConfig(protocol=WireProtocol.ECHO),
        expect=expect_half_close,
    ),
    Scenario(
        name="long-greeting-line",
        checks="a greeting line past max_line ends that connection with a logged error",
        script=long_line,
        server=ServerConfig(protocol=WireProtocol.GREETING, max_line=64),
        expect=expect_long_line,
    ),
    Scenario(
        name="bytes-after-greeting",
        checks="bytes after the greeting line are reported as discarded, never dropped silently",
        script=discarded,
        server=ServerConfig(protocol=WireProtocol.GREETING),
        expect=expect_discarded,
    ),
    Scenario(
        name="split-replies",
        checks="messages and replies cut into up to 16 pieces each are reassembled exactly",
        script=split_replies,
        faults=Faults(split=1.0, max_pieces=16),
        seeded=True,
        expect=expect_split_replies,
    ),
    Scenario(
        name="shutdown-graceful",
        checks="shutdown stops accepting at once and lets sessions in flight finish",
        script=graceful,
        latency=0.5,
        expect=expect_graceful,
    ),
    Scenario(
        name="shutdown-grace-expires",
        checks="sessions still running when the 2 s grace ends are cut, all at the same instant",
        script=grace_expires,
        latency=0.5,
        expect=expect_cut_after_grace,
    ),
    Scenario(
        name="shutdown-hard",
        checks="a shutdown without grace ends every connection at once as 'server shut down'",
        script=hard,
        latency=0.5,
        expect=expect_hard,
    ),
    Scenario(
        name="connection-refused",
        checks="connecting where nothing listens fails with ECONNREFUSED (errno 111)",
        script=refused,
        expect=expect_refused,
    ),
    Scenario(
        name="max-connections",
        checks="with max_connections=2, later clients wait in the backlog and are served in turn",
        script=queueing,
        server=ServerConfig(max_connections=2),
        latency=0.1,
        expect=expect_queueing,
    ),
    Scenario(
        name="reclaim-quiet",
        checks="a full server with a client waiting closes the connection quiet longest for it",
        script=quiet_holders,
        server=ServerConfig(max_connections=2),
        expect=expect_quiet_holders,
    ),
    Scenario(
        name="stops-reading",
        checks="a peer that stops reading is dropped after the 60 s send timeout",
        script=stops_reading,
        expect=expect_stops_reading,
    ),
    Scenario(
        name="slow-reader",
        checks="a peer that reads 1000 bytes every 5 s, then stops, is dropped by the send timeout",
        script=slow_then_stops,
        expect=expect_slow_then_stops,
    ),
    Scenario(
        name="shutdown-while-lingering",
        checks="a finished connection still draining its input is cut by a hard shutdown",
        script=lingering_at_shutdown,
        server=ServerConfig(protocol=WireProtocol.GREETING),
        expect=expect_lingering_at_shutdown,
    ),
    Scenario(
        name="all-byte-values",
        checks="every byte value 0-255 travels, is answered in 124-byte pieces and logged exactly",
        script=all_byte_values,
        expect=expect_all_byte_values,
    ),
    Scenario(
        name="faulty-network",
        checks="split, late and stalled pieces never lose, duplicate or reorder a byte",
        script=faulty_sessions,
        faults=NETWORK_FAULTS,
        seeded=True,
        expect=expect_all_ok,
    ),
    Scenario(
        name="faulty-resets",
        checks="connections reset mid-stream fail with errno 104 on both sides; others succeed",
        script=faulty_sessions,
        faults=RESET_FAULTS,
        seeded=True,
        expect=expect_resets_reported,
    ),
    Scenario(
        name="faulty-greetings",
        checks="greetings survive split and late pieces",
        script=faulty_greetings,
        server=ServerConfig(protocol=WireProtocol.GREETING),
        faults=NETWORK_FAULTS,
        seeded=True,
        expect=expect_greetings,
    ),
)


class NoSuchScenario(KeyError):
    """No row of the table has the name asked for."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"no scenario named {self.name!r} (see 'list')"


def by_name(name: str) -> Scenario:
    """The scenario called *name*; :class:`NoSuchScenario` if there is none."""
    for scenario in SCENARIOS:
        if scenario.name == name:
            return scenario
    raise NoSuchScenario(name)


def seeded() -> list[Scenario]:
    """The fault scenarios, whose outcome depends on the seed."""
    return [scenario for scenario in SCENARIOS if scenario.seeded]
