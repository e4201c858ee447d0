"""The pure half of benchmarks/isolation.py: what one probe run measured, the medians per state,
the table with ratios and the goal checks. No I/O, so tests/unit/test_isolation_bench.py can
check it on real captured probe output.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

# The four states, in the order the table shows them. ``idle`` is the reference of every ratio.
IDLE: Final = "idle"
UNTUNED: Final = "untuned"
QUIETCORE: Final = "quietcore"
TUNED: Final = "tuned"
STATES: Final = (IDLE, UNTUNED, QUIETCORE, TUNED)
LABELS: Final[Mapping[str, str]] = {
    IDLE: "idle baseline (untuned, no load)",
    UNTUNED: "untuned + load",
    QUIETCORE: "quietcore runtime isolation + load",
    TUNED: "TuneD cpu-partitioning + load",
}
# The metrics the goals are about, as (field of Sample, column heading).
METRICS: Final = (
    ("events_over_100us_per_10s", "events >100 µs per 10 s"),
    ("p99_us", "p99 µs"),
    ("interrupted_pct", "interrupted %"),
)
# quietcore under load may be at most this many times the idle baseline.
IDLE_FACTOR: Final = 1.2


class ProbeOutputError(ValueError):
    """`quietcore jitter -f json` printed something this benchmark cannot use."""


@dataclass(frozen=True)
class Sample:
    """One probe run on the probed CPU, reduced to what the table needs plus the context that
    explains it (steal time: the hypervisor; involuntary switches: another task on the CPU)."""

    state: str
    round: int
    duration_s: float
    threshold_us: float
    events: int
    events_over_100us_per_10s: float
    p99_us: float  # 0.0 when no gap crossed the threshold
    max_us: float
    interrupted_pct: float
    steal_ms: float | None
    involuntary_switches: int | None
    interrupts: int  # every /proc/interrupts count on the CPU during the run, summed
    backend: str
    placement: str  # where the probe process ran: "cpuset PATH, CPUs LIST" (see isolation.py)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def parse_probe(
    document: Mapping[str, Any], cpu: int, state: str, round_number: int, placement: str
) -> Sample:
    """The ``quietcore.jitter/v1`` document of a one-CPU run on ``@local``, as a ``Sample``."""
    if document.get("schema") != "quietcore.jitter/v1":
        raise ProbeOutputError(f"not a quietcore.jitter/v1 document: {document.get('schema')!r}")
    hosts = document.get("hosts") or []
    if len(hosts) != 1:
        raise ProbeOutputError(f"expected one host, got {len(hosts)}")
    [host] = hosts
    if host.get("status") != "measured":
        raise ProbeOutputError(f"the probe did not measure: {host.get('error') or host}")
    found = [entry for entry in host.get("cpus") or [] if entry.get("cpu") == cpu]
    if not found:
        raise ProbeOutputError(f"no result for CPU {cpu}")
    [result] = found
    events = result["events"]
    duration_s = float(result["duration_s"])
    if duration_s <= 0:
        raise ProbeOutputError(f"CPU {cpu} ran for {duration_s} s")
    context = result.get("context") or {}
    return Sample(
        state=state,
        round=round_number,
        duration_s=duration_s,
        threshold_us=float(result["threshold_us"]),
        events=int(events["count"]),
        # Normalised to 10 s so that runs of other durations compare.
        events_over_100us_per_10s=int(events["over_100us"]) * 10.0 / duration_s,
        p99_us=float(events["p99_us"] or 0.0),
        max_us=float(events["max_us"] or 0.0),
        interrupted_pct=float(events["interrupted_pct"]),
        steal_ms=context.get("steal_ms"),
        involuntary_switches=context.get("involuntary_switches"),
        interrupts=sum(int(count) for count in (context.get("interrupts") or {}).values()),
        backend=str(result["backend"]),
        placement=placement,
    )


def medians(samples: Sequence[Sample]) -> dict[str, dict[str, float]]:
    """Per state, the median of each metric over its runs (states without runs are left out)."""
    by_state: dict[str, list[Sample]] = {}
    for sample in samples:
        by_state.setdefault(sample.state, []).append(sample)
    return {
        state: {
            field: statistics.median(float(getattr(run, field)) for run in runs)
            for field, _ in METRICS
        }
        | {"runs": float(len(runs))}
        for state, runs in by_state.items()
    }


def ratio(value: float, reference: float) -> float | None:
    """value / reference; equal zeros are 1.0 (as quiet as the reference); a value above a
    zero reference has no finite ratio (None)."""
    if reference == 0:
        return 1.0 if value == 0 else None
    return value / reference


def _times(value: float | None) -> str:
    return "∞" if value is None else f"{value:.2f}x"


def table(rows: Mapping[str, Mapping[str, float]]) -> str:
    """Markdown: one row per measured state with each metric and its ratio to the idle
    baseline (no ratios when the baseline was not measured)."""
    head = ["state", "runs"]
    for _, heading in METRICS:
        head += [heading, "x idle"]
    lines = ["| " + " | ".join(head) + " |", "| --- | ---: |" + " ---: |" * (2 * len(METRICS))]
    idle = rows.get(IDLE)
    for state in STATES:
        row = rows.get(state)
        if row is None:
            continue
        cells = [LABELS[state], f"{int(row['runs'])}"]
        for field, _ in METRICS:
            cells.append(f"{row[field]:.2f}")
            cells.append(_times(ratio(row[field], idle[field])) if idle else "n/a")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


@dataclass(frozen=True)
class Goal:
    metric: str
    claim: str  # e.g. "quietcore <= 1.2 x idle"
    value: float
    limit: float
    met: bool


def goals(rows: Mapping[str, Mapping[str, float]]) -> list[Goal]:
    """The issue's goals, per metric: quietcore under load within IDLE_FACTOR of the idle
    baseline, and no worse than TuneD. Only the goals whose states were measured."""
    ours = rows.get(QUIETCORE)
    if ours is None:
        return []
    checks: list[Goal] = []
    for field, heading in METRICS:
        if (idle := rows.get(IDLE)) is not None:
            limit = IDLE_FACTOR * idle[field]
            claim = f"quietcore <= {IDLE_FACTOR}x idle"
            checks.append(Goal(heading, claim, ours[field], limit, ours[field] <= limit))
        if (theirs := rows.get(TUNED)) is not None:
            limit = theirs[field]
            claim = "quietcore <= TuneD"
            checks.append(Goal(heading, claim, ours[field], limit, ours[field] <= limit))
    return checks


def goals_table(checks: Sequence[Goal], rows: Mapping[str, Mapping[str, float]]) -> str:
    """Markdown: each goal with quietcore's value, the limit, quietcore / TuneD, met or not."""
    theirs = rows.get(TUNED)
    lines = ["| metric | goal | quietcore | limit | met |", "| --- | --- | ---: | ---: | --- |"]
    for check in checks:
        lines.append(
            f"| {check.metric} | {check.claim} | {check.value:.2f} | {check.limit:.2f} "
            f"| {'yes' if check.met else '**no**'} |"
        )
    if theirs is not None and (ours := rows.get(QUIETCORE)) is not None:
        versus = ", ".join(
            f"{heading} {_times(ratio(ours[field], theirs[field]))}" for field, heading in METRICS
        )
        lines += ["", f"quietcore / TuneD: {versus}"]
    return "\n".join(lines)


def spread(samples: Sequence[Sample], state: str, field: str) -> tuple[float, float]:
    """Smallest and largest value of one metric over a state's runs (nan when none)."""
    values = [float(getattr(run, field)) for run in samples if run.state == state]
    return (min(values), max(values)) if values else (math.nan, math.nan)
