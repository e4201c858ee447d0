"""What a jitter run was asked for: the profile's ``verify.jitter`` section, overridden by
command-line options. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from quietcore.probes.result import Requested, RunSettings
from quietcore.profile.schema import JitterAccept, JitterSection, duration_seconds

DEFAULT_DURATION = "30s"


@dataclass(frozen=True)
class Request:
    cpus: str  # "isolated" or a CPU list
    settings: RunSettings
    accept: JitterAccept | None  # None: measure only, no pass/fail


def jitter_request(
    section: JitterSection | None,
    *,
    cpus: str | None = None,
    duration: str | None = None,
    threshold_us: float | None = None,
    backend: Requested = "auto",
    fifo: int | None = None,
) -> Request:
    """Options win over the profile's section; without either, 30 s on the isolated CPUs with
    a 5 us threshold and no gate."""
    base = section or JitterSection(duration=DEFAULT_DURATION)
    accept = section.accept if section is not None and _has_rules(section.accept) else None
    seconds = duration_seconds(duration or base.duration)
    return Request(
        cpus=cpus or base.cpus,
        settings=RunSettings(
            duration_ns=round(seconds * 1e9),
            threshold_ns=round((threshold_us or base.threshold_us) * 1000),
            backend_requested=backend,
            fifo_priority=fifo,
        ),
        accept=accept,
    )


def _has_rules(accept: JitterAccept) -> bool:
    return bool(accept.model_dump(exclude_defaults=True))
