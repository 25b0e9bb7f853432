"""deploy/: the container's entry point and the Kubernetes manifest name flags the CLI accepts.

No YAML parser is a dependency, so the manifest's ``args`` list is read with
a few lines of text handling written for its one conventional layout, and
each command line is then parsed by the command line's own parser.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from trio_echo.cli.parser import build_parser

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
INSTRUCTION = re.compile(r"^(?P<name>ENTRYPOINT|CMD)\s+(?P<json>\[.*\])\s*$", re.MULTILINE)

PENDING = {
    "--drain is not in this build": ["serve", "--drain", "1"],
    "the whoami protocol is not in this build": ["serve", "--protocol", "whoami"],
}
"""Features the manifest uses that come with other parts of the product, and a probe of each."""


def dockerfile_command() -> list[str]:
    """ENTRYPOINT then CMD, as the container runs them (both in exec form)."""
    text = (DEPLOY / "Dockerfile").read_text()
    found = {match["name"]: json.loads(match["json"]) for match in INSTRUCTION.finditer(text)}
    return [*found["ENTRYPOINT"], *found["CMD"]]


def manifest_args() -> list[str]:
    """The container's ``args:`` list in the Deployment, one ``- item`` per line."""
    lines = (DEPLOY / "kubernetes" / "trio-echo.yaml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "args:")
    indent = len(lines[start]) - len(lines[start].lstrip())
    args = []
    for line in lines[start + 1 :]:
        stripped = line.strip()
        if stripped.startswith("#"):
            continue
        if len(line) - len(line.lstrip()) <= indent or not stripped.startswith("- "):
            break
        args.append(stripped[2:].strip().strip('"'))
    return args


def accepted(args: list[str]) -> bool:
    try:
        build_parser().parse_args(args)
    except SystemExit:
        return False
    return True


def parse_or_skip(args: list[str]) -> None:
    """Parse *args* as the CLI would; skip if they need a feature this build lacks."""
    if not accepted(args):
        missing = [reason for reason, probe in PENDING.items() if not accepted(probe)]
        if missing:
            pytest.skip("; ".join(missing))
    build_parser().parse_args(args)


def test_the_image_runs_the_console_script_with_a_command_line_it_accepts() -> None:
    command = dockerfile_command()
    assert command[0] == "trio-echo"
    args = build_parser().parse_args(command[1:])
    assert args.workers == 2
    assert [str(spec) for spec in args.listen] == ["tcp://0.0.0.0:3100", "udp://0.0.0.0:3100"]


def test_the_image_runs_as_a_non_root_user() -> None:
    users = re.findall(r"^USER\s+(\S+)", (DEPLOY / "Dockerfile").read_text(), re.MULTILINE)
    assert users and users[-1] not in {"root", "0"}


def test_the_manifest_args_are_a_command_line_the_server_accepts() -> None:
    args = manifest_args()
    assert args[0] == "serve"
    assert "tcp://0.0.0.0:3101?protocol=whoami" in args
    parse_or_skip(args)


def test_the_manifest_args_without_the_newer_features_parse_in_any_build() -> None:
    args = manifest_args()
    drain = args.index("--drain")
    older = [arg.replace("?protocol=whoami", "") for arg in args[:drain] + args[drain + 2 :]]
    parsed = build_parser().parse_args(older)
    assert parsed.workers == 2
    assert {spec.transport.value for spec in parsed.listen} == {"tcp", "udp"}
