"""Reporting the parts beyond W1-W7 (:mod:`benchmarks.parts`): statistics, markdown, panels.

Everything here reads ``results["parts"]`` of a results.json and nothing
else, and every function copes with a part that is missing (an older JSON,
or a run with ``--parts`` leaving it out): it then says nothing.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

from .client_figure import limit_of
from .formatting import number_text, ratio_text

WORKLOADS = {
    "UDP": ("UDP echo: 8 sockets, one 64-byte datagram outstanding each", "datagram"),
    "TLS": ("TLS round trips: 8 connections, one 64-byte message outstanding each", "round trip"),
    "TLS handshake": (
        "TLS handshakes: 8 clients, each connect, handshake, one round trip, close, again",
        "handshake",
    ),
    "workers": ("TCP round trips: 8 connections, lockstep, 1 and 2 workers", "request"),
}
"""Each rate workload of the parts: its title and what one request is."""
TRIO_ECHO_PREFIX = "trio-echo"
INSTRUCTIONS_OURS = "trio-echo"
INSTRUCTIONS_BASES = ("uvloop-protocol", "asyncio-protocol")
"""The servers trio-echo's instruction counts are set against, in the table and the summary."""


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _stats(values: Sequence[float]) -> dict[str, Any]:
    return {
        "median": _median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def _rate_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    parts = results.get("parts", {})
    rows: list[dict[str, Any]] = []
    for name in ("transports", "workers"):
        rows += parts.get(name, {}).get("measurements", [])
    return rows


def summarize_rates(results: dict[str, Any]) -> dict[str, Any]:
    """Per workload and server: rate and CPU per request; per round, trio-echo's ratios."""
    cells: dict[str, dict[str, Any]] = {}
    ratios: dict[str, list[dict[str, Any]]] = {}
    failures: list[str] = []
    per_round: dict[str, dict[str, dict[int, tuple[float, float]]]] = {}
    for row in _rate_rows(results):
        if row["warmup"]:
            continue
        if not row["ok"]:
            failures.append(
                f"{row['workload']} round {row['round']} {row['server']}: {row['error']}"
            )
            continue
        rate = row["requests"] / row["window_s"]
        cpu_us = (row["user_s"] + row["sys_s"]) / row["requests"] * 1e6
        per_round.setdefault(row["workload"], {}).setdefault(row["server"], {})[row["round"]] = (
            rate,
            cpu_us,
        )
        cell = cells.setdefault(row["workload"], {}).setdefault(
            row["server"], {"rates": [], "cpu": [], "user": []}
        )
        cell["rates"].append(rate)
        cell["cpu"].append(cpu_us)
        cell["user"].append(row["user_s"] / row["requests"] * 1e6)
    summary: dict[str, Any] = {}
    for workload, servers in cells.items():
        summary[workload] = {
            server: {
                "rate": _stats(c["rates"]),
                "cpu_us": _stats(c["cpu"]),
                "user_us": _stats(c["user"]),
            }
            for server, c in servers.items()
        }
        ratios[workload] = _pairs(per_round[workload])
    return {"cells": summary, "ratios": ratios, "failures": failures}


def _pairs(rounds: dict[str, dict[int, tuple[float, float]]]) -> list[dict[str, Any]]:
    """Per-round ratios of each trio-echo server against each other server: its CPU per
    request over theirs (below 1 is better) and its rate over theirs (above 1 is better).
    With trio-echo alone (the workers), the second configuration against the first."""
    names = list(rounds)
    ours = [n for n in names if n.startswith(TRIO_ECHO_PREFIX)]
    theirs = [n for n in names if not n.startswith(TRIO_ECHO_PREFIX)]
    pairs = (
        [(a, b) for a in ours for b in theirs]
        if theirs
        else list(zip(names[1:], names, strict=False))
    )
    found = []
    for a, b in pairs:
        common = sorted(set(rounds[a]) & set(rounds[b]))
        cpu = [rounds[a][r][1] / rounds[b][r][1] for r in common if rounds[b][r][1] > 0]
        rate = [rounds[a][r][0] / rounds[b][r][0] for r in common if rounds[b][r][0] > 0]
        if cpu and rate:
            found.append({"a": a, "b": b, "cpu": _stats(cpu), "rate": _stats(rate)})
    return found


def _is_reference(driver: str) -> bool:
    """Whether a client figure's row is the C generator's ("C loadgen", with its depth or not)."""
    return driver == "C loadgen" or driver.startswith("C loadgen (")


def summarize_client(results: dict[str, Any]) -> dict[str, Any] | None:
    """Per shape and driving process: requests/s, share of the C generator's in the same
    round (median of the rounds), CPU per wall second, p99, and which side was the limit."""
    part = results.get("parts", {}).get("client")
    if not part:
        return None
    grouped: dict[tuple[str, str], dict[str, list[float]]] = {}
    failures = []
    for entry in part["rounds"]:
        if not entry["ok"]:
            failures.append(f"client figure round {entry['round']}: {entry['error']}")
            continue
        reference = {
            row["shape"]: row["requests_per_second"]
            for row in entry["rows"]
            if _is_reference(row["driver"])
        }
        for row in entry["rows"]:
            cell = grouped.setdefault(
                (row["shape"], row["driver"]), {"rate": [], "share": [], "cpu": [], "p99": []}
            )
            cell["rate"].append(row["requests_per_second"])
            base = reference.get(row["shape"]) or 0.0
            if base:
                cell["share"].append(row["requests_per_second"] / base)
            cell["cpu"].append(row["cpu_per_second"])
            cell["p99"].append(row["p99_ms"])
    rows = []
    for (shape, driver), cell in grouped.items():
        share = _stats(cell["share"]) if cell["share"] else None
        is_reference = _is_reference(driver)
        rows.append(
            {
                "shape": shape,
                "driver": driver,
                "rate": _stats(cell["rate"]),
                "share": share,
                "cpu_per_second": _median(cell["cpu"]),
                "p99_ms": _median(cell["p99"]),
                "limit": "reference"
                if is_reference
                else (limit_of(share["median"]) if share else "-"),
            }
        )
    return {
        "server_label": part.get("server_label", part.get("server", "?")),
        "seconds": part.get("seconds", 0.0),
        "rounds": len(part["rounds"]),
        "rows": rows,
        "failures": failures,
    }


def summarize_instructions(results: dict[str, Any]) -> dict[str, Any] | None:
    """Per workload and server: user-space instructions per operation (one count each),
    and trio-echo's count over each base server's (below 1: trio-echo executes fewer)."""
    part = results.get("parts", {}).get("instructions")
    if part is None:
        return None
    cells: dict[str, dict[str, float]] = {}
    labels: dict[str, str] = {}
    units: dict[str, str] = {}
    failures: list[str] = []
    for row in part.get("measurements", []):
        labels.setdefault(row["server"], row.get("label", row["server"]))
        units.setdefault(row["workload"], row.get("unit", "request"))
        workload_cells = cells.setdefault(row["workload"], {})
        if not row["ok"]:
            failures.append(
                f"instructions {row['workload']} {labels[row['server']]}: {row['error']}"
            )
            continue
        workload_cells[row["server"]] = row["per_op"]
    ratios = {
        workload: {
            base: by_server[INSTRUCTIONS_OURS] / by_server[base]
            for base in INSTRUCTIONS_BASES
            if INSTRUCTIONS_OURS in by_server and by_server.get(base, 0.0) > 0
        }
        for workload, by_server in cells.items()
    }
    return {
        "cells": cells,
        "labels": labels,
        "units": units,
        "ratios": ratios,
        "failures": failures,
        "skipped": part.get("skipped", ""),
        "skipped_servers": part.get("skipped_servers", []),
        "seconds": part.get("seconds", 0.0),
    }


def summarize_parts(results: dict[str, Any]) -> dict[str, Any]:
    """Everything the markdown and the chart need from ``results["parts"]``."""
    workers = results.get("parts", {}).get("workers", {})
    rates = summarize_rates(results)
    client = summarize_client(results)
    instructions = summarize_instructions(results)
    failures = list(rates["failures"])
    if client:
        failures += client["failures"]
    if instructions:
        failures += instructions["failures"]
    for crash in workers.get("crash", []):
        if not crash["ok"]:
            failures.append(f"crashed worker ({crash['driver']}): {crash['error']}")
    return {
        "rates": rates,
        "client": client,
        "spread": workers.get("spread", []),
        "crash": workers.get("crash", []),
        "instructions": instructions,
        "failures": failures,
        "present": sorted(results.get("parts", {})),
    }


def rate_table(workload: str, ps: dict[str, Any]) -> str:
    """One workload's servers: rate, CPU per request, and trio-echo's per-round ratios."""
    cells = ps["rates"]["cells"].get(workload, {})
    if not cells:
        return ""
    title, unit = WORKLOADS.get(workload, (workload, "request"))
    lines = [
        f"### {title}\n",
        f"| server | {unit}s/s median | min-max | CPU µs per {unit} | user µs | min-max CPU µs |",
        "|---|---|---|---|---|---|",
    ]
    for server, c in cells.items():
        lines.append(
            f"| {server} | {number_text(c['rate']['median'])} | {number_text(c['rate']['min'])}-"
            f"{number_text(c['rate']['max'])} | {number_text(c['cpu_us']['median'])} | "
            f"{number_text(c['user_us']['median'])} | {number_text(c['cpu_us']['min'])}-"
            f"{number_text(c['cpu_us']['max'])} |"
        )
    lines.append("")
    for pair in ps["rates"]["ratios"].get(workload, []):
        lines.append(
            f"- {pair['a']} / {pair['b']}: CPU per {unit} {ratio_text(pair['cpu'])}, "
            f"{unit}s/s {ratio_text(pair['rate'])}"
        )
    return "\n".join(lines) + "\n"


def client_table(ps: dict[str, Any]) -> str:
    client = ps["client"]
    if not client:
        return ""
    lines = [
        f"Server: {client['server_label']}; {client['rounds']} round(s) of "
        f"{client['seconds']:g} s per row; medians of the rounds, the share of the C "
        "generator's rate computed per round.\n",
        "| shape | driving process | req/s | of C loadgen | its CPU/s | p99 | limit |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in client["rows"]:
        lines.append(
            f"| {row['shape']} | {row['driver']} | {number_text(row['rate']['median'])} | "
            f"{ratio_text(row['share'], spread=row['rate']['n'] > 1)} | "
            f"{row['cpu_per_second']:.2f} | {row['p99_ms']:.2f} ms | {row['limit']} |"
        )
    return "\n".join(lines) + "\n"


def spread_table(ps: dict[str, Any]) -> str:
    if not ps["spread"]:
        return ""
    lines = ["| workers | connections per worker | Jain |", "|---|---|---|"]
    for s in ps["spread"]:
        counts = ", ".join(str(c) for c in s["connections"])
        lines.append(f"| {s['workers']} | {counts} | {s['jain']:.3f} |")
    return "\n".join(lines) + "\n"


def crash_table(ps: dict[str, Any]) -> str:
    if not ps["crash"]:
        return ""
    lines = [
        "| driver | sessions completed | failed | the killed worker's own | on other workers "
        "| replacement serving | passed |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in ps["crash"]:
        if not c["ok"]:
            lines.append(f"| {c['driver']} | failed to run: {c['error']} | | | | | no |")
            continue
        lines.append(
            f"| {c['driver']} | {c['completed']} | {c['failed']} | {c['own']} | {c['beyond']} "
            f"| {'yes' if c['replaced'] == 1 else c['replaced']} | "
            f"{'yes' if c['passed'] else '**no**'} |"
        )
    return "\n".join(lines) + "\n"


def instructions_table(ps: dict[str, Any]) -> str:
    """Workloads down, servers across: instructions per operation, then trio-echo's ratios."""
    found = ps["instructions"]
    if not found or not found["cells"]:
        return ""
    labels = found["labels"]
    servers = list(labels)
    bases = [b for b in INSTRUCTIONS_BASES if any(b in r for r in found["ratios"].values())]
    header = ["workload", *(labels[k] for k in servers)]
    header += [f"{labels[INSTRUCTIONS_OURS]} / {labels[b]}" for b in bases]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for workload, by_server in found["cells"].items():
        row = [f"{workload} (per {found['units'].get(workload, 'request')})"]
        row += [number_text(by_server[k]) if k in by_server else "failed" for k in servers]
        row += [_times(found["ratios"][workload].get(b)) for b in bases]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _times(ratio: float | None) -> str:
    return f"{ratio:.2f}x" if ratio is not None else "-"


def instructions_section(ps: dict[str, Any]) -> list[str]:
    """The results.md section of the instructions part; a one-line note when it was skipped."""
    found = ps["instructions"]
    if not found:
        return []
    out = ["## User-space instructions per request (callgrind)\n"]
    if found["skipped"]:
        return [*out, f"Not measured: {found['skipped']}.\n"]
    out.append(
        "Instructions each server executed in user space per request (per session under "
        "churn), counted by `valgrind --tool=callgrind` with its instrumentation on for "
        f"exactly the load generator's window of {found['seconds']:g} s, one count per server "
        "(the server runs under valgrind, many times slower; the rates of these runs mean "
        "nothing). The counts repeat within 1-2% from run to run however busy the machine "
        "is, so they show differences the CPU times cannot. The kernel's work is not in "
        "them: system calls are counted by `python -m benchmarks profile`, kernel CPU per "
        "request is in the core tables. A ratio below 1: trio-echo executes fewer.\n"
    )
    out.append(instructions_table(ps))
    if found["skipped_servers"]:
        out.append("Skipped: " + "; ".join(found["skipped_servers"]) + ".\n")
    return out


BIGGER_MACHINE = """\
What a bigger machine should show, and how to run it there. With at least
N + 2 cores (N workers, and the generator on cores of its own, or on a
second machine), `--workers N` should scale round trips per second nearly
N-fold until the generator or the network is the limit, at the same or a
slightly higher CPU per request. On 2 cores it cannot: two workers share
one core with the generator, so each wakes for less work and the CPU per
request rises. The spread should stay near Jain 1.0 (`SO_REUSEPORT`
hashes each connection's addresses and ports), and a killed worker should
still cost only its own sessions. To run it there: `python -m benchmarks
run --parts workers` (add `transports` for UDP and TLS), with the generator
pinned away from the workers (`taskset`), or `python -m benchmarks.transports
workers --seconds 30 --clients 32` a few times, taking the median. The UDP
and TLS rates need a faster generator than one Python process (several,
or one in C) before they compare servers rather than generators.
"""


def parts_markdown(results: dict[str, Any], ps: dict[str, Any]) -> str:
    """The sections of results.md for the parts that were run; empty when none was."""
    if not ps["present"]:
        return ""
    plan = results.get("parts_plan", {})
    out: list[str] = []
    if "transports" in ps["present"]:
        out += [
            "## UDP and TLS\n",
            "`loadgen.c` speaks TCP only, so these are driven by a closed-loop Python "
            "generator in the measuring process (each client one request outstanding); on a "
            "small machine it limits every rate, and the figure to compare is the server's "
            f"CPU per request (user + sys from /proc). {plan.get('warmup_rounds', 0)} warm-up "
            f"and {plan.get('rounds', 0)} measured round(s) of {plan.get('seconds', 0):g} s, "
            "servers interleaved; ratios per round, then their median (CPU ratio below 1: "
            "trio-echo spends less per request).\n",
        ]
        out += [rate_table(w, ps) for w in ("UDP", "TLS", "TLS handshake")]
    if "client" in ps["present"]:
        out += [
            "## The client's own speed\n",
            "`trio-echo client --duration` of each driver against the C generator, on the "
            "same server, in the W2 and W4 shapes. The server answered the C generator's "
            "rate, so a client below 90% of it is the limit, not the server.\n",
            client_table(ps),
        ]
    if "workers" in ps["present"]:
        out += [
            "## Workers\n",
            "`serve --workers N`: CPU per request summed over the supervisor and its "
            "workers, the two measured in turn each round.\n",
            rate_table("workers", ps),
            "How evenly the kernel spreads connections made one after another "
            f"({plan.get('spread_connections', 0)} of them) over the workers, from the "
            "workers' log lines; Jain's index is 1.0 when even.\n",
            spread_table(ps),
            "A worker killed with SIGKILL under load (the reliability case `crashed "
            "worker`: 20 clients running 5-message sessions back to back for 4 s, one of "
            "two workers killed 1 s in). A failed session is traced to the worker that had "
            "it by its client port; none may fail on the other worker.\n",
            crash_table(ps),
            "### On a bigger machine\n",
            BIGGER_MACHINE,
        ]
    out += instructions_section(ps)
    return "\n".join(part for part in out if part)


def summary_lines(ps: dict[str, Any]) -> list[str]:
    """One line per part for the summary: the headline figure and its comparison."""
    lines: list[str] = []
    cells, ratios = ps["rates"]["cells"], ps["rates"]["ratios"]
    for workload in ("UDP", "TLS", "TLS handshake"):
        ours = cells.get(workload, {}).get("trio-echo (trio)")
        if not ours:
            continue
        unit = WORKLOADS[workload][1]
        against = [
            f"{ratio_text(p['cpu'], spread=False)} {p['b']}'s"
            for p in ratios.get(workload, [])
            if p["a"] == "trio-echo (trio)"
        ]
        lines.append(
            f"{workload}: trio-echo {number_text(ours['rate']['median'])} {unit}s/s at "
            f"{number_text(ours['cpu_us']['median'])} µs CPU per {unit}; CPU per {unit} "
            + ", ".join(against)
        )
    workers = cells.get("workers", {})
    if workers:
        shown = "; ".join(
            f"{name}: {number_text(c['cpu_us']['median'])} µs CPU per request"
            for name, c in workers.items()
        )
        lines.append(f"workers: {shown}")
    if ps["spread"]:
        lines.append(
            "spread over workers: "
            + ", ".join(f"Jain {s['jain']:.3f} over {s['workers']}" for s in ps["spread"])
        )
    for c in ps["crash"]:
        if c["ok"]:
            lines.append(
                f"crashed worker ({c['driver']}): {c['beyond']} failed sessions beyond its own "
                f"{c['own']}, replaced: {'yes' if c['replaced'] == 1 else 'no'}"
            )
    if ps["client"]:
        for row in ps["client"]["rows"]:
            if row["limit"] != "reference":
                lines.append(
                    f"client {row['shape']}, {row['driver']}: "
                    f"{ratio_text(row['share'], spread=False)} "
                    f"of the C generator's rate (limit: {row['limit']})"
                )
    instructions = _instructions_line(ps["instructions"])
    if instructions:
        lines.append(instructions)
    return lines


def _instructions_line(found: dict[str, Any] | None) -> str:
    """trio-echo's instruction counts over each base server's, workload by workload."""
    if not found:
        return ""
    against = []
    for base in INSTRUCTIONS_BASES:
        shown = [
            f"{workload} {ratios[base]:.2f}x"
            for workload, ratios in found["ratios"].items()
            if base in ratios
        ]
        if shown:
            against.append(f"{found['labels'].get(base, base)}'s: " + ", ".join(shown))
    if not against:
        return ""
    churn = [w for w, unit in found["units"].items() if unit == "session"]
    per_session = f"; per session in {', '.join(churn)}" if churn else ""
    return (
        f"user-space instructions per request (callgrind{per_session}), "
        "trio-echo over " + "; over ".join(against)
    )


Panel = Callable[[Any], None]
"""Draws one chart panel on the matplotlib Axes it is given."""


def panels(ps: dict[str, Any]) -> list[Panel]:
    """Chart panels for the parts present: CPU per request of each rate workload, and the
    client's share of the C generator's rate."""
    found: list[Panel] = []
    for workload, servers in ps["rates"]["cells"].items():
        found.append(_cpu_panel(workload, servers, ps))
    if ps["client"]:
        found.append(_client_panel(ps["client"]))
    if ps["instructions"] and any(ps["instructions"]["ratios"].values()):
        found.append(_instructions_panel(ps["instructions"]))
    return found


def _instructions_panel(found: dict[str, Any]) -> Panel:
    def draw(ax: Any) -> None:
        workloads = list(found["ratios"])
        width = 0.8 / len(INSTRUCTIONS_BASES)
        for j, base in enumerate(INSTRUCTIONS_BASES):
            xs = [
                i + (j - (len(INSTRUCTIONS_BASES) - 1) / 2) * width for i in range(len(workloads))
            ]
            values = [found["ratios"][w].get(base, 0.0) for w in workloads]
            ax.bar(xs, values, width, label=f"over {found['labels'].get(base, base)}")
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(workloads)))
        ax.set_xticklabels(workloads)
        ax.set_title(
            "trio-echo's user-space instructions per request\n(callgrind; lower is better)",
            fontsize=10,
        )
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)

    return draw


def _cpu_panel(workload: str, servers: dict[str, Any], ps: dict[str, Any]) -> Panel:
    unit = WORKLOADS.get(workload, (workload, "request"))[1]

    def draw(ax: Any) -> None:
        names = list(servers)
        meds = [servers[n]["cpu_us"]["median"] for n in names]
        low = [m - servers[n]["cpu_us"]["min"] for n, m in zip(names, meds, strict=True)]
        high = [servers[n]["cpu_us"]["max"] - m for n, m in zip(names, meds, strict=True)]
        ax.bar(range(len(names)), meds, yerr=[low, high], capsize=3, color="tab:purple")
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=40, ha="right", fontsize=8)
        title = f"{workload}: server CPU µs per {unit} (lower is better)"
        if workload == "workers" and ps["spread"]:
            title += "\nspread: " + ", ".join(
                f"Jain {s['jain']:.3f} ({s['workers']})" for s in ps["spread"]
            )
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)

    return draw


def _client_panel(client: dict[str, Any]) -> Panel:
    def draw(ax: Any) -> None:
        rows = [r for r in client["rows"] if r["limit"] != "reference" and r["share"]]
        names = [f"{r['shape']} {r['driver'].replace('trio-echo client ', '')}" for r in rows]
        meds = [r["share"]["median"] for r in rows]
        ax.bar(range(len(rows)), meds, color="tab:green")
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(names, rotation=40, ha="right", fontsize=8)
        ax.set_title("trio-echo client: share of the C generator's req/s", fontsize=10)
        ax.grid(axis="y", alpha=0.3)

    return draw
