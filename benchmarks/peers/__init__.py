"""Peer servers: the servers a user would pick instead of trio-echo.

Each module is a small, idiomatic server for one framework, speaking the
same wire protocols as trio-echo, byte for byte (``reply`` and ``echo``; see
:mod:`benchmarks.peers.common`). Each runs in its own process::

    python -m benchmarks.peers.asyncio_streams --port 0 --protocol reply

prints ``<protocol> server (<driver>) listening on 127.0.0.1:PORT`` like
``trio-echo serve``, and exits 0 on SIGINT or SIGTERM.
"""
