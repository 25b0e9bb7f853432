"""The benchmark report on small synthetic results: figures, goals, parts, old JSONs.

No server runs here: each test builds a results.json by hand with numbers
chosen so that every median and per-round ratio is known in advance.
"""

from __future__ import annotations

import contextlib
import copy
import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks import instructions, parts, report, transports, workloads
from benchmarks.servers import BY_KEY


def _core_row(workload: str, server: str, rnd: int, value: float, user: float, sys: float) -> Any:
    return {
        "workload": workload,
        "server": server,
        "round": rnd,
        "warmup": rnd == 0,
        "ok": True,
        "error": "",
        "value": value,
        "requests": 1000,
        "window_s": 2.0,
        "generator_cpu": 0.5,
        "generator_busy": 0.5,
        "server_cpu": 0.9,
        "server_user_us": user,
        "server_sys_us": sys,
        "p50_us": 50.0,
        "p99_us": 90.0,
        "per_connection_min": 9,
        "per_connection_max": 10,
        "jain": 0.99,
        "rss_before_kib": 1000,
        "rss_after_kib": 5000,
        "threads": 1,
        "ramp_s": 0.1,
        "load1": 1.0,
        "extra": {"accepts_per_s": 100.0, "close_s": 0.1},
    }


CPU = {  # (user, sys) per request in rounds 0 (warm-up), 1, 2, 3
    "W2": {
        "trio-echo": [(99, 99), (4, 6), (3, 6), (5, 7)],  # totals 10, 9, 12
        "uvloop-protocol": [(1, 1), (2, 6), (5, 5), (2, 8)],  # totals 8, 10, 10
        "c-epoll": [(1, 1), (1, 4), (1, 4), (1, 5)],  # totals 5, 5, 6
    },
    "W6": {
        "trio-echo": [(9, 9), (6, 8), (6, 8), (6, 8)],  # 14 each
        "uvloop-protocol": [(1, 1), (4, 6), (4, 6), (4, 6)],  # 10 each: 1.4x, under 1.5x
        "c-epoll": [(1, 1), (1, 6), (1, 6), (1, 6)],
    },
}


def core_results() -> dict[str, Any]:
    """W2, W6 and W7 for trio-echo, uvloop Protocol and the C server, 3 rounds each."""
    rows: list[Any] = []
    for workload, servers in CPU.items():
        for server, per_round in servers.items():
            for rnd, (user, kernel) in enumerate(per_round):
                rows.append(_core_row(workload, server, rnd, 1000.0 + rnd, user, kernel))
    for server, kib in (("trio-echo", 3.9), ("uvloop-protocol", 1.3), ("c-epoll", 0.5)):
        rows.append(_core_row("W7", server, 1, kib, 0, 0))
    shape: dict[str, Any] = {"protocol": "reply", "connections": 100, "depth": 1, "size": 0}
    return {
        "machine": {
            "nproc": 2,
            "cpu_model": "test CPU",
            "kernel": "6.0",
            "platform": "Linux",
            "date": "2026-01-01T00:00:00+00:00",
            "versions": {
                "python": "3.11",
                "trio": "0.25",
                "uvloop": "0.19",
                "trio-echo": "0.1.0",
                "cc": "cc",
            },
        },
        "plan": {
            "name": "full",
            "rounds": 3,
            "warmup_rounds": 1,
            "warmup_s": 0.5,
            "duration_s": 2.0,
            "idle_connections": 1000,
            "idle_rounds": 1,
        },
        "servers": {
            "trio-echo": {"label": "trio-echo (Trio)", "reference": False},
            "uvloop-protocol": {"label": "uvloop Protocol", "reference": False},
            "c-epoll": {"label": "C epoll (ceiling)", "reference": True},
        },
        "skipped": [],
        "workloads": {
            "W2": {**shape, "key": "W2", "title": "lockstep", "mode": "steady"}
            | {"unit": "req/s", "higher_is_better": True, "fairness": True},
            "W6": {**shape, "key": "W6", "title": "churn", "mode": "churn"}
            | {"unit": "sessions/s", "higher_is_better": True, "fairness": False},
            "W7": {**shape, "key": "W7", "title": "idle", "mode": "idle"}
            | {"unit": "KiB/conn", "higher_is_better": False, "fairness": False},
        },
        "measurements": rows,
        "elapsed_s": 60.0,
    }


def _rate_row(workload: str, server: str, rnd: int, requests: int, cpu_s: float) -> Any:
    return {
        "workload": workload,
        "server": server,
        "round": rnd,
        "warmup": rnd == 0,
        "ok": True,
        "error": "",
        "requests": requests,
        "window_s": 2.0,
        "user_s": cpu_s / 2,
        "sys_s": cpu_s / 2,
    }


def _client_round(rnd: int, c_rate: float, trio_rate: float) -> Any:
    def row(driver: str, rate: float) -> Any:
        return {
            "shape": "W2",
            "driver": driver,
            "requests_per_second": rate,
            "cpu_per_second": 0.9,
            "p99_ms": 2.0,
        }

    return {
        "round": rnd,
        "ok": True,
        "error": "",
        "rows": [row("C loadgen", c_rate), row("trio-echo client (trio)", trio_rate)],
    }


def parts_section() -> dict[str, Any]:
    """UDP (trio-echo against asyncio), the workers, the spread, a crash, the client."""
    udp = [
        # 10,000 datagrams in 2 s; CPU per datagram: trio-echo 20, 30, 40 us, asyncio 10 us
        _rate_row("UDP", "trio-echo (trio)", 1, 10000, 0.2),
        _rate_row("UDP", "asyncio DatagramProtocol", 1, 10000, 0.1),
        _rate_row("UDP", "trio-echo (trio)", 2, 10000, 0.3),
        _rate_row("UDP", "asyncio DatagramProtocol", 2, 10000, 0.1),
        _rate_row("UDP", "trio-echo (trio)", 3, 10000, 0.4),
        _rate_row("UDP", "asyncio DatagramProtocol", 3, 10000, 0.1),
        {**_rate_row("UDP", "trio-echo (trio)", 0, 1, 9.0)},  # a warm-up: never counted
    ]
    workers = [
        _rate_row("workers", "trio-echo --workers 1", 1, 20000, 0.2),
        _rate_row("workers", "trio-echo --workers 2", 1, 20000, 0.3),
    ]
    return {
        "transports": {"measurements": udp, "elapsed_s": 10.0},
        "workers": {
            "measurements": workers,
            "spread": [{"workers": 2, "connections": [50, 50], "jain": 1.0}],
            "crash": [
                {
                    "driver": "trio",
                    "ok": True,
                    "error": "",
                    "completed": 900,
                    "failed": 7,
                    "own": 7,
                    "beyond": 0,
                    "replaced": 1,
                    "passed": True,
                    "figure": "...",
                }
            ],
            "elapsed_s": 10.0,
        },
        "client": {
            "server": "c-epoll",
            "server_label": "C epoll (ceiling)",
            "seconds": 3.0,
            # shares 0.5 and 0.95 (per round): the median 0.725 is under 0.9, so the client
            # limits; the share of the median rates (40,000 / 100,000 = 0.4) is not reported
            "rounds": [_client_round(1, 40000, 20000), _client_round(2, 160000, 152000)],
            "elapsed_s": 10.0,
        },
    }


def full_results() -> dict[str, Any]:
    results = core_results()
    results["parts"] = parts_section()
    results["parts_plan"] = {"rounds": 3, "warmup_rounds": 1, "seconds": 2.0}
    return results


def test_cpu_ratios_are_medians_of_per_round_ratios() -> None:
    summary = report.summarize(core_results())
    w2 = summary["cpu_ratios"]["W2"]
    # totals per round: trio-echo 10, 9, 12 over uvloop 8, 10, 10 = 1.25, 0.9, 1.2
    assert w2["total trio-echo/uvloop-protocol"]["median"] == pytest.approx(1.2)
    assert w2["total trio-echo/uvloop-protocol"]["min"] == pytest.approx(0.9)
    # user alone: 4/2, 3/5, 5/2 = 2.0, 0.6, 2.5
    assert w2["user trio-echo/uvloop-protocol"]["median"] == pytest.approx(2.0)
    # against the C server: 10/5, 9/5, 12/6 = 2.0, 1.8, 2.0
    assert w2["total trio-echo/c-epoll"]["median"] == pytest.approx(2.0)
    assert summary["cpu_ratios"]["W7"] == {}


def test_goals_are_judged_per_workload() -> None:
    results = core_results()
    found = {g["what"].split()[0]: g for g in report.goals(results, report.summarize(results))}
    assert not found["W2"]["met"]  # 1.2x against a goal of 1.0x
    assert found["W6"]["met"]  # 1.4x against a goal of 1.5x
    assert found["W6"]["figure"] == "1.40x"
    assert found["W7"]["met"]  # 3.9 KiB against 4 KiB
    table = report.cpu_ratio_table(results, report.summarize(results))
    assert "| met | **no** | yes |" in table
    assert "total CPU per request, trio-echo / uvloop Protocol | 1.20x (0.90-1.25)" in table


def test_a_json_without_parts_still_reports() -> None:
    results = core_results()
    summary = report.summarize(results)
    page = report.results_markdown(results, summary, "chart.png")
    assert "## Summary" in page and "| met |" in page
    assert "## UDP and TLS" not in page and "## Workers" not in page
    assert summary["parts"]["present"] == []


def test_a_json_from_before_the_cpu_table_still_reports() -> None:
    results = core_results()
    results["servers"].pop("uvloop-protocol")
    results["measurements"] = [
        m for m in results["measurements"] if m["server"] != "uvloop-protocol"
    ]
    summary = report.summarize(results)
    assert "total trio-echo/uvloop-protocol" not in summary["cpu_ratios"]["W2"]
    page = report.results_markdown(results, summary, "chart.png")
    assert "W7 server RSS per idle connection, trio-echo: 3.90 KiB" in page


def test_rate_parts_skip_warmups_and_ratio_per_round() -> None:
    summary = report.summarize(full_results())["parts"]
    udp = summary["rates"]["cells"]["UDP"]["trio-echo (trio)"]
    assert udp["rate"]["median"] == pytest.approx(5000.0)
    assert udp["cpu_us"]["median"] == pytest.approx(30.0)
    assert udp["cpu_us"]["max"] == pytest.approx(40.0)  # the warm-up's 9 s are not in it
    (pair,) = summary["rates"]["ratios"]["UDP"]
    assert (pair["a"], pair["b"]) == ("trio-echo (trio)", "asyncio DatagramProtocol")
    assert pair["cpu"]["median"] == pytest.approx(3.0)
    (workers,) = summary["rates"]["ratios"]["workers"]
    assert (workers["a"], workers["b"]) == ("trio-echo --workers 2", "trio-echo --workers 1")
    assert workers["cpu"]["median"] == pytest.approx(1.5)


def test_client_share_is_a_median_of_per_round_shares() -> None:
    client = report.summarize(full_results())["parts"]["client"]
    rows = {row["driver"]: row for row in client["rows"]}
    ours = rows["trio-echo client (trio)"]
    assert ours["share"]["median"] == pytest.approx(0.725)
    assert ours["limit"] == "client"
    assert rows["C loadgen"]["limit"] == "reference"


def test_the_page_shows_every_part() -> None:
    results = full_results()
    page = report.results_markdown(results, report.summarize(results), "chart.png")
    for heading in ("## UDP and TLS", "## The client's own speed", "## Workers"):
        assert heading in page
    assert "trio-echo (trio) / asyncio DatagramProtocol: CPU per datagram 3.00x" in page
    assert "| W2 | trio-echo client (trio) | 86,000 | 0.72x (0.50-0.95) |" in page
    assert "| trio | 900 | 7 | 7 | 0 | yes | yes |" in page
    assert "| 2 | 50, 50 | 1.000 |" in page
    assert "### On a bigger machine" in page
    summary = report.summary_markdown(results, report.summarize(results))
    assert "- crashed worker (trio): 0 failed sessions beyond its own 7, replaced: yes" in summary


def test_a_run_of_parts_alone_reports() -> None:
    results = full_results()
    results["workloads"], results["measurements"] = {}, []
    summary = report.summarize(results)
    page = report.results_markdown(results, summary, "chart.png")
    assert "## Workers" in page and "## Generator ceiling" not in page
    assert "- UDP: trio-echo 5,000 datagrams/s" in report.summary_markdown(results, summary)


def test_a_failed_part_measurement_is_noted() -> None:
    results = full_results()
    results["parts"]["transports"]["measurements"].append(
        {**_rate_row("UDP", "trio-echo (trio)", 4, 0, 0.0), "ok": False, "error": "boom"}
    )
    page = report.results_markdown(results, report.summarize(results), "chart.png")
    assert "- UDP round 4 trio-echo (trio): boom" in page


def test_reports_are_written_with_a_chart(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    results = full_results()
    (tmp_path / "results.json").write_text(json.dumps(results))
    paths = report.write_reports(copy.deepcopy(results), tmp_path)
    assert paths["chart"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| met |" in paths["readme_table"].read_text()


def test_servers_are_interleaved_round_by_round(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each server started once; measured A B A B, the warm-up round first."""
    started: list[tuple[str, ...]] = []
    order: list[tuple[int, bool, str]] = []

    @contextlib.contextmanager
    def fake_server(command: list[str]) -> Iterator[tuple[Any, int]]:
        started.append(tuple(command))

        class Process:
            pid = 1

        yield Process(), 1000 + len(started)

    def contender(name: str) -> parts.Contender:
        def load(port: int) -> parts.Load:
            return lambda seconds: port

        return parts.Contender("UDP", name, (name,), load)

    monkeypatch.setattr(transports, "server", fake_server)
    monkeypatch.setattr(transports, "family_cpu_split", lambda pid: (1.0, 1.0))
    plan = parts.PartsPlan(2, 1, 0.1, 1, 1, 1, 0.1, ())
    rows = parts.interleaved(
        [contender("A"), contender("B")],
        plan,
        lambda line: order.append((0, False, line)),
    )
    assert started == [("A",), ("B",)]
    assert [(r["round"], r["warmup"], r["server"]) for r in rows] == [
        (0, True, "A"),
        (0, True, "B"),
        (1, False, "A"),
        (1, False, "B"),
        (2, False, "A"),
        (2, False, "B"),
    ]
    assert rows[0]["requests"] == 1001 and rows[1]["requests"] == 1002
    assert len(order) == 6


def test_the_c_generator_is_the_reference_whatever_depth_its_row_names() -> None:
    results = full_results()
    for entry in results["parts"]["client"]["rounds"]:
        for row in entry["rows"]:
            row["driver"] += " (depth 1)" if row["driver"] == "C loadgen" else ""
    client = report.summarize(results)["parts"]["client"]
    rows = {row["driver"]: row for row in client["rows"]}
    assert rows["C loadgen (depth 1)"]["limit"] == "reference"
    assert rows["trio-echo client (trio)"]["share"]["median"] == pytest.approx(0.725)


def _instructions_row(workload: str, server: str, label: str, per_op: float) -> Any:
    operations = 1000
    return {
        "server": server,
        "label": label,
        "workload": workload,
        "unit": "session" if workload == "W6" else "request",
        "ok": True,
        "error": "",
        "instructions": round(per_op * operations),
        "operations": operations,
        "per_op": per_op,
        "window_s": 4.0,
        "instrumented_s": 4.0,
    }


def instructions_part() -> dict[str, Any]:
    """W2 and W6: trio-echo 10,000 and 330,000, uvloop 5,000 and 60,000, asyncio 20,000
    and 300,000, the Trio tutorial 40,000 and 1,200,000 instructions per operation."""
    servers = (
        ("trio-echo", "trio-echo (Trio)", {"W2": 10000.0, "W6": 330000.0}),
        ("uvloop-protocol", "uvloop Protocol", {"W2": 5000.0, "W6": 60000.0}),
        ("asyncio-protocol", "asyncio Protocol", {"W2": 20000.0, "W6": 300000.0}),
        ("trio-tutorial", "Trio tutorial", {"W2": 40000.0, "W6": 1200000.0}),
    )
    rows = [
        _instructions_row(workload, key, label, counts[workload])
        for workload in ("W2", "W6")
        for key, label, counts in servers
    ]
    return {"seconds": 4.0, "skipped_servers": [], "measurements": rows, "elapsed_s": 60.0}


def results_with_instructions() -> dict[str, Any]:
    results = full_results()
    results["parts"]["instructions"] = instructions_part()
    return results


def test_instruction_ratios_are_trio_echo_over_each_base() -> None:
    found = report.summarize(results_with_instructions())["parts"]["instructions"]
    assert found["cells"]["W6"]["trio-echo"] == pytest.approx(330000.0)
    assert found["ratios"]["W2"] == {
        "uvloop-protocol": pytest.approx(2.0),
        "asyncio-protocol": pytest.approx(0.5),
    }
    assert found["ratios"]["W6"]["uvloop-protocol"] == pytest.approx(5.5)
    assert found["ratios"]["W6"]["asyncio-protocol"] == pytest.approx(1.1)


def test_the_page_shows_instructions_per_request() -> None:
    results = results_with_instructions()
    summary = report.summarize(results)
    page = report.results_markdown(results, summary, "chart.png")
    assert "## User-space instructions per request (callgrind)" in page
    assert (
        "| workload | trio-echo (Trio) | uvloop Protocol | asyncio Protocol | Trio tutorial "
        "| trio-echo (Trio) / uvloop Protocol | trio-echo (Trio) / asyncio Protocol |"
    ) in page
    assert "| W2 (per request) | 10,000 | 5,000 | 20,000 | 40,000 | 2.00x | 0.50x |" in page
    assert "| W6 (per session) | 330,000 | 60,000 | 300,000 | 1,200,000 | 5.50x | 1.10x |" in page
    assert (
        "- user-space instructions per request (callgrind; per session in W6), trio-echo "
        "over uvloop Protocol's: W2 2.00x, W6 5.50x; over asyncio Protocol's: W2 0.50x, "
        "W6 1.10x"
    ) in report.summary_markdown(results, summary)


def test_a_json_without_instructions_says_nothing_of_them() -> None:
    results = full_results()
    summary = report.summarize(results)
    assert summary["parts"]["instructions"] is None
    page = report.results_markdown(results, summary, "chart.png")
    assert "callgrind" not in page and "## Workers" in page
    assert "callgrind" not in report.summary_markdown(results, summary)


def test_a_failed_instruction_count_is_noted() -> None:
    results = results_with_instructions()
    row = results["parts"]["instructions"]["measurements"][4]  # W6, trio-echo
    row.update(ok=False, error="trio-echo (Trio) did not listen within 120 s", per_op=0.0)
    summary = report.summarize(results)
    page = report.results_markdown(results, summary, "chart.png")
    assert "| W6 (per session) | failed | 60,000 | 300,000 | 1,200,000 | - | - |" in page
    assert "- instructions W6 trio-echo (Trio): trio-echo (Trio) did not listen" in page
    line = "over uvloop Protocol's: W2 2.00x; over asyncio Protocol's: W2 0.50x"
    assert line in report.summary_markdown(results, summary)


def test_a_run_without_valgrind_says_so_in_one_line() -> None:
    results = full_results()
    results["parts"]["instructions"] = {"skipped": "valgrind not found", "measurements": []}
    summary = report.summarize(results)
    page = report.results_markdown(results, summary, "chart.png")
    assert "## User-space instructions per request (callgrind)\n\nNot measured: valgrind" in page
    assert "callgrind" not in report.summary_markdown(results, summary)


def test_the_instructions_part_skips_itself_without_valgrind(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(shutil, "which", lambda tool: None)
    notes: list[str] = []
    part = parts.run_instructions(parts.QUICK_PARTS, tmp_path, notes.append)
    assert part["measurements"] == []
    assert notes == [
        "instructions skipped: valgrind and callgrind_control not found (apt-get install valgrind)"
    ]


def test_callgrind_totals_are_summed_over_the_dumps_of_one_process(tmp_path: Path) -> None:
    header = "# callgrind format\nversion: 1\ncreator: callgrind-3.19.0\npid: 42\ncmd: python\n"
    (tmp_path / "callgrind-42.out.1").write_text(
        header + "events: Ir\nsummary: 1000\n\nfl=(1) a.c\nfn=(1) f\n3 1000\n\ntotals: 1000\n"
    )
    (tmp_path / "callgrind-42.out.2").write_text(  # several events: Ir is the first
        header + "events: Ir Dr\nsummary: 250 7\n\ntotals: 250 7\n"
    )
    (tmp_path / "callgrind-42.out").write_text(header + "events: Ir\nsummary: 5\n")  # no totals
    (tmp_path / "callgrind-43.out").write_text(header + "events: Ir\ntotals: 999999\n")
    assert instructions.file_instructions(tmp_path / "callgrind-42.out.1") == 1000
    assert instructions.file_instructions(tmp_path / "callgrind-42.out") == 5
    assert instructions.total_instructions(tmp_path, 42) == 1255


def test_callgrind_is_switched_on_and_off_at_the_window(tmp_path: Path) -> None:
    sent: list[tuple[Any, ...]] = []
    window = instructions.CallgrindWindow(7, lambda *args: sent.append(args))
    for event in ("warmed", "window-start", "window-end"):
        window(event)
    assert sent == [(7, "-i", "on"), (7, "-i", "off"), (7, "-d")]
    assert window.instrumented_s >= 0.0
    spec = instructions.under_callgrind(BY_KEY["trio-echo"], tmp_path)
    command = spec.command("reply")
    assert command[:3] == ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
    assert command[3] == f"--callgrind-out-file={tmp_path}/callgrind-%p.out"
    assert command[4:] == BY_KEY["trio-echo"].command("reply")
    assert spec.is_trio_echo


FAKE_GATED_GENERATOR = """
import sys
print("event warmed", flush=True)
first = sys.stdin.readline().strip()
print("event window-start", flush=True)
print("event window-end", flush=True)
second = sys.stdin.readline().strip()
print('result {"lines": "%s %s"}' % (first, second), flush=True)
"""
"""Announces both gates and waits at each for its go-ahead line, as ``loadgen --gate 1``."""


def test_a_gated_generator_is_answered_at_both_gates(tmp_path: Path) -> None:
    """A line goes to the generator once each gate's event has been handled."""
    seen: list[str] = []
    result = workloads.run_generator(
        [sys.executable, "-c", FAKE_GATED_GENERATOR],
        timeout=60.0,
        on_event=seen.append,
        log_path=tmp_path / "generator.log",
        answered=("ready", "warmed", "window-end"),
    )
    assert seen == ["warmed", "window-start", "window-end"]
    assert result == {"lines": "done done"}
