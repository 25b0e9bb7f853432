"""``python -m trio_echo.testing``: list, replay and sweep the scenario table."""

from __future__ import annotations

import subprocess
import sys

import pytest

from trio_echo.testing import SCENARIOS
from trio_echo.testing.__main__ import main


def test_list_names_every_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for scenario in SCENARIOS:
        assert scenario.name in out
    assert "drivers may differ" not in out  # no row declares a difference any more


def test_replay_prints_the_transcript_and_the_same_digest_for_both_drivers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["replay", "idle-timeout", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert '"reason": "idle for 60 s"' in out
    digests = {line.split("sha256 ")[1] for line in out.splitlines() if "sha256 " in line}
    assert len(digests) == 1


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_sweep_checks_seeds_and_reports(jobs: str, capsys: pytest.CaptureFixture[str]) -> None:
    arguments = ["sweep", "--seeds", "2", "--first", "40", "--scenario", "faulty-resets"]
    assert main([*arguments, "--jobs", jobs]) == 0
    assert "all seeds agree" in capsys.readouterr().out


def test_the_module_runs_as_a_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "trio_echo.testing", "replay", "note-session", "--digest-only"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("sha256") == 2


@pytest.mark.parametrize(
    "arguments", [["replay", "no-such-scenario"], ["sweep", "--scenario", "no-such-scenario"]]
)
def test_an_unknown_scenario_is_one_line_and_exit_2(
    arguments: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(arguments) == 2
    err = capsys.readouterr().err
    assert err == "trio_echo.testing: error: no scenario named 'no-such-scenario' (see 'list')\n"


def test_a_malformed_option_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "note-session", "--seed", "many"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("trio_echo.testing: error: argument --seed: invalid int value")
    assert err.count("\n") == 1


def test_replay_into_a_closed_pipe_stops_quietly() -> None:
    """``replay thousand-clients | head -1``: exit 141, no traceback."""
    import subprocess
    import sys

    child = subprocess.Popen(
        [sys.executable, "-m", "trio_echo.testing", "replay", "thousand-clients"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None and child.stderr is not None
        assert child.stdout.readline() == b"{\n"
        child.stdout.close()
        code = child.wait(60)
        stderr = child.stderr.read()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(60)
    assert code == 141
    assert stderr == b""
