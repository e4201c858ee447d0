"""Jitter results for people: one table per host, a fleet line, and before/after comparisons.

Pure: everything here turns ``HostJitter`` values into rich renderables. Durations are shown
in microseconds with one decimal; lower is better for every number a comparison shows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from quietcore.probes.gate import CpuVerdict, RuleVerdict
from quietcore.probes.result import OVER_THRESHOLDS_NS, CpuJitter, HostJitter
from quietcore.profile.cpuset import format_cpulist
from quietcore.report.table import STATUS_STYLE

NONE = "-"
VM_WARNING = "on a VM ({}): max and the far tail are not trustworthy"
TOP_IRQS = 2
ERROR_WORDS = {"unreachable": "unreachable", "refused": "refused", "failed": "failed to probe"}


def span(ns: float) -> str:
    """A duration to 4 digits in the largest unit that keeps it at least 1: ``10s``, ``5µs``,
    ``2.792ms``."""
    for unit, size in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= size:
            return f"{ns / size:.4g}{unit}"
    return f"{ns:.4g}ns"


def _in_us(ns: int | None) -> float | None:
    return None if ns is None else ns / 1000


def _optional(value: float | None, spec: str) -> str:
    return NONE if value is None else format(value, spec)


def _us(ns: int | None) -> str:
    return _optional(_in_us(ns), ".1f")


def _number(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def _policy(host: HostJitter) -> str:
    priority = host.settings.fifo_priority
    return "other" if priority is None else f"fifo:{priority}"


def _heading(host: HostJitter) -> Text:
    heading = Text(host.host, style="bold")
    heading.append(f"  backend {host.backend or 'none'}")
    if host.backend_reason:
        heading.append(f" ({host.backend_reason})")
    heading.append(
        f"  duration {span(host.settings.duration_ns)}"
        f"  threshold {span(host.settings.threshold_ns)}"
        f"  policy {_policy(host)}"
    )
    return heading


def _error(host: HostJitter) -> Text:
    kind = host.error_kind or "failed"
    return Text.assemble((f"{kind}: ", STATUS_STYLE.get(kind, "bold red")), host.error or "")


def _isolation(cpu: CpuJitter) -> str:
    context = cpu.context
    flags = [name for name, on in (("iso", context.isolated), ("nohz", context.nohz_full)) if on]
    return " ".join(flags) or NONE


def _top_irqs(interrupts: Mapping[str, int]) -> str:
    busiest = sorted(
        ((label, count) for label, count in interrupts.items() if count),
        key=lambda item: (-item[1], item[0]),
    )
    return " ".join(f"{label}={count}" for label, count in busiest[:TOP_IRQS]) or NONE


def _failed_rule(rule: RuleVerdict) -> str:
    if rule.measured is None:
        return f"{rule.rule} unknown"
    return f"{rule.rule} {_number(rule.measured)} > {_number(rule.limit)}"


def _verdict(verdict: CpuVerdict | None) -> Text:
    if verdict is None:
        return Text(NONE)
    if verdict.ok:
        return Text("PASS", style="green")
    # One failing rule a line keeps the column narrow.
    failing = "\n".join(_failed_rule(rule) for rule in verdict.rules if not rule.ok)
    return Text.assemble(("FAIL", "bold red"), f" {failing}" if failing else "")


def _cpu_row(cpu: CpuJitter) -> list[str]:
    stats, context = cpu.stats, cpu.context
    return [
        str(cpu.cpu),
        _isolation(cpu),
        f"{cpu.loop_ns:.1f}",
        str(stats.count),
        f"{stats.rate_per_s:.2f}",
        _us(stats.p50_ns),
        _us(stats.p99_ns),
        _us(stats.p99_9_ns),
        _us(stats.max_ns),
        *(str(stats.over_ns.get(threshold, 0)) for threshold in OVER_THRESHOLDS_NS),
        f"{stats.interrupted_pct:.3f}",
        str(sum(context.interrupts.values())),
        _top_irqs(context.interrupts),
        _optional(context.steal_ms, ".1f"),
        _optional(context.involuntary_switches, "d"),
    ]


def _notes(host: HostJitter) -> list[Text]:
    notes = [Text(note, style="dim") for note in host.notes]
    notes += [
        Text(
            f"cpu {cpu.cpu}: {cpu.dropped} of {cpu.stats.count} events not kept "
            "(probe buffer full): the timeline is partial",
            style="dim",
        )
        for cpu in host.cpus
        if cpu.dropped
    ]
    return notes


def jitter_table(host: HostJitter, verdicts: Sequence[CpuVerdict] | None) -> RenderableType:
    heading = _heading(host)
    if host.error:
        return Group(heading, _error(host))
    parts: list[RenderableType] = [heading]
    if host.hypervisor:
        parts.append(Text(VM_WARNING.format(host.hypervisor), style="yellow"))
    if not host.cpus:
        return Group(*parts, Text("no CPU was probed"), *_notes(host))
    # One space between columns: every column is needed and the table must fit 160 characters.
    table = Table(box=None, pad_edge=False, collapse_padding=True, header_style="bold")
    table.add_column("cpu", justify="right")
    table.add_column("isol")
    numeric = ["loop ns", "events", "events/s", "p50 µs", "p99 µs", "p99.9 µs", "max µs"]
    numeric += [f"≥{span(threshold)}" for threshold in OVER_THRESHOLDS_NS]
    numeric += ["intr %", "IRQs"]
    for column in numeric:
        table.add_column(column, justify="right")
    table.add_column("top IRQs")
    table.add_column("steal ms", justify="right")
    table.add_column("invol", justify="right")
    by_cpu = {verdict.cpu: verdict for verdict in verdicts or ()}
    if verdicts is not None:
        table.add_column("verdict")
    for cpu in sorted(host.cpus, key=lambda cpu: cpu.cpu):
        row: list[str | Text] = [*_cpu_row(cpu)]
        if verdicts is not None:
            row.append(_verdict(by_cpu.get(cpu.cpu)))
        table.add_row(*row)
    return Group(*parts, table, *_notes(host))


def jitter_summary(
    hosts: Sequence[HostJitter], verdicts_by_host: Mapping[str, Sequence[CpuVerdict]]
) -> RenderableType:
    """``3 host(s): 2 measured, 1 passed, 1 failed, 1 unreachable``."""
    measured = [host for host in hosts if host.error is None]
    gated = [host for host in measured if host.host in verdicts_by_host]
    failed = sum(
        1 for host in gated if not all(verdict.ok for verdict in verdicts_by_host[host.host])
    )
    parts = [Text(f"{len(measured)} measured")]
    if gated:
        parts.append(Text(f"{len(gated) - failed} passed", style="green"))
        parts.append(Text(f"{failed} failed", style="bold red" if failed else ""))
    for kind, words in ERROR_WORDS.items():
        count = sum(1 for host in hosts if host.error and (host.error_kind or "failed") == kind)
        if count:
            parts.append(Text(f"{count} {words}", style=STATUS_STYLE.get(kind, "bold red")))
    return Text.assemble(f"{len(hosts)} host(s): ", Text(", ").join(parts))


Direction = Literal["better", "worse", "same"]


@dataclass(frozen=True)
class CompareRow:
    """One metric of one CPU before and after. ``None``: no event on that side, so no
    percentile; that is the best a CPU can do."""

    cpu: int
    metric: str
    before: float | None
    after: float | None

    @property
    def change(self) -> float | None:
        if self.before is None or self.after is None:
            return None
        return self.after - self.before

    @property
    def change_pct(self) -> float | None:
        change = self.change
        if change is None or not self.before:
            return None
        return change / self.before * 100

    @property
    def direction(self) -> Direction:
        # Lower is better for every metric, and "no event" is lower than any duration.
        before = -math.inf if self.before is None else self.before
        after = -math.inf if self.after is None else self.after
        if after < before:
            return "better"
        return "worse" if after > before else "same"


@dataclass(frozen=True)
class _Metric:
    name: str
    decimals: int
    value: Callable[[CpuJitter], float | None]


FIRST_OVER_NS = OVER_THRESHOLDS_NS[0]
COMPARED = (
    _Metric("events/s", 2, lambda cpu: cpu.stats.rate_per_s),
    _Metric("p99 µs", 1, lambda cpu: _in_us(cpu.stats.p99_ns)),
    _Metric("p99.9 µs", 1, lambda cpu: _in_us(cpu.stats.p99_9_ns)),
    _Metric("max µs", 1, lambda cpu: _in_us(cpu.stats.max_ns)),
    _Metric(f"≥{span(FIRST_OVER_NS)}", 0, lambda cpu: cpu.stats.over_ns.get(FIRST_OVER_NS, 0)),
    _Metric("interrupted %", 3, lambda cpu: cpu.stats.interrupted_pct),
    _Metric("loop ns", 2, lambda cpu: cpu.loop_ns),
)
DECIMALS = {metric.name: metric.decimals for metric in COMPARED}
DIRECTION_TEXT: dict[Direction, tuple[str, str]] = {
    "better": ("↓ better", "green"),
    "worse": ("↑ worse", "bold red"),
    "same": ("= same", "dim"),
}


def compare_rows(before: HostJitter, after: HostJitter) -> list[CompareRow]:
    """Every compared metric of every CPU probed on both sides, by CPU then metric."""
    after_by_cpu = {cpu.cpu: cpu for cpu in after.cpus}
    return [
        CompareRow(old.cpu, metric.name, metric.value(old), metric.value(new))
        for old in sorted(before.cpus, key=lambda cpu: cpu.cpu)
        if (new := after_by_cpu.get(old.cpu)) is not None
        for metric in COMPARED
    ]


def _value(row: CompareRow, value: float | None) -> str:
    return NONE if value is None else f"{value:.{DECIMALS[row.metric]}f}"


def _change(row: CompareRow) -> str:
    if row.change is None:
        return ""
    pct = "" if row.change_pct is None else f" ({row.change_pct:+.1f}%)"
    return f"{row.change:+.{DECIMALS[row.metric]}f}{pct}"


def _comparability(before: HostJitter, after: HostJitter) -> list[Text]:
    warnings = []
    if before.settings.threshold_ns != after.settings.threshold_ns:
        warnings.append(
            f"thresholds differ ({span(before.settings.threshold_ns)} before, "
            f"{span(after.settings.threshold_ns)} after): event counts are not comparable"
        )
    if before.backend != after.backend:
        warnings.append(
            f"backends differ ({before.backend or 'none'} before, {after.backend or 'none'} "
            "after): loop times and small events are not comparable"
        )
    if after.hypervisor:
        warnings.append(VM_WARNING.format(after.hypervisor))
    return [Text(warning, style="yellow") for warning in warnings]


def _one_sided(before: HostJitter, after: HostJitter) -> list[Text]:
    before_cpus = {cpu.cpu for cpu in before.cpus}
    after_cpus = {cpu.cpu for cpu in after.cpus}
    lines = []
    for side, cpus in (("before", before_cpus - after_cpus), ("after", after_cpus - before_cpus)):
        if cpus:
            lines.append(Text(f"CPU {format_cpulist(cpus)} probed only {side}", style="yellow"))
    return lines


def compare_table(before: HostJitter, after: HostJitter) -> RenderableType:
    heading = Text.assemble(
        (after.host, "bold"),
        f"  before ({before.backend or 'none'}, {span(before.settings.duration_ns)})"
        f" → after ({after.backend or 'none'}, {span(after.settings.duration_ns)})",
    )
    errors = [
        Text.assemble(f"{side}: ", _error(host))
        for side, host in (("before", before), ("after", after))
        if host.error
    ]
    if errors:
        return Group(heading, *errors)
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("cpu", justify="right")
    table.add_column("metric")
    for column in ("before", "after", "change"):
        table.add_column(column, justify="right")
    table.add_column("")
    shown_cpu = None
    for row in compare_rows(before, after):
        words, style = DIRECTION_TEXT[row.direction]
        table.add_row(
            "" if row.cpu == shown_cpu else str(row.cpu),
            row.metric,
            _value(row, row.before),
            _value(row, row.after),
            _change(row),
            Text(words, style=style),
        )
        shown_cpu = row.cpu
    return Group(heading, *_comparability(before, after), table, *_one_sided(before, after))


def compare_fleet(before: Sequence[HostJitter], after: Sequence[HostJitter]) -> RenderableType:
    """``compare_table`` for every host measured both times; hosts on one side only are named."""
    before_by_host = {host.host: host for host in before}
    after_names = {host.host for host in after}
    parts: list[RenderableType] = [
        compare_table(before_by_host[host.host], host)
        for host in after
        if host.host in before_by_host
    ]
    for side, names in (
        ("before", [host.host for host in before if host.host not in after_names]),
        ("after", [host.host for host in after if host.host not in before_by_host]),
    ):
        if names:
            parts.append(Text(f"measured only {side}: {', '.join(names)}", style="yellow"))
    return Group(*parts)
