"""Events the codec hands to a driver.

A server codec answers every input with a list of events: what the peer said
(:class:`Received`, :class:`Discarded`) and what the driver must do about it
(:class:`Send`, then perhaps :class:`Close`). A client codec reports a whole
reply with :class:`ReplyReceived`. Events are frozen values, so a driver or a
test can keep, compare and print them freely.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class Received:
    """The peer sent a message: one chunk as read (reply, echo) or one line (greeting).

    A greeting line is given without its newline.
    """

    data: bytes


@attrs.frozen
class Send:
    """Write these bytes to the peer, all of them, in order."""

    data: bytes


@attrs.frozen
class Close:
    """The conversation is over: finish sending, then close the connection."""


@attrs.frozen
class Discarded:
    """The peer sent bytes the protocol has no use for (after a greeting line).

    They are reported, never dropped silently.
    """

    size: int


@attrs.frozen
class ReplyReceived:
    """The whole reply to the last message has arrived; *data* is every byte of it."""

    data: bytes


ServerEvent = Received | Send | Close | Discarded
ClientEvent = ReplyReceived
