"""Judging the captured runs against verify.jitter.accept rules."""

from __future__ import annotations

from dataclasses import replace

from tests.unit.jitter_captures import OSLAT_B1024, RAW_C, event_durations, oslat_cpu, probe_cpu

from quietcore.probes.gate import RuleVerdict, judge, judge_host
from quietcore.probes.result import HostJitter, RunSettings
from quietcore.probes.stats import event_stats
from quietcore.profile.schema import JitterAccept


def _rules(verdict_rules: tuple[RuleVerdict, ...]) -> dict[str, tuple[float | None, bool]]:
    return {rule.rule: (rule.measured, rule.ok) for rule in verdict_rules}


def test_no_rules_passes() -> None:
    verdict = judge(JitterAccept(), probe_cpu())
    assert verdict.ok
    assert verdict.rules == ()


def test_oslat_capture_against_every_rule() -> None:
    accept = JitterAccept(
        max_us=50,
        p99_us=60,
        p99_9_us=10,
        p99_99_us=5000,
        events_over_us={1000: 2, 100: 0},
        interrupted_pct=1,
    )
    verdict = judge(accept, oslat_cpu(OSLAT_B1024))
    assert not verdict.ok
    assert verdict.cpu == 1
    # In the profile's field order; event counts by threshold.
    assert _rules(verdict.rules) == {
        "max_us": (4027.0, False),
        "p99_us": (51.0, True),
        "p99_9_us": (1024.0, False),
        "p99_99_us": (4027.0, True),
        "events_over_us.100": (2, False),
        "events_over_us.1000": (2, True),
        "interrupted_pct": (verdict.rules[-1].measured, True),
    }
    assert [rule.rule for rule in verdict.rules][-3:] == [
        "events_over_us.100",
        "events_over_us.1000",
        "interrupted_pct",
    ]
    assert verdict.rules[-1].measured is not None
    assert 0.8 < verdict.rules[-1].measured < 0.9


def test_c_capture_limits_are_inclusive() -> None:
    cpu = probe_cpu(RAW_C)
    over_50us = sum(1 for d in event_durations(RAW_C) if d >= 50_000)
    accept = JitterAccept(max_us=130.466, events_over_us={50: over_50us})
    verdict = judge(accept, cpu)
    assert verdict.ok
    assert _rules(verdict.rules)["events_over_us.50"] == (over_50us, True)
    tighter = judge(JitterAccept(max_us=130.465, events_over_us={50: over_50us - 1}), cpu)
    assert [rule.ok for rule in tighter.rules] == [False, False]


def test_no_event_means_nothing_exceeded_the_threshold() -> None:
    quiet = replace(
        probe_cpu(RAW_C),
        stats=event_stats([], total=0, interrupted_ns=0, max_ns=0, run_ns=10**9),
        events=(),
        histogram_us={},
    )
    accept = JitterAccept(max_us=10, p99_9_us=5, events_over_us={10: 0}, interrupted_pct=0)
    verdict = judge(accept, quiet)
    assert verdict.ok
    assert _rules(verdict.rules) == {
        "max_us": (None, True),
        "p99_9_us": (None, True),
        "events_over_us.10": (0, True),
        "interrupted_pct": (0.0, True),
    }


def test_dropped_events_can_leave_a_count_undecided() -> None:
    # The probe kept its first 100 events of 567: 5 of them are 50 us or longer (13 of all).
    cut = probe_cpu(RAW_C, keep=100)
    kept_over = sum(1 for d in event_durations(RAW_C)[:100] if d >= 50_000)
    assert kept_over == 5
    # More than the limit among the kept ones: failed for sure.
    assert _rules(judge(JitterAccept(events_over_us={50: 4}), cut).rules) == {
        "events_over_us.50": (5, False)
    }
    # Within the limit so far, but the 467 dropped events may hold more.
    assert _rules(judge(JitterAccept(events_over_us={50: 5}), cut).rules) == {
        "events_over_us.50": (None, False)
    }
    # Even if every dropped event counted, the limit holds.
    assert judge(JitterAccept(events_over_us={50: 1000}), cut).ok
    # Longer than the longest event of the run: none can be, dropped or not.
    assert _rules(judge(JitterAccept(events_over_us={200: 0}), cut).rules) == {
        "events_over_us.200": (0, True)
    }


def test_judge_host() -> None:
    host = HostJitter(
        "@local",
        RunSettings(3 * 10**9, 5000, "auto", None),
        cpus=(probe_cpu(RAW_C), replace(oslat_cpu(OSLAT_B1024), cpu=3)),
    )
    verdicts = judge_host(JitterAccept(max_us=200), host)
    assert [(verdict.cpu, verdict.ok) for verdict in verdicts] == [(1, True), (3, False)]
