"""The profile schema: what a quietcore YAML profile may say, checked before any host is read.

Everything that will ever reach a shell on a host (sysctl keys, kernel arguments, interface
patterns, file paths) is constrained here by a strict pattern, so no later stage builds a
command from unvalidated text. CPU sets are kept symbolic (``reserved``, ``rest``, a list)
because they only become concrete against a host's topology (see ``resolve``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from quietcore.profile.cpuset import CpuSetError, parse_cpulist, parse_selection


class Strict(BaseModel):
    """Base for every section: unknown keys are errors, never silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- CPU sets -------------------------------------------------------------------------------

CPU_TOKENS = ("reserved", "isolated", "rest", "all")


def _check_cpu_text(value: str) -> str:
    if value in CPU_TOKENS:
        return value
    try:
        selection = parse_selection(value)
        if selection is None:
            parse_cpulist(value)
        elif selection[0] not in CPU_TOKENS:
            raise CpuSetError(
                f"{selection[0]!r} in {value!r} is not one of {', '.join(CPU_TOKENS)}"
            )
    except CpuSetError as error:
        raise ValueError(
            f"{error}; expected a CPU list like '2-7,10', one of {', '.join(CPU_TOKENS)}, "
            "or positions of one of them like 'isolated[0]' or 'isolated[1-2]'"
        ) from None
    if not value.strip():
        raise ValueError("empty CPU list")
    return value


CpuText = Annotated[str, AfterValidator(_check_cpu_text)]


class PerNumaNode(Strict):
    """The first N CPUs (by core, keeping SMT siblings together) of every NUMA node."""

    per_numa_node: int = Field(ge=1, le=256)


CpuSpec = CpuText | PerNumaNode


# --- Sizes and durations --------------------------------------------------------------------


def _number_as_text(value: Any) -> Any:
    # YAML reads `60` and `2048` as numbers; turning them into text lets the unit check say
    # "needs a unit" instead of a bare type error.
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


_SIZE = re.compile(r"^(\d+)([KMG])$")
_SIZE_FACTORS = {"K": 1, "M": 1024, "G": 1024 * 1024}


def size_kib(text: str) -> int:
    """``2M`` -> 2048, ``1G`` -> 1048576 (kibibytes, as the kernel names hugepage sizes)."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"size {text!r} must be a number followed by K, M or G (e.g. 2M, 1G)")
    return int(match.group(1)) * _SIZE_FACTORS[match.group(2)]


def _check_hugepage_size(value: str) -> str:
    kib = size_kib(value)
    if kib not in (64, 2048, 32768, 524288, 1048576, 16777216):
        raise ValueError(f"{value} is not a hugepage size the kernel offers (use 2M or 1G)")
    return value


HugepageSize = Annotated[
    str, BeforeValidator(_number_as_text), AfterValidator(_check_hugepage_size)
]

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$")
_DURATION_FACTORS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration_seconds(text: str) -> float:
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"duration {text!r} needs a unit: ms, s, m or h (e.g. 60s, 5m)")
    return float(match.group(1)) * _DURATION_FACTORS[match.group(2)]


def _check_duration(value: str) -> str:
    if duration_seconds(value) <= 0:
        raise ValueError("duration must be positive")
    return value


Duration = Annotated[str, BeforeValidator(_number_as_text), AfterValidator(_check_duration)]


# --- Safe text for things that reach a host --------------------------------------------------

_SYSCTL_KEY = re.compile(r"^[a-z0-9_]+(?:\.[a-zA-Z0-9_-]+)+$")
_SYSCTL_SCALAR = re.compile(r"^[A-Za-z0-9_.:/+-]{1,128}$")
# No leading '-': a bare "--" would hand every later argument to init instead of the kernel.
_CMDLINE_ARG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(?:=[A-Za-z0-9_.,:/+-]+)?$")
_IFACE_GLOB = re.compile(r"^[A-Za-z0-9_.*?-]{1,15}$")
_ABS_PATH = re.compile(r"^(/[A-Za-z0-9_.-]+)+$")
_RESERVED_CMDLINE = ("isolcpus", "nohz_full", "rcu_nocbs", "default_hugepagesz")


def _check_sysctl_key(key: str) -> str:
    if not _SYSCTL_KEY.match(key) or ".." in key:
        raise ValueError(
            f"sysctl key {key!r} must be dotted words of letters, digits, '_' and '-' "
            "(e.g. net.core.busy_poll)"
        )
    return key


SysctlKey = Annotated[str, AfterValidator(_check_sysctl_key)]


def _check_sysctl_value(value: int | str | list[int]) -> int | str | list[int]:
    if isinstance(value, str) and not _SYSCTL_SCALAR.match(value):
        raise ValueError(f"sysctl value {value!r} may only hold letters, digits and _ . : / + -")
    return value


SysctlValue = Annotated[int | str | list[int], AfterValidator(_check_sysctl_value)]


def _check_cmdline_arg(arg: str) -> str:
    if not _CMDLINE_ARG.match(arg):
        raise ValueError(
            f"kernel argument {arg!r} must look like 'name' or 'name=value' "
            "(letters, digits and _ . , : / + - only)"
        )
    if arg.split("=", 1)[0] in _RESERVED_CMDLINE:
        raise ValueError(
            f"{arg.split('=', 1)[0]} is derived from cpu.isolation / hugepages; "
            "declare it there instead of in kernel.cmdline"
        )
    return arg


CmdlineArg = Annotated[str, AfterValidator(_check_cmdline_arg)]


def _check_iface_glob(pattern: str) -> str:
    if not _IFACE_GLOB.match(pattern):
        raise ValueError(
            f"interface pattern {pattern!r} may hold letters, digits, '_', '.', '-', '*', '?' "
            "and at most 15 characters"
        )
    return pattern


InterfaceGlob = Annotated[str, AfterValidator(_check_iface_glob)]


def _check_abs_path(path: str) -> str:
    if not _ABS_PATH.match(path) or "/../" in f"{path}/" or "/./" in f"{path}/":
        raise ValueError(f"{path!r} must be an absolute path of plain names")
    return path


AbsPath = Annotated[str, AfterValidator(_check_abs_path)]


# --- Sections ---------------------------------------------------------------------------------

Governor = Literal["performance", "powersave", "schedutil", "ondemand", "conservative"]
# ``cpuset``: runtime isolation (no reboot) by a cgroup cpuset partition, see knobs/cpuset.py.
IsolationMethod = Literal["isolcpus", "nohz_full", "rcu_nocbs", "cpuset"]
IsolcpusFlag = Literal["domain", "managed_irq", "nohz"]


class CpuSection(Strict):
    reserved: CpuSpec | None = None
    isolated: CpuText | None = None
    isolation: list[IsolationMethod] = Field(default_factory=list)
    isolcpus_flags: list[IsolcpusFlag] = Field(default_factory=list)
    smt: Literal["together", "split"] = "together"
    governor: Governor | None = None
    energy_perf_bias: (
        Literal["performance", "balance-performance", "normal", "powersave"] | None
    ) = None
    min_perf_pct: int | None = Field(default=None, ge=0, le=100)
    boost: bool | None = None
    max_cstate: int | None = Field(default=None, ge=0, le=16)

    @field_validator("isolated")
    @classmethod
    def _isolated_is_not_reserved(cls, value: str | None) -> str | None:
        if value in ("reserved", "isolated", "all") or (value and parse_selection(value)):
            raise ValueError(f"cpu.isolated cannot be {value!r}; use 'rest' or a CPU list")
        return value

    @model_validator(mode="after")
    def _isolation_needs_cpus(self) -> CpuSection:
        if self.isolation and self.isolated is None:
            raise ValueError("cpu.isolation is set but cpu.isolated names no CPUs")
        if self.isolcpus_flags and "isolcpus" not in self.isolation:
            raise ValueError("cpu.isolcpus_flags needs 'isolcpus' in cpu.isolation")
        if self.isolated is not None and self.reserved is None:
            raise ValueError("cpu.isolated needs cpu.reserved (the housekeeping CPUs)")
        if isinstance(self.reserved, str) and (
            self.reserved in ("reserved", "isolated", "rest") or parse_selection(self.reserved)
        ):
            raise ValueError(f"cpu.reserved cannot be {self.reserved!r}; use a CPU list")
        return self


class IrqSection(Strict):
    affinity: CpuText | None = None
    irqbalance: Literal["ban-isolated", "disabled"] | None = None


def _check_memory_size(value: str) -> str:
    if size_kib(value) == 0:
        raise ValueError("a size of 0 covers nothing")
    return value


# An amount of memory (``8G``, ``512M``): what a hugepage pool must hold.
MemorySize = Annotated[str, BeforeValidator(_number_as_text), AfterValidator(_check_memory_size)]


def pages_to_cover(cover: str, headroom_pct: int, page: str) -> int:
    """How many pages of size ``page`` hold ``cover`` plus ``headroom_pct`` percent: the count
    a pool declared by ``cover`` gets (rounded up: a short pool makes the application fall
    back to normal pages, or fail to start with ``huge_pages = on``)."""
    need_kib = size_kib(cover) * (100 + headroom_pct)
    page_kib = size_kib(page) * 100
    return -(-need_kib // page_kib)


class HugepagePool(Strict):
    """A pool of ``count`` pages, or of enough pages to hold ``cover`` (+ ``headroom_pct``).
    ``boot``: allocated by the kernel at boot (``hugepagesz=`` / ``hugepages=``), where large
    pages still find contiguous memory; 1G pages rarely can be allocated later."""

    size: HugepageSize
    count: int | None = Field(default=None, ge=0, le=1_000_000)
    cover: MemorySize | None = None
    headroom_pct: int = Field(default=0, ge=0, le=100)
    node: int | None = Field(default=None, ge=0, le=1023)
    boot: bool = False

    @model_validator(mode="after")
    def _count_or_cover(self) -> HugepagePool:
        if (self.count is None) == (self.cover is None):
            raise ValueError("declare either count (pages) or cover (memory to hold, e.g. 8G)")
        if self.headroom_pct and self.cover is None:
            raise ValueError("headroom_pct adds to cover; with count, count the pages yourself")
        return self

    @property
    def pages(self) -> int:
        if self.count is not None:
            return self.count
        return pages_to_cover(self.cover or "0K", self.headroom_pct, self.size)


class HugepagesSection(Strict):
    default_size: HugepageSize | None = None
    pages: list[HugepagePool] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_pool_per_size_and_node(self) -> HugepagesSection:
        seen: set[tuple[int, int | None]] = set()
        for pool in self.pages:
            ident = (size_kib(pool.size), pool.node)
            if ident in seen:
                raise ValueError(f"hugepages of size {pool.size} on node {pool.node} listed twice")
            seen.add(ident)
        boot_sizes = {size_kib(pool.size) for pool in self.pages if pool.boot}
        if len(boot_sizes) > 1:
            raise ValueError(
                "boot-time pools (boot: true) may use one page size: the kernel command line "
                "quietcore writes carries one hugepagesz= / hugepages= pair"
            )
        return self


# --- systemd units and containers: NUMA placement and limits (knobs/units.py) -----------------

# Names that reach a drop-in path and a quoted `systemctl show` argument. systemd's `\x2d`
# escapes are not accepted (no backslash reaches a path); a template needs its instance.
_SERVICE_NAME = re.compile(
    r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,180}(?:@[A-Za-z0-9_.-]{1,60})?\.service$"
)
# A slice's dashes name its parents (`kubepods-besteffort.slice` is under `kubepods.slice`), so
# no part may be empty; this also keeps out the root slice `-.slice`.
_SLICE_NAME = re.compile(r"^[A-Za-z0-9_.]+(?:-[A-Za-z0-9_.]+){0,15}\.slice$")
_WORKLOAD_NAME = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
_LIMIT = re.compile(r"^([0-9]{1,15})([KMGT]?)$")
_LIMIT_FACTORS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
INFINITY = "infinity"


def limit_bytes(text: str) -> int | None:
    """``8G`` -> 8589934592, ``4096`` -> 4096 (bytes), ``infinity`` -> None (no limit)."""
    if text == INFINITY:
        return None
    match = _LIMIT.match(text)
    if not match:
        raise ValueError(
            f"{text!r} must be bytes, or a number followed by K, M, G or T (e.g. 512M, 8G), "
            f"or {INFINITY}"
        )
    return int(match.group(1)) * _LIMIT_FACTORS[match.group(2)]


def _check_limit(value: str) -> str:
    if limit_bytes(value) == 0:
        raise ValueError("a limit of 0 bytes leaves nothing to run with; use a size or infinity")
    return value


# MemoryMax / LimitMEMLOCK / a container's --memory: a size or `infinity`.
MemoryLimit = Annotated[str, BeforeValidator(_number_as_text), AfterValidator(_check_limit)]


def _check_unit_name(pattern: re.Pattern[str], kind: str) -> Any:
    def check(name: str) -> str:
        if not pattern.match(name):
            raise ValueError(
                f"{name!r} is not a {kind} name quietcore accepts: letters, digits, '_', '.', "
                f"'-' ending in .{kind} (systemd's \\x2d escapes are not accepted)"
            )
        return name

    return check


ServiceName = Annotated[str, AfterValidator(_check_unit_name(_SERVICE_NAME, "service"))]
SliceName = Annotated[str, AfterValidator(_check_unit_name(_SLICE_NAME, "slice"))]


def _check_mem_nodes(value: str) -> str:
    if value == "local":
        return value
    try:
        nodes = parse_cpulist(value)
    except CpuSetError as error:
        raise ValueError(
            f"{error}; expected 'local' (the NUMA nodes of the declared CPUs) or a node list "
            "like '0' or '0-1'"
        ) from None
    if not nodes:
        raise ValueError("empty NUMA node list")
    return value


MemNodes = Annotated[str, BeforeValidator(_number_as_text), AfterValidator(_check_mem_nodes)]
# systemd.exec(5) NUMAPolicy=; bind, preferred and interleave use mem_nodes as NUMAMask=.
NumaPolicy = Literal["default", "preferred", "bind", "interleave", "local"]
POLICIES_WITH_NODES = ("preferred", "bind", "interleave")


class UnitPlacement(Strict):
    """What every systemd unit may get: resource-control settings, applied to its cgroup."""

    cpus: CpuText | None = None  # AllowedCPUs=
    mem_nodes: MemNodes | None = None  # AllowedMemoryNodes=; `local`: the nodes of `cpus`
    memory_max: MemoryLimit | None = None  # MemoryMax=
    cpu_weight: int | None = Field(default=None, ge=1, le=10000)  # CPUWeight=

    @model_validator(mode="after")
    def _local_needs_cpus(self) -> UnitPlacement:
        if self.mem_nodes == "local" and self.cpus is None:
            raise ValueError("mem_nodes: local means the NUMA nodes of cpus, but cpus is not set")
        return self


class ServiceRule(UnitPlacement):
    """A service's placement, plus what systemd sets on its processes when it starts them."""

    unit: ServiceName
    numa_policy: NumaPolicy | None = None  # NUMAPolicy=, with NUMAMask= = mem_nodes
    memlock: MemoryLimit | None = None  # LimitMEMLOCK=

    @model_validator(mode="after")
    def _declares_something(self) -> ServiceRule:
        if self.numa_policy in POLICIES_WITH_NODES and self.mem_nodes is None:
            raise ValueError(
                f"numa_policy {self.numa_policy} needs mem_nodes (its NUMAMask): "
                "'local' or a node list"
            )
        nodes = self.mem_nodes
        if self.numa_policy == "preferred" and nodes not in (None, "local"):
            self._one_node(nodes or "")
        declared = (self.cpus, self.mem_nodes, self.memory_max, self.cpu_weight, self.memlock)
        if self.numa_policy is None and all(value is None for value in declared):
            raise ValueError(f"{self.unit}: declares nothing to set")
        return self

    @staticmethod
    def _one_node(nodes: str) -> None:
        if len(parse_cpulist(nodes)) > 1:
            raise ValueError("numa_policy preferred takes one node: the kernel uses only it")


class SliceRule(UnitPlacement):
    """A slice's placement (`machine.slice`, `kubepods.slice`): every unit in it inherits it.
    Slices run no process themselves, so there is no NUMA policy or memlock limit here."""

    unit: SliceName

    @model_validator(mode="after")
    def _declares_something(self) -> SliceRule:
        if all(v is None for v in (self.cpus, self.mem_nodes, self.memory_max, self.cpu_weight)):
            raise ValueError(f"{self.unit}: declares nothing to set")
        return self


class Workload(Strict):
    """A container's placement, printed as docker/podman flags by `quietcore container-args`."""

    name: Annotated[str, Field(pattern=_WORKLOAD_NAME)]
    cpus: CpuText  # --cpuset-cpus
    mem_nodes: MemNodes = "local"  # --cpuset-mems
    memory: MemoryLimit | None = None  # --memory
    memlock: MemoryLimit | None = None  # --ulimit memlock
    hugepages: HugepageSize | None = None  # a hugetlbfs mount of this page size

    @field_validator("memory")
    @classmethod
    def _memory_is_a_size(cls, value: str | None) -> str | None:
        if value == INFINITY:
            raise ValueError("memory: infinity is no limit; leave memory out instead")
        return value


def _unique(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{what} {name} is listed twice")
        seen.add(name)


class NumaSection(Strict):
    balancing: bool | None = None
    services: list[ServiceRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_rule_per_service(self) -> NumaSection:
        _unique([rule.unit for rule in self.services], "service")
        return self


class MemorySection(Strict):
    thp: Literal["always", "madvise", "never"] | None = None
    thp_defrag: Literal["always", "defer", "defer+madvise", "madvise", "never"] | None = None
    swappiness: int | None = Field(default=None, ge=0, le=200)
    ksm: bool | None = None


BufferTriple = Annotated[list[int], Field(min_length=3, max_length=3)]


class TcpSection(Strict):
    rmem: BufferTriple | None = None
    wmem: BufferTriple | None = None
    congestion_control: Annotated[str, Field(pattern=r"^[a-z0-9_]{1,16}$")] | None = None
    fastopen: int | None = Field(default=None, ge=0, le=0x7FF)

    @field_validator("rmem", "wmem")
    @classmethod
    def _ascending(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and not (0 < value[0] <= value[1] <= value[2]):
            raise ValueError("buffer triple must be positive and ascending: [min, default, max]")
        return value


class Coalesce(Strict):
    rx_usecs: int | None = Field(default=None, ge=0)
    tx_usecs: int | None = Field(default=None, ge=0)
    rx_frames: int | None = Field(default=None, ge=0)
    tx_frames: int | None = Field(default=None, ge=0)
    adaptive_rx: bool | None = None
    adaptive_tx: bool | None = None


class Rings(Strict):
    rx: int | None = Field(default=None, ge=1)
    tx: int | None = Field(default=None, ge=1)


class InterfaceRule(Strict):
    match: InterfaceGlob
    coalesce: Coalesce | None = None
    rings: Rings | None = None
    # A number of combined channels, or a CPU set whose size gives that number (TuneD's
    # realtime profile sets channels to the number of housekeeping CPUs).
    channels: Annotated[int, Field(ge=1)] | CpuText | None = None
    rps: CpuText | None = None
    xps: CpuText | None = None


class NetworkSection(Strict):
    tcp: TcpSection | None = None
    rmem_max: int | None = Field(default=None, ge=4096)
    wmem_max: int | None = Field(default=None, ge=4096)
    busy_poll_us: int | None = Field(default=None, ge=0, le=1_000_000)
    busy_read_us: int | None = Field(default=None, ge=0, le=1_000_000)
    netdev_budget: int | None = Field(default=None, ge=1)
    netdev_budget_usecs: int | None = Field(default=None, ge=1)
    interfaces: list[InterfaceRule] = Field(default_factory=list)


# --- Kernel bypass (DPDK, Onload ef_vi, VPP): readiness of IOMMU, vfio-pci, hugepages, NUMA -

_PCI_ADDRESS = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")


def _check_pci_address(value: str) -> str:
    if not _PCI_ADDRESS.match(value):
        raise ValueError(
            f"{value!r} is not a PCI address as lspci -D and sysfs write it: "
            "domain:bus:device.function in lower-case hex, e.g. 0000:81:00.0"
        )
    return value


PciAddress = Annotated[str, AfterValidator(_check_pci_address)]


class BypassHugepages(Strict):
    """Hugepages for the poll-mode application, on every NUMA node local to a listed device
    (without devices: every node of ``poll_cpus``), allocated at boot."""

    size: HugepageSize = "1G"
    per_node: int = Field(default=1, ge=1, le=4096)


class BypassSection(Strict):
    # passthrough: the IOMMU on (the vendor argument, intel_iommu=on or amd_iommu=on) with
    # identity-mapped DMA for host drivers (iommu=pt); vfio still isolates bound devices.
    iommu: Literal["passthrough"] | None = None
    driver: Literal["vfio-pci"] = "vfio-pci"
    # Bound to ``driver`` by PCI address (runtime and at every boot); rollback rebinds the
    # driver each had.
    devices: list[PciAddress] = Field(default_factory=list)
    # Where the poll-mode threads run: each device's NUMA node must hold one of these CPUs.
    poll_cpus: CpuText | None = None
    hugepages: BypassHugepages | None = None

    @model_validator(mode="after")
    def _unique_devices(self) -> BypassSection:
        _unique(self.devices, "PCI device")
        return self


class Watchdogs(Strict):
    nmi: bool | None = None
    soft: bool | None = None


class KernelSection(Strict):
    sysctl: dict[SysctlKey, SysctlValue] = Field(default_factory=dict)
    cmdline: list[CmdlineArg] = Field(default_factory=list)
    workqueue_mask: CpuText | None = None
    sched_rt_runtime_us: int | None = Field(default=None, ge=-1)
    watchdogs: Watchdogs | None = None
    mce_ignore_ce: bool | None = None


_QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti)?$"
ResourceMap = dict[
    Literal["cpu", "memory", "ephemeral-storage", "pid"],
    Annotated[str, Field(pattern=_QUANTITY)],
]


# Hard eviction signals the kubelet knows (evictionHard); values are quantities or percentages.
EvictionSignal = Literal[
    "memory.available",
    "nodefs.available",
    "nodefs.inodesFree",
    "imagefs.available",
    "imagefs.inodesFree",
    "containerfs.available",
    "containerfs.inodesFree",
    "pid.available",
]
_THRESHOLD = r"^([0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti)?|[0-9]+(\.[0-9]+)?%)$"


class KubeletSection(Strict):
    config_path: AbsPath = "/var/lib/kubelet/config.yaml"
    cpu_manager_policy: Literal["none", "static"] | None = None
    cpu_manager_policy_options: dict[
        Literal[
            "full-pcpus-only",
            "distribute-cpus-across-numa",
            "align-by-socket",
            "distribute-cpus-across-cores",
            "strict-cpu-reservation",
            "prefer-align-cpus-by-uncorecache",
        ],
        Literal["true", "false"],
    ] = Field(default_factory=dict)
    topology_manager_policy: (
        Literal["none", "best-effort", "restricted", "single-numa-node"] | None
    ) = None
    topology_manager_scope: Literal["container", "pod"] | None = None
    memory_manager_policy: Literal["None", "Static"] | None = None
    reserved_system_cpus: CpuText | None = None
    system_reserved: ResourceMap = Field(default_factory=dict)
    kube_reserved: ResourceMap = Field(default_factory=dict)
    # Rendered only when declared: a partial evictionHard makes older kubelets zero the
    # signals it leaves out. The Static memory manager's reservedMemory counts memory.available
    # (the kubelet's default, 100Mi, when not declared).
    eviction_hard: dict[EvictionSignal, Annotated[str, Field(pattern=_THRESHOLD)]] = Field(
        default_factory=dict
    )

    @model_validator(mode="after")
    def _static_memory_needs_an_absolute_threshold(self) -> KubeletSection:
        threshold = self.eviction_hard.get("memory.available", "")
        if self.memory_manager_policy == "Static" and threshold.endswith("%"):
            raise ValueError(
                "eviction_hard memory.available must be a quantity (e.g. 100Mi), not a "
                "percentage, with memory_manager_policy Static: reservedMemory is computed from it"
            )
        return self


FileLimit = Annotated[int, Field(ge=1024, le=1 << 30)] | Literal["infinity"]


class SystemdSection(Strict):
    cpu_affinity: CpuText | None = None
    # DefaultLimitNOFILE= of the service manager: the open-file limit every service starts with
    # (a number, or `infinity`), for hosts that hold many connections.
    default_limit_nofile: FileLimit | None = None


class ContainersSection(Strict):
    kubelet: KubeletSection | None = None
    systemd: SystemdSection | None = None
    slices: list[SliceRule] = Field(default_factory=list)
    workloads: list[Workload] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> ContainersSection:
        _unique([rule.unit for rule in self.slices], "slice")
        _unique([workload.name for workload in self.workloads], "workload")
        return self


class JitterAccept(Strict):
    max_us: float | None = Field(default=None, gt=0)
    p99_us: float | None = Field(default=None, gt=0)
    p99_9_us: float | None = Field(default=None, gt=0)
    p99_99_us: float | None = Field(default=None, gt=0)
    events_over_us: dict[int, int] = Field(default_factory=dict)
    interrupted_pct: float | None = Field(default=None, ge=0, le=100)


class JitterRegression(Strict):
    """How much worse than a saved baseline (``verify --against``) a CPU may measure, in
    percent of the baseline's value, before the verify fails naming the percentile."""

    p50_pct: float | None = Field(default=None, ge=0)
    p99_pct: float | None = Field(default=None, ge=0)
    p99_9_pct: float | None = Field(default=None, ge=0)
    p99_99_pct: float | None = Field(default=None, ge=0)
    max_pct: float | None = Field(default=None, ge=0)


class JitterSection(Strict):
    cpus: CpuText = "isolated"
    duration: Duration = "60s"
    threshold_us: float = Field(default=5.0, gt=0, le=1_000_000)
    accept: JitterAccept = Field(default_factory=JitterAccept)
    regression: JitterRegression = Field(default_factory=JitterRegression)


ClockDaemon = Literal["chrony", "ptp4l", "phc2sys"]


class ClockSection(Strict):
    """Clock health: the clocksource, and the sync state and offset of the time daemons that
    run. A daemon that does not run is ``unsupported`` unless ``require`` names it."""

    clocksource: Literal["tsc"] | None = "tsc"
    max_offset_us: float | None = Field(default=None, gt=0)
    require: list[ClockDaemon] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_daemons(self) -> ClockSection:
        _unique(list(self.require), "clock daemon")
        return self


class VerifySection(Strict):
    jitter: JitterSection | None = None
    clock: ClockSection | None = None


_PROFILE_NAME = r"^[a-z0-9][a-z0-9_.-]{0,63}$"


class Profile(Strict):
    """A whole, merged profile (after ``extends`` has been applied)."""

    name: Annotated[str, Field(pattern=_PROFILE_NAME)]
    summary: str | None = None
    extends: str | None = None
    cpu: CpuSection = Field(default_factory=CpuSection)
    irq: IrqSection = Field(default_factory=IrqSection)
    hugepages: HugepagesSection = Field(default_factory=HugepagesSection)
    numa: NumaSection = Field(default_factory=NumaSection)
    memory: MemorySection = Field(default_factory=MemorySection)
    network: NetworkSection = Field(default_factory=NetworkSection)
    kernel: KernelSection = Field(default_factory=KernelSection)
    bypass: BypassSection = Field(default_factory=BypassSection)
    containers: ContainersSection = Field(default_factory=ContainersSection)
    verify: VerifySection = Field(default_factory=VerifySection)
