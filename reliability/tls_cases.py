"""TLS cases: handshakes that never finish, and bytes that are not TLS at all.

Each case makes a throwaway CA and a certificate for 127.0.0.1 and
``localhost`` with trustme, in a temporary directory removed when the case
ends, and starts a server with one ``tls://`` listener.
"""

from __future__ import annotations

import os
import re
import ssl
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import attrs
import trio
import trustme

from .case import Case, Measurement
from .clients import connect, connect_tls, exchange
from .procs import CONNECTION_FAILED, LISTENING, ServerProcess, running_server


@attrs.frozen
class Certificates:
    """A server certificate file (key included) and a client context that trusts it."""

    certfile: str
    client: ssl.SSLContext


@contextmanager
def certificates() -> Iterator[Certificates]:
    """A fresh CA and server certificate, on disk for as long as the block runs."""
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    client = ssl.create_default_context()
    ca.configure_trust(client)
    with tempfile.TemporaryDirectory(prefix="reliability-tls-") as directory:
        certfile = os.path.join(directory, "server.pem")
        issued.private_key_and_cert_chain_pem.write_to_path(certfile)
        yield Certificates(certfile, client)


def tls_flags(certs: Certificates, *extra: str) -> list[str]:
    """A reply server with one TLS listener, logging warnings only (failures are warnings)."""
    return [
        *("--listen", "tls://127.0.0.1:0", "--certfile", certs.certfile),
        *("--log-level", "warning", *extra),
    ]


PRINTABLE = re.compile(rb"^[\x20-\x7e]*$")
MESSAGE = b"0 - Send Message"
REPLY = b"Re:" + MESSAGE


def log_lines(server: ServerProcess) -> list[bytes]:
    """What the server logged after announcing its listeners."""
    announced = next(i for i, line in enumerate(server.lines) if LISTENING.search(line))
    return server.lines[announced + 1 :]


def clean(lines: list[bytes]) -> bool:
    """Every line printable ASCII (peer bytes escaped), and no traceback."""
    return all(PRINTABLE.match(line) and b"Traceback" not in line for line in lines)


def shown(line: bytes) -> str:
    """A log line for the table, without its time stamp."""
    return line.split(b" ", 1)[-1].decode("ascii", "backslashreplace")


# --- Handshake timeout -------------------------------------------------------------------------

HANDSHAKE_TIMEOUT = 1.0
CLOSE_WITHIN = (0.9, 2.0)
TRICKLE_EVERY = 0.3
NOT_FINISHED = re.compile(rb"TLS handshake not finished within 1 s")


async def handshake_timeout(driver: str) -> Measurement:
    """A client that sends nothing, and one that trickles its hello, both cut at the deadline."""
    with certificates() as certs:
        flags = tls_flags(certs, "--handshake-timeout", f"{HANDSHAKE_TIMEOUT:g}")
        async with running_server(driver, flags) as server:
            port = server.ports["tls"]
            silent, _ = await _time_to_close(port, None)
            with trio.fail_after(5):
                await server.wait_for_lines(NOT_FINISHED, 1)
            trickled, sent = await _time_to_close(port, _client_hello(certs.client))
            with trio.fail_after(5):
                await server.wait_for_lines(NOT_FINISHED, 2)
            lines = log_lines(server)
    low, high = CLOSE_WITHIN
    return Measurement(
        f"silent client closed after {silent:.3f} s, trickling one ({sent} bytes, one each "
        f"{TRICKLE_EVERY:g} s) after {trickled:.3f} s; {len(lines)} log lines: "
        + "; ".join(repr(shown(line)) for line in lines),
        low <= silent <= high
        and low <= trickled <= high
        and len(lines) == 2
        and all(NOT_FINISHED.search(line) for line in lines)
        and clean(lines),
    )


def _client_hello(context: ssl.SSLContext) -> bytes:
    """The bytes a TLS client sends first, made in memory."""
    hello = ssl.MemoryBIO()
    tls = context.wrap_bio(ssl.MemoryBIO(), hello, server_hostname="localhost")
    with suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return hello.read()


async def _time_to_close(port: int, trickle: bytes | None) -> tuple[float, int]:
    """Connect; send *trickle* a byte at a time (or nothing); seconds until the server closes."""
    client = await connect(port)
    sent = 0

    async def send_slowly(data: bytes) -> None:
        nonlocal sent
        for index in range(len(data)):
            await client.send_all(data[index : index + 1])
            sent += 1
            await trio.sleep(TRICKLE_EVERY)

    started = trio.current_time()
    async with client:
        with trio.fail_after(10 * HANDSHAKE_TIMEOUT):
            async with trio.open_nursery() as nursery:
                if trickle is not None:
                    nursery.start_soon(send_slowly, trickle)
                try:
                    while await client.receive_some(65536):
                        pass
                except trio.BrokenResourceError:
                    pass
                took = trio.current_time() - started
                nursery.cancel_scope.cancel()
    return took, sent


# --- Not TLS -----------------------------------------------------------------------------------

GARBAGE = 64 * 1024
FAILED = CONNECTION_FAILED


async def not_tls(driver: str) -> Measurement:
    """64 KiB of random bytes, then a plain-text session, at the TLS port; then a real client."""
    with certificates() as certs:
        async with running_server(driver, tls_flags(certs)) as server:
            port = server.ports["tls"]
            warmed = await _tls_session(port, certs.client)
            before = await server.steady_descriptors()
            for index, payload in enumerate((os.urandom(GARBAGE), MESSAGE)):
                await _send_and_read(port, payload)
                with trio.fail_after(5):
                    await server.wait_for_lines(FAILED, index + 1)
            served = await _tls_session(port, certs.client)
            after = await server.settled_descriptors(before)
            lines = log_lines(server)
    return Measurement(
        f"{len(lines)} log lines: " + "; ".join(repr(shown(line)) for line in lines) + "; "
        f"a TLS client served after: {'yes' if served else 'no'}; "
        f"{before} descriptors before, {after} after",
        warmed and served and len(lines) == 2 and clean(lines) and after == before,
    )


async def _tls_session(port: int, context: ssl.SSLContext) -> bool:
    """One reply exchange over TLS; whether the reply was right."""
    with trio.fail_after(10):
        stream = await connect_tls(port, context)
        async with stream:
            return await exchange(stream, MESSAGE, expect=len(REPLY)) == REPLY


async def _send_and_read(port: int, payload: bytes) -> None:
    """Send *payload* in the clear and read until the server ends the connection."""
    with trio.fail_after(10):
        client = await connect(port)
        async with client:
            try:
                await client.send_all(payload)
                while await client.receive_some(65536):
                    pass
            except trio.BrokenResourceError:
                pass  # the server closed with our bytes unread: a reset


TLS_CASES = (
    Case(
        "TLS handshake timeout",
        f"reply tls://, --handshake-timeout {HANDSHAKE_TIMEOUT:g}",
        f"a client connects and sends nothing; then one sends its ClientHello a byte every "
        f"{TRICKLE_EVERY:g} s",
        f"each closed after {CLOSE_WITHIN[0]:g} to {CLOSE_WITHIN[1]:g} s (one deadline for the "
        "whole handshake), one printable log line each saying the handshake was not finished",
        handshake_timeout,
    ),
    Case(
        "not TLS",
        "reply tls://, defaults",
        f"{GARBAGE // 1024} KiB of random bytes, then a plain-text reply session, sent to the "
        "TLS port",
        "one printable log line each, no traceback, a TLS client served right after, "
        "descriptors after == before",
        not_tls,
    ),
)
