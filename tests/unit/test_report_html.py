"""The HTML report of real verify documents: self-contained, summary first, problems first,
drift in a table, the rest folded, jitter with its plots, and every text escaped.

The page is well-formed XML, so it is read here with ElementTree; how it looks is checked by
tests/host/test_html_screenshot.py.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from quietcore.report.html import html_report

DATA = Path(__file__).parents[1] / "data" / "reports"
CAPTURES = sorted(path.name for path in DATA.glob("*.json"))
SVG = "{http://www.w3.org/2000/svg}svg"
FETCHING = {"script", "link", "img", "iframe", "object", "embed", "audio", "video", "source"}


def _capture(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((DATA / name).read_text())
    return document


def _page(document: dict[str, Any]) -> ET.Element:
    return ET.fromstring(html_report(document))


def _text(element: ET.Element) -> str:
    """Its words, one space apart, also between child elements."""
    return " ".join(" ".join(element.itertext()).split())


def _classes(element: ET.Element) -> set[str]:
    return set(element.get("class", "").split())


def _with_class(root: ET.Element, tag: str, css_class: str) -> list[ET.Element]:
    return [element for element in root.iter(tag) if css_class in _classes(element)]


def _one(root: ET.Element, path: str) -> ET.Element:
    found = root.find(path)
    assert found is not None, path
    return found


def _host_sections(page: ET.Element) -> dict[str, ET.Element]:
    """By host name (the heading's first word)."""
    return {
        _text(_one(section, "h2")).split()[0]: section
        for section in _with_class(page, "section", "host")
    }


def _rows(table: ET.Element) -> list[list[str]]:
    return [[_text(cell) for cell in row] for row in table.iter("tr") if row.find("td") is not None]


@pytest.mark.parametrize("name", CAPTURES)
def test_self_contained(name: str) -> None:
    page = _page(_capture(name))
    tags = {element.tag for element in page.iter()}
    assert not tags & FETCHING
    ids = {element.get("id") for element in page.iter()}
    for element in page.iter():
        assert "src" not in element.attrib
        assert not any(attribute.startswith("on") for attribute in element.attrib)
        href = element.get("href")
        if href is not None:
            assert href.startswith("#")
            assert href[1:] in ids
    [style] = page.iter("style")
    assert "url(" not in (style.text or "")
    assert "@import" not in (style.text or "")


def test_summary_first_then_hosts_problems_first() -> None:
    page = _page(_capture("fleet-before.json"))
    [main] = page.iter("main")
    sections = [child for child in main if child.tag == "section"]
    assert sections[0].get("id") == "summary"
    summary = sections[0]
    assert _text(_one(summary, "h1")) == "Audit of 4 host(s) against quiet-net"
    tiles = {
        _text(_one(tile, "span[@class='label']")): _text(_one(tile, "span[@class='count']"))
        for tile in _with_class(summary, "div", "tile")
    }
    assert tiles == {"hosts": "4", "ok": "1", "drift": "1", "refused": "1", "unreachable": "1"}
    assert list(_host_sections(page)) == ["gone-d", "refused-b", "drift-c", "ok-a"]
    overview = list(summary.iter("table"))[-1]
    assert [row[:2] for row in _rows(overview)] == [
        ["gone-d", "unreachable"],
        ["refused-b", "refused"],
        ["drift-c", "drift"],
        ["ok-a", "ok"],
    ]
    # drift, missing, unsupported, immovable, ok: the host's own counts.
    assert _rows(overview)[2][2:7] == ["3", "1", "2", "0", "1"]


def test_profile_and_time_in_the_summary() -> None:
    document = _capture("fleet-before.json")
    summary = _text(_one(_page(document), ".//section[@id='summary']"))
    assert document["profile"]["digest"] in summary
    assert "tests/data/reports/quiet-net.yaml" in summary
    generated = document["generated_at"].replace("T", " ").replace("+00:00", " UTC")
    assert generated in summary
    assert f"{document['timing']['wall_s']:.2f} s for the whole run" in summary


def test_drift_in_a_table_the_rest_folded() -> None:
    section = _host_sections(_page(_capture("fleet-before.json")))["drift-c"]
    [drift, others] = list(section.iter("table"))
    assert _rows(drift) == [
        [
            "sysctl/net.ipv4.tcp_fastopen",
            "3",
            "1",
            "drift",
            "network.tcp.fastopen tests/data/reports/quiet-net.yaml:10",
        ],
        [
            "sysctl/net.core.somaxconn",
            "8192",
            "4096",
            "drift",
            "kernel.sysctl.net.core.somaxconn tests/data/reports/quiet-net.yaml:18",
        ],
        [
            "nic/qc/rx-0/rps_cpus",
            "0",
            "(empty)",
            "drift",
            "network.interfaces.0.rps tests/data/reports/quiet-net.yaml:13",
        ],
        [
            "nic/*x/match",
            "*x",
            "(absent) no interface matches *x (this host has: lo, qc)",
            "missing",
            "network.interfaces.1.match tests/data/reports/quiet-net.yaml:14",
        ],
    ]
    [details] = section.iter("details")
    assert "open" not in details.attrib
    assert _text(_one(details, "summary")) == ("3 other setting(s): 2 unsupported, 1 ok")
    assert [row[0] for row in _rows(others)] == [
        "cpu/0/scaling_governor",
        "cpu/1/scaling_governor",
        "sysctl/kernel.nmi_watchdog",
    ]


def test_a_clean_host_says_so_and_errors_are_shown() -> None:
    sections = _host_sections(_page(_capture("fleet-before.json")))
    ok_a = sections["ok-a"]
    [clean] = _with_class(ok_a, "p", "clean")
    assert _text(clean).startswith("No drift")
    # Its only table is the folded one.
    details = _one(ok_a, "details")
    assert _text(_one(details, "summary")) == "all 7 setting(s): 2 unsupported, 5 ok"
    assert list(ok_a.iter("table")) == list(details.iter("table"))
    for host, words in (("refused-b", "network.interfaces.1.rps"), ("gone-d", "port 9")):
        [error] = _with_class(sections[host], "div", "error")
        assert words in _text(error)
        assert not list(sections[host].iter("table"))


def test_jitter_table_and_plots_per_cpu() -> None:
    document = _capture("jitter-before.json")
    page = _page(document)
    summary = _one(page, ".//section[@id='summary']")
    labels = [_text(label) for label in _with_class(summary, "span", "label")]
    assert "jitter pass" in labels
    sections = _host_sections(page)
    local = sections["@local"]
    [cpu] = document["jitter"]["hosts"][0]["cpus"]
    [row] = _rows(list(local.iter("table"))[-1])
    assert row[:3] == ["1", "pass", str(cpu["events"]["count"])]
    assert row[5] == f"{cpu['events']['p99_us']:.1f}"
    plots = list(local.iter(SVG))
    assert [plot.findtext("{http://www.w3.org/2000/svg}title") for plot in plots] == [
        "@local CPU 1: event durations",
        "@local CPU 1: events over time",
    ]
    # The probe of the unreachable host failed as its audit did: said once, not twice.
    gone = sections["gone-d"]
    assert len(_with_class(gone, "div", "error")) == 1
    assert "Jitter unreachable" in _text(gone)


def test_a_failed_cpu_names_the_rules_it_broke() -> None:
    document = _capture("jitter-after.json")
    local = _host_sections(_page(document))["@local"]
    [row] = _rows(list(local.iter("table"))[-1])
    events = document["jitter"]["hosts"][0]["cpus"][0]["events"]
    assert row[1] == f"fail max_us {events['max_us']:g} > 1000 p99_us {events['p99_us']:g} > 100"


def test_everything_from_the_document_is_escaped() -> None:
    document = _capture("fleet-before.json")
    hostile = "<script>alert(1)</script>"
    document["profile"]["name"] = hostile
    document["hosts"][2]["host"] = hostile
    document["hosts"][2]["settings"][0]["actual"] = '<img src=x onerror="alert(1)">&amp;'
    document["hosts"][1]["error"] = "</div><script>alert(2)</script>"
    page = _page(document)  # still well-formed: nothing was injected
    assert not list(page.iter("script"))
    assert not list(page.iter("img"))
    assert hostile in _text(_one(page, ".//title"))
    section = _host_sections(page)["<script>alert(1)</script>"]
    [drift, _others] = list(section.iter("table"))
    assert _rows(drift)[0][2] == '<img src=x onerror="alert(1)">&amp;'


def test_a_document_saved_before_timing_existed() -> None:
    document = _capture("fleet-before.json")
    del document["timing"]
    summary = _text(_one(_page(document), ".//section[@id='summary']"))
    assert "wall time" not in summary
    assert "generated" in summary
