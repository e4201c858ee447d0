"""What apply, rollback and history report: ``quietcore.apply/v1`` JSON, rollback checks,
journal tables. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from quietcore.audit import HostAudit
from quietcore.converge.plan import HostPlan, RollbackCheck
from quietcore.converge.run import RunOutcome
from quietcore.profile.loaded import LoadedProfile
from quietcore.report.table import ABSENT

APPLY_SCHEMA = "quietcore.apply/v1"


def apply_document(
    loaded: LoadedProfile | None,
    plans: Sequence[HostPlan],
    outcomes: Sequence[RunOutcome],
    audits: Sequence[HostAudit],
    checks: Mapping[str, Sequence[RollbackCheck]] | None = None,
) -> dict[str, Any]:
    """One document for a whole run; ``changed`` is what molecule's idempotence step reads."""
    ran = {outcome.host: outcome for outcome in outcomes}
    verified = {audit.host: audit for audit in audits}
    hosts = []
    for plan in plans:
        outcome = ran.get(plan.host)
        made = plan.action_count if outcome is not None and outcome.ran and outcome.ok else 0
        audit = verified.get(plan.host)
        entry: dict[str, Any] = {
            "host": plan.host,
            "kind": plan.kind,
            "changes": made,
            "planned": plan.action_count,
            "rebooted": bool(outcome and outcome.rebooted),
            # Wall time of the run that changed it (all hosts run in parallel), reboot included.
            "elapsed_s": round(outcome.elapsed_s, 1) if outcome and outcome.ran else 0.0,
            "status": audit.status if audit else plan.audit.status,
            "error": plan.error or (outcome.error if outcome else None),
        }
        if checks is not None and plan.host in checks:
            entry["not_restored"] = [c.key for c in checks[plan.host] if not c.restored]
        hosts.append(entry)
    return {
        "schema": APPLY_SCHEMA,
        "profile": loaded.profile.name if loaded else None,
        "digest": loaded.digest if loaded else None,
        "changed": sum(host["changes"] for host in hosts),
        "hosts": hosts,
    }


def _value(value: str | None) -> str:
    return ABSENT if value is None else value


def rollback_checks_table(host: str, checks: Sequence[RollbackCheck]) -> RenderableType:
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("key", no_wrap=True)
    for column in ("snapshot", "actual", "restored"):
        table.add_column(column, overflow="fold")
    for check in checks:
        restored = Text("yes", style="green") if check.restored else Text("no", style="red")
        if not check.restored and check.saved.reboot:
            restored = Text("at next boot", style="yellow")
        table.add_row(check.key, _value(check.saved.before), _value(check.actual), restored)
    back = sum(1 for check in checks if check.restored)
    footer = Text(f"{back} of {len(checks)} keys back to their snapshot value")
    return Group(Text(f"{host}  rollback", style="bold"), table, footer)


def history_table(host: str, records: Sequence[Mapping[str, Any]]) -> RenderableType:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("time", "operator", "action", "profile", "key", "before", "after", "result"):
        table.add_column(column, overflow="fold")
    for record in records:
        profile = record.get("profile") or "-"
        digest = record.get("digest")
        table.add_row(
            str(record.get("time", "")),
            str(record.get("operator", "")),
            str(record.get("action", "")),
            f"{profile} {digest[:12]}" if digest else profile,
            str(record.get("key", "")),
            _value(record.get("before")),
            _value(record.get("after")),
            str(record.get("result", "")) + (" (reboot)" if record.get("reboot") else ""),
        )
    footer = Text(f"{len(records)} journal records" if records else "no journal records")
    return Group(Text(host, style="bold"), table, footer)
