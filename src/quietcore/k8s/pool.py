"""A Kubernetes node pool's values: a profile resolved against one node's topology.

Pure. ``pool_values`` gathers what the manifests of ``quietcore k8s render`` need: the pool's
label and optional taint, the reserved and isolated CPUs, the NUMA nodes, the hugepages, the
kubelet settings and every resolved setting (the verifier's checks come from them).

Without a node to read, ``declared_topology`` stands in for one, built from the CPU lists the
profile spells out, as one NUMA node (where the kubelet's reservedMemory then goes, as
OpenShift does). A profile whose CPU sets only a real node can give (``rest``, ``all``,
``{per_numa_node: N}``) is refused, naming the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from quietcore.knobs.base import Setting
from quietcore.knobs.kubelet import SECTION as KUBELET_SECTION
from quietcore.profile.cpuplan import plan_cpus
from quietcore.profile.cpuset import CpuSet, parse_cpulist
from quietcore.profile.errors import ResolveError
from quietcore.profile.loaded import LoadedProfile
from quietcore.profile.resolve import cpu_texts, resolve
from quietcore.profile.schema import Profile, size_kib
from quietcore.topology import Cpu, NumaNode, Topology

POOL_LABEL = "quietcore.io/pool"
PROFILE_LABEL = "quietcore.io/profile"
TaintEffect = Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]
TAINT_EFFECTS: tuple[TaintEffect, ...] = ("NoSchedule", "PreferNoSchedule", "NoExecute")
# A DNS-1123 label short enough for every object name derived from it (quietcore-verifier-NAME
# and the pods a DaemonSet makes from it stay within 63 characters).
_POOL_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$")
# Tokens that mean "whatever this host has": only a real node can say which CPUs they are.
_HOST_TOKENS = ("rest", "all")
_DECLARED_MEMORY_KIB = 1 << 40  # no memory limit is known without a node: never refuse on it


class PoolError(ValueError):
    """A pool name or option that cannot make valid Kubernetes objects."""


@dataclass(frozen=True)
class Taint:
    key: str
    value: str
    effect: TaintEffect


@dataclass(frozen=True)
class Hugepages:
    resource: str  # as Kubernetes names it: hugepages-1Gi, hugepages-2Mi
    size_kib: int
    count: int
    node: int | None


@dataclass(frozen=True)
class PoolValues:
    pool: str
    profile: str
    digest: str
    labels: dict[str, str]  # what every node of the pool carries, and what selects them
    taint: Taint | None
    reserved: CpuSet
    isolated: CpuSet
    numa_nodes: tuple[int, ...]
    smt_width: int  # threads per core: full-pcpus-only pods ask for multiples of it
    hugepages: tuple[Hugepages, ...]
    kubelet: tuple[Setting, ...]
    settings: tuple[Setting, ...]  # every resolved setting, the kubelet's included
    topology_from: str | None  # the node read, or None for ``declared_topology``


def check_pool_name(name: str) -> str:
    if not _POOL_NAME.match(name):
        raise PoolError(
            f"pool name {name!r} must be 1-40 lower-case letters, digits and '-', starting and "
            "ending with a letter or digit (it becomes a label value and part of object names)"
        )
    return name


def hugepage_resource(size: str) -> str:
    """``1G`` -> ``hugepages-1Gi``, ``2M`` -> ``hugepages-2Mi``: the extended resource name."""
    kib = size_kib(size)
    for unit, factor in (("Gi", 1024 * 1024), ("Mi", 1024)):
        if kib % factor == 0:
            return f"hugepages-{kib // factor}{unit}"
    return f"hugepages-{kib}Ki"


# --- Without a node -------------------------------------------------------------------------


def _needs_a_node(profile: Profile) -> str | None:
    """The first field whose CPUs only a real node can give, or None."""
    section = profile.cpu
    if section.reserved is not None and not isinstance(section.reserved, str):
        return "cpu.reserved.per_numa_node"
    if section.reserved in _HOST_TOKENS:
        return "cpu.reserved"
    if section.isolated in _HOST_TOKENS:
        return "cpu.isolated"
    for field, spec in cpu_texts(profile):
        if spec in _HOST_TOKENS:
            return field
    return None


def declared_topology(profile: Profile) -> Topology:
    """A stand-in node with exactly the CPUs the profile names, all on NUMA node 0 (plus a
    memory-only node for each other node its hugepages name), each CPU its own core."""
    field = _needs_a_node(profile)
    if field is not None:
        raise ResolveError(
            field,
            "depends on the node's CPUs: give --topology-from NODE (a node of the pool, read "
            "over SSH) or spell the CPUs out as lists",
        )
    texts = [profile.cpu.reserved, profile.cpu.isolated, *(spec for _, spec in cpu_texts(profile))]
    cpus: set[int] = set()
    for text in texts:
        if isinstance(text, str) and text not in ("reserved", "isolated"):
            cpus |= parse_cpulist(text)
    online = frozenset(cpus or {0})
    nodes = {0} | {pool.node for pool in profile.hugepages.pages if pool.node is not None}
    sizes = {size_kib(pool.size) for pool in profile.hugepages.pages}
    if profile.hugepages.default_size:
        sizes.add(size_kib(profile.hugepages.default_size))
    return Topology(
        online=online,
        possible_count=max(online) + 1,
        cpus={cpu: Cpu(cpu, cpu, 0, 0, frozenset({cpu})) for cpu in online},
        nodes={
            node: NumaNode(node, online if node == 0 else frozenset(), _DECLARED_MEMORY_KIB)
            for node in nodes
        },
        hugepage_sizes_kib=tuple(sorted(sizes)),
        interfaces={},
        irqs=(),
        model="declared by the profile",
        flags=frozenset(),
        hypervisor=None,
        kernel_release="",
    )


# --- The pool --------------------------------------------------------------------------------


def pool_values(
    loaded: LoadedProfile,
    topology: Topology,
    pool: str,
    *,
    taint: TaintEffect | None = None,
    topology_from: str | None = None,
) -> PoolValues:
    """The pool's values; ``ResolveError`` (naming the profile field) when the node cannot
    satisfy the profile, ``PoolError`` for a bad pool name."""
    check_pool_name(pool)
    profile = loaded.profile
    if profile.containers.kubelet is None:
        raise ResolveError(
            KUBELET_SECTION, "a node pool needs the kubelet's managers: the profile declares none"
        )
    settings = tuple(resolve(loaded, topology))
    cpus = plan_cpus(profile, topology)
    hugepages = tuple(
        Hugepages(hugepage_resource(pool.size), size_kib(pool.size), pool.pages, pool.node)
        for pool in profile.hugepages.pages
        if pool.pages > 0
    )
    return PoolValues(
        pool=pool,
        profile=profile.name,
        digest=loaded.digest,
        labels={POOL_LABEL: pool},
        taint=None if taint is None else Taint(POOL_LABEL, pool, taint),
        reserved=cpus.reserved,
        isolated=cpus.isolated,
        numa_nodes=tuple(sorted(node.id for node in topology.nodes.values() if node.cpus)),
        smt_width=max((len(cpu.siblings) for cpu in topology.cpus.values()), default=1),
        hugepages=hugepages,
        kubelet=tuple(s for s in settings if s.family == "kubelet"),
        settings=settings,
        topology_from=topology_from,
    )
