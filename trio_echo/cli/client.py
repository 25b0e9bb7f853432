"""``trio-echo client``: one session printed line by line, or many summarised."""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Sequence

import attrs
import trio

from ..blocking_driver import run_client as run_blocking_client
from ..config import ClientConfig
from ..escape import escape_text
from ..session import Report, SessionResult, describe_datagram_report, silent, summarise
from ..transport.spec import parse_target
from ..transport.tls import TlsClientSettings
from ..trio_driver import run_client as run_trio_client
from .common import EXIT_FAILED, EXIT_OK, build_config, fail_line, show


def client_command(args: argparse.Namespace) -> int:
    target = build_config(parse_target, args.target, default_port=args.port)
    if target.protocol is None:
        target = attrs.evolve(target, protocol=args.protocol)
    tls = build_config(
        TlsClientSettings,
        cafile=args.cafile,
        insecure=args.insecure,
        server_hostname=args.server_name,
        certfile=args.certfile,
        keyfile=args.keyfile,
    )
    config = build_config(
        ClientConfig.for_target,
        target,
        tls=tls,
        retries=args.retries,
        count=args.count,
        message=args.message,
        connections=args.connections,
        timeout=args.timeout,
    )
    report: Report = show if config.connections == 1 else silent
    started = time.perf_counter()
    if args.blocking:
        results = run_blocking_client(config, report=report)
    else:
        results = trio.run(functools.partial(run_trio_client, config, report=report))
    return _report_results(config, results, time.perf_counter() - started)


def _report_results(config: ClientConfig, results: Sequence[SessionResult], seconds: float) -> int:
    failures = [result for result in results if result.error is not None]
    if config.connections > 1:
        for result in failures:
            print(f"session {result.index}: {escape_text(str(result.error))}", file=sys.stderr)
        show(summarise(results, seconds))
    else:
        datagrams = results[0].datagrams
        if datagrams is not None:
            show(describe_datagram_report(datagrams))
        if failures:
            print(fail_line(str(failures[0].error)), file=sys.stderr)
    return EXIT_FAILED if failures else EXIT_OK
