"""The HTML report's baseline parts (``verify --against``): the verdict in the summary, and per
host what is new since the baseline, its known drift, and every CPU's percentiles then and
now. Pure: the document's ``against`` block in, escaped HTML out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from quietcore.report.document import shown
from quietcore.report.html_parts import NONE, badge, cell, fact_list, table

PERCENTILE_HEADERS = ["cpu", "percentile", "verdict", "baseline µs", "now µs", "change", "limit"]


def _code(text: str | None) -> str:
    return f"<code>{escape(shown(text))}</code>"


def _tolerances(regression: Mapping[str, float | None]) -> str:
    judged = [
        f"{name.removesuffix('_pct').replace('_', '.')} +{limit:g}%"
        for name, limit in regression.items()
        if limit is not None
    ]
    return ", ".join(judged) if judged else "none (no percentile is judged)"


def against_summary(block: Mapping[str, Any]) -> str:
    """The summary card's part: which baseline, the verdict, and the notes."""
    profile = block["profile"]
    counts = block["summary"]
    tally = ", ".join(
        f"{counts[status]} {status.replace('_', ' ')}"
        for status in ("pass", "fail", "not_compared")
        if counts[status]
    )
    facts = [
        ("baseline", f"<strong>{escape(block['baseline'])}</strong> {badge(block['status'])}"),
        ("saved", escape(f"{block['saved_at']} by quietcore {block['quietcore_version']}")),
        ("its profile", f"{escape(profile['name'])} <code>{escape(profile['digest'])}</code>"),
        ("tolerances", escape(_tolerances(block["regression"]))),
        ("hosts", escape(tally or "none")),
    ]
    notes = "".join(f'<p class="note warning">{escape(note)}</p>' for note in block["notes"])
    return f"<h3>Against a baseline</h3>{fact_list(facts)}{notes}"


def _changes_table(changes: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        [
            f"<td>{_code(change['key'])}</td>",
            f"<td>{NONE if change['baseline_status'] is None else badge(change['baseline_status'])}"
            f'<span class="reason">{escape(shown(change["baseline_actual"]))}</span></td>',
            f"<td>{badge(change['status'])}"
            f'<span class="reason">{escape(shown(change["actual"]))}</span></td>',
            f'<td class="value">{_code(change["desired"])}</td>',
        ]
        for change in changes
    ]
    return table(["key", "baseline", "now", "desired"], rows, widths=(40, 20, 20, 20))


def _change(value: float | None) -> str:
    return NONE if value is None else f"{value:+.0f}%"


def _us(value: float | None) -> str:
    return "none" if value is None else f"{value:.1f}"


def _percentile_rows(cpus: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    rows = []
    for cpu in cpus:
        for change in cpu["percentiles"]:
            limit = change["limit_pct"]
            judged = badge("fail" if change["regressed"] else "pass")
            verdict = NONE if limit is None else judged
            rows.append(
                [
                    cell(str(cpu["cpu"])),
                    cell(change["name"]),
                    f"<td>{verdict}</td>",
                    cell(_us(change["baseline_us"]), "num"),
                    cell(_us(change["now_us"]), "num"),
                    cell(_change(change["change_pct"]), "num"),
                    cell(NONE if limit is None else f"+{limit:g}%", "num"),
                ]
            )
    return rows


def against_host(block: Mapping[str, Any], host: Mapping[str, Any]) -> str:
    """One host's comparison with the baseline: verdict and reasons, new drift, the
    percentiles of every CPU (baseline, now, change, limit), known drift folded away."""
    parts = [f"<h3>Baseline {escape(block['baseline'])} {badge(host['status'])}</h3>"]
    if host["failures"]:
        items = "".join(f"<li>{escape(failure)}</li>" for failure in host["failures"])
        parts.append(f'<ul class="failures">{items}</ul>')
    elif host["status"] == "pass":
        parts.append('<p class="clean">Nothing new since the baseline.</p>')
    parts += [f'<p class="note">{escape(note)}</p>' for note in host["notes"]]
    if host["new_drift"]:
        parts.append(f"<h3>New drift: {len(host['new_drift'])} key(s)</h3>")
        parts.append(_changes_table(host["new_drift"]))
    rows = _percentile_rows(host["cpus"])
    if rows:
        parts.append("<h3>Jitter: baseline vs now</h3>")
        parts.append(table(PERCENTILE_HEADERS, rows, numeric=4))
    for changes, what in (
        (host["known_drift"], "of known drift (drifting in the baseline too: not failed)"),
        (host["fixed"], "fixed since the baseline"),
    ):
        if changes:
            parts.append(
                f"<details><summary>{len(changes)} key(s) {escape(what)}</summary>"
                f"{_changes_table(changes)}</details>"
            )
    return "".join(parts)
