"""The walkthrough for learners runs as printed, in both of its languages.

Every ``python`` and ``sh`` block of ``docs/walkthrough.md`` is run: Python
in this process (a block's ``test_`` functions are then run in virtual
time), shell in a child ``bash`` where ``trio-echo`` is ``python -m
trio_echo``, bounded by a timeout, its process group killed afterwards so no
server it started outlives it. A ``text`` block right after a runnable one
is its output: each of its lines, ``...`` aside, must be printed, in order
(indentation and addresses' port numbers aside). A ``python PATH`` block quotes PATH, which
must hold those lines as written. The Korean file must hold the very same
blocks, so the two cannot drift apart.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from markdown_blocks import Block, fenced_blocks

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
ENGLISH = DOCS / "walkthrough.md"
KOREAN = DOCS / "walkthrough.ko.md"
KNOWN_LANGUAGES = {"python", "sh", "text", "cpp"}
SHELL_TIMEOUT = 10.0

SHELL_PRELUDE = """\
set -euo pipefail
trio-echo() { "$TRIO_ECHO_PYTHON" -m trio_echo "$@"; }
python3() { "$TRIO_ECHO_PYTHON" "$@"; }
python() { "$TRIO_ECHO_PYTHON" "$@"; }
"""
"""Makes ``trio-echo``, ``python3`` and ``python`` this tree's package and interpreter."""

_PORT = re.compile(r"(127\.0\.0\.1|\[::1\]):\d+")


def blocks(path: Path) -> list[Block]:
    return fenced_blocks(path.read_text(encoding="utf-8"))


def runnable(language: str) -> list[tuple[Block, Block | None]]:
    """The English file's *language* blocks, each with the output block printed after it."""
    text = ENGLISH.read_text(encoding="utf-8")
    found = fenced_blocks(text)
    pairs: list[tuple[Block, Block | None]] = []
    for index, block in enumerate(found):
        if block.language != language or block.argument:
            continue
        following = found[index + 1] if index + 1 < len(found) else None
        shown = (
            following
            if following is not None
            and following.language == "text"
            and not text[block.end : following.start].strip()
            else None
        )
        pairs.append((block, shown))
    return pairs


def block_id(pair: tuple[Block, Block | None]) -> str:
    return f"line-{pair[0].line}"


def assert_printed(shown: Block | None, output: str) -> None:
    """Every line of *shown* (but ``...``) is a line of *output*, in the same order."""
    if shown is None:
        return
    printed = iter(_PORT.sub(r"\1:PORT", line).strip() for line in output.splitlines())
    for expected in shown.code.splitlines():
        if expected.strip() in ("", "..."):
            continue
        wanted = _PORT.sub(r"\1:PORT", expected).strip()
        assert any(line == wanted for line in printed), (
            f"line {shown.line}: {wanted!r} not printed (in order) in:\n{output}"
        )


def test_both_languages_hold_the_same_blocks() -> None:
    english = [(block.info, block.code) for block in blocks(ENGLISH)]
    korean = [(block.info, block.code) for block in blocks(KOREAN)]
    assert len(english) >= 10
    assert english == korean


@pytest.mark.parametrize("path", [ENGLISH, KOREAN], ids=lambda path: path.name)
def test_every_block_is_of_a_known_kind(path: Path) -> None:
    for block in blocks(path):
        assert block.language in KNOWN_LANGUAGES, f"{path.name}:{block.line}: {block.info!r}"
        if block.argument:
            assert block.language == "python", f"{path.name}:{block.line}: {block.info!r}"


@pytest.mark.parametrize("pair", runnable("python"), ids=block_id)
def test_python_block_runs(pair: tuple[Block, Block | None]) -> None:
    block, shown = pair
    namespace: dict[str, Any] = {"__name__": "walkthrough"}
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        exec(compile(block.code, f"{ENGLISH}:{block.line}", "exec"), namespace)
        for name, value in namespace.items():
            if name.startswith("test_") and inspect.iscoroutinefunction(value):
                clock = trio.testing.MockClock(autojump_threshold=0)
                trio.run(value, clock, clock=clock)
    assert_printed(shown, output.getvalue())


@pytest.mark.parametrize("pair", runnable("sh"), ids=block_id)
def test_shell_block_runs(pair: tuple[Block, Block | None], tmp_path: Path) -> None:
    block, shown = pair
    env = {
        **os.environ,
        "TRIO_ECHO_PYTHON": sys.executable,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    process = subprocess.Popen(
        ["bash", "-c", SHELL_PRELUDE + block.code],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=SHELL_TIMEOUT)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == 0, f"line {block.line} exited {process.returncode}:\n{stderr}"
    assert_printed(shown, stdout)


def test_quoted_lines_are_in_their_files() -> None:
    quoted = [block for block in blocks(ENGLISH) if block.argument]
    assert len(quoted) >= 5
    for block in quoted:
        source = (DOCS / block.argument).resolve()
        lines = [line.strip() for line in source.read_text(encoding="utf-8").splitlines()]
        excerpt = [line.strip() for line in block.code.splitlines()]
        assert any(lines[at : at + len(excerpt)] == excerpt for at in range(len(lines))), (
            f"line {block.line}: these lines are not in {block.argument}:\n{block.code}"
        )


@pytest.mark.parametrize("path", [ENGLISH, KOREAN], ids=lambda path: path.name)
def test_relative_links_lead_to_files(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    targets = re.findall(r"\]\((\.\./[^)#\s]+|[\w.-]+\.md)(?:#[^)]*)?\)", text)
    assert targets
    for target in targets:
        assert (path.parent / target).exists(), f"{path.name}: {target} does not exist"


def test_the_readme_leads_to_both() -> None:
    first_lines = (ROOT / "README.md").read_text(encoding="utf-8").split("\n## ", 1)[0]
    assert "(docs/walkthrough.md)" in first_lines
    assert "(docs/walkthrough.ko.md)" in first_lines
