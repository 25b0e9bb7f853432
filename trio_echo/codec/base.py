"""The two sides of a connection, independent of protocol.

:class:`ServerCodec` and :class:`ClientCodec` hold the state every protocol
shares (open or finished, a reply awaited or not) and check that the driver
uses them in order; each protocol module fills in what its bytes mean. No
I/O, no clock: input arrives through ``receive_data`` and ``receive_eof``,
output leaves as bytes and events.
"""

from __future__ import annotations

import abc
from typing import ClassVar

import attrs

from ..errors import IncompleteReply, LocalProtocolError, UnexpectedData
from ..escape import escape
from .events import ClientEvent, Close, Received, Send, ServerEvent


@attrs.frozen
class Opening:
    """What a server knows of a connection as it opens, for a protocol that speaks first."""

    listener: str
    """The listener's spec, as the server shows it (``tcp://127.0.0.1:7``)."""
    client: str
    """The address the server saw (behind a ``?proxy=`` listener, the proxy's)."""
    original: str | None = None
    """The client's address a PROXY header gave; None without one."""


class ServerCodec(abc.ABC):
    """Server side of one connection: bytes from the peer in, events out."""

    __slots__ = ("_finished", "_peer_closed")

    def __init__(self) -> None:
        self._finished = False
        self._peer_closed = False

    @property
    def finished(self) -> bool:
        """True once :class:`~trio_echo.codec.events.Close` has been emitted."""
        return self._finished

    @property
    def peer_closed(self) -> bool:
        """True once :meth:`receive_eof` has been called: the peer ended its side."""
        return self._peer_closed

    speaks_first: ClassVar[bool] = False
    """True for a protocol whose server sends before reading (``whoami``): see :meth:`open`."""

    def open(self, opening: Opening) -> list[ServerEvent]:
        """The events as the connection opens, before anything is read.

        Empty for a protocol whose client speaks first; a driver need only
        call it when :attr:`speaks_first` is set.
        """
        if self._finished:
            raise LocalProtocolError("the conversation is over: it cannot open again")
        events = self._on_open(opening)
        self._finished = bool(events) and isinstance(events[-1], Close)
        return events

    def _on_open(self, opening: Opening) -> list[ServerEvent]:
        return []

    def receive_data(self, data: bytes) -> list[ServerEvent]:
        """Feed bytes read from the peer; return what happened and what to send.

        Raises :class:`~trio_echo.errors.RemoteProtocolError` when the peer
        breaks the protocol (a line past its limit, for instance).
        """
        if self._finished:
            raise LocalProtocolError("the conversation is over: no more data can be fed")
        if not data:
            raise LocalProtocolError(
                "receive_data() needs bytes; signal end of input with receive_eof()"
            )
        events = self._on_data(data)
        self._finished = bool(events) and isinstance(events[-1], Close)
        return events

    def answer(self, data: bytes) -> bytes | None:
        """The bytes to send for *data*, when that is all reading it does; else None.

        A shortcut for drivers that do not report each message: for a protocol
        whose every read is simply answered (:class:`AnsweringServer`) it skips
        building events. None means "call :meth:`receive_data`", which it
        always is for a protocol with more to say (``greeting``), for empty
        *data* and once the conversation is over.
        """
        return None

    def receive_eof(self) -> list[ServerEvent]:
        """Signal that the peer closed its side; return the final events."""
        if self._finished:
            raise LocalProtocolError("the conversation is over: end of input was already handled")
        events = self._on_eof()
        self._finished = self._peer_closed = True
        return events

    @abc.abstractmethod
    def _on_data(self, data: bytes) -> list[ServerEvent]: ...

    @abc.abstractmethod
    def _on_eof(self) -> list[ServerEvent]: ...


class AnsweringServer(ServerCodec):
    """A server side that answers every read at once and ends only when the peer does.

    A protocol of this kind (``reply``, ``echo``) says only how a read is
    answered; its events follow, and so does the :meth:`answer` shortcut.
    """

    __slots__ = ()

    def answer(self, data: bytes) -> bytes | None:
        if self._finished or not data:
            return None
        return self._answer(data)

    @abc.abstractmethod
    def _answer(self, data: bytes) -> bytes: ...

    def _on_data(self, data: bytes) -> list[ServerEvent]:
        return [Received(data), Send(self._answer(data))]

    def _on_eof(self) -> list[ServerEvent]:
        return [Close()]


class ClientCodec(abc.ABC):
    """Client side of one connection: messages out, replies recognised."""

    def __init__(self) -> None:
        self._awaiting: bytes | None = None
        self._closed = False

    @property
    def awaiting_reply(self) -> bool:
        """True between :meth:`send` and the matching reply."""
        return self._awaiting is not None

    @property
    def partial_reply(self) -> bytes:
        """Bytes of the awaited reply received so far (empty when none is awaited)."""
        return b"" if self._awaiting is None else self._received_so_far()

    def send(self, message: bytes) -> bytes:
        """Return the bytes to write for *message*, and start awaiting its reply."""
        if self._closed:
            raise LocalProtocolError("the server has closed the connection")
        if self._awaiting is not None:
            raise LocalProtocolError("the previous reply has not arrived yet")
        if not message:
            raise LocalProtocolError("a message must have at least one byte")
        self._awaiting = message
        return self._start(message)

    def receive_data(self, data: bytes) -> list[ClientEvent]:
        """Feed bytes from the server; return the reply once it is whole.

        Raises :class:`~trio_echo.errors.WrongReply` as soon as the bytes
        cannot be the reply, and :class:`~trio_echo.errors.UnexpectedData` for
        bytes while no reply is awaited.
        """
        if self._closed:
            raise LocalProtocolError(
                "the server has closed the connection: no more data can be fed"
            )
        if not data:
            raise LocalProtocolError(
                "receive_data() needs bytes; signal end of input with receive_eof()"
            )
        if self._awaiting is None:
            self._on_unawaited(data)
            return []
        reply = self._on_data(data)
        if reply is None:
            return []
        self._awaiting = None
        return [reply]

    def receive_eof(self) -> list[ClientEvent]:
        """Signal that the server closed; fails if a reply was still awaited."""
        self._closed = True
        if self._awaiting is None:
            return []
        reply = self._on_eof()
        if reply is None:
            raise IncompleteReply(
                f"the server closed the connection before the whole reply to "
                f"{escape(self._awaiting)} arrived (got {escape(self._received_so_far())})"
            )
        self._awaiting = None
        return [reply]

    @abc.abstractmethod
    def _start(self, message: bytes) -> bytes: ...

    @abc.abstractmethod
    def _on_data(self, data: bytes) -> ClientEvent | None: ...

    def _on_eof(self) -> ClientEvent | None:
        return None

    def _on_unawaited(self, data: bytes) -> None:
        """Bytes arrived while no reply was awaited; only a late part of the last one may."""
        raise UnexpectedData(f"the server sent {escape(data)} while no reply was expected")

    @abc.abstractmethod
    def _received_so_far(self) -> bytes: ...
