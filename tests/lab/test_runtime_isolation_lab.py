"""Runtime isolation on cgroup v2 under systemd (the lab: Debian 12, kernel 6.1): apply with no
reboot, the kernel's partition is valid and systemd's slices are confined, then rollback puts
every cpuset file and every thread's allowed CPUs and cgroup back. The host test does the same
on this machine's cgroup v1."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli
from tests.lab.conftest import Lab

pytestmark = pytest.mark.lab

PROFILE = str(Path(__file__).resolve().parents[2] / "examples" / "runtime-isolation.yaml")

# Run in the guest: every cgroup's cpuset files (cgroup existence too), and every thread by
# (TID, start time). Threads the kernel pins (PF_NO_SETAFFINITY) are left out: the kernel
# itself re-places some of them (workqueue rescuers) when a partition comes and goes.
STATE = r"""
import json, os, glob
files = {}
for directory, _, names in os.walk("/sys/fs/cgroup"):
    for name in names:
        if name.startswith("cpuset.") or name == "cgroup.subtree_control":
            with open(os.path.join(directory, name)) as f:
                files[os.path.join(directory, name)] = f.read().strip()
threads = {}
for task in glob.glob("/proc/[0-9]*/task/[0-9]*"):
    try:
        fields = open(task + "/stat").read().rpartition(")")[2].split()
        if int(fields[6]) & 0x04000000:
            continue
        allowed = sorted(os.sched_getaffinity(int(task.rsplit("/", 1)[1])))
        cgroup = open(task + "/cpuset").read().strip()
    except OSError:
        continue
    threads[task.rsplit("/", 1)[1] + "@" + fields[19]] = [allowed, cgroup]
print(json.dumps({"files": files, "threads": threads}))
"""


def _state(lab: Lab) -> dict[str, Any]:
    state: dict[str, Any] = json.loads(lab.ssh(f"python3 -c '{STATE}'"))
    return state


def _cpuset_results(lab: Lab) -> dict[str, tuple[str, str]]:
    verified = run_cli("verify", "--profile", PROFILE, "-f", "json", str(lab.inventory))
    [host] = json.loads(verified.stdout)["hosts"]
    return {
        s["key"]: (s["status"], s["actual"] or "")
        for s in host["settings"]
        if s["family"] == "cpuset"
    }


def test_apply_without_reboot_then_rollback_restores_everything(
    lab_vm: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUIETCORE_STATE_DIR", str(tmp_path))
    before = _state(lab_vm)
    boot_id = lab_vm.ssh("cat /proc/sys/kernel/random/boot_id")
    applied = run_cli(
        "apply",
        "--yes",
        "--profile",
        PROFILE,
        "--reboot",
        "never",
        str(lab_vm.inventory),
        timeout=600,
    )
    try:
        # Exit 1 at most for IRQs that move at their next interrupt (see docs/isolation.md).
        assert applied.returncode in (0, 1), applied.stdout + applied.stderr
        assert "0 need a reboot" in applied.stdout
        results = _cpuset_results(lab_vm)
        assert {status for status, _ in results.values()} == {"ok"}, results
        assert "cpuset/slice/system.slice/cpus" in results
        partition = lab_vm.ssh("cat /sys/fs/cgroup/quietcore-isolated/cpuset.cpus.partition")
        assert partition.strip() == "isolated"
        # systemd knows the confinement: it survives a daemon-reload.
        lab_vm.ssh("systemctl daemon-reload")
        assert lab_vm.ssh("cat /sys/fs/cgroup/system.slice/cpuset.cpus").strip() == "0,2"
        assert lab_vm.ssh("cat /proc/sys/kernel/random/boot_id") == boot_id
    finally:
        rolled = run_cli("rollback", "--yes", str(lab_vm.inventory), timeout=600)
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    after = _state(lab_vm)
    files_before, files_after = before["files"], after["files"]
    common = files_before.keys() & files_after.keys()
    assert {f: files_after[f] for f in common} == {f: files_before[f] for f in common}
    # Files only on one side belong to units that came or went meanwhile, nothing else.
    in_both = {os.path.dirname(f) for f in files_before} & {os.path.dirname(f) for f in files_after}
    assert {
        f for f in files_before.keys() ^ files_after.keys() if os.path.dirname(f) in in_both
    } == set()
    assert not any("quietcore" in f for f in files_after)
    alive = before["threads"].keys() & after["threads"].keys()
    assert len(alive) > 30
    changed = {t: (before["threads"][t], after["threads"][t]) for t in alive}
    assert {t: pair for t, pair in changed.items() if pair[0] != pair[1]} == {}
