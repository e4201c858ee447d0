"""NUMA placement and limits of systemd units: ``numa.services`` and ``containers.slices``.

Each declared unit (a service such as ``md-feed.service``, or a container runtime's slice such
as ``machine.slice`` or ``kubepods.slice``) gets quietcore's drop-in
``/etc/systemd/system/<unit>.d/90-quietcore.conf``. Keys, as ``systemctl show`` names them:

- ``units/<unit>/AllowedCPUs`` (``cpus``), ``units/<unit>/AllowedMemoryNodes`` (``mem_nodes``;
  ``local`` = the NUMA nodes of ``cpus``), ``units/<unit>/MemoryMax`` (``memory_max``, bytes or
  ``infinity``), ``units/<unit>/CPUWeight`` (``cpu_weight``): resource control, written to the
  unit's cgroup. systemd re-applies them to a running unit's cgroup at ``daemon-reload``
  (checked on Debian 12's systemd 252: cpuset.cpus, cpuset.mems, memory.max and cpu.weight
  change at once, and go back when the drop-in is removed and systemd reloads again).
- services only: ``units/<unit>/NUMAPolicy`` (``numa_policy``), ``units/<unit>/NUMAMask``
  (``mem_nodes``, for bind, preferred and interleave), ``units/<unit>/LimitMEMLOCK``
  (``memlock``, soft = hard): set on the service's processes when systemd starts them, so
  they reach a running service only at its next (re)start. quietcore never restarts a
  service behind the operator's back: the effect keys below say when a restart is due.
  With ``numa_policy: preferred`` the node is a preference, so it is not made a hard
  ``AllowedMemoryNodes`` limit (that would turn it into bind).

Effects (read, never set): ``units/<unit>/cgroup/cpuset.cpus.effective``,
``.../cgroup/cpuset.mems.effective``, ``.../cgroup/memory.max`` (page-rounded by the kernel),
``.../cgroup/cpu.weight`` from the unit's cgroup (cgroup v2); and for services
``units/<unit>/process/numa_policy`` (the main process's policy as ``/proc/PID/numa_maps``
prints it, e.g. ``bind:1``; its first mapping carries the task policy) and
``units/<unit>/process/memlock`` (``/proc/PID/limits``).

Everything is read by one command per unit, built from the schema-validated unit name
(checked again here, and quoted): ``systemctl show`` of the properties above, then the files
of the ``ControlGroup`` it names, then the main process's policy and limit. A host whose PID 1
is not systemd has no units: every key is ``unsupported`` there.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from quietcore.cgroup_layout import HOUSEKEEPING_SLICES
from quietcore.knobs.base import KnobFamily, Observation, ResolveContext, Setting
from quietcore.knobs.node_check import NOT_MOUNTED
from quietcore.placement import place
from quietcore.profile.cpuset import CpuSetError, format_cpulist, parse_cpulist
from quietcore.profile.errors import ResolveError
from quietcore.profile.schema import (
    INFINITY,
    POLICIES_WITH_NODES,
    Profile,
    ServiceRule,
    SliceRule,
    limit_bytes,
)
from quietcore.readings import SAFE_NAME, Readings, ReadSpec
from quietcore.steps import ManagedFile, Run, UnsafeStepError
from quietcore.topology import Topology

PREFIX = "units/"
DROP_IN_DIR = "/etc/systemd/system"
DROP_IN_NAME = "90-quietcore.conf"
DROP_IN_GLOB = f"{DROP_IN_DIR}/*.d/{DROP_IN_NAME}"
# What the unit name may be here, whatever the schema said: it reaches a path and a command.
UNIT_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,250}\.(?:service|slice)$")
DAEMON_RELOAD = Run(("systemctl", "daemon-reload"), systemd_only=True)
# A second reload, spelled differently so that activations run once each still run it: on
# systemd 252 (Debian 12, the lab) removing the drop-ins of a service *and* of a top-level
# slice in one reload left the root cgroup's cpuset and cpu controllers enabled, so the slice
# kept its AllowedCPUs and CPUWeight in the kernel; the next reload recomputes the masks.
SETTLE = Run(("systemctl", "--quiet", "daemon-reload"), systemd_only=True)

CPUS, NODES, BYTES, WEIGHT, POLICY = "cpus", "nodes", "bytes", "weight", "policy"
# systemd property -> (kind of value, effect key suffix or None). Order = the drop-in's.
PROPERTIES: dict[str, tuple[str, str | None]] = {
    "AllowedCPUs": (CPUS, "cgroup/cpuset.cpus.effective"),
    "AllowedMemoryNodes": (NODES, "cgroup/cpuset.mems.effective"),
    "MemoryMax": (BYTES, "cgroup/memory.max"),
    "CPUWeight": (WEIGHT, "cgroup/cpu.weight"),
    "NUMAPolicy": (POLICY, "process/numa_policy"),
    "NUMAMask": (NODES, None),  # part of process/numa_policy
    "LimitMEMLOCK": (BYTES, "process/memlock"),
}
CGROUP_PROPERTIES = ("AllowedCPUs", "AllowedMemoryNodes", "MemoryMax", "CPUWeight")
EXEC_PROPERTIES = ("NUMAPolicy", "NUMAMask", "LimitMEMLOCK")
CGROUP_FILES = ("cpuset.cpus.effective", "cpuset.mems.effective", "memory.max", "cpu.weight")
SHOWN = (
    "Id",
    "LoadState",
    "ActiveState",
    "ControlGroup",
    "MainPID",
    *PROPERTIES,
    "LimitMEMLOCKSoft",
)
# systemd's words for "not set" -> canonical "".
NOT_SET = {"", "n/a", "[not set]"}
# NUMAPolicy= word -> the kernel's name for it in /proc/PID/numa_maps (mpol_to_str).
KERNEL_POLICY = {
    "default": "default",
    "preferred": "prefer",
    "bind": "bind",
    "interleave": "interleave",
    "local": "local",
}
RESTART_NOTE = "quietcore does not restart services: it takes effect when {unit} next starts"
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")
_NUMBER = re.compile(r"^[0-9]+$")


# --- Reading ----------------------------------------------------------------------------------


def command_name(unit: str) -> str:
    """The bundle command that reads ``unit``: readable where the name allows it."""
    readable = f"unit-{unit}"
    if SAFE_NAME.fullmatch(readable):
        return readable
    return "unit-" + hashlib.sha256(unit.encode()).hexdigest()[:16]


def state_shell(unit: str) -> str:
    """Prints ``init=``, ``cgroup=``, the unit's properties (``Name=value``), its cgroup files
    (``cgroup:FILE=value``) and its main process's policy and limit (``process:...``)."""
    if not UNIT_NAME.fullmatch(unit):
        raise UnsafeStepError(f"refusing unit name {unit!r}")
    name = shlex.quote(unit)
    files = " ".join(CGROUP_FILES)
    return (
        "if [ -d /run/systemd/system ]; then echo init=systemd;"
        " if [ -f /sys/fs/cgroup/cgroup.controllers ]; then echo cgroup=v2;"
        " else echo cgroup=v1; fi;"
        f" show=$(systemctl show -p {','.join(SHOWN)} -- {name}); printf '%s\\n' \"$show\";"
        " cg=$(printf '%s\\n' \"$show\" | sed -n 's/^ControlGroup=//p');"
        " pid=$(printf '%s\\n' \"$show\" | sed -n 's/^MainPID=//p');"
        ' if [ -n "$cg" ] && [ -d "/sys/fs/cgroup$cg" ]; then'
        f' for f in {files}; do [ -r "/sys/fs/cgroup$cg/$f" ] &&'
        ' echo "cgroup:$f=$(cat "/sys/fs/cgroup$cg/$f")"; done; fi;'
        ' if [ "${pid:-0}" -gt 0 ] 2>/dev/null; then echo "process:pid=$pid";'
        ' echo "process:numa_maps=$(head -n 1 "/proc/$pid/numa_maps" 2>/dev/null)";'
        ' echo "process:limits=$(grep \'^Max locked memory\' "/proc/$pid/limits" 2>/dev/null)";'
        ' fi; else echo "init=$(cat /proc/1/comm 2>/dev/null)"; fi; true'
    )


@dataclass(frozen=True)
class UnitState:
    """One unit as its read command saw it."""

    init: str  # "systemd", or PID 1's name
    cgroup_v2: bool
    properties: dict[str, str]
    cgroup: dict[str, str]  # file name -> first line
    pid: int | None
    numa_maps: str  # the main process's first numa_maps line, "" when unread
    memlock: str | None  # the main process's limit, canonical; None when unread

    @property
    def loaded(self) -> str:
        return self.properties.get("LoadState", "")

    @property
    def active(self) -> str:
        return self.properties.get("ActiveState", "")


def parse_state(lines: Iterable[str]) -> UnitState:
    values: dict[str, str] = {}
    cgroup: dict[str, str] = {}
    process: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition("=")
        if not sep:
            continue
        if name.startswith("cgroup:"):
            cgroup[name.removeprefix("cgroup:")] = value.strip()
        elif name.startswith("process:"):
            process[name.removeprefix("process:")] = value
        else:
            values.setdefault(name, value)
    pid = process.get("pid", "")
    return UnitState(
        init=values.pop("init", ""),
        cgroup_v2=values.pop("cgroup", "") == "v2",
        properties=values,
        cgroup=cgroup,
        pid=int(pid) if _NUMBER.fullmatch(pid) else None,
        numa_maps=process.get("numa_maps", ""),
        memlock=_limits_memlock(process["limits"]) if process.get("limits") else None,
    )


def unit_state(readings: Readings, unit: str) -> UnitState | None:
    result = readings.command(command_name(unit))
    return None if result is None else parse_state(result.lines)


def _limit_word(word: str) -> str:
    return INFINITY if word in ("unlimited", INFINITY) else word


def _limits_memlock(line: str) -> str | None:
    """``Max locked memory  8388608  8388608  bytes`` -> ``8388608``; ``soft:hard`` when
    they differ."""
    words = line.removeprefix("Max locked memory").split()
    if len(words) < 2:
        return None
    soft, hard = _limit_word(words[0]), _limit_word(words[1])
    return hard if soft == hard else f"{soft}:{hard}"


def canonical(name: str, raw: str) -> str:
    """A ``systemctl show`` value in the form ``desired`` uses; "" when not set. Unparsable
    text is returned as it is (it then differs from any desired value)."""
    value = raw.strip()
    if value in NOT_SET:
        return ""
    kind = PROPERTIES[name][0] if name in PROPERTIES else ""
    if kind in (CPUS, NODES):
        try:
            return format_cpulist(parse_cpulist(",".join(value.split())))
        except CpuSetError:
            return value
    return value


def kernel_policy(text: str) -> str:
    """A numa_maps policy word (``bind:0-1``, ``prefer:1``, ``local``) with its node list
    canonical; mode flags (``=static``) kept as the kernel printed them."""
    mode, sep, nodes = text.partition(":")
    if not sep:
        return mode
    try:
        return f"{mode}:{format_cpulist(parse_cpulist(nodes))}"
    except CpuSetError:
        return text


# --- Keys ---------------------------------------------------------------------------------------


def split_key(key: str) -> tuple[str, str]:
    """``units/md.service/cgroup/memory.max`` -> (``md.service``, ``cgroup/memory.max``)."""
    unit, _, rest = key.removeprefix(PREFIX).partition("/")
    return unit, rest


def drop_in_path(unit: str) -> str:
    if not UNIT_NAME.fullmatch(unit):
        raise UnsafeStepError(f"refusing unit name {unit!r}")
    return f"{DROP_IN_DIR}/{unit}.d/{DROP_IN_NAME}"


def _bytes_text(limit: str) -> str:
    value = limit_bytes(limit)
    return INFINITY if value is None else str(value)


def _desired_policy(policy: str, nodes: str) -> str:
    kernel = KERNEL_POLICY[policy]
    return f"{kernel}:{nodes}" if policy in POLICIES_WITH_NODES else kernel


def unit_values(
    rule: ServiceRule | SliceRule, ctx: ResolveContext, field: str
) -> list[tuple[str, str, str]]:
    """(property, canonical value, profile field) of everything ``rule`` declares."""
    spot = place(
        rule.cpus,
        rule.mem_nodes,
        profile=ctx.profile,
        plan=ctx.cpus,
        topology=ctx.topology,
        field=field,
    )
    policy = rule.numa_policy if isinstance(rule, ServiceRule) else None
    values: list[tuple[str, str, str]] = []
    if spot.cpus is not None:
        values.append(("AllowedCPUs", format_cpulist(spot.cpus), f"{field}.cpus"))
    if spot.mem_nodes is not None:
        nodes = format_cpulist(spot.mem_nodes)
        if policy == "preferred" and len(spot.mem_nodes) > 1:
            raise ResolveError(
                f"{field}.mem_nodes",
                f"numa_policy preferred takes one node, and these are nodes {nodes}",
            )
        if policy != "preferred":  # a preference, not a hard limit
            values.append(("AllowedMemoryNodes", nodes, f"{field}.mem_nodes"))
        if policy in POLICIES_WITH_NODES:
            values.append(("NUMAMask", nodes, f"{field}.mem_nodes"))
    if rule.memory_max is not None:
        values.append(("MemoryMax", _bytes_text(rule.memory_max), f"{field}.memory_max"))
    if rule.cpu_weight is not None:
        values.append(("CPUWeight", str(rule.cpu_weight), f"{field}.cpu_weight"))
    if isinstance(rule, ServiceRule):
        if policy is not None:
            values.append(("NUMAPolicy", policy, f"{field}.numa_policy"))
        if rule.memlock is not None:
            values.append(("LimitMEMLOCK", _bytes_text(rule.memlock), f"{field}.memlock"))
    order = list(PROPERTIES)
    return sorted(values, key=lambda value: order.index(value[0]))


def declared_units(profile: Profile) -> list[tuple[str, ServiceRule | SliceRule, str]]:
    """(unit, rule, profile field) of every declared unit."""
    rules: list[tuple[str, ServiceRule | SliceRule, str]] = [
        (rule.unit, rule, f"numa.services.{index}")
        for index, rule in enumerate(profile.numa.services)
    ]
    rules += [
        (rule.unit, rule, f"containers.slices.{index}")
        for index, rule in enumerate(profile.containers.slices)
    ]
    return rules


# --- Observing ----------------------------------------------------------------------------------


def _cgroup_effect(unit: str, prop: str, state: UnitState) -> Observation:
    file = PROPERTIES[prop][1] or ""
    name = file.removeprefix("cgroup/")
    if not state.properties.get("ControlGroup"):
        return Observation(
            None,
            "unsupported",
            f"{unit} is {state.active or 'not active'}: it has no cgroup now; systemd gives "
            "it these settings when it starts",
        )
    raw = state.cgroup.get(name)
    if raw is None:
        return Observation(
            None,
            reason=f"no {name} in {unit}'s cgroup: systemd has not applied {prop} to it "
            "(was `systemctl daemon-reload` run after the drop-in?)",
        )
    if prop == "MemoryMax":
        return Observation(INFINITY if raw == "max" else raw)
    if prop in ("AllowedCPUs", "AllowedMemoryNodes"):
        return Observation(canonical(prop, raw), reason="granted by the kernel (effective)")
    return Observation(raw)


def _process_effect(unit: str, prop: str, state: UnitState, desired: str) -> Observation:
    if state.pid is None:
        return Observation(
            None,
            "unsupported",
            f"{unit} has no running main process: systemd sets {prop} when it starts one",
        )
    if prop == "NUMAPolicy":
        words = state.numa_maps.split()
        actual = kernel_policy(words[1]) if len(words) > 1 else None
    else:
        actual = state.memlock
    if actual is None:
        return Observation(None, reason=f"PID {state.pid}'s {prop} could not be read")
    if actual == desired:
        return Observation(actual, reason=f"PID {state.pid}")
    return Observation(
        actual, reason=f"PID {state.pid} started with this; " + RESTART_NOTE.format(unit=unit)
    )


def observe_unit(key: str, desired: str, state: UnitState | None) -> Observation:
    """What the host has for one ``units/`` key, given its unit's state."""
    unit, what = split_key(key)
    if state is None:
        return Observation(None, "unsupported", f"{unit}'s state was not read")
    if state.init != "systemd":
        return Observation(
            None, "unsupported", f"PID 1 is {state.init or 'unknown'}, not systemd: no units"
        )
    if state.loaded in ("not-found", "masked"):
        return Observation(None, "missing", f"{unit} is {state.loaded} on this host")
    prop = next((p for p, (_, effect) in PROPERTIES.items() if what in (p, effect)), "")
    if not prop:
        return Observation(None, "unsupported", f"{key}: not a key quietcore knows")
    if prop in CGROUP_PROPERTIES and not state.cgroup_v2:
        return Observation(
            None,
            "unsupported",
            f"systemd applies {prop} only on the unified cgroup hierarchy (v2); this host "
            "runs cgroup v1",
        )
    if what.startswith("cgroup/"):
        return _cgroup_effect(unit, prop, state)
    if what.startswith("process/"):
        return _process_effect(unit, prop, state, desired)
    value = canonical(prop, state.properties.get(prop, ""))
    if prop == "LimitMEMLOCK":
        soft = canonical(prop, state.properties.get("LimitMEMLOCKSoft", value))
        value = value if soft in ("", value) else f"{soft}:{value}"
    reason = "not set" if value == "" else ""
    if prop in EXEC_PROPERTIES:
        reason = "; ".join(filter(None, (reason, RESTART_NOTE.format(unit=unit))))
    return Observation(value, reason=reason)


def _page_rounded(desired: str, actual: str) -> bool:
    """memory.max is kept in pages: the kernel rounds a byte limit down to its page size
    (4 KiB to 64 KiB depending on the architecture)."""
    if not (_NUMBER.fullmatch(desired) and _NUMBER.fullmatch(actual)):
        return desired == actual
    return 0 <= int(desired) - int(actual) < 64 * 1024


# --- Rendering ----------------------------------------------------------------------------------


def _checked_value(prop: str, value: str) -> str:
    """``value`` as it may appear after ``prop=`` in a unit file; refused otherwise."""
    kind = PROPERTIES[prop][0]
    ok = False
    if kind in (CPUS, NODES):
        try:
            ok = bool(parse_cpulist(value)) and format_cpulist(parse_cpulist(value)) == value
        except CpuSetError:
            ok = False
    elif kind == BYTES:
        ok = value == INFINITY or bool(_NUMBER.fullmatch(value))
    elif kind == WEIGHT:
        ok = bool(_NUMBER.fullmatch(value)) and 1 <= int(value) <= 10000
    elif kind == POLICY:
        ok = value in KERNEL_POLICY
    if not ok:
        raise UnsafeStepError(f"refusing {prop}={value!r}")
    return value


def render_drop_in(unit: str, settings: Sequence[Setting]) -> str:
    section = "Service" if unit.endswith(".service") else "Slice"
    by_property = {split_key(setting.key)[1]: setting for setting in settings}
    lines = [
        "# Owned by quietcore: rendered in full at every apply, edits here are overwritten;",
        "# `quietcore rollback` removes this file and runs `systemctl daemon-reload`.",
        "# systemd applies AllowedCPUs, AllowedMemoryNodes, MemoryMax and CPUWeight to the",
        "# running unit at daemon-reload; NUMAPolicy, NUMAMask and LimitMEMLOCK when the",
        "# service next starts (quietcore does not restart it).",
    ]
    body = []
    for prop in PROPERTIES:
        setting = by_property.get(prop)
        if setting is None:
            continue
        where = _UNPRINTABLE.sub("?", f"{setting.field} ({setting.source or 'source unknown'})")
        lines.append(f"# {prop} from {where}")
        body.append(f"{prop}={_checked_value(prop, setting.desired)}")
    return "\n".join([*lines, f"[{section}]", *body]) + "\n"


class UnitsKnob(KnobFamily):
    name = "units"
    unchecked_on_node = f"systemd units' properties (systemctl): {NOT_MOUNTED}"
    managed_paths = (DROP_IN_GLOB,)

    def reads(self, profile: Profile) -> ReadSpec:
        units = [unit for unit, _, _ in declared_units(profile)]
        return ReadSpec(commands=tuple((command_name(unit), state_shell(unit)) for unit in units))

    def desired(self, ctx: ResolveContext) -> Iterable[Setting]:
        for unit, rule, field in declared_units(ctx.profile):
            if (
                isinstance(rule, SliceRule)
                and unit in HOUSEKEEPING_SLICES
                and "cpuset" in ctx.profile.cpu.isolation
            ):
                raise ResolveError(
                    f"{field}.unit",
                    f"cpu.isolation (cpuset) already confines {unit} to the reserved CPUs",
                )
            values = unit_values(rule, ctx, field)
            policy = {prop: value for prop, value, _ in values}
            for prop, value, source_field in values:
                key = f"{PREFIX}{unit}/{prop}"
                yield ctx.setting(self.name, key, value, source_field)
                effect = PROPERTIES[prop][1]
                if effect is None:
                    continue
                desired = value
                if prop == "NUMAPolicy":
                    desired = _desired_policy(value, policy.get("NUMAMask", ""))
                yield ctx.setting(
                    self.name, f"{PREFIX}{unit}/{effect}", desired, source_field, effect=True
                )

    def observe(self, setting: Setting, readings: Readings, topology: Topology) -> Observation:
        state = unit_state(readings, split_key(setting.key)[0])
        return observe_unit(setting.key, setting.desired, state)

    def matches(self, setting: Setting, actual: str) -> bool:
        if setting.key.endswith("/cgroup/memory.max"):
            return _page_rounded(setting.desired, actual)
        return setting.desired == actual

    def native_files(
        self, settings: Sequence[Setting], readings: Readings, topology: Topology
    ) -> tuple[ManagedFile, ...]:
        by_unit: dict[str, list[Setting]] = {}
        for setting in settings:
            if not setting.effect:
                by_unit.setdefault(split_key(setting.key)[0], []).append(setting)
        return tuple(
            ManagedFile(
                drop_in_path(unit),
                render_drop_in(unit, own),
                self.name,
                activate=(DAEMON_RELOAD, SETTLE),
            )
            for unit, own in by_unit.items()
        )
