"""Compiling the suite's C programs (the load generator and the ceiling server).

They are built at bench time with the system compiler into
``benchmarks/build/`` (ignored by git), and rebuilt when their source changes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUILD_DIR = HERE / "build"
PROGRAMS = {"loadgen": HERE / "loadgen.c", "cserver": HERE / "cserver.c"}
CFLAGS = ["-O2", "-Wall", "-Wextra", "-std=gnu11"]


class BuildError(RuntimeError):
    """The C compiler is missing or failed."""


def compiler() -> str:
    """The C compiler to use: ``$CC``, else ``cc``, ``gcc`` or ``clang``."""
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    raise BuildError("no C compiler found (set CC, or install gcc: apt-get install gcc)")


def compiler_version() -> str:
    """First line of the compiler's ``--version``."""
    try:
        out = subprocess.run(
            [compiler(), "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (BuildError, OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.splitlines()[0] if out.stdout else "unknown"


def build(force: bool = False) -> dict[str, Path]:
    """Compile every program that is missing or older than its source; return their paths."""
    BUILD_DIR.mkdir(exist_ok=True)
    binaries: dict[str, Path] = {}
    for name, source in PROGRAMS.items():
        binary = BUILD_DIR / name
        stale = not binary.exists() or binary.stat().st_mtime < source.stat().st_mtime
        if force or stale:
            command = [compiler(), *CFLAGS, "-o", str(binary), str(source)]
            done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
            if done.returncode != 0:
                raise BuildError(f"{' '.join(command)} failed:\n{done.stderr}")
            if done.stderr.strip():
                raise BuildError(f"{source.name} compiles with warnings:\n{done.stderr}")
        binaries[name] = binary
    return binaries
