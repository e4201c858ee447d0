"""The docker/podman flags that place one ``containers.workloads`` entry on a host. Pure.

``--cpuset-cpus`` and ``--cpuset-mems`` from the workload's CPUs and memory nodes (``local``:
the nodes of those CPUs), ``--memory``, ``--ulimit memlock`` (``-1`` is unlimited) and, for
``hugepages``, a bind mount of the host's hugetlbfs mount of that page size at
``/dev/hugepages``. docker and podman (both parse these flags with the same Go libraries) take
the same flags, so there is no runtime choice. Every flag is one ``--name=value`` word, so the
words survive ``$(...)`` word splitting as well as JSON.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from quietcore.facts import merge_reads
from quietcore.knobs.hugepages import MEMINFO, MOUNTS, default_size_kib, hugetlbfs_mounts
from quietcore.placement import place
from quietcore.profile.cpuplan import plan_cpus
from quietcore.profile.cpuset import format_cpulist
from quietcore.profile.errors import ResolveError
from quietcore.profile.loaded import LoadedProfile
from quietcore.profile.schema import Workload, limit_bytes, size_kib
from quietcore.readings import Readings, ReadSpec
from quietcore.topology import TOPOLOGY_READS, Topology

READS = merge_reads([TOPOLOGY_READS, ReadSpec(files=(MOUNTS,))])
HUGEPAGES_IN_CONTAINER = "/dev/hugepages"
# A mount point that can stand in a --mount value: no ',' or '=' (its separators), no space.
_MOUNT_POINT = re.compile(r"^/[A-Za-z0-9_./-]*$")
_UNITS = (("t", 1024**4), ("g", 1024**3), ("m", 1024**2), ("k", 1024))


@dataclass(frozen=True)
class ContainerPlacement:
    workload: str
    cpus: str
    mem_nodes: str
    args: tuple[str, ...]
    notes: tuple[str, ...]  # what the operator should know (no hugepages reserved there)


def find_workload(loaded: LoadedProfile, name: str) -> tuple[int, Workload]:
    workloads = loaded.profile.containers.workloads
    for index, workload in enumerate(workloads):
        if workload.name == name:
            return index, workload
    names = ", ".join(workload.name for workload in workloads) or "none"
    raise ResolveError(
        "containers.workloads", f"no workload named {name!r} (the profile declares: {names})"
    )


def memory_flag(size: int) -> str:
    """Bytes in the largest unit that says them exactly, as docker writes sizes (``8g``)."""
    for suffix, factor in _UNITS:
        if size % factor == 0:
            return f"{size // factor}{suffix}"
    return str(size)


def _hugepage_mount(workload: Workload, field: str, readings: Readings, topology: Topology) -> str:
    assert workload.hugepages is not None
    kib = size_kib(workload.hugepages)
    if kib not in topology.hugepage_sizes_kib:
        offered = ", ".join(f"{size}kB" for size in topology.hugepage_sizes_kib) or "none"
        raise ResolveError(
            f"{field}.hugepages",
            f"this host does not offer {workload.hugepages} hugepages (it offers {offered})",
        )
    mounts = hugetlbfs_mounts(
        readings.lines(MOUNTS) or (), default_size_kib(readings.lines(MEMINFO) or ())
    )
    usable = [path for path in mounts.get(kib, []) if _MOUNT_POINT.match(path)]
    if not usable:
        raise ResolveError(
            f"{field}.hugepages",
            f"no hugetlbfs mount of {workload.hugepages} pages on this host to give the "
            f"container: mount one, e.g. `mount -t hugetlbfs -o pagesize={workload.hugepages} "
            f"none /dev/hugepages{workload.hugepages}`",
        )
    return usable[0]


def container_placement(
    loaded: LoadedProfile, name: str, readings: Readings, topology: Topology
) -> ContainerPlacement:
    """The flags for workload ``name`` on the host these readings come from; ``ResolveError``
    (with the profile field) when the host cannot satisfy it."""
    index, workload = find_workload(loaded, name)
    field = f"containers.workloads.{index}"
    plan = plan_cpus(loaded.profile, topology)
    spot = place(
        workload.cpus,
        workload.mem_nodes,
        profile=loaded.profile,
        plan=plan,
        topology=topology,
        field=field,
    )
    assert spot.cpus is not None and spot.mem_nodes is not None
    cpus, nodes = format_cpulist(spot.cpus), format_cpulist(spot.mem_nodes)
    args = [f"--cpuset-cpus={cpus}", f"--cpuset-mems={nodes}"]
    notes: list[str] = []
    if workload.memory is not None:
        args.append(f"--memory={memory_flag(limit_bytes(workload.memory) or 0)}")
    if workload.memlock is not None:
        limit = limit_bytes(workload.memlock)
        value = "-1" if limit is None else str(limit)
        args.append(f"--ulimit=memlock={value}:{value}")
    if workload.hugepages is not None:
        mount = _hugepage_mount(workload, field, readings, topology)
        args.append(f"--mount=type=bind,source={mount},destination={HUGEPAGES_IN_CONTAINER}")
        kib = size_kib(workload.hugepages)
        reserved = sum(topology.nodes[node].hugepages.get(kib, 0) for node in spot.mem_nodes)
        if not reserved:
            notes.append(
                f"NUMA node {nodes} has no {workload.hugepages} hugepages reserved: declare "
                "them in hugepages.pages and apply the profile"
            )
    return ContainerPlacement(workload.name, cpus, nodes, tuple(args), tuple(notes))
