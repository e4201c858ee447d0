"""Topology parsing on the real capture of this Firecracker VM (tests/data/bundles/README.md).

Layouts this VM cannot show (two NUMA nodes, SMT, an offline CPU, a PCI NIC on node 1, bare
metal, arm64) are built here explicitly as ``Readings``, in the kernel's file formats as they
appear in the capture. Cases with pieces missing (a container without NICs, a kernel without
NUMA) are the real capture with those files removed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import psutil
import pytest
from tests.bundles import capture_local, load_readings

from quietcore.readings import Readings, parse_bundle_output
from quietcore.topology import TOPOLOGY_READS, Topology, parse_topology

CAPTURE = "firecracker-2cpu-topology"


@pytest.fixture(scope="module")
def captured() -> Readings:
    return load_readings(CAPTURE)


def _without(readings: Readings, *prefixes: str) -> Readings:
    files = {p: v for p, v in readings.files.items() if not p.startswith(prefixes)}
    return Readings(files, readings.commands)


def _with(readings: Readings, files: Mapping[str, tuple[str, ...]]) -> Readings:
    return Readings({**readings.files, **files}, readings.commands)


def _cpuinfo_with_flags(readings: Readings, key: str, flags: str) -> tuple[str, ...]:
    """The captured /proc/cpuinfo with every flags line replaced."""
    lines = readings.lines("/proc/cpuinfo") or ()
    return tuple(f"{key}\t\t: {flags}" if line.startswith("flags") else line for line in lines)


# --- The captured VM --------------------------------------------------------------------------


def test_cpus_of_the_capture(captured: Readings) -> None:
    topology = parse_topology(captured)
    assert topology.online == {0, 1}
    assert topology.present == {0, 1}
    assert topology.possible_count == 2
    assert [(c.id, c.core_id, c.package_id, c.node) for c in topology.cpus.values()] == [
        (0, 0, 0, 0),
        (1, 1, 0, 0),
    ]
    assert all(cpu.siblings == {cpu.id} for cpu in topology.cpus.values())
    assert not topology.smt_active
    assert topology.cores_of(0) == [{0}, {1}]


def test_memory_and_hugepages_of_the_capture(captured: Readings) -> None:
    topology = parse_topology(captured)
    assert list(topology.nodes) == [0]
    node = topology.nodes[0]
    assert node.cpus == {0, 1}
    # The node's own MemTotal, not /proc/meminfo's larger figure (see the README).
    assert node.mem_total_kib == 4024524
    assert node.hugepages == {2048: 0, 1048576: 0}
    assert topology.hugepage_sizes_kib == (2048, 1048576)


def test_interfaces_of_the_capture(captured: Readings) -> None:
    topology = parse_topology(captured)
    assert sorted(topology.interfaces) == ["eth0", "ifb0", "ifb1", "lo"]
    eth0 = topology.interfaces["eth0"]
    # virtio-net: the MSI-X vectors and node (-1) belong to the PCI function above it.
    assert (eth0.driver, eth0.numa_node, eth0.irqs) == ("virtio_net", None, (37, 38, 39))
    assert (eth0.rx_queues, eth0.tx_queues) == (1, 1)
    lo = topology.interfaces["lo"]
    assert (lo.driver, lo.numa_node, lo.irqs) == (None, None, ())


def test_machine_facts_of_the_capture(captured: Readings) -> None:
    topology = parse_topology(captured)
    assert topology.irqs == (24, 25, 26, *range(28, 44))
    assert topology.model == "AMD EPYC"
    assert {"hypervisor", "avx2", "constant_tsc"} <= topology.flags
    assert topology.hypervisor == "kvm"  # no DMI; kvm-clock is offered
    assert topology.kernel_release == "6.18.44-fc-v669"


def test_bundle_paths_never_contain_the_grep_separator() -> None:
    assert not any(":" in path for path in TOPOLOGY_READS.files)
    assert not any("{" in path for path in TOPOLOGY_READS.files)  # POSIX sh: no braces


@pytest.mark.host
def test_live_host_agrees_with_psutil_and_os() -> None:
    """Read this machine through the real bundle and compare with independent sources."""
    readings = parse_bundle_output(capture_local(TOPOLOGY_READS).splitlines())
    topology = parse_topology(readings)
    assert len(topology.online) == psutil.cpu_count(logical=True)
    cores = {cpu.siblings for cpu in topology.cpus.values()}
    assert len(cores) == psutil.cpu_count(logical=False)
    assert set(topology.interfaces) == set(psutil.net_if_stats())
    assert topology.kernel_release == os.uname().release
    assert set().union(*(node.cpus for node in topology.nodes.values())) == topology.online
    # Every PCI device sysfs lists, with the node it reports (-1: unknown).
    addresses = sorted(os.listdir("/sys/bus/pci/devices"))
    assert sorted(topology.pci_devices) == addresses
    for address, device in topology.pci_devices.items():
        node_file = Path(f"/sys/bus/pci/devices/{address}/numa_node")
        if node_file.exists():
            node = int(node_file.read_text())
            assert device.numa_node == (None if node < 0 else node)


def test_a_capture_without_the_pci_listing_has_no_devices_and_the_cpu_vendor(
    captured: Readings,
) -> None:
    # Captured before the pci-devices command existed: no devices, no IOMMU unit, no routes;
    # the IOMMU vendor falls back to the CPU's.
    topology = parse_topology(captured)
    assert topology.pci_devices == {} and topology.iommu_units == ()
    assert topology.routed_interfaces == frozenset()
    assert topology.cpu_vendor == "AuthenticAMD" and topology.iommu_vendor == "amd"
    assert not topology.has_iommu


# --- Pieces missing (the capture with files removed) ------------------------------------------


def test_container_without_nics_numa_or_cpu_topology(captured: Readings) -> None:
    readings = _without(
        captured,
        "/sys/class/net/",
        "/sys/devices/system/node/",
        "/sys/devices/system/cpu/cpu0/",
        "/sys/devices/system/cpu/cpu1/",
    )
    topology = parse_topology(readings)
    assert topology.interfaces == {}
    # No NUMA: one node 0 with every CPU and the host's memory and hugepage pools.
    assert list(topology.nodes) == [0]
    assert topology.nodes[0].cpus == {0, 1}
    assert topology.nodes[0].mem_total_kib == 24684084
    assert topology.nodes[0].hugepages == {2048: 0, 1048576: 0}
    # No topology files: each CPU is its own core on package 0.
    assert [(c.core_id, c.package_id, c.siblings) for c in topology.cpus.values()] == [
        (0, 0, frozenset({0})),
        (1, 0, frozenset({1})),
    ]


def test_offline_cpu_without_topology_files(captured: Readings) -> None:
    readings = _with(
        _without(captured, "/sys/devices/system/cpu/cpu1/"),
        {
            "/sys/devices/system/cpu/online": ("0",),
            "/sys/devices/system/node/node0/cpulist": ("0",),
        },
    )
    topology = parse_topology(readings)
    assert topology.online == {0}
    assert topology.present == {0, 1}
    assert list(topology.cpus) == [0]
    assert topology.nodes[0].cpus == {0}


def test_nothing_read_at_all() -> None:
    topology = parse_topology(Readings())
    assert topology.online == frozenset()
    assert topology.possible_count == 0
    assert topology.nodes[0].cpus == frozenset()
    assert (topology.model, topology.hypervisor, topology.kernel_release) == ("", None, "")


def test_bare_metal_x86_has_no_hypervisor(captured: Readings) -> None:
    cpuinfo = _cpuinfo_with_flags(captured, "flags", "fpu vme de pse tsc msr ht constant_tsc")
    readings = _with(captured, {"/proc/cpuinfo": cpuinfo})
    # On x86 the CPU's hypervisor flag decides; the captured clock sources are left in.
    assert parse_topology(readings).hypervisor is None


@pytest.mark.parametrize(
    ("path", "text", "hypervisor"),
    [
        ("/sys/hypervisor/type", "xen", "xen"),
        ("/sys/class/dmi/id/sys_vendor", "QEMU", "qemu"),
        ("/sys/class/dmi/id/sys_vendor", "VMware, Inc.", "vmware"),
        ("/sys/class/dmi/id/product_name", "KVM", "kvm"),
    ],
)
def test_hypervisor_named_by_sysfs(
    captured: Readings, path: str, text: str, hypervisor: str
) -> None:
    assert parse_topology(_with(captured, {path: (text,)})).hypervisor == hypervisor


def test_guest_without_any_name_is_an_unknown_hypervisor(captured: Readings) -> None:
    readings = _without(captured, "/sys/devices/system/clocksource/")
    assert parse_topology(readings).hypervisor == "unknown hypervisor"


def test_arm64_cpuinfo(captured: Readings) -> None:
    cpuinfo = ("processor\t: 0", "BogoMIPS\t: 50.00", "Features\t: fp asimd evtstrm aes")
    readings = _without(
        _with(captured, {"/proc/cpuinfo": cpuinfo}), "/sys/devices/system/clocksource/"
    )
    topology = parse_topology(readings)
    assert topology.flags == {"fp", "asimd", "evtstrm", "aes"}
    assert topology.model == ""
    assert topology.hypervisor is None


# --- Two sockets, two nodes, SMT, a PCI NIC (built explicitly) --------------------------------


def _smt_two_node_host() -> Readings:
    """8 CPUs, 2 packages x 2 cores x 2 threads, Intel-style numbering (siblings N and N+4);
    CPU 3 is offline, which also removes it from CPU 7's sibling list. eth0 is a PCI NIC on
    node 1 with 3 MSI-X vectors and 2 queues each way."""
    cpu = "/sys/devices/system/cpu"
    node = "/sys/devices/system/node"
    layout = {0: (0, 0, "0,4"), 1: (1, 0, "1,5"), 2: (0, 1, "2,6"), 4: (0, 0, "0,4")}
    layout |= {5: (1, 0, "1,5"), 6: (0, 1, "2,6"), 7: (1, 1, "7")}
    files: dict[str, tuple[str, ...]] = {
        f"{cpu}/online": ("0-2,4-7",),
        f"{cpu}/possible": ("0-7",),
        f"{cpu}/present": ("0-7",),
        f"{node}/node0/cpulist": ("0-1,4-5",),
        f"{node}/node1/cpulist": ("2,6-7",),
        f"{node}/node0/meminfo": ("Node 0 MemTotal:       65536000 kB",),
        f"{node}/node1/meminfo": ("Node 1 MemTotal:       32768000 kB",),
        f"{node}/node0/hugepages/hugepages-2048kB/nr_hugepages": ("0",),
        f"{node}/node0/hugepages/hugepages-1048576kB/nr_hugepages": ("0",),
        f"{node}/node1/hugepages/hugepages-2048kB/nr_hugepages": ("512",),
        f"{node}/node1/hugepages/hugepages-1048576kB/nr_hugepages": ("4",),
        "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages": ("512",),
        "/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages": ("4",),
        "/sys/class/net/eth0/ifindex": ("2",),
        "/sys/class/net/eth0/device/uevent": ("DRIVER=ice", "PCI_SLOT_NAME=0000:81:00.0"),
        "/sys/class/net/eth0/device/numa_node": ("1",),
        # The PCI bridge above a physical NIC has vectors of its own: they must not count.
        "/sys/class/net/eth0/device/../numa_node": ("1",),
        "/sys/class/net/eth0/device/../msi_irqs/24": ("msi",),
        **{f"/sys/class/net/eth0/device/msi_irqs/{irq}": ("msix",) for irq in (90, 91, 92)},
        **{f"/sys/class/net/eth0/queues/rx-{q}/rps_flow_cnt": ("0",) for q in (0, 1)},
        **{f"/sys/class/net/eth0/queues/tx-{q}/tx_timeout": ("0",) for q in (0, 1)},
    }
    for number, (core, package, siblings) in layout.items():
        files[f"{cpu}/cpu{number}/topology/core_id"] = (str(core),)
        files[f"{cpu}/cpu{number}/topology/physical_package_id"] = (str(package),)
        files[f"{cpu}/cpu{number}/topology/thread_siblings_list"] = (siblings,)
    return Readings(files)


def test_smt_two_node_host() -> None:
    topology = parse_topology(_smt_two_node_host())
    assert topology.online == {0, 1, 2, 4, 5, 6, 7}
    assert topology.possible_count == 8
    assert topology.smt_active
    assert topology.cpus[4].siblings == {0, 4}
    assert topology.cpus[7].siblings == {7}
    assert topology.node_of(6) == 1
    assert topology.cores_of(0) == [{0, 4}, {1, 5}]
    assert topology.cores_of(1) == [{2, 6}, {7}]
    assert topology.nodes[1].hugepages == {2048: 512, 1048576: 4}
    assert topology.nodes[1].mem_total_kib == 32768000


def test_pci_nic_keeps_its_own_vectors_and_node() -> None:
    eth0 = parse_topology(_smt_two_node_host()).interfaces["eth0"]
    assert (eth0.driver, eth0.numa_node, eth0.irqs) == ("ice", 1, (90, 91, 92))
    assert (eth0.rx_queues, eth0.tx_queues) == (2, 2)


def test_cpu_claimed_by_no_node_joins_the_lowest_node() -> None:
    readings = _smt_two_node_host()
    files = dict(readings.files)
    files["/sys/devices/system/node/node1/cpulist"] = ("2,6",)
    topology: Topology = parse_topology(Readings(files))
    assert topology.node_of(7) == 0
    assert 7 in topology.nodes[0].cpus
