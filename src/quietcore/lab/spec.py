"""The shape of a lab VM (CPUs, NUMA nodes, memory, NIC queues) and its validation. Pure."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Literal

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,11}$")
DEFAULT_NAME = "default"
_SIZE = re.compile(r"^(\d+)\s*([MG])(?:i?B)?$", re.IGNORECASE)
MIN_NODE_MIB = 256
MAX_CPUS = 64
MAX_NIC_QUEUES = 16

Accel = Literal["kvm", "tcg"]


class LabError(Exception):
    """Something the user can fix (bad shape, missing tool, busy lab); the message says how."""


def check_name(name: str) -> str:
    """Lab names become file names, tap names (``qc<name>``) and pyinfra host names."""
    if not NAME_PATTERN.fullmatch(name):
        raise LabError(
            f"bad lab name {name!r}: use 1-12 characters a-z, 0-9 and '-', "
            "starting with a letter or digit"
        )
    return name


def parse_memory(text: str) -> int:
    """``2G``, ``2GiB``, ``1536M`` -> MiB."""
    match = _SIZE.fullmatch(text.strip())
    if not match:
        raise LabError(f"bad memory size {text!r}: use e.g. 2G or 1536M")
    amount, unit = int(match.group(1)), match.group(2).upper()
    return amount * 1024 if unit == "G" else amount


def format_mib(mib: int) -> str:
    return f"{mib // 1024}G" if mib % 1024 == 0 else f"{mib}M"


@dataclass(frozen=True)
class LabSpec:
    """What the guest will look like. ``cpus`` are split evenly over ``numa_nodes`` (one
    socket per node), memory too; ``threads`` SMT threads per core."""

    name: str = DEFAULT_NAME
    cpus: int = 4
    numa_nodes: int = 2
    memory_mib: int = 2048
    nic_queues: int = 4
    threads: int = 1

    def __post_init__(self) -> None:
        check_name(self.name)
        problems = list(self._problems())
        if problems:
            raise LabError("; ".join(problems))

    def _problems(self) -> list[str]:
        problems: list[str] = []
        if not 1 <= self.cpus <= MAX_CPUS:
            problems.append(f"--cpus must be 1-{MAX_CPUS}, not {self.cpus}")
        if self.numa_nodes < 1 or self.numa_nodes > self.cpus:
            problems.append(f"--numa-nodes must be 1-{self.cpus} (one CPU per node at least)")
        elif self.cpus % self.numa_nodes:
            problems.append(
                f"{self.cpus} CPUs do not split evenly over {self.numa_nodes} NUMA nodes"
            )
        elif self.threads < 1 or (self.cpus // self.numa_nodes) % self.threads:
            problems.append(
                f"{self.cpus // self.numa_nodes} CPUs per node are not whole cores of "
                f"{self.threads} threads"
            )
        if self.memory_mib % self.numa_nodes:
            problems.append(
                f"{format_mib(self.memory_mib)} of memory does not split evenly over "
                f"{self.numa_nodes} NUMA nodes"
            )
        elif self.memory_mib // max(self.numa_nodes, 1) < MIN_NODE_MIB:
            problems.append(f"each NUMA node needs at least {MIN_NODE_MIB}M of memory")
        if not 1 <= self.nic_queues <= MAX_NIC_QUEUES:
            problems.append(f"--nic-queues must be 1-{MAX_NIC_QUEUES}, not {self.nic_queues}")
        return problems

    @property
    def cpus_per_node(self) -> int:
        return self.cpus // self.numa_nodes

    @property
    def node_memory_mib(self) -> int:
        return self.memory_mib // self.numa_nodes

    @property
    def cores_per_socket(self) -> int:
        return self.cpus_per_node // self.threads

    @property
    def tap(self) -> str:
        """The host tap device of the data NIC (at most 14 characters, under IFNAMSIZ)."""
        return f"qc{self.name}"

    @property
    def host(self) -> str:
        """The pyinfra host name of this lab."""
        return f"lab-{self.name}"

    def node_cpus(self, node: int) -> tuple[int, int]:
        """First and last CPU of a node (CPUs are numbered node by node)."""
        first = node * self.cpus_per_node
        return first, first + self.cpus_per_node - 1

    def describe(self) -> str:
        smt = f", {self.threads} threads/core" if self.threads > 1 else ""
        cpus = f"{self.cpus} CPU{'s' if self.cpus > 1 else ''}"
        return (
            f"{cpus} on {self.numa_nodes} NUMA node(s){smt}, "
            f"{format_mib(self.memory_mib)}, data NIC with {self.nic_queues} queue(s)"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabSpec:
        fields = ("name", "cpus", "numa_nodes", "memory_mib", "nic_queues", "threads")
        return cls(**{key: data[key] for key in fields if key in data})
