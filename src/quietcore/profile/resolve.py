"""Make a profile concrete for one host: CPU sets from its topology, then every setting.

Pure: a ``Profile`` and a ``Topology`` in, a ``CpuPlan`` and ``list[Setting]`` out. Whatever the
host cannot satisfy (a CPU it does not have, no housekeeping CPU left, more hugepages than a
node's memory) raises ``ResolveError`` naming the profile field, before any family or
operation sees the profile; ``refuse`` turns it into a ``ProfileError`` with file and line.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator, Sequence

from pydantic import BaseModel

from quietcore.knobs.base import CpuPlan, KnobFamily, ResolveContext, Setting
from quietcore.knobs.registry import FAMILIES
from quietcore.profile.cpuset import CpuSet, format_cpulist, parse_cpulist
from quietcore.profile.errors import ProfileError, ProfileProblem
from quietcore.profile.loaded import LoadedProfile
from quietcore.profile.schema import CpuSection, CpuText, HugepagesSection, Profile, size_kib
from quietcore.topology import Topology


class ResolveError(Exception):
    """The profile cannot be satisfied on this host. ``field`` is the dotted profile path."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


def refuse(loaded: LoadedProfile, error: ResolveError) -> ProfileError:
    file, line = loaded.locate(error.field)
    return ProfileError([ProfileProblem(file, line, error.field, error.message)])


def _cpus_word(cpus: CpuSet) -> str:
    return f"CPU {format_cpulist(cpus)}" if len(cpus) == 1 else f"CPUs {format_cpulist(cpus)}"


def _require_online(
    cpus: CpuSet, online: CpuSet, field: str, present: CpuSet = frozenset()
) -> None:
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


# --- CPU plan ---------------------------------------------------------------------------------


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
    _require_online(reserved, topology.online, "cpu.reserved", topology.present)
    return reserved


def _isolated(section: CpuSection, topology: Topology, reserved: CpuSet) -> CpuSet:
    if section.isolated is None:
        return frozenset()
    if section.isolated == "rest":
        isolated = topology.online - reserved
    else:
        isolated = parse_cpulist(section.isolated)
        _require_online(isolated, topology.online, "cpu.isolated", topology.present)
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
    """``reserved``, ``isolated``, ``rest``, ``all`` or a CPU list, as concrete online CPUs.
    A token the profile gave no meaning to (``reserved`` without ``cpu.reserved``) is refused,
    naming the missing declaration."""
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
    _require_online(concrete, cpus.online, "")
    if not concrete:
        raise ResolveError("", f"{spec!r} resolves to no CPU on this host")
    return concrete


def _is_cpu_text(model: type[BaseModel], name: str) -> bool:
    info = model.model_fields[name]
    return CpuText in typing.get_args(info.annotation) or any(
        check in info.metadata for check in typing.get_args(CpuText)[1:]
    )


def _cpu_texts(model: BaseModel, path: str = "") -> Iterator[tuple[str, str]]:
    """(field path, value) of every CPU-set field outside the ``cpu`` section itself."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        field = f"{path}{name}"
        if isinstance(value, CpuSection):
            continue  # plan_cpus owns it
        if isinstance(value, str) and _is_cpu_text(type(model), name):
            yield field, value
        elif isinstance(value, BaseModel):
            yield from _cpu_texts(value, f"{field}.")
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, BaseModel):
                    yield from _cpu_texts(item, f"{field}.{index}.")


def _check_cpu_texts(profile: Profile, cpus: CpuPlan) -> None:
    for field, spec in _cpu_texts(profile):
        try:
            resolve_cpu_text(spec, cpus)
        except ResolveError as error:
            raise ResolveError(field, error.message) from None


# --- Hugepages --------------------------------------------------------------------------------


def _gib(kib: int) -> str:
    return f"{kib / 1024 / 1024:.1f} GiB"


def _check_hugepages(section: HugepagesSection, topology: Topology) -> None:
    supported = ", ".join(f"{kib}kB" for kib in topology.hugepage_sizes_kib) or "none"
    if section.default_size and size_kib(section.default_size) not in topology.hugepage_sizes_kib:
        raise ResolveError(
            "hugepages.default_size",
            f"this host does not offer {section.default_size} hugepages (it offers {supported})",
        )
    host_kib = sum(node.mem_total_kib for node in topology.nodes.values())
    used_kib: dict[int | None, int] = {}  # by node; None is the whole host
    for index, pool in enumerate(section.pages):
        field = f"hugepages.pages.{index}"
        if size_kib(pool.size) not in topology.hugepage_sizes_kib:
            raise ResolveError(
                f"{field}.size",
                f"this host does not offer {pool.size} hugepages (it offers {supported})",
            )
        if pool.node is not None and pool.node not in topology.nodes:
            nodes = ", ".join(str(node) for node in sorted(topology.nodes))
            raise ResolveError(
                f"{field}.node", f"this host has no NUMA node {pool.node} (its nodes: {nodes})"
            )
        kib = size_kib(pool.size) * pool.count
        scopes: list[tuple[int | None, int, str]] = [(None, host_kib, "the host")]
        if pool.node is not None:
            node_kib = topology.nodes[pool.node].mem_total_kib
            scopes.insert(0, (pool.node, node_kib, f"node {pool.node}"))
        for scope, limit_kib, where in scopes:
            used_kib[scope] = used_kib.get(scope, 0) + kib
            if used_kib[scope] > limit_kib:
                raise ResolveError(
                    f"{field}.count",
                    f"{_gib(used_kib[scope])} of hugepages exceed the {_gib(limit_kib)} of "
                    f"memory of {where}",
                )


# --- Settings ---------------------------------------------------------------------------------


def _refuse_duplicates(settings: list[Setting]) -> None:
    first: dict[str, Setting] = {}
    for setting in settings:
        earlier = first.setdefault(setting.key, setting)
        if earlier is not setting:
            raise ResolveError(
                setting.field,
                f"sets {setting.key} to {setting.desired!r}, but {earlier.field} already sets "
                f"it to {earlier.desired!r}",
            )


def resolve(
    loaded: LoadedProfile, topology: Topology, families: Sequence[KnobFamily] = FAMILIES
) -> list[Setting]:
    """Every setting the profile asks for on this host, host-level impossibilities refused.
    ``families`` defaults to the registry."""
    profile = loaded.profile
    cpus = plan_cpus(profile, topology)
    _check_cpu_texts(profile, cpus)
    _check_hugepages(profile.hugepages, topology)
    ctx = ResolveContext(profile, topology, cpus, loaded.source_of)
    settings = [setting for family in families for setting in family.desired(ctx)]
    _refuse_duplicates(settings)
    return settings
