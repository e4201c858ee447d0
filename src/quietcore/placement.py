"""Where a service, slice or container runs: its CPUs and NUMA memory nodes on one host. Pure.

Shared by the ``units`` knob family (systemd's ``AllowedCPUs``/``AllowedMemoryNodes``) and
``quietcore container-args`` (``--cpuset-cpus``/``--cpuset-mems``), so a profile places a
service and a container the same way. Problems raise ``ResolveError`` naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass

from quietcore.profile.cpuplan import CpuPlan, resolve_cpu_text
from quietcore.profile.cpuset import CpuSet, format_cpulist, parse_cpulist
from quietcore.profile.errors import ResolveError
from quietcore.profile.schema import Profile
from quietcore.topology import Topology


@dataclass(frozen=True)
class Placement:
    cpus: CpuSet | None
    mem_nodes: CpuSet | None


def memory_nodes(spec: str, cpus: CpuSet | None, topology: Topology, field: str) -> CpuSet:
    """``local`` (the nodes of ``cpus``) or a node list, as nodes of this host that have
    memory: a node the host lacks, or a CPU-only node, cannot hold anything."""
    if spec == "local":
        if not cpus:
            raise ResolveError(field, "'local' means the NUMA nodes of cpus, and there are none")
        nodes = frozenset(topology.node_of(cpu) for cpu in cpus)
    else:
        nodes = parse_cpulist(spec)
    with_memory = frozenset(node for node, info in topology.nodes.items() if info.mem_total_kib)
    if unknown := nodes - frozenset(topology.nodes):
        raise ResolveError(
            field,
            f"this host has no NUMA node {format_cpulist(unknown)} "
            f"(its nodes: {format_cpulist(frozenset(topology.nodes))})",
        )
    if empty := nodes - with_memory:
        raise ResolveError(field, f"NUMA node {format_cpulist(empty)} has no memory on this host")
    return nodes


def refuse_partitioned(cpus: CpuSet, plan: CpuPlan, profile: Profile, field: str) -> None:
    """Runtime isolation (``cpu.isolation: [cpuset]``) gives the isolated CPUs to quietcore's
    cpuset partition: the kernel then takes them away from every other cgroup, so a systemd
    unit or a container asking for them would silently get none of them."""
    if "cpuset" not in profile.cpu.isolation:
        return
    if overlap := cpus & plan.isolated:
        raise ResolveError(
            field,
            f"CPU {format_cpulist(overlap)} belongs to the cpuset partition of cpu.isolation "
            "(cpuset): no systemd unit or container can use it; start the workload with "
            "`quietcore exec`, or isolate at boot (isolcpus) instead",
        )


def place(
    cpus_spec: str | None,
    nodes_spec: str | None,
    *,
    profile: Profile,
    plan: CpuPlan,
    topology: Topology,
    field: str,
) -> Placement:
    """The concrete placement of one profile entry at ``field`` (``numa.services.0``)."""
    cpus = None
    if cpus_spec is not None:
        try:
            cpus = resolve_cpu_text(cpus_spec, plan)
        except ResolveError as error:
            raise ResolveError(error.field or f"{field}.cpus", error.message) from None
        refuse_partitioned(cpus, plan, profile, f"{field}.cpus")
    nodes = None
    if nodes_spec is not None:
        nodes = memory_nodes(nodes_spec, cpus, topology, f"{field}.mem_nodes")
    return Placement(cpus, nodes)
