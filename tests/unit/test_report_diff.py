"""Diffs of real audits: a fleet whose hosts and profile changed, an outage, jitter runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from quietcore.console import render_plain
from quietcore.report.diff import ReportDiff, diff_documents, diff_json, diff_table

DATA = Path(__file__).parents[1] / "data" / "reports"


def _capture(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((DATA / name).read_text())
    return document


def _diff(old: str, new: str) -> ReportDiff:
    return diff_documents(_capture(f"{old}.json"), _capture(f"{new}.json"))


def _changes(diff: ReportDiff) -> dict[str, list[tuple[str, str, str | None, str | None]]]:
    """Host -> (change, key, actual before, actual after) of every changed setting."""
    return {
        host.host: [
            (change.change, change.key, change.before["actual"], change.after["actual"])
            for change in host.settings
        ]
        for host in diff.hosts
    }


def test_fleet_hosts_and_settings_that_changed() -> None:
    diff = _diff("fleet-before", "fleet-after")
    assert diff.changed
    assert diff.profile_changed
    assert (diff.hosts_added, diff.hosts_removed) == (("new-e",), ("gone-d",))
    assert [host.host for host in diff.hosts] == ["ok-a", "refused-b", "drift-c"]
    assert _changes(diff) == {
        "ok-a": [("started drifting", "sysctl/net.ipv4.tcp_fastopen", "3", "1")],
        "refused-b": [],
        "drift-c": [
            ("fixed", "sysctl/net.ipv4.tcp_fastopen", "1", "3"),
            ("changed while drifting", "sysctl/net.core.somaxconn", "4096", "1024"),
        ],
    }
    ok_a, refused_b, drift_c = diff.hosts
    assert (ok_a.status_before, ok_a.status_after) == ("ok", "drift")
    assert not refused_b.changed
    for host in (ok_a, drift_c):
        assert [setting["key"] for setting in host.added] == ["sysctl/net.ipv4.tcp_timestamps"]
        assert [setting["key"] for setting in host.removed] == ["sysctl/kernel.nmi_watchdog"]
    assert diff.jitter == ()


def test_an_unreachable_host_loses_no_keys() -> None:
    diff = _diff("fleet-after", "fleet-outage")
    assert (diff.hosts_added, diff.hosts_removed) == ((), ())
    assert not diff.profile_changed
    [outage] = [host for host in diff.hosts if host.changed]
    assert (outage.host, outage.status_before, outage.status_after) == (
        "drift-c",
        "drift",
        "unreachable",
    )
    assert (outage.settings, outage.added, outage.removed) == ((), (), ())


def test_the_same_audit_twice_is_no_change() -> None:
    diff = _diff("fleet-before", "fleet-before")
    assert not diff.changed
    document = diff_json(diff)
    assert (document["changed"], document["hosts"], document["jitter"]) == (False, [], [])
    assert render_plain([diff_table(diff)]).splitlines()[-1] == "nothing changed"


def test_json_lists_only_what_changed() -> None:
    document = diff_json(_diff("fleet-before", "fleet-after"))
    assert document["old"]["profile"]["name"] == document["new"]["profile"]["name"] == "quiet-net"
    assert (document["hosts_added"], document["hosts_removed"]) == (["new-e"], ["gone-d"])
    ok_a, drift_c = document["hosts"]
    assert ok_a == {
        "host": "ok-a",
        "status": {"before": "ok", "after": "drift"},
        "settings": [
            {
                "key": "sysctl/net.ipv4.tcp_fastopen",
                "change": "started drifting",
                "before": {"desired": "3", "actual": "3", "status": "ok"},
                "after": {"desired": "3", "actual": "1", "status": "drift"},
            }
        ],
        "keys_added": [
            {
                "key": "sysctl/net.ipv4.tcp_timestamps",
                "desired": "0",
                "actual": "1",
                "status": "drift",
            }
        ],
        "keys_removed": [
            {"key": "sysctl/kernel.nmi_watchdog", "desired": "0", "actual": "0", "status": "ok"}
        ],
    }
    assert drift_c["status"] == {"before": "drift", "after": "drift"}
    json.dumps(document)  # a tool can read it


def test_table_names_every_change() -> None:
    text = render_plain([diff_table(_diff("fleet-before", "fleet-after"))])
    lines = [" ".join(line.split()) for line in text.splitlines()]
    for fragment in (
        "the profile changed between the audits",
        "hosts added: new-e",
        "hosts removed: gone-d",
        "ok-a host status ok drift",
        "started drifting sysctl/net.ipv4.tcp_fastopen 3 (ok) 1 (drift)",
        "drift-c fixed sysctl/net.ipv4.tcp_fastopen 1 (drift) 3 (ok)",
        "changed while drifting sysctl/net.core.somaxconn 4096 (drift) 1024 (drift)",
    ):
        assert sum(line.endswith(fragment) for line in lines) == 1, fragment
    assert (
        sum(line.endswith("key added sysctl/net.ipv4.tcp_timestamps 1 (drift)") for line in lines)
        == 2
    )
    assert (
        sum(line.endswith("key removed sysctl/kernel.nmi_watchdog 0 (ok)") for line in lines) == 2
    )
    assert not any(line.startswith("refused-b") for line in lines)


def test_jitter_p99_and_max_before_and_after() -> None:
    before, after = _capture("jitter-before.json"), _capture("jitter-after.json")
    diff = diff_documents(before, after)
    [cpu] = diff.jitter
    [old_cpu] = before["jitter"]["hosts"][0]["cpus"]
    [new_cpu] = after["jitter"]["hosts"][0]["cpus"]
    assert (cpu.host, cpu.cpu) == ("@local", 1)
    assert (cpu.p99_before, cpu.p99_after) == (
        old_cpu["events"]["p99_us"],
        new_cpu["events"]["p99_us"],
    )
    assert (cpu.max_before, cpu.max_after) == (
        old_cpu["events"]["max_us"],
        new_cpu["events"]["max_us"],
    )
    # The quiet CPU passed its rules, the loaded one failed them: that is a change by itself.
    assert (cpu.passed_before, cpu.passed_after) == (True, False)
    assert diff_json(diff)["jitter"] == [
        {
            "host": "@local",
            "cpu": 1,
            "p99_us": {"before": cpu.p99_before, "after": cpu.p99_after},
            "max_us": {"before": cpu.max_before, "after": cpu.max_after},
            "passed": {"before": True, "after": False},
        }
    ]
    text = render_plain([diff_table(diff)])
    row = next(line for line in text.splitlines() if line.startswith("@local"))
    assert row.split()[-3:] == ["PASS", "→", "FAIL"]
    assert f"{cpu.p99_before:.1f} → {cpu.p99_after:.1f}" in row


def test_a_jitter_verdict_flip_alone_is_a_change() -> None:
    before, after = _capture("jitter-before.json"), _capture("jitter-after.json")
    before["hosts"] = [host for host in before["hosts"] if host["host"] == "@local"]
    after["hosts"][0]["settings"] = before["hosts"][0]["settings"]
    diff = diff_documents(before, after)
    assert not any(host.changed for host in diff.hosts)
    assert diff.changed
    after["jitter"]["hosts"][0]["cpus"][0]["gate"] = before["jitter"]["hosts"][0]["cpus"][0]["gate"]
    assert not diff_documents(before, after).changed
