"""Which datagrams a UDP server refuses to answer, so it cannot be turned into a weapon.

A UDP source address is whatever the sender wrote, so an answer goes
wherever an attacker says. Two dangers follow, and :class:`ReflectionGuard`
stands against both:

- **Loops.** A datagram forged to come from another echo-like service
  (port 7 of some host) makes two services answer each other forever. Like
  inetd's loop check, the guard never answers source port 0 (no real
  socket sends from it) or the classic UDP service ports
  (:data:`CLASSIC_UDP_PORTS`).
- **Reflection.** Forged datagrams make the server send answers at a
  victim. The guard bounds answers per second per source host with a
  token bucket, and bounds its table of hosts, so a flood of forged
  addresses costs it a fixed amount of memory.

Refusals are counted by kind, and :meth:`ReflectionGuard.due_report` turns
them into at most one log line per interval, every peer-derived string
escaped. Sans-IO: the time is passed in, as any monotonic float in seconds.
"""

from __future__ import annotations

import enum
import math
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import attrs

from ..address import Address
from ..errors import ConfigError
from ..escape import escape_text

CLASSIC_UDP_PORTS = frozenset({7, 9, 13, 17, 19, 37})
"""Services that answer any datagram: echo (7), discard (9), daytime (13),
quote of the day (17), chargen (19) and time (37). Answering one of them
invites an answer back, and echo or chargen would answer that in turn."""


class Verdict(enum.Enum):
    """What to do with one datagram received."""

    ANSWER = "answer"
    """Answer it."""
    PORT_ZERO = "port zero"
    """Refused: source port 0 is never a real sender's, only a forged one."""
    CLASSIC_PORT = "classic port"
    """Refused: it comes from a classic UDP service port (a loop in the making)."""
    RATE_LIMITED = "rate limited"
    """Refused: its source host has used up its answers for now."""


def _validator(predicate: Callable[[Any], bool], what: str) -> Callable[[Any, Any, Any], None]:
    def validate(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if isinstance(value, bool) or not predicate(value):
            raise ConfigError(
                f"{attribute.name} must be {what}, not {value!r}", field=attribute.name
            )

    return validate


def _finite_at_least(minimum: float, *, inclusive: bool) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        if not isinstance(value, int | float) or not math.isfinite(value):
            return False
        return value >= minimum if inclusive else value > minimum

    return check


@attrs.frozen(kw_only=True)
class ReflectionPolicy:
    """The guard's limits, validated once.

    The defaults: 100 answers per second per source host, with bursts of
    up to 200. A real client of this server sends a message and waits for
    its answer (the note's sends 7 in all), so it never comes near 100 a
    second; a windowed client's first burst fits in 200. A forged flood,
    meanwhile, gets at most 100 answers a second (of at most 127 bytes for
    ``reply``) sent at each address it names. Load tests from one host need
    a higher rate. 4096 source hosts are tracked at once, about half a
    megabyte at worst.
    """

    rate: float = attrs.field(
        default=100.0,
        validator=_validator(_finite_at_least(0, inclusive=False), "a positive number per second"),
    )
    """Answers per second a source host earns back."""
    burst: float = attrs.field(
        default=200.0,
        validator=_validator(_finite_at_least(1, inclusive=True), "a number of at least 1"),
    )
    """Answers a source host may receive at once after a quiet spell (the bucket's size)."""
    max_sources: int = attrs.field(
        default=4096,
        validator=_validator(lambda v: isinstance(v, int) and v > 0, "a positive integer"),
    )
    """Source hosts tracked; beyond it the least recently seen is forgotten.

    A forgotten host starts again with a full bucket, so only a flood of
    more than this many distinct sources can loosen the bound for one host,
    and memory never grows past it.
    """
    report_interval: float = attrs.field(
        default=10.0,
        validator=_validator(_finite_at_least(0, inclusive=False), "a positive number of seconds"),
    )
    """Shortest time between two report lines."""


@attrs.frozen
class RefusalCounts:
    """Datagrams judged by a guard since it was made, by verdict, and bytes refused."""

    answered: int
    port_zero: int
    classic_port: int
    rate_limited: int
    bytes_refused: int

    @property
    def refused(self) -> int:
        """Every datagram not answered."""
        return self.port_zero + self.classic_port + self.rate_limited


class _Bucket:
    """One source host's token bucket."""

    __slots__ = ("limited_in", "tokens", "updated")

    def __init__(self, tokens: float, now: float) -> None:
        self.tokens = tokens
        self.updated = now
        self.limited_in = -1  # the report period in which this host was last rate-limited


class _Period:
    """What was refused since the last report line."""

    __slots__ = (
        "first_refusal",
        "last_limited",
        "last_port",
        "limited",
        "port",
        "sources",
        "start",
    )

    def __init__(self, start: float) -> None:
        self.start = start
        self.first_refusal: float | None = None
        self.port = self.limited = self.sources = 0
        self.last_port: Address | None = None
        self.last_limited: str | None = None

    def note_refusal(self, now: float) -> None:
        if self.first_refusal is None:
            self.first_refusal = now


class ReflectionGuard:
    """Decides, datagram by datagram, whether a UDP server may answer.

    Port checks come first and touch no table, so a flood from refused
    ports costs nothing; only datagrams from plausible clients take a
    bucket. See :class:`ReflectionPolicy` for the limits and their defaults.
    """

    def __init__(
        self,
        *,
        rate: float = 100.0,
        burst: float = 200.0,
        max_sources: int = 4096,
        report_interval: float = 10.0,
    ) -> None:
        self.policy = ReflectionPolicy(
            rate=rate, burst=burst, max_sources=max_sources, report_interval=report_interval
        )
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._counts = {verdict: 0 for verdict in Verdict if verdict is not Verdict.ANSWER}
        """Refusals by verdict; answers are counted apart (an enum's hash is a Python call)."""
        self._answered = 0
        self._bytes_refused = 0
        self._period: _Period | None = None
        self._period_number = 0
        self._last_report: float | None = None

    @property
    def counts(self) -> RefusalCounts:
        """Everything judged since the guard was made."""
        return RefusalCounts(
            answered=self._answered,
            port_zero=self._counts[Verdict.PORT_ZERO],
            classic_port=self._counts[Verdict.CLASSIC_PORT],
            rate_limited=self._counts[Verdict.RATE_LIMITED],
            bytes_refused=self._bytes_refused,
        )

    @property
    def sources(self) -> int:
        """Source hosts currently tracked (never more than ``max_sources``)."""
        return len(self._buckets)

    def admit(self, host: str, port: int, size: int, now: float) -> Verdict:
        """Judge a datagram of *size* bytes from *host*:*port* that arrived at *now*."""
        period = self._current_period(now)
        verdict = self._judge(host, port, now)
        if verdict is Verdict.ANSWER:
            self._answered += 1
            return verdict
        self._counts[verdict] += 1
        self._bytes_refused += size
        period.note_refusal(now)
        if verdict is Verdict.RATE_LIMITED:
            period.limited += 1
            period.last_limited = host
        else:
            period.port += 1
            period.last_port = Address(host, port)
        return verdict

    def next_report_at(self) -> float | None:
        """When :meth:`due_report` will next give a line; None while there is nothing to say."""
        period = self._period
        if period is None or period.first_refusal is None:
            return None
        if self._last_report is None:
            return period.first_refusal
        return max(period.first_refusal, self._last_report + self.policy.report_interval)

    def due_report(self, now: float) -> str | None:
        """One line about what was refused since the last line, if one is due at *now*.

        The first refusal is reported at once; after that, lines come at
        most once per ``report_interval``, each summing up the whole period
        since the previous one, so nothing refused goes unreported and a
        flood cannot flood the log.
        """
        due = self.next_report_at()
        if due is None or now < due:
            return None
        assert self._period is not None
        line = _describe(self._period, now)
        self._last_report = now
        self._period_number += 1
        self._period = _Period(now)
        return line

    def _current_period(self, now: float) -> _Period:
        if self._period is None:
            self._period = _Period(now)
        return self._period

    def _judge(self, host: str, port: int, now: float) -> Verdict:
        if port == 0:
            return Verdict.PORT_ZERO
        if port in CLASSIC_UDP_PORTS:
            return Verdict.CLASSIC_PORT
        bucket = self._bucket(host, now)
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(self.policy.burst, bucket.tokens + elapsed * self.policy.rate)
        bucket.updated = max(bucket.updated, now)
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return Verdict.ANSWER
        if bucket.limited_in != self._period_number:
            bucket.limited_in = self._period_number
            self._current_period(now).sources += 1
        return Verdict.RATE_LIMITED

    def _bucket(self, host: str, now: float) -> _Bucket:
        bucket = self._buckets.get(host)
        if bucket is not None:
            self._buckets.move_to_end(host)
            return bucket
        if len(self._buckets) >= self.policy.max_sources:
            self._buckets.popitem(last=False)
        bucket = self._buckets[host] = _Bucket(self.policy.burst, now)
        return bucket


def _describe(period: _Period, now: float) -> str:
    """The report line for *period*, ending at *now*; hosts escaped."""
    parts = []
    if period.port:
        last = period.last_port
        assert last is not None
        source = Address(escape_text(last.host), last.port)
        parts.append(
            f"refused {_count(period.port, 'datagram')} from reflection ports (last from {source})"
        )
    if period.limited:
        limited = f"{period.limited:,}" if parts else _count(period.limited, "datagram")
        last_host = escape_text(period.last_limited or "")
        parts.append(
            f"rate-limited {limited} from {_count(period.sources, 'source')} (last {last_host})"
        )
    return f"{' and '.join(parts)} in the last {_seconds(now - period.start)} s"


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def _seconds(seconds: float) -> str:
    return f"{seconds:.0f}" if seconds >= 10 else f"{seconds:.1f}"
