"""The pytest plugin: a ``simulated_network`` fixture for Trio tests.

Registered through the package's ``pytest11`` entry point, so installing
trio-echo is enough. It does nothing to a test that does not ask for the
fixture. A test that does gets the network already installed into its Trio
run (see :func:`~trio_echo.testing.sockets.install`), on pytest-trio's
virtual clock (the test also asks for ``autojump_clock``: pytest-trio picks a
run's clock from the test's own arguments; without it the test is told),
so ``trio.serve_tcp(handler, 4000)`` and ``trio.open_tcp_stream("127.0.0.1",
4000)`` in the test meet on it::

    async def test_echo(simulated_network: Installed, autojump_clock: MockClock) -> None:
        simulated_network.hosts.add("echo.test")
        ...

The seed is the ``--simnet-seed`` option (0 by default); a failing test
that used the fixture reports its seed and the command that replays it.

A test that waits on something that never comes, or forgets to stop its
server, would spin the autojump clock forever; the fixture fails it instead
after ``--simnet-time-limit`` virtual seconds (an hour by default), with a
message naming the bound and how to raise it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator
from typing import TYPE_CHECKING

import pytest
import trio

if TYPE_CHECKING:
    from .sockets import Installed

__all__ = [
    "DEFAULT_TIME_LIMIT",
    "VirtualTimeLimitExceeded",
    "pytest_addoption",
    "pytest_report_header",
    "pytest_runtest_makereport",
    "simulated_network",
]

DEFAULT_TIME_LIMIT = 3600.0
"""Virtual seconds a test on the simulated network may run before it is failed."""


class VirtualTimeLimitExceeded(AssertionError):
    """A test on the simulated network ran past its bound of virtual time."""


def _positive_seconds(text: str) -> float:
    seconds = float(text)
    if not seconds > 0:
        raise ValueError(text)
    return seconds


async def _fail_after_virtual(limit: float, seed: int) -> None:
    """Sleep *limit* virtual seconds, then fail the test with a message saying why."""
    await trio.sleep(limit)
    raise VirtualTimeLimitExceeded(
        f"the test ran past {limit:g} virtual seconds on the simulated network (seed {seed}): "
        "it waits on something that never comes, or a server was never stopped; "
        "raise the bound with --simnet-time-limit SECONDS"
    )


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--simnet-seed",
        type=int,
        default=0,
        help="the seed of the simulated_network fixture (trio-echo)",
    )
    parser.addoption(
        "--simnet-time-limit",
        type=_positive_seconds,
        default=DEFAULT_TIME_LIMIT,
        help="virtual seconds a simulated_network test may run (trio-echo; default 3600)",
    )


def pytest_report_header(config: pytest.Config) -> str | None:
    seed = config.getoption("--simnet-seed")
    return f"simulated network seed: {seed} (replay: pytest --simnet-seed {seed})" if seed else None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test that used the simulated network says its seed and how to replay it."""
    report = yield
    if report.failed and "simulated_network" in getattr(item, "fixturenames", ()):
        seed = item.config.getoption("--simnet-seed")
        report.sections.append(
            (
                "simulated network",
                f"seed {seed}; replay: pytest '{item.nodeid}' --simnet-seed {seed}",
            )
        )
    return report


try:
    from pytest_trio import trio_fixture  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - pytest-trio is what runs Trio tests

    @pytest.fixture
    def simulated_network() -> None:
        """Tells the test that the fixture needs pytest-trio."""
        pytest.fail("the simulated_network fixture needs pytest-trio", pytrace=False)

else:

    @trio_fixture  # type: ignore[untyped-decorator]
    async def simulated_network(
        request: pytest.FixtureRequest,
    ) -> AsyncIterator[Installed]:
        """The simulated network, installed into this test's Trio run, on virtual time.

        pytest-trio gives a run its clock from the test's own arguments, so
        the test asks for ``autojump_clock`` too; without it, it is told so.
        A watchdog fails the test after ``--simnet-time-limit`` virtual seconds.
        """
        from .network import SimulatedNetwork
        from .sockets import install

        seed = request.config.getoption("--simnet-seed")
        limit = request.config.getoption("--simnet-time-limit")
        installed = install(SimulatedNetwork(seed=seed))
        async with trio.open_nursery() as watchdog:
            watchdog.start_soon(_fail_after_virtual, limit, seed)
            yield installed
            watchdog.cancel_scope.cancel()
