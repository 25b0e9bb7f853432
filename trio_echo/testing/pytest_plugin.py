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

The seed is the ``--simnet-seed`` option (0 by default), so a failing run
can be replayed with the seed its report prints.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .sockets import Installed

__all__ = ["pytest_addoption", "pytest_report_header", "simulated_network"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--simnet-seed",
        type=int,
        default=0,
        help="the seed of the simulated_network fixture (trio-echo)",
    )


def pytest_report_header(config: pytest.Config) -> str | None:
    seed = config.getoption("--simnet-seed")
    return f"simulated network seed: {seed} (replay: pytest --simnet-seed {seed})" if seed else None


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
        """
        from .network import SimulatedNetwork
        from .sockets import install

        seed = request.config.getoption("--simnet-seed")
        yield install(SimulatedNetwork(seed=seed))
