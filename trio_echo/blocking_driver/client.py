"""The blocking client: the note's session on a plain socket, a thread per session."""

from __future__ import annotations

import math

from ..client_tally import ClientTally
from ..config import ClientConfig
from ..errors import ConfigError, TrioEchoError
from ..os_errors import from_os_error
from ..pacing import Pacer
from ..session import ClientSession, Report, SessionResult, silent
from ..transport.proxy_client import header_for_stream
from ..transport.spec import Transport
from ..transport.tls import TlsClientSettings, shared_client_context
from .datagram_client import run_datagram_session
from .runtime import Runtime, SocketRuntime, Stream
from .tls_stream import TlsStream


def run_session(
    config: ClientConfig,
    *,
    runtime: Runtime | None = None,
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
    refuse_depth(config)
    if config.transport is Transport.UDP:
        return run_datagram_session(config, report=report, index=index, tally=tally)
    runtime = runtime if runtime is not None else SocketRuntime()
    session = ClientSession(config, report, keep_exchanges=tally is None)
    if tally is not None:
        tally.started(index, session)
    started = runtime.monotonic()
    error: TrioEchoError | None = None
    try:
        pacer = Pacer.for_session(config, index, started)
        _converse(config, runtime, session, pacer, tally)
    except TrioEchoError as exc:
        error = exc
    result = session.result(index, error, runtime.monotonic() - started)
    if tally is not None:
        tally.finished(result)
    return result


def run_client(
    config: ClientConfig,
    *,
    runtime: Runtime | None = None,
    report: Report = silent,
    tally: ClientTally | None = None,
) -> list[SessionResult]:
    """Run ``config.connections`` sessions at once, a thread each; results in session order."""
    refuse_depth(config)
    runtime = runtime if runtime is not None else SocketRuntime()
    if config.connections == 1:
        return [run_session(config, runtime=runtime, report=report, tally=tally)]
    results: list[SessionResult | None] = [None] * config.connections

    def one(index: int) -> None:
        results[index] = run_session(config, runtime=runtime, index=index, tally=tally)

    workers = [
        runtime.start_thread(lambda index=index: one(index), f"trio-echo client {index}")  # type: ignore[misc]
        for index in range(config.connections)
    ]
    for worker in workers:
        worker.join()
    return [result for result in results if result is not None]


DEPTH_REFUSED = "--depth needs the Trio driver: the blocking client holds one message in flight"


def refuse_depth(config: ClientConfig) -> None:
    """Raise ConfigError for ``config.depth`` above 1: each session here is lockstep."""
    if config.depth != 1:
        raise ConfigError(DEPTH_REFUSED)


def _converse(
    config: ClientConfig,
    runtime: Runtime,
    session: ClientSession,
    pacer: Pacer,
    tally: ClientTally | None,
) -> None:
    """Connect, then send each message when *pacer* says, timing its round trip into *tally*."""
    where = session.where
    limit = math.inf if config.timeout is None else config.timeout
    try:
        stream = _connect(config, runtime)
    except TimeoutError:
        raise session.connect_timeout_error(limit) from None
    except OSError as exc:  # a TLS handshake that failed
        raise from_os_error(exc, f"connect to {where}") from None
    clock = runtime.monotonic
    try:
        while (intended := pacer.next_send(clock())) is not None:
            if (outgoing := session.next_outgoing()) is None:
                break
            if (wait := intended - clock()) > 0:
                runtime.sleep(wait)
            stream.sendall(outgoing, config.timeout)
            while not session.receive(stream.recv(config.receive_size, config.timeout)):
                pass
            if tally is not None:
                tally.record_latency(clock() - intended)
    except TimeoutError:
        raise session.timeout_error(limit) from None
    except OSError as exc:
        raise from_os_error(exc, f"talking to {where}") from None
    finally:
        stream.close()


def _connect(config: ClientConfig, runtime: Runtime) -> Stream:
    """A stream to the server, over the configured transport (TLS handshake done)."""
    if config.transport is Transport.UNIX:
        assert config.path is not None
        stream = runtime.connect_unix(config.path, config.timeout)
    else:
        stream = runtime.connect(config.host, config.port, config.timeout)
    if config.proxy_protocol is not None:
        try:
            stream.sendall(header_for_stream(config.proxy_protocol, stream), config.timeout)
        except BaseException:
            stream.close()
            raise
    if config.transport is not Transport.TLS:
        return stream
    settings = config.tls or TlsClientSettings()
    secure = TlsStream(
        stream,
        shared_client_context(settings),
        server_side=False,
        server_hostname=settings.hostname_for(config.host),
    )
    try:
        secure.handshake(config.timeout, runtime.monotonic)
    except BaseException:
        stream.close()
        raise
    return secure
