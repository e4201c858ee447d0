"""Judging a verify run against a saved baseline (``quietcore verify --against NAME``). Pure.

Per host, a run fails the baseline when it has

- drift the baseline did not have: a key drifting or missing now that was ok, unsupported,
  immovable or absent in the baseline (known drift, drifting in both, is shown, not failed);
- a jitter accept rule a CPU breaks now and did not break in the baseline;
- a jitter percentile of a CPU more than the profile's ``verify.jitter.regression`` tolerance
  above the baseline's value (``p99_pct: 20``: more than 20% over).

A percentile the baseline has no value for (no gap above the threshold) counts as the
threshold itself: the baseline's gaps at that rank were at most that long. A host missing
from the baseline is judged against an empty one: all its drift is new, its jitter not
compared. A different profile digest is a note, not a failure: the keys are still compared
one by one, and the tolerances are the current profile's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from quietcore.baseline.model import Baseline, BaselineHost
from quietcore.report.document import NOT_AUDITED, Document, failed_rules, is_drifting, shown

# (name people read, field in the jitter document's events, field of verify.jitter.regression)
PERCENTILES = (
    ("p50", "p50_us", "p50_pct"),
    ("p99", "p99_us", "p99_pct"),
    ("p99.9", "p99_9_us", "p99_9_pct"),
    ("p99.99", "p99_99_us", "p99_99_pct"),
    ("max", "max_us", "max_pct"),
)
TOLERANCE_FIELDS = tuple(field for _, _, field in PERCENTILES)
# A host's verdict; not_compared: it could not be audited now (unreachable, refused).
HOST_VERDICTS = ("pass", "fail", "not_compared")
Tolerances = Mapping[str, float | None]


@dataclass(frozen=True)
class PercentileChange:
    """One percentile of one CPU, baseline vs now (µs; None: no gap above the threshold)."""

    name: str
    baseline_us: float | None
    now_us: float | None
    threshold_us: float  # the baseline's: what a missing baseline value stands for
    limit_pct: float | None  # None: not judged

    @property
    def reference_us(self) -> float:
        return self.threshold_us if self.baseline_us is None else self.baseline_us

    @property
    def change_pct(self) -> float | None:
        if self.now_us is None:
            return None
        return (self.now_us - self.reference_us) / self.reference_us * 100

    @property
    def regressed(self) -> bool:
        change = self.change_pct
        return self.limit_pct is not None and change is not None and change > self.limit_pct


@dataclass(frozen=True)
class CpuComparison:
    cpu: int
    percentiles: tuple[PercentileChange, ...]
    new_failed_rules: tuple[str, ...] = ()  # accept rules broken now, passed in the baseline
    known_failed_rules: tuple[str, ...] = ()  # broken in both


@dataclass(frozen=True)
class KeyChange:
    """A setting whose drift matters to the comparison, as judged now and in the baseline
    (``baseline_status`` None: the baseline has no such key)."""

    key: str
    status: str
    desired: str
    actual: str | None
    baseline_status: str | None
    baseline_actual: str | None


@dataclass(frozen=True)
class HostComparison:
    host: str
    in_baseline: bool
    compared: bool  # False when the host could not be audited now (unreachable, refused)
    new_drift: tuple[KeyChange, ...] = ()
    known_drift: tuple[KeyChange, ...] = ()
    fixed: tuple[KeyChange, ...] = ()  # drifting in the baseline, ok now
    cpus: tuple[CpuComparison, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def failures(self) -> list[str]:
        """Every reason this host fails the baseline, one line each, naming what and where."""
        found = [f"{self.host} {_drift_message(change)}" for change in self.new_drift]
        for cpu in self.cpus:
            found += [
                f"{self.host} cpu{cpu.cpu} now breaks {rule} (passed in the baseline)"
                for rule in cpu.new_failed_rules
            ]
            found += [
                f"{self.host} cpu{cpu.cpu} {regression_message(change)}"
                for change in cpu.percentiles
                if change.regressed
            ]
        return found

    @property
    def status(self) -> str:
        if not self.compared:
            return "not_compared"
        return "fail" if self.failures else "pass"


@dataclass(frozen=True)
class Against:
    baseline: Baseline
    profile: Mapping[str, Any]  # the current run's profile block
    tolerances: Tolerances
    hosts: tuple[HostComparison, ...]

    @property
    def profile_changed(self) -> bool:
        return bool(self.profile["digest"] != self.baseline.profile["digest"])

    @property
    def not_verified(self) -> list[str]:
        """Baseline hosts this run did not verify (a subset of the fleet is fine)."""
        now = {host.host for host in self.hosts}
        return [name for name in self.baseline.hosts if name not in now]

    @property
    def failed(self) -> bool:
        return any(host.status == "fail" for host in self.hosts)

    @property
    def notes(self) -> list[str]:
        found = []
        if self.profile_changed:
            found.append(
                f"the profile changed since the baseline was saved "
                f"({_short(self.baseline.profile['digest'])} -> {_short(self.profile['digest'])}): "
                "settings are compared key by key, with the current profile's tolerances"
            )
        if self.not_verified:
            found.append(f"in the baseline but not verified now: {', '.join(self.not_verified)}")
        return found


def _short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


def _number(value: float) -> str:
    return f"{value:.1f}"


def regression_message(change: PercentileChange) -> str:
    """``p99 regressed: 38.2 us -> 2411.0 us (+6211%, limit +20%)``."""
    before = (
        f"none above {_number(change.threshold_us)} us"
        if change.baseline_us is None
        else f"{_number(change.baseline_us)} us"
    )
    now = "none" if change.now_us is None else f"{_number(change.now_us)} us"
    percent = "" if change.change_pct is None else f"{change.change_pct:+.0f}%"
    limit = "" if change.limit_pct is None else f", limit +{change.limit_pct:g}%"
    return f"{change.name} regressed: {before} -> {now} ({percent}{limit})"


def _drift_message(change: KeyChange) -> str:
    was = (
        "not in the baseline"
        if change.baseline_status is None
        else f"{change.baseline_status} in the baseline"
    )
    verb = "missing now" if change.status == "missing" else "drifts now"
    return (
        f"{change.key} {verb}: desired {shown(change.desired)}, actual {shown(change.actual)} "
        f"({was})"
    )


# --- Settings ----------------------------------------------------------------------------


def _key_change(setting: Mapping[str, Any], before: Mapping[str, Any] | None) -> KeyChange:
    return KeyChange(
        key=setting["key"],
        status=setting["status"],
        desired=setting["desired"],
        actual=setting["actual"],
        baseline_status=None if before is None else before["status"],
        baseline_actual=None if before is None else before["actual"],
    )


def compare_settings(
    now: Sequence[Mapping[str, Any]], before: Sequence[Mapping[str, Any]]
) -> tuple[tuple[KeyChange, ...], tuple[KeyChange, ...], tuple[KeyChange, ...]]:
    """(new drift, known drift, fixed) of one host's settings against its baseline's."""
    by_key = {setting["key"]: setting for setting in before}
    new: list[KeyChange] = []
    known: list[KeyChange] = []
    fixed: list[KeyChange] = []
    for setting in now:
        old = by_key.get(setting["key"])
        if is_drifting(setting):
            drifted_before = old is not None and is_drifting(old)
            (known if drifted_before else new).append(_key_change(setting, old))
        elif old is not None and is_drifting(old):
            fixed.append(_key_change(setting, old))
    return tuple(new), tuple(known), tuple(fixed)


# --- Jitter ------------------------------------------------------------------------------


def compare_cpu(
    now: Mapping[str, Any], before: Mapping[str, Any], tolerances: Tolerances
) -> CpuComparison:
    """One CPU's jitter (entries of the jitter documents' ``cpus``) against its baseline."""
    threshold = before["threshold_us"]
    percentiles = tuple(
        PercentileChange(
            name,
            before["events"][field],
            now["events"][field],
            threshold,
            tolerances.get(tolerance),
        )
        for name, field, tolerance in PERCENTILES
    )
    kept = set(failed_rules(before))
    broken = failed_rules(now)
    # A rule is named with its measurement ("p99_us 4032.2 > 100"): match on the rule alone.
    kept_rules = {text.split()[0] for text in kept}
    return CpuComparison(
        cpu=now["cpu"],
        percentiles=percentiles,
        new_failed_rules=tuple(rule for rule in broken if rule.split()[0] not in kept_rules),
        known_failed_rules=tuple(rule for rule in broken if rule.split()[0] in kept_rules),
    )


def _settings_note(now: Mapping[str, Any], before: Mapping[str, Any]) -> list[str]:
    differ = [
        f"{name} {before['settings'][name]} then, {now['settings'][name]} now"
        for name in ("duration_s", "threshold_us")
        if now["settings"][name] != before["settings"][name]
    ]
    if not differ:
        return []
    return [f"jitter measured differently from the baseline ({'; '.join(differ)})"]


def compare_jitter(
    now: Mapping[str, Any] | None,
    before: Mapping[str, Any] | None,
    tolerances: Tolerances,
) -> tuple[tuple[CpuComparison, ...], list[str]]:
    """Every CPU measured both times, and notes on what could not be compared."""
    if before is None:
        return (), ([] if now is None else ["jitter not compared: the baseline has none"])
    if now is None:
        return (), ["jitter not compared: not measured now"]
    if now["error"] is not None:
        return (), [f"jitter not compared: {now['status']} now"]
    then = {cpu["cpu"]: cpu for cpu in before["cpus"]}
    measured = {cpu["cpu"]: cpu for cpu in now["cpus"]}
    notes = _settings_note(now, before)
    cpus = tuple(
        compare_cpu(cpu, then[number], tolerances)
        for number, cpu in sorted(measured.items())
        if number in then
    )
    for label, numbers in (
        ("not in the baseline", sorted(measured.keys() - then.keys())),
        ("in the baseline but not measured now", sorted(then.keys() - measured.keys())),
    ):
        if numbers:
            listed = ", ".join(f"cpu{number}" for number in numbers)
            notes.append(f"{listed} {label}: not compared")
    return cpus, notes


# --- Hosts -------------------------------------------------------------------------------


def compare_host(
    host: Mapping[str, Any],
    jitter: Mapping[str, Any] | None,
    before: BaselineHost | None,
    tolerances: Tolerances,
) -> HostComparison:
    """One host of the current verify document (and its jitter entry) against its baseline."""
    name = host["host"]
    if host["status"] in NOT_AUDITED:
        reason = f"not compared: {host['status']} now"
        return HostComparison(name, before is not None, compared=False, notes=(reason,))
    notes = []
    if before is None:
        notes.append("not in the baseline: all its drift is new, its jitter not compared")
    new, known, fixed = compare_settings(
        host["settings"], () if before is None else before.verify["settings"]
    )
    cpus: tuple[CpuComparison, ...] = ()
    if before is not None:
        cpus, jitter_notes = compare_jitter(jitter, before.jitter, tolerances)
        notes += jitter_notes
    return HostComparison(
        name, before is not None, True, new, known, fixed, cpus, notes=tuple(notes)
    )


def compare_with_baseline(
    baseline: Baseline, document: Document, tolerances: Tolerances
) -> Against:
    """Every host of a verify document (with its ``jitter`` when measured) against
    ``baseline``; ``tolerances`` the profile's ``verify.jitter.regression`` fields."""
    jitter = {host["host"]: host for host in document.get("jitter", {}).get("hosts", ())}
    hosts = tuple(
        compare_host(
            host,
            jitter.get(host["host"]),
            baseline.hosts.get(host["host"]),
            tolerances,
        )
        for host in document["hosts"]
    )
    return Against(baseline, document["profile"], dict(tolerances), hosts)


def exit_code(verify_status: int, jitter_status: int, against: Against) -> int:
    """verify's codes with the baseline as the judge of drift and jitter: 3 a host unreachable,
    2 bad input or a refused host, 1 a host failed the baseline, else 0 (known drift too)."""
    severe = [status for status in (verify_status, jitter_status) if status >= 2]
    return max([*severe, 1 if against.failed else 0])


# --- The document's ``against`` block ----------------------------------------------------


def _changes(changes: Iterable[KeyChange]) -> list[dict[str, Any]]:
    return [
        {
            "key": change.key,
            "status": change.status,
            "desired": change.desired,
            "actual": change.actual,
            "baseline_status": change.baseline_status,
            "baseline_actual": change.baseline_actual,
        }
        for change in changes
    ]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _cpu_block(cpu: CpuComparison) -> dict[str, Any]:
    return {
        "cpu": cpu.cpu,
        "percentiles": [
            {
                "name": change.name,
                "baseline_us": change.baseline_us,
                "now_us": change.now_us,
                "change_pct": _round(change.change_pct),
                "limit_pct": change.limit_pct,
                "regressed": change.regressed,
            }
            for change in cpu.percentiles
        ],
        "new_failed_rules": list(cpu.new_failed_rules),
        "known_failed_rules": list(cpu.known_failed_rules),
    }


def _host_block(host: HostComparison) -> dict[str, Any]:
    return {
        "host": host.host,
        "status": host.status,
        "in_baseline": host.in_baseline,
        "failures": host.failures,
        "new_drift": _changes(host.new_drift),
        "known_drift": _changes(host.known_drift),
        "fixed": _changes(host.fixed),
        "cpus": [_cpu_block(cpu) for cpu in host.cpus],
        "notes": list(host.notes),
    }


def against_block(against: Against) -> dict[str, Any]:
    """The verify document's ``against`` field (schemas/verify-v1.json)."""
    baseline = against.baseline
    statuses = [host.status for host in against.hosts]
    return {
        "baseline": baseline.name,
        "saved_at": baseline.saved_at,
        "quietcore_version": baseline.quietcore_version,
        "profile": dict(baseline.profile),
        "profile_changed": against.profile_changed,
        "regression": {field: against.tolerances.get(field) for field in TOLERANCE_FIELDS},
        "status": "fail" if against.failed else "pass",
        "summary": {
            "hosts": len(statuses),
            **{status: statuses.count(status) for status in HOST_VERDICTS},
        },
        "not_verified": against.not_verified,
        "notes": against.notes,
        "hosts": [_host_block(host) for host in against.hosts],
    }
