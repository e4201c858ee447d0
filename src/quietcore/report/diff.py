"""What changed between two audits: two verify documents in, the differences out.

Hosts added and removed; per host in both, its status and every setting whose judgement
changed (started drifting, fixed, a drifting value that changed, any other status change),
and the keys the profile gained or lost. Settings are compared only where both audits read the
host: a host that was unreachable has no settings, not "every key removed". With jitter in
both, the p99 and longest gap of every CPU probed both times. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from quietcore.report.document import (
    NOT_AUDITED,
    Document,
    is_drifting,
    jitter_hosts,
    shown,
)
from quietcore.report.table import STATUS_STYLE

Change = Literal["started drifting", "fixed", "changed while drifting", "status changed"]
CHANGE_STYLE: dict[Change, str] = {
    "started drifting": "bold red",
    "fixed": "green",
    "changed while drifting": "yellow",
    "status changed": "cyan",
}


@dataclass(frozen=True)
class SettingChange:
    key: str
    change: Change
    before: Mapping[str, Any]  # the setting as each document has it
    after: Mapping[str, Any]


@dataclass(frozen=True)
class HostDiff:
    host: str
    status_before: str
    status_after: str
    settings: tuple[SettingChange, ...] = ()
    # Settings the profile declares now but did not before, and the other way round.
    added: tuple[Mapping[str, Any], ...] = ()
    removed: tuple[Mapping[str, Any], ...] = ()

    @property
    def changed(self) -> bool:
        return bool(
            self.status_before != self.status_after or self.settings or self.added or self.removed
        )


@dataclass(frozen=True)
class JitterDiff:
    """One CPU probed in both audits; durations in µs, None when no gap exceeded the
    threshold; ``passed`` None when the profile had no accept rules."""

    host: str
    cpu: int
    p99_before: float | None
    p99_after: float | None
    max_before: float | None
    max_after: float | None
    passed_before: bool | None
    passed_after: bool | None


@dataclass(frozen=True)
class ReportDiff:
    old: Document
    new: Document
    hosts_added: tuple[str, ...]
    hosts_removed: tuple[str, ...]
    hosts: tuple[HostDiff, ...]  # every host in both, in the new document's order
    jitter: tuple[JitterDiff, ...]

    @property
    def profile_changed(self) -> bool:
        return bool(self.old["profile"]["digest"] != self.new["profile"]["digest"])

    @property
    def changed(self) -> bool:
        """Anything an auditor must look at. Jitter numbers differ on every run, so only a CPU
        whose verdict flipped counts."""
        return bool(
            self.hosts_added
            or self.hosts_removed
            or self.profile_changed
            or any(host.changed for host in self.hosts)
            or any(cpu.passed_before != cpu.passed_after for cpu in self.jitter)
        )


def _setting_change(before: Mapping[str, Any], after: Mapping[str, Any]) -> Change | None:
    was, now = is_drifting(before), is_drifting(after)
    if not was and now:
        return "started drifting"
    if was and after["status"] == "ok":
        return "fixed"
    if was and now:
        values_before = (before["desired"], before["actual"], before["status"])
        values_after = (after["desired"], after["actual"], after["status"])
        return "changed while drifting" if values_before != values_after else None
    return "status changed" if before["status"] != after["status"] else None


def _host_diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> HostDiff:
    name, statuses = after["host"], (before["status"], after["status"])
    if any(status in NOT_AUDITED for status in statuses):
        return HostDiff(name, *statuses)
    old = {setting["key"]: setting for setting in before["settings"]}
    new = {setting["key"]: setting for setting in after["settings"]}
    changes = [
        SettingChange(key, change, old[key], setting)
        for key, setting in new.items()
        if key in old and (change := _setting_change(old[key], setting)) is not None
    ]
    return HostDiff(
        name,
        *statuses,
        settings=tuple(changes),
        added=tuple(setting for key, setting in new.items() if key not in old),
        removed=tuple(setting for key, setting in old.items() if key not in new),
    )


def _gate_ok(cpu: Mapping[str, Any]) -> bool | None:
    gate: Mapping[str, Any] | None = cpu["gate"]
    return None if gate is None else bool(gate["ok"])


def _jitter_diffs(old: Document, new: Document) -> list[JitterDiff]:
    old_cpus = {
        (host["host"], cpu["cpu"]): cpu for host in jitter_hosts(old) for cpu in host["cpus"]
    }
    diffs = []
    for host in jitter_hosts(new):
        for cpu in host["cpus"]:
            before = old_cpus.get((host["host"], cpu["cpu"]))
            if before is None:
                continue
            diffs.append(
                JitterDiff(
                    host["host"],
                    cpu["cpu"],
                    before["events"]["p99_us"],
                    cpu["events"]["p99_us"],
                    before["events"]["max_us"],
                    cpu["events"]["max_us"],
                    _gate_ok(before),
                    _gate_ok(cpu),
                )
            )
    return diffs


def diff_documents(old: Document, new: Document) -> ReportDiff:
    old_hosts = {host["host"]: host for host in old["hosts"]}
    new_names = {host["host"] for host in new["hosts"]}
    return ReportDiff(
        old,
        new,
        hosts_added=tuple(host["host"] for host in new["hosts"] if host["host"] not in old_hosts),
        hosts_removed=tuple(host["host"] for host in old["hosts"] if host["host"] not in new_names),
        hosts=tuple(
            _host_diff(old_hosts[host["host"]], host)
            for host in new["hosts"]
            if host["host"] in old_hosts
        ),
        jitter=tuple(_jitter_diffs(old, new)),
    )


# --- For tools --------------------------------------------------------------------------------


def _side(document: Document) -> dict[str, Any]:
    profile = document["profile"]
    return {
        "generated_at": document["generated_at"],
        "profile": {"name": profile["name"], "digest": profile["digest"]},
    }


def _judgement(setting: Mapping[str, Any]) -> dict[str, Any]:
    return {name: setting[name] for name in ("desired", "actual", "status")}


def _keyed_judgement(setting: Mapping[str, Any]) -> dict[str, Any]:
    return {"key": setting["key"], **_judgement(setting)}


def _setting_json(change: SettingChange) -> dict[str, Any]:
    return {
        "key": change.key,
        "change": change.change,
        "before": _judgement(change.before),
        "after": _judgement(change.after),
    }


def _before_after(before: Any, after: Any) -> dict[str, Any]:
    return {"before": before, "after": after}


def diff_json(diff: ReportDiff) -> dict[str, Any]:
    """Only what changed: hosts whose status, settings or keys did not change are left out."""
    return {
        "old": _side(diff.old),
        "new": _side(diff.new),
        "changed": diff.changed,
        "profile_changed": diff.profile_changed,
        "hosts_added": list(diff.hosts_added),
        "hosts_removed": list(diff.hosts_removed),
        "hosts": [
            {
                "host": host.host,
                "status": _before_after(host.status_before, host.status_after),
                "settings": [_setting_json(change) for change in host.settings],
                "keys_added": [_keyed_judgement(setting) for setting in host.added],
                "keys_removed": [_keyed_judgement(setting) for setting in host.removed],
            }
            for host in diff.hosts
            if host.changed
        ],
        "jitter": [
            {
                "host": cpu.host,
                "cpu": cpu.cpu,
                "p99_us": _before_after(cpu.p99_before, cpu.p99_after),
                "max_us": _before_after(cpu.max_before, cpu.max_after),
                "passed": _before_after(cpu.passed_before, cpu.passed_after),
            }
            for cpu in diff.jitter
        ],
    }


# --- For people -------------------------------------------------------------------------------

NONE = "-"


def _status(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def _judged(setting: Mapping[str, Any]) -> Text:
    """``1 (drift)``: the value and how it was judged."""
    return Text.assemble(shown(setting["actual"]), " (", _status(setting["status"]), ")")


DIGEST_SHOWN = len("sha256:") + 12


def _heading(diff: ReportDiff) -> RenderableType:
    table = Table(box=None, pad_edge=False, show_header=False)
    for side, document in (("before", diff.old), ("after", diff.new)):
        profile = document["profile"]
        table.add_row(
            Text(side, style="bold"),
            document["generated_at"],
            profile["name"],
            profile["digest"][:DIGEST_SHOWN],
            f"{len(document['hosts'])} host(s)",
        )
    if not diff.profile_changed:
        return table
    return Group(table, Text("the profile changed between the audits", style="yellow"))


def _hosts_line(label: str, hosts: Sequence[str], style: str) -> Text:
    return Text.assemble((f"hosts {label}: ", style), ", ".join(hosts))


def _settings_table(hosts: Sequence[HostDiff]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("host", "change", "key", "before", "after"):
        table.add_column(column, overflow="fold", no_wrap=column == "key")
    for host in hosts:
        name = host.host
        if host.status_before != host.status_after:
            table.add_row(
                name,
                Text("host status", style="bold"),
                "",
                _status(host.status_before),
                _status(host.status_after),
            )
            name = ""
        for change in host.settings:
            table.add_row(
                name,
                Text(change.change, style=CHANGE_STYLE[change.change]),
                change.key,
                _judged(change.before),
                _judged(change.after),
            )
            name = ""
        for setting in host.added:
            table.add_row(
                name, Text("key added", style="cyan"), setting["key"], "", _judged(setting)
            )
            name = ""
        for setting in host.removed:
            table.add_row(
                name, Text("key removed", style="dim"), setting["key"], _judged(setting), ""
            )
            name = ""
    return table


def _us(value: float | None) -> str:
    return NONE if value is None else f"{value:.1f}"


def _trend(before: float | None, after: float | None) -> Text:
    text = f"{_us(before)} → {_us(after)}"
    if before is None or after is None or after == before:
        return Text(text)
    return Text(text, style="green" if after < before else "red")


def _verdict(passed: bool | None) -> Text:
    if passed is None:
        return Text(NONE)
    return Text("PASS", style="green") if passed else Text("FAIL", style="bold red")


def _jitter_table(cpus: Sequence[JitterDiff]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("host")
    table.add_column("cpu", justify="right")
    table.add_column("p99 µs", justify="right")
    table.add_column("max µs", justify="right")
    table.add_column("verdict")
    for cpu in cpus:
        table.add_row(
            cpu.host,
            str(cpu.cpu),
            _trend(cpu.p99_before, cpu.p99_after),
            _trend(cpu.max_before, cpu.max_after),
            Text.assemble(_verdict(cpu.passed_before), " → ", _verdict(cpu.passed_after)),
        )
    return table


def diff_table(diff: ReportDiff) -> RenderableType:
    parts: list[RenderableType] = [_heading(diff)]
    if diff.hosts_added:
        parts.append(_hosts_line("added", diff.hosts_added, "bold green"))
    if diff.hosts_removed:
        parts.append(_hosts_line("removed", diff.hosts_removed, "bold yellow"))
    changed_hosts = [host for host in diff.hosts if host.changed]
    if changed_hosts:
        parts.append(_settings_table(changed_hosts))
    if diff.jitter:
        parts.append(Text("jitter, before → after", style="bold"))
        parts.append(_jitter_table(diff.jitter))
    if not diff.changed:
        parts.append(Text("nothing changed", style="green"))
    return Group(*parts)
