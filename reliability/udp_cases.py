"""UDP cases: a flood from one source, and datagrams from the ports of reflection loops.

Both run an echo ``udp://`` listener with the default reflection guard
(100 answers a second per source host, bursts of 200) and read its log and
its exit summary (``N datagrams in, M out, K refused``), which counts what
the server itself received: the kernel drops what overflows its queue.
"""

from __future__ import annotations

import os
import re
import socket
import struct

import trio

from trio_echo.transport.reflection import ReflectionPolicy

from .case import Case, Measurement
from .clients import MIB, drain, receive_datagram, send_datagram, udp_ask, udp_socket
from .procs import ServerProcess, running_server

UDP_ECHO = ["--listen", "udp://127.0.0.1:0?protocol=echo", "--log-level", "warning"]
"""An echo UDP listener alone; warnings only, so refusal lines are all the log holds."""
POLICY = ReflectionPolicy()
SUMMARY = re.compile(rb"; (\d+) datagrams? in, (\d+) out, (\d+) refused$")


async def _datagram_totals(server: ServerProcess) -> tuple[int, int, int]:
    """Stop the server; the datagrams it received, answered and refused, from its summary."""
    await server.terminate()
    with trio.fail_after(5):
        found = await server.wait_for_lines(SUMMARY)
    received, answered, refused = (int(number) for number in found.groups())
    return received, answered, refused


# --- Flood -------------------------------------------------------------------------------------

FLOOD = 50_000
PAYLOAD = b"f" * 32
SLACK = 0.01
"""Answers allowed above burst + rate x elapsed, as a share of that bound (clock granularity)."""
FLOOD_RSS_LIMIT = 5 * MIB
BYSTANDER = "127.0.0.2"
"""The second source: another loopback address, so the guard gives it a bucket of its own."""
PROBES_AFTER = 10
RATE_LIMITED = re.compile(rb"rate-limited ")


async def udp_flood(driver: str) -> Measurement:
    """One source sends 50,000 datagrams as fast as it can; a second one keeps asking."""
    async with running_server(driver, UDP_ECHO) as server:
        flooder, bystander = udp_socket(), udp_socket(BYSTANDER)
        try:
            flood = await _flood(server, flooder, bystander)
            after = [
                await udp_ask(bystander, server.ports["udp"], b"after %d" % n, wait=0.5, tries=4)
                for n in range(PROBES_AFTER)
            ]
        finally:
            flooder.close()
            bystander.close()
        lines = server.count(RATE_LIMITED)
        received, answered, _refused = await _datagram_totals(server)
    allowed = POLICY.burst + POLICY.rate * flood.elapsed
    answered_after = sum(took is not None for took in after)
    slowest = max((took for took in after if took is not None), default=0.0)
    growth = flood.peak_rss - flood.rss_before
    return Measurement(
        f"{flood.answers} answers to {FLOOD:,} datagrams sent in {flood.sent_in:.2f} s "
        f"(server received {received:,}, answered {answered:,} from both sources); "
        f"bound {allowed:.0f} over {flood.elapsed:.2f} s; RSS +{growth / MIB:.2f} MiB; "
        f"{BYSTANDER}: {flood.probes_answered}/{flood.probes} answered during, "
        f"{answered_after}/{PROBES_AFTER} after (slowest {slowest * 1000:.0f} ms); "
        f"{lines} rate-limit log line(s)",
        flood.answers <= allowed * (1 + SLACK)
        and growth < FLOOD_RSS_LIMIT
        and flood.probes_answered > 0
        and answered_after == PROBES_AFTER,
    )


class _Flood:
    """What the flood measured: answers, time, memory, and the bystander's probes."""

    def __init__(self, rss_before: int) -> None:
        self.answers = 0
        self.sent_in = 0.0
        self.elapsed = 0.0
        """From the first datagram sent to the answer that proves every one was handled."""
        self.rss_before = self.peak_rss = rss_before
        self.probes = self.probes_answered = 0


async def _flood(server: ServerProcess, flooder: socket.socket, bystander: socket.socket) -> _Flood:
    """Send the flood while counting answers, sampling memory and probing from *bystander*."""
    port = server.ports["udp"]
    flood = _Flood(server.rss_bytes())

    async def count_answers() -> None:
        while True:
            await receive_datagram(flooder)
            flood.answers += 1

    async def watch_memory() -> None:
        while True:
            flood.peak_rss = max(flood.peak_rss, server.rss_bytes())
            await trio.sleep(0.05)

    async def probe() -> None:
        while True:
            flood.probes += 1
            message = b"during %d" % flood.probes
            took = await udp_ask(bystander, port, message, wait=0.2, tries=1)
            flood.probes_answered += took is not None

    started = trio.current_time()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(count_answers)
            nursery.start_soon(watch_memory)
            nursery.start_soon(probe)
            for index in range(FLOOD):
                await send_datagram(flooder, PAYLOAD, port)
                if index % 64 == 0:
                    await trio.lowlevel.checkpoint()
            flood.sent_in = trio.current_time() - started
            nursery.cancel_scope.cancel()
        # The listener reads one queue in order: once a datagram sent after the
        # flood is answered, every flood datagram it kept has been handled, and
        # every answer to one is already queued on the flooder's socket.
        if await udp_ask(bystander, port, b"last", wait=0.5, tries=10) is None:
            raise RuntimeError("no answer to the bystander after the flood")
    flood.elapsed = trio.current_time() - started
    flood.answers += drain(flooder)
    flood.peak_rss = max(flood.peak_rss, server.rss_bytes())
    return flood


# --- Reflection ports --------------------------------------------------------------------------

REFLECTION_PORTS = (7, 19)
PER_PORT = 5
REFUSED = re.compile(rb"refused \d+ datagrams? from reflection ports")
PRINTABLE = re.compile(rb"^[\x20-\x7e]*$")


async def reflection_ports(driver: str) -> Measurement:
    """Datagrams from ports 7 and 19 (and 0, over a raw socket) get no answer, one log line."""
    async with running_server(driver, UDP_ECHO) as server:
        port = server.ports["udp"]
        loops = [udp_socket(port=source) for source in REFLECTION_PORTS]
        control = udp_socket()
        try:
            started = trio.current_time()
            for sock in loops:
                for _ in range(PER_PORT):
                    await send_datagram(sock, b"loop?", port)
            port_zero = _send_from_port_zero(port, b"loop?")
            # Handled in order: once the control datagram is answered, any answer
            # to the ones before it would already be queued on their sockets.
            took = await udp_ask(control, port, b"control", wait=0.5, tries=10)
            answers = sum(drain(sock) for sock in loops)
            with trio.fail_after(5):
                line = (await server.wait_for_lines(REFUSED)).string
            within = trio.current_time() - started
            lines = server.count(REFUSED)
        finally:
            for sock in [*loops, control]:
                sock.close()
        received, answered, refused = await _datagram_totals(server)
    sent = PER_PORT * len(REFLECTION_PORTS) + port_zero
    spec = server.listener("udp").encode()
    well_formed = PRINTABLE.match(line) is not None and line.split(b" ", 1)[1].startswith(
        spec + b": "
    )
    zero = "1 from port 0 over a raw socket" if port_zero else "none from port 0 (needs root)"
    return Measurement(
        f"{answers} answers to {sent} datagrams ({zero}); control answered in "
        f"{(took or 0) * 1000:.1f} ms; server received {received}, answered {answered}, "
        f"refused {refused}; {lines} log line in {within:.2f} s: "
        f"{line.decode('ascii', 'backslashreplace')!r}",
        answers == 0 and took is not None and refused == sent and lines == 1 and well_formed,
    )


def _send_from_port_zero(port: int, payload: bytes) -> int:
    """Send one datagram with source port 0 to 127.0.0.1:*port*; 1 if sent, 0 without root.

    No ordinary socket can send from port 0 (binding it picks a free port),
    so the UDP header is written here and sent over a raw socket.
    """
    if os.geteuid() != 0:
        return 0
    header = struct.pack("!HHHH", 0, port, 8 + len(payload), 0)  # checksum 0: none (IPv4)
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP) as raw:
        raw.sendto(header + payload, ("127.0.0.1", 0))
    return 1


UDP_CASES = (
    Case(
        "UDP flood",
        f"echo udp://, --udp-rate {POLICY.rate:g} --udp-burst {POLICY.burst:g} (defaults)",
        f"one source sends {FLOOD:,} datagrams as fast as it can; a second source "
        f"({BYSTANDER}) asks throughout and after",
        f"answers <= burst + rate x elapsed (+{SLACK:.0%}), RSS growth < "
        f"{FLOOD_RSS_LIMIT // MIB} MiB, the second source answered during the flood and "
        f"{PROBES_AFTER}/{PROBES_AFTER} times after it",
        udp_flood,
    ),
    Case(
        "reflection ports",
        "echo udp://, defaults",
        f"{PER_PORT} datagrams from each of ports {' and '.join(map(str, REFLECTION_PORTS))}, "
        "1 from port 0 (a raw socket: no ordinary socket can send from it), then one from "
        "an ordinary port",
        "no answer to any of them (checked once the later datagram is answered), all counted "
        "refused, one printable log line starting with the listener's spec within the 10 s "
        "report interval",
        reflection_ports,
    ),
)
