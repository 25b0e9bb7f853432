"""The servers under test, each started in its own process on 127.0.0.1, port 0.

Every server speaks the ``reply`` and ``echo`` protocols byte for byte as
trio-echo does, prints one ``... listening on 127.0.0.1:PORT`` line, and is
stopped with SIGTERM (then SIGKILL) on its process group.
"""

from __future__ import annotations

import importlib.util
import io
import os
import re
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from . import procs
from .build import BUILD_DIR

REPO = Path(__file__).resolve().parent.parent
MAX_CONNECTIONS = 20000
"""Passed to every server that has a connection limit, so W3 and W7 fit."""

TRIO_ECHO_SOURCE: Path | None = None
"""Another trio-echo source tree to benchmark (its parent of ``trio_echo/``);
None runs the installed one. Lets two revisions be compared side by side."""

TRIO_ECHO_REVISION: str | None = None
"""The commit TRIO_ECHO_SOURCE was exported from, when it was."""


def export_revision(revision: str) -> Path:
    """Export ``trio_echo/`` at a git *revision* into benchmarks/build/ and use it.

    Only reads the repository (``git rev-parse``, ``git archive``), so a run
    measures exactly one commit even while the work tree changes.
    """
    global TRIO_ECHO_SOURCE, TRIO_ECHO_REVISION
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", f"{revision}^{{commit}}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.strip()
    target = BUILD_DIR / f"trio-echo-{commit}"
    if not (target / "trio_echo" / "__init__.py").exists():
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", "--format=tar", commit, "trio_echo"],
            capture_output=True,
            timeout=60,
            check=True,
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            try:
                tar.extractall(target, filter="data")
            except TypeError:  # Python without extraction filters; the archive is our own
                tar.extractall(target)
    TRIO_ECHO_SOURCE = target
    TRIO_ECHO_REVISION = commit
    return target


def child_environment(is_trio_echo: bool) -> tuple[dict[str, str] | None, Path]:
    """The environment and working directory of a server child: a trio-echo child
    imports the chosen source tree (TRIO_ECHO_SOURCE) when one was given."""
    if is_trio_echo and TRIO_ECHO_SOURCE is not None:
        # ``python -m`` puts the working directory first on sys.path
        return {**os.environ, "PYTHONPATH": str(TRIO_ECHO_SOURCE)}, TRIO_ECHO_SOURCE
    return None, REPO


_LISTENING = re.compile(r"listening on .*:(\d+)\s*$")


@dataclass(frozen=True)
class ServerSpec:
    """How to start one kind of server."""

    key: str
    label: str
    command: Callable[[str], list[str]]
    requires: str | None = None
    """A module that must be importable (an optional dependency)."""
    reference: bool = False
    """Not a contender: the C server that measures the generator's ceiling."""
    is_trio_echo: bool = False

    def missing(self) -> str | None:
        """Why this server cannot run here, or None."""
        if self.requires and importlib.util.find_spec(self.requires) is None:
            return f"{self.requires} is not installed (pip install -e '.[bench]')"
        return None


def _python(*args: str) -> Callable[[str], list[str]]:
    def command(protocol: str) -> list[str]:
        return [sys.executable, *args, "--protocol", protocol]

    return command


def _trio_echo(*extra: str) -> Callable[[str], list[str]]:
    def command(protocol: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "trio_echo",
            "serve",
            "--port",
            "0",
            "--protocol",
            protocol,
            "--log-level",
            "warning",
            "--max-connections",
            str(MAX_CONNECTIONS),
            *extra,
        ]

    return command


def _peer(module: str, *extra: str) -> Callable[[str], list[str]]:
    return _python("-m", f"benchmarks.peers.{module}", "--port", "0", *extra)


def _cserver(protocol: str) -> list[str]:
    return [str(BUILD_DIR / "cserver"), "--port", "0", "--protocol", protocol]


SERVERS: tuple[ServerSpec, ...] = (
    ServerSpec("trio-echo", "trio-echo (Trio)", _trio_echo(), is_trio_echo=True),
    ServerSpec(
        "trio-echo-blocking", "trio-echo --blocking", _trio_echo("--blocking"), is_trio_echo=True
    ),
    ServerSpec("asyncio-streams", "asyncio streams", _peer("asyncio_streams")),
    ServerSpec("asyncio-protocol", "asyncio Protocol", _peer("asyncio_protocol")),
    ServerSpec(
        "uvloop-protocol",
        "uvloop Protocol",
        _peer("asyncio_protocol", "--loop", "uvloop"),
        requires="uvloop",
    ),
    ServerSpec("socketserver-threads", "socketserver threads", _peer("socketserver_threads")),
    ServerSpec("trio-tutorial", "Trio tutorial", _peer("trio_tutorial")),
    ServerSpec("c-epoll", "C epoll (ceiling)", _cserver, reference=True),
)
BY_KEY = {spec.key: spec for spec in SERVERS}


class ServerError(RuntimeError):
    """A server did not start, or died."""


class ServerProcess:
    """One running server; use as a context manager so it is always stopped."""

    def __init__(self, spec: ServerSpec, protocol: str, log_dir: Path) -> None:
        self.spec = spec
        self.protocol = protocol
        self.log_path = log_dir / f"{spec.key}-{protocol}.log"
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def start(self, timeout: float = 30.0) -> ServerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        env, cwd = child_environment(self.spec.is_trio_echo)
        self._process = procs.spawn(
            self.spec.command(self.protocol), cwd=cwd, stderr=self._log, env=env
        )
        assert self._process.stdout is not None
        reader = procs.LineReader(self._process.stdout)
        try:
            deadline = time.monotonic() + timeout
            while True:
                line = reader.readline(max(0.1, deadline - time.monotonic()))
                if line is None:
                    raise ServerError(
                        f"{self.spec.label} exited before listening; see {self.log_path}"
                    )
                match = _LISTENING.search(line)
                if match:
                    self.port = int(match.group(1))
                    return self
        except TimeoutError:
            self.stop()
            raise ServerError(f"{self.spec.label} did not listen within {timeout:g} s") from None
        except BaseException:
            self.stop()
            raise
        finally:
            reader.close()

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            raise ServerError(f"{self.spec.label} died; see {self.log_path}")

    def stop(self) -> int | None:
        code = None
        if self._process is not None:
            code = procs.stop(self._process)
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def __enter__(self) -> ServerProcess:
        return self.start() if self._process is None else self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
