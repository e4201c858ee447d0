"""Where quietcore's runtime isolation lives in the cgroup tree (see ``knobs/cpuset.py``).

Shared by the knob family (which reads and writes these files over SSH) and by ``quietcore
exec`` (which places a workload in the partition on the local host), so both always agree on
the layout. Constants and pure helpers only; stdlib.

- cgroup v2 (the unified hierarchy offers the ``cpuset`` controller): the partition is
  ``/sys/fs/cgroup/quietcore-isolated`` with ``cpuset.cpus.partition = isolated``: the kernel
  takes its CPUs out of every other cgroup and out of load balancing. systemd's housekeeping
  slices are confined to the reserved CPUs as well.
- cgroup v1: the partition is ``/sys/fs/cgroup/cpuset/quietcore-isolated``, an exclusive cpuset
  without load balancing; every user task moves to ``quietcore-housekeeping``, a cpuset of the
  reserved CPUs, because v1 never takes CPUs away from the root cpuset.
"""

from __future__ import annotations

from typing import Literal

CgroupVersion = Literal["v1", "v2"]

V2_ROOT = "/sys/fs/cgroup"
V2_CONTROLLERS = f"{V2_ROOT}/cgroup.controllers"
V1_ROOT = "/sys/fs/cgroup/cpuset"
V1_ROOT_CPUS = f"{V1_ROOT}/cpuset.cpus"
PARTITION_NAME = "quietcore-isolated"
HOUSEKEEPING_NAME = "quietcore-housekeeping"
# The partition as ``/proc/PID/cpuset`` names it, in either version.
PARTITION_CGROUP = f"/{PARTITION_NAME}"
# v1's cpuset for every task that is not a workload (v2 uses systemd's slices).
V1_HOUSEKEEPING = f"{V1_ROOT}/{HOUSEKEEPING_NAME}"
# systemd's units for everything that is not a workload: PID 1, services, logins.
HOUSEKEEPING_SLICES = ("init.scope", "system.slice", "user.slice")

# The kernel names a cpuset's CPUs differently in the two versions.
EFFECTIVE_CPUS: dict[CgroupVersion, str] = {
    "v1": "cpuset.effective_cpus",
    "v2": "cpuset.cpus.effective",
}
EFFECTIVE_MEMS: dict[CgroupVersion, str] = {
    "v1": "cpuset.effective_mems",
    "v2": "cpuset.mems.effective",
}


def cpuset_version(v2_controllers: str | None, v1_root_cpus: str | None) -> CgroupVersion | None:
    """Which cpuset hierarchy a host offers, from ``V2_CONTROLLERS`` and ``V1_ROOT_CPUS`` (their
    text, ``None`` when absent). v2 wins: a hybrid host with an empty unified hierarchy (all
    controllers bound to v1) is v1."""
    if v2_controllers is not None and "cpuset" in v2_controllers.split():
        return "v2"
    if v1_root_cpus is not None:
        return "v1"
    return None


def root(version: CgroupVersion) -> str:
    return V2_ROOT if version == "v2" else V1_ROOT


def partition(version: CgroupVersion) -> str:
    return f"{root(version)}/{PARTITION_NAME}"
