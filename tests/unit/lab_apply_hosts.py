"""The built-in ``trading`` profile against the real 4-CPU, 2-node lab capture
(``tests/data/bundles/lab-4cpu-2node-trading.txt``, see test_lab_capture.py), for the tests
of the families' apply steps."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

from tests.bundles import load_readings

from quietcore.audit import audit_host
from quietcore.drift import SettingResult
from quietcore.profile.load import load_profile
from quietcore.readings import HostRead, Readings
from quietcore.steps import Step, Write
from quietcore.topology import Topology, parse_topology

CAPTURE = "lab-4cpu-2node-trading"


@cache
def lab_readings() -> Readings:
    return load_readings(CAPTURE)


def lab_topology() -> Topology:
    return parse_topology(lab_readings())


@cache
def _lab_results() -> tuple[SettingResult, ...]:
    audit = audit_host(load_profile("trading"), HostRead("lab", lab_readings(), None, 0.0))
    return audit.results


def lab_results(family: str) -> dict[str, SettingResult]:
    """Key -> result for one family's settings of ``trading`` on the lab."""
    return {r.setting.key: r for r in _lab_results() if r.setting.family == family}


def writes(steps: Iterable[Step]) -> dict[str, str]:
    """Path -> value of the ``Write`` steps; any other step fails the test."""
    found = {}
    for step in steps:
        assert isinstance(step, Write), step
        found[step.path] = step.value
    return found
