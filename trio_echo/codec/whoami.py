"""The ``whoami`` protocol: the server says who it is and whom it sees, then closes.

As a connection opens the server sends one line of JSON and ends the
conversation::

    {"server": NAME, "pid": PID, "listener": SPEC, "client": "HOST:PORT", "original": null}

``client`` is the address the server saw (behind a ``?proxy=`` listener,
the proxy's); ``original`` is the one a PROXY header gave, or null. What the
client sends is never read as a request: it is drained and counted while
the connection lingers, like the bytes after a greeting line. A load
balancer's distribution, affinity and source-address preservation can so
be checked from the client side alone.

The client side accepts exactly one line that parses as such an object,
and refuses anything else as a wrong reply, escaped.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import attrs

from ..errors import IncompleteReply, UnexpectedData, WrongReply
from ..escape import escape
from .base import ClientCodec, Opening, ServerCodec
from .events import Close, Discarded, ReplyReceived, Send, ServerEvent
from .greeting import NEWLINE, LineBuffer

MAX_ANSWER = 4096
"""The longest whoami line a client accepts: a name, a pid and three addresses fit easily."""

FIELDS = ("server", "pid", "listener", "client", "original")
"""The answer's keys, in the order the server writes them."""


@attrs.frozen
class Identity:
    """Who a server is: its ``--name`` and its process id."""

    name: str
    pid: int


NAMELESS = Identity("", 0)
"""The identity of a server that was given none (a codec or listener made on its own)."""


@attrs.frozen
class Answer:
    """One whoami answer, as a client reads it."""

    server: str
    pid: int
    listener: str
    client: str
    original: str | None


def answer_line(identity: Identity, opening: Opening) -> bytes:
    """The JSON line a server sends for a connection *opening* on one of its listeners.

    ``ensure_ascii`` escapes every non-ASCII character and JSON escapes every
    control, so the line is plain printable ASCII whatever the name holds.
    """
    fields = {
        "server": identity.name,
        "pid": identity.pid,
        "listener": opening.listener,
        "client": opening.client,
        "original": opening.original,
    }
    return json.dumps(fields, ensure_ascii=True).encode("ascii") + NEWLINE


def parse_answer(line: bytes) -> Answer:
    """Read one whoami line (newline optional); :class:`WrongReply` if it is not one."""
    try:
        fields: Any = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        fields = None
    if not isinstance(fields, dict) or sorted(fields) != sorted(FIELDS):
        raise WrongReply(f"reply {escape(line)} is not a whoami server's JSON line")
    texts = [fields[key] for key in ("server", "listener", "client")]
    original, pid = fields["original"], fields["pid"]
    if (
        not all(isinstance(text, str) for text in texts)
        or not (original is None or isinstance(original, str))
        or isinstance(pid, bool)
        or not isinstance(pid, int)
    ):
        raise WrongReply(f"reply {escape(line)} is not a whoami server's JSON line")
    return Answer(fields["server"], pid, fields["listener"], fields["client"], original)


class WhoamiServer(ServerCodec):
    """Server side: the answer line as the connection opens, then close; input is discarded."""

    __slots__ = ("_identity",)
    speaks_first: ClassVar[bool] = True

    def __init__(self, identity: Identity) -> None:
        super().__init__()
        self._identity = identity

    def _on_open(self, opening: Opening) -> list[ServerEvent]:
        return [Send(answer_line(self._identity, opening)), Close()]

    def _on_data(self, data: bytes) -> list[ServerEvent]:  # pragma: no cover - never fed
        return [Discarded(len(data)), Close()]

    def _on_eof(self) -> list[ServerEvent]:  # pragma: no cover - never fed
        return [Close()]


class WhoamiClient(ClientCodec):
    """Client side: sends what it is given (the server ignores it), accepts one whoami line."""

    def __init__(self) -> None:
        super().__init__()
        self._line = LineBuffer(MAX_ANSWER)

    def _start(self, message: bytes) -> bytes:
        self._line = LineBuffer(MAX_ANSWER)
        return message

    def _on_data(self, data: bytes) -> ReplyReceived | None:
        done = self._line.feed(data)
        if done is None:
            return None
        line, rest = done
        parse_answer(line)
        if rest:
            raise UnexpectedData(f"the server sent {escape(rest)} after its whoami line")
        return ReplyReceived(line + NEWLINE)

    def _on_eof(self) -> ReplyReceived | None:
        pending = self._line.pending
        if not pending:
            return None
        try:
            parse_answer(pending)
        except WrongReply:
            raise IncompleteReply(
                f"the server closed the connection after {escape(pending)}, not a whole whoami line"
            ) from None
        return ReplyReceived(pending)

    def _received_so_far(self) -> bytes:
        return self._line.pending
