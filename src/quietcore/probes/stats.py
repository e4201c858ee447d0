"""Statistics of one CPU's events (the gaps above the threshold), from any backend.

Percentiles are nearest-rank: the p-th percentile of n event durations is the
``ceil(p / 100 * n)``-th smallest (1-based), so it is always a duration that was measured,
never an interpolation between two. An event's histogram bucket is its duration rounded up to
whole microseconds (14.2 us lands in 15), as rt-tests counts.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from itertools import accumulate
from math import ceil

from quietcore.probes.raw import RawCpuRun
from quietcore.probes.result import (
    OVER_THRESHOLDS_NS,
    CpuContext,
    CpuJitter,
    EventStats,
)

NS_PER_US = 1000
NS_PER_S = 1_000_000_000
# The percentiles of EventStats, in its order; exact, so that no rank suffers float rounding.
PERCENTILES = (Fraction(50), Fraction(90), Fraction(99), Fraction(999, 10), Fraction(9999, 100))

# Durations with how many events had each one, ascending by duration.
Distribution = list[tuple[int, int]]


def bucket_us(duration_ns: int) -> int:
    return -(-duration_ns // NS_PER_US)


def histogram_us(durations_ns: Iterable[int]) -> dict[int, int]:
    return dict(sorted(Counter(bucket_us(duration) for duration in durations_ns).items()))


def count_at_least(durations_ns: Iterable[int], limit_ns: int) -> int:
    return sum(1 for duration in durations_ns if duration >= limit_ns)


def histogram_count_at_least(hist_us: Mapping[int, int], limit_ns: int) -> int:
    """Events certainly at least ``limit_ns`` long: those of buckets whose whole range,
    from ``k - 1`` to ``k`` us, lies at or above it."""
    return sum(count for k, count in hist_us.items() if (k - 1) * NS_PER_US >= limit_ns)


def events_at_least(cpu: CpuJitter, limit_ns: int) -> int:
    """How many of the CPU's events lasted at least ``limit_ns``: counted on the kept events
    when there are any (a lower bound when the probe dropped some), else on the histogram
    (oslat keeps nothing else)."""
    if cpu.events:
        return count_at_least((event.duration_ns for event in cpu.events), limit_ns)
    return histogram_count_at_least(cpu.histogram_us, limit_ns)


def distribution_of(durations_ns: Iterable[int]) -> Distribution:
    return sorted(Counter(durations_ns).items())


def event_distribution(cpu: CpuJitter) -> Distribution:
    """The event durations known for the CPU: the kept events when there are any, else the
    histogram's (for oslat, to the microsecond)."""
    if cpu.events:
        return distribution_of(event.duration_ns for event in cpu.events)
    return histogram_distribution(cpu.histogram_us, cpu.stats.max_ns or 0)


def histogram_distribution(hist_us: Mapping[int, int], max_ns: int) -> Distribution:
    """The durations a bucketed histogram stands for: each event at its bucket's upper bound,
    except the longest, which is ``max_ns`` (oslat measures it apart, and its last bucket
    also holds every longer gap)."""
    distribution = [(k * NS_PER_US, count) for k, count in sorted(hist_us.items()) if count]
    if not distribution:
        return distribution
    top_ns, top_count = distribution.pop()
    if top_count > 1:
        distribution.append((top_ns, top_count - 1))
    distribution.append((max(max_ns, top_ns), 1))
    return distribution


def _stats(
    distribution: Distribution,
    *,
    total: int,
    interrupted_ns: int,
    max_ns: int,
    over_ns: Mapping[int, int],
    run_ns: int,
) -> EventStats:
    cumulative = list(accumulate(count for _, count in distribution))
    kept = cumulative[-1] if cumulative else 0

    def nearest_rank(percentile: Fraction) -> int | None:
        if not kept:
            return None
        rank = max(1, ceil(percentile * kept / 100))
        return distribution[bisect_left(cumulative, rank)][0]

    p50, p90, p99, p99_9, p99_99 = (nearest_rank(percentile) for percentile in PERCENTILES)
    return EventStats(
        count=total,
        rate_per_s=total * NS_PER_S / run_ns if run_ns else 0.0,
        min_ns=distribution[0][0] if distribution else None,
        p50_ns=p50,
        p90_ns=p90,
        p99_ns=p99,
        p99_9_ns=p99_9,
        p99_99_ns=p99_99,
        max_ns=max_ns if total else None,
        over_ns=dict(over_ns),
        interrupted_ns=interrupted_ns,
        interrupted_pct=interrupted_ns * 100 / run_ns if run_ns else 0.0,
    )


def event_stats(
    durations_ns: Sequence[int], *, total: int, interrupted_ns: int, max_ns: int, run_ns: int
) -> EventStats:
    """Statistics of a run whose probe counted ``total`` events and kept ``durations_ns``.

    count, rate, interrupted time and max come from the probe's totals, which include events
    it could not keep. Percentiles, min and the ``over_ns`` counts come from the kept events
    only: when the probe dropped some (``total > len(durations_ns)``) the percentiles
    describe the first events of the run and the ``over_ns`` counts are lower bounds.
    """
    if len(durations_ns) > total:
        raise ValueError(f"{len(durations_ns)} events kept but only {total} counted")
    return _stats(
        distribution_of(durations_ns),
        total=total,
        interrupted_ns=interrupted_ns,
        max_ns=max_ns,
        over_ns={limit: count_at_least(durations_ns, limit) for limit in OVER_THRESHOLDS_NS},
        run_ns=run_ns,
    )


def stats_from_histogram(
    hist_us: Mapping[int, int], *, threshold_ns: int, max_ns: int, run_ns: int
) -> tuple[EventStats, dict[int, int]]:
    """Statistics of a run known only as a histogram of every loop (oslat): bucket ``k``
    holds the loops that took from ``k - 1`` to ``k`` us.

    Only buckets lying wholly above the threshold count as events; each event lasts its
    bucket's upper bound, except the longest, which lasts ``max_ns``. Returns the statistics
    and the histogram of the events alone.
    """
    events = {
        k: count
        for k, count in sorted(hist_us.items())
        if count and (k - 1) * NS_PER_US >= threshold_ns
    }
    distribution = histogram_distribution(events, max_ns)
    stats = _stats(
        distribution,
        total=sum(events.values()),
        interrupted_ns=sum(duration * count for duration, count in distribution),
        max_ns=distribution[-1][0] if distribution else 0,
        over_ns={limit: histogram_count_at_least(events, limit) for limit in OVER_THRESHOLDS_NS},
        run_ns=run_ns,
    )
    return stats, events


def cpu_jitter(raw: RawCpuRun, context: CpuContext) -> CpuJitter:
    """One CPU's result from the C or Python probe's output."""
    durations = [event.duration_ns for event in raw.events]
    return CpuJitter(
        cpu=raw.cpu,
        backend=raw.backend,
        duration_ns=raw.duration_ns,
        loops=raw.loops,
        threshold_ns=raw.threshold_ns,
        stats=event_stats(
            durations,
            total=raw.events_total,
            interrupted_ns=raw.interrupted_ns,
            max_ns=raw.max_ns,
            run_ns=raw.duration_ns,
        ),
        histogram_us=histogram_us(durations),
        events=raw.events,
        dropped=raw.dropped,
        context=context,
    )
