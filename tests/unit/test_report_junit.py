"""JUnit XML from real verify documents: one case per host and key, the right outcome and
message on each, counts that add up, and valid against the common JUnit schema."""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from quietcore.report.junit import junit_xml

DATA = Path(__file__).parents[1] / "data" / "reports"
CAPTURES = sorted(path.name for path in DATA.glob("*.json"))


def _capture(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((DATA / name).read_text())
    return document


def _suites(document: dict[str, Any]) -> ET.Element:
    return ET.fromstring(junit_xml(document))


def _suite(root: ET.Element, host: str) -> ET.Element:
    [suite] = [suite for suite in root.iter("testsuite") if suite.get("name") == host]
    return suite


def _outcomes(suite: ET.Element) -> dict[str, tuple[str, str, str] | None]:
    """Case name -> (outcome tag, type, message), None for a passed case."""
    outcomes: dict[str, tuple[str, str, str] | None] = {}
    for case in suite.iter("testcase"):
        children = list(case)
        assert len(children) <= 1
        outcomes[case.get("name", "")] = (
            (children[0].tag, children[0].get("type", ""), children[0].get("message", ""))
            if children
            else None
        )
    return outcomes


def test_fleet_one_suite_per_host_with_its_outcomes() -> None:
    root = _suites(_capture("fleet-before.json"))
    assert root.tag == "testsuites"
    assert root.get("name") == "quietcore verify"
    assert [suite.get("name") for suite in root] == ["ok-a", "refused-b", "drift-c", "gone-d"]
    # 7 settings on each of the two audited hosts, one error case on each of the others.
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("16", "4", "2")

    drift = _outcomes(_suite(root, "drift-c"))
    assert drift["sysctl/net.ipv4.tcp_fastopen"] == (
        "failure",
        "drift",
        "desired 3, actual 1 (network.tcp.fastopen at tests/data/reports/quiet-net.yaml:10)",
    )
    assert drift["nic/qc/rx-0/rps_cpus"] == (
        "failure",
        "drift",
        "desired 0, actual (empty) (network.interfaces.0.rps at "
        "tests/data/reports/quiet-net.yaml:13)",
    )
    assert drift["nic/*x/match"] == (
        "failure",
        "missing",
        "desired *x, actual (absent): no interface matches *x (this host has: lo, qc) "
        "(network.interfaces.1.match at tests/data/reports/quiet-net.yaml:14)",
    )
    assert drift["sysctl/kernel.nmi_watchdog"] is None
    assert drift["cpu/0/scaling_governor"] == (
        "skipped",
        "unsupported",
        "no cpufreq driver (common in VMs)",
    )

    refused = _outcomes(_suite(root, "refused-b"))
    [(kind, message)] = [(o[1], o[2]) for o in refused.values() if o is not None]
    assert list(refused) == ["profile"]
    assert kind == "refused"
    assert "network.interfaces.1.rps: sets nic/qx/rx-0/rps_cpus to '1'" in message

    unreachable = _outcomes(_suite(root, "gone-d"))
    assert unreachable == {
        "reach": (
            "error",
            "unreachable",
            "unreachable: Could not connect ([Errno None] Unable to connect to port 9 on "
            "127.0.0.1)",
        )
    }


def test_a_boot_time_setting_says_so() -> None:
    local = _outcomes(_suite(_suites(_capture("network-latency-local.json")), "@local"))
    assert local["cmdline/skew_tick"] == (
        "failure",
        "drift",
        "desired skew_tick=1, actual (absent): not on the running kernel's command line; "
        "neither update-grub nor grubby here to add it at boot (kernel.cmdline.0 at "
        "builtin:network-latency.yaml:52); takes effect at boot",
    )


def test_suite_attributes_name_the_host_the_time_and_the_profile() -> None:
    document = _capture("fleet-before.json")
    suite = _suite(_suites(document), "ok-a")
    assert suite.get("hostname") == "ok-a"
    assert suite.get("timestamp") == document["generated_at"]
    assert suite.get("time") == f"{document['hosts'][0]['elapsed_s']:.3f}"
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("7", "0", "2")
    properties = {prop.get("name"): prop.get("value") for prop in suite.iter("property")}
    assert properties == {
        "profile": "quiet-net",
        "profile.digest": document["profile"]["digest"],
        "quietcore.version": document["quietcore_version"],
    }
    for case in suite.iter("testcase"):
        assert case.get("classname") == "quietcore.ok-a"


def _count(cases: list[ET.Element], tag: str) -> int:
    return sum(case.find(tag) is not None for case in cases)


@pytest.mark.parametrize("name", CAPTURES)
def test_counts_add_up_and_agree_with_the_audit(name: str) -> None:
    document = _capture(name)
    root = _suites(document)
    for attribute in ("tests", "failures", "errors"):
        assert root.get(attribute) == str(sum(int(suite.get(attribute, "")) for suite in root))
    for host in document["hosts"]:
        suite = _suite(root, host["host"])
        cases = suite.findall("testcase")
        assert suite.get("tests") == str(len(cases))
        for tag, attribute in (
            ("failure", "failures"),
            ("error", "errors"),
            ("skipped", "skipped"),
        ):
            assert suite.get(attribute) == str(_count(cases, tag))
        # The setting cases judge as the audit did (its own per-host counts).
        keys = {setting["key"] for setting in host["settings"]}
        settings = [case for case in cases if case.get("name") in keys]
        counts = host["summary"]
        assert len(settings) == sum(counts.values())
        assert _count(settings, "failure") == counts["drift"] + counts["missing"]
        assert _count(settings, "skipped") == counts["unsupported"] + counts["immovable"]


def test_jitter_adds_a_case_per_probed_cpu() -> None:
    quiet, loaded = (_suites(_capture(f"jitter-{run}.json")) for run in ("before", "after"))
    assert _outcomes(_suite(quiet, "@local"))["jitter/cpu1"] is None
    tag, kind, message = _outcomes(_suite(loaded, "@local"))["jitter/cpu1"] or ("", "", "")
    assert (tag, kind) == ("failure", "jitter")
    document = _capture("jitter-after.json")
    [cpu] = document["jitter"]["hosts"][0]["cpus"]
    events = cpu["events"]
    assert message == f"max_us {events['max_us']:g} > 1000; p99_us {events['p99_us']:g} > 100"
    # The unreachable host errors for the audit and for the probe.
    unreachable = _outcomes(_suite(quiet, "gone-d"))
    assert {name: outcome and outcome[:2] for name, outcome in unreachable.items()} == {
        "reach": ("error", "unreachable"),
        "jitter": ("error", "unreachable"),
    }


def test_text_from_hosts_cannot_break_the_xml() -> None:
    document = _capture("fleet-before.json")
    drift = document["hosts"][2]
    drift["host"] = 'rack "7" <b>&'
    drift["settings"][0]["actual"] = "1\x1b[0m\x00"
    root = _suites(document)
    suite = _suite(root, 'rack "7" <b>&')
    message = _outcomes(suite)["sysctl/net.ipv4.tcp_fastopen"]
    assert message is not None
    assert message[2].startswith("desired 3, actual 1\ufffd[0m\ufffd ")


@pytest.mark.parametrize("name", CAPTURES)
def test_valid_against_the_common_junit_schema(name: str, tmp_path: Path) -> None:
    report = tmp_path / "verify.xml"
    report.write_text(junit_xml(_capture(name)))
    checked = subprocess.run(
        ["xmllint", "--noout", "--schema", str(DATA / "junit-10.xsd"), str(report)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr


def test_a_document_saved_before_timing_existed() -> None:
    document = _capture("fleet-before.json")
    assert _suites(document).get("time") == f"{document['timing']['wall_s']:.3f}"
    del document["timing"]
    root = _suites(document)
    assert root.get("time") is None
    assert root.get("tests") == "16"
