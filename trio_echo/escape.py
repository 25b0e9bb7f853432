"""Render untrusted bytes for logs and terminals.

Nothing a peer sends may reach a log or a terminal raw: a stray ESC or CR can
rewrite what an operator sees. :func:`escape` shows printable ASCII as itself
and everything else as a Python-style escape, inside double quotes, and says
how many bytes it left out when a preview limit applies.
"""

from __future__ import annotations

PREVIEW_LIMIT = 200
"""Default number of bytes shown before the rest is summarised."""


def _build_table() -> dict[int, str]:
    table: dict[int, str] = {}
    for code in range(256):
        char = chr(code)
        if char == "\\":
            table[code] = "\\\\"
        elif char == '"':
            table[code] = '\\"'
        elif char == "\n":
            table[code] = "\\n"
        elif char == "\r":
            table[code] = "\\r"
        elif char == "\t":
            table[code] = "\\t"
        elif 0x20 <= code < 0x7F:
            table[code] = char
        else:
            table[code] = f"\\x{code:02x}"
    return table


_TABLE = _build_table()


def escape(data: bytes, limit: int | None = PREVIEW_LIMIT) -> str:
    """Return *data* as a quoted, escaped, printable-ASCII string.

    With a *limit*, only the first *limit* bytes are shown and the quote is
    followed by how many more there were, so a long message is summarised
    openly, never cut silently.
    """
    shown = data if limit is None else data[:limit]
    text = '"' + shown.decode("latin-1").translate(_TABLE) + '"'
    hidden = len(data) - len(shown)
    if hidden:
        text += f" (+{hidden} more bytes)"
    return text


def escape_text(text: str) -> str:
    """Make a str safe to print: control characters and non-ASCII become escapes."""
    return (
        text.encode("ascii", "backslashreplace")
        .decode("ascii")
        .translate({code: _TABLE[code] for code in range(0x20)} | {0x7F: "\\x7f"})
    )
