"""``trio-echo demo``: a server and the seed's session in one process."""

from __future__ import annotations

import argparse

import trio

from ..demo import run_demo
from .common import EXIT_FAILED, EXIT_OK


def demo_command(args: argparse.Namespace) -> int:
    """Run the demo for ``args.protocol``; exit 0 if the session succeeded."""
    return EXIT_OK if trio.run(run_demo, args.protocol, print) else EXIT_FAILED
