"""PROXY protocol cases: malformed headers on a ``?proxy=`` listener; a header where none is due.

A listener that requires a PROXY header must refuse every connection whose
header is broken with one printable log line and a close, and go on serving;
a listener without the setting must treat a header as the ordinary bytes it
is (HAProxy's spec: a receiver never guesses).
"""

from __future__ import annotations

import re

import trio

from trio_echo.address import Address
from trio_echo.codec.proxy_header import V2_SIGNATURE, build_v1, build_v2

from .case import Case, Measurement
from .clients import connect, exchange
from .procs import running_server
from .tls_cases import clean, log_lines, shown

CLIENT = Address("203.0.113.9", 40001)
SERVER = Address("198.51.100.2", 3100)
MESSAGE = b"0 - Send Message"
REPLY = b"Re:" + MESSAGE
REFUSED = re.compile(rb" refused: ")

MALFORMED = (
    ("not a header", b"GET / HTTP/1.1\r\n\r\n"),
    ("v1 bad port", b"PROXY TCP4 192.0.2.7 198.51.100.1 51000 99999\r\n"),
    ("v1 wrong family", b"PROXY TCP4 2001:db8::7 198.51.100.1 51000 443\r\n"),
    ("v1 oversized, terminal escapes", b"PROXY UNKNOWN " + b"\x1b[2J" * 40),
    ("v1 LF only", b"PROXY TCP4 192.0.2.7 198.51.100.1 51000 443\n"),
    ("v1 truncated", b"PROXY TCP4 192.0.2.7"),
    ("v2 version 1", V2_SIGNATURE + b"\x11\x11\x00\x0c" + bytes(12)),
    ("v2 too short", V2_SIGNATURE + b"\x21\x11\x00\x04" + bytes(4)),
    ("v2 oversized", V2_SIGNATURE + b"\x21\x11\xff\xff"),
    ("v2 truncated", build_v2(CLIENT, SERVER)[:-3]),
    ("v2 TLV overrun", V2_SIGNATURE + b"\x21\x11\x00\x10" + bytes(12) + b"\x01\x00\x09x"),
)


async def malformed_headers(driver: str) -> Measurement:
    """Each malformed header in a connection of its own, between two that are served."""
    flags = ["--listen", "tcp://127.0.0.1:0?proxy=any", "--log-level", "warning"]
    async with running_server(driver, flags) as server:
        first = await _served(server.port)  # the first served connection opens the dispatcher
        before = await server.steady_descriptors()
        closed = 0
        for _name, data in MALFORMED:
            closed += await _closed_after(server.port, data)
        with trio.fail_after(10):
            await server.wait_for_lines(REFUSED, len(MALFORMED))
        served = await _served(server.port) and first
        after = await server.settled_descriptors(before)
        lines = log_lines(server)
    refusals = [line for line in lines if REFUSED.search(line)]
    return Measurement(
        f"{closed} of {len(MALFORMED)} malformed headers closed, {len(refusals)} log lines "
        f"(e.g. {shown(refusals[3])!r}), valid headers before and after served: "
        f"{served}; descriptors {before} before, {after} after",
        closed == len(MALFORMED)
        and len(refusals) == len(MALFORMED) == len(lines)
        and clean(lines)
        and served
        and after == before,
    )


async def _served(port: int) -> bool:
    """Whether a connection with a valid v1 header gets its reply."""
    with trio.fail_after(10):
        client = await connect(port)
        async with client:
            header = build_v1(CLIENT, SERVER)
            return await exchange(client, header + MESSAGE, expect=len(REPLY)) == REPLY


async def _closed_after(port: int, data: bytes) -> int:
    """1 if the server closes the connection after *data* (half-closed: a truncated header)."""
    with trio.fail_after(10):
        client = await connect(port)
        async with client:
            try:
                await client.send_all(data)
                await client.send_eof()
                return 1 if await client.receive_some(65536) == b"" else 0
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return 1  # closed with our bytes unread: a reset


async def header_on_a_plain_listener(driver: str) -> Measurement:
    """v1 and v2 headers sent to a listener without ``?proxy=``: answered as message bytes."""
    async with running_server(driver, ["--protocol", "echo", "--log-level", "info"]) as server:
        answers = []
        for header in (build_v1(CLIENT, SERVER), build_v2(CLIENT, SERVER)):
            with trio.fail_after(10):
                client = await connect(server.port)
                async with client:
                    answers.append(await exchange(client, header + MESSAGE) == header + MESSAGE)
        with trio.fail_after(10):
            await server.wait_for_lines(re.compile(rb" disconnected \("), 2)
        lines = log_lines(server)
    connected = [line for line in lines if line.endswith(b" connected")]
    refused = [line for line in lines if REFUSED.search(line)]
    return Measurement(
        f"{sum(answers)} of 2 headers echoed back as data, {len(connected)} connections logged "
        f"under the real peer, {len(refused)} refusals; every line printable: {clean(lines)}",
        all(answers) and len(connected) == 2 and not refused and clean(lines),
    )


PROXY_CASES = (
    Case(
        "malformed PROXY headers",
        "reply tcp://?proxy=any, defaults",
        f"{len(MALFORMED)} connections each open with a broken header (not one, bad port, "
        "wrong family, oversized with terminal escapes, LF only, truncated, v2 bad version, "
        "short, oversized, truncated, TLV overrun), between two valid v1 headers with a reply "
        "session",
        "each closed with one printable log line, no traceback; the valid ones served; "
        "descriptors after == before",
        malformed_headers,
    ),
    Case(
        "a PROXY header on a plain listener",
        "echo tcp://, no proxy setting",
        "a v1 and a v2 header, each followed by a message",
        "both echoed back byte for byte (a plain listener never parses a header), logged "
        "under the real peer, every line printable",
        header_on_a_plain_listener,
    ),
)
