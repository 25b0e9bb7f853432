"""Escaping untrusted bytes for logs and terminals.

Whatever a peer sends, :func:`escape` must give printable ASCII only (no
control character can reach an operator's terminal), must say what it left
out, and must stay faithful: the escaped text reads back as the same bytes.
"""

from __future__ import annotations

import ast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_echo.escape import PREVIEW_LIMIT, escape, escape_text

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def is_safe(text: str) -> bool:
    """Only printable ASCII: no control characters, nothing beyond 0x7e."""
    return all(0x20 <= ord(char) < 0x7F for char in text)


@FAST
@given(data=st.binary(max_size=400), limit=st.one_of(st.none(), st.integers(0, 300)))
def test_escape_output_is_printable_ascii(data: bytes, limit: int | None) -> None:
    assert is_safe(escape(data, limit))


@FAST
@given(data=st.binary(max_size=400))
def test_escape_reads_back_as_the_same_bytes(data: bytes) -> None:
    text = escape(data, None)
    assert text.startswith('"') and text.endswith('"')
    assert ast.literal_eval("b" + text) == data


def test_every_byte_value_is_escaped_or_itself() -> None:
    text = escape(bytes(range(256)), None)
    assert is_safe(text)
    assert "\\x00" in text and "\\x1b" in text and "\\x7f" in text and "\\xff" in text
    assert "\\n" in text and "\\r" in text and "\\t" in text
    assert "\\\\" in text and '\\"' in text
    assert "ABC xyz 0-9" in escape(b"ABC xyz 0-9")


@pytest.mark.parametrize(
    ("data", "limit", "expected"),
    [
        (b"a" * PREVIEW_LIMIT, PREVIEW_LIMIT, '"' + "a" * PREVIEW_LIMIT + '"'),
        (
            b"a" * (PREVIEW_LIMIT + 50),
            PREVIEW_LIMIT,
            '"' + "a" * PREVIEW_LIMIT + '" (+50 more bytes)',
        ),
        (b"\x00" * 5, 2, '"\\x00\\x00" (+3 more bytes)'),
        (b"abc", 0, '"" (+3 more bytes)'),
        (b"a" * 1000, None, '"' + "a" * 1000 + '"'),
        (b"", PREVIEW_LIMIT, '""'),
    ],
)
def test_escape_summarises_what_it_leaves_out(
    data: bytes, limit: int | None, expected: str
) -> None:
    assert escape(data, limit) == expected


def test_escape_default_limit_is_the_preview_limit() -> None:
    assert escape(b"x" * (PREVIEW_LIMIT + 1)).endswith('" (+1 more bytes)')


@FAST
@given(text=st.text(max_size=200))
def test_escape_text_output_is_printable_ascii(text: str) -> None:
    assert is_safe(escape_text(text))


def test_escape_text_keeps_plain_text_and_neutralises_controls() -> None:
    assert escape_text("connect to 127.0.0.1:3100: refused") == (
        "connect to 127.0.0.1:3100: refused"
    )
    assert escape_text("\x1b[2J\r\n\x7f\u00e9") == "\\x1b[2J\\r\\n\\x7f\\xe9"
