"""A verify document as a Prometheus textfile, for node_exporter's textfile collector.

Written by a periodic ``quietcore verify --format prometheus -o DIR/quietcore.prom``; every
metric is a gauge describing the last audit. Pure: the exposition text is built here, so
quietcore needs no Prometheus library at run time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from quietcore.report.document import (
    HOST_STATUSES,
    Document,
    generated_at,
    is_drifting,
    jitter_hosts,
)

# The jitter document's event percentiles, as quantiles (1 is the longest event).
QUANTILES = (
    ("0.5", "p50_us"),
    ("0.9", "p90_us"),
    ("0.99", "p99_us"),
    ("0.999", "p99_9_us"),
    ("0.9999", "p99_99_us"),
    ("1", "max_us"),
)
US_PER_S = 1_000_000


@dataclass(frozen=True)
class _Sample:
    labels: Mapping[str, str]
    value: float


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    # 12 digits: whole epoch seconds stay whole, and 65.999 µs is 6.5999e-05, not 6.59989..e-05.
    return f"{value:.12g}"


def _metric(name: str, help_text: str, samples: Iterable[_Sample]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
    for sample in samples:
        labels = ",".join(f'{key}="{_label_value(value)}"' for key, value in sample.labels.items())
        selector = f"{name}{{{labels}}}" if labels else name
        lines.append(f"{selector} {_number(sample.value)}")
    return lines


def _drift(document: Document) -> list[_Sample]:
    return [
        _Sample({"host": host["host"], "key": setting["key"]}, int(is_drifting(setting)))
        for host in document["hosts"]
        for setting in host["settings"]
    ]


def _hosts(document: Document) -> list[_Sample]:
    return [_Sample({"status": status}, document["summary"][status]) for status in HOST_STATUSES]


def _host_status(document: Document) -> list[_Sample]:
    return [
        _Sample({"host": host["host"], "status": host["status"]}, 1) for host in document["hosts"]
    ]


def _jitter(document: Document) -> list[_Sample]:
    return [
        _Sample(
            {"host": host["host"], "cpu": str(cpu["cpu"]), "quantile": quantile},
            cpu["events"][field] / US_PER_S,
        )
        for host in jitter_hosts(document)
        for cpu in host["cpus"]
        for quantile, field in QUANTILES
        # No event above the threshold: no percentile, and no sample rather than a made-up 0.
        if cpu["events"][field] is not None
    ]


def _against(document: Document) -> list[_Sample]:
    return [
        _Sample(
            {"host": entry["host"], "baseline": document["against"]["baseline"]},
            len(entry["failures"]),
        )
        for entry in document["against"]["hosts"]
        if entry["status"] != "not_compared"
    ]


def prometheus_textfile(document: Document) -> str:
    lines = [
        *_metric(
            "quietcore_setting_drift",
            "1 when the host's value differs from the profile or is missing, else 0.",
            _drift(document),
        ),
        *_metric("quietcore_hosts", "Hosts of the last verify, by status.", _hosts(document)),
        *_metric(
            "quietcore_host_status",
            "1 for each host, labelled with its status in the last verify (which host failed).",
            _host_status(document),
        ),
    ]
    if "jitter" in document:
        lines += _metric(
            "quietcore_jitter_seconds",
            "Durations of the gaps above the probe threshold, by quantile (1 is the longest); "
            "absent when no gap exceeded the threshold.",
            _jitter(document),
        )
    if "against" in document:
        lines += _metric(
            "quietcore_baseline_failures",
            "With verify --against: how many reasons the host fails the baseline (new drift, "
            "a newly broken accept rule, a regressed percentile); 0 is as good as the baseline.",
            _against(document),
        )
    lines += _metric(
        "quietcore_last_verify_timestamp_seconds",
        "When the last verify ran, in seconds since the epoch.",
        [_Sample({}, generated_at(document).timestamp())],
    )
    return "\n".join(lines) + "\n"
