"""The ``echo`` protocol (RFC 862): every byte back, unchanged."""

from __future__ import annotations

from ..errors import WrongReply
from ..escape import escape
from .base import AnsweringServer, ClientCodec
from .events import ReplyReceived


class EchoServer(AnsweringServer):
    """Server side: sends back what it reads until the peer closes."""

    __slots__ = ()

    def _answer(self, data: bytes) -> bytes:
        return data


class EchoClient(ClientCodec):
    """Client side: the reply must be the message, byte for byte."""

    def __init__(self) -> None:
        super().__init__()
        self._expected = b""
        self._received = bytearray()

    def _start(self, message: bytes) -> bytes:
        self._expected = message
        self._received = bytearray()
        return message

    def _on_data(self, data: bytes) -> ReplyReceived | None:
        offset = len(self._received)
        self._received += data
        if not self._expected.startswith(data, offset):
            raise WrongReply(
                f"echo {escape(bytes(self._received))} differs from {escape(self._expected)}"
            )
        if len(self._received) == len(self._expected):
            return ReplyReceived(bytes(self._received))
        return None

    def _received_so_far(self) -> bytes:
        return bytes(self._received)
