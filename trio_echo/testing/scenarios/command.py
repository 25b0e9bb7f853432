"""``python -m trio_echo.testing``: list, replay and sweep the scenario table.

::

    python -m trio_echo.testing list
    python -m trio_echo.testing replay SCENARIO [--seed N] [--driver trio|blocking|both]
    python -m trio_echo.testing sweep [--seeds 1000] [--first 0] [--scenario NAME ...] [--jobs N]

``replay`` prints the transcript and its digest (with ``both``, checks that
the drivers agree); ``sweep`` checks every seeded scenario for each seed and
prints the replay command of every failure. Exit status 1 if anything
failed, 2 for a usage error (an unknown scenario, a malformed option), which
is printed as one line.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import functools
import itertools
import multiprocessing
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import NoReturn

from ...cli.common import EXIT_OUTPUT_CLOSED, silence_stdout
from ..serving import Driver
from .harness import ScenarioFailed, check, expect, run_scenario
from .table import SCENARIOS, NoSuchScenario, by_name, seeded
from .transcript import Transcript

__all__ = ["PROG", "main", "seed_failure"]

PROG = "trio_echo.testing"
"""The name errors are printed under."""
EXIT_FAILED, EXIT_USAGE = 1, 2


class UsageError(Exception):
    """The command line asks for something that cannot be done."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose complaints become :class:`UsageError` (one line, no usage)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return its exit status."""
    try:
        args = _parser().parse_args(argv)
        status: int = args.command(args)
    except (UsageError, NoSuchScenario) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # the reader went away (| head): stop quietly, as Unix tools do
        silence_stdout()
        return EXIT_OUTPUT_CLOSED
    return status


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m trio_echo.testing",
        description="Replay and sweep trio-echo's deterministic scenario table.",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    listing = commands.add_parser("list", help="list the scenarios")
    listing.set_defaults(command=_list)
    replay = commands.add_parser("replay", help="run one scenario and print its transcript")
    replay.add_argument("scenario", help="scenario name (see `list`)")
    replay.add_argument("--seed", type=int, default=0, help="fault seed (default: 0)")
    replay.add_argument(
        "--driver", choices=["trio", "blocking", "both"], default="both", help="default: both"
    )
    replay.add_argument("--digest-only", action="store_true", help="print digests only")
    replay.set_defaults(command=_replay)
    sweep = commands.add_parser("sweep", help="check the seeded scenarios over many seeds")
    sweep.add_argument("--seeds", type=int, default=1000, help="how many seeds (default: 1000)")
    sweep.add_argument("--first", type=int, default=0, help="first seed (default: 0)")
    sweep.add_argument(
        "--scenario", action="append", help="only this scenario (repeatable; default: all seeded)"
    )
    sweep.add_argument(
        "--jobs", type=int, default=1, help="processes to spread the seeds over (default: 1)"
    )
    sweep.set_defaults(command=_sweep)
    return parser


def _list(_args: argparse.Namespace) -> int:
    for scenario in SCENARIOS:
        kind = "seeded" if scenario.seeded else "fixed"
        print(f"{scenario.name:24} {kind:6}  {scenario.checks}")
        if scenario.differences:
            print(f"{'':32}drivers may differ: {scenario.differences}")
    return 0


def _replay(args: argparse.Namespace) -> int:
    scenario = by_name(args.scenario)
    drivers = list(Driver) if args.driver == "both" else [Driver(args.driver)]
    transcripts: tuple[Transcript, ...]
    try:
        if len(drivers) == 2:
            transcripts = check(scenario, args.seed)
        else:
            transcripts = (run_scenario(scenario, drivers[0], args.seed),)
            expect(scenario, transcripts[0])
    except ScenarioFailed as exc:
        print(exc, file=sys.stderr)
        return EXIT_FAILED
    for transcript in transcripts:
        if not args.digest_only:
            print(transcript.canonical())
        print(f"{transcript.driver}: sha256 {transcript.digest()}")
    return 0


def _worker_context() -> multiprocessing.context.BaseContext:
    """Fresh worker processes rather than forks: forking a process that runs
    threads (as a test run may) can deadlock the child."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def _sweep(args: argparse.Namespace) -> int:
    scenarios = [by_name(name) for name in args.scenario] if args.scenario else seeded()
    seeds = range(args.first, args.first + args.seeds)
    failures = 0
    with contextlib.ExitStack() as stack:
        spread: Callable[..., Iterator[str | None]] = map
        if args.jobs > 1:
            pool = stack.enter_context(
                concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=_worker_context())
            )
            spread = functools.partial(pool.map, chunksize=16)
        for scenario in scenarios:
            started = time.perf_counter()
            for failure in spread(seed_failure, itertools.repeat(scenario.name), seeds):
                if failure:
                    failures += 1
                    print(failure, file=sys.stderr, flush=True)
            elapsed = time.perf_counter() - started
            print(f"{scenario.name}: {len(seeds)} seeds, both drivers, {elapsed:.1f} s", flush=True)
    print("all seeds agree" if not failures else f"{failures} failures")
    return EXIT_FAILED if failures else 0


def seed_failure(name: str, seed: int) -> str | None:
    """Check one seed of the scenario called *name*; the failure's report, or None.

    A sweep's worker processes import it from here (they cannot see ``__main__``).
    """
    try:
        check(by_name(name), seed)
    except ScenarioFailed as exc:
        return str(exc)
    return None
