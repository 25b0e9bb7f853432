"""``python -m reliability``: run the reliability cases and write RELIABILITY.md."""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import trio

from .cases import CASES, Case
from .report import Row, document, machine, table

DRIVERS = ("trio", "blocking")
CASE_BOUND = 90.0
"""Seconds after which a case is abandoned (its server is killed) and marked failed."""

DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "RELIABILITY.md"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen cases for the chosen drivers; write the report; exit 1 on any failure."""
    args = _parser().parse_args(argv)
    cases = [
        case
        for case in CASES
        if (not args.case or case.name in args.case) and case.name not in (args.skip or ())
    ]
    drivers = args.driver or list(DRIVERS)
    _raise_descriptor_limit()
    started = time.monotonic()
    try:
        rows = trio.run(_run_all, cases, drivers)
    except BaseException as exc:
        if not _interrupted(exc):
            raise
        print("interrupted; every server it started has been stopped", file=sys.stderr)
        return 130
    took = time.monotonic() - started
    print(table(rows))
    if not args.no_write:
        args.output.write_text(document(rows, cases, machine(), took))
        print(f"wrote {args.output}")
    return 0 if all(row.passed for row in rows) else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m reliability",
        description="Measure trio-echo's servers under faults and write RELIABILITY.md.",
    )
    parser.add_argument(
        "--driver", action="append", choices=DRIVERS, help="only this driver (repeatable)"
    )
    parser.add_argument(
        "--case",
        action="append",
        choices=[case.name for case in CASES],
        metavar="NAME",
        help="only this case (repeatable): " + ", ".join(case.name for case in CASES),
    )
    parser.add_argument(
        "--skip",
        action="append",
        choices=[case.name for case in CASES],
        metavar="NAME",
        help="leave this case out (repeatable), e.g. --skip '10,000 closing at once'",
    )
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="where to write (default: %(default)s)"
    )
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    return parser


def _interrupted(exc: BaseException) -> bool:
    """Whether *exc* is, or groups, a KeyboardInterrupt (Ctrl-C)."""
    if isinstance(exc, KeyboardInterrupt):
        return True
    inner: Sequence[BaseException] = getattr(exc, "exceptions", ())
    return any(_interrupted(e) for e in inner)


DESCRIPTORS_WANTED = 16384
"""The memory case opens thousands of connections from this process (the crowd case 1,000)."""


def _raise_descriptor_limit() -> None:
    """Raise the descriptor limit toward :data:`DESCRIPTORS_WANTED`, as the hard one allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = DESCRIPTORS_WANTED if hard == resource.RLIM_INFINITY else min(hard, DESCRIPTORS_WANTED)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


async def _run_all(cases: Sequence[Case], drivers: Sequence[str]) -> list[Row]:
    rows = []
    for case in cases:
        for driver in (driver for driver in drivers if driver in case.drivers):
            row = await _run_one(case, driver)
            verdict = "pass" if row.passed else "FAIL"
            print(
                f"{verdict:4} {case.name} [{driver}] {row.figure} ({row.seconds:.1f} s)", flush=True
            )
            rows.append(row)
    return rows


async def _run_one(case: Case, driver: str) -> Row:
    started = trio.current_time()
    try:
        with trio.fail_after(CASE_BOUND):
            measurement = await case.run(driver)
    except Exception as exc:
        failure: BaseException = exc
        inner: Sequence[BaseException] = getattr(failure, "exceptions", ())
        while len(inner) == 1:  # the one failure a nursery wrapped says more
            failure = inner[0]
            inner = getattr(failure, "exceptions", ())
        return Row(
            case,
            driver,
            None,
            f"{type(failure).__name__}: {failure}",
            trio.current_time() - started,
        )
    return Row(case, driver, measurement, None, trio.current_time() - started)


if __name__ == "__main__":
    sys.exit(main())
