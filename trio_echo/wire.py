"""The wire protocols every transport and both drivers speak (DESIGN.md section 2)."""

from __future__ import annotations

import enum


class WireProtocol(enum.Enum):
    """The wire protocols (DESIGN.md section 2)."""

    REPLY = "reply"
    """Every chunk read goes back as ``Re:`` + at most 124 bytes (the note's pair A)."""
    GREETING = "greeting"
    """One line in, ``Hello From Server\\n`` out, close (the note's pair B)."""
    ECHO = "echo"
    """RFC 862: every byte back unchanged until the peer closes."""
    WHOAMI = "whoami"
    """As the connection opens, one JSON line saying who the server is and whom it sees; close."""


CONVERSATIONAL = (WireProtocol.REPLY, WireProtocol.GREETING, WireProtocol.ECHO)
"""The protocols whose client speaks first and whose server answers what it sent.

``whoami`` is not one: its server speaks first and answers the same whatever it is sent.
"""
