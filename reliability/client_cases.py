"""Cases of the measuring client: a long run's memory, a server that answers wrongly.

The client is ``trio-echo client`` as a user runs it, a child process whose
resident memory is read from ``/proc/PID/status`` while it runs; its
figures come from its ``--json`` object.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence

import trio

from .case import Case, Measurement
from .procs import running_server

MIB = 1024 * 1024
LONG_RUN = 20.0
"""Seconds the long run lasts."""
WARM_UP = 3.0
"""Seconds before the first memory sample counts (imports, first buffers, thread stacks)."""
LONG_RUN_CONNECTIONS = 10
CLIENT_RSS_LIMIT = 2 * MIB
"""How much the client's memory may grow from the end of the warm-up to the end of the run."""
WRONG_CLIENTS = 50


def client_command(driver: str, args: Sequence[str]) -> list[str]:
    """The argv of ``trio-echo client`` with *driver*."""
    flags = ["--blocking"] if driver == "blocking" else []
    return [sys.executable, "-m", "trio_echo", "client", *flags, *args]


def _rss_bytes(pid: int) -> int | None:
    """The resident memory of *pid*, or None once it has gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


async def _run_client(
    driver: str, args: Sequence[str], *, sample_memory: bool = False
) -> tuple[int, str, str, list[int]]:
    """Run the client; its exit code, stdout, stderr and (if asked) RSS samples after warm-up."""
    process = await trio.lowlevel.open_process(
        client_command(driver, args),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    chunks: dict[str, bytearray] = {"out": bytearray(), "err": bytearray()}
    samples: list[int] = []

    async def drain(name: str, stream: trio.abc.ReceiveStream) -> None:
        while data := await stream.receive_some():
            chunks[name] += data

    async def sample() -> None:
        await trio.sleep(WARM_UP)
        while (rss := _rss_bytes(process.pid)) is not None and process.poll() is None:
            samples.append(rss)
            await trio.sleep(0.5)

    try:
        with trio.fail_after(LONG_RUN * 3):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(drain, "out", process.stdout)
                nursery.start_soon(drain, "err", process.stderr)
                if sample_memory:
                    nursery.start_soon(sample)
                code = await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return code, chunks["out"].decode(), chunks["err"].decode(), samples


async def long_run_memory(driver: str) -> Measurement:
    """A 20 s run at 10 connections: the client's RSS after the warm-up stays flat."""
    async with running_server("trio", ["--log-level", "warning"]) as server:
        args = [
            f"tcp://127.0.0.1:{server.port}",
            "--duration",
            f"{LONG_RUN:g}",
            "--connections",
            str(LONG_RUN_CONNECTIONS),
            "--json",
        ]
        code, out, err, samples = await _run_client(driver, args, sample_memory=True)
    if code != 0 or not samples:
        return Measurement(f"exit {code}, {len(samples)} samples; {err.strip()[:200]}", False)
    figures = json.loads(out)
    growth = samples[-1] - samples[0]
    return Measurement(
        f"{figures['round_trips']} round trips; RSS {samples[0] / MIB:.1f} MiB after "
        f"{WARM_UP:g} s, {samples[-1] / MIB:.1f} MiB at the end (+{growth / MIB:.2f} MiB, "
        f"peak {max(samples) / MIB:.1f} MiB)",
        growth < CLIENT_RSS_LIMIT,
    )


async def wrong_replies(driver: str) -> Measurement:
    """A server that answers every message wrongly: the client counts wrong replies."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]

    async def answer_wrongly(stream: trio.SocketStream) -> None:
        async with stream:
            try:
                while data := await stream.receive_some():
                    await stream.send_all(b"Re:" + data.swapcase())
            except trio.BrokenResourceError:
                pass

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, answer_wrongly, listeners)
        args = [f"tcp://127.0.0.1:{port}", "--connections", str(WRONG_CLIENTS), "--json"]
        code, out, err, _samples = await _run_client(driver, args)
        nursery.cancel_scope.cancel()
    tracebacks = err.count("Traceback")
    try:
        wrong = json.loads(out)["errors"]["wrong reply"]
    except (ValueError, KeyError, TypeError):
        return Measurement(f"exit {code}, no figures; {err.strip()[:200]}", False)
    return Measurement(
        f"exit {code}, {wrong}/{WRONG_CLIENTS} sessions counted as wrong reply, "
        f"{tracebacks} tracebacks",
        code == 1 and wrong == WRONG_CLIENTS and tracebacks == 0,
    )


CLIENT_CASES = (
    Case(
        "client long run",
        f"client --duration {LONG_RUN:g} --connections {LONG_RUN_CONNECTIONS}, Trio echo server",
        "a long run, every latency recorded",
        f"client RSS growth after {WARM_UP:g} s < {CLIENT_RSS_LIMIT // MIB} MiB",
        long_run_memory,
    ),
    Case(
        "client wrong replies",
        f"client --connections {WRONG_CLIENTS}",
        "the server answers every message wrongly",
        "exit 1, every session counted as wrong reply, no traceback",
        wrong_replies,
    ),
)
