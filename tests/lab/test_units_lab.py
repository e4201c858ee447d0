"""NUMA placement and limits of a real service and a real slice (``numa.services``,
``containers.slices``) on the 4-CPU, 2-node lab (nodes 0: CPUs 0-1, 1: CPUs 2-3): apply writes
the drop-ins, systemd puts the cgroup settings on the running units at daemon-reload, the
exec-time ones wait for a restart (verify says so), and rollback gives the kernel back exactly
what it had: the unit properties, the cgroup controllers and every task's CPUs and nodes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CliResult, run_cli
from tests.lab.conftest import Lab

pytestmark = pytest.mark.lab

PROFILE = Path(__file__).resolve().parents[1] / "data" / "units" / "units-lab.yaml"
FEED = "qc-lab-feed.service"  # stands in for a market-data feed handler
GUEST = "qc-lab-guest.service"  # stands in for a VM or container in machine.slice
DROP_INS = (
    f"/etc/systemd/system/{FEED}.d/90-quietcore.conf",
    "/etc/systemd/system/machine.slice.d/90-quietcore.conf",
)
# What a task sees of its placement, and the kernel's side of both units.
KERNEL_STATE = (
    "for u in " + FEED + " " + GUEST + "; do"
    ' pid=$(systemctl show -p MainPID --value "$u");'
    ' echo "$u $(grep -E "^(Cpus|Mems)_allowed_list" /proc/$pid/status | tr -s "\\t\\n" "  ")";'
    " done;"
    ' echo "root $(cat /sys/fs/cgroup/cgroup.subtree_control)";'
    " for cg in system.slice/" + FEED + " machine.slice; do"
    " for f in cpuset.cpus cpuset.mems memory.max cpu.weight; do"
    ' [ -r "/sys/fs/cgroup/$cg/$f" ] && echo "$cg/$f $(cat "/sys/fs/cgroup/$cg/$f")";'
    " done; done; true"
)


def _cli(*args: str) -> CliResult:
    return run_cli(*args, timeout=600)


def _settings(result: CliResult) -> dict[str, dict[str, Any]]:
    [host] = result.json()["hosts"]
    return {s["key"]: s for s in host["settings"] if s["key"].startswith("units/")}


def _state(lab: Lab) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in lab.ssh(KERNEL_STATE).splitlines() if " " in line)


@pytest.fixture(scope="module")
def units(lab_vm: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The two stand-in units running, and a private controller state directory."""
    os.environ["QUIETCORE_STATE_DIR"] = str(tmp_path_factory.mktemp("quietcore-state"))
    lab_vm.ssh(
        f"printf '[Service]\\nExecStart=/bin/sleep infinity\\n' > /etc/systemd/system/{FEED};"
        f" systemctl daemon-reload && systemctl start {FEED} &&"
        f" systemd-run --quiet --unit={GUEST} --slice=machine.slice /bin/sleep infinity"
    )
    try:
        yield lab_vm
    finally:
        lab_vm.ssh(
            f"systemctl stop {FEED} {GUEST}; rm -f /etc/systemd/system/{FEED};"
            " systemctl daemon-reload"
        )
        os.environ.pop("QUIETCORE_STATE_DIR", None)


def test_units_apply_verify_restart_and_roll_back(units: Lab) -> None:
    inventory = str(units.inventory)
    before = _state(units)
    assert "Cpus_allowed_list: 0-3" in before[FEED], before

    applied = _cli("apply", "-p", str(PROFILE), "--reboot", "never", "--yes", "--json", inventory)
    # Exit 1: the feed's NUMA policy and memlock limit wait for its restart.
    assert applied.returncode == 1, applied.stdout + applied.stderr
    verify = _cli("verify", "-p", str(PROFILE), "--format", "json", inventory)
    settings = _settings(verify)
    drifting = {key for key, s in settings.items() if s["status"] != "ok"}
    assert drifting == {f"units/{FEED}/process/numa_policy", f"units/{FEED}/process/memlock"}
    assert "next starts" in settings[f"units/{FEED}/process/numa_policy"]["reason"]

    # The kernel's side, read directly: systemd applied the cgroup settings at daemon-reload.
    applied_state = _state(units)
    assert "Cpus_allowed_list: 2-3 Mems_allowed_list: 1" in applied_state[FEED]
    assert "Cpus_allowed_list: 3 Mems_allowed_list: 1" in applied_state[GUEST]
    assert applied_state[f"system.slice/{FEED}/memory.max"] == str(256 * 1024 * 1024)
    assert applied_state[f"system.slice/{FEED}/cpu.weight"] == "500"
    assert applied_state["machine.slice/memory.max"] == str(512 * 1024 * 1024)
    assert applied_state["machine.slice/cpu.weight"] == "200"

    # The operator restarts the service: its process gets the policy and the limit.
    units.ssh(f"systemctl restart {FEED}")
    verify = _cli("verify", "-p", str(PROFILE), "--format", "json", inventory)
    assert verify.returncode == 0, verify.stdout
    process = units.ssh(
        f"pid=$(systemctl show -p MainPID --value {FEED});"
        " head -n 1 /proc/$pid/numa_maps | cut -d' ' -f2;"
        " grep 'Max locked memory' /proc/$pid/limits"
    )
    assert process.split()[0] == "bind:1" and "unlimited" in process, process

    rolled = _cli("rollback", "--yes", "--json", inventory)
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    left = units.ssh("for f in " + " ".join(DROP_INS) + '; do [ ! -e "$f" ] || echo "$f"; done')
    assert left.strip() == ""
    # Exactly the kernel state from before: controllers, cgroup files, every task's placement.
    # (The running feed keeps the NUMA policy it was started with, until it restarts.)
    assert _state(units) == before
