"""What ``quietcore exec`` does, decided from what the host shows. Pure: no I/O.

``HostView`` is everything read from the host (``host_view.read_host_view``), ``ExecRequest``
the user's options; ``plan_exec`` either returns an ``ExecPlan`` (which CPUs, which cgroup to
join, which NUMA node to bind memory to, which scheduling policy) or refuses with an
``ExecError`` that says what to do instead. ``launch`` carries the plan out.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass

from quietcore import cgroup_layout
from quietcore.cgroup_layout import CgroupVersion
from quietcore.profile.cpuset import (
    CpuSet,
    CpuSetError,
    format_cpulist,
    parse_cpulist,
    parse_selection,
    select_positions,
)

# set_mempolicy(2) has no wrapper in Python or glibc (it is libnuma's), so it is called by
# number; numbers differ per architecture and only these are known here.
SET_MEMPOLICY_SYSCALLS: Mapping[str, int] = {"x86_64": 238, "aarch64": 237}
FIFO_PRIORITIES = range(1, 100)
ISOLATED = "isolated"
BOOT_ISOLATED_FILE = "/sys/devices/system/cpu/isolated"
# v2 partition states that isolate: `isolated` (no load balancing) and `root` (balanced).
_VALID_V2_PARTITIONS = ("isolated", "root")


class ExecError(ValueError):
    """A request that cannot be carried out on this host, with what to do instead."""


@dataclass(frozen=True)
class Partition:
    """quietcore's cpuset partition as the kernel shows it now."""

    version: CgroupVersion
    path: str
    cpus: CpuSet
    mems: frozenset[int]
    # v2's cpuset.cpus.partition (`isolated`, `member`, `isolated invalid (...)`); None on v1.
    state: str | None = None


@dataclass(frozen=True)
class HostView:
    partition: Partition | None
    boot_isolated: CpuSet
    online: CpuSet
    # NUMA node -> its CPUs; empty when the kernel has no NUMA support.
    node_cpus: Mapping[int, CpuSet]
    memory_nodes: frozenset[int]
    # This process's Mems_allowed: where memory may be bound when no partition is joined.
    allowed_mems: frozenset[int]
    arch: str
    # The cpuset hierarchy the host offers (None: none mounted), to name the missing partition.
    cgroup_version: CgroupVersion | None = None


@dataclass(frozen=True)
class ExecRequest:
    cpus: str
    mem_node: str = "local"
    fifo: int | None = None
    mlock: bool = False
    allow_housekeeping: bool = False


@dataclass(frozen=True)
class ExecPlan:
    cpus: CpuSet
    # Where the CPUs came from, for people: "isolated[0] of the cgroup v1 partition ... (1)".
    origin: str
    # The cgroup directory to join (its cgroup.procs), or None when there is none to join.
    cgroup: str | None
    mem_node: int | None
    fifo: int | None
    mlock: bool
    # What a user may want to know but that is not a problem (shown with -v and --dry-run).
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Isolated:
    cpus: CpuSet
    source: str
    partition: Partition | None


def plan_exec(request: ExecRequest, host: HostView) -> ExecPlan:
    """Decide what to do for ``request`` on ``host``, or raise ``ExecError``."""
    notes: list[str] = []
    isolated = _isolated(host)
    cpus, origin, join = _choose_cpus(request, host, isolated, notes)
    offline = cpus - host.online
    if offline:
        raise ExecError(f"CPU {format_cpulist(offline)} is not online on this host")
    partition = isolated.partition if join else None
    if join and partition is None:
        notes.append(
            "the isolated CPUs come from boot-time isolcpus: there is no partition cgroup to "
            "join, the workload is only pinned to them"
        )
    allowed_mems = partition.mems if partition is not None else host.allowed_mems
    mem_node = _mem_node(request.mem_node, cpus, host, allowed_mems, notes)
    if request.fifo is not None and request.fifo not in FIFO_PRIORITIES:
        raise ExecError(f"--fifo {request.fifo}: SCHED_FIFO priorities are 1 to 99")
    return ExecPlan(
        cpus=cpus,
        origin=origin,
        cgroup=partition.path if partition is not None else None,
        mem_node=mem_node,
        fifo=request.fifo,
        mlock=request.mlock,
        notes=tuple(notes),
    )


def _isolated(host: HostView) -> _Isolated:
    partition = host.partition
    if partition is not None:
        state = partition.state
        # An invalid partition reads e.g. `isolated invalid (Cpu list in cpuset.cpus not
        # exclusive)`: the kernel then treats it as a plain member cgroup.
        if state is not None and state.strip() not in _VALID_V2_PARTITIONS:
            raise ExecError(
                f"the partition {partition.path} is not a valid isolated partition "
                f"(cpuset.cpus.partition: {state}); `quietcore verify` shows what differs"
            )
        if not partition.cpus:
            raise ExecError(f"the partition {partition.path} has no CPUs (effective CPUs empty)")
        source = f"the cgroup {partition.version} partition {partition.path}"
        return _Isolated(partition.cpus, source, partition)
    if host.boot_isolated:
        return _Isolated(host.boot_isolated, f"boot-time isolcpus ({BOOT_ISOLATED_FILE})", None)
    return _Isolated(frozenset(), "", None)


def _no_isolated_cpus(host: HostView) -> ExecError:
    where = (
        cgroup_layout.partition(host.cgroup_version)
        if host.cgroup_version is not None
        else "no cpuset cgroup hierarchy is mounted"
    )
    return ExecError(
        f"no CPU is isolated on this host: no quietcore partition ({where}) and "
        f"{BOOT_ISOLATED_FILE} is empty. Apply a profile with `cpu.isolation: [cpuset]` first "
        "(`quietcore apply --profile FILE --reboot never @local`), or give a CPU list with "
        "--allow-housekeeping"
    )


def _choose_cpus(
    request: ExecRequest, host: HostView, isolated: _Isolated, notes: list[str]
) -> tuple[CpuSet, str, bool]:
    """(CPUs, where they came from, whether they are isolated: join the partition)."""
    text = request.cpus.strip()
    selection = (ISOLATED, None) if text == ISOLATED else _selection(text)
    if selection is not None:
        _, positions = selection
        if not isolated.cpus:
            raise _no_isolated_cpus(host)
        described = f"{text} of {isolated.source} ({format_cpulist(isolated.cpus)})"
        if positions is None:
            return isolated.cpus, described, True
        try:
            return select_positions(isolated.cpus, positions, ISOLATED), described, True
        except CpuSetError as problem:
            raise ExecError(f"--cpus {text}: {problem}") from None
    try:
        cpus = parse_cpulist(text)
    except CpuSetError as problem:
        raise ExecError(
            f"--cpus {text!r}: {problem}; give isolated, isolated[i], isolated[i-j] or a CPU "
            "list such as 2-3,6"
        ) from None
    if not cpus:
        raise ExecError("--cpus is empty")
    if isolated.cpus and cpus <= isolated.cpus:
        return cpus, f"a CPU list, isolated by {isolated.source}", True
    if not request.allow_housekeeping:
        outside = format_cpulist(cpus - isolated.cpus)
        have = format_cpulist(isolated.cpus) or "none"
        raise ExecError(
            f"--cpus {text}: CPU {outside} is not isolated (isolated CPUs: {have}); the "
            "workload would share it with the OS. Pass --allow-housekeeping to run there anyway "
            "(pinned only, outside the partition)"
        )
    notes.append(
        f"CPU {format_cpulist(cpus - isolated.cpus)} is not isolated (--allow-housekeeping): "
        "the workload is pinned there but joins no partition"
    )
    return cpus, "a CPU list, not isolated (--allow-housekeeping)", False


def _selection(text: str) -> tuple[str, range | None] | None:
    try:
        selection = parse_selection(text)
    except CpuSetError as problem:
        raise ExecError(f"--cpus {text}: {problem}") from None
    if selection is None:
        return None
    name, positions = selection
    if name != ISOLATED:
        raise ExecError(
            f"--cpus {text}: only positions of `isolated` are known on a running host (a "
            f"profile's `{name}` is not); give isolated[i] or a CPU list"
        )
    return name, positions


def _mem_node(
    text: str,
    cpus: CpuSet,
    host: HostView,
    allowed_mems: frozenset[int],
    notes: list[str],
) -> int | None:
    text = text.strip()
    if text == "none":
        return None
    if text == "local":
        if not host.node_cpus:
            notes.append("this kernel shows no NUMA nodes: memory is not bound")
            return None
        node = _local_node(cpus, host)
    elif text.isdigit():
        node = int(text)
        if node not in host.node_cpus:
            raise ExecError(
                f"--mem-node {node}: no such NUMA node (nodes: "
                f"{format_cpulist(host.node_cpus.keys()) or 'none'})"
            )
    else:
        raise ExecError(f"--mem-node {text!r}: give local, none or a NUMA node number")
    if node not in host.memory_nodes:
        raise ExecError(
            f"NUMA node {node} has no memory; choose --mem-node N from the nodes with memory "
            f"({format_cpulist(host.memory_nodes) or 'none'})"
        )
    if allowed_mems and node not in allowed_mems:
        raise ExecError(
            f"NUMA node {node} is outside the memory nodes the cpuset allows "
            f"({format_cpulist(allowed_mems)}); choose one of them with --mem-node"
        )
    if host.arch not in SET_MEMPOLICY_SYSCALLS:
        raise ExecError(
            f"binding memory needs set_mempolicy(2), which quietcore calls on "
            f"{' and '.join(SET_MEMPOLICY_SYSCALLS)} only (this host is {host.arch}); "
            "pass --mem-node none"
        )
    return node


def _local_node(cpus: CpuSet, host: HostView) -> int:
    nodes = sorted(node for node, node_cpus in host.node_cpus.items() if node_cpus & cpus)
    if len(nodes) > 1:
        spans = ", ".join(
            f"node {node}: CPU {format_cpulist(host.node_cpus[node] & cpus)}" for node in nodes
        )
        raise ExecError(
            f"CPU {format_cpulist(cpus)} spans NUMA nodes ({spans}): no node is local to all "
            "of them; choose one with --mem-node N (or --mem-node none)"
        )
    if not nodes:
        raise ExecError(
            f"CPU {format_cpulist(cpus)} belongs to no NUMA node; choose --mem-node N or none"
        )
    return nodes[0]


def describe(plan: ExecPlan, command: list[str], preload: str | None) -> list[tuple[str, str]]:
    """(step, what it does) rows, in the order ``launch`` takes them, for ``--dry-run``."""
    rows = [
        ("cpus", f"{format_cpulist(plan.cpus)}: {plan.origin}"),
        (
            "cgroup",
            f"join {plan.cgroup}" if plan.cgroup is not None else "none joined (stays where it is)",
        ),
        (
            "memory",
            f"MPOL_BIND to NUMA node {plan.mem_node}"
            if plan.mem_node is not None
            else "not bound (default policy)",
        ),
        ("affinity", f"sched_setaffinity {format_cpulist(plan.cpus)}"),
        (
            "scheduling",
            f"SCHED_FIFO priority {plan.fifo}"
            if plan.fifo is not None
            else "unchanged (inherited)",
        ),
    ]
    if plan.mlock:
        rows.append(("mlock", f"RLIMIT_MEMLOCK unlimited; LD_PRELOAD {preload}"))
    rows.append(("exec", shlex.join(command)))
    rows.extend(("note", note) for note in plan.notes)
    return rows
