"""The README's example for Trio programs on the simulated network runs exactly as printed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio
import trio.testing
from markdown_blocks import block_after

README = Path(__file__).resolve().parent.parent / "README.md"
MARKER = "<!-- trio_echo.testing socket example -->"


def example_tests() -> dict[str, Callable[[trio.testing.MockClock], Awaitable[None]]]:
    code = block_after(README.read_text(encoding="utf-8"), MARKER, "python").code
    namespace: dict[str, Any] = {}
    exec(compile(code, str(README), "exec"), namespace)
    return {name: value for name, value in namespace.items() if name.startswith("test_")}


def test_each_readme_example_passes_in_its_own_run() -> None:
    tests = example_tests()
    assert len(tests) == 2
    for test in tests.values():
        clock = trio.testing.MockClock(autojump_threshold=0)
        trio.run(test, clock, clock=clock)
