"""What every sub-command shares: exit codes, one-line errors, building configuration."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, NoReturn, TypeVar

from ..errors import ConfigError, TrioEchoError
from ..escape import escape_text

PROG = "trio-echo"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_OUTPUT_CLOSED = 141
"""Standard output was closed (``| head``): 128 + SIGPIPE, as a Unix tool that died of it."""


class OutputClosed(Exception):
    """Standard output was closed under us: stop quietly, it is nobody's error."""


def show(line: str) -> None:
    """Print one line of a command's output; a closed standard output is :class:`OutputClosed`.

    Not an ``OSError``, so no client can mistake the reader going away for
    the server's doing.
    """
    try:
        print(line, flush=True)
    except BrokenPipeError:
        raise OutputClosed() from None


def silence_stdout() -> None:
    """Point standard output at /dev/null, so nothing more fails writing to it at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


_Config = TypeVar("_Config")


def fail_line(message: str) -> str:
    """The one line a failure prints: the program name and the escaped message."""
    return f"{PROG}: {escape_text(message)}"


def usage_error(message: str) -> NoReturn:
    """Print *message* as a usage error and exit 2."""
    print(f"{PROG}: error: {escape_text(message)}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


def build_config(
    kind: Callable[..., _Config],
    *values: Any,
    flags: Mapping[str, str] | None = None,
    **fields: Any,
) -> _Config:
    """Build a configuration (or parse a value); what it rejects is a usage error.

    The error names the flag the user typed, not the field: ``max_line``
    becomes ``--max-line``, or what *flags* says for a field with another name.
    """
    try:
        return kind(*values, **fields)
    except ConfigError as exc:
        usage_error(flag_message(exc, flags or {}))
    except TrioEchoError as exc:
        usage_error(str(exc))


FIELD_FLAGS = {
    "server_hostname": "--server-name",
    "rate": "--udp-rate",
    "burst": "--udp-burst",
}
"""Fields whose flag is not simply the field's name with dashes."""


def flag_message(exc: ConfigError, flags: Mapping[str, str]) -> str:
    """*exc*'s message with its field's name replaced by the flag that sets it."""
    message, field = str(exc), exc.field
    if field is None or not message.startswith(field):
        return message
    flag = flags.get(field) or FIELD_FLAGS.get(field) or "--" + field.replace("_", "-")
    return flag + message[len(field) :]
