"""``python -m trio_echo``: the same command line as ``trio-echo``."""

from .cli import run

run()
