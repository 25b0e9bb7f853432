"""Fenced code blocks read out of Markdown, for the tests that run the documentation.

A block is what lies between a line opening with three backticks and the
next line of three backticks alone, either of them indented alike (a block
inside a list item); its info string (``python``, ``sh``, ``text``,
``python ../trio_echo/lifecycle.py``) says what it is. A block's text is
given without that indentation.
"""

from __future__ import annotations

import re
import textwrap

import attrs

_FENCE = re.compile(r"^([ \t]*)```([^\n`]*)\n(.*?)^\1```[ \t]*$", re.MULTILINE | re.DOTALL)


@attrs.frozen
class Block:
    """One fenced block: its info string, its text, and where it sits in the file."""

    info: str
    code: str
    start: int
    """Offset of the opening fence in the file's text."""
    end: int
    """Offset just past the closing fence."""
    line: int
    """Line number (from 1) of the opening fence, for messages."""

    @property
    def language(self) -> str:
        """The info string's first word (``python``, ``sh``, ``text``); empty if none."""
        return self.info.split()[0] if self.info.split() else ""

    @property
    def argument(self) -> str:
        """What follows the language in the info string (an excerpt's source path)."""
        return self.info[len(self.language) :].strip()


def fenced_blocks(text: str) -> list[Block]:
    """Every fenced block of *text*, in order."""
    return [
        Block(
            info=match.group(2).strip(),
            code=textwrap.dedent(match.group(3)),
            start=match.start(),
            end=match.end(),
            line=text.count("\n", 0, match.start()) + 1,
        )
        for match in _FENCE.finditer(text)
    ]


def block_after(text: str, marker: str, language: str) -> Block:
    """The block of *language* that directly follows *marker* (only blank space between)."""
    at = text.find(marker)
    assert at >= 0, f"no {marker} in the text"
    after = at + len(marker)
    following = [block for block in fenced_blocks(text) if block.start >= after]
    assert following, f"no block after {marker}"
    block = following[0]
    assert not text[after : block.start].strip(), f"text between {marker} and its block"
    assert block.language == language, f"the block after {marker} is not {language}"
    return block
