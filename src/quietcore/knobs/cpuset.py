"""Runtime CPU isolation without a reboot: ``cpu.isolation: [cpuset]``.

A cgroup cpuset *partition* holds the isolated CPUs: the scheduler stops balancing load onto
them and nothing outside the partition may run there. Workloads join it (``quietcore exec``);
everything else is confined to the reserved CPUs. Layout in ``quietcore.cgroup_layout``.

Keys (``/sys/fs/cgroup`` is abbreviated ``CG``):

- ``cpuset/partition`` = ``<isolated CPUs> isolated``: the partition's CPUs and state. cgroup
  v2: ``CG/quietcore-isolated`` with ``cpuset.cpus.partition = isolated`` (the kernel prints
  ``isolated invalid (why)`` when it cannot honour it). cgroup v1: ``CG/cpuset/quietcore-isolated``,
  ``cpu_exclusive = 1`` and ``sched_load_balance = 0``;
- ``cpuset/partition/effective_cpus``: an effect, the CPUs the kernel really granted;
- ``cpuset/controller`` (v2): ``on`` when the root offers the cpuset controller to its children
  (``cgroup.subtree_control``), which the partition needs; rollback turns it off again if it was;
- ``cpuset/slice/<unit>/cpus`` (v2 under systemd): ``init.scope``, ``system.slice`` and
  ``user.slice`` confined to the reserved CPUs, through systemd (``set-property --runtime``) so
  that systemd does not undo it on its next reload;
- ``cpuset/housekeeping`` and ``cpuset/root/sched_load_balance`` (v1): v1 never takes CPUs away
  from the root cpuset, so every process moves to a cpuset of the reserved CPUs, and the root
  stops balancing across both sets;
- ``cpuset/others`` (v1): every other cpuset (``docker``, ``libpod_parent``, their children)
  confined to the reserved CPUs, as ``/docker=0-1 /docker/abc=1``: the kernel refuses an
  exclusive partition that overlaps a sibling, and a task there could use an isolated CPU;
- ``cpuset/tasks``: where every task outside the partition that the kernel lets move may run.
  Its value lists threads grouped by allowed CPUs (``0@1-40,77 0-3@812``); desired is the
  reserved CPUs, which every group must stay within. Per-CPU kernel threads (bound by the
  kernel: ``PF_NO_SETAFFINITY``, unbound workqueue workers included: the workqueue mask places
  those) are left out; so are threads in the partition, which are the workloads. The snapshot
  keeps every thread's allowed CPUs, and rollback gives each thread that still exists its own
  CPUs back.

IRQ affinity and the workqueue mask, which runtime isolation needs as well, are the irq and
workqueue families' keys: ``cpu.isolation: [cpuset]`` makes ``reserved`` their default (see
``profile/load.py``). The kernel forgets all of this at reboot, so the boot script replays it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from quietcore import cgroup_layout
from quietcore.cgroup_layout import HOUSEKEEPING_SLICES, CgroupVersion
from quietcore.knobs.base import KnobFamily, Observation, ResolveContext, Setting, step_cpus
from quietcore.profile.cpuset import (
    CpuSet,
    CpuSetError,
    format_cpulist,
    format_ranges,
    parse_cpulist,
)
from quietcore.profile.schema import Profile
from quietcore.readings import Readings, ReadSpec
from quietcore.steps import (
    ConfineTasks,
    PinTasks,
    RemoveCgroup,
    Run,
    Step,
    UnsafeStepError,
    Write,
)
from quietcore.topology import Topology

FIELD = "cpu.isolation"
PARTITION_KEY = "cpuset/partition"
EFFECTIVE_KEY = "cpuset/partition/effective_cpus"
HOUSEKEEPING_KEY = "cpuset/housekeeping"
ROOT_BALANCE_KEY = "cpuset/root/sched_load_balance"
OTHERS_KEY = "cpuset/others"
CONTROLLER_KEY = "cpuset/controller"
SUBTREE_CONTROL = f"{cgroup_layout.V2_ROOT}/cgroup.subtree_control"
TASKS_KEY = "cpuset/tasks"
ISOLATED = "isolated"
STARTED = "started<="
_SLICE_KEY = re.compile(r"^cpuset/slice/([A-Za-z0-9_.-]+)/cpus$")

# Kernel thread flags (include/linux/sched.h): the kernel decides where it runs.
PF_NO_SETAFFINITY = 0x04000000
TASK_STAT = "/proc/[0-9]*/task/[0-9]*/stat"
TASK_CPUSET = "/proc/[0-9]*/task/[0-9]*/cpuset"
# One grep for every thread's allowed CPUs: reading whole status files would be 50x the text.
ALLOWED_COMMAND = "cpuset-allowed"
ALLOWED_SHELL = "grep -s -H Cpus_allowed_list /proc/[0-9]*/task/[0-9]*/status"
_TASK_PATH = re.compile(r"^/proc/([0-9]+)/task/([0-9]+)/(stat|cpuset|status)$")

NO_CPUSET = "this host has no cpuset cgroup controller (neither cgroup v2 nor v1 offers it)"
NO_SYSTEMD_SLICE = "PID 1 is not systemd: there is no {unit} to confine"
SHOWN_OFFENDERS = 5


def _v2_partition_files() -> tuple[str, ...]:
    base = cgroup_layout.partition("v2")
    return tuple(f"{base}/{name}" for name in ("cpuset.cpus", "cpuset.cpus.partition"))


def _v1_partition_files() -> tuple[str, ...]:
    base = cgroup_layout.partition("v1")
    names = ("cpuset.cpus", "cpuset.cpu_exclusive", "cpuset.sched_load_balance")
    return tuple(f"{base}/{name}" for name in names)


# cgroup v1: every other cpuset (a container runtime's ``docker``, ``libpod_parent`` and their
# children) down to this depth; the kernel refuses an exclusive partition that overlaps one.
OTHER_DEPTH = 4
_OTHER_GLOBS = tuple(
    f"{cgroup_layout.V1_ROOT}/{'/'.join(['*'] * depth)}/cpuset.cpus"
    for depth in range(1, OTHER_DEPTH + 1)
)
_SAFE_CGROUP = re.compile(r"^/[A-Za-z0-9_.:+@/-]+$")


def within(cgroup: str, top: str) -> bool:
    """Whether the cgroup path ``cgroup`` (``/a/b``) is ``top`` or below it."""
    return cgroup == top or cgroup.startswith(top + "/")


def other_cpusets(readings: Readings) -> dict[str, CpuSet]:
    """v1 cpusets outside quietcore's own, by path relative to the root (``/docker/abc``)."""
    found: dict[str, CpuSet] = {}
    own = (cgroup_layout.PARTITION_CGROUP, f"/{cgroup_layout.HOUSEKEEPING_NAME}")
    for pattern in _OTHER_GLOBS:
        for path, lines in readings.glob(pattern).items():
            relative = path.removeprefix(cgroup_layout.V1_ROOT).removesuffix("/cpuset.cpus")
            if any(within(relative, mine) for mine in own):
                continue
            if not _SAFE_CGROUP.match(relative) or "/../" in relative + "/":
                continue
            try:
                found[relative] = parse_cpulist(lines[0] if lines else "")
            except CpuSetError:
                continue
    return found


def format_others(cpusets: Mapping[str, CpuSet]) -> str:
    return " ".join(f"{path}={format_cpulist(cpus)}" for path, cpus in sorted(cpusets.items()))


def parse_others(text: str) -> dict[str, CpuSet]:
    others: dict[str, CpuSet] = {}
    for item in text.split():
        path, equals, cpus = item.partition("=")
        if not equals or not _SAFE_CGROUP.match(path) or "/../" in path + "/":
            raise ValueError(f"not a PATH=CPUS item: {item!r}")
        others[path] = parse_cpulist(cpus)
    return others


def slice_key(unit: str) -> str:
    return f"cpuset/slice/{unit}/cpus"


def slice_cpus_file(unit: str) -> str:
    return f"{cgroup_layout.V2_ROOT}/{unit}/cpuset.cpus"


# --- Threads ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Thread:
    tid: int
    comm: str
    allowed: CpuSet
    pinned_by_kernel: bool
    cpuset: str  # the cgroup path in the cpuset hierarchy, e.g. ``/quietcore-isolated``
    started: int  # clock ticks after boot: tells a thread from a later one with its TID


def _stat_fields(line: str) -> tuple[str, list[str]]:
    """(comm, the fields after it) of a ``/proc/.../stat`` line; comm may hold ``)``."""
    head, _, tail = line.rpartition(")")
    return head.partition("(")[2], tail.split()


def threads(readings: Readings) -> list[Thread]:
    """Every thread the bundle saw whole (its stat, cpuset and allowed CPUs), by TID. One that
    exited while the bundle read is skipped, not guessed."""
    allowed: dict[int, CpuSet] = {}
    command = readings.command(ALLOWED_COMMAND)
    for line in command.lines if command else ():
        path, _, value = line.partition(":Cpus_allowed_list:")
        match = _TASK_PATH.match(path)
        if match is not None:
            try:
                allowed[int(match.group(2))] = parse_cpulist(value)
            except CpuSetError:
                continue
    found: list[Thread] = []
    for path, lines in readings.glob(TASK_STAT).items():
        match = _TASK_PATH.match(path)
        cpuset = readings.first_line(path.removesuffix("stat") + "cpuset")
        if match is None or not lines or cpuset is None:
            continue
        tid = int(match.group(2))
        comm, fields = _stat_fields(lines[0])
        # After comm: state ppid pgrp session tty_nr tpgid flags (6) ... starttime (19).
        if tid not in allowed or len(fields) < 20 or not (fields[6] + fields[19]).isdigit():
            continue
        pinned = bool(int(fields[6]) & PF_NO_SETAFFINITY)
        found.append(Thread(tid, comm, allowed[tid], pinned, cpuset or "/", int(fields[19])))
    return sorted(found, key=lambda thread: thread.tid)


def movable_outside(found: Iterable[Thread]) -> list[Thread]:
    """The threads ``cpuset/tasks`` is about: not in the partition, not pinned by the kernel."""
    return [
        thread
        for thread in found
        if not thread.pinned_by_kernel and not within(thread.cpuset, cgroup_layout.PARTITION_CGROUP)
    ]


def parse_ids(text: str) -> list[int]:
    ids: list[int] = []
    for item in text.split(","):
        first, _, last = item.partition("-")
        if not first.isdigit() or (last and not last.isdigit()):
            raise ValueError(f"not a thread ID range: {item!r}")
        ids.extend(range(int(first), int(last or first) + 1))
    return ids


def format_placement(found: Sequence[Thread]) -> str:
    """Threads grouped by allowed CPUs, then the newest thread's start (clock ticks after
    boot): ``0@1-40,77 0-3@812 started<=91234``. TIDs are reused (``pid_max`` is often 32768),
    so a snapshot's TID names the same thread only if that thread started by then."""
    groups: dict[str, list[int]] = {}
    for thread in found:
        groups.setdefault(format_cpulist(thread.allowed), []).append(thread.tid)
    items = [f"{cpus}@{format_ranges(tids)}" for cpus, tids in sorted(groups.items())]
    if found:
        items.append(f"{STARTED}{max(thread.started for thread in found)}")
    return " ".join(items)


def placement_limit(text: str) -> int | None:
    """The ``started<=N`` of a placement: threads that started later are not the ones it names."""
    for item in text.split():
        if item.startswith(STARTED) and item.removeprefix(STARTED).isdigit():
            return int(item.removeprefix(STARTED))
    return None


def same_threads(found: Iterable[Thread], limit: int | None) -> list[Thread]:
    return [thread for thread in found if limit is None or thread.started <= limit]


def parse_placement(text: str) -> dict[int, CpuSet]:
    """TID -> allowed CPUs, from ``format_placement``'s text; ValueError when it is not one."""
    placement: dict[int, CpuSet] = {}
    for group in text.split():
        if group.startswith(STARTED):
            continue
        cpus, at, tids = group.partition("@")
        if not at:
            raise ValueError(f"not a CPUS@TIDS group: {group!r}")
        allowed = parse_cpulist(cpus)
        for tid in parse_ids(tids):
            placement[tid] = allowed
    return placement


def _offenders(found: Iterable[Thread], allowed: CpuSet) -> list[Thread]:
    return [thread for thread in found if not thread.allowed <= allowed]


def _offender_reason(offenders: list[Thread], allowed: CpuSet) -> str:
    shown = ", ".join(
        f"{thread.tid} ({thread.comm}) on {format_cpulist(thread.allowed)}"
        for thread in offenders[:SHOWN_OFFENDERS]
    )
    more = len(offenders) - SHOWN_OFFENDERS
    tail = f" and {more} more" if more > 0 else ""
    return (
        f"{len(offenders)} movable thread(s) outside the partition may run beyond "
        f"{format_cpulist(allowed)}: {shown}{tail}"
    )


# --- Reading the cgroup files ---------------------------------------------------------------


def _cpus_text(text: str | None) -> str | None:
    """A cgroup CPU list in canonical form; ``None`` when absent, the raw text when not a list."""
    if text is None:
        return None
    try:
        return format_cpulist(parse_cpulist(text))
    except CpuSetError:
        return text


def partition_state(version: CgroupVersion, readings: Readings) -> str | None:
    """``<cpus> <state>`` of the partition, ``None`` when it does not exist."""
    base = cgroup_layout.partition(version)
    cpus = _cpus_text(readings.first_line(f"{base}/cpuset.cpus"))
    if cpus is None:
        return None
    if version == "v2":
        state = readings.first_line(f"{base}/cpuset.cpus.partition") or "member"
    else:
        exclusive = readings.first_line(f"{base}/cpuset.cpu_exclusive")
        balance = readings.first_line(f"{base}/cpuset.sched_load_balance")
        state = (
            ISOLATED
            if (exclusive, balance) == ("1", "0")
            else f"cpu_exclusive={exclusive} sched_load_balance={balance}"
        )
    return f"{cpus or '(none)'} {state}"


def _all_mems(topology: Topology) -> str:
    return format_cpulist(topology.nodes) or "0"


def _confined_or_restored[T](
    current: Mapping[T, CpuSet], desired: str, parse: Callable[[str], Mapping[T, CpuSet]]
) -> bool:
    """``desired`` is either the reserved CPUs, which everything must stay within, or a
    snapshot's map (``CPUS@TIDS`` or ``PATH=CPUS`` items, empty when there was nothing), which
    everything that still exists must equal again."""
    if desired and not any(mark in desired for mark in "@="):
        allowed = parse_cpulist(desired)
        return all(cpus <= allowed for cpus in current.values())
    before = parse(desired)
    return all(current[item] == cpus for item, cpus in before.items() if item in current)


# --- The family -----------------------------------------------------------------------------


class CpusetKnob(KnobFamily):
    name = "cpuset"
    boot_script = True
    unchecked_on_node = (
        "runtime cpuset isolation is read over SSH: a verifier pod sees only its own cgroup"
    )

    def reads(self, profile: Profile) -> ReadSpec:
        if "cpuset" not in profile.cpu.isolation:
            return ReadSpec()
        v2 = cgroup_layout.partition("v2")
        v1 = cgroup_layout.partition("v1")
        return ReadSpec(
            files=(
                *_v2_partition_files(),
                f"{v2}/{cgroup_layout.EFFECTIVE_CPUS['v2']}",
                *_v1_partition_files(),
                f"{v1}/{cgroup_layout.EFFECTIVE_CPUS['v1']}",
                f"{cgroup_layout.V1_HOUSEKEEPING}/cpuset.cpus",
                f"{cgroup_layout.V1_ROOT}/cpuset.sched_load_balance",
                SUBTREE_CONTROL,
                *_OTHER_GLOBS,
                *(slice_cpus_file(unit) for unit in HOUSEKEEPING_SLICES),
                TASK_STAT,
                TASK_CPUSET,
            ),
            commands=((ALLOWED_COMMAND, ALLOWED_SHELL),),
        )

    def desired(self, ctx: ResolveContext) -> Iterable[Setting]:
        if "cpuset" not in ctx.profile.cpu.isolation:
            return
        isolated = format_cpulist(ctx.cpus.isolated)
        reserved = format_cpulist(ctx.cpus.reserved)
        topology = ctx.topology
        # In the order apply needs: housekeeping confined before the partition claims its CPUs
        # (a v2 partition must not overlap its siblings), threads moved last.
        if topology.cpuset_cgroup == "v2":
            yield ctx.setting(self.name, CONTROLLER_KEY, "on", FIELD)
        if topology.cpuset_cgroup == "v2" and topology.systemd:
            for unit in HOUSEKEEPING_SLICES:
                yield ctx.setting(self.name, slice_key(unit), reserved, FIELD)
        if topology.cpuset_cgroup == "v1":
            yield ctx.setting(self.name, OTHERS_KEY, reserved, FIELD)
            yield ctx.setting(self.name, HOUSEKEEPING_KEY, reserved, FIELD)
            yield ctx.setting(self.name, ROOT_BALANCE_KEY, "0", FIELD)
        yield ctx.setting(self.name, PARTITION_KEY, f"{isolated} {ISOLATED}", FIELD)
        yield ctx.setting(self.name, EFFECTIVE_KEY, isolated, FIELD, effect=True)
        yield ctx.setting(self.name, TASKS_KEY, reserved, FIELD)

    def observe(self, setting: Setting, readings: Readings, topology: Topology) -> Observation:
        version = topology.cpuset_cgroup
        if version is None:
            return Observation(None, "unsupported", NO_CPUSET)
        key = setting.key
        if key == PARTITION_KEY:
            return Observation(partition_state(version, readings))
        if key == EFFECTIVE_KEY:
            base = cgroup_layout.partition(version)
            effective = readings.first_line(f"{base}/{cgroup_layout.EFFECTIVE_CPUS[version]}")
            return Observation(_cpus_text(effective))
        if key == HOUSEKEEPING_KEY:
            return Observation(
                _cpus_text(readings.first_line(f"{cgroup_layout.V1_HOUSEKEEPING}/cpuset.cpus"))
            )
        if key == ROOT_BALANCE_KEY:
            return Observation(
                readings.first_line(f"{cgroup_layout.V1_ROOT}/cpuset.sched_load_balance")
            )
        if key == TASKS_KEY:
            return self._tasks(setting, readings)
        if key == CONTROLLER_KEY:
            enabled = (readings.first_line(SUBTREE_CONTROL) or "").split()
            return Observation("on" if "cpuset" in enabled else "off")
        if key == OTHERS_KEY:
            others = other_cpusets(readings)
            if not others:
                return Observation("", reason="no other cpuset")
            return Observation(format_others(others))
        match = _SLICE_KEY.match(key)
        if match is None:
            return Observation(None, "missing", f"{key} is not a key quietcore knows")
        unit = match.group(1)
        if not topology.systemd:
            return Observation(None, "unsupported", NO_SYSTEMD_SLICE.format(unit=unit))
        cpus = _cpus_text(readings.first_line(slice_cpus_file(unit)))
        if not cpus:
            # No cpuset.cpus (the controller is off for it) or an empty one: no restriction.
            return Observation("", reason=f"{unit} may use every CPU of its parent")
        return Observation(cpus)

    @staticmethod
    def _tasks(setting: Setting, readings: Readings) -> Observation:
        outside = movable_outside(threads(readings))
        if not outside:
            return Observation(None, "unsupported", "no thread's allowed CPUs could be read")
        if "@" in setting.desired:  # a snapshot's placement: matches() compares per thread
            before = parse_placement(setting.desired)
            # Threads younger than the snapshot reuse its TIDs; they are not its threads.
            outside = same_threads(outside, placement_limit(setting.desired))
            actual = format_placement(outside)
            moved = [t for t in outside if t.tid in before and before[t.tid] != t.allowed]
            if not moved:
                return Observation(actual)
            shown = ", ".join(
                f"{t.tid} ({t.comm}) on {format_cpulist(t.allowed)}, was "
                f"{format_cpulist(before[t.tid])}"
                for t in moved[:SHOWN_OFFENDERS]
            )
            return Observation(actual, reason=f"{len(moved)} thread(s) moved: {shown}")
        actual = format_placement(outside)
        allowed = parse_cpulist(setting.desired)
        offenders = _offenders(outside, allowed)
        if offenders:
            return Observation(actual, reason=_offender_reason(offenders, allowed))
        return Observation(actual, reason=f"{len(outside)} movable threads, all within")

    def matches(self, setting: Setting, actual: str) -> bool:
        if setting.key == OTHERS_KEY:
            return _confined_or_restored(parse_others(actual), setting.desired, parse_others)
        if setting.key == TASKS_KEY:
            return _confined_or_restored(parse_placement(actual), setting.desired, parse_placement)
        return setting.desired == actual

    def restore_rank(self, key: str) -> int:
        # Cgroups go first (leaving one resets its threads' affinity), then the root's
        # balancing, then each thread's own CPUs.
        # Other cpusets get their CPUs back only once the exclusive partition is gone.
        return {ROOT_BALANCE_KEY: 1, OTHERS_KEY: 1, CONTROLLER_KEY: 1, TASKS_KEY: 2}.get(key, 0)

    def steps_to_set(
        self, key: str, value: str | None, readings: Readings, topology: Topology
    ) -> tuple[Step, ...]:
        version = topology.cpuset_cgroup
        if version is None:
            return ()
        if key == PARTITION_KEY:
            return _partition_steps(version, value, topology)
        if key == EFFECTIVE_KEY:
            return ()
        if key == HOUSEKEEPING_KEY:
            return _housekeeping_steps(value, topology)
        if key == ROOT_BALANCE_KEY:
            if value not in ("0", "1"):
                return ()
            return (Write(f"{cgroup_layout.V1_ROOT}/cpuset.sched_load_balance", value),)
        if key == TASKS_KEY:
            return _task_steps(version, value, readings)
        if key == OTHERS_KEY:
            return _others_steps(value, other_cpusets(readings))
        if key == CONTROLLER_KEY:
            if value not in ("on", "off"):
                return ()
            return (Write(SUBTREE_CONTROL, "+cpuset" if value == "on" else "-cpuset"),)
        match = _SLICE_KEY.match(key)
        if match is None or match.group(1) not in HOUSEKEEPING_SLICES:
            raise UnsafeStepError(f"refusing cpuset key {key!r}: not one quietcore knows")
        if value is None:
            return ()
        cpus = format_cpulist(step_cpus(value, key, allow_empty=True))
        # --runtime: gone at reboot like the partition; the boot script sets both again.
        argv = ("systemctl", "set-property", "--runtime", match.group(1), f"AllowedCPUs={cpus}")
        return (Run(argv, systemd_only=True),)


def _partition_steps(
    version: CgroupVersion, value: str | None, topology: Topology
) -> tuple[Step, ...]:
    base = cgroup_layout.partition(version)
    if value is None:
        return (RemoveCgroup(base, cgroup_layout.root(version)),)
    cpus_text, _, state = value.partition(" ")
    cpus = format_cpulist(step_cpus(cpus_text, PARTITION_KEY))
    if state != ISOLATED:
        raise UnsafeStepError(
            f"refusing partition state {state!r}: quietcore only makes {ISOLATED}"
        )
    if version == "v2":
        return (
            Run(("mkdir", "-p", base)),
            Write(f"{base}/cpuset.cpus", cpus),
            Write(f"{base}/cpuset.cpus.partition", ISOLATED),
        )
    return (
        Run(("mkdir", "-p", base)),
        Write(f"{base}/cpuset.cpus", cpus),
        Write(f"{base}/cpuset.mems", _all_mems(topology)),
        Write(f"{base}/cpuset.cpu_exclusive", "1"),
        Write(f"{base}/cpuset.sched_load_balance", "0"),
    )


def _housekeeping_steps(value: str | None, topology: Topology) -> tuple[Step, ...]:
    base = cgroup_layout.V1_HOUSEKEEPING
    if value is None:
        return (RemoveCgroup(base, cgroup_layout.V1_ROOT),)
    cpus = format_cpulist(step_cpus(value, HOUSEKEEPING_KEY))
    return (
        Run(("mkdir", "-p", base)),
        Write(f"{base}/cpuset.cpus", cpus),
        Write(f"{base}/cpuset.mems", _all_mems(topology)),
    )


def _others_steps(value: str | None, now: Mapping[str, CpuSet]) -> tuple[Step, ...]:
    """Confine (deepest first: a v1 child must stay within its parent) or restore (shallowest
    first) the other cpusets' CPUs."""
    if not value:
        return ()
    try:
        wanted: dict[str, CpuSet]
        if "=" in value:
            wanted = {path: cpus for path, cpus in parse_others(value).items() if path in now}
            order = sorted(wanted, key=lambda path: path.count("/"))
        else:
            allowed = step_cpus(value, OTHERS_KEY)
            # A cpuset only on isolated CPUs would be left with none: give it the reserved ones.
            wanted = {path: (cpus & allowed) or allowed for path, cpus in now.items()}
            order = sorted(wanted, key=lambda path: -path.count("/"))
    except (ValueError, CpuSetError) as error:
        raise UnsafeStepError(f"refusing {OTHERS_KEY} {value!r}: {error}") from None
    root = cgroup_layout.V1_ROOT
    return tuple(
        Write(f"{root}{path}/cpuset.cpus", format_cpulist(wanted[path]))
        for path in order
        if wanted[path] != now[path]
    )


def _task_steps(version: CgroupVersion, value: str | None, readings: Readings) -> tuple[Step, ...]:
    if value is None:
        return ()
    if "@" not in value:
        join = cgroup_layout.V1_HOUSEKEEPING if version == "v1" else None
        cpus = format_cpulist(step_cpus(value, TASKS_KEY))
        return (ConfineTasks(cpus, cgroup_layout.PARTITION_CGROUP, join),)
    try:
        placement = parse_placement(value)
    except (ValueError, CpuSetError) as error:
        raise UnsafeStepError(f"refusing thread placement for {TASKS_KEY}: {error}") from None
    # Only the snapshot's own threads that still run: not a later thread that took a TID.
    alive = {t.tid for t in same_threads(threads(readings), placement_limit(value))}
    return tuple(_pins({tid: cpus for tid, cpus in placement.items() if tid in alive}))


def _pins(placement: Mapping[int, CpuSet]) -> Iterator[PinTasks]:
    groups: dict[str, list[int]] = {}
    for tid, cpus in sorted(placement.items()):
        groups.setdefault(format_cpulist(cpus), []).append(tid)
    for cpu_list, tids in sorted(groups.items()):
        # Bounded batches keep each shell line far below the kernel's argument limits.
        for start in range(0, len(tids), 500):
            yield PinTasks(cpu_list, tuple(tids[start : start + 500]))
