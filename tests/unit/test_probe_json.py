"""The quietcore.jitter/v1 document, built from the real captures: it validates against its
JSON Schema and reads back into the same results."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import jsonschema
import pytest
from tests.unit.jitter_captures import OSLAT_B1024, RAW_C, RAW_PYTHON, oslat_cpu, probe_cpu

from quietcore.probes.gate import judge_host
from quietcore.probes.result import HostJitter, RunSettings
from quietcore.profile.loaded import LoadedProfile
from quietcore.profile.schema import JitterAccept, Profile
from quietcore.report.jitter_json import (
    JitterDocumentError,
    hosts_from_document,
    jitter_document,
    over_key,
)

GENERATED = datetime(2026, 11, 23, 20, 40, tzinfo=UTC)
SETTINGS = RunSettings(1_500_000_000, 5000, "auto", None)


def _schema() -> dict[str, Any]:
    text = resources.files("quietcore").joinpath("schemas/jitter-v1.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def _validate(document: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator.check_schema(_schema())
    validator = jsonschema.Draft202012Validator(
        _schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    validator.validate(json.loads(json.dumps(document)))


def _hosts() -> list[HostJitter]:
    measured = HostJitter(
        "@local",
        SETTINGS,
        cpus=(probe_cpu(RAW_C), replace(probe_cpu(RAW_PYTHON, keep=50), cpu=3)),
        backend="c",
        backend_reason="auto: the C probe compiled on the controller",
        hypervisor="kvm",
        sched_rt_runtime_us=950000,
        kernel="6.18.44-fc-v669",
        elapsed_s=3.21,
        notes=("CPU 0 runs everything else",),
    )
    oslat = HostJitter(
        "oslat-host",
        replace(SETTINGS, backend_requested="oslat", fifo_priority=10),
        cpus=(oslat_cpu(OSLAT_B1024),),
        backend="oslat",
        backend_reason="asked for",
        sched_rt_runtime_us=-1,
    )
    unreachable = HostJitter("gone", SETTINGS, error="connection refused", error_kind="unreachable")
    refused = HostJitter(
        "strict", SETTINGS, error="RT throttling is on", error_kind="refused", elapsed_s=0.5
    )
    return [measured, oslat, unreachable, refused]


def _profile() -> LoadedProfile:
    return LoadedProfile(Profile(name="trading"), {}, ("trading.yaml",), "ab" * 32)


def _document(include_events: bool = True) -> dict[str, Any]:
    hosts = _hosts()
    accept = JitterAccept(max_us=200, events_over_us={100: 0})
    verdicts = {hosts[0].host: judge_host(accept, hosts[0])}
    return jitter_document(hosts, verdicts, _profile(), GENERATED, include_events)


def test_document_validates() -> None:
    _validate(_document())
    _validate(_document(include_events=False))
    _validate(jitter_document([], None, None, GENERATED))


def test_summary_and_statuses() -> None:
    document = _document()
    assert document["schema"] == "quietcore.jitter/v1"
    assert document["generated_at"] == "2026-11-23T20:40:00+00:00"
    assert document["profile"]["digest"] == "sha256:" + "ab" * 32
    assert [host["status"] for host in document["hosts"]] == [
        "fail",  # CPU 1's 130 us event is more than the 100 us allowed none of
        "measured",
        "unreachable",
        "refused",
    ]
    assert document["summary"] == {
        "hosts": 4,
        "pass": 0,
        "fail": 1,
        "measured": 1,
        "unreachable": 1,
        "refused": 1,
        "failed": 0,
    }


def test_cpu_fields_in_microseconds() -> None:
    local = _document()["hosts"][0]
    assert local["vm"] == "kvm"
    assert local["trust_note"] == "max and the far tail are not trustworthy on a VM"
    assert local["settings"] == {
        "duration_s": 1.5,
        "threshold_us": 5.0,
        "backend_requested": "auto",
        "fifo_priority": None,
    }
    cpu = local["cpus"][0]
    assert (cpu["cpu"], cpu["backend"], cpu["loops"]) == (1, "c", 153497864)
    assert cpu["duration_s"] == 1.500000012
    assert cpu["loop_ns"] == 9.772
    assert cpu["events"]["max_us"] == 130.466
    assert cpu["events"]["count"] == 567
    assert cpu["events"]["interrupted_us"] == 10764.949
    assert cpu["timeline"][0] == [282.133, 63.085]
    assert len(cpu["timeline"]) == 567
    assert cpu["histogram"]["unit"] == "us"
    assert cpu["histogram"]["buckets"]["64"] >= 1
    assert cpu["context"]["interrupts"]["LOC"] == 1009
    assert cpu["context"]["involuntary_switches"] == 17
    rules = {rule["rule"]: rule for rule in cpu["gate"]["rules"]}
    assert rules["max_us"] == {"rule": "max_us", "limit": 200.0, "measured": 130.466, "ok": True}
    assert rules["events_over_us.100"]["ok"] is False


def test_oslat_cpu_has_no_timeline_and_no_gate() -> None:
    oslat = _document()["hosts"][1]
    assert oslat["trust_note"] is None
    cpu = oslat["cpus"][0]
    assert cpu["timeline"] is None
    assert cpu["gate"] is None
    assert cpu["events"]["max_us"] == 4027.0
    assert cpu["events"]["over_1ms"] == 2
    assert cpu["histogram"]["buckets"]["1024"] == 2
    assert cpu["context"]["voluntary_switches"] is None


def test_events_left_out() -> None:
    cpus = _document(include_events=False)["hosts"][0]["cpus"]
    assert [cpu["timeline"] for cpu in cpus] == [None, None]


def test_round_trip() -> None:
    hosts = _hosts()
    document = jitter_document(hosts, None, None, GENERATED)
    back = hosts_from_document(json.loads(json.dumps(document)))
    # Everything but the rounded rate and percentage comes back exactly.
    for original, read in zip(hosts, back, strict=True):
        assert replace(read, cpus=()) == replace(original, cpus=())
        for before, after in zip(original.cpus, read.cpus, strict=True):
            assert after.stats.rate_per_s == pytest.approx(before.stats.rate_per_s, abs=1e-3)
            assert after.stats.interrupted_pct == pytest.approx(before.stats.interrupted_pct)
            rounded = replace(
                before.stats,
                rate_per_s=after.stats.rate_per_s,
                interrupted_pct=after.stats.interrupted_pct,
            )
            assert after == replace(before, stats=rounded)
    assert jitter_document(back, None, None, GENERATED) == document


def test_round_trip_without_events() -> None:
    document = jitter_document(_hosts(), None, None, GENERATED, include_events=False)
    (local, *_) = hosts_from_document(document)
    assert [cpu.events for cpu in local.cpus] == [(), ()]
    assert local.cpus[0].histogram_us == probe_cpu(RAW_C).histogram_us


def test_over_keys() -> None:
    assert [over_key(ns) for ns in (10_000, 100_000, 1_000_000)] == [
        "over_10us",
        "over_100us",
        "over_1ms",
    ]


def test_not_a_jitter_document() -> None:
    with pytest.raises(JitterDocumentError, match=r"not a quietcore\.jitter/v1 document"):
        hosts_from_document({"schema": "quietcore.verify/v1", "hosts": []})
    with pytest.raises(JitterDocumentError, match=r"not a quietcore\.jitter/v1"):
        hosts_from_document([])
    broken = _document()
    del broken["hosts"][1]["cpus"][0]["events"]["p99_us"]
    with pytest.raises(JitterDocumentError, match="p99_us"):
        hosts_from_document(broken)
