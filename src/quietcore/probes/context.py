"""What else happened on each probed CPU: /proc/interrupts, /proc/softirqs and /proc/stat read
before and after the run, and the difference.

/proc/interrupts and /proc/softirqs share one layout: a header naming the online CPUs'
columns (``CPU0 CPU1 ...``), then one line per source, ``LABEL:`` and one count per column,
and for interrupts a free-form description after them. Lines with fewer counts than columns
(``ERR:``, ``MIS:``) are machine-wide totals that no CPU can be charged with, so they are left
out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass

from quietcore.probes.result import CpuContext

# /proc/stat's cpuN line: user nice system idle iowait irq softirq steal ..., in USER_HZ ticks.
_STEAL_COLUMN = 7


class ProcFormatError(ValueError):
    """A /proc file does not look as expected, or lacks a CPU asked for."""


@dataclass(frozen=True)
class ProcSnapshot:
    """The text of /proc/interrupts, /proc/softirqs and /proc/stat, read at one moment."""

    interrupts: str
    softirqs: str
    stat: str


@dataclass(frozen=True)
class ProcDeltas:
    """Per CPU changes between two snapshots: only counters that moved."""

    interrupts: Mapping[int, Mapping[str, int]]
    softirqs: Mapping[int, Mapping[str, int]]
    steal_ms: Mapping[int, float]  # CPUs whose /proc/stat line has no steal column are absent


@dataclass(frozen=True)
class PerCpuCounts:
    """A parsed /proc/interrupts or /proc/softirqs."""

    cpus: tuple[int, ...]  # the columns: the CPUs online when it was read
    counts: Mapping[str, Mapping[int, int]]  # line label -> cpu -> count


def parse_per_cpu_counts(text: str, source: str) -> PerCpuCounts:
    lines = text.splitlines()
    header = lines[0].split() if lines else []
    if not header or not all(
        column.startswith("CPU") and column[3:].isdigit() for column in header
    ):
        raise ProcFormatError(f"{source}: the first line does not name CPU columns")
    cpus = tuple(int(column[3:]) for column in header)
    counts = {}
    for line in lines[1:]:
        label, colon, rest = line.partition(":")
        values = rest.split()[: len(cpus)]
        if not colon or len(values) < len(cpus) or not all(v.isdigit() for v in values):
            continue
        counts[label.strip()] = dict(zip(cpus, map(int, values), strict=True))
    return PerCpuCounts(cpus, counts)


def _deltas(before: str, after: str, cpus: Iterable[int], source: str) -> dict[int, dict[str, int]]:
    old, new = parse_per_cpu_counts(before, source), parse_per_cpu_counts(after, source)
    deltas = {}
    for cpu in cpus:
        if cpu not in old.cpus or cpu not in new.cpus:
            raise ProcFormatError(f"{source}: no column for CPU {cpu} (offline?)")
        # A source that appeared during the run started from zero; one whose count went down
        # was freed and registered again, and tells nothing about the run.
        moved = {
            label: counts[cpu] - old.counts.get(label, {}).get(cpu, 0)
            for label, counts in new.counts.items()
        }
        deltas[cpu] = {label: delta for label, delta in moved.items() if delta > 0}
    return deltas


def interrupt_deltas(before: str, after: str, cpus: Iterable[int]) -> dict[int, dict[str, int]]:
    """Interrupts each CPU took between the two /proc/interrupts texts, by line label (the
    IRQ number, or a name such as LOC, RES, CAL, TLB)."""
    return _deltas(before, after, cpus, "/proc/interrupts")


def softirq_deltas(before: str, after: str, cpus: Iterable[int]) -> dict[int, dict[str, int]]:
    """Softirqs (TIMER, RCU, SCHED, ...) each CPU ran between the two /proc/softirqs texts."""
    return _deltas(before, after, cpus, "/proc/softirqs")


def _steal_ticks(stat: str) -> dict[int, int | None]:
    ticks: dict[int, int | None] = {}
    for line in stat.splitlines():
        name, *values = line.split() or [""]
        if not (name.startswith("cpu") and name[3:].isdigit()):
            continue
        if not all(value.isdigit() for value in values):
            raise ProcFormatError(f"/proc/stat: the {name} line holds something not a count")
        ticks[int(name[3:])] = int(values[_STEAL_COLUMN]) if len(values) > _STEAL_COLUMN else None
    return ticks


def steal_ms(
    before_stat: str, after_stat: str, cpus: Iterable[int], user_hz: int = 100
) -> dict[int, float]:
    """Time the hypervisor ran something else on each CPU, from /proc/stat. Its resolution is
    one tick (10 ms at the usual USER_HZ of 100)."""
    old, new = _steal_ticks(before_stat), _steal_ticks(after_stat)
    stolen = {}
    for cpu in cpus:
        if cpu not in old or cpu not in new:
            raise ProcFormatError(f"/proc/stat: no cpu{cpu} line (offline?)")
        first, last = old[cpu], new[cpu]
        if first is not None and last is not None:
            stolen[cpu] = (last - first) * 1000 / user_hz
    return stolen


def proc_deltas(
    before: ProcSnapshot, after: ProcSnapshot, cpus: Iterable[int], user_hz: int = 100
) -> ProcDeltas:
    chosen = sorted(set(cpus))
    return ProcDeltas(
        interrupts=interrupt_deltas(before.interrupts, after.interrupts, chosen),
        softirqs=softirq_deltas(before.softirqs, after.softirqs, chosen),
        steal_ms=steal_ms(before.stat, after.stat, chosen, user_hz),
    )


def cpu_context(
    deltas: ProcDeltas,
    cpu: int,
    *,
    isolated: Set[int],
    nohz_full: Set[int],
    voluntary_switches: int | None = None,
    involuntary_switches: int | None = None,
) -> CpuContext:
    """One CPU's context; the switch counts are the probe's own (oslat reports none)."""
    return CpuContext(
        interrupts=deltas.interrupts[cpu],
        softirqs=deltas.softirqs[cpu],
        steal_ms=deltas.steal_ms.get(cpu),
        voluntary_switches=voluntary_switches,
        involuntary_switches=involuntary_switches,
        isolated=cpu in isolated,
        nohz_full=cpu in nohz_full,
    )
