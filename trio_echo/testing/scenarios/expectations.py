"""Reading a transcript in a scenario's expectations.

A :class:`~.transcript.Transcript` body is plain JSON; these functions name
its parts (a connection, its events, a client's session, a peer's notes) and
state the usual expectations with messages that say what was found instead.
They raise :class:`AssertionError`, which :func:`~.harness.check` turns into
a report naming the seed and the replay command.
"""

from __future__ import annotations

from collections.abc import Mapping

from ...codec import reply_for
from ...config import ClientConfig
from .transcript import Json, Transcript, show_bytes

__all__ = [
    "assert_ended",
    "assert_ok",
    "client",
    "connection",
    "events",
    "kinds",
    "last",
    "notes",
]

NOTE_MESSAGES = list(ClientConfig().messages())
"""The seven messages of the note's client session."""


def connection(transcript: Transcript, key: str) -> Json:
    """The network's and the server's record of connection *key*."""
    connections: Mapping[str, Json] = transcript.body["connections"]
    assert key in connections, f"no connection {key!r}; there are {sorted(connections)}"
    return connections[key]


def events(transcript: Transcript, key: str) -> list[Json]:
    """The server's events for connection *key*, in order."""
    found: list[Json] = connection(transcript, key)["events"]
    return found


def kinds(transcript: Transcript, key: str) -> list[str]:
    """The names of the server's events for connection *key*."""
    return [event["event"] for event in events(transcript, key)]


def last(transcript: Transcript, key: str) -> Json:
    """How the server says connection *key* ended."""
    found = events(transcript, key)
    assert found, f"the server reported nothing about {key!r}"
    return found[-1]


def client(transcript: Transcript, label: str) -> Json:
    """How the session of client *label* went."""
    clients: Mapping[str, Json] = transcript.body["clients"]
    assert label in clients, f"no session {label!r}"
    return clients[label]


def notes(transcript: Transcript, label: str) -> list[str]:
    """What scripted peer *label* observed."""
    found: list[str] = transcript.body["notes"].get(label, [])
    return found


def assert_ok(
    transcript: Transcript, label: str, messages: list[bytes] = NOTE_MESSAGES, *, whole: bool = True
) -> None:
    """Client *label* got a reply to every message, its client accepted each.

    With *whole*, each reply must also be the one the server sends for a
    message it read in one piece (on a network that may split writes the
    server answers each piece it reads separately).
    """
    outcome = client(transcript, label)
    assert outcome["error"] is None, f"{label}: {outcome['error']}"
    sent = [exchange[0] for exchange in outcome["exchanges"]]
    assert sent == [show_bytes(m) for m in messages], f"{label}: {outcome['exchanges']}"
    if whole:
        expected = [[show_bytes(m), show_bytes(reply_for(m))] for m in messages]
        assert outcome["exchanges"] == expected, f"{label}: {outcome['exchanges']}"


def assert_ended(transcript: Transcript, key: str, event: str, **fields: object) -> None:
    """Connection *key* ended with *event* (Disconnected or ConnectionFailed) and *fields*."""
    final = last(transcript, key)
    assert final["event"] == event, f"{key} ended with {final}"
    for name, value in fields.items():
        assert final[name] == value, f"{key}: {name} is {final[name]!r}, not {value!r}"
