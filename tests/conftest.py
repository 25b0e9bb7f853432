"""Fixtures shared by the test modules: the drivers and protocols cases run against.

Tests that take ``server_driver`` run against the Trio and the blocking
server; tests that also take ``client_driver`` run every client against
every server. The helpers behind them live in :mod:`loopback`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from loopback import DRIVERS

from trio_echo import WireProtocol
from trio_echo.wire import CONVERSATIONAL


@pytest.fixture(params=DRIVERS, ids=lambda driver: f"{driver}-server")
def server_driver(request: pytest.FixtureRequest) -> str:
    """The driver of the server under test."""
    driver: str = request.param
    return driver


@pytest.fixture(params=DRIVERS, ids=lambda driver: f"{driver}-client")
def client_driver(request: pytest.FixtureRequest) -> str:
    """The driver of the client under test."""
    driver: str = request.param
    return driver


@pytest.fixture(params=list(CONVERSATIONAL), ids=lambda protocol: protocol.value)
def protocol(request: pytest.FixtureRequest) -> WireProtocol:
    """The wire protocol under test."""
    value: WireProtocol = request.param
    return value


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory whose paths fit a unix socket address (about 107 bytes)."""
    with tempfile.TemporaryDirectory(prefix="te-", dir="/tmp") as name:
        yield Path(name)
