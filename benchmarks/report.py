"""Turning results.json into numbers people read: statistics, markdown, a chart."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import parts_report
from .formatting import number_text, ratio_text

BASELINE = "asyncio-streams"
PAIRS: tuple[tuple[str, str], ...] = (
    ("trio-echo", "asyncio-streams"),
    ("trio-echo", "asyncio-protocol"),
    ("trio-echo", "trio-tutorial"),
    ("trio-echo-blocking", "socketserver-threads"),
)
"""Ratios reported: each computed per round, then the median taken."""
SHORT = {
    "trio-echo": "trio-echo",
    "trio-echo-blocking": "trio-echo blocking",
    "asyncio-streams": "asyncio streams",
    "asyncio-protocol": "asyncio Protocol",
    "uvloop-protocol": "uvloop Protocol",
    "socketserver-threads": "socketserver threads",
    "trio-tutorial": "Trio tutorial",
    "c-epoll": "C epoll (ceiling)",
}
CPU_PAIRS: tuple[tuple[str, str, str], ...] = (
    ("total", "trio-echo", "uvloop-protocol"),
    ("user", "trio-echo", "uvloop-protocol"),
    ("total", "trio-echo", "c-epoll"),
)
"""CPU-per-request ratios reported, (which CPU, server, against): each computed per
round, then the median taken. Below 1 means trio-echo spent less CPU per request."""
CPU_GOALS = {"W1": 1.0, "W2": 1.0, "W3": 1.0, "W4": 1.0, "W5": 1.0, "W6": 1.5}
"""The most trio-echo's total CPU per request may be, as a multiple of uvloop Protocol's."""
CPU_GOAL_PAIR = "total trio-echo/uvloop-protocol"
MEMORY_GOAL_KIB = 4.0
"""The most server RSS per idle connection (W7) trio-echo (Trio driver) may use."""
UNIT_SHORT = {"req/s": "req/s", "msg/s": "msg/s", "MB/s": "MB/s", "sessions/s": "sess/s"}


def _busy(m: dict[str, Any]) -> float:
    return float(m.get("generator_busy", m["generator_cpu"]))


def _saturated(m: dict[str, Any]) -> bool:
    return max(_busy(m), float(m["generator_cpu"])) >= 0.9


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    """Per workload and server: median, spread and the rest; per pair: ratios."""
    rows: list[dict[str, Any]] = results["measurements"]
    summary: dict[str, Any] = {
        "cells": {},
        "ratios": {},
        "cpu_ratios": {},
        "flags": [],
        "failures": [],
    }
    for w_key, workload in results["workloads"].items():
        higher = workload["higher_is_better"]
        cells: dict[str, Any] = {}
        by_round: dict[str, dict[int, float]] = {}
        cpu_by_round: dict[str, dict[str, dict[int, float]]] = {"total": {}, "user": {}}
        for s_key in results["servers"]:
            ms = [
                m
                for m in rows
                if m["workload"] == w_key and m["server"] == s_key and not m["warmup"]
            ]
            good = [m for m in ms if m["ok"]]
            for m in ms:
                if not m["ok"]:
                    summary["failures"].append(
                        f"{w_key} round {m['round']} {SHORT.get(s_key, s_key)}: {m['error']}"
                    )
                elif _saturated(m) and not results["servers"][s_key]["reference"]:
                    summary["flags"].append(
                        f"{w_key} round {m['round']} {SHORT.get(s_key, s_key)}: generator busy "
                        f"{_busy(m):.0%} of the window, CPU {m['generator_cpu']:.0%}"
                    )
            by_round[s_key] = {m["round"]: m["value"] for m in good}
            if workload["mode"] != "idle":
                cpu_by_round["total"][s_key] = {
                    m["round"]: m["server_user_us"] + m["server_sys_us"] for m in good
                }
                cpu_by_round["user"][s_key] = {m["round"]: m["server_user_us"] for m in good}
            if not good:
                cells[s_key] = {"n": 0, "failed": len(ms)}
                continue
            values = [m["value"] for m in good]
            cell: dict[str, Any] = {
                "n": len(good),
                "failed": len(ms) - len(good),
                "median": _median(values),
                "min": min(values),
                "max": max(values),
                "p50_us": _median([m["p50_us"] for m in good]),
                "p99_us": _median([m["p99_us"] for m in good]),
                "server_cpu": _median([m["server_cpu"] for m in good]),
                "user_us": _median([m["server_user_us"] for m in good]),
                "sys_us": _median([m["server_sys_us"] for m in good]),
                "generator_cpu": _median([m["generator_cpu"] for m in good]),
                "generator_busy": _median([_busy(m) for m in good]),
                "generator_bound": sum(_saturated(m) for m in good),
                "load1": _median([m["load1"] for m in good]),
            }
            if workload["fairness"]:
                cell["jain"] = _median([m["jain"] for m in good])
                cell["min_over_max"] = _median(
                    [
                        m["per_connection_min"] / m["per_connection_max"]
                        for m in good
                        if m["per_connection_max"]
                    ]
                )
            if workload["mode"] == "idle":
                cell["rss_after_kib"] = _median([m["rss_after_kib"] for m in good])
                cell["threads"] = _median([m["threads"] for m in good])
                cell["accepts_per_s"] = _median(
                    [m["extra"].get("accepts_per_s", 0.0) for m in good]
                )
                cell["close_s"] = _median([m["extra"].get("close_s", 0.0) for m in good])
            cells[s_key] = cell
        summary["cells"][w_key] = cells
        ratios: dict[str, Any] = {}
        for a, b in PAIRS:
            if a not in by_round or b not in by_round:
                continue
            per_round = [
                (by_round[a][r] / by_round[b][r]) if higher else (by_round[b][r] / by_round[a][r])
                for r in sorted(set(by_round[a]) & set(by_round[b]))
                if by_round[a][r] > 0 and by_round[b][r] > 0
            ]
            if per_round:
                ratios[f"{a}/{b}"] = {
                    "median": _median(per_round),
                    "min": min(per_round),
                    "max": max(per_round),
                    "n": len(per_round),
                }
        summary["ratios"][w_key] = ratios
        summary["cpu_ratios"][w_key] = cpu_ratios(cpu_by_round)
    summary["parts"] = parts_report.summarize_parts(results)
    return summary


def per_round_ratio(a: dict[int, float], b: dict[int, float]) -> dict[str, Any] | None:
    """a / b in each round both have, summarized as median, min, max and count."""
    per_round = [a[r] / b[r] for r in sorted(set(a) & set(b)) if a[r] > 0 and b[r] > 0]
    if not per_round:
        return None
    return {
        "median": _median(per_round),
        "min": min(per_round),
        "max": max(per_round),
        "n": len(per_round),
    }


def cpu_ratios(cpu_by_round: dict[str, dict[str, dict[int, float]]]) -> dict[str, Any]:
    """The :data:`CPU_PAIRS` of one workload, keyed ``"total trio-echo/uvloop-protocol"``."""
    found: dict[str, Any] = {}
    for kind, a, b in CPU_PAIRS:
        rounds = cpu_by_round[kind]
        if a in rounds and b in rounds:
            ratio = per_round_ratio(rounds[a], rounds[b])
            if ratio is not None:
                found[f"{kind} {a}/{b}"] = ratio
    return found


def goals(results: dict[str, Any], summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Each goal the run can judge: what, the goal, the figure, and whether it was met."""
    found: list[dict[str, Any]] = []
    for w_key, limit in CPU_GOALS.items():
        ratio = summary.get("cpu_ratios", {}).get(w_key, {}).get(CPU_GOAL_PAIR)
        if ratio is None:
            continue
        found.append(
            {
                "what": f"{w_key} total CPU per request, trio-echo / uvloop Protocol",
                "goal": f"≤ {limit:.1f}x",
                "figure": f"{ratio['median']:.2f}x",
                "met": ratio["median"] <= limit,
            }
        )
    for w_key, w in results["workloads"].items():
        cell = summary["cells"][w_key].get("trio-echo", {})
        if w["mode"] == "idle" and cell.get("n"):
            found.append(
                {
                    "what": f"{w_key} server RSS per idle connection, trio-echo",
                    "goal": f"≤ {MEMORY_GOAL_KIB:g} KiB",
                    "figure": f"{cell['median']:.2f} KiB",
                    "met": cell["median"] <= MEMORY_GOAL_KIB,
                }
            )
    return found


def short_table(results: dict[str, Any], summary: dict[str, Any]) -> str:
    """The README-sized table: workloads down, servers across, plus the key ratios."""
    servers = [k for k in results["servers"] if not results["servers"][k]["reference"]]
    header = [
        "workload",
        *(SHORT.get(k, k) for k in servers),
        "Trio vs streams",
        "Trio vs Protocol",
        "blocking vs threads",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for w_key, w in results["workloads"].items():
        cells = summary["cells"][w_key]
        ratios = summary["ratios"][w_key]
        row = [f"{w_key} {UNIT_SHORT.get(w['unit'], w['unit'])}"]
        for k in servers:
            c = cells.get(k, {})
            row.append(number_text(c["median"]) if c.get("n") else "failed")
        row.append(ratio_text(ratios.get("trio-echo/asyncio-streams"), spread=False))
        row.append(ratio_text(ratios.get("trio-echo/asyncio-protocol"), spread=False))
        row.append(ratio_text(ratios.get("trio-echo-blocking/socketserver-threads"), spread=False))
        lines.append("| " + " | ".join(row) + " |")
    if "W1" in summary["cells"]:
        row = ["W1 p99 us"]
        for k in servers:
            c = summary["cells"]["W1"].get(k, {})
            row.append(number_text(c["p99_us"]) if c.get("n") else "-")
        lines.append("| " + " | ".join([*row, "", "", ""]) + " |")
    return "\n".join(lines) + "\n"


def summary_markdown(results: dict[str, Any], summary: dict[str, Any]) -> str:
    """The summary: the short table, trio-echo's CPU per request against uvloop
    Protocol's and the C server's with the goals, and one line per other part."""
    out = [short_table(results, summary)] if results["workloads"] else []
    if any(summary["cpu_ratios"].values()):
        out += [
            "CPU per request, trio-echo over the other server (medians of per-round "
            "ratios, min-max; below 1 means trio-echo spends less):\n",
            cpu_ratio_table(results, summary),
        ]
    if results["workloads"]:
        out.append(goals_list(results, summary))
    lines = parts_report.summary_lines(summary["parts"])
    if lines:
        out.append("\n".join(f"- {line}" for line in lines) + "\n")
    return "\n".join(out)


def detail_tables(results: dict[str, Any], summary: dict[str, Any]) -> str:
    """One table per workload with spreads, CPU costs, latency and fairness."""
    out: list[str] = []
    for w_key, w in results["workloads"].items():
        cells = summary["cells"][w_key]
        out.append(f"### {w_key}: {w['title']}\n")
        idle = w["mode"] == "idle"
        if idle:
            header = [
                "server",
                "KiB/conn median",
                "min-max",
                "RSS with all open (MiB)",
                "threads",
                "connects/s",
                "closing all (s)",
            ]
        else:
            header = [
                "server",
                f"{w['unit']} median",
                "min-max",
                "vs streams",
                "server CPU",
                "user us/req",
                "sys us/req",
                "p50 us",
                "p99 us",
                "gen busy",
            ]
            if w["fairness"]:
                header += ["Jain", "min/max conn"]
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "---|" * len(header))
        base = cells.get(BASELINE, {})
        for s_key, c in cells.items():
            name = SHORT.get(s_key, s_key)
            if not c.get("n"):
                out.append(
                    f"| {name} | failed ({c.get('failed', 0)} rounds) |" + " |" * (len(header) - 2)
                )
                continue
            spread = f"{number_text(c['min'])}-{number_text(c['max'])}"
            if idle:
                row = [
                    name,
                    number_text(c["median"]),
                    spread,
                    number_text(c["rss_after_kib"] / 1024),
                    f"{c['threads']:.0f}",
                    number_text(c["accepts_per_s"]),
                    number_text(c["close_s"]),
                ]
            else:
                vs = f"{c['median'] / base['median']:.2f}x" if base.get("n") else "-"
                gen = f"{c['generator_busy']:.0%}" + (" (!)" if c["generator_bound"] else "")
                row = [
                    name,
                    number_text(c["median"]),
                    spread,
                    vs,
                    f"{c['server_cpu']:.0%}",
                    number_text(c["user_us"]),
                    number_text(c["sys_us"]),
                    number_text(c["p50_us"]),
                    number_text(c["p99_us"]),
                    gen,
                ]
                if w["fairness"]:
                    row += [f"{c['jain']:.3f}", f"{c['min_over_max']:.2f}"]
            out.append("| " + " | ".join(row) + " |")
        out.append("")
    return "\n".join(out)


def ratio_table(results: dict[str, Any], summary: dict[str, Any]) -> str:
    """Median of the per-round ratios, with their min-max spread."""
    workloads = list(results["workloads"])
    lines = ["| ratio | " + " | ".join(workloads) + " |", "|---|" + "---|" * len(workloads)]
    for a, b in PAIRS:
        key = f"{a}/{b}"
        if not any(key in summary["ratios"][w] for w in workloads):
            continue
        row = [f"{SHORT.get(a, a)} / {SHORT.get(b, b)}"]
        row += [ratio_text(summary["ratios"][w].get(key)) for w in workloads]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def cpu_ratio_table(results: dict[str, Any], summary: dict[str, Any]) -> str:
    """CPU per request of trio-echo over uvloop Protocol's and the C server's, per
    workload (medians of per-round ratios), with the goal and whether it was met."""
    keys = [w for w, spec in results["workloads"].items() if spec["mode"] != "idle"]
    found = summary.get("cpu_ratios", {})
    if not any(found.get(w) for w in keys):
        return "Not measured: the run had no trio-echo and uvloop Protocol side by side.\n"
    lines = ["| | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for kind, a, b in CPU_PAIRS:
        pair = f"{kind} {a}/{b}"
        if not any(pair in found.get(w, {}) for w in keys):
            continue
        row = [f"{kind} CPU per request, {SHORT.get(a, a)} / {SHORT.get(b, b).split(' (')[0]}"]
        row += [ratio_text(found.get(w, {}).get(pair)) for w in keys]
        lines.append("| " + " | ".join(row) + " |")
    goal_row, met_row = ["goal: total CPU per request / uvloop Protocol"], ["met"]
    for w in keys:
        limit = CPU_GOALS.get(w)
        ratio = found.get(w, {}).get(CPU_GOAL_PAIR)
        goal_row.append(f"≤ {limit:.1f}x" if limit is not None else "-")
        if limit is None or ratio is None:
            met_row.append("-")
        else:
            met_row.append("yes" if ratio["median"] <= limit else "**no**")
    lines += ["| " + " | ".join(goal_row) + " |", "| " + " | ".join(met_row) + " |"]
    return "\n".join(lines) + "\n"


def goals_list(results: dict[str, Any], summary: dict[str, Any]) -> str:
    """The goals as a markdown list, each with its figure and verdict."""
    found = goals(results, summary)
    if not found:
        return "No goal could be judged from this run.\n"
    return (
        "\n".join(
            f"- {g['what']}: {g['figure']} (goal {g['goal']}): {'met' if g['met'] else 'NOT met'}"
            for g in found
        )
        + "\n"
    )


def ceiling_table(results: dict[str, Any], summary: dict[str, Any]) -> str:
    """The generator's ceiling (the C server) against the fastest Python server."""
    if "c-epoll" not in results["servers"]:
        return "The C ceiling server was not run.\n"
    lines = [
        "| workload | ceiling (C server) | generator busy there | fastest Python server "
        "| headroom | generator busy there |",
        "|---|---|---|---|---|---|",
    ]
    for w_key, w in results["workloads"].items():
        if not w["higher_is_better"]:
            continue
        cells = summary["cells"][w_key]
        ceiling = cells.get("c-epoll", {})
        python = {k: c for k, c in cells.items() if k != "c-epoll" and c.get("n")}
        if not ceiling.get("n") or not python:
            continue
        best_key = max(python, key=lambda k: python[k]["median"])
        best = python[best_key]
        lines.append(
            f"| {w_key} | {number_text(ceiling['median'])} {w['unit']} | "
            f"{ceiling['generator_busy']:.0%} | "
            f"{SHORT.get(best_key, best_key)}: {number_text(best['median'])} | "
            f"{ceiling['median'] / best['median']:.1f}x | {best['generator_busy']:.0%} |"
        )
    return "\n".join(lines) + "\n"


def chart(results: dict[str, Any], summary: dict[str, Any], path: Path) -> None:
    """A PNG: one panel per workload (median bars, min-max whiskers) and one of ratios."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    servers = [k for k in results["servers"] if not results["servers"][k]["reference"]]
    colors = plt.get_cmap("tab10")
    workloads = list(results["workloads"].items())
    extra: list[parts_report.Panel] = []
    if any(summary["cpu_ratios"].values()):
        extra.append(lambda ax: _cpu_ratio_panel(ax, results, summary))
    extra += parts_report.panels(summary["parts"])
    columns = 4
    rows = max(1, (len(workloads) + 1 + len(extra) + columns - 1) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 4.6 * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax, (w_key, w) in zip(flat, workloads, strict=False):
        cells = summary["cells"][w_key]
        names, values, low, high, tints = [], [], [], [], []
        for i, k in enumerate(servers):
            c = cells.get(k, {})
            if not c.get("n"):
                continue
            names.append(SHORT.get(k, k))
            values.append(c["median"])
            low.append(c["median"] - c["min"])
            high.append(c["max"] - c["median"])
            tints.append(colors(i % 10))
        ax.bar(range(len(values)), values, yerr=[low, high], color=tints, capsize=3)
        ax.set_xticks(range(len(values)))
        ax.set_xticklabels(names, rotation=40, ha="right", fontsize=8)
        better = "higher" if w["higher_is_better"] else "lower"
        title = f"{w_key}: {w['unit']} ({better} is better)"
        ceiling = cells.get("c-epoll", {})
        if ceiling.get("n") and w["higher_is_better"]:
            title += f"\nC server (generator ceiling): {number_text(ceiling['median'])}"
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    ax = flat[len(workloads)]
    keys = [w for w, _ in workloads]
    width = 0.38
    for j, (pair, label) in enumerate(
        (
            ("trio-echo/asyncio-streams", "trio-echo / asyncio streams"),
            ("trio-echo/asyncio-protocol", "trio-echo / asyncio Protocol"),
        )
    ):
        meds, lo, hi, xs = [], [], [], []
        for i, w in enumerate(keys):
            r = summary["ratios"][w].get(pair)
            if r:
                xs.append(i + (j - 0.5) * width)
                meds.append(r["median"])
                lo.append(r["median"] - r["min"])
                hi.append(r["max"] - r["median"])
        ax.bar(xs, meds, width, yerr=[lo, hi], capsize=3, label=label)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels(keys)
    ax.set_title("ratios per round, median (above 1 = trio-echo better)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    for draw, panel in zip(extra, flat[len(workloads) + 1 :], strict=False):
        draw(panel)
    for unused in flat[len(workloads) + 1 + len(extra) :]:
        unused.axis("off")
    machine = results["machine"]
    fig.suptitle(
        f"trio-echo and peers, {results['plan']['name']} run, {machine['date'][:10]}, "
        f"{machine['nproc']} CPUs ({machine['cpu_model']})",
        fontsize=12,
    )
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / (4.6 * rows)))  # room for the title
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _cpu_ratio_panel(ax: Any, results: dict[str, Any], summary: dict[str, Any]) -> None:
    """trio-echo's CPU per request over uvloop Protocol's and the C server's, per
    workload, with each workload's goal marked."""
    keys = [w for w, spec in results["workloads"].items() if spec["mode"] != "idle"]
    shown = [pair for pair in CPU_PAIRS if pair[0] == "total"]  # user alone: in the table
    width = 0.8 / len(shown)
    for j, (kind, a, b) in enumerate(shown):
        pair = f"{kind} {a}/{b}"
        xs, meds, lo, hi = [], [], [], []
        for i, w in enumerate(keys):
            r = summary["cpu_ratios"].get(w, {}).get(pair)
            if r:
                xs.append(i + (j - (len(shown) - 1) / 2) * width)
                meds.append(r["median"])
                lo.append(r["median"] - r["min"])
                hi.append(r["max"] - r["median"])
        label = f"{SHORT.get(a, a)} / {SHORT.get(b, b).split(' (')[0]}"
        ax.bar(xs, meds, width, yerr=[lo, hi], capsize=2, label=label)
    for i, w in enumerate(keys):
        if w in CPU_GOALS:
            ax.hlines(CPU_GOALS[w], i - 0.45, i + 0.45, colors="red", linestyles="dashed")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels(keys)
    ax.set_title(
        "total CPU per request, trio-echo over theirs\n(lower is better; red: goal)", fontsize=10
    )
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)


def method_text(results: dict[str, Any]) -> str:
    plan = results["plan"]
    return (
        f"Each server runs in its own process on 127.0.0.1 and is driven by one compiled "
        f"load generator that validates every reply byte for byte. For each workload the "
        f"servers are measured in turn, A B C ... A B C ...: {plan['warmup_rounds']} warm-up "
        f"round(s), then {plan['rounds']} measured rounds (W7: {plan['idle_rounds']} round(s), "
        f"a fresh server process each time). A measurement opens its connections, warms up "
        f"for {plan['warmup_s']:g} s and counts for {plan['duration_s']:g} s. Values are "
        f"medians of the rounds with their min-max spread; ratios are computed per round, "
        f"then their median is taken (above 1 means the first server is better; for W7, "
        f"less memory is better).\n\n"
        f"Server CPU is read from /proc at the start and end of the window: 100% is one "
        f"core busy; user and sys are microseconds of server CPU per request (per 64 KiB "
        f"message in W5, per session in W6). Latency is per request (W6: per session, "
        f"connect to close). Fairness: Jain's index over the per-connection counts (1.0 = "
        f"perfectly even) and the slowest connection's count over the fastest's. W7: RSS "
        f"growth of a fresh server per idle connection (after a 100-connection warm-up), "
        f"how fast the connections were taken (connect and one round trip, 256 at a time) "
        f"and how long the server took to close them all after the half-closes. The "
        f"generator is one C thread; 'gen busy' is the share of the window it spent "
        f"outside epoll_wait (working, or waiting for a CPU): a value marked '(!)' had it "
        f"(or its CPU time) above 90%, so the generator may have limited that measurement.\n"
    )


def results_markdown(results: dict[str, Any], summary: dict[str, Any], chart_name: str) -> str:
    """The whole results page: machine, summary and goals, chart, method, every table."""
    machine = results["machine"]
    v = machine["versions"]
    core = bool(results["workloads"])
    parts = [
        "# Benchmark results\n",
        "Regenerate with `python -m benchmarks run --trio-echo-rev HEAD` (about 20 "
        "minutes), then `python -m benchmarks publish`; see [README.md](README.md). "
        "`python -m benchmarks publish benchmarks/results.json` rewrites this page and its "
        "chart from the JSON below it.\n",
        "All numbers come from one run in which the servers were measured side by side, "
        "interleaved round by round, on a shared machine that other jobs were also using: "
        "absolute numbers are noisy, and the per-round ratios are the figures to read.\n",
        "## Machine\n",
        f"- {machine['nproc']} CPUs: {machine['cpu_model']}; Linux {machine['kernel']}",
        f"- Python {v['python']}, trio {v['trio']}, uvloop {v['uvloop']}, "
        f"trio-echo {v['trio-echo']} at {v.get('trio-echo revision', 'unknown')}, "
        f"compiler: {v['cc']}",
        f"- date: {machine['date']}; {results['plan']['name']} run, "
        f"{results.get('elapsed_s', 0) / 60:.1f} minutes\n",
        "## Summary\n",
    ]
    if core:
        parts.append(
            "Medians over the measured rounds (W7 in KiB of server RSS per idle connection, "
            "lower is better; the rest higher is better). Ratios are medians of per-round "
            "ratios. The CPU table sets trio-echo's server CPU per request (user + sys, and "
            "user alone) against uvloop Protocol's and the C epoll server's, each ratio "
            "computed in a round from measurements seconds apart. The goals: at most uvloop "
            "Protocol's total CPU per request on W1-W5, at most 1.5 times it on W6 (a new "
            f"connection per session), at most {MEMORY_GOAL_KIB:g} KiB per idle connection "
            "on W7.\n"
        )
    parts += [summary_markdown(results, summary), f"![chart]({chart_name})\n"]
    if core:
        parts += [
            "## Method\n",
            method_text(results),
            "## Ratios\n",
            ratio_table(results, summary),
            "## Generator ceiling\n",
            "The same generator against a minimal C epoll server: the generator drove at "
            "least this much load here. Where it was busy less than 90% of the window even "
            "against the C server, that figure was set by the CPU share the two processes "
            "got, not by the generator. Headroom is the ceiling over the fastest Python "
            "server's result; every other server ran further below it.\n",
            ceiling_table(results, summary),
        ]
    parts.append(parts_report.parts_markdown(results, summary["parts"]))
    if core:
        parts += ["## Per workload\n", detail_tables(results, summary)]
    notes = (
        results.get("skipped", [])
        + summary["failures"]
        + summary["parts"]["failures"]
        + summary["flags"]
    )
    if notes:
        parts += ["## Notes\n", "\n".join(f"- {n}" for n in notes) + "\n"]
    return "\n".join(part for part in parts if part)


def write_reports(results: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write results.md, readme-table.md and chart.png next to results.json."""
    summary = summarize(results)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "markdown": out_dir / "results.md",
        "readme_table": out_dir / "readme-table.md",
        "chart": out_dir / "chart.png",
    }
    chart(results, summary, paths["chart"])
    paths["markdown"].write_text(results_markdown(results, summary, paths["chart"].name))
    paths["readme_table"].write_text(summary_markdown(results, summary))
    return paths
