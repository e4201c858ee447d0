"""Every renderer shows a verify document's ``against`` block: the HTML page (baseline vs now
per host and CPU, self-contained), the table's short summary, JUnit's ``baseline/NAME`` case
and Prometheus' failure count. Made from real captures (tests/data/reports): the quiet run is
the baseline, the run with stress-ng on CPU 1 is judged."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from quietcore import console
from quietcore.baseline import compare
from quietcore.baseline.model import baseline_from, manifest, with_hosts
from quietcore.report.baseline_view import against_summary
from quietcore.report.html import html_report
from quietcore.report.junit import junit_xml
from quietcore.report.prometheus import prometheus_textfile

DATA = Path(__file__).parents[1] / "data" / "reports"
REGRESSION = {"p99_pct": 20.0, "max_pct": 20.0}
P99_LINE = "@local cpu1 p99 regressed: 39.0 us -> 4032.2 us (+10229%, limit +20%)"


def _capture(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((DATA / name).read_text())
    return document


def _judged(before: str, after: str, hosts: list[str]) -> dict[str, Any]:
    files = {host: f"hosts/{host}.json" for host in hosts}
    saved = with_hosts(_capture(before), hosts)
    baseline = baseline_from(
        manifest("quiet", saved, files),
        {files[host]: with_hosts(saved, [host]) for host in hosts},
    )
    document = _capture(after)
    document["against"] = compare.against_block(
        compare.compare_with_baseline(baseline, document, REGRESSION)
    )
    return document


def _stressed() -> dict[str, Any]:
    return _judged("jitter-before.json", "jitter-after.json", ["@local"])


def _text(element: ET.Element) -> str:
    return " ".join(" ".join(element.itertext()).split())


def _child_text(element: ET.Element, tag: str) -> str:
    child = element.find(tag)
    assert child is not None, tag
    return _text(child)


def _rows(table: ET.Element) -> list[list[str]]:
    return [[_text(cell) for cell in row] for row in table.iter("tr") if row.find("td") is not None]


def test_html_shows_baseline_vs_now_per_cpu_and_the_reasons() -> None:
    page = ET.fromstring(html_report(_stressed()))
    assert not {element.tag for element in page.iter()} & {"script", "link", "img"}
    [summary] = [s for s in page.iter("section") if s.get("id") == "summary"]
    assert "Against a baseline" in _text(summary)
    assert "tolerances p99 +20%, max +20%" in _text(summary)
    [overview] = [t for t in summary.iter("table") if "baseline" in _child_text(t, "thead")]
    assert _rows(overview)[0][:4] == ["@local", "drift", "fail", "fail"]
    [host] = [s for s in page.iter("section") if "host" in s.get("class", "").split()]
    failures = [_text(item) for item in host.iter("li")]
    assert P99_LINE in failures
    assert "@local cpu1 max regressed: 308.3 us -> 5353.8 us (+1636%, limit +20%)" in failures
    [percentiles] = [t for t in host.iter("table") if "percentile" in _child_text(t, "thead")]
    rows = {row[1]: row for row in _rows(percentiles)}
    assert rows["p99"] == ["1", "p99", "fail", "39.0", "4032.2", "+10229%", "+20%"]
    assert rows["p50"] == ["1", "p50", "\u2013", "14.3", "4016.8", "+27927%", "\u2013"]
    known = [d for d in host.iter("details") if "known drift" in _child_text(d, "summary")]
    [folded] = [_child_text(details, "summary") for details in known]
    assert folded.startswith("14 key(s) of known drift")


def test_html_of_a_passing_host_says_nothing_is_new() -> None:
    page = html_report(_judged("jitter-before.json", "jitter-before.json", ["@local"]))
    assert "Nothing new since the baseline." in page
    assert "gone-d" in page and "not compared" in page  # unreachable now: not compared


def test_table_summary_names_every_reason_and_the_percentiles() -> None:
    text = console.render_plain([against_summary(_stressed()["against"])])
    lines = text.splitlines()
    assert lines[0].startswith("against baseline quiet (saved ")
    assert lines[0].endswith(": fail")
    assert f"    {P99_LINE}" in lines
    [p99] = [line for line in lines if line.split()[:4] == ["@local", "cpu1", "p99", "39.0"]]
    assert p99.split() == ["@local", "cpu1", "p99", "39.0", "4032.2", "+10229%", "+20%", "fail"]
    assert any(line.startswith("    known drift (in the baseline too") for line in lines)


def test_junit_fails_the_baseline_case_with_every_reason() -> None:
    root = ET.fromstring(junit_xml(_stressed()))
    [case] = [c for c in root.iter("testcase") if c.get("name") == "baseline/quiet"]
    failure = case.find("failure")
    assert failure is not None and failure.get("type") == "baseline"
    assert P99_LINE in (failure.get("message") or "")


def test_prometheus_counts_the_failures_per_host() -> None:
    text = prometheus_textfile(_stressed())
    # p99 and max regressed, and the two accept rules broken now.
    assert 'quietcore_baseline_failures{host="@local",baseline="quiet"} 4' in text.splitlines()
    fleet = prometheus_textfile(_judged("fleet-before.json", "fleet-after.json", ["ok-a"]))
    assert 'quietcore_baseline_failures{host="ok-a",baseline="quiet"} 2' in fleet.splitlines()
    assert 'quietcore_baseline_failures{host="new-e",baseline="quiet"} 0' in fleet.splitlines()
