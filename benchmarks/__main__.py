"""``python -m benchmarks``: run the suite, rebuild its reports, publish, profile.

python -m benchmarks run [--quick] [--out DIR]
                         [--parts core,transports,client,workers,instructions]
                         [--servers K,...] [--workloads W1,...]
python -m benchmarks report [RESULTS_JSON]
python -m benchmarks publish [RESULTS_JSON]
python -m benchmarks profile [--servers K,...] [--workload W2] [--duration S]
                             [--no-strace] [--no-callgrind]
python -m benchmarks build
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from . import build, parts, report, servers, suite
from .servers import BY_KEY

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "out"


def _keys(text: str | None) -> list[str] | None:
    return [k.strip() for k in text.split(",") if k.strip()] if text else None


def _add_source_options(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--trio-echo-rev",
        metavar="REV",
        help="benchmark trio_echo/ as committed at this git revision (e.g. HEAD)",
    )
    source.add_argument(
        "--trio-echo-src",
        type=Path,
        metavar="DIR",
        help="benchmark the trio_echo package found in DIR",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the suite; write JSON, markdown and a chart")
    run.add_argument("--quick", action="store_true", help="a smoke run, about 5 minutes")
    run.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    _add_source_options(run)
    run.add_argument("--servers", help=f"comma-separated subset of: {', '.join(BY_KEY)}")
    run.add_argument("--workloads", help="comma-separated subset of W1..W7 (the core part)")
    run.add_argument(
        "--parts",
        help=f"comma-separated subset of: {', '.join(parts.PARTS)} (default: all)",
    )
    run.add_argument("--rounds", type=int, help="measured rounds (default: 5, quick 2)")
    run.add_argument("--duration", type=float, help="seconds counted per measurement")
    run.add_argument("--idle-connections", type=int, help="W7 connections (default: 10000)")

    rep = commands.add_parser("report", help="rewrite results.md, readme-table.md and chart.png")
    rep.add_argument("json", type=Path, nargs="?", default=DEFAULT_OUT / "results.json")

    pub = commands.add_parser(
        "publish", help="copy a run into benchmarks/ (results.json, results.png, RESULTS.md)"
    )
    pub.add_argument("json", type=Path, nargs="?", default=DEFAULT_OUT / "results.json")

    prof = commands.add_parser("profile", help="profile servers under one workload")
    _add_source_options(prof)
    prof.add_argument("--servers", default="trio-echo,asyncio-streams,trio-tutorial")
    prof.add_argument("--workload", default="W2")
    prof.add_argument("--duration", type=float, default=5.0)
    prof.add_argument("--out", type=Path, default=DEFAULT_OUT / "profile")
    prof.add_argument("--no-strace", action="store_true", help="skip the strace -c pass")
    prof.add_argument(
        "--no-callgrind", action="store_true", help="skip the callgrind instruction count"
    )

    commands.add_parser("build", help="compile the load generator and the C server")

    cli = commands.add_parser(
        "client", help="trio-echo client's requests/s against the C generator's (W2, W4)"
    )
    cli.add_argument("--server", default="c-epoll", help=f"one of: {', '.join(BY_KEY)}")
    cli.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    cli.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")

    args = parser.parse_args(argv)
    suite.stop_on_sigterm()
    try:
        if getattr(args, "trio_echo_rev", None):
            print(f"trio-echo from {servers.export_revision(args.trio_echo_rev)}", file=sys.stderr)
        elif getattr(args, "trio_echo_src", None):
            servers.TRIO_ECHO_SOURCE = args.trio_echo_src.resolve()
        if args.command == "build":
            for name, path in build.build(force=True).items():
                print(f"{name}: {path}")
            return 0
        if args.command == "run":
            plan = suite.QUICK if args.quick else suite.FULL
            if args.rounds:
                plan = suite.Plan(**{**plan.__dict__, "rounds": args.rounds})
            if args.duration:
                plan = suite.Plan(**{**plan.__dict__, "duration_s": args.duration})
            if args.idle_connections:
                plan = suite.Plan(**{**plan.__dict__, "idle_connections": args.idle_connections})
            chosen_parts = _keys(args.parts) or list(parts.PARTS)
            unknown = set(chosen_parts) - set(parts.PARTS)
            if unknown:
                run.error(f"unknown part: {', '.join(sorted(unknown))}")
            results = suite.run_suite(
                plan,
                args.out,
                server_keys=_keys(args.servers),
                workload_keys=_keys(args.workloads),
                part_keys=chosen_parts,
                parts_plan=parts.QUICK_PARTS if args.quick else parts.FULL_PARTS,
            )
            paths = report.write_reports(results, args.out)
            print(f"wrote {args.out / 'results.json'}")
            for path in paths.values():
                print(f"wrote {path}")
            print()
            print(paths["readme_table"].read_text())
            return 0
        if args.command in ("report", "publish"):
            results = json.loads(args.json.read_text())
            if args.command == "report":
                paths = report.write_reports(results, args.json.parent)
                for path in paths.values():
                    print(f"wrote {path}")
                return 0
            return publish(results, args.json)
        if args.command == "client":
            from . import client_figure

            return client_figure.run(args.server, args.duration, args.out)
        if args.command == "profile":
            from . import profiling

            return profiling.run(
                _keys(args.servers) or [],
                args.workload,
                args.duration,
                args.out,
                not args.no_strace,
                not args.no_callgrind,
            )
    except KeyboardInterrupt:
        print("interrupted: every server and generator was stopped", file=sys.stderr)
        return 130
    except (build.BuildError, suite.SuiteError, subprocess.CalledProcessError) as exc:
        print(f"benchmarks: {exc}", file=sys.stderr)
        return 1
    return 2


def publish(results: dict[str, Any], source: Path) -> int:
    """Write benchmarks/RESULTS.md with its chart and the JSON it was made from."""
    target_json = HERE / "results.json"
    if source.resolve() != target_json:
        # one measurement per line: readable, and a third of the indented size
        rows = ",\n".join(json.dumps(m, separators=(",", ":")) for m in results["measurements"])
        head = json.dumps({k: v for k, v in results.items() if k != "measurements"}, indent=1)
        target_json.write_text(f'{head[:-2]},\n "measurements": [\n{rows}\n]\n}}\n')
    summary = report.summarize(results)
    report.chart(results, summary, HERE / "results.png")
    (HERE / "RESULTS.md").write_text(report.results_markdown(results, summary, "results.png"))
    for name in ("RESULTS.md", "results.png", "results.json"):
        print(f"wrote {HERE / name}")
    print()
    print(report.summary_markdown(results, summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
