"""Plans for people (one table per host) and for tools (``quietcore.plan/v1`` JSON). Pure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from quietcore.converge.plan import Change, ChangeKind, HostPlan
from quietcore.report.table import ABSENT, STATUS_STYLE

PLAN_SCHEMA = "quietcore.plan/v1"
HOW = {
    "now": "now",
    "at-boot": "at next boot",
    "by-file": "with its file",
    "effect": "follows",
    "manual": "cannot",
}
HOW_STYLE: dict[ChangeKind, str] = {
    "now": "bold",
    "at-boot": "yellow",
    "by-file": "bold",
    "effect": "dim",
    "manual": "red",
}


def _value(value: str | None) -> str:
    return ABSENT if value is None else value


def summary_line(plan: HostPlan) -> str:
    """``5 changes now, 2 files; 3 keys at next boot (reboot needed); 1 cannot be set``."""
    if plan.error:
        return plan.error
    kinds = [change.kind for change in plan.changes]
    parts = [f"{len(plan.now)} changes now, {len(plan.files)} files"]
    if kinds.count("at-boot") or plan.needs_reboot:
        parts.append(f"{kinds.count('at-boot')} keys at next boot (reboot needed)")
    if kinds.count("manual"):
        parts.append(f"{kinds.count('manual')} cannot be set here")
    if plan.action_count == 0 and not plan.needs_reboot and not kinds.count("manual"):
        return "no changes: the host already runs the profile"
    return "; ".join(parts)


def _change_row(table: Table, change: Change) -> None:
    how = Text(HOW[change.kind], style=HOW_STYLE[change.kind])
    note = change.reason or (f"{change.field} ({change.source})" if change.source else "")
    table.add_row(change.key, _value(change.before), _value(change.after), how, note)


def plan_table(plan: HostPlan) -> RenderableType:
    title = f"{plan.host}  {plan.kind}"
    if plan.error:
        style = STATUS_STYLE.get(plan.audit.status, "")
        return Group(Text(title, style="bold"), Text(plan.error, style=style))
    parts: list[RenderableType] = [Text(title, style="bold")]
    if plan.changes:
        table = Table(box=None, pad_edge=False, header_style="bold")
        table.add_column("key", no_wrap=True)
        for column in ("before", "after", "when", "from"):
            table.add_column(column, overflow="fold")
        for change in plan.changes:
            _change_row(table, change)
        parts.append(table)
    if plan.files:
        files = Table(box=None, pad_edge=False, header_style="bold")
        for column in ("file", "action", "when"):
            files.add_column(column, overflow="fold")
        for file in plan.files:
            files.add_row(file.path, file.action, "at next boot" if file.reboot else "now")
        parts.append(files)
    if plan.snapshot is not None:
        first = plan.existing is None
        parts.append(
            Text(
                f"snapshot: {'saved before the first change' if first else 'grows'} "
                f"({len(plan.snapshot.keys)} keys, {len(plan.snapshot.files)} files)",
                style="dim",
            )
        )
    parts.append(Text(summary_line(plan)))
    return Group(*parts)


def fleet_line(plans: Sequence[HostPlan]) -> Text:
    changes = sum(plan.action_count for plan in plans)
    reboots = sum(1 for plan in plans if plan.needs_reboot)
    failed = sum(1 for plan in plans if plan.error)
    text = f"{len(plans)} host(s): {changes} changes, {reboots} need a reboot"
    return Text(text + (f", {failed} cannot be planned" if failed else ""))


def plan_document(plans: Sequence[HostPlan]) -> dict[str, Any]:
    return {
        "schema": PLAN_SCHEMA,
        "hosts": [
            {
                "host": plan.host,
                "kind": plan.kind,
                "status": plan.audit.status,
                "error": plan.error,
                "changes": [
                    {
                        "key": change.key,
                        "before": change.before,
                        "after": change.after,
                        "how": change.kind,
                        "reboot": change.reboot,
                        "field": change.field,
                        "source": change.source,
                        "reason": change.reason,
                    }
                    for change in plan.changes
                ],
                "files": [
                    {"path": file.path, "action": file.action, "reboot": file.reboot}
                    for file in plan.files
                ],
                "action_count": plan.action_count,
                "needs_reboot": plan.needs_reboot,
            }
            for plan in plans
        ],
    }
