"""/proc/interrupts, /proc/softirqs and /proc/stat read before and after an oslat run on CPU 1
of this VM (tests/data/jitter/*-local-{before,after}.txt)."""

from __future__ import annotations

import pytest
from tests.unit.jitter_captures import capture, local_deltas

from quietcore.probes.context import (
    ProcFormatError,
    cpu_context,
    interrupt_deltas,
    parse_per_cpu_counts,
    softirq_deltas,
    steal_ms,
)


def _pair(name: str) -> tuple[str, str]:
    return capture(f"{name}-local-before.txt"), capture(f"{name}-local-after.txt")


def test_interrupts_by_hand() -> None:
    before, after = _pair("interrupts")
    deltas = interrupt_deltas(before, after, [0, 1])
    # CPU 1: LOC 1334911 - 1333902, virtio1-req.0 (36) 252155 - 252146, virtio3-tx (42)
    # 11231 - 11228, virtio0-stats (31) 1388 - 1387, RES 322027 - 322021, CAL, TLB.
    assert deltas[1] == {"31": 1, "36": 9, "42": 3, "LOC": 1009, "RES": 6, "CAL": 2, "TLB": 1}
    assert deltas[0] == {"32": 1, "LOC": 126, "RES": 1, "CAL": 144, "TLB": 3}


def test_interrupt_lines_and_columns() -> None:
    counts = parse_per_cpu_counts(capture("interrupts-local-after.txt"), "/proc/interrupts")
    assert counts.cpus == (0, 1)
    # The description after the counts is not read as a count.
    assert counts.counts["24"] == {0: 1, 1: 0}
    assert counts.counts["HYP"] == {0: 78, 1: 42}
    # ERR and MIS are machine-wide: one count for two columns.
    assert "ERR" not in counts.counts
    assert "MIS" not in counts.counts


def test_softirqs_by_hand() -> None:
    before, after = _pair("softirqs")
    deltas = softirq_deltas(before, after, [1])
    assert deltas == {1: {"TIMER": 24, "BLOCK": 9, "SCHED": 72, "RCU": 35}}


def test_steal_of_the_capture_is_zero() -> None:
    before, after = _pair("stat")
    assert steal_ms(before, after, [0, 1]) == {0: 0.0, 1: 0.0}


def test_steal_in_ticks() -> None:
    before, after = _pair("stat")
    # cpu1's steal column (the 8th value) goes from 205 to 212 ticks.
    stolen = after.replace("cpu1 215465 0 24346 448536 1213 0 379 205", "cpu1 1 1 1 1 1 1 1 212")
    assert steal_ms(before, stolen, [1]) == {1: 70.0}
    assert steal_ms(before, stolen, [1], user_hz=1000) == {1: 7.0}


def test_old_kernel_without_steal_is_unknown() -> None:
    before = "cpu  1 2 3 4 5 6 7\ncpu1 1 2 3 4 5 6 7\n"
    after = "cpu  1 2 3 4 5 6 9\ncpu1 1 2 3 4 5 6 9\n"
    assert steal_ms(before, after, [1]) == {}


def test_a_garbled_stat_line_is_refused() -> None:
    before, after = _pair("stat")
    with pytest.raises(ProcFormatError, match="the cpu1 line holds something not a count"):
        steal_ms(before, after.replace("cpu1 215465", "cpu1 21x465"), [1])


def test_a_source_registered_during_the_run_counts_from_zero() -> None:
    before, after = _pair("interrupts")
    added = after + " 99:          0          4   PCI-MSIX   0-edge      new-device\n"
    assert interrupt_deltas(before, added, [1])[1]["99"] == 4


def test_a_counter_that_went_down_is_left_out() -> None:
    before, after = _pair("interrupts")
    reset = after.replace("36:          0     252155", "36:          0          2")
    assert "36" not in interrupt_deltas(before, reset, [1])[1]


def test_an_offline_cpu_is_refused() -> None:
    before, after = _pair("interrupts")
    with pytest.raises(ProcFormatError, match="no column for CPU 2"):
        interrupt_deltas(before, after, [2])
    stat_before, stat_after = _pair("stat")
    with pytest.raises(ProcFormatError, match="no cpu2 line"):
        steal_ms(stat_before, stat_after, [2])


def test_a_file_without_header_is_refused() -> None:
    before, after = _pair("softirqs")
    with pytest.raises(ProcFormatError, match="/proc/softirqs: the first line"):
        softirq_deltas(before.split("\n", 1)[1], after, [1])
    with pytest.raises(ProcFormatError, match="/proc/interrupts"):
        interrupt_deltas("", "", [1])


def test_columns_of_a_host_with_a_cpu_offline() -> None:
    # CPU 1 offline: /proc/interrupts only has columns for online CPUs.
    text = "           CPU0       CPU2\n LOC:   10   20   Local timer interrupts\n"
    later = "           CPU0       CPU2\n LOC:   15   27   Local timer interrupts\n"
    assert interrupt_deltas(text, later, [2]) == {2: {"LOC": 7}}


def test_cpu_context() -> None:
    deltas = local_deltas()
    context = cpu_context(
        deltas, 1, isolated={1}, nohz_full=set(), voluntary_switches=0, involuntary_switches=17
    )
    assert context.interrupts["LOC"] == 1009
    assert context.softirqs["TIMER"] == 24
    assert context.steal_ms == 0.0
    assert (context.isolated, context.nohz_full) == (True, False)
    assert (context.voluntary_switches, context.involuntary_switches) == (0, 17)
    assert cpu_context(deltas, 0, isolated={1}, nohz_full={0}).nohz_full
