"""The Prometheus textfile from real verify documents, read back by prometheus-client's own
parser (what node_exporter's textfile collector accepts)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from quietcore.report.prometheus import prometheus_textfile

DATA = Path(__file__).parents[1] / "data" / "reports"
CAPTURES = sorted(path.name for path in DATA.glob("*.json"))


def _capture(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((DATA / name).read_text())
    return document


def _families(document: dict[str, Any]) -> dict[str, tuple[str, str, list[Sample]]]:
    """Metric name -> (type, help, samples), as the parser reads the textfile."""
    return {
        family.name: (family.type, family.documentation, family.samples)
        for family in text_string_to_metric_families(prometheus_textfile(document))
    }


@pytest.mark.parametrize("name", CAPTURES)
def test_every_metric_is_a_documented_gauge(name: str) -> None:
    document = _capture(name)
    families = _families(document)
    expected = ["quietcore_setting_drift", "quietcore_hosts", "quietcore_host_status"]
    if "jitter" in document:
        expected.append("quietcore_jitter_seconds")
    expected.append("quietcore_last_verify_timestamp_seconds")
    assert list(families) == expected
    for kind, help_text, _samples in families.values():
        assert kind == "gauge"
        assert help_text


@pytest.mark.parametrize("name", CAPTURES)
def test_drift_gauge_per_setting_and_hosts_by_status(name: str) -> None:
    document = _capture(name)
    families = _families(document)
    drift = {
        (sample.labels["host"], sample.labels["key"]): sample.value
        for sample in families["quietcore_setting_drift"][2]
    }
    assert drift == {
        (host["host"], setting["key"]): float(setting["status"] in ("drift", "missing"))
        for host in document["hosts"]
        for setting in host["settings"]
    }
    hosts = {sample.labels["status"]: sample.value for sample in families["quietcore_hosts"][2]}
    assert hosts == {
        status: float(document["summary"][status])
        for status in ("ok", "drift", "refused", "unreachable")
    }
    statuses = {
        sample.labels["host"]: sample.labels["status"]
        for sample in families["quietcore_host_status"][2]
    }
    assert statuses == {host["host"]: host["status"] for host in document["hosts"]}
    [stamp] = families["quietcore_last_verify_timestamp_seconds"][2]
    assert stamp.labels == {}
    assert stamp.value == datetime.fromisoformat(document["generated_at"]).timestamp()


def test_fleet_values() -> None:
    families = _families(_capture("fleet-before.json"))
    drifting = sorted(
        (sample.labels["host"], sample.labels["key"])
        for sample in families["quietcore_setting_drift"][2]
        if sample.value == 1
    )
    assert drifting == [
        ("drift-c", "nic/*x/match"),
        ("drift-c", "nic/qc/rx-0/rps_cpus"),
        ("drift-c", "sysctl/net.core.somaxconn"),
        ("drift-c", "sysctl/net.ipv4.tcp_fastopen"),
    ]
    # Every status has a sample, zero or not, so an alert on unreachable > 0 never sees a gap.
    hosts = {sample.labels["status"]: sample.value for sample in families["quietcore_hosts"][2]}
    assert hosts == {"ok": 1, "drift": 1, "refused": 1, "unreachable": 1}


def test_jitter_quantiles_in_seconds() -> None:
    document = _capture("jitter-before.json")
    [cpu] = document["jitter"]["hosts"][0]["cpus"]
    samples = _families(document)["quietcore_jitter_seconds"][2]
    by_quantile = {sample.labels["quantile"]: sample for sample in samples}
    assert list(by_quantile) == ["0.5", "0.9", "0.99", "0.999", "0.9999", "1"]
    for sample in samples:
        assert (sample.labels["host"], sample.labels["cpu"]) == ("@local", "1")
    events = cpu["events"]
    assert by_quantile["0.99"].value == pytest.approx(events["p99_us"] / 1e6, rel=1e-9)
    assert by_quantile["1"].value == pytest.approx(events["max_us"] / 1e6, rel=1e-9)
    # The unreachable host was not probed: no sample, rather than a zero that looks quiet.
    assert {sample.labels["host"] for sample in samples} == {"@local"}


def test_a_cpu_without_events_has_no_quantiles() -> None:
    document = _capture("jitter-before.json")
    [cpu] = document["jitter"]["hosts"][0]["cpus"]
    for field in ("p50_us", "p90_us", "p99_us", "p99_9_us", "p99_99_us", "max_us"):
        cpu["events"][field] = None
    assert "quietcore_jitter_seconds{" not in prometheus_textfile(document)


def test_label_values_are_escaped() -> None:
    document = _capture("fleet-before.json")
    awkward = 'rack "7"\\a\nb'
    document["hosts"][2]["host"] = awkward
    samples = _families(document)["quietcore_setting_drift"][2]
    assert {sample.labels["host"] for sample in samples} == {"ok-a", awkward}
