"""The versioned machine-readable jitter report (``quietcore.jitter/v1``), and reading it back.

The JSON Schema lives in ``quietcore/schemas/jitter-v1.json``. Adding optional fields keeps v1;
renaming or removing one is v2. Durations are microseconds with 3 decimals (whole
nanoseconds, so they read back exactly), ``loop_ns`` nanoseconds, run lengths seconds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from quietcore import __version__
from quietcore.probes.gate import CpuVerdict
from quietcore.probes.result import (
    OVER_THRESHOLDS_NS,
    CpuContext,
    CpuJitter,
    Event,
    EventStats,
    HostJitter,
    RunSettings,
)
from quietcore.probes.stats import NS_PER_S, NS_PER_US
from quietcore.profile.loaded import LoadedProfile
from quietcore.report.json_report import profile_block

SCHEMA_ID = "quietcore.jitter/v1"
HOST_STATUSES = ("pass", "fail", "measured", "unreachable", "refused", "failed")
VM_TRUST_NOTE = "max and the far tail are not trustworthy on a VM"


class JitterDocumentError(ValueError):
    """Not a quietcore.jitter/v1 document."""


def _us(ns: int | None) -> float | None:
    return None if ns is None else round(ns / NS_PER_US, 3)


def _ns(us: float | None) -> int | None:
    return None if us is None else round(us * NS_PER_US)


def over_key(limit_ns: int) -> str:
    """``over_10us``, ``over_1ms``: the events field counting events at least that long."""
    if limit_ns % (1000 * NS_PER_US) == 0:
        return f"over_{limit_ns // (1000 * NS_PER_US)}ms"
    return f"over_{limit_ns // NS_PER_US}us"


def _events(cpu: CpuJitter) -> dict[str, Any]:
    stats = cpu.stats
    return {
        "count": stats.count,
        "rate_per_s": round(stats.rate_per_s, 3),
        "min_us": _us(stats.min_ns),
        "p50_us": _us(stats.p50_ns),
        "p90_us": _us(stats.p90_ns),
        "p99_us": _us(stats.p99_ns),
        "p99_9_us": _us(stats.p99_9_ns),
        "p99_99_us": _us(stats.p99_99_ns),
        "max_us": _us(stats.max_ns),
        **{over_key(limit): stats.over_ns.get(limit, 0) for limit in OVER_THRESHOLDS_NS},
        "interrupted_us": _us(stats.interrupted_ns),
        "interrupted_pct": round(stats.interrupted_pct, 6),
        "dropped": cpu.dropped,
    }


def _context(context: CpuContext) -> dict[str, Any]:
    return {
        "interrupts": dict(context.interrupts),
        "softirqs": dict(context.softirqs),
        "steal_ms": None if context.steal_ms is None else round(context.steal_ms, 3),
        "voluntary_switches": context.voluntary_switches,
        "involuntary_switches": context.involuntary_switches,
        "isolated": context.isolated,
        "nohz_full": context.nohz_full,
    }


def _gate(verdict: CpuVerdict | None) -> dict[str, Any] | None:
    if verdict is None:
        return None
    return {
        "ok": verdict.ok,
        "rules": [
            {
                "rule": rule.rule,
                "limit": rule.limit,
                "measured": None if rule.measured is None else round(rule.measured, 6),
                "ok": rule.ok,
            }
            for rule in verdict.rules
        ],
    }


def _cpu(cpu: CpuJitter, verdict: CpuVerdict | None, include_events: bool) -> dict[str, Any]:
    timeline = None
    if include_events and cpu.has_timeline:
        timeline = [
            [_us(event.offset_ns), _us(event.duration_ns)]
            for event in cpu.events
            if event.offset_ns is not None
        ]
    return {
        "cpu": cpu.cpu,
        "backend": cpu.backend,
        "duration_s": round(cpu.duration_ns / NS_PER_S, 9),
        "loops": cpu.loops,
        "loop_ns": round(cpu.loop_ns, 3),
        "threshold_us": _us(cpu.threshold_ns),
        "events": _events(cpu),
        "histogram": {
            "unit": "us",
            "buckets": {str(k): count for k, count in sorted(cpu.histogram_us.items())},
        },
        "timeline": timeline,
        "context": _context(cpu.context),
        "gate": _gate(verdict),
    }


def host_status(host: HostJitter, verdicts: Sequence[CpuVerdict] | None) -> str:
    """pass/fail against the profile's rules, measured when there were none, else why the
    host has no measurement."""
    if host.error_kind is not None:
        return host.error_kind
    if host.error is not None:
        return "failed"
    if verdicts is None:
        return "measured"
    return "pass" if all(verdict.ok for verdict in verdicts) else "fail"


def _host(
    host: HostJitter, verdicts: Sequence[CpuVerdict] | None, include_events: bool
) -> dict[str, Any]:
    by_cpu = {verdict.cpu: verdict for verdict in verdicts or ()}
    settings = host.settings
    return {
        "host": host.host,
        "status": host_status(host, verdicts),
        "error": host.error,
        "backend": host.backend,
        "backend_reason": host.backend_reason,
        "vm": host.hypervisor,
        "trust_note": VM_TRUST_NOTE if host.hypervisor is not None else None,
        "sched_rt_runtime_us": host.sched_rt_runtime_us,
        "kernel": host.kernel,
        "settings": {
            "duration_s": round(settings.duration_ns / NS_PER_S, 9),
            "threshold_us": _us(settings.threshold_ns),
            "backend_requested": settings.backend_requested,
            "fifo_priority": settings.fifo_priority,
        },
        "notes": list(host.notes),
        "elapsed_s": round(host.elapsed_s, 4),
        "cpus": [_cpu(cpu, by_cpu.get(cpu.cpu), include_events) for cpu in host.cpus],
    }


def jitter_document(
    hosts: Sequence[HostJitter],
    verdicts: Mapping[str, Sequence[CpuVerdict]] | None,
    profile: LoadedProfile | None,
    generated_at: datetime,
    include_events: bool = True,
) -> dict[str, Any]:
    """The report of ``hosts``; ``verdicts`` by host name (a host without any was measured
    only); ``include_events=False`` leaves the timelines out (they can be long)."""
    host_documents = [
        _host(host, None if verdicts is None else verdicts.get(host.host), include_events)
        for host in hosts
    ]
    statuses = [document["status"] for document in host_documents]
    return {
        "schema": SCHEMA_ID,
        "generated_at": generated_at.isoformat(timespec="seconds"),
        "quietcore_version": __version__,
        "profile": None if profile is None else profile_block(profile),
        "summary": {
            "hosts": len(hosts),
            **{status: statuses.count(status) for status in HOST_STATUSES},
        },
        "hosts": host_documents,
    }


# --- Reading a document back (``--compare BEFORE.json``) ------------------------------------


def _stats_from(events: Mapping[str, Any]) -> EventStats:
    return EventStats(
        count=events["count"],
        rate_per_s=events["rate_per_s"],
        min_ns=_ns(events["min_us"]),
        p50_ns=_ns(events["p50_us"]),
        p90_ns=_ns(events["p90_us"]),
        p99_ns=_ns(events["p99_us"]),
        p99_9_ns=_ns(events["p99_9_us"]),
        p99_99_ns=_ns(events["p99_99_us"]),
        max_ns=_ns(events["max_us"]),
        over_ns={limit: events[over_key(limit)] for limit in OVER_THRESHOLDS_NS},
        interrupted_ns=round(events["interrupted_us"] * NS_PER_US),
        interrupted_pct=events["interrupted_pct"],
    )


def _cpu_from(document: Mapping[str, Any]) -> CpuJitter:
    context = document["context"]
    return CpuJitter(
        cpu=document["cpu"],
        backend=document["backend"],
        duration_ns=round(document["duration_s"] * NS_PER_S),
        loops=document["loops"],
        threshold_ns=round(document["threshold_us"] * NS_PER_US),
        stats=_stats_from(document["events"]),
        histogram_us={int(k): count for k, count in document["histogram"]["buckets"].items()},
        events=tuple(
            Event(_ns(offset_us), round(duration_us * NS_PER_US))
            for offset_us, duration_us in document["timeline"] or ()
        ),
        dropped=document["events"]["dropped"],
        context=CpuContext(
            interrupts=dict(context["interrupts"]),
            softirqs=dict(context["softirqs"]),
            steal_ms=context["steal_ms"],
            voluntary_switches=context["voluntary_switches"],
            involuntary_switches=context["involuntary_switches"],
            isolated=context["isolated"],
            nohz_full=context["nohz_full"],
        ),
    )


def _host_from(document: Mapping[str, Any]) -> HostJitter:
    settings = document["settings"]
    status = document["status"]
    return HostJitter(
        host=document["host"],
        settings=RunSettings(
            duration_ns=round(settings["duration_s"] * NS_PER_S),
            threshold_ns=round(settings["threshold_us"] * NS_PER_US),
            backend_requested=settings["backend_requested"],
            fifo_priority=settings["fifo_priority"],
        ),
        cpus=tuple(_cpu_from(cpu) for cpu in document["cpus"]),
        backend=document["backend"],
        backend_reason=document["backend_reason"],
        hypervisor=document["vm"],
        sched_rt_runtime_us=document["sched_rt_runtime_us"],
        kernel=document["kernel"],
        error=document["error"],
        error_kind=status if status in ("unreachable", "refused", "failed") else None,
        elapsed_s=document["elapsed_s"],
        notes=tuple(document["notes"]),
    )


def hosts_from_document(document: Any) -> list[HostJitter]:
    """The hosts of a ``quietcore.jitter/v1`` document, as measured (verdicts are not read
    back: judge again against the rules at hand)."""
    if not isinstance(document, dict) or document.get("schema") != SCHEMA_ID:
        raise JitterDocumentError(f"not a {SCHEMA_ID} document")
    try:
        return [_host_from(host) for host in document["hosts"]]
    except (KeyError, TypeError, AttributeError) as problem:
        raise JitterDocumentError(f"{SCHEMA_ID} document: bad or missing {problem}") from None
