"""Event statistics on the real probe and oslat captures, checked against numbers computed here
independently (straight from the capture text or JSON)."""

from __future__ import annotations

import json
from decimal import Decimal
from math import ceil

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.unit.jitter_captures import (
    OSLAT_2S,
    OSLAT_B1024,
    RAW_C,
    RAW_PYTHON,
    capture,
    event_durations,
    oslat_cpu,
    probe_cpu,
)

from quietcore.probes.stats import (
    NS_PER_US,
    bucket_us,
    event_distribution,
    event_stats,
    events_at_least,
    histogram_distribution,
    histogram_us,
    stats_from_histogram,
)


def _nearest_rank(values: list[int], percentile: str) -> int:
    ordered = sorted(values)
    return ordered[max(1, ceil(Decimal(percentile) * len(ordered) / 100)) - 1]


def _oslat_histogram(name: str) -> tuple[dict[int, int], int]:
    thread = json.loads(capture(name))["thread"]["0"]
    return {int(k): v for k, v in thread["histogram"].items()}, thread["max"]


# --- Nearest-rank percentiles ----------------------------------------------------------------


def test_percentiles_of_one_to_a_hundred() -> None:
    stats = event_stats(
        [us * NS_PER_US for us in range(100, 0, -1)],
        total=100,
        interrupted_ns=5050 * NS_PER_US,
        max_ns=100 * NS_PER_US,
        run_ns=10**9,
    )
    assert (stats.min_ns, stats.p50_ns, stats.p90_ns, stats.p99_ns) == (1000, 50000, 90000, 99000)
    assert (stats.p99_9_ns, stats.p99_99_ns, stats.max_ns) == (100000, 100000, 100000)
    assert stats.over_ns == {10_000: 91, 100_000: 1, 1_000_000: 0}
    assert stats.rate_per_s == 100.0
    assert stats.interrupted_pct == pytest.approx(0.505)


def test_a_run_without_events() -> None:
    stats = event_stats([], total=0, interrupted_ns=0, max_ns=0, run_ns=10**9)
    assert stats.count == 0
    assert stats.rate_per_s == 0.0
    assert stats.min_ns is stats.p50_ns is stats.p99_99_ns is stats.max_ns is None
    assert stats.over_ns == {10_000: 0, 100_000: 0, 1_000_000: 0}
    assert stats.interrupted_pct == 0.0


def test_more_kept_than_counted_is_refused() -> None:
    with pytest.raises(ValueError, match="2 events kept but only 1 counted"):
        event_stats([6000, 7000], total=1, interrupted_ns=13000, max_ns=7000, run_ns=10**9)


@given(st.lists(st.integers(min_value=1, max_value=10**7), min_size=1, max_size=400))
def test_percentiles_are_nearest_rank(durations: list[int]) -> None:
    stats = event_stats(
        durations,
        total=len(durations),
        interrupted_ns=sum(durations),
        max_ns=max(durations),
        run_ns=10**9,
    )
    assert stats.min_ns == min(durations)
    assert stats.p50_ns == _nearest_rank(durations, "50")
    assert stats.p90_ns == _nearest_rank(durations, "90")
    assert stats.p99_ns == _nearest_rank(durations, "99")
    assert stats.p99_9_ns == _nearest_rank(durations, "99.9")
    assert stats.p99_99_ns == _nearest_rank(durations, "99.99")


# --- The C and Python probes ------------------------------------------------------------------


@pytest.mark.parametrize("name", [RAW_C, RAW_PYTHON])
def test_probe_capture(name: str) -> None:
    cpu = probe_cpu(name)
    durations = event_durations(name)
    assert cpu.stats.count == len(durations)
    assert cpu.stats.max_ns == max(durations)
    # The probe's own total; the C probe converts TSC ticks to ns once for the sum and once
    # per printed event, so the two may differ by a rounding per event.
    assert abs(cpu.stats.interrupted_ns - sum(durations)) <= len(durations)
    assert cpu.stats.p99_ns == _nearest_rank(durations, "99")
    assert cpu.stats.over_ns[10_000] == sum(1 for d in durations if d >= 10_000)
    assert sum(cpu.histogram_us.values()) == len(durations)
    assert cpu.has_timeline


def test_c_capture_by_hand() -> None:
    cpu = probe_cpu(RAW_C)
    assert (cpu.cpu, cpu.backend, cpu.duration_ns, cpu.loops) == (1, "c", 1_500_000_012, 153497864)
    assert cpu.stats.count == 567
    assert cpu.stats.max_ns == 130466
    assert cpu.stats.interrupted_ns == 10764949
    assert cpu.stats.rate_per_s == pytest.approx(378.0, abs=0.01)
    assert cpu.stats.interrupted_pct == pytest.approx(0.7177, abs=1e-4)
    assert cpu.loop_ns == pytest.approx(9.772, abs=1e-3)
    # The first captured event, 63085 ns, lands in the 64 us bucket.
    assert cpu.events[0].duration_ns == 63085
    assert cpu.histogram_us[64] >= 1
    assert cpu.context.involuntary_switches == 17


def test_dropped_events_keep_the_totals() -> None:
    full, cut = probe_cpu(RAW_C), probe_cpu(RAW_C, keep=100)
    assert cut.dropped == 467
    assert len(cut.events) == 100
    # Count, max and interrupted time are the probe's totals, over every event.
    assert cut.stats.count == full.stats.count
    assert cut.stats.max_ns == full.stats.max_ns
    assert cut.stats.interrupted_ns == full.stats.interrupted_ns
    # Percentiles and the over counts are those of the first 100 events.
    first = event_durations(RAW_C)[:100]
    assert cut.stats.p50_ns == _nearest_rank(first, "50")
    assert cut.stats.over_ns[10_000] == sum(1 for d in first if d >= 10_000)
    assert cut.stats.over_ns[10_000] <= full.stats.over_ns[10_000]


# --- Histograms and oslat ---------------------------------------------------------------------


def test_buckets_round_up_to_whole_microseconds() -> None:
    assert [bucket_us(ns) for ns in (1, 999, 1000, 1001, 14_200, 15_000, 15_001)] == [
        1,
        1,
        1,
        2,
        15,
        15,
        16,
    ]
    assert histogram_us([15_001, 14_200, 15_000, 1]) == {1: 1, 15: 2, 16: 1}


def test_oslat_events_above_5us_by_hand() -> None:
    # Buckets 6 to 32 of the capture (bucket 5 holds 4-5 us loops: not above 5 us):
    # 2+2+8+7+9+44+133+150+69+46+29+21+11+24+25+28+14+10+19+10+8+7+45.
    cpu = oslat_cpu(OSLAT_2S, threshold_ns=5000)
    assert cpu.stats.count == 721
    assert min(cpu.histogram_us) == 6
    assert cpu.stats.max_ns == 130_000


@pytest.mark.parametrize("name", [OSLAT_2S, OSLAT_B1024])
@pytest.mark.parametrize("threshold_us", [1, 5, 20, 100])
def test_oslat_stats_against_the_json(name: str, threshold_us: int) -> None:
    histogram, max_us = _oslat_histogram(name)
    events = {k: n for k, n in histogram.items() if k - 1 >= threshold_us}
    stats, kept = stats_from_histogram(
        histogram, threshold_ns=threshold_us * 1000, max_ns=max_us * 1000, run_ns=3 * 10**9
    )
    assert kept == events
    assert stats.count == sum(events.values())
    # Each event at its bucket's upper bound, the longest at oslat's max.
    values = sorted(k * 1000 for k, n in events.items() for _ in range(n))
    if values:
        values[-1] = max_us * 1000
    assert stats.max_ns == (values[-1] if values else None)
    assert stats.p50_ns == (_nearest_rank(values, "50") if values else None)
    assert stats.p99_9_ns == (_nearest_rank(values, "99.9") if values else None)
    assert stats.interrupted_ns == sum(values)
    assert stats.over_ns[100_000] == sum(n for k, n in events.items() if k > 100)


def test_oslat_overflow_bucket() -> None:
    # -b 1024: two loops of 1023 us or more, the longer 4027 us.
    cpu = oslat_cpu(OSLAT_B1024)
    assert cpu.histogram_us[1024] == 2
    assert cpu.stats.max_ns == 4_027_000
    assert cpu.stats.over_ns == {10_000: 1054, 100_000: 2, 1_000_000: 2}
    assert event_distribution(cpu)[-2:] == [(1_024_000, 1), (4_027_000, 1)]


def test_histogram_distribution_keeps_every_event() -> None:
    assert histogram_distribution({}, 0) == []
    assert histogram_distribution({7: 1}, 7000) == [(7000, 1)]
    assert histogram_distribution({7: 3, 32: 2}, 130_000) == [
        (7000, 3),
        (32_000, 1),
        (130_000, 1),
    ]


def test_events_at_least_uses_kept_events_else_the_histogram() -> None:
    probe = probe_cpu(RAW_C)
    durations = event_durations(RAW_C)
    assert events_at_least(probe, 20_000) == sum(1 for d in durations if d >= 20_000)
    oslat = oslat_cpu(OSLAT_B1024)
    # Bucket 20 holds 19-20 us loops: not certainly 20 us long.
    assert events_at_least(oslat, 20_000) == sum(
        n for k, n in oslat.histogram_us.items() if k >= 21
    )
