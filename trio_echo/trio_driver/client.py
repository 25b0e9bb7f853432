"""The Trio client: the note's session, any number of them at once.

:func:`run_session` holds one conversation over one connection;
:func:`run_client` runs ``config.connections`` of them in one nursery and
gathers their results. One session's failure is recorded in its result and
never cancels the others.

A session that only measures (counted into a tally, unpaced, printing
nothing; or one with ``config.depth`` above 1) is a
:class:`~trio_echo.session.MeasuringSession`; over a socket on Linux the
run's :class:`~.dispatcher.Dispatcher` reads its replies and writes its next
messages, as it answers the Trio server's connections, so a round trip
costs no scheduler pass of the session's own. Any other session holds a
:class:`~trio_echo.session.ClientSession`, one message at a time, paced.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import trio
from trio.lowlevel import RunVar, current_clock

from ..client_tally import ClientTally
from ..config import ClientConfig, WireProtocol
from ..errors import ConnectionLost, TrioEchoError
from ..latency import LatencyHistogram
from ..os_errors import from_os_error, root_os_error
from ..pacing import Pacer
from ..session import ClientSession, MeasuringSession, Report, SessionResult, silent
from ..transport.proxy_client import header_for_stream
from ..transport.spec import Transport
from ..transport.tls import TlsClientSettings, shared_client_context
from .datagram_client import run_datagram_session
from .dispatcher import IDLE, Dispatcher, current_dispatcher, dispatcher_available
from .fast_stream import FastSocketStream
from .network import Network, SocketNetwork

_Exchange = Callable[[trio.abc.Stream, trio.CancelScope], Awaitable[None]]
"""A session's conversation over a connected stream, within the reply-timeout scope."""


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
    session: ClientSession | MeasuringSession
    started = trio.current_time()
    if _measuring(config, report, tally):
        record = None if tally is None else _latencies_of_run(tally).record
        session = MeasuringSession(config, record)
        exchange = _measured_exchange(config, session, started)
    else:
        session = ClientSession(config, report, keep_exchanges=tally is None)
        pacer = Pacer.for_session(config, index, started)
        exchange = _paced_exchange(config, session, pacer, tally)
    if tally is not None:
        tally.started(index, session)
    error: TrioEchoError | None = None
    try:
        await _converse(config, network, session, exchange)
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


_RUN_LATENCIES: RunVar[dict[int, tuple[ClientTally, LatencyHistogram]]] = RunVar(
    "trio_echo_client_latencies"
)


def _latencies_of_run(tally: ClientTally) -> LatencyHistogram:
    """This Trio run's own histogram in *tally*: its sessions record without the tally's lock."""
    try:
        histograms = _RUN_LATENCIES.get()
    except LookupError:
        histograms = {}
        _RUN_LATENCIES.set(histograms)
    entry = histograms.get(id(tally))
    if entry is None:
        entry = histograms[id(tally)] = (tally, tally.own_latencies())
    return entry[1]


def _measuring(config: ClientConfig, report: Report, tally: ClientTally | None) -> bool:
    """Whether a session only measures: counted into a tally, unpaced, reporting no lines.

    A session with several messages in flight always does (it keeps no
    exchanges and reports no lines: ``config.depth`` is for load).
    """
    if config.depth > 1:
        return True
    return (
        tally is not None
        and report is silent
        and config.rate is None
        and config.protocol in (WireProtocol.REPLY, WireProtocol.ECHO)
    )


async def _converse(
    config: ClientConfig,
    network: Network,
    session: ClientSession | MeasuringSession,
    exchange: _Exchange,
) -> None:
    """Connect, then hold the conversation *exchange* holds; its failures as named errors."""
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
                await exchange(stream, deadline)
        except (trio.BrokenResourceError, OSError) as exc:
            raise _broken(exc, f"talking to {where}") from None
        if deadline.cancelled_caught:
            raise session.timeout_error(limit)


def _paced_exchange(
    config: ClientConfig, session: ClientSession, pacer: Pacer, tally: ClientTally | None
) -> _Exchange:
    """Each message sent when *pacer* says, its reply read, its latency recorded in *tally*.

    One cancel scope serves every message, its deadline moved on for each
    (send and reply within ``config.timeout``), rather than a scope entered
    and left per message; the methods and sizes are looked up once.
    """
    limit = math.inf if config.timeout is None else config.timeout

    async def exchange(stream: trio.abc.Stream, deadline: trio.CancelScope) -> None:
        receive_some, send_all = stream.receive_some, stream.send_all
        receive_size = config.receive_size
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

    return exchange


def _measured_exchange(
    config: ClientConfig, session: MeasuringSession, started: float
) -> _Exchange:
    """``config.depth`` messages kept in flight until the run's time or count is up.

    Over a socket on Linux the replies are read by the run's
    :class:`~.dispatcher.Dispatcher`, which hands each read to a
    :class:`_Measurement` and writes the messages it answers with, without
    waking this session's task (see :func:`_exchange_inline`); over any other
    stream the task reads and writes itself (:func:`_exchange_in_task`).
    """
    limit = math.inf if config.timeout is None else config.timeout
    until = math.inf if config.duration is None else started + config.duration

    async def exchange(stream: trio.abc.Stream, deadline: trio.CancelScope) -> None:
        if trio.current_time() >= until:  # the run's time went on connecting
            return
        first = session.take(config.depth, trio.current_time())
        deadline.deadline = trio.current_time() + limit
        await stream.send_all(first)
        if isinstance(stream, FastSocketStream) and dispatcher_available():
            await _exchange_inline(stream, config, session, until, limit, deadline)
        else:
            await _exchange_in_task(stream, config, session, until, limit, deadline)

    return exchange


class _Measurement:
    """A measuring session as the dispatcher drives it (its ``Conversation``).

    Each read goes to the session, which records the replies it completed;
    as many new messages as replies completed are the answer, so *depth*
    stay in flight until *until*, after which the session only drains.
    """

    __slots__ = ("_now", "_session", "_until", "bytes_out")

    def __init__(self, session: MeasuringSession, until: float) -> None:
        self._session = session
        self._until = until
        self.bytes_out = 0
        """What the dispatcher wrote (the session keeps its own account of each message)."""
        self._now = current_clock().current_time
        """``trio.current_time``, minus its run lookup on every read."""

    @property
    def finished(self) -> bool:
        return self._session.done

    def respond(self, data: bytes) -> bytes:
        session = self._session
        now = self._now()
        answered = session.receive(data, now)
        if not answered:
            return b""
        if now >= self._until:
            session.stop()
            return b""
        return session.take(answered, now)


async def _exchange_inline(
    stream: FastSocketStream,
    config: ClientConfig,
    session: MeasuringSession,
    until: float,
    limit: float,
    deadline: trio.CancelScope,
) -> None:
    """Wait at the dispatcher while it holds the conversation; step in only when needed.

    The task is woken to send what the kernel did not take at once, at the
    end, and when no byte came for a while: each reply must still complete
    within *limit* of its send, so the dispatcher is given the oldest
    message's deadline as its cap and the task checks it on waking, serving
    on when a younger message has become the oldest.
    """
    dispatcher: Dispatcher = current_dispatcher()
    seat = Dispatcher.seat_for(stream)
    measurement = _Measurement(session, until)
    receive_size = config.receive_size
    while not session.done:
        oldest = session.oldest_sent_at()
        cap = math.inf if oldest is None else oldest + limit
        deadline.deadline = math.inf
        served = await dispatcher.serve_until_needed(
            seat, measurement, receive_size=receive_size, idle=limit, cap=cap
        )
        if served is IDLE:
            oldest = session.oldest_sent_at()
            if oldest is not None and trio.current_time() >= oldest + limit:
                raise session.timeout_error(limit)
        elif isinstance(served, bytes) and served:  # no send_timeout: no STALLED either
            deadline.deadline = trio.current_time() + limit
            await stream.send_all(served)
        elif not session.done:
            raise ConnectionLost(f"talking to {session.where}: the server closed the connection")


async def _exchange_in_task(
    stream: trio.abc.Stream,
    config: ClientConfig,
    session: MeasuringSession,
    until: float,
    limit: float,
    deadline: trio.CancelScope,
) -> None:
    """The same :class:`_Measurement`, its reads and writes done by the task itself."""
    measurement = _Measurement(session, until)
    receive_some, send_all, receive_size = stream.receive_some, stream.send_all, config.receive_size
    while not session.done:
        oldest = session.oldest_sent_at()
        deadline.deadline = math.inf if oldest is None else oldest + limit
        if outgoing := measurement.respond(bytes(await receive_some(receive_size))):
            deadline.deadline = trio.current_time() + limit
            await send_all(outgoing)


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
