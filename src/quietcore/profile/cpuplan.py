"""The CPU plan: which CPUs a profile reserves for housekeeping and which it isolates.

Pure. Tokens (``reserved``, ``isolated``, ``rest``, ``all``, ``{per_numa_node: N}``) become
concrete CPU sets against one host's topology; what the host cannot satisfy raises
``ResolveError`` naming the profile field.
"""

from __future__ import annotations

from dataclasses import dataclass

from quietcore.profile.cpuset import (
    CpuSet,
    CpuSetError,
    format_cpulist,
    parse_cpulist,
    parse_selection,
    select_positions,
)
from quietcore.profile.errors import ResolveError
from quietcore.profile.schema import CpuSection, Profile
from quietcore.topology import Topology


@dataclass(frozen=True)
class CpuPlan:
    """The concrete CPU sets of a profile on one host."""

    online: CpuSet
    reserved: CpuSet
    isolated: CpuSet


def _cpus_word(cpus: CpuSet) -> str:
    return f"CPU {format_cpulist(cpus)}" if len(cpus) == 1 else f"CPUs {format_cpulist(cpus)}"


def require_online(cpus: CpuSet, online: CpuSet, field: str, present: CpuSet = frozenset()) -> None:
    """Refuse CPUs that are not online, saying which are offline and which do not exist
    (when ``present`` is known)."""
    missing = cpus - online
    if not missing:
        return
    offline = missing & present
    absent = missing - present if present else frozenset()
    unknown = missing - offline - absent
    reasons = [
        f"{_cpus_word(group)} {why}"
        for group, why in ((absent, "not present"), (offline, "offline"), (unknown, "not online"))
        if group
    ]
    raise ResolveError(
        field, f"{' and '.join(reasons)} on this host (online CPUs: {format_cpulist(online)})"
    )


def _per_numa_node(topology: Topology, count: int, smt: str) -> CpuSet:
    """The first ``count`` cores (or CPUs, when SMT siblings may be split) of every node."""
    reserved: set[int] = set()
    for node in sorted(topology.nodes.values(), key=lambda node: node.id):
        if not node.cpus:
            continue  # memory-only node
        if smt == "split":
            units = [frozenset({cpu}) for cpu in sorted(node.cpus)]
        else:
            units = topology.cores_of(node.id)
        if len(units) < count:
            unit = "CPUs" if smt == "split" else "cores"
            raise ResolveError(
                "cpu.reserved.per_numa_node",
                f"asks for {count} {unit} per NUMA node but node {node.id} has "
                f"{len(units)} ({format_cpulist(node.cpus)})",
            )
        for cpus in units[:count]:
            reserved |= cpus
    return frozenset(reserved)


def _reserved(section: CpuSection, topology: Topology) -> CpuSet:
    spec = section.reserved
    if spec is None:
        return frozenset()
    if not isinstance(spec, str):
        return _per_numa_node(topology, spec.per_numa_node, section.smt)
    reserved = topology.online if spec == "all" else parse_cpulist(spec)
    require_online(reserved, topology.online, "cpu.reserved", topology.present)
    return reserved


def _isolated(section: CpuSection, topology: Topology, reserved: CpuSet) -> CpuSet:
    if section.isolated is None:
        return frozenset()
    if section.isolated == "rest":
        isolated = topology.online - reserved
    else:
        isolated = parse_cpulist(section.isolated)
        require_online(isolated, topology.online, "cpu.isolated", topology.present)
    if not isolated:
        raise ResolveError(
            "cpu.isolated",
            f"leaves no CPU to isolate: {_cpus_word(reserved)} reserved of online "
            f"{format_cpulist(topology.online)}",
        )
    if isolated >= topology.online:
        raise ResolveError(
            "cpu.isolated",
            f"isolates every online CPU ({format_cpulist(topology.online)}); at least one "
            "housekeeping CPU must remain for the OS, interrupts and kernel threads",
        )
    if overlap := isolated & reserved:
        raise ResolveError(
            "cpu.isolated", f"{_cpus_word(overlap)} would be both reserved and isolated"
        )
    return isolated


def _check_smt_together(section: CpuSection, topology: Topology, plan: CpuPlan) -> None:
    for cpu in sorted(plan.isolated):
        sharing = topology.cpus[cpu].siblings & plan.reserved
        if sharing:
            raise ResolveError(
                "cpu.isolated" if section.isolated != "rest" else "cpu.reserved",
                f"isolated CPU {cpu} shares an SMT core with reserved {_cpus_word(sharing)}; "
                "keep whole cores on one side or set cpu.smt: split",
            )


def plan_cpus(profile: Profile, topology: Topology) -> CpuPlan:
    """The reserved and isolated CPUs of ``profile`` on this host; both empty when the
    profile does not partition CPUs."""
    section = profile.cpu
    reserved = _reserved(section, topology)
    isolated = _isolated(section, topology, reserved)
    plan = CpuPlan(online=topology.online, reserved=reserved, isolated=isolated)
    if section.smt == "together":
        _check_smt_together(section, topology, plan)
    return plan


def resolve_cpu_text(spec: str, cpus: CpuPlan) -> CpuSet:
    """``reserved``, ``isolated``, ``rest``, ``all``, positions of one of them
    (``isolated[0]``, ``isolated[1-2]``) or a CPU list, as concrete online CPUs.
    A token the profile gave no meaning to (``reserved`` without ``cpu.reserved``) is refused,
    naming the missing declaration."""
    selection = parse_selection(spec)
    if selection is not None:
        name, positions = selection
        try:
            return select_positions(resolve_cpu_text(name, cpus), positions, name)
        except CpuSetError as error:
            raise ResolveError("", str(error)) from None
    if spec in ("reserved", "rest") and not cpus.reserved:
        raise ResolveError(
            "cpu.reserved", f"{spec!r} needs cpu.reserved (the housekeeping CPUs) to be declared"
        )
    if spec == "isolated" and not cpus.isolated:
        raise ResolveError(
            "cpu.isolated", "'isolated' resolves to no CPU: cpu.isolated is not declared"
        )
    tokens = {
        "all": cpus.online,
        "reserved": cpus.reserved,
        "isolated": cpus.isolated,
        "rest": cpus.online - cpus.reserved,
    }
    concrete = tokens[spec] if spec in tokens else parse_cpulist(spec)
    require_online(concrete, cpus.online, "")
    if not concrete:
        raise ResolveError("", f"{spec!r} resolves to no CPU on this host")
    return concrete
