"""rt-tests' oslat as a backend: its ``--json`` output, and one CPU's result from it.

oslat keeps no event list, only a histogram of every loop: bucket ``k`` counts the loops that
took from ``k - 1`` to ``k`` us (the last bucket also holds every longer one), and ``max`` is
the longest loop rounded up to whole us. So its events carry no timestamps and its durations
are known to the microsecond.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from quietcore.probes.result import CpuContext, CpuJitter
from quietcore.probes.stats import NS_PER_S, NS_PER_US, stats_from_histogram


class OslatFormatError(ValueError):
    """The text is not oslat's JSON, or lacks a field quietcore needs."""


@dataclass(frozen=True)
class OslatThread:
    """One measuring thread of an oslat run (oslat runs one per CPU)."""

    cpu: int
    duration_ns: int  # oslat prints it to the millisecond
    loops: int  # every loop measured: the histogram's total
    max_ns: int
    histogram_us: Mapping[int, int]  # bucket upper bound in us -> loops


def _without_stray_colons(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # rt-tests 2.4 writes some keys with the colon of its text output ("cmdline:").
    return {key.rstrip(":"): value for key, value in pairs}


def _number(fields: Mapping[str, Any], name: str, where: str) -> int | float:
    if name not in fields:
        raise OslatFormatError(f"oslat JSON: {where} has no {name!r}")
    value = fields[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise OslatFormatError(f"oslat JSON: {where} {name!r} is not a number >= 0: {value!r}")
    return value


def _integer(fields: Mapping[str, Any], name: str, where: str) -> int:
    value = _number(fields, name, where)
    if not isinstance(value, int):
        raise OslatFormatError(f"oslat JSON: {where} {name!r} is not an integer: {value!r}")
    return value


def _histogram(fields: Mapping[str, Any], where: str) -> dict[int, int]:
    raw = fields.get("histogram")
    if not isinstance(raw, dict):
        raise OslatFormatError(f"oslat JSON: {where} has no 'histogram' object")
    histogram = {}
    for key in raw:
        if not key.isdigit() or int(key) < 1:
            raise OslatFormatError(f"oslat JSON: {where} histogram key {key!r} is not a bucket")
        histogram[int(key)] = _integer(raw, key, f"{where} histogram")
    return dict(sorted(histogram.items()))


def _thread(fields: Any, where: str) -> OslatThread:
    if not isinstance(fields, dict):
        raise OslatFormatError(f"oslat JSON: {where} is not an object")
    histogram = _histogram(fields, where)
    return OslatThread(
        cpu=_integer(fields, "cpu", where),
        duration_ns=round(_number(fields, "duration", where) * NS_PER_S),
        loops=sum(histogram.values()),
        max_ns=_integer(fields, "max", where) * NS_PER_US,
        histogram_us=histogram,
    )


def parse_oslat_json(text: str) -> list[OslatThread]:
    """The threads of an oslat ``--json`` file, by oslat's thread number."""
    try:
        document = json.loads(text, object_pairs_hook=_without_stray_colons)
    except json.JSONDecodeError as problem:
        raise OslatFormatError(f"oslat JSON: not JSON ({problem})") from None
    threads = document.get("thread") if isinstance(document, dict) else None
    if not isinstance(threads, dict):
        raise OslatFormatError("oslat JSON: no 'thread' object")
    if not all(key.isdigit() for key in threads):
        raise OslatFormatError(f"oslat JSON: thread keys are not numbers: {sorted(threads)}")
    return [_thread(threads[key], f"thread {key}") for key in sorted(threads, key=int)]


def oslat_cpu_jitter(thread: OslatThread, threshold_ns: int, context: CpuContext) -> CpuJitter:
    stats, events_histogram = stats_from_histogram(
        thread.histogram_us,
        threshold_ns=threshold_ns,
        max_ns=thread.max_ns,
        run_ns=thread.duration_ns,
    )
    return CpuJitter(
        cpu=thread.cpu,
        backend="oslat",
        duration_ns=thread.duration_ns,
        loops=thread.loops,
        threshold_ns=threshold_ns,
        stats=stats,
        histogram_us=events_histogram,
        # Only a histogram: one Event per counted loop would be millions of objects saying
        # no more than the histogram does.
        events=(),
        dropped=0,
        context=context,
    )
