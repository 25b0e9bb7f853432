"""``--log-format json``: one JSON object a line for every event a server logs.

The connection events of :mod:`trio_echo.connection_log` are rendered
generically, every attrs field of an event becoming a field of its line, so
a field added to an event appears without changing this module. What a peer
sent is escaped exactly as the text log escapes it (:mod:`trio_echo.escape`):
every string in a line is printable text, so a line holds no raw control
byte and is always valid UTF-8.

Every line has ``ts`` (the wall clock, ISO 8601 UTC), ``level`` and
``event``; the README lists the other fields of each event.
"""

from __future__ import annotations

import datetime
import enum
import json
import logging
import re
from collections.abc import Mapping
from typing import Any

import attrs
from attrs import AttrsInstance

from .address import Address
from .connection_log import (
    PEER_RESETS,
    BytesDiscarded,
    Connected,
    ConnectionEvent,
    ConnectionFailed,
    DatagramAnswered,
    Disconnected,
    MessageReceived,
    ServerStats,
    logger,
)
from .escape import escape, escape_text
from .log_budget import BURST, PER_SECOND, MessageBudget

FIELDS_ATTRIBUTE = "json_fields"
"""The attribute of a log record holding its event's fields (set through ``extra``)."""
EVENT_ATTRIBUTE = "json_event"
"""The attribute of a log record holding its ``event`` (set through ``extra``)."""

EVENT_NAMES: Mapping[type, str] = {
    Connected: "connected",
    MessageReceived: "message",
    BytesDiscarded: "discarded",
    Disconnected: "disconnected",
    ConnectionFailed: "failed",
    DatagramAnswered: "datagram",
}
"""The ``event`` of each connection event; any other event type is named from its class."""

RENAMED = {"connection": "conn"}
"""Event fields whose JSON name is shorter than their attribute's."""

LEFT_OUT = frozenset({"at"})
"""Event fields not shown: ``at`` is the driver's monotonic clock, ``ts`` says when."""


def json_value(value: object) -> Any:
    """A field's value as JSON: numbers and booleans as they are, everything else as safe text.

    Bytes are escaped as the text log shows them (quoted, with the preview
    limit); text, addresses and anything else become escaped strings.
    """
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, bytes):
        return escape(value)
    if isinstance(value, enum.Enum):
        return json_value(value.value)
    if isinstance(value, tuple | list):
        return [json_value(item) for item in value]
    if isinstance(value, Address):
        return escape_text(str(value))
    return escape_text(str(value))


def event_name(event: object) -> str:
    """The ``event`` field of *event*'s line (``connected``, ``message``, ...)."""
    name = EVENT_NAMES.get(type(event))
    if name is None:
        name = re.sub(r"(?<!^)(?=[A-Z])", "_", type(event).__name__).lower()
    return name


def event_fields(event: AttrsInstance) -> dict[str, Any]:
    """Every attrs field of *event* but ``at``, by its JSON name; bytes add their ``size``.

    An optional field (one whose default is None) appears only when set, so
    a plain connection's line stays as short as before (``fault``, ``via``).
    """
    fields: dict[str, Any] = {}
    for attribute in attrs.fields(type(event)):
        if attribute.name in LEFT_OUT:
            continue
        value = getattr(event, attribute.name)
        if value is None and attribute.default is None:
            continue
        fields[RENAMED.get(attribute.name, attribute.name)] = json_value(value)
        if isinstance(value, bytes):
            fields["size"] = len(value)
    return fields


def stats_fields(stats: ServerStats) -> dict[str, Any]:
    """The totals of *stats* as fields of a ``summary`` or ``stats`` line."""
    return {
        attribute.name: getattr(stats, attribute.name)
        for attribute in attrs.fields(ServerStats)
        if not attribute.name.startswith("_")
    }


def timestamp(seconds: float) -> str:
    """Wall-clock *seconds* as ISO 8601 in UTC, to the microsecond."""
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def json_line(level: str, event: str, fields: Mapping[str, Any], at: float) -> str:
    """One line: ``ts``, ``level`` and ``event`` first, then *fields*."""
    line = {"ts": timestamp(at), "level": level, "event": event, **fields}
    return json.dumps(line, ensure_ascii=False, separators=(",", ":"))


class JsonFormatter(logging.Formatter):
    """Formats every log record as one JSON line.

    A record naming its event (from :class:`JsonSink`, or a server line
    logged with ``extra=json_extra(...)``) is rendered from its fields, with
    its text as ``message`` when that says more than the event's name; any
    other record is an ``event`` of ``log`` whose ``message`` is its text.
    """

    def __init__(self, *, constant: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self._constant = dict(constant or {})
        """Fields every line carries after ``event`` (a worker's ``worker`` pid)."""

    def format(self, record: logging.LogRecord) -> str:
        event = getattr(record, EVENT_ATTRIBUTE, "log")
        fields = {**self._constant, **getattr(record, FIELDS_ATTRIBUTE, {})}
        text = record.getMessage()
        if text != event:
            fields["message"] = escape_text(text)
        return json_line(record.levelname.lower(), str(event), fields, record.created)


def json_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """*fields* with every value made JSON (see :func:`json_value`)."""
    return {name: json_value(value) for name, value in fields.items()}


def json_extra(event: str, **fields: Any) -> dict[str, Any]:
    """The ``extra`` of a log call whose JSON line is *event* with *fields*."""
    return {EVENT_ATTRIBUTE: event, FIELDS_ATTRIBUTE: json_fields(fields)}


class JsonSink:
    """Logs connection events as JSON lines, at the levels :class:`LoggingSink` uses.

    A failure is logged at ERROR unless the peer reset the connection;
    everything else at INFO. Message lines are bounded per connection by a
    :class:`~trio_echo.log_budget.MessageBudget`, what goes over said in one
    ``unlogged`` line as the connection ends. A ``disconnected`` or ``failed``
    line has the connection's ``duration`` in seconds, measured from its
    ``connected`` event (one float per open connection).
    """

    def __init__(self, log: logging.Logger = logger, budget: MessageBudget | None = None) -> None:
        self._log = log
        self._budget = budget if budget is not None else MessageBudget()
        self._opened: dict[int, float] = {}

    @property
    def wants_messages(self) -> bool:
        """Messages are logged at INFO: below that level they are not worth building."""
        return self._log.isEnabledFor(logging.INFO)

    def __call__(self, event: ConnectionEvent, /) -> None:
        fields = event_fields(event)
        level = logging.INFO
        match event:
            case Connected(connection=connection, at=at):
                self._opened[connection] = at
            case MessageReceived(connection=connection, at=at, data=data):
                if not self._budget.allow(connection, at, len(data)):
                    return
            case Disconnected() | ConnectionFailed():
                self._say_unlogged(event)
                opened = self._opened.pop(event.connection, None)
                if opened is not None:
                    fields["duration"] = round(event.at - opened, 6)
                if isinstance(event, ConnectionFailed) and event.errno not in PEER_RESETS:
                    level = logging.ERROR
        if self._log.isEnabledFor(level):
            name = event_name(event)
            self._log.log(level, name, extra={EVENT_ATTRIBUTE: name, FIELDS_ATTRIBUTE: fields})

    def _say_unlogged(self, end: Disconnected | ConnectionFailed) -> None:
        unlogged = self._budget.end(end.connection)
        if unlogged is not None and self._log.isEnabledFor(logging.INFO):
            self._log.info(
                "unlogged",
                extra=json_extra(
                    "unlogged",
                    conn=end.connection,
                    peer=end.peer,
                    messages=unlogged.messages,
                    size=unlogged.size,
                    burst=BURST,
                    per_second=PER_SECOND,
                ),
            )
