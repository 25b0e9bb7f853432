"""``serve --fault`` and ``--seed`` on the command line: a bad spec is one line, exit 2."""

from __future__ import annotations

import pytest
from loopback import run_cli

from trio_echo.cli.parser import build_parser
from trio_echo.faults import parse_faults


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--fault", "delay=20"], "delay='20' is not a duration"),
        (["--fault", "nonsense"], "unknown fault 'nonsense'"),
        (["--fault", "\x1b[2J"], "\\x1b[2J"),
        (["--fault", "delay=1s", "--fault", "delay=2s"], "fault delay given twice"),
        (["--listen", "tcp://127.0.0.1:0?fault=drop=7"], "fault must be a fault spec"),
        (["--seed", "-1"], "--seed"),
    ],
)
def test_a_bad_fault_flag_is_one_line_and_exit_2(args: list[str], fragment: str) -> None:
    done = run_cli("serve", "--port", "0", *args)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert fragment in lines[0]
    assert "\x1b" not in done.stderr and "Traceback" not in done.stderr


def test_fault_flags_parse_into_specs_and_a_seed() -> None:
    args = build_parser().parse_args(
        ["serve", "--fault", "delay=20ms", "--fault", "split=1-4@0.5", "--seed", "9"]
    )
    assert args.fault == [parse_faults("delay=20ms"), parse_faults("split=1-4@0.5")]
    assert args.seed == 9
