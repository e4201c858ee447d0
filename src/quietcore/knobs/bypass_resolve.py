"""What the ``bypass:`` section means on one host (pure), shared by the families it feeds:
the listed PCI devices as the host has them, the poll CPUs, the NUMA nodes local to the
devices, and every hugepage pool (declared in ``hugepages.pages`` or derived from
``bypass.hugepages``) with the kernel arguments that allocate the boot-time ones.

Nothing here reads a host: it works on the ``ResolveContext`` (profile + topology) and raises
``ResolveError`` naming the profile field for whatever the host cannot satisfy.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from quietcore.knobs.base import ResolveContext
from quietcore.profile.cpuset import CpuSet
from quietcore.profile.errors import ResolveError
from quietcore.profile.schema import size_kib
from quietcore.topology import PciDevice, Topology

# Where the poll-mode threads run when the profile does not say: the isolated CPUs.
DEFAULT_POLL_CPUS = "isolated"
BYPASS_POOL_FIELD = "bypass.hugepages"


def devices(ctx: ResolveContext) -> list[tuple[str, PciDevice]]:
    """(profile field, device) for every listed device; one the host lacks is refused."""
    found = []
    for index, address in enumerate(ctx.profile.bypass.devices):
        field = f"bypass.devices.{index}"
        device = ctx.topology.pci_devices.get(address)
        if device is None:
            raise ResolveError(field, f"this host has no PCI device {address} ({_known(ctx)})")
        found.append((field, device))
    return found


def _known(ctx: ResolveContext) -> str:
    if not ctx.topology.pci_devices:
        return "no PCI device could be listed from /sys/bus/pci/devices"
    return "see `lspci -D` on the host for its addresses"


def poll_cpus(ctx: ResolveContext) -> CpuSet:
    """The CPUs of the poll-mode threads (``bypass.poll_cpus``, default the isolated ones)."""
    spec = ctx.profile.bypass.poll_cpus or DEFAULT_POLL_CPUS
    cpus = ctx.cpuset(spec)
    if not cpus:
        raise ResolveError(
            "bypass.poll_cpus",
            f"{spec!r} is no CPU on this host: poll-mode threads need CPUs of their own "
            "(isolate some with cpu.isolated, or list them here)",
        )
    return cpus


def nodes_of(cpus: CpuSet, topology: Topology) -> list[int]:
    return sorted({topology.node_of(cpu) for cpu in cpus if cpu in topology.cpus})


def local_nodes(ctx: ResolveContext) -> list[int]:
    """NUMA nodes local to the listed devices; a device of unknown node (-1) counts as local to
    every node of the poll CPUs, and without devices those nodes are the answer."""
    nodes: set[int] = set()
    unknown = not ctx.profile.bypass.devices
    for _, device in devices(ctx):
        if device.numa_node is None:
            unknown = True
        else:
            nodes.add(device.numa_node)
    if unknown:
        nodes.update(nodes_of(poll_cpus(ctx), ctx.topology))
    return sorted(nodes)


# --- Hugepage pools ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Pool:
    """One hugepage pool the profile asks for on this host."""

    kib: int
    node: int | None  # None: host-wide
    pages: int
    boot: bool  # allocated by the kernel at boot (hugepagesz= / hugepages=)
    origin: str  # the profile field of the pool: ``hugepages.pages.0`` or ``bypass.hugepages``
    count_field: str  # the field that gives its size: ``...count``, ``...cover``, ``per_node``


def _declared(ctx: ResolveContext) -> Iterator[Pool]:
    for index, pool in enumerate(ctx.profile.hugepages.pages):
        origin = f"hugepages.pages.{index}"
        declared = "count" if pool.count is not None else "cover"
        yield Pool(
            size_kib(pool.size), pool.node, pool.pages, pool.boot, origin, f"{origin}.{declared}"
        )


def _derived(ctx: ResolveContext, declared: list[Pool]) -> Iterator[Pool]:
    wanted = ctx.profile.bypass.hugepages
    if wanted is None:
        return
    kib = size_kib(wanted.size)
    if kib not in ctx.topology.hugepage_sizes_kib:
        offered = ", ".join(f"{size}kB" for size in ctx.topology.hugepage_sizes_kib) or "none"
        raise ResolveError(
            f"{BYPASS_POOL_FIELD}.size",
            f"this host does not offer {wanted.size} hugepages (it offers {offered})",
        )
    for node in local_nodes(ctx):
        for pool in declared:
            if pool.kib == kib and pool.node in (None, node):
                where = "the whole host" if pool.node is None else f"node {node}"
                raise ResolveError(
                    pool.origin,
                    f"{wanted.size} pages for {where} are also derived by {BYPASS_POOL_FIELD} "
                    f"(node {node} is local to the bypass devices or poll CPUs); declare them "
                    "in one place",
                )
        memory = ctx.topology.nodes[node].mem_total_kib
        if kib * wanted.per_node > memory:
            raise ResolveError(
                f"{BYPASS_POOL_FIELD}.per_node",
                f"{wanted.per_node} x {wanted.size} exceed the memory of node {node}",
            )
        yield Pool(
            kib, node, wanted.per_node, True, BYPASS_POOL_FIELD, f"{BYPASS_POOL_FIELD}.per_node"
        )


def pools(ctx: ResolveContext) -> list[Pool]:
    """Every pool: the declared ones, then those ``bypass.hugepages`` derives (boot-time,
    ``per_node`` pages on each node local to the devices); a pool both would declare is
    refused, so no key has two owners."""
    declared = list(_declared(ctx))
    return [*declared, *_derived(ctx, declared)]


def boot_arguments(ctx: ResolveContext) -> list[tuple[str, str]]:
    """(kernel argument, profile field) that allocate the boot-time pools: ``hugepagesz=`` and
    then ``hugepages=`` (a count, or ``node:count,...`` per node: kernel >= 5.18), in that
    order, because ``hugepages=`` applies to the ``hugepagesz=`` before it."""
    booted = [pool for pool in pools(ctx) if pool.boot]
    if not booted:
        return []
    first = booted[0]
    for pool in booted[1:]:
        if pool.kib != first.kib:
            raise ResolveError(
                pool.origin,
                f"boot-time pools use one page size: {first.origin} already boots "
                f"{format_size_kib(first.kib)} pages, and the kernel command line quietcore "
                "writes carries one hugepagesz= / hugepages= pair",
            )
        if (pool.node is None) != (first.node is None):
            raise ResolveError(
                pool.origin,
                f"{first.origin} and this pool mix a host-wide and a per-node boot-time pool; "
                "hugepages= takes either one count or node:count pairs",
            )
    if first.node is None:
        count = str(first.pages)
    else:
        count = ",".join(f"{pool.node}:{pool.pages}" for pool in sorted(booted, key=_node))
    return [
        (f"hugepagesz={format_size_kib(first.kib)}", f"{first.origin}.size"),
        (f"hugepages={count}", first.count_field),
    ]


def _node(pool: Pool) -> int:
    return -1 if pool.node is None else pool.node


def format_size_kib(kib: int) -> str:
    """1048576 -> ``1G``, 2048 -> ``2M``, 64 -> ``64K``: the largest exact unit."""
    for unit, factor in (("G", 1024 * 1024), ("M", 1024)):
        if kib % factor == 0:
            return f"{kib // factor}{unit}"
    return f"{kib}K"
