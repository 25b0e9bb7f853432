"""Reliability figures for trio-echo's two servers.

``python -m reliability`` runs each case of :mod:`reliability.cases` against
real server processes over loopback, for the Trio and the blocking driver,
and writes the table to ``RELIABILITY.md`` with the machine and the date.
"""
