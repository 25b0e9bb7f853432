"""Render untrusted bytes for logs and terminals.

Nothing a peer sends may reach a log or a terminal raw: a stray ESC or CR
can rewrite what an operator sees, a C1 control (U+0080-U+009F) can do the
same on some terminals, and a bidi override (U+202A-U+202E, U+2066-U+2069)
can make text read in another order. :func:`escape` shows valid UTF-8
whose characters are printable as itself (``"héllo ✓"``) and everything
else as a Python-style escape, inside double quotes: control characters,
format characters such as the bidi overrides, invalid UTF-8 byte by byte.
It says how many bytes it left out when a preview limit applies.
:func:`escape_text` does the same for text (an error's message).

"Printable" is :meth:`str.isprintable`: letters, marks, numbers,
punctuation, symbols and the plain space; never a control (Cc), format
(Cf), separator other than space, surrogate, private-use or unassigned
character.
"""

from __future__ import annotations

PREVIEW_LIMIT = 200
"""Default number of bytes shown before the rest is summarised."""

_SHORT = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _build_table() -> dict[int, str]:
    table: dict[int, str] = {}
    for code in range(128):
        char = chr(code)
        if char in _SHORT:
            table[code] = _SHORT[char]
        elif 0x20 <= code < 0x7F:
            table[code] = char
        else:
            table[code] = f"\\x{code:02x}"
    return table


_TABLE = _build_table()
"""How each ASCII character is shown (the only table a printable-ASCII message needs)."""


def escape(data: bytes, limit: int | None = PREVIEW_LIMIT) -> str:
    """Return *data* as a quoted string of printable characters, escaped where needed.

    With a *limit*, only the first *limit* bytes are shown and the quote is
    followed by how many more there were, so a long message is summarised
    openly, never cut silently.
    """
    shown = data if limit is None else data[:limit]
    if shown.isascii():
        body = shown.decode("ascii").translate(_TABLE)
    else:
        body = "".join(_shown_bytes(char) for char in shown.decode("utf-8", "surrogateescape"))
    text = f'"{body}"'
    hidden = len(data) - len(shown)
    if hidden:
        text += f" (+{hidden} more byte{'' if hidden == 1 else 's'})"
    return text


def _shown_bytes(char: str) -> str:
    """One decoded character of a byte string as shown: itself, or its bytes escaped."""
    code = ord(char)
    if code < 0x80:
        return _TABLE[code]
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not valid UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if char.isprintable():
        return char
    return "".join(f"\\x{byte:02x}" for byte in char.encode("utf-8"))


def escape_text(text: str) -> str:
    """Make a str safe to print: printable characters as themselves, every other escaped.

    A character that is not printable becomes ``\\xNN``, ``\\uNNNN`` or
    ``\\UNNNNNNNN``; a byte that came in as a lone surrogate (a command-line
    argument that was not UTF-8) becomes the ``\\xNN`` of that byte.
    """
    if text.isascii():
        return text.translate(_TEXT_TABLE)
    return "".join(_shown_char(char) for char in text)


_TEXT_TABLE = {code: _TABLE[code] for code in [*range(0x20), 0x7F]}
"""Text keeps its quotes and backslashes; only ASCII controls are escaped."""


def _shown_char(char: str) -> str:
    code = ord(char)
    if code < 0x80:
        return _TEXT_TABLE.get(code, char)
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"
    if char.isprintable():
        return char
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"
