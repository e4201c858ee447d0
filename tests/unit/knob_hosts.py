"""Hosts, profiles and captures shared by the tests of the sysctl, vm, cmdline, hugepages,
workqueue and machinecheck knob families.

The captures ``knobs-vm-default`` and ``knobs-vm-tuned`` are real bundle outputs of the 2-CPU
Firecracker VM these families were written on, reading what ``CAPTURE_PROFILE`` needs (see
``tests/data/bundles/README.md``). Re-capture, as root, with
``python -m tests.unit.knob_hosts`` (it restores every value it changes).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tests.bundles import BUNDLES, capture_local, load_readings

from quietcore.drift import SettingResult, compare
from quietcore.facts import merge_reads
from quietcore.knobs.base import ResolveContext, Setting, Status
from quietcore.knobs.cmdline import CmdlineKnob
from quietcore.knobs.hugepages import HugepagesKnob
from quietcore.knobs.machinecheck import MachinecheckKnob
from quietcore.knobs.sysctl import SysctlKnob
from quietcore.knobs.vm import VmKnob
from quietcore.knobs.workqueue import WorkqueueKnob
from quietcore.profile.cpuplan import CpuPlan
from quietcore.profile.cpuset import CpuSet
from quietcore.profile.schema import Profile
from quietcore.readings import Readings
from quietcore.topology import TOPOLOGY_READS, Cpu, NumaNode, Topology, parse_topology

FAMILIES = (
    SysctlKnob(),
    VmKnob(),
    CmdlineKnob(),
    HugepagesKnob(),
    WorkqueueKnob(),
    MachinecheckKnob(),
)

# Everything the captures must contain: values this VM has, values it lacks, and things it
# cannot have (an unknown sysctl, 32M hugepages, a second NUMA node, nohz_full, MCE banks).
CAPTURE_PROFILE = Profile.model_validate(
    {
        "name": "knob-capture",
        "cpu": {
            "reserved": "0",
            "isolated": "1",
            "isolation": ["isolcpus", "nohz_full", "rcu_nocbs"],
            "isolcpus_flags": ["managed_irq", "domain"],
        },
        "hugepages": {
            "default_size": "2M",
            "pages": [
                {"size": "2M", "count": 4, "node": 0},
                {"size": "2M", "count": 2, "node": 1},
                {"size": "1G", "count": 0},
                {"size": "32M", "count": 1},
            ],
        },
        "numa": {"balancing": False},
        "memory": {"thp": "never", "thp_defrag": "never", "swappiness": 10, "ksm": False},
        "network": {
            "tcp": {"rmem": [4096, 87380, 16777216], "fastopen": 3},
            "busy_poll_us": 50,
        },
        "kernel": {
            "sysctl": {"kernel.timer_migration": 0, "net.core.no_such_knob": 1},
            "cmdline": ["panic=1", "quiet", "reboot=warm", "skew_tick=1"],
            "workqueue_mask": "reserved",
            "sched_rt_runtime_us": 950000,
            "watchdogs": {"nmi": False},
            "mce_ignore_ce": True,
        },
    }
)

# How ``knobs-vm-tuned`` was made: the VM set to CAPTURE_PROFILE's runtime values, captured,
# then restored. Each entry is (file, value to write); the original is read back first.
TUNED_WRITES = (
    ("/proc/sys/vm/swappiness", "10"),
    ("/proc/sys/net/ipv4/tcp_rmem", "4096 87380 16777216"),
    ("/proc/sys/net/ipv4/tcp_fastopen", "3"),
    ("/proc/sys/net/core/busy_poll", "50"),
    ("/proc/sys/kernel/timer_migration", "0"),
    ("/sys/kernel/mm/transparent_hugepage/enabled", "never"),
    ("/sys/kernel/mm/transparent_hugepage/defrag", "never"),
    ("/sys/kernel/mm/ksm/run", "2"),
    ("/sys/devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages", "4"),
    ("/sys/devices/virtual/workqueue/cpumask", "1"),
    ("/sys/bus/workqueue/devices/writeback/cpumask", "1"),
)


def this_vm() -> Topology:
    """The capture VM (2 CPUs, 1 NUMA node, no SMT), as the topology parser reads it."""
    return parse_topology(load_readings("knobs-vm-default"))


def synthetic_host(
    cpus: int = 8,
    nodes: int = 2,
    mem_kib: int = 16 * 1024 * 1024,
    flags: frozenset[str] = frozenset({"mce", "mca"}),
) -> Topology:
    """A host no capture shows: ``cpus`` CPUs split evenly over ``nodes`` NUMA nodes."""
    per_node = cpus // nodes
    return Topology(
        online=frozenset(range(cpus)),
        possible_count=cpus,
        cpus={
            cpu: Cpu(cpu, cpu, cpu // per_node, cpu // per_node, frozenset({cpu}))
            for cpu in range(cpus)
        },
        nodes={
            node: NumaNode(node, frozenset(range(node * per_node, (node + 1) * per_node)), mem_kib)
            for node in range(nodes)
        },
        hugepage_sizes_kib=(2048, 1048576),
        interfaces={},
        irqs=(),
        model="synthetic",
        flags=flags,
        hypervisor=None,
        kernel_release="6.18.0",
    )


def profile(**sections: Any) -> Profile:
    return Profile.model_validate({"name": "test", **sections})


def context(
    declared: Profile, topology: Topology, reserved: CpuSet = frozenset({0})
) -> ResolveContext:
    """Resolve ``declared`` on ``topology`` with ``reserved`` housekeeping CPUs and every other
    online CPU isolated; each field's source is ``test.yaml:<field>``."""
    return ResolveContext(
        profile=declared,
        topology=topology,
        cpus=CpuPlan(topology.online, reserved, topology.online - reserved),
        source_of=lambda field: f"test.yaml:{field}",
    )


def results(
    settings: Iterable[Setting], readings: Readings, topology: Topology
) -> dict[str, SettingResult]:
    """Key -> verdict, through the same comparison ``quietcore verify`` uses."""
    return {result.setting.key: result for result in compare(settings, readings, topology)}


def verdicts(
    settings: Iterable[Setting], readings: Readings, topology: Topology
) -> dict[str, tuple[Status, str | None]]:
    """Key -> (status, actual): the two columns of the verify table."""
    return {key: (r.status, r.actual) for key, r in results(settings, readings, topology).items()}


def _capture(name: str) -> None:
    spec = merge_reads([TOPOLOGY_READS, *(family.reads(CAPTURE_PROFILE) for family in FAMILIES)])
    (BUNDLES / f"{name}.txt").write_text(capture_local(spec))


def _main() -> None:
    _capture("knobs-vm-default")
    originals: list[tuple[Path, str]] = []
    try:
        for name, value in TUNED_WRITES:
            path = Path(name)
            text = path.read_text().strip()
            if "[" in text:  # a sysfs mode list: restore the bracketed mode
                text = text.split("[", 1)[1].split("]", 1)[0]
            originals.append((path, text))
            path.write_text(value)
        _capture("knobs-vm-tuned")
    finally:
        for path, text in reversed(originals):
            path.write_text(text)


if __name__ == "__main__":
    _main()
