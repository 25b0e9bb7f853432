"""A Trio stream that misbehaves on purpose, as one connection's fault plan says.

The server wraps an accepted stream in :class:`FaultyStream` when the
connection got a fault (see :mod:`trio_echo.faults`), before any TLS layer,
so the faults fall on the bytes on the wire. Reading passes straight
through; each write is cut, delayed and paced by the plan, and the plan may
end the connection with a reset or a close, or hold it for ever.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import struct

import trio

from ..faults.plan import ConnectionPlan, Ending

_ABORT = struct.pack("ii", 1, 0)
"""``SO_LINGER`` on with a zero timeout: closing sends a reset, not a FIN."""


class FaultyStream(trio.abc.HalfCloseableStream):
    """*stream*, with its writes scheduled by *plan*."""

    def __init__(self, stream: trio.abc.Stream, plan: ConnectionPlan) -> None:
        self.transport_stream = stream
        self.plan = plan

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        steps, ending = self.plan.schedule(bytes(data))
        for step in steps:
            if step.wait:
                await trio.sleep(step.wait)
            await self.transport_stream.send_all(step.data)
            pace = self.plan.pace(len(step.data))
            if pace:
                await trio.sleep(pace)
        if ending is Ending.HANG:
            await trio.sleep_forever()
        if ending is Ending.RESET:
            self._abort()
            raise ConnectionResetError(errno.ECONNRESET, "reset on purpose (fault)")
        if ending is Ending.CLOSE:
            raise BrokenPipeError(errno.EPIPE, "closed on purpose (fault)")

    def _abort(self) -> None:
        """Make the close a reset, where the stream has a socket to say so."""
        sock = getattr(self.transport_stream, "socket", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _ABORT)

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport_stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.transport_stream.receive_some(max_bytes)

    async def send_eof(self) -> None:
        if isinstance(self.transport_stream, trio.abc.HalfCloseableStream):
            await self.transport_stream.send_eof()

    def close(self) -> None:
        """Close at once, without a checkpoint (a reclaimed connection)."""
        close = getattr(self.transport_stream, "close", None)
        sock = getattr(self.transport_stream, "socket", None)
        if close is not None:
            close()
        elif sock is not None:
            sock.close()

    async def aclose(self) -> None:
        """Close; with ``slow-close``, only after its delay (even in a cancelled task)."""
        if self.plan.slow_close:
            with trio.CancelScope(shield=True):
                await trio.sleep(self.plan.slow_close)
        await self.transport_stream.aclose()
