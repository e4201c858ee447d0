"""Read what ``quietcore exec`` decides from: the partition cgroup, isolated and online CPUs,
NUMA nodes, on the local host (``root`` only moves the file system, for tests)."""

from __future__ import annotations

import platform
import re
from pathlib import Path

from quietcore import cgroup_layout
from quietcore.profile.cpuset import CpuSet, parse_cpulist
from quietcore.workload.exec_plan import BOOT_ISOLATED_FILE, HostView, Partition

ONLINE_FILE = "/sys/devices/system/cpu/online"
NODE_DIR = "/sys/devices/system/node"
HAS_MEMORY_FILE = f"{NODE_DIR}/has_memory"
SELF_STATUS = "/proc/self/status"
_NODE_NAME = re.compile(r"^node(\d+)$")
_MEMS_ALLOWED = re.compile(r"^Mems_allowed_list:\s*(\S*)\s*$", re.MULTILINE)


def read_host_view(root: Path = Path("/"), arch: str | None = None) -> HostView:
    def read(path: str) -> str | None:
        try:
            return (root / path.lstrip("/")).read_text()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def cpus(path: str) -> CpuSet:
        return parse_cpulist(read(path) or "")

    version = cgroup_layout.cpuset_version(
        read(cgroup_layout.V2_CONTROLLERS), read(cgroup_layout.V1_ROOT_CPUS)
    )
    partition = None
    if version is not None:
        directory = cgroup_layout.partition(version)
        effective = read(f"{directory}/{cgroup_layout.EFFECTIVE_CPUS[version]}")
        if effective is not None:
            state = read(f"{directory}/cpuset.cpus.partition") if version == "v2" else None
            partition = Partition(
                version=version,
                path=directory,
                cpus=parse_cpulist(effective),
                mems=cpus(f"{directory}/{cgroup_layout.EFFECTIVE_MEMS[version]}"),
                state=state.strip() if state is not None else None,
            )
    node_dir = root / NODE_DIR.lstrip("/")
    node_cpus: dict[int, CpuSet] = {}
    if node_dir.is_dir():
        for entry in node_dir.iterdir():
            match = _NODE_NAME.match(entry.name)
            if match is not None:
                node_cpus[int(match[1])] = cpus(f"{NODE_DIR}/{entry.name}/cpulist")
    mems_allowed = _MEMS_ALLOWED.search(read(SELF_STATUS) or "")
    return HostView(
        partition=partition,
        boot_isolated=cpus(BOOT_ISOLATED_FILE),
        online=cpus(ONLINE_FILE),
        node_cpus=node_cpus,
        # Without has_memory (an old kernel), every node is taken to have memory.
        memory_nodes=(
            parse_cpulist(has_memory)
            if (has_memory := read(HAS_MEMORY_FILE)) is not None
            else frozenset(node_cpus)
        ),
        allowed_mems=parse_cpulist(mems_allowed[1]) if mems_allowed else frozenset(),
        arch=arch or platform.machine(),
        cgroup_version=version,
    )
