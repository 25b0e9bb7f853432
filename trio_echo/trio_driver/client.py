"""The Trio client: the note's session, any number of them at once.

:func:`run_session` holds one conversation over one connection;
:func:`run_client` runs ``config.connections`` of them in one nursery and
gathers their results. One session's failure is recorded in its result and
never cancels the others.
"""

from __future__ import annotations

import math

import trio

from ..client_tally import ClientTally
from ..config import ClientConfig
from ..errors import ConnectionLost, TrioEchoError
from ..os_errors import from_os_error, root_os_error
from ..pacing import Pacer
from ..session import ClientSession, Report, SessionResult, silent
from ..transport.proxy_client import header_for_stream
from ..transport.spec import Transport
from ..transport.tls import TlsClientSettings, shared_client_context
from .datagram_client import run_datagram_session
from .network import Network, SocketNetwork


async def run_session(
    config: ClientConfig,
    *,
    network: Network | None = None,
    report: Report = silent,
    index: int = 0,
    tally: ClientTally | None = None,
) -> SessionResult:
    """Connect, exchange every message of *config*, close; never raises a TrioEchoError.

    Over UDP (``config.transport``) each message is a datagram, sent again
    when its answer does not come (see :mod:`.datagram_client`). With a
    *tally*, the session is counted into it as it runs and its result keeps
    no exchanges, only their number: memory does not grow with the run.
    """
    if config.transport is Transport.UDP:
        return await run_datagram_session(config, report=report, index=index, tally=tally)
    network = network if network is not None else SocketNetwork()
    session = ClientSession(config, report, keep_exchanges=tally is None)
    if tally is not None:
        tally.started(index, session)
    started = trio.current_time()
    error: TrioEchoError | None = None
    try:
        await _converse(config, network, session, Pacer.for_session(config, index, started), tally)
    except TrioEchoError as exc:
        error = exc
    result = session.result(index, error, trio.current_time() - started)
    if tally is not None:
        tally.finished(result)
    return result


async def run_client(
    config: ClientConfig,
    *,
    network: Network | None = None,
    report: Report = silent,
    tally: ClientTally | None = None,
) -> list[SessionResult]:
    """Run ``config.connections`` sessions at once; results in session order.

    With one connection every line of the conversation goes to *report*; with
    more, only the failures do.
    """
    if config.connections == 1:
        return [await run_session(config, network=network, report=report, tally=tally)]
    results: list[SessionResult | None] = [None] * config.connections

    async def one(index: int) -> None:
        results[index] = await run_session(config, network=network, index=index, tally=tally)

    async with trio.open_nursery() as nursery:
        for index in range(config.connections):
            nursery.start_soon(one, index)
    return [result for result in results if result is not None]


async def _converse(
    config: ClientConfig,
    network: Network,
    session: ClientSession,
    pacer: Pacer,
    tally: ClientTally | None,
) -> None:
    """Connect, then send each message when *pacer* says, timing its round trip into *tally*."""
    limit = math.inf if config.timeout is None else config.timeout
    where = session.where
    try:
        with trio.fail_after(limit):
            stream = await _connect(config, network)
    except trio.TooSlowError:
        raise session.connect_timeout_error(limit) from None
    except (trio.BrokenResourceError, OSError) as exc:  # a TLS handshake that failed
        raise _broken(exc, f"connect to {where}") from None
    async with stream:
        try:
            with trio.CancelScope() as deadline:
                await _exchange_all(stream, config, session, pacer, tally, deadline)
        except (trio.BrokenResourceError, OSError) as exc:
            raise _broken(exc, f"talking to {where}") from None
        if deadline.cancelled_caught:
            raise session.timeout_error(limit)


async def _exchange_all(
    stream: trio.abc.Stream,
    config: ClientConfig,
    session: ClientSession,
    pacer: Pacer,
    tally: ClientTally | None,
    deadline: trio.CancelScope,
) -> None:
    """The hot loop: each message sent when due, its reply read, its latency recorded.

    One cancel scope serves every message, its deadline moved on for each
    (send and reply within ``config.timeout``), rather than a scope entered
    and left per message; the methods and sizes are looked up once.
    """
    limit = math.inf if config.timeout is None else config.timeout
    receive_some, send_all, receive_size = stream.receive_some, stream.send_all, config.receive_size
    now, receive, next_outgoing = trio.current_time, session.receive, session.next_outgoing
    record = tally.record_latency if tally is not None else None
    while (intended := pacer.next_send(now())) is not None:
        if (outgoing := next_outgoing()) is None:
            return
        if intended > now():
            await trio.sleep_until(intended)
        deadline.deadline = now() + limit
        await send_all(outgoing)
        while not receive(bytes(await receive_some(receive_size))):
            pass
        if record is not None:
            record(now() - intended)


def _broken(exc: BaseException, context: str) -> TrioEchoError:
    """The named error for a stream that broke while doing *context*."""
    cause = root_os_error(exc)
    if cause is None:
        return ConnectionLost(f"{context}: the connection broke")
    return from_os_error(cause, context)


async def _send_proxy_header(stream: trio.abc.Stream, version: int) -> None:
    """Open the connection with a PROXY header naming its endpoints (see ``proxy_client``)."""
    try:
        await stream.send_all(header_for_stream(version, stream))
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise


async def _connect(config: ClientConfig, network: Network) -> trio.abc.Stream:
    """A stream to the server, over the configured transport (TLS handshake done)."""
    if config.transport is Transport.UNIX:
        assert config.path is not None
        stream = await network.connect_unix(config.path)
    else:
        stream = await network.connect(config.host, config.port)
    if config.proxy_protocol is not None:
        await _send_proxy_header(stream, config.proxy_protocol)
    if config.transport is not Transport.TLS:
        return stream
    settings = config.tls or TlsClientSettings()
    secure = trio.SSLStream(
        stream,
        shared_client_context(settings),
        server_hostname=settings.hostname_for(config.host),
    )
    try:
        await secure.do_handshake()
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return secure
