"""The client session, without any I/O: what it sends, what it reports, how it fails."""

from __future__ import annotations

import pytest

from trio_echo.config import ClientConfig, WireProtocol
from trio_echo.errors import IncompleteReply, Timeout
from trio_echo.session import ClientSession, Exchange, SessionResult, summarise
from trio_echo.wire import CONVERSATIONAL


def test_the_seed_session_sends_seven_messages_and_reports_each_line() -> None:
    lines: list[str] = []
    session = ClientSession(ClientConfig(), lines.append)
    while (outgoing := session.next_outgoing()) is not None:
        assert session.receive(b"Re:" + outgoing)
    assert session.done
    assert [exchange.sent for exchange in session.exchanges] == [
        f"{i} - Send Message".encode() for i in range(7)
    ]
    assert lines[:2] == ['sent: "0 - Send Message"', 'received: "Re:0 - Send Message"']
    assert len(lines) == 14


def test_a_greeting_is_shown_without_its_newline() -> None:
    lines: list[str] = []
    session = ClientSession(ClientConfig(protocol=WireProtocol.GREETING), lines.append)
    assert session.next_outgoing() == b"Hello from client\n"
    assert session.receive(b"Hello From Server\n")
    assert lines == ['sent: "Hello from client"', 'received: "Hello From Server"']
    assert session.exchanges == [Exchange(b"Hello from client", b"Hello From Server\n")]


def test_silence_times_out_as_no_reply() -> None:
    session = ClientSession(ClientConfig(count=1))
    session.next_outgoing()
    error = session.timeout_error(3)
    assert isinstance(error, Timeout)
    assert str(error) == "no reply from 127.0.0.1:3100 within 3 s"


def test_a_truncated_reply_times_out_as_incomplete_and_shows_what_came() -> None:
    message = "x" * 124
    session = ClientSession(ClientConfig(count=1, message=message))
    session.next_outgoing()
    assert not session.receive(b"Re:" + b"x" * 123)
    error = session.timeout_error(3)
    assert isinstance(error, IncompleteReply)
    assert "still incomplete after 3 s: got 126 bytes" in str(error)


def test_summary_counts_sessions_and_round_trips() -> None:
    ok = SessionResult(0, (Exchange(b"a", b"Re:a"),) * 7, None, 0.1)
    failed = SessionResult(1, (), Timeout("no reply"), 0.1)
    line = summarise([ok, failed], 2.0)
    assert line.startswith("1/2 sessions ok, 7 round trips in 2.000 s")


@pytest.mark.parametrize("protocol", list(CONVERSATIONAL))
def test_server_close_mid_reply_is_incomplete(protocol: WireProtocol) -> None:
    session = ClientSession(ClientConfig(protocol=protocol, count=1))
    session.next_outgoing()
    with pytest.raises(IncompleteReply):
        session.receive(b"")


def test_a_connect_timeout_names_the_server_as_an_address() -> None:
    session = ClientSession(ClientConfig(host="::1", port=3100))
    error = session.connect_timeout_error(30)
    assert isinstance(error, Timeout)
    assert str(error) == "connect to [::1]:3100: no answer within 30 s"
