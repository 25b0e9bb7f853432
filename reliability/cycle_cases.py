"""Cycle cases."""

CYCLE_CASES = ()
