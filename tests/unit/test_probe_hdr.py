"""The HdrHistogram log, decoded by HdrHistogram_py (``hdrhistogram``, an independent
implementation of the format): what it reads back must be what HdrHistogram itself records
from the same durations."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader
from hypothesis import given
from hypothesis import strategies as st
from tests.unit.jitter_captures import OSLAT_B1024, RAW_C, RAW_PYTHON, oslat_cpu, probe_cpu

from quietcore.probes.hdr import (
    HIGHEST_TRACKABLE_NS,
    SIGNIFICANT_DIGITS,
    counts_index,
    encode_histogram,
    hdr_log,
    interval_tag,
)
from quietcore.probes.result import CpuJitter, HostJitter, RunSettings
from quietcore.probes.stats import Distribution, event_distribution, event_stats

STARTED = datetime(2026, 11, 23, 20, 36, 49, tzinfo=UTC)


def _recorded(durations: Distribution) -> Any:
    """The histogram HdrHistogram_py itself builds from these durations."""
    histogram = HdrHistogram(1, HIGHEST_TRACKABLE_NS, SIGNIFICANT_DIGITS)
    for value, count in durations:
        histogram.record_value(value, count)
    return histogram


def _host(*cpus: CpuJitter, name: str = "@local") -> HostJitter:
    return HostJitter(name, RunSettings(3 * 10**9, 5000, "auto", None), cpus=cpus)


def _read_log(tmp_path: Path, text: str) -> list[Any]:
    path = tmp_path / "jitter.hlog"
    path.write_text(text)
    reader = HistogramLogReader(str(path), _recorded([]))
    intervals = []
    while (interval := reader.get_next_interval_histogram()) is not None:
        intervals.append(interval)
    reader.close()
    return intervals


@pytest.mark.parametrize(
    "cpu",
    [probe_cpu(RAW_C), probe_cpu(RAW_PYTHON), oslat_cpu(OSLAT_B1024)],
    ids=["c", "python", "oslat"],
)
def test_decoded_equals_recorded(cpu: CpuJitter) -> None:
    durations = event_distribution(cpu)
    decoded = HdrHistogram.decode(encode_histogram(durations))
    assert decoded.equals(_recorded(durations))
    assert decoded.get_total_count() == cpu.stats.count
    assert decoded.values_are_equivalent(decoded.get_max_value(), cpu.stats.max_ns)
    values = sorted(value for value, count in durations for _ in range(count))
    for percentile in (50, 90, 99, 99.9):
        # HdrHistogram's rank rounds p * n / 100 to the nearest, where nearest-rank (quietcore's
        # percentiles) rounds it up: compare at its rank.
        rank = max(1, int(percentile * len(values) / 100 + 0.5))
        at_rank = decoded.get_value_at_percentile(percentile)
        assert decoded.values_are_equivalent(at_rank, values[rank - 1])


def test_an_empty_histogram() -> None:
    decoded = HdrHistogram.decode(encode_histogram([]))
    assert decoded.get_total_count() == 0


@given(st.lists(st.tuples(st.integers(1, 10**12), st.integers(1, 10**6)), max_size=50))
def test_any_durations_round_trip(pairs: list[tuple[int, int]]) -> None:
    durations = sorted(pairs)
    assert HdrHistogram.decode(encode_histogram(durations)).equals(_recorded(durations))


@given(st.integers(1, HIGHEST_TRACKABLE_NS))
def test_counts_index_is_hdrhistograms(value: int) -> None:
    assert counts_index(value) == _recorded([]).get_counts_array_index(value)


def test_a_value_beyond_an_hour_widens_the_range() -> None:
    durations = [(2 * HIGHEST_TRACKABLE_NS, 1)]
    decoded = HdrHistogram.decode(encode_histogram(durations))
    assert decoded.values_are_equivalent(decoded.get_max_value(), 2 * HIGHEST_TRACKABLE_NS)


def test_log_read_by_hdrhistogram(tmp_path: Path) -> None:
    c_cpu = probe_cpu(RAW_C)
    oslat = replace(oslat_cpu(OSLAT_B1024), cpu=3)
    cut = probe_cpu(RAW_PYTHON, keep=50)
    text = hdr_log([_host(c_cpu, oslat), _host(name="unreachable"), _host(cut, name="b")], STARTED)
    intervals = _read_log(tmp_path, text)
    assert [interval.get_tag() for interval in intervals] == [
        "@local/cpu1",
        "@local/cpu3",
        "b/cpu1",
    ]
    assert [interval.get_total_count() for interval in intervals] == [567, 1066, 50]
    assert intervals[0].equals(_recorded(event_distribution(c_cpu)))
    # Every interval starts at the log's start, and lasts its CPU's run.
    start_ms = STARTED.timestamp() * 1000
    assert {interval.get_start_time_stamp() for interval in intervals} == {start_ms}
    assert intervals[1].get_end_time_stamp() == pytest.approx(start_ms + 2997)


def test_log_lines() -> None:
    lines = hdr_log([_host(oslat_cpu(OSLAT_B1024))], STARTED).splitlines()
    assert lines[1] == "#[Histogram log format version 1.3]"
    assert lines[2].startswith("#[StartTime: 1795466209.000 (seconds since epoch), 2026-11-23")
    assert lines[3] == "#[BaseTime: 1795466209.000 (seconds since epoch)]"
    assert lines[4] == (
        '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"'
    )
    # Interval_Max in milliseconds: oslat's max of 4027 us.
    assert lines[5].startswith("Tag=@local/cpu1,0.000,2.997,4.027,HIST")


def test_dropped_events_are_noted() -> None:
    text = hdr_log([_host(probe_cpu(RAW_C, keep=100))], STARTED)
    assert "#[@local/cpu1: 467 of 567 events were not kept by the probe and are missing]" in text


def test_a_cpu_without_events() -> None:
    quiet = replace(
        probe_cpu(RAW_C),
        stats=event_stats([], total=0, interrupted_ns=0, max_ns=0, run_ns=10**9),
        events=(),
        histogram_us={},
    )
    lines = hdr_log([_host(quiet)], STARTED).splitlines()
    assert lines[-1].startswith("Tag=@local/cpu1,0.000,1.500,0.000,HIST")


def test_tags_hold_no_delimiters() -> None:
    assert interval_tag("root@host a,b", 2) == "root@host_a_b/cpu2"
