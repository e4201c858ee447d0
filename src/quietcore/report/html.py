"""A verify document as one self-contained HTML page, for auditors.

Summary first (hosts by status, the profile and when), then one section per host, problems
first: its drift as a table, everything else folded away, and its jitter with the plots when
it was measured. Inline CSS and inline SVG only: no script, no font, no image or link to
fetch, so the file reads the same when mailed or archived. Every text from the document is
escaped, and the page is well-formed XML as well as HTML (void elements closed), so tools
and tests can read it with an XML parser. Pure.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from quietcore.probes.result import HostJitter
from quietcore.report.document import (
    HOST_STATUSES,
    NOT_AUDITED,
    Document,
    failed_rules,
    generated_at,
    is_drifting,
    jitter_hosts,
    shown,
)
from quietcore.report.html_against import against_host, against_summary
from quietcore.report.html_parts import NONE, badge, cell, error_box, fact_list, table, tile
from quietcore.report.jitter_json import hosts_from_document
from quietcore.report.jitter_plot import histogram_svg, timeline_svg
from quietcore.report.jitter_view import span

# Problems first: a reader scrolls past healthy hosts, not to the broken ones.
SECTION_ORDER = ("unreachable", "refused", "drift", "ok")
SETTING_ORDER = ("drift", "missing", "unsupported", "immovable", "ok")
JITTER_STATUSES = ("pass", "fail", "measured", "unreachable", "refused", "failed")

CSS = """
:root { color-scheme: light; --ink: #1f2328; --muted: #59636e; --line: #d1d9e0;
  --soft: #f6f8fa; --accent: #0b5cad; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans",
  sans-serif; color: var(--ink); background: #eef1f4; }
main { max-width: 1180px; margin: 0 auto; padding: 28px 32px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 0; display: flex; align-items: center; gap: 12px; }
h3 { font-size: 16px; margin: 22px 0 8px; }
code, .mono { font-family: "DejaVu Sans Mono", ui-monospace, Menlo, Consolas, monospace;
  font-size: 13px; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 10px;
  padding: 20px 24px; margin: 0 0 20px; }
.subtitle { color: var(--muted); margin: 0 0 16px; }
.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 18px; margin: 0; }
.facts dt { color: var(--muted); }
.facts dd { margin: 0; overflow-wrap: anywhere; }
.tiles { display: flex; flex-wrap: wrap; gap: 12px; margin: 18px 0 4px; }
.tile { min-width: 128px; padding: 10px 16px; border-radius: 8px; border: 1px solid var(--line);
  background: var(--soft); }
.tile .count { display: block; font-size: 28px; font-weight: 700; line-height: 1.2; }
.tile .label { color: var(--muted); font-size: 13px; text-transform: uppercase;
  letter-spacing: .04em; }
.tile.zero { opacity: .55; }
.badge { display: inline-block; padding: 1px 10px; border-radius: 999px; font-size: 12.5px;
  font-weight: 600; letter-spacing: .02em; border: 1px solid transparent; white-space: nowrap;
  vertical-align: middle; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 4px; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { font-size: 13px; font-weight: 600; color: var(--muted); background: var(--soft); }
table.fixed { table-layout: fixed; }
table.fixed td { overflow-wrap: anywhere; }
tbody tr:nth-child(even) td { background: #fafbfc; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.value { overflow-wrap: anywhere; }
.reason { display: block; color: var(--muted); font-size: 13px; }
.boot { color: var(--muted); font-size: 12px; margin-left: 6px; }
.host { border-left: 6px solid var(--line); }
.host-meta { color: var(--muted); margin: 6px 0 10px; }
.error { padding: 10px 14px; border-radius: 8px; margin: 10px 0; overflow-wrap: anywhere; }
.clean { color: #1a7f37; margin: 8px 0; }
details { margin: 10px 0 0; }
summary { cursor: pointer; color: var(--accent); }
.note { color: var(--muted); font-size: 13.5px; margin: 4px 0; }
.warning { color: #8a5a00; }
figure { margin: 14px 0 0; }
figure svg { display: block; max-width: 100%; height: auto; border: 1px solid var(--line);
  border-radius: 6px; margin: 0 0 10px; }
ul.failures { margin: 6px 0 10px; padding-left: 22px; color: #a40e26; }
footer { color: var(--muted); font-size: 13px; text-align: center; margin-top: 28px; }
"""

# (text, background, border) per status: dark text on a light tint reads in colour and grey.
PALETTE = {
    "ok": ("#116329", "#dafbe1", "#9ad4a8"),
    "pass": ("#116329", "#dafbe1", "#9ad4a8"),
    "drift": ("#a40e26", "#ffebe9", "#f5a8a8"),
    "fail": ("#a40e26", "#ffebe9", "#f5a8a8"),
    "failed": ("#a40e26", "#ffebe9", "#f5a8a8"),
    "missing": ("#a40e26", "#fff0ee", "#f5b8b0"),
    "refused": ("#953800", "#fff1e5", "#f0b98a"),
    "unreachable": ("#6e2ba8", "#f5ecff", "#cfb2f0"),
    "unsupported": ("#7d4e00", "#fff8c5", "#e5cf7a"),
    "immovable": ("#0b6a7a", "#e3f6f8", "#9fd3db"),
    "measured": ("#3d4752", "#eef1f4", "#c8d0d8"),
    "not_compared": ("#6e2ba8", "#f5ecff", "#cfb2f0"),
}


def _palette_css() -> str:
    rules = []
    for status, (text, background, border) in PALETTE.items():
        rules.append(
            f".s-{status} {{ color: {text}; background: {background}; border-color: {border}; }}"
        )
        rules.append(f".host-{status} {{ border-left-color: {text}; }}")
    return "\n".join(rules)


def _when(document: Document) -> str:
    return generated_at(document).strftime("%Y-%m-%d %H:%M:%S %Z").strip()


# --- Summary ----------------------------------------------------------------------------------


def _summary(document: Document) -> str:
    profile = document["profile"]
    summary = document["summary"]
    facts = [
        ("profile", f"<strong>{escape(profile['name'])}</strong>"),
        ("digest", f"<code>{escape(profile['digest'])}</code>"),
        ("files", "<br/>".join(f"<code>{escape(path)}</code>" for path in profile["files"])),
        ("generated", escape(_when(document))),
    ]
    timing = document.get("timing")
    if timing is not None:
        facts.append(("wall time", escape(f"{timing['wall_s']:.2f} s for the whole run")))
    facts.append(("quietcore", escape(document["quietcore_version"])))
    tiles = [tile(summary["hosts"], "hosts", None)]
    tiles += [tile(summary[status], status, status) for status in HOST_STATUSES]
    parts = [
        '<section class="card" id="summary">',
        f"<h1>Audit of {summary['hosts']} host(s) against {escape(profile['name'])}</h1>",
        f'<p class="subtitle">quietcore verify · {escape(_when(document))}</p>',
        f'<div class="tiles">{"".join(tiles)}</div>',
    ]
    jitter = document.get("jitter")
    if jitter is not None:
        counts = jitter["summary"]
        jitter_tiles = [
            tile(counts[status], f"jitter {status}", status)
            for status in JITTER_STATUSES
            if counts[status] or status in ("pass", "fail")
        ]
        parts.append(f'<div class="tiles">{"".join(jitter_tiles)}</div>')
    against = document.get("against")
    if against is not None:
        parts.append(against_summary(against))
    parts += [f"<h3>Profile</h3>{fact_list(facts)}", _overview(document), "</section>"]
    return "".join(parts)


def _jitter_status(document: Document) -> dict[str, str]:
    return {host["host"]: host["status"] for host in jitter_hosts(document)}


def _against_status(document: Document) -> dict[str, str]:
    against = document.get("against")
    return {} if against is None else {host["host"]: host["status"] for host in against["hosts"]}


def _overview(document: Document) -> str:
    jitter = _jitter_status(document)
    against = _against_status(document)
    headers = ["host", "status"]
    if jitter:
        headers.append("jitter")
    if against:
        headers.append("baseline")
    headers += [*SETTING_ORDER, "read in"]
    rows = []
    for index, host in _ordered(document["hosts"]):
        row = [
            f'<td><a href="#host-{index}">{escape(host["host"])}</a></td>',
            f"<td>{badge(host['status'])}</td>",
        ]
        for statuses in (jitter, against):
            if statuses:
                status = statuses.get(host["host"])
                row.append(f"<td>{NONE if status is None else badge(status)}</td>")
        audited = host["status"] not in NOT_AUDITED
        row += [
            cell(str(host["summary"][status]) if audited else NONE, "num")
            for status in SETTING_ORDER
        ]
        row.append(cell(f"{host['elapsed_s']:.2f} s", "num"))
        rows.append(row)
    return "<h3>Hosts</h3>" + table(headers, rows, numeric=len(SETTING_ORDER) + 1)


def _ordered(hosts: Sequence[Mapping[str, Any]]) -> list[tuple[int, Mapping[str, Any]]]:
    """Hosts with their index in the document (their anchor), problems first."""
    return sorted(enumerate(hosts), key=lambda item: SECTION_ORDER.index(item[1]["status"]))


# --- One host ---------------------------------------------------------------------------------


def _host_meta(host: Mapping[str, Any]) -> str:
    parts = []
    topology = host["topology"]
    if topology is not None:
        parts += [
            f"kernel {topology['kernel']}",
            f"CPUs {topology['online_cpus']}",
            f"{topology['numa_nodes']} NUMA node(s)",
            "SMT on" if topology["smt"] else "SMT off",
        ]
        if topology["hypervisor"]:
            parts.append(f"VM ({topology['hypervisor']})")
    cpus = host["cpus"]
    if cpus is not None:
        parts.append(f"reserved {cpus['reserved'] or NONE} · isolated {cpus['isolated'] or NONE}")
    verb = "gave up after" if host["status"] == "unreachable" else "read in"
    parts.append(f"{verb} {host['elapsed_s']:.2f} s")
    return f'<p class="host-meta">{escape(" · ".join(parts))}</p>'


def _key(setting: Mapping[str, Any]) -> str:
    boot = '<span class="boot">at boot</span>' if setting["reboot_required"] else ""
    return f"<td><code>{escape(setting['key'])}</code>{boot}</td>"


def _actual(setting: Mapping[str, Any]) -> str:
    reason = setting["reason"]
    note = f'<span class="reason">{escape(reason)}</span>' if reason else ""
    return f'<td class="value"><code>{escape(shown(setting["actual"]))}</code>{note}</td>'


def _desired(setting: Mapping[str, Any]) -> str:
    return f'<td class="value"><code>{escape(shown(setting["desired"]))}</code></td>'


def _drift_table(settings: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        [
            _key(setting),
            _desired(setting),
            _actual(setting),
            f"<td>{badge(setting['status'])}</td>",
            f'<td class="value"><code>{escape(setting["field"])}</code>'
            f'<span class="reason">{escape(setting["source"])}</span></td>',
        ]
        for setting in settings
    ]
    headers = ["key", "desired", "actual", "status", "declared by"]
    return table(headers, rows, widths=(28, 14, 22, 9, 27))


def _other_settings(settings: Sequence[Mapping[str, Any]], what: str) -> str:
    """Folded: ``what`` the reader unfolds, e.g. ``3 other setting(s)``."""
    counts = Counter(setting["status"] for setting in settings)
    tally = ", ".join(f"{counts[status]} {status}" for status in SETTING_ORDER if counts[status])
    rows = [
        [
            _key(setting),
            _desired(setting),
            _actual(setting),
            f"<td>{badge(setting['status'])}</td>",
        ]
        for setting in sorted(settings, key=lambda setting: SETTING_ORDER.index(setting["status"]))
    ]
    return (
        f"<details><summary>{escape(what)}: {escape(tally)}</summary>"
        f"{table(['key', 'desired', 'actual', 'status'], rows, widths=(36, 22, 31, 11))}</details>"
    )


def _settings(host: Mapping[str, Any]) -> str:
    settings = host["settings"]
    if not settings:
        return ""
    drifting = [setting for setting in settings if is_drifting(setting)]
    others = [setting for setting in settings if not is_drifting(setting)]
    if not drifting:
        return (
            f'<p class="clean">No drift: every setting as declared or not applicable here.</p>'
            f"{_other_settings(others, f'all {len(others)} setting(s)')}"
        )
    parts = [
        f"<h3>Drift: {len(drifting)} of {len(settings)} settings</h3>",
        _drift_table(drifting),
    ]
    if others:
        parts.append(_other_settings(others, f"{len(others)} other setting(s)"))
    return "".join(parts)


def _host_section(
    index: int,
    host: Mapping[str, Any],
    jitter: Mapping[str, Any] | None,
    measured: HostJitter | None,
    against: tuple[Mapping[str, Any], Mapping[str, Any]] | None,
) -> str:
    """``against``: the document's ``against`` block and this host's entry in it."""
    status = host["status"]
    parts = [
        f'<section class="card host host-{escape(status)}" id="host-{index}">',
        f"<h2>{escape(host['host'])} {badge(status)}</h2>",
        _host_meta(host),
    ]
    if host["error"]:
        parts.append(error_box(status, host["error"]))
    if against is not None:
        parts.append(against_host(*against))
    parts.append(_settings(host))
    if jitter is not None:
        parts.append(_jitter_section(jitter, measured, host["error"]))
    parts.append("</section>")
    return "".join(parts)


# --- Jitter -----------------------------------------------------------------------------------


def _us(value: float | None) -> str:
    return NONE if value is None else f"{value:.1f}"


def _verdict(cpu: Mapping[str, Any]) -> str:
    if cpu["gate"] is None:
        return NONE
    if cpu["gate"]["ok"]:
        return badge("pass")
    broken = "".join(f'<span class="reason">{escape(rule)}</span>' for rule in failed_rules(cpu))
    return badge("fail") + broken


def _cpu_row(cpu: Mapping[str, Any]) -> list[str]:
    events = cpu["events"]
    return [
        cell(str(cpu["cpu"])),
        f"<td>{_verdict(cpu)}</td>",
        cell(str(events["count"]), "num"),
        cell(f"{events['rate_per_s']:.1f}", "num"),
        cell(_us(events["p50_us"]), "num"),
        cell(_us(events["p99_us"]), "num"),
        cell(_us(events["p99_9_us"]), "num"),
        cell(_us(events["max_us"]), "num"),
        cell(f"{events['interrupted_pct']:.3f}", "num"),
    ]


JITTER_HEADERS = ["cpu", "verdict", "events", "events/s", "p50 µs", "p99 µs", "p99.9 µs"]
JITTER_HEADERS += ["max µs", "interrupted %"]


def _plots(measured: HostJitter) -> str:
    figures = []
    for cpu in sorted(measured.cpus, key=lambda cpu: cpu.cpu):
        name = f"{measured.host} CPU {cpu.cpu}"
        figures.append(
            f"<figure>{histogram_svg(cpu, f'{name}: event durations')}"
            f"{timeline_svg(cpu, f'{name}: events over time')}</figure>"
        )
    return "".join(figures)


def _jitter_section(
    jitter: Mapping[str, Any], measured: HostJitter | None, host_error: str | None
) -> str:
    """``host_error``: what the audit already said about the host, not repeated here."""
    settings = jitter["settings"]
    heading = f"<h3>Jitter {badge(jitter['status'])}</h3>"
    if jitter["error"]:
        same = jitter["error"] == host_error
        return heading if same else heading + error_box(jitter["status"], jitter["error"])
    about = [
        f"backend {jitter['backend'] or 'none'}",
        f"{span(settings['duration_s'] * 1e9)} per CPU",
        f"gaps above {span(settings['threshold_us'] * 1e3)} counted",
    ]
    parts = [heading, f'<p class="note">{escape(" · ".join(about))}</p>']
    if jitter["trust_note"]:
        note = f"{jitter['trust_note']} ({jitter['vm']})"
        parts.append(f'<p class="note warning">{escape(note)}</p>')
    parts += [f'<p class="note">{escape(note)}</p>' for note in jitter["notes"]]
    if jitter["cpus"]:
        rows = [_cpu_row(cpu) for cpu in sorted(jitter["cpus"], key=lambda cpu: cpu["cpu"])]
        parts.append(table(JITTER_HEADERS, rows, numeric=len(JITTER_HEADERS) - 2))
    if measured is not None:
        parts.append(_plots(measured))
    return "".join(parts)


# --- The page ---------------------------------------------------------------------------------


def html_report(document: Document) -> str:
    profile = document["profile"]
    jitter_by_host = {host["host"]: host for host in jitter_hosts(document)}
    measured_by_host = (
        {host.host: host for host in hosts_from_document(document["jitter"])}
        if "jitter" in document
        else {}
    )
    against: Mapping[str, Any] | None = document.get("against")
    against_by_host = (
        {} if against is None else {entry["host"]: (against, entry) for entry in against["hosts"]}
    )
    sections = [
        _host_section(
            index,
            host,
            jitter_by_host.get(host["host"]),
            measured_by_host.get(host["host"]),
            against_by_host.get(host["host"]),
        )
        for index, host in _ordered(document["hosts"])
    ]
    title = f"quietcore verify: {profile['name']}, {_when(document)}"
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8"/>',
            '<meta name="viewport" content="width=device-width, initial-scale=1"/>',
            f"<title>{escape(title)}</title>",
            f"<style>{CSS}{_palette_css()}</style>",
            "</head>",
            "<body><main>",
            _summary(document),
            *sections,
            f"<footer>quietcore {escape(document['quietcore_version'])} · "
            f"{escape(document['schema'])}</footer>",
            "</main></body>",
            "</html>",
            "",
        ]
    )
