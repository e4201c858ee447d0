"""A host's hardware layout as the kernel reports it: CPUs, cores, sockets, NUMA nodes, NICs.

Built from one ``Readings`` (procfs/sysfs text brought back by the bundle); no I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from quietcore.profile.cpuset import CpuSet


@dataclass(frozen=True)
class Cpu:
    id: int
    core_id: int
    package_id: int
    node: int
    siblings: CpuSet  # SMT threads of the same core, this CPU included


@dataclass(frozen=True)
class NumaNode:
    id: int
    cpus: CpuSet
    mem_total_kib: int
    # Hugepages currently allocated on this node, by page size in KiB.
    hugepages: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Interface:
    name: str
    driver: str | None  # None for virtual devices (lo, bridges, veth)
    numa_node: int | None  # None when the device reports -1 or has no PCI parent
    irqs: tuple[int, ...]  # MSI/MSI-X vectors owned by the device
    rx_queues: int
    tx_queues: int


@dataclass(frozen=True)
class Topology:
    online: CpuSet
    possible_count: int  # how many CPUs the kernel sizes masks for
    cpus: dict[int, Cpu]
    nodes: dict[int, NumaNode]
    hugepage_sizes_kib: tuple[int, ...]
    interfaces: dict[str, Interface]
    irqs: tuple[int, ...]  # numbered IRQs under /proc/irq
    model: str
    flags: frozenset[str]
    hypervisor: str | None  # e.g. "kvm"; None on bare metal
    kernel_release: str

    @property
    def smt_active(self) -> bool:
        return any(len(cpu.siblings) > 1 for cpu in self.cpus.values())

    def node_of(self, cpu: int) -> int:
        return self.cpus[cpu].node
