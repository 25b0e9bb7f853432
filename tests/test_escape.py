"""Escaping untrusted bytes for logs and terminals.

Whatever a peer sends, :func:`escape` must give printable characters only
(no control character, C0 or C1, and no bidi override can reach an
operator's terminal), must say what it left out, and must stay faithful:
the escaped text reads back as the same bytes.
"""

from __future__ import annotations

import ast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_echo.escape import PREVIEW_LIMIT, escape, escape_text

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


BIDI_CONTROLS = [chr(code) for code in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]]
C1_CONTROLS = [chr(code) for code in range(0x80, 0xA0)]
DANGEROUS = [chr(code) for code in [*range(0x20), 0x7F]] + C1_CONTROLS + BIDI_CONTROLS


def is_safe(text: str) -> bool:
    """Only printable characters: no control, format, separator or unassigned character."""
    return all(char.isprintable() for char in text) and not any(c in text for c in DANGEROUS)


def as_bytes_literal(text: str) -> str:
    """*text* with each non-ASCII character written as its UTF-8 bytes, for ``ast``."""
    return "".join(
        char if ord(char) < 0x80 else "".join(f"\\x{b:02x}" for b in char.encode()) for char in text
    )


dangerous_text = st.lists(
    st.one_of(st.sampled_from(DANGEROUS), st.characters(), st.sampled_from("é✓日本")),
    max_size=60,
).map("".join)


def surrogates_kept(text: str) -> bytes:
    """*text* as UTF-8, lone surrogates (which ``st.characters()`` may draw) kept as bytes."""
    return text.encode("utf-8", "surrogatepass")


@FAST
@given(data=st.binary(max_size=400), limit=st.one_of(st.none(), st.integers(0, 300)))
def test_escape_output_is_printable(data: bytes, limit: int | None) -> None:
    assert is_safe(escape(data, limit))


@FAST
@given(text=dangerous_text, limit=st.one_of(st.none(), st.integers(0, 300)))
def test_no_control_character_of_utf8_text_comes_out_raw(text: str, limit: int | None) -> None:
    data = text.encode("utf-8", "surrogatepass")
    assert is_safe(escape(data, limit))


@FAST
@given(data=st.one_of(st.binary(max_size=400), dangerous_text.map(surrogates_kept)))
def test_escape_reads_back_as_the_same_bytes(data: bytes) -> None:
    text = escape(data, None)
    assert text.startswith('"') and text.endswith('"')
    assert ast.literal_eval("b" + as_bytes_literal(text)) == data


def test_printable_utf8_is_shown_as_text_and_the_rest_escaped() -> None:
    assert escape("héllo ✓ 日本".encode()) == '"héllo ✓ 日本"'
    assert escape(b"\xc3\xa9\xff\xc3") == '"é\\xff\\xc3"'
    assert escape("\u202eevil\u0085".encode()) == '"\\xe2\\x80\\xaeevil\\xc2\\x85"'
    assert escape_text("h\u00e9llo \u2066x\u009b") == "héllo \\u2066x\\x9b"


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
    assert escape(b"x" * (PREVIEW_LIMIT + 1)).endswith('" (+1 more byte)')


@FAST
@given(text=st.one_of(st.text(max_size=200), dangerous_text))
def test_escape_text_output_is_printable(text: str) -> None:
    assert is_safe(escape_text(text))


def test_escape_text_keeps_plain_text_and_neutralises_controls() -> None:
    assert escape_text("connect to 127.0.0.1:3100: refused") == (
        "connect to 127.0.0.1:3100: refused"
    )
    assert escape_text("\x1b[2J\r\n\x7f\u00e9") == "\\x1b[2J\\r\\n\\x7f\u00e9"
