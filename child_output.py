"""A child process's output, line by line, each wait bounded: for tests, benchmarks, reliability.

All three start programs (``trio-echo serve``, the load generator, socat)
and wait for a line: the port a server listens on, a phase, a result, a
log line. One way of reading serves them all:

* :class:`LineBuffer` turns bytes into whole lines as they arrive (no I/O);
* :class:`LineReader` reads a pipe in the calling thread, every read bounded
  by a timeout (``select``, no thread of its own), for blocking code;
* :class:`LineCollector` is fed by one Trio task and awaited by others.

A line is what comes before a ``\\n``; output that ends without one gives
one last line. Nothing here sleeps: every wait ends on a line, on the end of
the output, or on its bound (the caller's ``trio.fail_after`` in Trio).
"""

from __future__ import annotations

import collections
import os
import re
import selectors
import time
from typing import IO

import trio

__all__ = ["LineBuffer", "LineCollector", "LineReader"]

READ_SIZE = 65536


class LineBuffer:
    """Bytes in, whole lines out (without their ``\\n``)."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes | bytearray) -> list[bytes]:
        """The lines *data* completes; a partial last line waits for more."""
        *whole, self._pending = (self._pending + data).split(b"\n")
        return whole

    def end(self) -> list[bytes]:
        """The output ended: the unterminated last line, if there was one."""
        rest, self._pending = self._pending, b""
        return [rest] if rest else []


class LineReader:
    """Reads a child's pipe line by line in the calling thread, each read within a timeout.

    Lines are decoded as UTF-8 with *errors* (undecodable bytes stay visible
    as escapes by default). *timeout* is the bound of a read that names none
    (None waits as long as it takes).
    """

    def __init__(
        self, pipe: IO[bytes], *, timeout: float | None = None, errors: str = "backslashreplace"
    ) -> None:
        self.lines: list[str] = []
        """Every line read so far, in order."""
        self._fd = pipe.fileno()
        self._timeout = timeout
        self._errors = errors
        self._buffer = LineBuffer()
        self._ready: collections.deque[str] = collections.deque()
        self._ended = False
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._fd, selectors.EVENT_READ)

    def readline(self, timeout: float | None = None) -> str | None:
        """The next line; None at the end of output; TimeoutError after *timeout* seconds."""
        limit = self._timeout if timeout is None else timeout
        deadline = None if limit is None else time.monotonic() + limit
        while not self._ready:
            if self._ended:
                return None
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"no line within {limit:g} s")
            if self._selector.select(left):
                self._read()
        line = self._ready.popleft()
        self.lines.append(line)
        return line

    def _read(self) -> None:
        data = os.read(self._fd, READ_SIZE)
        self._ended = not data
        lines = self._buffer.feed(data) if data else self._buffer.end()
        self._ready.extend(line.decode("utf-8", self._errors) for line in lines)

    def wait_for(self, pattern: re.Pattern[str], timeout: float | None = None) -> str | None:
        """Read until a line matches (``search``) *pattern*; return it, or None at the end.

        *timeout* bounds each read, as in :meth:`readline`.
        """
        while (line := self.readline(timeout)) is not None:
            if pattern.search(line):
                return line
        return None

    def rest(self, timeout: float | None = None) -> list[str]:
        """Every line to the end of output, those read before included."""
        while self.readline(timeout) is not None:
            pass
        return self.lines

    def close(self) -> None:
        """Stop watching the pipe (closing it stays its owner's business)."""
        self._selector.close()


class LineCollector:
    """The lines of a Trio receive stream, collected by one task and awaited by others."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        """Every line so far, in order."""
        self.ended = False
        """Whether the stream has ended (no line will come any more)."""
        self._buffer = LineBuffer()
        self._changed = trio.lowlevel.ParkingLot()

    async def collect(self, stream: trio.abc.ReceiveStream) -> None:
        """Read *stream* into :attr:`lines` until it ends (a child's pipe: until it exits)."""
        while data := await stream.receive_some(READ_SIZE):
            self._add(self._buffer.feed(data))
        self.ended = True
        self._add(self._buffer.end())

    def _add(self, lines: list[bytes]) -> None:
        self.lines.extend(lines)
        self._changed.unpark_all()

    def matches(self, pattern: re.Pattern[bytes]) -> list[re.Match[bytes]]:
        """What *pattern* finds (``search``) in each line so far that it matches."""
        return [match for line in self.lines if (match := pattern.search(line))]

    def count(self, pattern: re.Pattern[bytes]) -> int:
        """How many lines so far match *pattern*."""
        return len(self.matches(pattern))

    async def wait_for(self, pattern: re.Pattern[bytes], count: int = 1) -> re.Match[bytes] | None:
        """Wait until *count* lines match *pattern*; the last one's match, or None at the end."""
        while len(found := self.matches(pattern)) < count:
            if self.ended:
                return None
            await self._changed.park()
        return found[count - 1]
