"""Jitter tables, the fleet line and ``--compare``, rendered as plain text."""

from __future__ import annotations

from dataclasses import replace

import pytest
from rich.console import RenderableType
from tests.unit.jitter_samples import SETTINGS, c_cpu, host, oslat_cpu, quiet_cpu

from quietcore.console import render_plain
from quietcore.probes.gate import CpuVerdict, RuleVerdict
from quietcore.probes.result import Event
from quietcore.report.jitter_view import (
    CompareRow,
    compare_fleet,
    compare_rows,
    compare_table,
    jitter_summary,
    jitter_table,
)

STALL = Event(1_000_000, 12_140)
FAILED_CPU1 = CpuVerdict(
    1,
    False,
    (
        RuleVerdict("max_us", 50, 1250.4, False),
        RuleVerdict("p99_us", 1000, 992.8, True),
        RuleVerdict("events_over_us.100", 0, None, False),
    ),
)
PASSED_CPU2 = CpuVerdict(2, True, (RuleVerdict("max_us", 50, 12.14, True),))
UNREACHABLE = host(
    "db-7", error="ssh: connect to host db-7 port 22: No route to host", error_kind="unreachable"
)


def _plain(renderable: RenderableType) -> str:
    return render_plain([renderable])


def _row(text: str, cpu: int) -> list[str]:
    return next(line.split() for line in text.splitlines() if line.split()[:1] == [str(cpu)])


def _metric_line(text: str, metric: str) -> list[str]:
    return next(line.split() for line in text.splitlines() if metric in line)


def test_heading_says_where_how_and_why() -> None:
    text = _plain(jitter_table(host("lab-1", c_cpu()), None))
    assert text.splitlines()[0] == (
        "lab-1  backend c (auto: gcc found, C probe built on the host)"
        "  duration 10s  threshold 5µs  policy fifo:90"
    )
    assert "VM" not in text
    normal = replace(SETTINGS, fifo_priority=None, threshold_ns=2_500, duration_ns=60_000_000_000)
    assert "duration 60s  threshold 2.5µs  policy other" in _plain(
        jitter_table(host("lab-1", c_cpu(), settings=normal), None)
    )


def test_a_vm_is_flagged() -> None:
    text = _plain(jitter_table(host("lab-1", c_cpu(), hypervisor="kvm"), None))
    assert text.splitlines()[1] == "on a VM (kvm): max and the far tail are not trustworthy"


def test_one_row_per_cpu_with_every_number() -> None:
    text = _plain(jitter_table(host("lab-1", quiet_cpu(2, events=(STALL,)), c_cpu()), None))
    assert "verdict" not in text
    assert _row(text, 1) == [
        "1",
        "iso",
        "20.7",  # 10_000_012_345 ns / 482_000_000 loops
        "24",
        "2.40",
        "15.9",
        "992.8",
        "1224.6",
        "1250.4",
        "22",  # events of 10 µs or more
        "2",
        "1",
        "0.018",  # 1_757_940 ns of 10.000012345 s
        "2625",  # 2504 + 118 + 3 + 0
        "LOC=2504",
        "36=118",
        "3.0",
        "12",
    ]
    assert _row(text, 2)[:3] == ["2", "iso", "nohz"]
    assert text.index("\n  1 ") < text.index("\n  2 ")


def test_unknown_context_shows_a_dash() -> None:
    row = _row(_plain(jitter_table(host("lab-1", oslat_cpu(), backend="oslat"), None)), 1)
    assert row[-3:] == ["36=118", "-", "-"]


def test_verdicts_show_pass_or_fail_with_the_failing_rules() -> None:
    cpus = (c_cpu(), quiet_cpu(2, events=(STALL,)))
    text = _plain(jitter_table(host("lab-1", *cpus), [FAILED_CPU1, PASSED_CPU2]))
    assert _row(text, 1)[-5:] == ["FAIL", "max_us", "1250.4", ">", "50"]
    assert _row(text, 2)[-1] == "PASS"
    assert "events_over_us.100 unknown" in text
    assert "p99_us" not in text  # passed rules are not listed


def test_a_cpu_without_verdict_shows_a_dash() -> None:
    text = _plain(jitter_table(host("lab-1", c_cpu()), [PASSED_CPU2]))
    assert _row(text, 1)[-1] == "-"


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("unreachable", "ssh: connect to host db-7 port 22: No route to host"),
        ("refused", "SCHED_FIFO refused: RT throttling is on"),
        ("failed", "probe exited with status 4"),
    ],
)
def test_a_host_error_replaces_the_table(kind: str, message: str) -> None:
    text = _plain(jitter_table(host("db-7", error=message, error_kind=kind), None))
    assert f"{kind}: {message}" in text
    assert "loop ns" not in text


def test_notes_and_dropped_events_are_shown() -> None:
    cpu = replace(c_cpu(), dropped=1200)
    text = _plain(jitter_table(host("lab-1", cpu, notes=("RT throttling was off",)), None))
    assert "RT throttling was off" in text
    assert "cpu 1: 1200 of 24 events not kept (probe buffer full)" in text


def test_a_host_with_no_cpu() -> None:
    assert "no CPU was probed" in _plain(jitter_table(host("lab-1"), None))


def test_fleet_summary_counts_hosts() -> None:
    hosts = [
        host("lab-1", c_cpu()),
        host("lab-2", quiet_cpu(2)),
        UNREACHABLE,
        host("db-8", error="SCHED_FIFO refused", error_kind="refused"),
        host("db-9", error="probe crashed", error_kind="failed"),
    ]
    verdicts = {"lab-1": [FAILED_CPU1], "lab-2": [PASSED_CPU2]}
    assert _plain(jitter_summary(hosts, verdicts)).strip() == (
        "5 host(s): 2 measured, 1 passed, 1 failed, 1 unreachable, 1 refused, 1 failed to probe"
    )
    assert _plain(jitter_summary(hosts[:3], {})).strip() == "3 host(s): 2 measured, 1 unreachable"


def test_compare_rows_are_the_changes_per_metric() -> None:
    before = host("lab-1", c_cpu())
    after = host("lab-1", quiet_cpu(1, events=(STALL, Event(2_000_000, 6_000))))
    rows = {row.metric: row for row in compare_rows(before, after)}
    assert list(rows) == [
        "events/s",
        "p99 µs",
        "p99.9 µs",
        "max µs",
        "≥10µs",
        "interrupted %",
        "loop ns",
    ]
    assert all(row.cpu == 1 for row in rows.values())
    # 24 events in 10.000012345 s, then 2 in 10 s.
    events = rows["events/s"]
    assert (events.before, events.after) == pytest.approx((2.4, 0.2), rel=1e-5)
    assert events.change == pytest.approx(-2.2, rel=1e-5)
    assert events.change_pct == pytest.approx(-91.6667, rel=1e-5)
    assert events.direction == "better"
    # max 1250.4 µs, then 12.14 µs: -1238.26 µs, -99.029 %.
    longest = rows["max µs"]
    assert (longest.before, longest.after) == pytest.approx((1250.4, 12.14))
    assert longest.change == pytest.approx(-1238.26)
    assert longest.change_pct == pytest.approx(-99.0291, abs=1e-4)
    # 22 events of 10 µs or more, then 1 (12.14 µs; 6 µs is shorter).
    assert (rows["≥10µs"].before, rows["≥10µs"].after, rows["≥10µs"].change) == (22, 1, -21)
    # 1_757_940 ns of 10.000012345 s, then 18_140 ns of 10 s.
    interrupted = rows["interrupted %"]
    assert (interrupted.before, interrupted.after) == pytest.approx(
        (0.0175794, 0.0001814), rel=1e-5
    )
    # 20.74691 ns per loop, then 10 s / 483_000_000 = 20.70393 ns: slightly faster sampling.
    loop = rows["loop ns"]
    assert loop.change == pytest.approx(-0.042980, abs=1e-6)
    assert loop.direction == "better"


def test_compare_rows_without_events_or_from_zero() -> None:
    nothing = CompareRow(1, "p99 µs", 15.0, None)
    assert (nothing.change, nothing.change_pct, nothing.direction) == (None, None, "better")
    appeared = CompareRow(1, "p99 µs", None, 15.0)
    assert appeared.direction == "worse"
    from_zero = CompareRow(1, "≥10µs", 0, 3)
    assert (from_zero.change, from_zero.change_pct, from_zero.direction) == (3, None, "worse")
    assert CompareRow(1, "max µs", 12.0, 12.0).direction == "same"
    assert CompareRow(1, "max µs", None, None).direction == "same"


def test_compare_table_pairs_cpus_and_lists_the_rest() -> None:
    before = host("lab-1", c_cpu(), quiet_cpu(2))
    after = host("lab-1", quiet_cpu(1, events=(STALL,)), quiet_cpu(3))
    rows = compare_rows(before, after)
    assert {row.cpu for row in rows} == {1}
    text = _plain(compare_table(before, after))
    assert text.splitlines()[0] == "lab-1  before (c, 10s) → after (c, 10s)"
    assert _metric_line(text, "events/s") == [
        "1",
        "events/s",
        "2.40",
        "0.10",
        "-2.30",
        "(-95.8%)",
        "↓",
        "better",
    ]
    assert _metric_line(text, "max µs") == [
        "max",
        "µs",
        "1250.4",
        "12.1",
        "-1238.3",
        "(-99.0%)",
        "↓",
        "better",
    ]
    assert "CPU 2 probed only before" in text
    assert "CPU 3 probed only after" in text


def test_compare_table_shows_worse_and_missing_values() -> None:
    before = host("lab-1", quiet_cpu(1))
    after = host("lab-1", quiet_cpu(1, events=(STALL,)))
    text = _plain(compare_table(before, after))
    # No event before: no max to subtract from, and any event is worse.
    assert _metric_line(text, "max µs")[-4:] == ["-", "12.1", "↑", "worse"]
    assert _metric_line(text, "≥10µs")[-5:] == ["0", "1", "+1", "↑", "worse"]
    assert _metric_line(text, "loop ns")[-4:] == ["+0.00", "(+0.0%)", "=", "same"]


def test_compare_warns_when_runs_are_not_comparable() -> None:
    before = host("lab-1", c_cpu())
    after = host(
        "lab-1",
        oslat_cpu(),
        backend="oslat",
        settings=replace(SETTINGS, threshold_ns=10_000),
        hypervisor="kvm",
    )
    text = _plain(compare_table(before, after))
    assert "thresholds differ (5µs before, 10µs after): event counts are not comparable" in text
    assert "backends differ (c before, oslat after)" in text
    assert "on a VM (kvm)" in text


def test_compare_with_a_host_error() -> None:
    text = _plain(compare_table(host("db-7", c_cpu()), UNREACHABLE))
    assert "after: unreachable: ssh: connect to host db-7" in text
    assert "metric" not in text


def test_compare_fleet_matches_hosts_by_name() -> None:
    before = [host("lab-1", c_cpu()), host("lab-2", c_cpu())]
    after = [host("lab-3", c_cpu()), host("lab-1", quiet_cpu(1))]
    text = _plain(compare_fleet(before, after))
    assert text.count("before (c, 10s) → after") == 1
    assert text.startswith("lab-1 ")
    assert "measured only before: lab-2" in text
    assert "measured only after: lab-3" in text
