"""Human-readable verify output: one table per host and a summary line."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from quietcore import console
from quietcore.audit import HostAudit
from quietcore.drift import STATUS_ORDER, count_statuses
from quietcore.profile.cpuset import format_cpulist

STATUS_STYLE = {
    "ok": "green",
    "drift": "bold red",
    "missing": "red",
    "unsupported": "yellow",
    "immovable": "cyan",
    "refused": "bold red",
    "unreachable": "bold magenta",
}
ABSENT = "(absent)"


def _status(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def host_table(audit: HostAudit, *, problems_only: bool = False) -> RenderableType:
    heading = Text.assemble((audit.host, "bold"), "  ", _status(audit.status))
    if audit.cpus is not None and (audit.cpus.reserved or audit.cpus.isolated):
        heading.append(
            f"  reserved {format_cpulist(audit.cpus.reserved) or '-'}"
            f"  isolated {format_cpulist(audit.cpus.isolated) or '-'}"
        )
    if audit.error:
        return Group(heading, Text(audit.error, style=STATUS_STYLE.get(audit.status, "")))
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("key", no_wrap=True)
    # "boot": the value only takes effect at boot (kernel command line and its effects).
    for column in ("desired", "actual", "status", "boot", "note"):
        table.add_column(column, overflow="fold")
    for result in audit.results:
        if problems_only and result.status in ("ok", "immovable"):
            continue
        table.add_row(
            result.setting.key,
            result.setting.desired,
            ABSENT if result.actual is None else result.actual,
            _status(result.status),
            "yes" if result.setting.reboot_required else "",
            result.reason,
        )
    counts = count_statuses(audit.results)
    summary = ", ".join(f"{counts[status]} {status}" for status in STATUS_ORDER if counts[status])
    footer = Text(f"{len(audit.results)} settings: {summary or 'none declared'}")
    return Group(heading, table, footer)


def fleet_summary(audits: Sequence[HostAudit]) -> Text:
    parts = []
    for status in ("ok", "drift", "refused", "unreachable"):
        count = sum(1 for audit in audits if audit.status == status)
        if count:
            parts.append(Text(f"{count} {status}", style=STATUS_STYLE[status]))
    return Text.assemble(f"{len(audits)} host(s): ", Text(", ").join(parts))


def show_audits(
    audits: Sequence[HostAudit],
    problems_only: bool,
    output: Path | None,
    extra: Sequence[RenderableType] = (),
) -> None:
    """Every host's table and the fleet's summary (then ``extra``), on the terminal or as plain
    text in ``output``."""
    renderables: list[RenderableType] = [
        host_table(audit, problems_only=problems_only) for audit in audits
    ]
    renderables.append(fleet_summary(audits))
    renderables += extra
    if output is None:
        for renderable in renderables:
            console.show(renderable)
        return
    output.write_text(console.render_plain(renderables))
    console.note(f"wrote {output}")
