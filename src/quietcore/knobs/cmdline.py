"""Kernel command-line arguments, and the isolation they are meant to produce.

Keys ``cmdline/<argument name>`` hold whole arguments (``skew_tick=1``, ``nosoftlockup``,
``isolcpus=managed_irq,domain,2-7``): the profile's ``kernel.cmdline`` entries, the isolation
arguments derived from ``cpu.isolation`` and the isolated CPUs, and ``default_hugepagesz``.
The actual value is the argument's last occurrence in ``/proc/cmdline``, because that is the
one the kernel applies. An argument on the command line proves nothing by itself, so the
effect is checked too: ``isolation/isolated`` against ``/sys/devices/system/cpu/isolated`` and
``isolation/nohz_full`` against ``/sys/devices/system/cpu/nohz_full``. Everything here takes
effect only at boot.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from quietcore.knobs.base import (
    KnobFamily,
    Observation,
    ResolveContext,
    Setting,
    cpuset_observation,
)
from quietcore.profile.cpuset import CpuSet, format_cpulist, parse_cpulist
from quietcore.profile.errors import ResolveError
from quietcore.profile.schema import CpuSection, Profile
from quietcore.readings import Readings, ReadSpec
from quietcore.topology import Topology

PROC_CMDLINE = "/proc/cmdline"
CPU_ISOLATED = "/sys/devices/system/cpu/isolated"
CPU_NOHZ_FULL = "/sys/devices/system/cpu/nohz_full"

# Arguments whose value is a CPU list: ``nohz_full=2-3`` equals ``nohz_full=2,3``.
CPULIST_ARGUMENTS = frozenset({"nohz_full", "rcu_nocbs", "irqaffinity", "kthread_cpus"})
# Arguments whose value is a size: ``default_hugepagesz=1G`` equals ``=1024M``.
SIZE_ARGUMENTS = frozenset({"default_hugepagesz"})
# isolcpus without flags means ``domain`` (kernel/sched/isolation.c).
DEFAULT_ISOLCPUS_FLAGS = frozenset({"domain"})

_MEMPARSE = re.compile(r"^(\d+)([KMGTPE]?)$", re.IGNORECASE)
_END_OF_KERNEL_ARGUMENTS = "--"


# --- Parsing /proc/cmdline and argument values (pure) -----------------------------------------


def kernel_arguments(cmdline: str) -> list[str]:
    """The kernel's arguments in ``cmdline``, in order, quotes removed.

    Whitespace separates arguments except inside double quotes (``acpi_osi="!Windows 2012"``),
    and a lone ``--`` ends the kernel's part: what follows is passed to init.
    """
    arguments: list[str] = []
    word: list[str] = []
    quoted = False
    for char in cmdline + " ":
        if char == '"':
            quoted = not quoted
        elif char.isspace() and not quoted:
            if word:
                argument = "".join(word)
                if argument == _END_OF_KERNEL_ARGUMENTS:
                    break
                arguments.append(argument)
                word = []
        else:
            word.append(char)
    return arguments


def argument_name(argument: str) -> str:
    return argument.partition("=")[0]


def last_argument(arguments: Iterable[str], name: str) -> str | None:
    """The last argument called ``name``, or ``None``: the kernel applies the last one."""
    found = None
    for argument in arguments:
        if argument_name(argument) == name:
            found = argument
    return found


def effective_isolcpus_flags(flags: Iterable[str]) -> frozenset[str]:
    return frozenset(flags) or DEFAULT_ISOLCPUS_FLAGS


def isolcpus_value(value: str) -> tuple[frozenset[str], CpuSet]:
    """``managed_irq,domain,2-7`` -> ({managed_irq, domain}, {2..7}); leading words are flags."""
    items = value.split(",")
    flags = []
    while items and items[0][:1].isalpha():
        flags.append(items.pop(0))
    return effective_isolcpus_flags(flags), parse_cpulist(",".join(items))


def memparse(text: str) -> int:
    """Bytes in a kernel size argument (``1G``, ``2048k``, ``1073741824``)."""
    match = _MEMPARSE.match(text)
    if not match:
        raise ValueError(f"not a size: {text!r}")
    exponent = " KMGTPE".index(match.group(2).upper() or " ")
    return int(match.group(1)) << (10 * exponent)


def _same_value(name: str, desired: str, actual: str) -> bool:
    try:
        if name == "isolcpus":
            return isolcpus_value(desired) == isolcpus_value(actual)
        if name in CPULIST_ARGUMENTS:
            return parse_cpulist(desired) == parse_cpulist(actual)
        if name in SIZE_ARGUMENTS:
            return memparse(desired) == memparse(actual)
    except ValueError:  # CpuSetError included: a value the kernel would not parse either
        return False
    return desired == actual


def same_argument(desired: str, actual: str) -> bool:
    """Whether two arguments mean the same: CPU lists as sets, sizes as bytes, else text."""
    name, has_value, desired_value = desired.partition("=")
    actual_name, actual_has_value, actual_value = actual.partition("=")
    if name != actual_name or has_value != actual_has_value:
        return False
    return _same_value(name, desired_value, actual_value)


# --- What a profile declares -------------------------------------------------------------------


ISOLATED_KEY = "isolation/isolated"
NOHZ_FULL_KEY = "isolation/nohz_full"
# Effect check key -> (sysfs file, why that file may not exist on a host).
_EFFECT_FILES = {
    ISOLATED_KEY: (CPU_ISOLATED, "this kernel does not report isolated CPUs"),
    NOHZ_FULL_KEY: (CPU_NOHZ_FULL, "kernel built without NO_HZ_FULL (no tickless CPUs possible)"),
}


def _effect_checks(cpu: CpuSection) -> dict[str, str]:
    """Effect check key -> the profile field that asks for it.

    ``isolated`` lists only domain-isolated CPUs, so it is checked only when isolcpus has the
    ``domain`` flag; ``nohz_full`` follows both ``nohz_full=`` and ``isolcpus=nohz,...``.
    """
    checks = {}
    methods = list(cpu.isolation)
    if "isolcpus" in methods and "domain" in effective_isolcpus_flags(cpu.isolcpus_flags):
        checks[ISOLATED_KEY] = f"cpu.isolation.{methods.index('isolcpus')}"
    if "nohz_full" in methods:
        checks[NOHZ_FULL_KEY] = f"cpu.isolation.{methods.index('nohz_full')}"
    elif "nohz" in cpu.isolcpus_flags:
        checks[NOHZ_FULL_KEY] = f"cpu.isolcpus_flags.{cpu.isolcpus_flags.index('nohz')}"
    return checks


def _declares_arguments(profile: Profile) -> bool:
    return bool(profile.kernel.cmdline or profile.cpu.isolation or profile.hugepages.default_size)


def _declared_arguments(profile: Profile, isolated: CpuSet) -> Iterator[tuple[str, str]]:
    """(argument, profile field) for every kernel argument the profile implies."""
    for index, argument in enumerate(profile.kernel.cmdline):
        yield argument, f"kernel.cmdline.{index}"
    cpu = profile.cpu
    cpus = format_cpulist(isolated)
    for index, method in enumerate(cpu.isolation):
        value = ",".join([*cpu.isolcpus_flags, cpus]) if method == "isolcpus" else cpus
        yield f"{method}={value}", f"cpu.isolation.{index}"
    if profile.hugepages.default_size is not None:
        yield f"default_hugepagesz={profile.hugepages.default_size}", "hugepages.default_size"


class CmdlineKnob(KnobFamily):
    name = "cmdline"

    def reads(self, profile: Profile) -> ReadSpec:
        files = [PROC_CMDLINE] if _declares_arguments(profile) else []
        files += [_EFFECT_FILES[key][0] for key in _effect_checks(profile.cpu)]
        return ReadSpec(files=tuple(files))

    def desired(self, ctx: ResolveContext) -> Iterable[Setting]:

        by_name: dict[str, Setting] = {}
        for argument, field in _declared_arguments(ctx.profile, ctx.cpus.isolated):
            name = argument_name(argument)
            earlier = by_name.get(name)
            if earlier is not None and earlier.desired != argument:
                raise ResolveError(
                    field,
                    f"{argument} contradicts {earlier.desired} from {earlier.field}; "
                    "the kernel would use only the last of them",
                )
            if earlier is None:
                key = f"{self.name}/{name}"
                by_name[name] = ctx.setting(self.name, key, argument, field, reboot=True)
        isolated = format_cpulist(ctx.cpus.isolated)
        effects = [
            ctx.setting(self.name, key, isolated, field, reboot=True)
            for key, field in _effect_checks(ctx.profile.cpu).items()
        ]
        return [*by_name.values(), *effects]

    def observe(self, setting: Setting, readings: Readings, topology: Topology) -> Observation:
        if setting.key in _EFFECT_FILES:
            path, absent = _EFFECT_FILES[setting.key]
            return cpuset_observation(readings.first_line(path), absent, parse_cpulist)
        cmdline = readings.text(PROC_CMDLINE)
        if cmdline is None:
            return Observation(None, "unsupported", f"{PROC_CMDLINE} could not be read")
        name = setting.key.removeprefix(f"{self.name}/")
        argument = last_argument(kernel_arguments(cmdline), name)
        if argument is None:
            return Observation(None, reason="not on the running kernel's command line")
        return Observation(argument)

    def matches(self, setting: Setting, actual: str) -> bool:
        if setting.key in _EFFECT_FILES:
            return super().matches(setting, actual)
        return same_argument(setting.desired, actual)
