"""Judging a run against a baseline, on real verify documents (tests/data/reports): the
stressed CPU's p99 is named, the tolerance's edge is exact, new drift fails and known drift
does not, and the ``against`` block validates against the verify schema."""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from quietcore.baseline import compare
from quietcore.baseline.model import Baseline, baseline_from, joined, manifest, with_hosts

DATA = Path(__file__).parents[1] / "data" / "reports"
SCHEMA = json.loads(resources.files("quietcore").joinpath("schemas/verify-v1.json").read_text())
P99_ONLY = {"p99_pct": 20.0}


def _capture(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((DATA / name).read_text())
    return document


def _baseline(document: dict[str, Any], hosts: list[str]) -> Baseline:
    """What ``baseline save`` would store of ``hosts``, read back."""
    files = {host: f"hosts/{index}.json" for index, host in enumerate(hosts)}
    cut = with_hosts(document, hosts)
    documents = {files[host]: with_hosts(cut, [host]) for host in hosts}
    return baseline_from(manifest("quiet", cut, files), documents)


def _quiet() -> Baseline:
    return _baseline(_capture("jitter-before.json"), ["@local"])


def _with_p99(document: dict[str, Any], p99_us: float | None) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    [cpu] = changed["jitter"]["hosts"][0]["cpus"]
    cpu["events"]["p99_us"] = p99_us
    return changed


def _local(against: compare.Against) -> compare.HostComparison:
    [host] = [host for host in against.hosts if host.host == "@local"]
    return host


def test_a_loaded_cpu_fails_naming_percentile_cpu_values_and_limit() -> None:
    # The same host, quiet (p99 39.0 us) and with stress-ng on CPU 1 (p99 4032.2 us).
    against = compare.compare_with_baseline(_quiet(), _capture("jitter-after.json"), P99_ONLY)
    host = _local(against)
    assert host.status == "fail" and against.failed
    assert "@local cpu1 p99 regressed: 39.0 us -> 4032.2 us (+10229%, limit +20%)" in (
        host.failures
    )
    # The accept rules it passed then and breaks now fail too; max was not given a tolerance.
    assert "@local cpu1 now breaks max_us 5353.76 > 1000 (passed in the baseline)" in host.failures
    assert not any("max regressed" in failure for failure in host.failures)
    # Its 14 drifting keys drifted in the baseline as well: known, not failed.
    assert len(host.known_drift) == 14 and host.new_drift == ()
    assert compare.exit_code(1, 1, against) == 1


def test_the_same_run_passes_and_known_drift_alone_exits_0() -> None:
    document = with_hosts(_capture("jitter-before.json"), ["@local"])
    against = compare.compare_with_baseline(_quiet(), document, P99_ONLY)
    host = _local(against)
    assert host.status == "pass" and host.failures == []
    [cpu] = host.cpus
    p99 = next(change for change in cpu.percentiles if change.name == "p99")
    assert p99.change_pct == 0 and not p99.regressed
    # verify alone would exit 1 for the drift; the baseline knew it.
    assert compare.exit_code(1, 0, against) == 0


@pytest.mark.parametrize(
    ("now_us", "regressed"),
    [(59.5, False), (60.0, False), (60.5, True), (25.0, False)],
)
def test_the_tolerance_is_percent_over_the_baseline(now_us: float, regressed: bool) -> None:
    # Baseline p99 50 us, 20% allowed: 59.5 (+19%) and 60 (+20%) pass, 60.5 (+21%) fails.
    quiet = _baseline(_with_p99(_capture("jitter-before.json"), 50.0), ["@local"])
    current = _with_p99(_capture("jitter-before.json"), now_us)
    host = _local(compare.compare_with_baseline(quiet, current, P99_ONLY))
    assert (host.status == "fail") is regressed
    assert any("cpu1 p99 regressed" in failure for failure in host.failures) is regressed


def test_a_percentile_without_tolerance_is_not_judged() -> None:
    current = _with_p99(_capture("jitter-before.json"), 39.039 * 100)
    host = _local(compare.compare_with_baseline(_quiet(), current, {"p99_pct": None}))
    assert host.status == "pass"
    [cpu] = host.cpus
    p99 = next(change for change in cpu.percentiles if change.name == "p99")
    assert p99.change_pct == pytest.approx(9900) and p99.limit_pct is None and not p99.regressed


def test_no_gap_in_the_baseline_counts_as_the_threshold() -> None:
    # The baseline saw no gap above 5 us at p99: 5.9 us now is +18%, 6.1 us is +22%.
    quiet = _baseline(_with_p99(_capture("jitter-before.json"), None), ["@local"])

    def judged(now_us: float) -> compare.HostComparison:
        current = _with_p99(_capture("jitter-before.json"), now_us)
        return _local(compare.compare_with_baseline(quiet, current, P99_ONLY))

    assert judged(5.9).status == "pass"
    beyond = judged(6.1)
    assert "@local cpu1 p99 regressed: none above 5.0 us -> 6.1 us (+22%, limit +20%)" in (
        beyond.failures
    )


def test_no_gap_now_never_regresses() -> None:
    current = _with_p99(_capture("jitter-before.json"), None)
    host = _local(compare.compare_with_baseline(_quiet(), current, P99_ONLY))
    assert host.status == "pass"


def test_new_drift_fails_known_drift_does_not_and_new_hosts_are_judged_whole() -> None:
    # Saved of the two hosts a save accepts (ok-a, drift-c); judged by the next run, which
    # verified against quiet-net-v2.yaml (a changed profile).
    baseline = _baseline(_capture("fleet-before.json"), ["ok-a", "drift-c"])
    against = compare.compare_with_baseline(baseline, _capture("fleet-after.json"), {})
    hosts = {host.host: host for host in against.hosts}
    assert against.profile_changed and "the profile changed" in against.notes[0]
    ok_a = hosts["ok-a"]
    assert [(change.key, change.baseline_status) for change in ok_a.new_drift] == [
        ("sysctl/net.ipv4.tcp_fastopen", "ok"),
        ("sysctl/net.ipv4.tcp_timestamps", None),
    ]
    assert ok_a.failures[0] == (
        "ok-a sysctl/net.ipv4.tcp_fastopen drifts now: desired 3, actual 1 (ok in the baseline)"
    )
    assert "(not in the baseline)" in ok_a.failures[1]
    drift_c = hosts["drift-c"]
    assert [change.key for change in drift_c.new_drift] == ["sysctl/net.ipv4.tcp_timestamps"]
    known = {change.key: (change.baseline_actual, change.actual) for change in drift_c.known_drift}
    assert known == {
        "sysctl/net.core.somaxconn": ("4096", "1024"),
        "nic/qc/rx-0/rps_cpus": ("", ""),
        "nic/*x/match": (None, None),
    }
    assert [change.key for change in drift_c.fixed] == ["sysctl/net.ipv4.tcp_fastopen"]
    # Never in the baseline: compared with nothing; it has no drift, so it passes.
    new_e = hosts["new-e"]
    assert not new_e.in_baseline and new_e.status == "pass"
    assert new_e.notes == ("not in the baseline: all its drift is new, its jitter not compared",)
    assert hosts["refused-b"].status == "not_compared"
    assert compare.exit_code(2, 0, against) == 2


def test_unsupported_or_missing_then_drifting_now_is_new() -> None:
    before = _capture("fleet-before.json")
    ok_a = before["hosts"][0]
    governor = next(s for s in ok_a["settings"] if s["key"] == "cpu/0/scaling_governor")
    now = copy.deepcopy(with_hosts(before, ["ok-a"]))
    settings = {s["key"]: s for s in now["hosts"][0]["settings"]}
    settings["cpu/0/scaling_governor"].update(status="drift", actual="powersave")
    settings["sysctl/net.core.somaxconn"].update(status="missing", actual=None)
    host = compare.compare_with_baseline(_baseline(before, ["ok-a"]), now, {}).hosts[0]
    assert governor["status"] == "unsupported"
    assert [(change.key, change.baseline_status) for change in host.new_drift] == [
        ("sysctl/net.core.somaxconn", "ok"),
        ("cpu/0/scaling_governor", "unsupported"),
    ]
    assert "sysctl/net.core.somaxconn missing now: desired 8192" in host.failures[0]


def test_an_unreachable_host_is_not_compared_and_exits_3() -> None:
    baseline = _baseline(_capture("fleet-before.json"), ["ok-a", "drift-c"])
    against = compare.compare_with_baseline(baseline, _capture("fleet-outage.json"), {})
    drift_c = next(host for host in against.hosts if host.host == "drift-c")
    assert drift_c.status == "not_compared" and drift_c.in_baseline
    assert compare.exit_code(3, 0, against) == 3


def test_cpus_measured_only_once_are_noted_not_compared() -> None:
    current = copy.deepcopy(_capture("jitter-before.json"))
    current["jitter"]["hosts"][0]["cpus"][0]["cpu"] = 3
    host = _local(compare.compare_with_baseline(_quiet(), current, P99_ONLY))
    assert host.cpus == ()
    assert "cpu3 not in the baseline: not compared" in host.notes
    assert "cpu1 in the baseline but not measured now: not compared" in host.notes


@pytest.mark.parametrize(
    ("before", "now"),
    [
        ("jitter-before.json", "jitter-after.json"),
        ("fleet-before.json", "fleet-after.json"),
        ("fleet-before.json", "fleet-outage.json"),
    ],
)
def test_the_against_block_validates(before: str, now: str) -> None:
    hosts = [h["host"] for h in _capture(before)["hosts"] if h["status"] in ("ok", "drift")]
    document = _capture(now)
    against = compare.compare_with_baseline(_baseline(_capture(before), hosts), document, P99_ONLY)
    document["against"] = compare.against_block(against)
    jsonschema.validate(document, SCHEMA)
    assert document["against"]["status"] == ("fail" if against.failed else "pass")


def test_host_documents_join_back_into_the_saved_document() -> None:
    document = with_hosts(_capture("jitter-before.json"), ["@local", "gone-d"])
    parts = [with_hosts(document, [host]) for host in ("@local", "gone-d")]
    assert joined(parts) == document
    for part in parts:
        jsonschema.validate(part, SCHEMA)
