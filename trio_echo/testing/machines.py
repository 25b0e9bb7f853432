"""Hosts that run tasks, crash and start again.

A :class:`Machine` is one named host's life on the simulated network: code
started through :meth:`Machine.run` runs *on* that host, and so does every
task it starts and every socket those tasks open (a context variable, which
Trio hands on to child tasks). Its connections come from the host's own
address, so partitions between host addresses apply to them.

:meth:`Machine.crash` is a power cut: the host's tasks are cancelled, its
listeners vanish, its open connections are reset (each peer learns it one
hop later), and the host falls silent, so a connect to it hangs until the
caller gives up. :meth:`Machine.restart` brings it back, empty: the test
runs its programs on it again.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import trio

from ..errors import ConfigError
from .hosts import Host, Hosts
from .links import Links

__all__ = ["HostCrashed", "Machine", "Machines", "current_machine"]

T = TypeVar("T")

_RUNNING_ON: contextvars.ContextVar[Machine | None] = contextvars.ContextVar(
    "trio-echo simulated host", default=None
)


class HostCrashed(RuntimeError):
    """Code was started on a host that is down."""


class Crashable(Protocol):
    """A socket a crash takes down."""

    def crash(self) -> None: ...

    def fileno(self) -> int: ...


def current_machine() -> Machine | None:
    """The host the calling task runs on, or None outside every :meth:`Machine.run`."""
    return _RUNNING_ON.get()


class Machine:
    """One host's running life: its tasks and sockets, which a crash takes down."""

    def __init__(self, host: Host, links: Links) -> None:
        self.host = host
        self._links = links
        self._scopes: set[trio.CancelScope] = set()
        self._sockets: list[Crashable] = []
        self.crashed = False
        self.crashes = 0

    def address_for(self, destination: str) -> str:
        """This host's address of the same family as *destination*."""
        if ":" in destination and self.host.ipv6 is not None:
            return self.host.ipv6
        return self.host.ipv4

    async def run(
        self,
        async_fn: Callable[..., Awaitable[T]],
        *args: Any,
        task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
    ) -> T | None:
        """Run ``async_fn(*args)`` on this host; what it returns, or None if the host crashed.

        Works with ``nursery.start``: *task_status* is handed on to *async_fn*.
        A crash ends it quietly (its tasks are cancelled); HostCrashed if the
        host is already down.
        """
        result: T | None = None
        if self.crashed:
            raise HostCrashed(f"host {self.host.name} is down: restart() it first")
        token = _RUNNING_ON.set(self)
        try:
            with trio.CancelScope() as scope:
                self._scopes.add(scope)
                try:
                    if task_status is trio.TASK_STATUS_IGNORED:
                        result = await async_fn(*args)
                    else:
                        result = await async_fn(*args, task_status=task_status)
                finally:
                    self._scopes.discard(scope)
        finally:
            _RUNNING_ON.reset(token)
        return result

    def adopt(self, sock: Crashable) -> None:
        """Take down *sock* with this host (sockets already closed are let go)."""
        self._sockets = [s for s in self._sockets if s.fileno() != -1]
        self._sockets.append(sock)

    def crash(self) -> None:
        """Power off: tasks cancelled, listeners gone, connections reset, host silent."""
        if self.crashed:
            return
        self.crashed = True
        self.crashes += 1
        for scope in list(self._scopes):
            scope.cancel()
        sockets, self._sockets = self._sockets, []
        for sock in sockets:
            sock.crash()
        for address in self.host.addresses:
            self._links.silence(address)

    def restart(self) -> None:
        """Power on again, with nothing running: the host answers once more."""
        self.crashed = False
        for address in self.host.addresses:
            self._links.unsilence(address)


class Machines:
    """The :class:`Machine` of each named host, made when first asked for."""

    def __init__(self, hosts: Hosts, links: Links) -> None:
        self._hosts = hosts
        self._links = links
        self._machines: dict[str, Machine] = {}

    def on(self, name: str) -> Machine:
        """The machine of host *name*; ConfigError if no such host was added."""
        host = self._hosts.get(name)
        if host is None:
            raise ConfigError(f"no host {name!r}: add it with hosts.add({name!r}) first")
        machine = self._machines.get(host.name)
        if machine is None:
            machine = self._machines[host.name] = Machine(host, self._links)
        return machine
