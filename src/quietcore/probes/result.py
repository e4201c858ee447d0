"""What a jitter probe measured: one ``CpuJitter`` per probed CPU, one ``HostJitter`` per host.

Every backend (the C probe, the Python probe, oslat) ends up in these types, so tables, JSON,
plots, HdrHistogram logs, gates and ``--compare`` never need to know which one ran. Times are
integer nanoseconds inside quietcore; reports convert to microseconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Backend = Literal["c", "python", "oslat"]
Requested = Literal["auto", "c", "python", "oslat"]
BACKENDS: tuple[Backend, ...] = ("c", "python", "oslat")

# Fixed "how many events were this long or longer" buckets every report shows.
OVER_THRESHOLDS_NS = (10_000, 100_000, 1_000_000)


@dataclass(frozen=True)
class Event:
    """One gap the spinning thread saw: it started ``offset_ns`` after the measurement began
    and lasted ``duration_ns``. ``offset_ns`` is None when the backend has no timestamps
    (oslat only keeps a histogram)."""

    offset_ns: int | None
    duration_ns: int


@dataclass(frozen=True)
class EventStats:
    """Statistics of the events (gaps above the threshold) of one CPU's run."""

    count: int
    rate_per_s: float
    # None when there was no event.
    min_ns: int | None
    p50_ns: int | None
    p90_ns: int | None
    p99_ns: int | None
    p99_9_ns: int | None
    p99_99_ns: int | None
    max_ns: int | None
    over_ns: Mapping[int, int]  # OVER_THRESHOLDS_NS -> events at least that long
    interrupted_ns: int  # sum of all event durations
    interrupted_pct: float  # interrupted_ns / run duration * 100


@dataclass(frozen=True)
class CpuContext:
    """What else happened on the CPU while the probe ran, read around the run."""

    interrupts: Mapping[str, int]  # /proc/interrupts line label ("LOC", "36") -> count delta
    softirqs: Mapping[str, int]  # /proc/softirqs name ("TIMER") -> count delta
    steal_ms: float | None  # /proc/stat steal time delta; None when unknown
    voluntary_switches: int | None  # the probe's own context switches; None when unknown
    involuntary_switches: int | None
    isolated: bool  # listed in /sys/devices/system/cpu/isolated
    nohz_full: bool  # listed in /sys/devices/system/cpu/nohz_full


@dataclass(frozen=True)
class CpuJitter:
    cpu: int
    backend: Backend
    duration_ns: int  # measured wall time of the spin
    loops: int  # iterations of the spin loop
    threshold_ns: int  # a gap longer than this is an event
    stats: EventStats
    # Sparse histogram of event durations: bucket upper bound in whole microseconds (an event
    # of 14.2 us lands in 15, as rt-tests counts) -> number of events.
    histogram_us: Mapping[int, int]
    # Events with timestamps, for the timeline; may be capped by the probe (see ``dropped``).
    events: tuple[Event, ...]
    dropped: int  # events counted in ``stats`` but not kept in ``events``
    context: CpuContext

    @property
    def loop_ns(self) -> float:
        """Mean nanoseconds per spin-loop iteration: the probe's sampling period."""
        return self.duration_ns / self.loops if self.loops else 0.0

    @property
    def has_timeline(self) -> bool:
        return any(event.offset_ns is not None for event in self.events)


@dataclass(frozen=True)
class RunSettings:
    """How the probe was asked to run, as resolved on the controller."""

    duration_ns: int
    threshold_ns: int
    backend_requested: Requested
    fifo_priority: int | None  # SCHED_FIFO priority, None for the normal policy


@dataclass(frozen=True)
class HostJitter:
    host: str
    settings: RunSettings
    cpus: tuple[CpuJitter, ...] = ()
    backend: Backend | None = None
    backend_reason: str = ""  # why this backend (auto) or why none could run
    hypervisor: str | None = None  # set on a VM: max and the far tail are not trustworthy there
    sched_rt_runtime_us: int | None = None
    kernel: str | None = None
    error: str | None = None  # the host could not be probed: unreachable, refused, failed
    error_kind: Literal["unreachable", "refused", "failed"] | None = None
    elapsed_s: float = 0.0
    notes: tuple[str, ...] = field(default_factory=tuple)
