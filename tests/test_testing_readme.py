"""The README's example for ``trio_echo.testing`` runs exactly as printed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio.testing
from markdown_blocks import block_after

from trio_echo.testing import SCENARIOS

README = Path(__file__).resolve().parent.parent / "README.md"
MARKER = "<!-- trio_echo.testing example -->"

Test = Callable[[trio.testing.MockClock], Awaitable[None]]


def example() -> str:
    """The Python block that follows the marker in the README."""
    return block_after(README.read_text(encoding="utf-8"), MARKER, "python").code


def example_tests() -> dict[str, Test]:
    namespace: dict[str, Any] = {}
    exec(compile(example(), str(README), "exec"), namespace)
    return {name: value for name, value in namespace.items() if name.startswith("test_")}


async def test_the_readme_example_passes(autojump_clock: trio.testing.MockClock) -> None:
    tests = example_tests()
    assert len(tests) == 2
    for test in tests.values():
        await test(autojump_clock)


def test_the_readme_lists_every_scenario() -> None:
    text = README.read_text(encoding="utf-8")
    for scenario in SCENARIOS:
        assert f"| `{scenario.name}`" in text, scenario.name
