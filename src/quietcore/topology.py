"""A host's hardware layout as the kernel reports it: CPUs, cores, sockets, NUMA nodes, NICs,
plus the two facts about its OS that decide how CPUs can be partitioned at runtime (which
cpuset cgroup hierarchy it has, and whether PID 1 is systemd).

``TOPOLOGY_READS`` says which procfs/sysfs files the one-round-trip bundle brings back;
``parse_topology`` builds a ``Topology`` from that ``Readings`` value, with no I/O. Every piece
may be missing (containers without NICs, offline CPUs, kernels without NUMA): the parser then
falls back to the kernel's own defaults instead of failing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from quietcore import cgroup_layout
from quietcore.cgroup_layout import CgroupVersion
from quietcore.profile.cpuset import CpuSet, parse_cpulist
from quietcore.readings import Readings, ReadSpec


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
class PciDevice:
    address: str  # ``0000:81:00.0``, as sysfs and ``lspci -D`` write it
    numa_node: int | None  # None when the device reports -1 (the firmware gives no proximity)
    driver: str | None  # the bound driver's name (``virtio-pci``, ``vfio-pci``), None if unbound
    interfaces: tuple[str, ...]  # network interfaces the device carries (its own or virtio's)


IommuVendor = Literal["intel", "amd"]


@dataclass(frozen=True)
class Topology:
    online: CpuSet
    possible_count: int  # how many CPUs the kernel sizes masks for
    cpus: dict[int, Cpu]  # the online CPUs
    nodes: dict[int, NumaNode]
    hugepage_sizes_kib: tuple[int, ...]
    interfaces: dict[str, Interface]
    irqs: tuple[int, ...]  # numbered IRQs under /proc/irq
    model: str
    flags: frozenset[str]
    hypervisor: str | None  # e.g. "kvm"; None on bare metal
    kernel_release: str
    # CPUs the hardware has, online or not; empty when unknown (then only ``online`` counts).
    present: CpuSet = frozenset()
    cpuset_cgroup: CgroupVersion | None = None  # None: no cpuset controller to partition with
    init: str = ""  # PID 1's name: ``systemd`` owns the cgroup tree's slices
    cpu_vendor: str = ""  # ``vendor_id`` of /proc/cpuinfo: GenuineIntel, AuthenticAMD
    pci_devices: dict[str, PciDevice] = field(default_factory=dict)  # by address
    iommu_units: tuple[str, ...] = ()  # /sys/class/iommu: dmar0 (VT-d), ivhd0 (AMD-Vi)
    # ACPI tables that describe an IOMMU (DMAR, IVRS), present even while it is switched off.
    iommu_tables: tuple[str, ...] = ()
    # Interfaces that carry IP routes (IPv4, or an IPv6 default route): the host's management
    # network. Binding their device to a user-space driver would cut the host off.
    routed_interfaces: frozenset[str] = frozenset()

    @property
    def systemd(self) -> bool:
        return self.init == "systemd"

    @property
    def smt_active(self) -> bool:
        return any(len(cpu.siblings) > 1 for cpu in self.cpus.values())

    @property
    def iommu_vendor(self) -> IommuVendor | None:
        """Whose IOMMU this host has: its registered units first (dmar* Intel VT-d, ivhd*
        AMD-Vi), then its ACPI table, else the CPU vendor's; ``None`` when none tells."""
        for unit in self.iommu_units:
            if unit.startswith("dmar"):
                return "intel"
            if unit.startswith("ivhd"):
                return "amd"
        if "DMAR" in self.iommu_tables:
            return "intel"
        if "IVRS" in self.iommu_tables:
            return "amd"
        return _CPU_VENDORS.get(self.cpu_vendor)

    @property
    def has_iommu(self) -> bool:
        """Whether the hardware has an IOMMU, enabled or not (units, or its ACPI table)."""
        return bool(self.iommu_units or self.iommu_tables)

    def node_of(self, cpu: int) -> int:
        return self.cpus[cpu].node

    def cores_of(self, node: int) -> list[CpuSet]:
        """The online cores of a NUMA node (each the set of its SMT threads), lowest
        (package, core id) first."""
        cores: dict[CpuSet, tuple[int, int]] = {}
        for cpu in self.nodes[node].cpus:
            info = self.cpus[cpu]
            cores[info.siblings] = (info.package_id, info.core_id)
        return sorted(cores, key=lambda core: (cores[core], min(core)))


_CPU = "/sys/devices/system/cpu"
_NODE = "/sys/devices/system/node"
_NET = "/sys/class/net"
_CPU_ATTRS = ("core_id", "physical_package_id", "thread_siblings_list")
_CLOCKSOURCES = "/sys/devices/system/clocksource/clocksource0/available_clocksource"
_CPU_VENDORS: dict[str, IommuVendor] = {"GenuineIntel": "intel", "AuthenticAMD": "amd"}
ROUTES_V4 = "/proc/net/route"
ROUTES_V6 = "/proc/net/ipv6_route"

# PCI devices, IOMMU units and IOMMU ACPI tables, as one fixed command: PCI paths hold ':',
# the bundle's file separator, so they cannot be read as files; a driver is a symlink; and
# ACPI tables are binary, so only their presence is tested.
PCI_COMMAND = "pci-devices"
PCI_SHELL = (
    'for d in /sys/bus/pci/devices/*; do [ -e "$d" ] || continue;'
    ' n=$(cat "$d/numa_node" 2>/dev/null); r=$(readlink "$d/driver" 2>/dev/null);'
    ' printf \'pci %s node=%s driver=%s\' "${d##*/}" "${n:--1}" "${r##*/}";'
    ' for i in "$d"/net/* "$d"/virtio*/net/*; do [ -e "$i" ] && printf \' net=%s\' "${i##*/}";'
    " done; echo; done;"
    ' for u in /sys/class/iommu/*; do [ -e "$u" ] && echo "iommu ${u##*/}"; done;'
    ' for t in DMAR IVRS; do [ -e /sys/firmware/acpi/tables/$t ] && echo "acpi $t"; done; true'
)

TOPOLOGY_READS = ReadSpec(
    files=(
        f"{_CPU}/online",
        f"{_CPU}/possible",
        f"{_CPU}/present",
        *(f"{_CPU}/cpu[0-9]*/topology/{attr}" for attr in _CPU_ATTRS),
        f"{_NODE}/node[0-9]*/cpulist",
        f"{_NODE}/node[0-9]*/meminfo",
        f"{_NODE}/node[0-9]*/hugepages/hugepages-*kB/nr_hugepages",
        "/proc/meminfo",
        "/sys/kernel/mm/hugepages/hugepages-*kB/nr_hugepages",
        # Every interface has an ifindex: that is how interfaces are listed.
        f"{_NET}/*/ifindex",
        f"{_NET}/*/device/uevent",
        f"{_NET}/*/device/numa_node",
        f"{_NET}/*/device/msi_irqs/*",
        # A virtio NIC's device is the virtio function; its PCI transport (one level up)
        # owns the MSI-X vectors and the NUMA node. Paths keep '..' unresolved: no ':' in them.
        f"{_NET}/*/device/../numa_node",
        f"{_NET}/*/device/../msi_irqs/*",
        # One file that every rx / tx queue directory has, to learn the queue names.
        f"{_NET}/*/queues/rx-*/rps_flow_cnt",
        f"{_NET}/*/queues/tx-*/tx_timeout",
        "/proc/irq/[0-9]*/smp_affinity_list",
        "/proc/cpuinfo",
        "/proc/sys/kernel/osrelease",
        "/sys/hypervisor/type",
        "/sys/class/dmi/id/sys_vendor",
        "/sys/class/dmi/id/product_name",
        _CLOCKSOURCES,
        cgroup_layout.V2_CONTROLLERS,
        cgroup_layout.V1_ROOT_CPUS,
        "/proc/1/comm",
        ROUTES_V4,
        ROUTES_V6,
    ),
    commands=((PCI_COMMAND, PCI_SHELL),),
)


def _matches(readings: Readings, pattern: str) -> Iterator[tuple[re.Match[str], tuple[str, ...]]]:
    """Every read file whose path fully matches ``pattern``, with its lines."""
    compiled = re.compile(pattern)
    for path, lines in sorted(readings.files.items()):
        match = compiled.fullmatch(path)
        if match:
            yield match, lines


def _first_int(lines: tuple[str, ...]) -> int | None:
    try:
        return int(lines[0].strip()) if lines else None
    except ValueError:
        return None


def _cpulist(readings: Readings, path: str) -> CpuSet | None:
    line = readings.first_line(path)
    return None if line is None else parse_cpulist(line)


# --- CPUs -------------------------------------------------------------------------------------


def _cpuinfo_block(readings: Readings) -> dict[str, str]:
    """Key/value pairs of the first processor block of /proc/cpuinfo."""
    block: dict[str, str] = {}
    for line in readings.lines("/proc/cpuinfo") or ():
        if not line.strip():
            if block:
                break
            continue
        key, sep, value = line.partition(":")
        if sep:
            block.setdefault(key.strip(), value.strip())
    return block


def _cpuinfo_processors(readings: Readings) -> CpuSet:
    return frozenset(
        int(value)
        for key, _, value in (line.partition(":") for line in readings.lines("/proc/cpuinfo") or ())
        if key.strip() == "processor" and value.strip().isdigit()
    )


def _online(readings: Readings) -> CpuSet:
    online = _cpulist(readings, f"{_CPU}/online")
    return online if online is not None else _cpuinfo_processors(readings)


def _cpu_attributes(readings: Readings) -> dict[int, dict[str, str]]:
    attributes: dict[int, dict[str, str]] = {}
    pattern = rf"{_CPU}/cpu(\d+)/topology/({'|'.join(_CPU_ATTRS)})"
    for match, lines in _matches(readings, pattern):
        if lines:
            attributes.setdefault(int(match.group(1)), {})[match.group(2)] = lines[0].strip()
    return attributes


def _cpus(readings: Readings, online: CpuSet, node_of: dict[int, int]) -> dict[int, Cpu]:
    """Online CPUs. A CPU without topology files is its own core on package 0, which is what
    the kernel assumes when it has no topology information either."""
    attributes = _cpu_attributes(readings)
    cpus: dict[int, Cpu] = {}
    for cpu in sorted(online):
        attrs = attributes.get(cpu, {})
        siblings_text = attrs.get("thread_siblings_list")
        siblings = parse_cpulist(siblings_text) & online if siblings_text else frozenset()
        cpus[cpu] = Cpu(
            id=cpu,
            core_id=int(attrs.get("core_id", cpu)),
            package_id=int(attrs.get("physical_package_id", 0)),
            node=node_of[cpu],
            siblings=siblings | {cpu},
        )
    return cpus


# --- NUMA nodes and hugepages -----------------------------------------------------------------


def _mem_total_kib(lines: tuple[str, ...] | None) -> int:
    """MemTotal from /proc/meminfo (``MemTotal: N kB``) or a node's meminfo
    (``Node 0 MemTotal: N kB``)."""
    for line in lines or ():
        words = line.split()
        if "MemTotal:" in words:
            return int(words[words.index("MemTotal:") + 1])
    return 0


def _hugepage_counts(readings: Readings, prefix: str) -> dict[int, int]:
    counts: dict[int, int] = {}
    for match, lines in _matches(readings, rf"{prefix}/hugepages-(\d+)kB/nr_hugepages"):
        count = _first_int(lines)
        if count is not None:
            counts[int(match.group(1))] = count
    return counts


def _nodes(readings: Readings, online: CpuSet) -> dict[int, NumaNode]:
    """NUMA nodes with their online CPUs. Without /sys/devices/system/node the kernel has no
    NUMA: one node 0 holds everything. A CPU no node claims joins the lowest node."""
    node_ids = sorted(
        {int(m.group(1)) for m, _ in _matches(readings, rf"{_NODE}/node(\d+)/(?:cpulist|meminfo)")}
    )
    if not node_ids:
        return {
            0: NumaNode(
                0,
                online,
                _mem_total_kib(readings.lines("/proc/meminfo")),
                _hugepage_counts(readings, "/sys/kernel/mm/hugepages"),
            )
        }
    cpus_of = {
        node: (_cpulist(readings, f"{_NODE}/node{node}/cpulist") or frozenset()) & online
        for node in node_ids
    }
    unclaimed = online.difference(*cpus_of.values())
    cpus_of[node_ids[0]] |= unclaimed
    return {
        node: NumaNode(
            node,
            cpus_of[node],
            _mem_total_kib(readings.lines(f"{_NODE}/node{node}/meminfo")),
            _hugepage_counts(readings, f"{_NODE}/node{node}/hugepages"),
        )
        for node in node_ids
    }


# --- Network interfaces and IRQs --------------------------------------------------------------


def _uevent(lines: tuple[str, ...] | None) -> dict[str, str]:
    return dict(line.partition("=")[::2] for line in lines or () if "=" in line)


def _msi_irqs(readings: Readings, device: str) -> tuple[int, ...]:
    pattern = rf"{re.escape(device)}/msi_irqs/(\d+)"
    return tuple(sorted(int(m.group(1)) for m, _ in _matches(readings, pattern)))


def _queue_count(readings: Readings, name: str, kind: str, file: str) -> int:
    pattern = rf"{_NET}/{re.escape(name)}/queues/{kind}-(\d+)/{file}"
    return len({m.group(1) for m, _ in _matches(readings, pattern)})


def _interface(readings: Readings, name: str) -> Interface:
    device = f"{_NET}/{name}/device"
    uevent = _uevent(readings.lines(f"{device}/uevent"))
    # virtio is a transport on top of a PCI function: that function has the vectors and node.
    if uevent.get("MODALIAS", "").startswith("virtio:"):
        device = f"{device}/.."
    node = _first_int(readings.lines(f"{device}/numa_node") or ())
    return Interface(
        name=name,
        driver=uevent.get("DRIVER") or None,
        numa_node=None if node is None or node < 0 else node,
        irqs=_msi_irqs(readings, device),
        rx_queues=_queue_count(readings, name, "rx", "rps_flow_cnt"),
        tx_queues=_queue_count(readings, name, "tx", "tx_timeout"),
    )


def _interfaces(readings: Readings) -> dict[str, Interface]:
    names = [m.group(1) for m, _ in _matches(readings, rf"{_NET}/([^/]+)/ifindex")]
    return {name: _interface(readings, name) for name in names}


def _irqs(readings: Readings) -> tuple[int, ...]:
    pattern = r"/proc/irq/(\d+)/smp_affinity_list"
    return tuple(sorted(int(m.group(1)) for m, _ in _matches(readings, pattern)))


# --- PCI devices, IOMMU, routes ----------------------------------------------------------------


def _pci_device(words: list[str]) -> PciDevice:
    """``pci 0000:81:00.0 node=1 driver=virtio-pci net=enp129s0`` (words after ``pci``)."""
    values: dict[str, list[str]] = {}
    for word in words[1:]:
        name, _, value = word.partition("=")
        values.setdefault(name, []).append(value)
    node_text = (values.get("node") or ["-1"])[0]
    node = int(node_text) if node_text.lstrip("-").isdigit() else -1
    driver = (values.get("driver") or [""])[0]
    return PciDevice(
        address=words[0],
        numa_node=None if node < 0 else node,
        driver=driver or None,
        interfaces=tuple(values.get("net", ())),
    )


def _pci(readings: Readings) -> tuple[dict[str, PciDevice], tuple[str, ...], tuple[str, ...]]:
    """PCI devices by address, IOMMU unit names, IOMMU ACPI tables (``PCI_COMMAND``)."""
    result = readings.command(PCI_COMMAND)
    devices: dict[str, PciDevice] = {}
    units: list[str] = []
    tables: list[str] = []
    for line in result.lines if result is not None else ():
        kind, _, rest = line.partition(" ")
        words = rest.split()
        if kind == "pci" and words:
            devices[words[0]] = _pci_device(words)
        elif kind == "iommu" and words:
            units.append(words[0])
        elif kind == "acpi" and words:
            tables.append(words[0])
    return devices, tuple(units), tuple(tables)


def _routed_interfaces(readings: Readings) -> frozenset[str]:
    """Interfaces with an IPv4 route (``/proc/net/route``: ``Iface Destination ...``) or an
    IPv6 default route (``/proc/net/ipv6_route``: destination ``::/0`` last word the interface,
    not ``lo``, whose unreachable default sits there too)."""
    names = {
        line.split()[0]
        for line in (readings.lines(ROUTES_V4) or ())[1:]
        if line.split() and line.split()[0] != "Iface"
    }
    for line in readings.lines(ROUTES_V6) or ():
        words = line.split()
        if len(words) == 10 and words[0] == "0" * 32 and words[1] == "00" and words[9] != "lo":
            names.add(words[9])
    return frozenset(names)


# --- Hypervisor -------------------------------------------------------------------------------

# DMI vendor / product prefixes of virtual machines, after systemd's detect-virt table.
_DMI_HYPERVISORS = (
    ("KVM", "kvm"),
    ("OpenStack", "kvm"),
    ("KubeVirt", "kvm"),
    ("Amazon EC2", "kvm"),
    ("Google Compute Engine", "kvm"),
    ("QEMU", "qemu"),
    ("VMware", "vmware"),
    ("VMW", "vmware"),
    ("innotek GmbH", "oracle"),
    ("VirtualBox", "oracle"),
    ("Xen", "xen"),
    ("Bochs", "bochs"),
    ("Parallels", "parallels"),
    ("BHYVE", "bhyve"),
    ("Hyper-V", "microsoft"),
    ("Apple Virtualization", "apple"),
)
# Paravirtual clock sources only a guest of that hypervisor offers.
_CLOCKSOURCE_HYPERVISORS = (
    ("kvm-clock", "kvm"),
    ("hyperv_clocksource_tsc_page", "microsoft"),
    ("xen", "xen"),
)


def _hypervisor_named(readings: Readings) -> str | None:
    xen = readings.first_line("/sys/hypervisor/type")
    if xen:
        return xen
    for path in ("/sys/class/dmi/id/sys_vendor", "/sys/class/dmi/id/product_name"):
        text = readings.first_line(path) or ""
        for prefix, name in _DMI_HYPERVISORS:
            if text.startswith(prefix):
                return name
    clocksources = (readings.first_line(_CLOCKSOURCES) or "").split()
    return next((name for source, name in _CLOCKSOURCE_HYPERVISORS if source in clocksources), None)


def _hypervisor(readings: Readings, cpuinfo: dict[str, str], flags: frozenset[str]) -> str | None:
    """On x86 the CPU's ``hypervisor`` flag decides whether this is a guest (bare-metal cloud
    hosts keep their cloud's DMI vendor); elsewhere only the named evidence counts."""
    named = _hypervisor_named(readings)
    if "flags" in cpuinfo:
        if "hypervisor" not in flags:
            return None
        return named or "unknown hypervisor"
    return named


# --- The whole host ---------------------------------------------------------------------------


def parse_topology(readings: Readings) -> Topology:
    online = _online(readings)
    possible = _cpulist(readings, f"{_CPU}/possible") or online
    nodes = _nodes(readings, online)
    node_of = {cpu: node.id for node in nodes.values() for cpu in node.cpus}
    cpuinfo = _cpuinfo_block(readings)
    flags = frozenset((cpuinfo.get("flags") or cpuinfo.get("Features") or "").split())
    model = cpuinfo.get("model name") or cpuinfo.get("cpu model") or cpuinfo.get("cpu") or ""
    pci_devices, iommu_units, iommu_tables = _pci(readings)
    return Topology(
        online=online,
        possible_count=max(possible, default=-1) + 1,
        cpus=_cpus(readings, online, node_of),
        nodes=nodes,
        hugepage_sizes_kib=tuple(sorted(_hugepage_counts(readings, "/sys/kernel/mm/hugepages"))),
        interfaces=_interfaces(readings),
        irqs=_irqs(readings),
        model=model,
        flags=flags,
        hypervisor=_hypervisor(readings, cpuinfo, flags),
        kernel_release=readings.first_line("/proc/sys/kernel/osrelease") or "",
        present=_cpulist(readings, f"{_CPU}/present") or frozenset(),
        cpuset_cgroup=cgroup_layout.cpuset_version(
            readings.first_line(cgroup_layout.V2_CONTROLLERS),
            readings.first_line(cgroup_layout.V1_ROOT_CPUS),
        ),
        init=readings.first_line("/proc/1/comm") or "",
        cpu_vendor=cpuinfo.get("vendor_id", ""),
        pci_devices=pci_devices,
        iommu_units=iommu_units,
        iommu_tables=iommu_tables,
        routed_interfaces=_routed_interfaces(readings),
    )
