"""What a scenario did, in a form two runs (or two drivers) can be compared by.

A :class:`Transcript` holds, per connection (keyed by the client's label,
never by accept order): the bytes that reached each side, the server's
connection events with their virtual timestamps, and, per client, how its
session went. :meth:`Transcript.canonical` serialises it with sorted keys,
timestamps to the microsecond and bytes escaped, so equal behaviour gives
equal text and :meth:`Transcript.digest` equal SHA-256.

Left out on purpose: the server's connection numbers (they follow accept
order, which Trio's scheduler is free to shuffle) and the event's peer
address (it is the connection's key already).
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from ...connection_log import ConnectionEvent, ServerStats
from ...escape import escape
from ...session import SessionResult
from ..network import SimulatedNetwork

__all__ = ["Transcript", "build_transcript", "show_bytes", "show_time"]

INLINE_BYTES = 512
"""Longer byte strings appear in a transcript as their length and SHA-256."""

Json = dict[str, Any]


def show_time(seconds: float) -> str:
    """A virtual timestamp to the microsecond: float noise below it is not behaviour."""
    return f"{seconds:.6f}"


def show_bytes(data: bytes) -> str:
    """Bytes as escaped text, or their length and digest when they are long."""
    if len(data) <= INLINE_BYTES:
        return escape(data, limit=None)
    return f"{len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}"


def _event_json(event: ConnectionEvent, start: float) -> Json:
    fields = attrs.asdict(event, recurse=False)
    line: Json = {"event": type(event).__name__, "at": show_time(fields.pop("at") - start)}
    del fields["connection"], fields["peer"]
    for name, value in fields.items():
        line[name] = show_bytes(value) if isinstance(value, bytes) else value
    return line


def _session_json(result: SessionResult) -> Json:
    error = result.error
    return {
        "exchanges": [[show_bytes(x.sent), show_bytes(x.reply)] for x in result.exchanges],
        "error": None if error is None else f"{type(error).__name__}: {error}",
        "errno": getattr(error, "errno", None),
        "seconds": show_time(result.seconds),
    }


@attrs.frozen
class Transcript:
    """One run of one scenario with one driver, ready to compare."""

    scenario: str
    seed: int
    driver: str
    body: Json = attrs.field(eq=False, repr=False)
    """``connections``, ``clients``, ``notes`` and ``stats``, as plain JSON values."""

    def canonical(self, exclude: Iterable[str] = ()) -> str:
        """Sorted-key JSON of everything but the driver's name and the *exclude*d fields.

        A field is named ``section.field`` (``"clients.seconds"``,
        ``"connections.events"``) and is dropped wherever it appears.
        """
        body = _without(self.body, frozenset(exclude))
        document = {"scenario": self.scenario, "seed": self.seed, **body}
        return json.dumps(document, sort_keys=True, indent=1, ensure_ascii=True)

    def digest(self, exclude: Iterable[str] = ()) -> str:
        """SHA-256 of :meth:`canonical`: equal digests, equal behaviour."""
        return hashlib.sha256(self.canonical(exclude).encode()).hexdigest()

    def diff(self, other: Transcript, exclude: Iterable[str] = ()) -> str:
        """A unified diff of the two canonical forms ('' when they agree)."""
        lines = difflib.unified_diff(
            self.canonical(exclude).splitlines(),
            other.canonical(exclude).splitlines(),
            fromfile=self.driver,
            tofile=other.driver,
            lineterm="",
            n=4,
        )
        return "\n".join(lines)


def _without(body: Json, exclude: frozenset[str]) -> Json:
    """A copy of *body* with each ``section.field`` in *exclude* removed from every entry."""
    pruned: Json = {}
    for section, entries in body.items():
        names = {name.split(".", 1)[1] for name in exclude if name.startswith(f"{section}.")}
        pruned[section] = _drop(entries, names) if names else entries
    return pruned


def _drop(entry: Any, names: set[str]) -> Any:
    if isinstance(entry, Mapping):
        return {key: _drop(value, names) for key, value in entry.items() if key not in names}
    if isinstance(entry, list):
        return [_drop(item, names) for item in entry]
    return entry


def build_transcript(
    *,
    scenario: str,
    seed: int,
    driver: str,
    network: SimulatedNetwork,
    events: Iterable[ConnectionEvent],
    sessions: Mapping[str, SessionResult],
    notes: Mapping[str, list[str]],
    stats: ServerStats,
    start: float = 0.0,
) -> Transcript:
    """Gather what the network, the server and the clients saw into a :class:`Transcript`."""
    connections: Json = {
        connection.key: {
            "client": str(connection.client.address),
            "server": str(connection.server.address),
            "to_server": show_bytes(bytes(connection.to_server)),
            "to_client": show_bytes(bytes(connection.to_client)),
            "events": [],
        }
        for connection in network.connections
    }
    for event in events:
        key = network.key_of(event.peer) or f"unknown {event.peer}"
        entry = connections.setdefault(key, {"events": []})
        entry["events"].append(_event_json(event, start))
    body: Json = {
        "connections": connections,
        "clients": {label: _session_json(result) for label, result in sessions.items()},
        "notes": {label: list(lines) for label, lines in notes.items()},
        "stats": {
            "connections": stats.connections,
            "bytes_in": stats.bytes_in,
            "bytes_out": stats.bytes_out,
            "errors": stats.errors,
        },
    }
    return Transcript(scenario, seed, driver, body)
