"""Baselines for people: ``verify --against``'s summary, ``baseline list`` and ``show``.

Pure: documents (the verify document's ``against`` block, baseline manifests) in, rich
renderables out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from quietcore.baseline.compare import PERCENTILES
from quietcore.report.table import STATUS_STYLE

VERDICT_STYLE = {"pass": "green", "fail": "bold red", "not_compared": "bold magenta"}
NONE = "-"


def verdict(status: str) -> Text:
    return Text(status.replace("_", " "), style=VERDICT_STYLE.get(status, ""))


def short_digest(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


def _us(value: float | None) -> str:
    return NONE if value is None else f"{value:.1f}"


def _change(value: float | None) -> str:
    return NONE if value is None else f"{value:+.0f}%"


def _percentile_rows(host: Mapping[str, Any]) -> list[list[str | Text]]:
    """The judged percentiles of every CPU (p99 when the profile judges none)."""
    rows: list[list[str | Text]] = []
    for cpu in host["cpus"]:
        changes = cpu["percentiles"]
        judged = [change for change in changes if change["limit_pct"] is not None]
        for change in judged or [change for change in changes if change["name"] == "p99"]:
            limit = change["limit_pct"]
            rows.append(
                [
                    host["host"],
                    f"cpu{cpu['cpu']}",
                    change["name"],
                    _us(change["baseline_us"]),
                    _us(change["now_us"]),
                    _change(change["change_pct"]),
                    NONE if limit is None else f"+{limit:g}%",
                    verdict("fail") if change["regressed"] else Text("ok", style="green"),
                ]
            )
    return rows


def _jitter_table(hosts: Sequence[Mapping[str, Any]]) -> Table | None:
    rows = [row for host in hosts for row in _percentile_rows(host)]
    if not rows:
        return None
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("host", "cpu", "percentile", "baseline µs", "now µs", "change", "limit", ""):
        table.add_column(column, justify="right" if "µs" in column else "left")
    for row in rows:
        table.add_row(*row)
    return table


def _host_lines(host: Mapping[str, Any]) -> list[Text]:
    lines = [Text.assemble("  ", (host["host"], "bold"), "  ", verdict(host["status"]))]
    lines += [Text(f"    {failure}", style="red") for failure in host["failures"]]
    known = host["known_drift"]
    if known:
        keys = ", ".join(change["key"] for change in known)
        lines.append(Text(f"    known drift (in the baseline too, not failed): {keys}"))
    if host["fixed"]:
        keys = ", ".join(change["key"] for change in host["fixed"])
        lines.append(Text(f"    fixed since the baseline: {keys}", style="green"))
    lines += [Text(f"    note: {note}", style="dim") for note in host["notes"]]
    return lines


def against_summary(block: Mapping[str, Any]) -> RenderableType:
    """The ``against`` block of a verify document, short: a verdict per host with every
    reason, then the judged percentiles of every CPU, baseline vs now."""
    profile = block["profile"]
    heading = Text.assemble(
        ("against baseline ", "bold"),
        (block["baseline"], "bold"),
        f" (saved {block['saved_at']}, profile {profile['name']} "
        f"{short_digest(profile['digest'])}): ",
        verdict(block["status"]),
    )
    parts: list[RenderableType] = [heading]
    parts += [Text(f"  note: {note}", style="yellow") for note in block["notes"]]
    for host in block["hosts"]:
        parts += _host_lines(host)
    table = _jitter_table(block["hosts"])
    if table is not None:
        parts.append(table)
    return Group(*parts)


def baselines_table(listings: Sequence[Mapping[str, Any]]) -> RenderableType:
    """``quietcore baseline list``: one row per saved baseline."""
    if not listings:
        return Text("no baselines saved yet (quietcore baseline save --name NAME ...)")
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("name", "saved", "profile", "digest", "hosts", "jitter"):
        table.add_column(column)
    for listing in listings:
        if "error" in listing:
            table.add_row(listing["name"], Text(listing["error"], style="red"))
            continue
        table.add_row(
            listing["name"],
            listing["saved_at"],
            listing["profile"]["name"],
            short_digest(listing["profile"]["digest"]),
            str(len(listing["hosts"])),
            "yes" if listing["jitter"] else "no",
        )
    return table


def baseline_overview(listing: Mapping[str, Any]) -> RenderableType:
    """``quietcore baseline show`` and ``save``: which run, and each host's state then."""
    profile = listing["profile"]
    facts = Text(
        f"baseline {listing['name']}: saved {listing['saved_at']} by quietcore "
        f"{listing['quietcore_version']}\nprofile {profile['name']} {profile['digest']}\n"
        f"files {', '.join(profile['files'])}"
    )
    if not listing["jitter"]:
        facts.append("\nno jitter: the profile has no verify.jitter (drift is compared only)")
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("host", "status", "drift", "jitter", "file"):
        table.add_column(column)
    for host in listing["hosts"]:
        table.add_row(
            host["host"],
            Text(host["status"], style=STATUS_STYLE.get(host["status"], "")),
            str(host["drift"]),
            host["jitter"] or NONE,
            host["file"],
        )
    return Group(facts, table)


def percentiles_table(document: Mapping[str, Any]) -> RenderableType | None:
    """Each measured CPU's percentiles in a baseline's verify document, or None."""
    jitter = document.get("jitter")
    if jitter is None:
        return None
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("host", "cpu", "events", *(f"{name} µs" for name, _, _ in PERCENTILES)):
        table.add_column(column, justify="right" if column != "host" else "left")
    for host in jitter["hosts"]:
        for cpu in host["cpus"]:
            events = cpu["events"]
            table.add_row(
                host["host"],
                str(cpu["cpu"]),
                str(events["count"]),
                *(_us(events[field]) for _, field, _ in PERCENTILES),
            )
    return table
