"""Pass or fail each probed CPU against a profile's ``verify.jitter.accept`` rules.

Every rule is a maximum: the CPU passes it when the measured value is at most the limit. The
percentile and max rules are about events (gaps above the threshold), as sysjitter reports
them: a CPU without any event has nothing to measure there and passes, since no gap exceeded
the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

from quietcore.probes.result import CpuJitter, HostJitter
from quietcore.probes.stats import NS_PER_US, events_at_least
from quietcore.profile.schema import JitterAccept


@dataclass(frozen=True)
class RuleVerdict:
    rule: str  # the field under accept: "p99_9_us", "events_over_us.100", "interrupted_pct"
    limit: float
    # In the rule's unit (us, events, percent). None: no event to measure (the rule passed),
    # or a count the probe's dropped events leave undecided (the rule failed).
    measured: float | None
    ok: bool


@dataclass(frozen=True)
class CpuVerdict:
    cpu: int
    ok: bool
    rules: tuple[RuleVerdict, ...]


def _at_most(rule: str, limit: float, measured: float | None) -> RuleVerdict:
    return RuleVerdict(rule, limit, measured, measured is None or measured <= limit)


def _events_over(cpu: CpuJitter, over_us: int, max_count: int) -> RuleVerdict:
    rule = f"events_over_us.{over_us}"
    limit_ns = over_us * NS_PER_US
    counted = events_at_least(cpu, limit_ns)
    longest_ns = cpu.stats.max_ns or 0
    if cpu.dropped and counted <= max_count < counted + cpu.dropped and longest_ns >= limit_ns:
        # Events the probe did not keep may be that long or not: the count is unknown.
        return RuleVerdict(rule, max_count, None, False)
    return _at_most(rule, max_count, counted)


def judge(accept: JitterAccept, cpu: CpuJitter) -> CpuVerdict:
    """The CPU's verdict on every rule the profile declares, in the profile's field order.

    When the probe dropped events, the percentiles are those of the events it kept.
    """
    stats = cpu.stats
    tail = (
        ("max_us", accept.max_us, stats.max_ns),
        ("p99_us", accept.p99_us, stats.p99_ns),
        ("p99_9_us", accept.p99_9_us, stats.p99_9_ns),
        ("p99_99_us", accept.p99_99_us, stats.p99_99_ns),
    )
    rules = [
        _at_most(rule, limit, None if value_ns is None else value_ns / NS_PER_US)
        for rule, limit, value_ns in tail
        if limit is not None
    ]
    rules += [
        _events_over(cpu, over_us, max_count)
        for over_us, max_count in sorted(accept.events_over_us.items())
    ]
    if accept.interrupted_pct is not None:
        rules.append(_at_most("interrupted_pct", accept.interrupted_pct, stats.interrupted_pct))
    return CpuVerdict(cpu.cpu, all(rule.ok for rule in rules), tuple(rules))


def judge_host(accept: JitterAccept, host: HostJitter) -> tuple[CpuVerdict, ...]:
    return tuple(judge(accept, cpu) for cpu in host.cpus)
