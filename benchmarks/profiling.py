"""``python -m benchmarks profile``: where a server's time goes per round trip.

For each server, one workload (W2 by default) is run several times against
the same process, each pass attaching one observer to exactly the measured
window (the load generator announces it):

1. clean: requests/s and the server's user and kernel CPU per request, from
   /proc (nothing attached);
2. ``perf stat``: system calls per request, by kind, from the kernel's
   tracepoints (cheap: the server runs at nearly full speed);
3. ``strace -c -f``: the same counts the slow way, for machines without perf
   (ptrace slows the server down several times; counts per request stay
   meaningful, rates do not);
4. ``py-spy record --native``: sampled stacks, grouped into categories (the
   socket system calls, epoll, the scheduler, cancel scopes, the protocol code,
   ...), each turned into microseconds of server CPU per request with pass 1;
5. callgrind: user-space instructions per request, repeatable within a percent
   or two on a busy machine (:func:`benchmarks.instructions.count`: a second
   server process, started under valgrind).

Under churn (W6) every figure is per session rather than per request.

Writes ``profile.json``, ``profile.md`` and the raw py-spy stacks into the
output directory and prints the markdown.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from . import build, instructions
from .servers import BY_KEY, ServerProcess
from .suite import machine_info
from .workloads import Measurement, Workload, measure, operations_of, workloads

PERF_EVENTS = (
    "raw_syscalls:sys_enter",
    "syscalls:sys_enter_recvfrom",
    "syscalls:sys_enter_sendto",
    "syscalls:sys_enter_read",
    "syscalls:sys_enter_write",
    "syscalls:sys_enter_epoll_wait",
    "syscalls:sys_enter_epoll_pwait",
    "syscalls:sys_enter_epoll_ctl",
    "syscalls:sys_enter_futex",
    "syscalls:sys_enter_accept4",
    "context-switches",
)

# Categories of py-spy samples. A sample is attributed by walking its stack
# from the innermost frame outwards: frames of generic helpers are skipped,
# the first frame that matches a rule names the category.
GENERIC = ("contextlib.py", "<attrs generated", "outcome/", "object.h", "libpython", "<frozen")
NATIVE_SYSCALLS = {
    "send": "send/sendto syscall",
    "sendto": "send/sendto syscall",
    "__send": "send/sendto syscall",
    "__libc_send": "send/sendto syscall",
    "write": "send/sendto syscall",
    "__write": "send/sendto syscall",
    "__libc_write": "send/sendto syscall",
    "recv": "recv/recvfrom syscall",
    "recvfrom": "recv/recvfrom syscall",
    "__recv": "recv/recvfrom syscall",
    "__libc_recv": "recv/recvfrom syscall",
    "read": "recv/recvfrom syscall",
    "__read": "recv/recvfrom syscall",
    "__libc_read": "recv/recvfrom syscall",
    "epoll_wait": "epoll_wait syscall",
    "epoll_pwait": "epoll_wait syscall",
    "epoll_ctl": "epoll_ctl syscall (register/modify/unregister)",
}
RULES: tuple[tuple[Callable[[str, str], bool], str], ...] = (
    (lambda f, p: p.endswith("socketmodule.c"), "CPython socket module (C)"),
    (lambda f, p: p.endswith("selectmodule.c.h") or p.endswith("selectmodule.c"), "CPython epoll"),
    (
        lambda f, p: (
            p.startswith("trio/")
            and any(
                k in f for k in ("CancelScope", "Deadlines", "deadline", "current_time", "Cancel")
            )
        ),
        "Trio cancel scopes and deadlines",
    ),
    (lambda f, p: p.startswith("trio/_core/_io_"), "Trio I/O manager (epoll, Python side)"),
    (
        lambda f, p: p.startswith("trio/_core/_generated_io"),
        "Trio I/O manager (epoll, Python side)",
    ),
    (lambda f, p: p.startswith("trio/_core/"), "Trio scheduler and checkpoints"),
    (lambda f, p: p.startswith("trio/"), "Trio socket and stream layer"),
    (lambda f, p: p.startswith("trio_echo/codec/"), "trio-echo codec"),
    (lambda f, p: p.startswith("trio_echo/connection_log"), "trio-echo connection record"),
    (lambda f, p: p.startswith("trio_echo/"), "trio-echo driver loop"),
    (lambda f, p: p.startswith("asyncio/streams"), "asyncio streams layer"),
    (lambda f, p: p.startswith("asyncio/selector_events"), "asyncio transport"),
    (lambda f, p: p.startswith("asyncio/") or p.startswith("selectors"), "asyncio event loop"),
    (lambda f, p: p.startswith("benchmarks/peers/"), "peer handler"),
    (lambda f, p: p.startswith("logging/"), "logging"),
)


def parse_frame(frame: str) -> tuple[str, str]:
    """("function", "path") of a py-spy raw frame like ``name (path/file.py:12)``."""
    if " (" not in frame:
        return frame, ""
    function, rest = frame.rsplit(" (", 1)
    path = rest.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "lib/python3."):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "lib/python3.":
                path = path.split("/", 1)[1] if "/" in path else path
    return function, path


def categorize(stack: list[str]) -> str:
    """The category of one sampled stack (innermost frame last)."""
    leaf_function, leaf_path = parse_frame(stack[-1])
    if leaf_function in NATIVE_SYSCALLS and (".so" in leaf_path or leaf_path == ""):
        return NATIVE_SYSCALLS[leaf_function]
    for frame in reversed(stack):
        function, path = parse_frame(frame)
        if any(g in path for g in GENERIC):
            continue
        for rule, name in RULES:
            if rule(function, path):
                return name
    return "other"


def summarize_stacks(path: Path) -> dict[str, Any]:
    """Category shares and the busiest innermost frames of a py-spy raw file."""
    categories: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        stack_text, count_text = line.rsplit(" ", 1)
        count = int(count_text)
        stack = stack_text.split(";")
        total += count
        categories[categorize(stack)] += count
        function, frame_path = parse_frame(stack[-1])
        leaves[f"{function} ({frame_path})"] += count
    return {
        "samples": total,
        "categories": {k: v / total for k, v in categories.most_common()} if total else {},
        "top_leaves": [(k, v / total) for k, v in leaves.most_common(15)] if total else [],
    }


@contextlib.contextmanager
def attached(
    command: list[str], log: Path, *, interrupt: bool = True
) -> Iterator[subprocess.Popen[bytes]]:
    """Run an observer; on exit interrupt it (SIGINT makes perf and strace report),
    or, with *interrupt* false, let it finish on its own (bounded by a timeout)."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield process
        finally:
            if not interrupt:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=30)
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGINT)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=5)


class Observer:
    """Starts a command at window-start and stops it at window-end."""

    def __init__(
        self, command: Callable[[int], list[str]], log: Path, pid: int, *, interrupt: bool = True
    ) -> None:
        self._command = command
        self._interrupt = interrupt
        self._log = log
        self._pid = pid
        self._stack = contextlib.ExitStack()
        self.ran = False

    def __call__(self, event: str) -> None:
        if event == "window-start":
            self._stack.enter_context(
                attached(self._command(self._pid), self._log, interrupt=self._interrupt)
            )
            self.ran = True
        elif event == "window-end":
            self.close()

    def close(self) -> None:
        self._stack.close()


def parse_perf(log: Path) -> dict[str, int]:
    """Counts from ``perf stat -x,`` output."""
    counts: dict[str, int] = {}
    for line in log.read_text(errors="replace").splitlines():
        fields = line.split(",")
        if len(fields) >= 3 and fields[0].strip().isdigit():
            counts[fields[2].strip()] = int(fields[0])
    return counts


def parse_strace(log: Path) -> dict[str, int]:
    """Calls per system call from ``strace -c`` output."""
    counts: dict[str, int] = {}
    for line in log.read_text(errors="replace").splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[0].replace(".", "").isdigit() and fields[-1] != "total":
            with contextlib.suppress(ValueError):
                counts[fields[-1]] = int(fields[3])
    return counts


def profile_server(
    key: str,
    workload: Workload,
    duration: float,
    out_dir: Path,
    use_strace: bool,
    use_callgrind: bool = True,
) -> dict[str, Any]:
    """All passes against one server process, then the callgrind count against another."""
    spec = BY_KEY[key]
    result: dict[str, Any] = {"server": key, "label": spec.label}
    log_dir = out_dir / "logs"

    def run(hook: Callable[[str], None] | None, warm: float = 0.5) -> Measurement:
        return measure(
            workload,
            server,
            round_index=1,
            warmup_round=False,
            warmup=warm,
            duration=duration,
            log_path=log_dir / "loadgen.log",
            hook=hook,
        )

    with ServerProcess(spec, workload.protocol, log_dir) as server:
        run(None, warm=1.0)  # warm-up
        clean = run(None)
        result["clean"] = dataclasses.asdict(clean)
        per_request_us = clean.server_user_us + clean.server_sys_us
        print(
            f"  {spec.label}: {clean.value:,.0f} req/s, server CPU {clean.server_cpu:.0%}, "
            f"{clean.server_user_us:.1f} us user + {clean.server_sys_us:.1f} us sys per request",
            file=sys.stderr,
        )
        passes: list[tuple[str, Callable[[int], list[str]], Callable[[Path], dict[str, int]]]] = []
        if shutil.which("perf"):
            events = ",".join(PERF_EVENTS)
            passes.append(
                (
                    "perf",
                    lambda pid: ["perf", "stat", "-x,", "-e", events, "-p", str(pid)],
                    parse_perf,
                )
            )
        if use_strace and shutil.which("strace"):
            passes.append(
                ("strace", lambda pid: ["strace", "-c", "-f", "-p", str(pid)], parse_strace)
            )
        for tool, command, parse in passes:
            log = out_dir / f"{tool}-{key}.txt"
            observer = Observer(command, log, server.pid)
            try:
                m = run(observer)
            finally:
                observer.close()
            counts = parse(log)
            operations = operations_of(m, workload)
            if operations and counts:
                result[tool] = {
                    "requests": operations,
                    "req_per_s": m.value,
                    "counts": counts,
                    "per_request": {k: v / operations for k, v in counts.items()},
                }
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if spec.key != "c-epoll" and Path(py_spy).exists():
            raw = out_dir / f"py-spy-{key}.txt"
            record = [
                py_spy,
                "record",
                "--native",
                "--rate",
                "250",
                "--format",
                "raw",
                "--duration",
                str(max(1, int(duration - 0.5))),
                "-o",
                str(raw),
                "--pid",
            ]
            observer = Observer(
                lambda pid: [*record, str(pid)],
                out_dir / f"py-spy-{key}.log",
                server.pid,
                interrupt=False,
            )
            try:
                m = run(observer)
                time.sleep(0.5)
            finally:
                observer.close()
            if raw.exists():
                stacks = summarize_stacks(raw)
                stacks["per_request_us"] = {
                    k: share * per_request_us for k, share in stacks["categories"].items()
                }
                stacks["req_per_s_while_sampling"] = m.value
                result["py_spy"] = stacks
    if use_callgrind and not instructions.missing_tools():
        counted = instructions.count(spec, workload, duration, log_dir)
        result["callgrind"] = counted
        print(f"  {spec.label}: {_instructions_text(counted)}", file=sys.stderr)
    return result


def _instructions_text(counted: dict[str, Any]) -> str:
    if not counted["ok"]:
        return f"callgrind failed: {counted['error']}"
    return f"{counted['per_op']:,.0f} user-space instructions per {counted['unit']}"


SYSCALL_ROWS = (
    ("all system calls", "raw_syscalls:sys_enter", None),
    ("recvfrom", "syscalls:sys_enter_recvfrom", "recvfrom"),
    ("sendto", "syscalls:sys_enter_sendto", "sendto"),
    ("read", "syscalls:sys_enter_read", "read"),
    ("write", "syscalls:sys_enter_write", "write"),
    ("epoll_wait", "syscalls:sys_enter_epoll_wait", "epoll_wait"),
    ("epoll_pwait", "syscalls:sys_enter_epoll_pwait", "epoll_pwait"),
    ("epoll_ctl", "syscalls:sys_enter_epoll_ctl", "epoll_ctl"),
    ("futex", "syscalls:sys_enter_futex", "futex"),
    ("context switches", "context-switches", None),
)


def markdown(results: list[dict[str, Any]], workload: Workload, meta: dict[str, Any]) -> str:
    v = meta["versions"]
    lines = [
        f"# Profile: {workload.key} ({workload.title})\n",
        f"{meta['nproc']} CPUs ({meta['cpu_model']}), Linux {meta['kernel']}, Python "
        f"{v['python']}, trio {v['trio']}, trio-echo {v['trio-echo revision']}, {meta['date']}.\n",
        "## Server CPU per request (nothing attached)\n",
        "| server | req/s | server CPU | user us/req | sys us/req | total us/req |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        c = r["clean"]
        lines.append(
            f"| {r['label']} | {c['value']:,.0f} | {c['server_cpu']:.0%} | "
            f"{c['server_user_us']:.1f} | {c['server_sys_us']:.1f} | "
            f"{c['server_user_us'] + c['server_sys_us']:.1f} |"
        )
    for source, title in (("perf", "perf stat"), ("strace", "strace -c -f")):
        with_data = [r for r in results if source in r]
        if not with_data:
            continue
        lines += [
            f"\n## System calls per request ({title})\n",
            "| per request | " + " | ".join(r["label"] for r in with_data) + " |",
            "|---|" + "---|" * len(with_data),
        ]
        for name, perf_key, strace_key in SYSCALL_ROWS:
            key = perf_key if source == "perf" else strace_key
            if key is None and source == "strace" and name == "all system calls":
                cells = [
                    f"{sum(r['strace']['counts'].values()) / r['strace']['requests']:.2f}"
                    for r in with_data
                ]
            elif key is None:
                continue
            else:
                cells = [f"{r[source]['per_request'].get(key, 0.0):.2f}" for r in with_data]
            if any(cell != "0.00" for cell in cells):
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
        rates = " | ".join(f"{r[source]['req_per_s']:,.0f}" for r in with_data)
        lines.append(f"| (req/s while attached) | {rates} |")
    lines += _instructions_markdown(results)
    with_stacks = [r for r in results if "py_spy" in r]
    if with_stacks:
        categories: list[str] = []
        for r in with_stacks:
            for k in r["py_spy"]["per_request_us"]:
                if k not in categories:
                    categories.append(k)
        lines += [
            "\n## Where the CPU time per request goes (py-spy --native, us per request)\n",
            "Sample shares times the clean pass's CPU per request. Syscall rows hold the time "
            "inside the C library call (kernel work included).\n",
            "| category | " + " | ".join(r["label"] for r in with_stacks) + " |",
            "|---|" + "---|" * len(with_stacks),
        ]
        for k in categories:
            cells = []
            for r in with_stacks:
                us = r["py_spy"]["per_request_us"].get(k)
                share = r["py_spy"]["categories"].get(k)
                cells.append(f"{us:.1f} ({share:.0%})" if us is not None and share else "-")
            lines.append(f"| {k} | " + " | ".join(cells) + " |")
        samples = " | ".join(str(r["py_spy"]["samples"]) for r in with_stacks)
        lines.append(f"| (samples) | {samples} |")
        for r in with_stacks:
            lines += [
                f"\n### Busiest innermost frames: {r['label']}\n",
                "| frame | share |",
                "|---|---|",
            ]
            lines += [f"| `{frame}` | {share:.1%} |" for frame, share in r["py_spy"]["top_leaves"]]
    return "\n".join(lines) + "\n"


def _instructions_markdown(results: list[dict[str, Any]]) -> list[str]:
    """The callgrind section: instructions per request (per session under churn)."""
    counted = [r for r in results if "callgrind" in r]
    if not counted:
        return []
    unit = counted[0]["callgrind"]["unit"]
    lines = [
        f"\n## User-space instructions per {unit} (callgrind)\n",
        "Counted over the window by callgrind, in a server process of its own started under "
        "valgrind; repeatable within 1-2% on a busy machine. The kernel's work (the system "
        "calls above) is not in them.\n",
        f"| server | instructions per {unit} | {unit}s counted |",
        "|---|---|---|",
    ]
    for r in counted:
        c = r["callgrind"]
        figure = f"{c['per_op']:,.0f}" if c["ok"] else f"failed: {c['error']}"
        lines.append(f"| {r['label']} | {figure} | {c['operations']:,} |")
    return lines


def run(
    server_keys: list[str],
    workload_key: str,
    duration: float,
    out_dir: Path,
    use_strace: bool,
    use_callgrind: bool = True,
) -> int:
    build.build()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "logs").mkdir(exist_ok=True)
    chosen = {w.key: w for w in workloads(10000)}
    if workload_key not in chosen or chosen[workload_key].mode == "idle":
        print(f"profile: {workload_key} is not a loaded workload (W1-W6)", file=sys.stderr)
        return 2
    workload = chosen[workload_key]
    unknown = [k for k in server_keys if k not in BY_KEY]
    if unknown:
        print(f"profile: unknown servers {unknown}; known: {', '.join(BY_KEY)}", file=sys.stderr)
        return 2
    meta = machine_info()
    if use_callgrind and instructions.missing_tools():
        print(f"  callgrind pass skipped: {instructions.missing_tools()}", file=sys.stderr)
    results = []
    for key in server_keys:
        reason = BY_KEY[key].missing()
        if reason:
            print(f"  {key}: skipped, {reason}", file=sys.stderr)
            continue
        print(f"profiling {key} under {workload.key} ...", file=sys.stderr)
        results.append(profile_server(key, workload, duration, out_dir, use_strace, use_callgrind))
    (out_dir / "profile.json").write_text(
        json.dumps({"machine": meta, "workload": workload.key, "servers": results}, indent=1)
    )
    text = markdown(results, workload, meta)
    (out_dir / "profile.md").write_text(text)
    print(text)
    print(f"wrote {out_dir / 'profile.md'} and {out_dir / 'profile.json'}", file=sys.stderr)
    return 0
