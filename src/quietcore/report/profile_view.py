"""Views of a profile: merged YAML, the built-in list, and its concrete settings on a host."""

from __future__ import annotations

from collections.abc import Sequence

import yaml
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from quietcore.audit import HostAudit
from quietcore.profile.cpuset import format_cpulist
from quietcore.profile.load import BuiltinProfile
from quietcore.profile.loaded import LoadedProfile


def profile_yaml(loaded: LoadedProfile) -> RenderableType:
    body = yaml.safe_dump(
        loaded.profile.model_dump(mode="json", exclude_defaults=True),
        sort_keys=False,
        default_flow_style=False,
    )
    chain = " <- ".join(loaded.files)
    return Group(
        Text(f"# {loaded.profile.name} (sha256:{loaded.digest[:16]}...)", style="bold"),
        Text(f"# merged from: {chain}", style="dim"),
        Text(body),
    )


def builtin_table(builtins: Sequence[BuiltinProfile]) -> RenderableType:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("name", "extends", "summary"):
        table.add_column(column, overflow="fold")
    for builtin in builtins:
        table.add_row(builtin.name, builtin.extends or "-", builtin.summary or "")
    return table


def resolved_table(loaded: LoadedProfile, audit: HostAudit) -> RenderableType:
    heading = Text.assemble((f"{loaded.profile.name}", "bold"), f" resolved for {audit.host}")
    lines: list[RenderableType] = [heading]
    if audit.topology is not None:
        lines.append(Text(f"online CPUs     {format_cpulist(audit.topology.online)}"))
    if audit.cpus is not None:
        lines.append(Text(f"reserved CPUs   {format_cpulist(audit.cpus.reserved) or '-'}"))
        lines.append(Text(f"isolated CPUs   {format_cpulist(audit.cpus.isolated) or '-'}"))
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("key", "desired", "reboot", "declared at"):
        table.add_column(column, overflow="fold")
    for result in audit.results:
        setting = result.setting
        table.add_row(
            setting.key,
            setting.desired,
            "yes" if setting.reboot_required else "",
            setting.source or setting.field,
        )
    lines += [table, Text(f"{len(audit.results)} settings")]
    return Group(*lines)
