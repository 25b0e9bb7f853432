"""The fault case: 1,000 concurrent clients against a server misbehaving on purpose.

The server splits, delays and cuts connections (``--fault``, ``--seed``);
every client sends its own bytes and reads what comes back. Nothing may be
lost that the fault did not take: a connection the fault left whole gets
its bytes back intact, one it cut with ``close-after`` gets an exact
prefix, and as many connections are cut as the fault model says for the
seed (the same plan, :func:`trio_echo.faults.plan_connection`, computed
here).
"""

from __future__ import annotations

import trio

from trio_echo.faults import FaultKind, parse_faults, plan_connection

from .case import Case, Measurement
from .clients import connect
from .procs import running_server

CLIENTS = 1000
MESSAGE_BYTES = 1000
CUT_AT = 300
SEED = 1
FAULT = f"split=1-64,delay=5ms@0.5,jitter=5ms,close-after={CUT_AT}@0.1"
BOUND = 120.0


def _expected_cuts() -> int:
    """How many of connections 1 to 1,000 the fault model cuts, for :data:`SEED`."""
    spec = parse_faults(FAULT)
    plans = (plan_connection(spec, SEED, str(number)) for number in range(1, CLIENTS + 1))
    return sum(1 for plan in plans if plan and plan.faults.get(FaultKind.CLOSE_AFTER))


async def _client(port: int, index: int, outcomes: dict[str, int]) -> None:
    message = (b"%06d:" % index) * (MESSAGE_BYTES // 7 + 1)
    message = message[:MESSAGE_BYTES]
    stream = await connect(port)
    async with stream:
        await stream.send_all(message)
        got = b""
        while len(got) < len(message):
            chunk = await stream.receive_some()
            if not chunk:
                break
            got += chunk
    if got == message:
        outcomes["whole"] += 1
    elif got == message[:CUT_AT]:
        outcomes["cut"] += 1
    else:
        outcomes["lost"] += 1


async def faults_under_load(driver: str) -> Measurement:
    """1,000 clients at once through split, delay and close-after faults."""
    flags = ["--protocol", "echo", "--log-level", "warning", "--max-connections", "2000"]
    flags += ["--fault", FAULT, "--seed", str(SEED)]
    outcomes = {"whole": 0, "cut": 0, "lost": 0}
    with trio.fail_after(BOUND):
        async with running_server(driver, flags, nofile=4096) as server:
            start = trio.current_time()
            async with trio.open_nursery() as nursery:
                for index in range(CLIENTS):
                    nursery.start_soon(_client, server.port, index, outcomes)
            took = trio.current_time() - start
    expected = _expected_cuts()
    return Measurement(
        f"{outcomes['whole']} echoed whole, {outcomes['cut']} cut at {CUT_AT} bytes by the "
        f"fault (the model says {expected}), {outcomes['lost']} lost or garbled; {took:.1f} s",
        outcomes["lost"] == 0 and outcomes["cut"] == expected,
    )


FAULT_CASES = (
    Case(
        "faults under load",
        f"echo, --fault {FAULT} --seed {SEED}",
        f"{CLIENTS:,} concurrent clients, {MESSAGE_BYTES} bytes each, read back",
        "nothing lost that the fault did not take: every connection whole or an exact "
        f"{CUT_AT}-byte prefix, as many cut as the fault model says for the seed",
        faults_under_load,
    ),
)
