"""Jitter results for the view and plot tests, built from realistic numbers.

``c_cpu`` is 24 events of a 10 s C-probe run on the untuned CPU 1 of the Firecracker test VM
(timer ticks around 15 µs, a few longer gaps, one 1.25 ms stall). ``oslat_cpu`` is the real
oslat capture tests/data/jitter/oslat-local-cpu1-b1024.json, keeping the buckets above the
5 µs threshold. Percentiles are written by hand; counts and sums follow from the events.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from quietcore.probes.result import (
    OVER_THRESHOLDS_NS,
    CpuContext,
    CpuJitter,
    Event,
    EventStats,
    HostJitter,
    RunSettings,
)

DATA = Path(__file__).parent.parent / "data" / "jitter"
THRESHOLD_NS = 5_000
SETTINGS = RunSettings(
    duration_ns=10_000_000_000,
    threshold_ns=THRESHOLD_NS,
    backend_requested="auto",
    fifo_priority=90,
)

C_EVENTS = tuple(
    Event(offset, duration)
    for offset, duration in (
        (180_412_337, 15_230),
        (612_004_118, 14_870),
        (1_004_551_920, 16_020),
        (1_412_889_001, 22_410),
        (1_996_301_774, 15_880),
        (2_401_117_052, 6_120),
        (2_788_420_906, 17_340),
        (3_005_118_443, 130_210),
        (3_399_870_215, 15_410),
        (3_812_546_009, 28_900),
        (4_203_377_781, 16_770),
        (4_611_090_462, 15_050),
        (5_000_912_337, 19_880),
        (5_402_665_128, 14_990),
        (5_813_200_004, 31_650),
        (6_205_771_245, 15_660),
        (6_600_432_871, 8_410),
        (7_012_554_690, 16_240),
        (7_407_880_321, 1_250_400),
        (7_801_223_476, 15_120),
        (8_204_659_812, 23_770),
        (8_611_009_345, 15_940),
        (9_003_877_120, 14_660),
        (9_408_212_763, 17_010),
    )
)


def histogram_of(durations_ns: list[int]) -> dict[int, int]:
    """Whole-µs upper bounds, as rt-tests counts: 14.2 µs lands in 15."""
    histogram: dict[int, int] = {}
    for duration in durations_ns:
        bucket = -(-duration // 1000)
        histogram[bucket] = histogram.get(bucket, 0) + 1
    return histogram


def context(**changes: object) -> CpuContext:
    base = CpuContext(
        interrupts={"LOC": 2504, "36": 118, "RES": 3, "CAL": 0},
        softirqs={"TIMER": 2500, "RCU": 12},
        steal_ms=3.0,
        voluntary_switches=0,
        involuntary_switches=12,
        isolated=True,
        nohz_full=False,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def c_cpu() -> CpuJitter:
    durations = [event.duration_ns for event in C_EVENTS]
    duration_ns = 10_000_012_345
    interrupted = sum(durations)
    stats = EventStats(
        count=len(durations),
        rate_per_s=len(durations) / (duration_ns / 1e9),
        min_ns=min(durations),
        p50_ns=15_910,
        p90_ns=28_900,
        p99_ns=992_800,
        p99_9_ns=1_224_600,
        p99_99_ns=1_247_800,
        max_ns=max(durations),
        over_ns={limit: sum(d >= limit for d in durations) for limit in OVER_THRESHOLDS_NS},
        interrupted_ns=interrupted,
        interrupted_pct=interrupted / duration_ns * 100,
    )
    return CpuJitter(
        cpu=1,
        backend="c",
        duration_ns=duration_ns,
        loops=482_000_000,
        threshold_ns=THRESHOLD_NS,
        stats=stats,
        histogram_us=histogram_of(durations),
        events=C_EVENTS,
        dropped=0,
        context=context(),
    )


def oslat_cpu() -> CpuJitter:
    thread = json.loads((DATA / "oslat-local-cpu1-b1024.json").read_text())["thread"]["0"]
    threshold_us = THRESHOLD_NS // 1000
    histogram = {int(k): v for k, v in thread["histogram"].items() if int(k) > threshold_us}
    count = sum(histogram.values())
    duration_ns = round(thread["duration"] * 1e9)
    interrupted = sum(bucket * n for bucket, n in histogram.items()) * 1000
    stats = EventStats(
        count=count,
        rate_per_s=count / thread["duration"],
        min_ns=7_000,
        p50_ns=16_000,
        p90_ns=25_000,
        p99_ns=50_000,
        p99_9_ns=1_024_000,
        p99_99_ns=4_027_000,
        max_ns=thread["max"] * 1000,
        over_ns={
            limit: sum(n for bucket, n in histogram.items() if bucket * 1000 > limit)
            for limit in OVER_THRESHOLDS_NS
        },
        interrupted_ns=interrupted,
        interrupted_pct=interrupted / duration_ns * 100,
    )
    return CpuJitter(
        cpu=1,
        backend="oslat",
        duration_ns=duration_ns,
        loops=150_229_427,
        threshold_ns=THRESHOLD_NS,
        stats=stats,
        histogram_us=histogram,
        events=(),
        dropped=0,
        context=context(steal_ms=None, voluntary_switches=None, involuntary_switches=None),
    )


def quiet_cpu(cpu: int, *, events: tuple[Event, ...] = ()) -> CpuJitter:
    """A tuned CPU: ``events`` only (none by default), 10 s."""
    durations = [event.duration_ns for event in events]
    duration_ns = 10_000_000_000
    stats = EventStats(
        count=len(durations),
        rate_per_s=len(durations) / 10,
        min_ns=min(durations, default=None),
        p50_ns=sorted(durations)[len(durations) // 2] if durations else None,
        p90_ns=max(durations, default=None),
        p99_ns=max(durations, default=None),
        p99_9_ns=max(durations, default=None),
        p99_99_ns=max(durations, default=None),
        max_ns=max(durations, default=None),
        over_ns={limit: sum(d >= limit for d in durations) for limit in OVER_THRESHOLDS_NS},
        interrupted_ns=sum(durations),
        interrupted_pct=sum(durations) / duration_ns * 100,
    )
    return CpuJitter(
        cpu=cpu,
        backend="c",
        duration_ns=duration_ns,
        loops=483_000_000,
        threshold_ns=THRESHOLD_NS,
        stats=stats,
        histogram_us=histogram_of(durations),
        events=events,
        dropped=0,
        context=context(interrupts={"LOC": 10}, involuntary_switches=0, nohz_full=True),
    )


def host(name: str, *cpus: CpuJitter, **changes: object) -> HostJitter:
    base = HostJitter(
        host=name,
        settings=SETTINGS,
        cpus=cpus,
        backend="c",
        backend_reason="auto: gcc found, C probe built on the host",
        kernel="6.18.44-fc-v669",
        elapsed_s=11.4,
    )
    return replace(base, **changes)  # type: ignore[arg-type]
