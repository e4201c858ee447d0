"""A verify document as JUnit XML, so CI systems list every host and setting as a test.

One ``<testsuite>`` per host, one ``<testcase>`` per setting: drift and missing fail,
unsupported and immovable are skipped (nothing to judge), ok passes. A host that could not be
read errors in a single case named ``reach``; a host that refused the profile in one named
``profile``. With jitter, every probed CPU is one more case, ``jitter/cpuN``, failing with the
accept rules it broke; with ``verify --against NAME``, one case per host, ``baseline/NAME``,
fails with every reason the host fails the baseline. Pure.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

from quietcore.report.document import (
    Document,
    drift_message,
    failed_rules,
    is_drifting,
    jitter_hosts,
)

SUITES_NAME = "quietcore verify"
ERROR_CASE = {"unreachable": "reach", "refused": "profile"}
SKIPPED = ("unsupported", "immovable")
# Text read from a host may hold control characters XML 1.0 cannot carry at all.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _clean(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def _case(suite: ET.Element, host: str, name: str) -> ET.Element:
    return ET.SubElement(suite, "testcase", classname=f"quietcore.{_clean(host)}", name=name)


def _outcome(case: ET.Element, tag: str, kind: str, message: str) -> None:
    ET.SubElement(case, tag, type=kind, message=_clean(message))


def _setting_case(suite: ET.Element, host: str, setting: Mapping[str, Any]) -> None:
    case = _case(suite, host, _clean(setting["key"]))
    status = setting["status"]
    if is_drifting(setting):
        _outcome(case, "failure", status, drift_message(setting))
    elif status in SKIPPED:
        _outcome(case, "skipped", status, setting["reason"] or status)


def _jitter_cases(suite: ET.Element, jitter_host: Mapping[str, Any]) -> None:
    host = jitter_host["host"]
    if jitter_host["error"] is not None:
        case = _case(suite, host, "jitter")
        _outcome(case, "error", jitter_host["status"], jitter_host["error"])
        return
    for cpu in jitter_host["cpus"]:
        case = _case(suite, host, f"jitter/cpu{cpu['cpu']}")
        broken = failed_rules(cpu)
        if broken:
            _outcome(case, "failure", "jitter", "; ".join(broken))


def _against_case(suite: ET.Element, baseline: str, entry: Mapping[str, Any]) -> None:
    """``baseline/NAME``: fails with every reason the host fails the baseline."""
    case = _case(suite, entry["host"], f"baseline/{_clean(baseline)}")
    if entry["failures"]:
        _outcome(case, "failure", "baseline", "; ".join(entry["failures"]))
    elif entry["status"] == "not_compared":
        _outcome(case, "skipped", "not_compared", "; ".join(entry["notes"]))


def _count(cases: list[ET.Element], tag: str) -> int:
    return sum(1 for case in cases if case.find(tag) is not None)


def _seconds(value: float) -> str:
    # The common JUnit schema's time is digits and a point: no exponent.
    return f"{value:.3f}"


def _suite(
    document: Document,
    host: Mapping[str, Any],
    jitter_host: Mapping[str, Any] | None,
    against: Mapping[str, Any] | None,
) -> ET.Element:
    name = _clean(host["host"])
    suite = ET.Element("testsuite", name=name, timestamp=document["generated_at"], hostname=name)
    properties = ET.SubElement(suite, "properties")
    profile = document["profile"]
    for key, value in (
        ("profile", profile["name"]),
        ("profile.digest", profile["digest"]),
        ("quietcore.version", document["quietcore_version"]),
    ):
        ET.SubElement(properties, "property", name=key, value=value)
    if host["status"] in ERROR_CASE:
        case = _case(suite, host["host"], ERROR_CASE[host["status"]])
        _outcome(case, "error", host["status"], host["error"] or host["status"])
    for setting in host["settings"]:
        _setting_case(suite, host["host"], setting)
    if jitter_host is not None:
        _jitter_cases(suite, jitter_host)
    if against is not None:
        _against_case(suite, document["against"]["baseline"], against)
    cases = suite.findall("testcase")
    suite.set("tests", str(len(cases)))
    for tag, attribute in (("failure", "failures"), ("error", "errors"), ("skipped", "skipped")):
        suite.set(attribute, str(_count(cases, tag)))
    suite.set("time", _seconds(host["elapsed_s"]))
    return suite


def junit_xml(document: Document) -> str:
    jitter_by_host = {host["host"]: host for host in jitter_hosts(document)}
    against = {entry["host"]: entry for entry in document.get("against", {}).get("hosts", ())}
    suites = ET.Element("testsuites", name=SUITES_NAME)
    for host in document["hosts"]:
        name = host["host"]
        suites.append(_suite(document, host, jitter_by_host.get(name), against.get(name)))
    for attribute in ("tests", "failures", "errors"):
        suites.set(attribute, str(sum(int(suite.get(attribute, "0")) for suite in suites)))
    timing = document.get("timing")
    if timing is not None:
        suites.set("time", _seconds(timing["wall_s"]))
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"
