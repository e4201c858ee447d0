"""Declared vs actual: compare a host's desired settings with what it really runs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from quietcore.knobs.base import Setting, Status
from quietcore.knobs.registry import family
from quietcore.readings import Readings
from quietcore.topology import Topology

STATUS_ORDER: tuple[Status, ...] = ("drift", "missing", "unsupported", "immovable", "ok")


@dataclass(frozen=True)
class SettingResult:
    setting: Setting
    actual: str | None
    status: Status
    reason: str = ""


def compare(
    settings: Iterable[Setting], readings: Readings, topology: Topology
) -> list[SettingResult]:
    """Observe every setting on the host and judge it with its family's comparison."""
    results = []
    for setting in settings:
        knob = family(setting.family)
        seen = knob.observe(setting, readings, topology)
        if seen.status is not None:
            status: Status = seen.status
        elif seen.actual is not None and knob.matches(setting, seen.actual):
            status = "ok"
        else:
            status = "drift"
        results.append(SettingResult(setting, seen.actual, status, seen.reason))
    return results


def count_statuses(results: Sequence[SettingResult]) -> dict[Status, int]:
    counts = Counter(result.status for result in results)
    return {status: counts.get(status, 0) for status in STATUS_ORDER}


def has_drift(results: Sequence[SettingResult]) -> bool:
    """Drift and missing both mean the host does not run what was declared."""
    return any(result.status in ("drift", "missing") for result in results)
