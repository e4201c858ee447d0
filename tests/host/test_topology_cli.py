"""`quietcore topology` and `profiles show --resolved-for` on this machine print real CPU lists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from quietcore.profile.cpuset import format_cpulist, parse_cpulist
from tests.conftest import run_cli

pytestmark = pytest.mark.host

ONLINE = parse_cpulist(Path("/sys/devices/system/cpu/online").read_text())


def test_topology_json_matches_sysfs() -> None:
    result = run_cli("topology", "--format", "json", "@local")
    assert result.returncode == 0, result.stderr
    [host] = result.json()
    assert host["online_cpus"] == format_cpulist(ONLINE)
    assert {cpu["cpu"] for cpu in host["cpus"]} == set(ONLINE)
    nodes = sorted(Path("/sys/devices/system/node").glob("node[0-9]*"))
    assert len(host["numa_nodes"]) == max(1, len(nodes))


def test_trading_resolves_to_concrete_cpu_lists() -> None:
    result = run_cli("profiles", "show", "trading", "--resolved-for", "@local")
    assert result.returncode == 0, result.stderr
    reserved = re.search(r"^reserved CPUs\s+(\S+)$", result.stdout, re.M)
    isolated = re.search(r"^isolated CPUs\s+(\S+)$", result.stdout, re.M)
    assert reserved and isolated, result.stdout
    reserved_cpus, isolated_cpus = parse_cpulist(reserved[1]), parse_cpulist(isolated[1])
    # trading reserves one core per NUMA node and isolates the rest.
    assert reserved_cpus | isolated_cpus == ONLINE
    assert not reserved_cpus & isolated_cpus
    assert f"isolcpus=managed_irq,domain,{format_cpulist(isolated_cpus)}" in result.stdout
