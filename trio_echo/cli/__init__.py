"""The ``trio-echo`` command: ``serve``, ``client`` and ``demo``.

Parsing lives in :mod:`.parser`, each sub-command in its own module; the
work is done by the drivers. Every failure a user can cause or meet is a
named error, printed as one line: exit 1 for a failed run, 2 for a usage
error, 0 when a server is stopped with Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

from ..errors import TrioEchoError
from .common import EXIT_FAILED, EXIT_OUTPUT_CLOSED, OutputClosed, fail_line, silence_stdout
from .parser import build_parser

__all__ = ["build_parser", "main", "run"]


def main(argv: Sequence[str] | None = None, *, process_exits: bool = False) -> int:
    """Run the command line; return the exit code.

    *process_exits* says the process ends when this returns (the console
    script): a server then leaves its stop signals ignored on the way out
    rather than restoring the handlers it found.
    """
    _never_fail_to_encode()
    args = build_parser().parse_args(argv)
    args.process_exits = process_exits
    command: Callable[..., int] = args.command
    try:
        return command(args)
    except TrioEchoError as exc:
        print(fail_line(str(exc)), file=sys.stderr)
        return EXIT_FAILED
    except (OutputClosed, BrokenPipeError):
        silence_stdout()
        return EXIT_OUTPUT_CLOSED
    except BaseExceptionGroup as group:
        # A nursery wraps even a single error (a server's port in use, say).
        if _only(group, (OutputClosed, BrokenPipeError)):
            silence_stdout()
            return EXIT_OUTPUT_CLOSED
        error = sole_error(group)
        if error is None:
            raise
        print(fail_line(str(error)), file=sys.stderr)
        return EXIT_FAILED


def sole_error(exc: BaseException) -> TrioEchoError | None:
    """The one named error inside nested single-member exception groups, if that is all."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc if isinstance(exc, TrioEchoError) else None


def _only(group: BaseExceptionGroup[BaseException], kinds: tuple[type[BaseException], ...]) -> bool:
    """True if every exception in *group*, however nested, is one of *kinds*."""
    matched, rest = group.split(kinds)
    return matched is not None and rest is None


def _never_fail_to_encode() -> None:
    """Text the terminal's encoding cannot show (``é`` under a Latin-1 locale) is escaped.

    Output shows printable UTF-8 as text (see :mod:`trio_echo.escape`);
    where standard output or error cannot encode it, a backslash escape is
    printed instead of failing.
    """
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")


def run() -> NoReturn:
    """Entry point for ``python -m trio_echo`` and the console script."""
    sys.exit(main(process_exits=True))
