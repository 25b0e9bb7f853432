"""Quick checks that each protocol's codec holds the seed's conversation."""

from __future__ import annotations

from trio_echo.codec import Close, Received, ReplyReceived, Send, client_codec, server_codec
from trio_echo.config import Protocol


def test_reply_server_answers_each_chunk() -> None:
    codec = server_codec(Protocol.REPLY)
    assert codec.receive_data(b"0 - Send Message") == [
        Received(b"0 - Send Message"),
        Send(b"Re:0 - Send Message"),
    ]
    assert codec.receive_eof() == [Close()]
    assert codec.finished


def test_reply_client_accepts_reply() -> None:
    codec = client_codec(Protocol.REPLY)
    assert codec.send(b"hi") == b"hi"
    assert codec.receive_data(b"Re:") == []
    assert codec.receive_data(b"hi") == [ReplyReceived(b"Re:hi")]
    assert not codec.awaiting_reply
