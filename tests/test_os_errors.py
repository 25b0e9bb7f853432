"""The error boundary: each layer sees the error its policy promises, errno intact.

Translations are checked one by one against the written table, then through
what Trio really does to an OSError (a broken stream's cause, a failed
``open_tcp_stream``'s group of per-address errors), then as a server's
report of a failed connection. The one real-socket test refuses a
connection on loopback under a ``fail_after`` bound.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import sys

import attrs
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from trio_echo.address import Address
from trio_echo.connection_log import (
    ConnectionEvent,
    ConnectionFailed,
    ConnectionLog,
    ServerStats,
)
from trio_echo.errors import (
    AddressInUse,
    ConnectionLost,
    ConnectionRefused,
    HostNotFound,
    LineTooLong,
    NetworkError,
    Timeout,
)
from trio_echo.os_errors import (
    CLOSED_ERRNOS,
    NAMED_ERRORS,
    Failure,
    closed_socket_error,
    describe_failure,
    describe_os_error,
    from_os_error,
    root_os_error,
    stream_error,
    stream_errors,
)

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup, ExceptionGroup

POLICY = {
    errno.EADDRINUSE: AddressInUse,
    errno.ECONNREFUSED: ConnectionRefused,
    errno.ECONNRESET: ConnectionLost,
    errno.EPIPE: ConnectionLost,
    errno.ECONNABORTED: ConnectionLost,
    errno.ETIMEDOUT: Timeout,
}
"""The named error each errno stands for, as the policy writes it."""

ALL_ERRNOS = sorted(errno.errorcode)


def os_error(code: int) -> OSError:
    """What the kernel raises for *code* (the matching OSError subclass)."""
    return OSError(code, os.strerror(code))


def broken_by(code: int) -> trio.BrokenResourceError:
    """A stream error as a Trio stream raises it for *code*, cause chained."""
    try:
        with stream_errors():
            raise os_error(code)
    except trio.BrokenResourceError as exc:
        return exc
    raise AssertionError("stream_errors() raised nothing")


# --- the public boundary: named errors --------------------------------------------


def test_the_table_is_the_written_policy() -> None:
    assert dict(NAMED_ERRORS) == POLICY


@pytest.mark.parametrize(("code", "kind"), POLICY.items(), ids=errno.errorcode.get)
def test_each_named_errno_becomes_its_error(code: int, kind: type[NetworkError]) -> None:
    error = from_os_error(os_error(code), "connect to 127.0.0.1:3100")
    assert type(error) is kind
    assert error.errno == code
    assert str(error) == f"connect to 127.0.0.1:3100: {os.strerror(code)} (errno {code})"


def test_an_errno_outside_the_table_is_a_plain_network_error() -> None:
    error = from_os_error(os_error(errno.EHOSTUNREACH), "connect to 10.0.0.1:7")
    assert type(error) is NetworkError
    assert error.errno == errno.EHOSTUNREACH
    assert str(error).startswith("connect to 10.0.0.1:7: ")


@given(st.sampled_from(ALL_ERRNOS))
def test_every_errno_survives_translation(code: int) -> None:
    error = from_os_error(os_error(code), "listen on [::1]:0")
    assert error.errno == code
    assert type(error) is NAMED_ERRORS.get(code, NetworkError)
    assert str(error).startswith("listen on [::1]:0: ")


def test_an_unresolvable_host_is_host_not_found() -> None:
    gai = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    error = from_os_error(gai, "connect to nowhere.invalid:7")
    assert type(error) is HostNotFound
    assert error.errno == socket.EAI_NONAME
    assert str(error) == "connect to nowhere.invalid:7: host not found (Name or service not known)"


@pytest.mark.parametrize("timeout", [TimeoutError("timed out"), TimeoutError()])
def test_a_timeout_without_errno_is_timeout(timeout: TimeoutError) -> None:
    error = from_os_error(timeout, "connect to 127.0.0.1:9")
    assert type(error) is Timeout
    assert error.errno is None
    assert str(error) == "connect to 127.0.0.1:9: timed out"


def test_the_kernels_timeout_keeps_its_errno() -> None:
    error = from_os_error(os_error(errno.ETIMEDOUT), "connect to 127.0.0.1:9")
    assert type(error) is Timeout
    assert error.errno == errno.ETIMEDOUT


# --- digging the errno out of Trio's wrapping -------------------------------------


def test_errno_is_found_under_a_broken_stream() -> None:
    broken = broken_by(errno.ECONNRESET)
    cause = root_os_error(broken)
    assert isinstance(cause, ConnectionResetError)
    assert cause.errno == errno.ECONNRESET


def test_errno_is_found_in_a_group_of_per_address_errors() -> None:
    group = ExceptionGroup("per address", [ValueError("x"), os_error(errno.ECONNREFUSED)])
    summary = OSError("all attempts to connect to localhost:9 failed")
    summary.__cause__ = group
    error = from_os_error(summary, "connect to localhost:9")
    assert type(error) is ConnectionRefused
    assert error.errno == errno.ECONNREFUSED


def test_errno_is_found_in_a_nested_group() -> None:
    inner = BaseExceptionGroup("inner", [os_error(errno.EPIPE)])
    outer = BaseExceptionGroup("outer", [KeyError("k"), inner])
    cause = root_os_error(outer)
    assert cause is not None
    assert cause.errno == errno.EPIPE


def test_a_cycle_of_causes_ends_the_search() -> None:
    first, second = ValueError("a"), ValueError("b")
    first.__cause__, second.__cause__ = second, first
    assert root_os_error(first) is None


def test_an_os_error_without_errno_is_its_own_root() -> None:
    bare = OSError("no number")
    assert root_os_error(bare) is bare
    assert root_os_error(RuntimeError("unrelated")) is None


async def test_a_refused_connection_is_connection_refused_through_trio() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with trio.fail_after(5):
        with pytest.raises(OSError) as caught:
            await trio.open_tcp_stream("127.0.0.1", port)
    error = from_os_error(caught.value, f"connect to {Address('127.0.0.1', port)}")
    assert type(error) is ConnectionRefused
    assert error.errno == errno.ECONNREFUSED


def test_describe_os_error_drops_the_decoration() -> None:
    assert describe_os_error(os_error(errno.ECONNRESET)) == os.strerror(errno.ECONNRESET)
    assert describe_os_error(socket.gaierror(socket.EAI_NONAME, "no such name")) == "no such name"
    assert describe_os_error(OSError("plain")) == "plain"
    assert describe_os_error(OSError()) == "OSError"


# --- streams: Trio's stream errors ------------------------------------------------


@pytest.mark.parametrize("code", sorted(CLOSED_ERRNOS), ids=errno.errorcode.get)
def test_a_closed_descriptor_is_a_closed_resource(code: int) -> None:
    exc = os_error(code)
    error = stream_error(exc)
    assert type(error) is trio.ClosedResourceError
    assert error.__cause__ is exc


@given(st.sampled_from([code for code in ALL_ERRNOS if code not in CLOSED_ERRNOS]))
def test_anything_else_is_a_broken_resource_with_its_cause(code: int) -> None:
    exc = os_error(code)
    error = stream_error(exc)
    assert type(error) is trio.BrokenResourceError
    assert error.__cause__ is exc
    assert str(error) == f"socket connection broken: {exc}"


def test_stream_errors_translates_os_errors_only() -> None:
    assert broken_by(errno.EPIPE).__cause__.errno == errno.EPIPE  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="not a socket error"), stream_errors():
        raise ValueError("not a socket error")


def test_a_real_closed_socket_is_a_closed_resource() -> None:
    left, right = socket.socketpair()
    right.close()
    left.close()
    with pytest.raises(trio.ClosedResourceError), stream_errors():
        left.recv(1)


def test_the_blocking_sides_closed_socket_is_the_trio_sides_closed_resource() -> None:
    closed = closed_socket_error()
    assert closed.errno == errno.EBADF
    assert closed.strerror == os.strerror(errno.EBADF)
    assert type(stream_error(closed)) is trio.ClosedResourceError


# --- a connection's failure -------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (
            ConnectionLost("talking to x: reset", errno.ECONNRESET),
            Failure("talking to x: reset", errno.ECONNRESET),
        ),
        (NetworkError("peer took no data for 5 s"), Failure("peer took no data for 5 s")),
        (LineTooLong(10), Failure("line longer than 10 bytes")),
        (os_error(errno.ECONNRESET), Failure(os.strerror(errno.ECONNRESET), errno.ECONNRESET)),
        (broken_by(errno.EPIPE), Failure(os.strerror(errno.EPIPE), errno.EPIPE)),
        (ValueError("boom"), Failure("internal error: ValueError: boom", internal=True)),
        (
            trio.BrokenResourceError("no cause"),
            Failure("internal error: BrokenResourceError: no cause", internal=True),
        ),
    ],
    ids=[
        "named-error",
        "named-without-errno",
        "protocol-error",
        "os-error",
        "broken-stream",
        "bug",
        "uncaused-stream-error",
    ],
)
def test_the_failure_a_connection_reports(exc: BaseException, expected: Failure) -> None:
    assert describe_failure(exc) == expected


@given(st.sampled_from(ALL_ERRNOS))
def test_a_failures_errno_survives_the_stream_layer(code: int) -> None:
    failure = describe_failure(stream_error(os_error(code)))
    assert failure.errno == code
    assert not failure.internal


def test_a_failure_is_frozen() -> None:
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        Failure("x").message = "y"  # type: ignore[misc]


def failed_record(exc: Exception) -> list[ConnectionFailed]:
    """The failures a connection's log reports when *exc* ends it."""
    events: list[ConnectionEvent] = []
    log = ConnectionLog(
        1, Address("127.0.0.1", 5000), sink=events.append, clock=lambda: 0.0, stats=ServerStats()
    )
    log.failed_with(exc, 0, 0)
    return [event for event in events if isinstance(event, ConnectionFailed)]


def test_a_record_reports_what_describe_failure_says(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="trio_echo.server"):
        [reset] = failed_record(broken_by(errno.ECONNRESET))
        assert not caplog.records
        [crash] = failed_record(ValueError("boom"))
    assert (reset.message, reset.errno) == (os.strerror(errno.ECONNRESET), errno.ECONNRESET)
    assert (crash.message, crash.errno) == ("internal error: ValueError: boom", None)
    assert [r.exc_info[0] for r in caplog.records if r.exc_info] == [ValueError]
