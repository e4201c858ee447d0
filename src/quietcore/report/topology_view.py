"""Views of a host's topology: a table for people, a dict for JSON."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from quietcore.profile.cpuset import format_cpulist
from quietcore.topology import Topology


def _hugepages(counts: dict[int, int]) -> str:
    return ", ".join(f"{count}x{size // 1024}M" for size, count in sorted(counts.items()) if count)


def topology_document(host: str, topology: Topology) -> dict[str, Any]:
    packages = sorted({cpu.package_id for cpu in topology.cpus.values()})
    return {
        "host": host,
        "model": topology.model,
        "hypervisor": topology.hypervisor,
        "kernel": topology.kernel_release,
        "online_cpus": format_cpulist(topology.online),
        "sockets": len(packages),
        "smt": topology.smt_active,
        "cpus": [
            {
                "cpu": cpu.id,
                "core": cpu.core_id,
                "socket": cpu.package_id,
                "node": cpu.node,
                "siblings": format_cpulist(cpu.siblings),
            }
            for cpu in sorted(topology.cpus.values(), key=lambda cpu: cpu.id)
        ],
        "numa_nodes": [
            {
                "node": node.id,
                "cpus": format_cpulist(node.cpus),
                "mem_total_kib": node.mem_total_kib,
                "hugepages": {f"{size}kB": count for size, count in sorted(node.hugepages.items())},
            }
            for node in sorted(topology.nodes.values(), key=lambda node: node.id)
        ],
        "hugepage_sizes_kib": list(topology.hugepage_sizes_kib),
        "interfaces": [
            {
                "name": nic.name,
                "driver": nic.driver,
                "node": nic.numa_node,
                "irqs": list(nic.irqs),
                "rx_queues": nic.rx_queues,
                "tx_queues": nic.tx_queues,
            }
            for nic in sorted(topology.interfaces.values(), key=lambda nic: nic.name)
        ],
        "irq_count": len(topology.irqs),
    }


def topology_table(host: str, topology: Topology) -> RenderableType:
    doc = topology_document(host, topology)
    summary = Text.assemble(
        (host, "bold"),
        f"  {doc['model'] or 'unknown CPU'}"
        f"  {'VM (' + topology.hypervisor + ')' if topology.hypervisor else 'bare metal'}"
        f"  kernel {topology.kernel_release}\n"
        f"online CPUs {doc['online_cpus']}, {doc['sockets']} socket(s), "
        f"{len(topology.nodes)} NUMA node(s), SMT {'on' if topology.smt_active else 'off'}, "
        f"{doc['irq_count']} IRQs, hugepage sizes "
        + ", ".join(f"{size // 1024}M" for size in topology.hugepage_sizes_kib),
    )
    nodes = Table(box=None, pad_edge=False, header_style="bold", title_justify="left")
    for column in ("node", "cpus", "memory", "hugepages"):
        nodes.add_column(column)
    for node in sorted(topology.nodes.values(), key=lambda node: node.id):
        nodes.add_row(
            str(node.id),
            format_cpulist(node.cpus),
            f"{node.mem_total_kib / 1024 / 1024:.1f} GiB",
            _hugepages(node.hugepages) or "-",
        )
    cores = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("cpu", "core", "socket", "node", "smt siblings"):
        cores.add_column(column)
    for cpu in doc["cpus"]:
        cores.add_row(*(str(cpu[name]) for name in ("cpu", "core", "socket", "node", "siblings")))
    nics = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("interface", "driver", "node", "queues rx/tx", "irqs"):
        nics.add_column(column, overflow="fold")
    for nic in doc["interfaces"]:
        nics.add_row(
            nic["name"],
            nic["driver"] or "(virtual)",
            "-" if nic["node"] is None else str(nic["node"]),
            f"{nic['rx_queues']}/{nic['tx_queues']}",
            format_cpulist(nic["irqs"]) or "-",
        )
    return Group(summary, Text(""), nodes, Text(""), cores, Text(""), nics)
