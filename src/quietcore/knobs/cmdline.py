"""Kernel command-line arguments, and the isolation they are meant to produce.

Keys ``cmdline/<argument name>`` hold whole arguments (``skew_tick=1``, ``nosoftlockup``,
``isolcpus=managed_irq,domain,2-7``): the profile's ``kernel.cmdline`` entries, the isolation
arguments derived from ``cpu.isolation`` and the isolated CPUs, ``default_hugepagesz``, the
boot-time hugepage pools (``hugepagesz=1G hugepages=1:1``, see ``bypass_resolve``) and, for
``bypass.iommu: passthrough``, ``iommu=pt`` with the vendor's switch (``intel_iommu=on`` or
``amd_iommu=on``, from the host's IOMMU units, else its CPU vendor).
The actual value is the argument's last occurrence in ``/proc/cmdline``, because that is the
one the kernel applies. An argument on the command line proves nothing by itself, so the
effect is checked too: ``isolation/isolated`` against ``/sys/devices/system/cpu/isolated`` and
``isolation/nohz_full`` against ``/sys/devices/system/cpu/nohz_full``. Everything here takes
effect only at boot.

Converging depends on the boot loader, told apart by one constant reading (which of
``update-grub`` and ``grubby`` exist, and whether ``/boot/loader/entries`` does):

- Debian, Ubuntu (GRUB, ``update-grub``): ``/etc/default/grub.d/90-quietcore.cfg`` appends
  every argument to ``GRUB_CMDLINE_LINUX_DEFAULT``. ``grub-mkconfig`` sources it after
  ``/etc/default/grub`` and puts that variable last on the ``linux`` line, so these arguments
  are the last occurrences, the ones the kernel applies. ``update-grub`` activates it.
- RHEL, Fedora (BLS entries, ``grubby``): no file; ``grubby --update-kernel=ALL`` adds each
  argument (replacing one of the same name) or, on rollback of an argument that was absent,
  removes it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence

from quietcore.knobs.base import (
    KnobFamily,
    Observation,
    ResolveContext,
    Setting,
    cpuset_observation,
)
from quietcore.knobs.bypass_resolve import boot_arguments
from quietcore.knobs.node_check import ArgumentValue, NodeCheck
from quietcore.profile.cpuset import CpuSet, format_cpulist, parse_cpulist
from quietcore.profile.errors import ResolveError
from quietcore.profile.schema import CpuSection, Profile
from quietcore.readings import Readings, ReadSpec
from quietcore.steps import ManagedFile, Run, Step, UnsafeStepError
from quietcore.topology import Topology

PROC_CMDLINE = "/proc/cmdline"
CPU_ISOLATED = "/sys/devices/system/cpu/isolated"
CPU_NOHZ_FULL = "/sys/devices/system/cpu/nohz_full"

# Arguments whose value is a CPU list: ``nohz_full=2-3`` equals ``nohz_full=2,3``.
# The isolation method that is no kernel argument: a cgroup partition made at runtime.
RUNTIME_METHOD = "cpuset"
CPULIST_ARGUMENTS = frozenset({"nohz_full", "rcu_nocbs", "irqaffinity", "kthread_cpus"})
# Arguments whose value is a size: ``default_hugepagesz=1G`` equals ``=1024M``.
SIZE_ARGUMENTS = frozenset({"default_hugepagesz", "hugepagesz"})
# ``hugepages=`` counts pages of the ``hugepagesz=`` before it: the drop-in keeps that order.
_FOLLOWS = {"hugepages": "hugepagesz"}
# The argument that switches each vendor's IOMMU on (Debian's default, not every distro's).
IOMMU_SWITCH = {"intel": "intel_iommu=on", "amd": "amd_iommu=on"}
IOMMU_FIELD = "bypass.iommu"
# isolcpus without flags means ``domain`` (kernel/sched/isolation.c).
DEFAULT_ISOLCPUS_FLAGS = frozenset({"domain"})

GRUB_DROP_IN = "/etc/default/grub.d/90-quietcore.cfg"
BOOT_COMMAND = "cmdline-boot"
# Which tools can persist kernel arguments here, and whether the host boots BLS entries.
BOOT_SHELL = (
    'PATH="$PATH:/usr/sbin:/sbin"; for tool in update-grub grubby; do'
    ' command -v "$tool" >/dev/null 2>&1 && echo "tool=$tool"; done;'
    " [ -d /boot/loader/entries ] && echo bls=yes; true"
)
# Argument text that GRUB's shell-sourced configuration, the GRUB script that update-grub
# generates from it, and grubby all take literally: no quotes, '$', backslash, backtick,
# whitespace, ';' or globbing characters; the schema's set plus '@' and '!' (crashkernel=,
# acpi_osi=), which rollback may meet on a host's command line.
_SAFE_ARGUMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.,:=/+@!-]*$")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")
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


# --- The boot loader and safe argument text ---------------------------------------------------


def boot_loader(readings: Readings) -> str | None:
    """``grub`` (update-grub and its drop-in), ``grubby``, or ``None`` (neither, or not read).
    grubby wins where BLS entries exist: there update-grub (if installed at all) is not what
    the host boots from."""
    result = readings.command(BOOT_COMMAND)
    if result is None:
        return None
    tools = {line.partition("=")[2] for line in result.lines if line.startswith("tool=")}
    if "grubby" in tools and ("bls=yes" in result.lines or "update-grub" not in tools):
        return "grubby"
    return "grub" if "update-grub" in tools else None


def checked_argument(argument: str) -> str:
    if not _SAFE_ARGUMENT.fullmatch(argument):
        raise UnsafeStepError(
            f"refusing kernel argument {argument!r}: GRUB or grubby could misread it"
        )
    return argument


def _checked_name(key: str) -> str:
    name = key.removeprefix("cmdline/")
    if name == key or not _SAFE_NAME.fullmatch(name):
        raise UnsafeStepError(f"refusing key {key!r}: not cmdline/<argument name>")
    return name


def _comment(text: str) -> str:
    return _UNPRINTABLE.sub("?", text)


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
    return bool(
        profile.kernel.cmdline
        or profile.cpu.isolation
        or profile.hugepages.default_size
        or profile.irq.affinity
        or profile.bypass.iommu
        or profile.bypass.hugepages
        or any(pool.boot for pool in profile.hugepages.pages)
    )


def iommu_arguments(ctx: ResolveContext) -> list[tuple[str, str]]:
    """``iommu=pt`` and the vendor's switch for ``bypass.iommu: passthrough``: DMA of host
    drivers stays identity-mapped (no IOTLB cost) while vfio still isolates bound devices."""
    if ctx.profile.bypass.iommu is None:
        return []
    vendor = ctx.topology.iommu_vendor
    if vendor is None:
        raise ResolveError(
            IOMMU_FIELD,
            f"cannot tell whose IOMMU this host has (no /sys/class/iommu unit, no ACPI DMAR or "
            f"IVRS table, CPU vendor {ctx.topology.cpu_vendor or 'unknown'!r}); add the "
            "switch for it to kernel.cmdline and drop bypass.iommu",
        )
    return [("iommu=pt", IOMMU_FIELD), (IOMMU_SWITCH[vendor], IOMMU_FIELD)]


def _drop_in_order(setting: Setting) -> str:
    name = argument_name(setting.desired)
    follows = _FOLLOWS.get(name)
    return f"cmdline/{follows}\x01" if follows else setting.key


def declared_arguments(
    profile: Profile, isolated: CpuSet, irq_cpus: CpuSet | None
) -> Iterator[tuple[str, str]]:
    """(argument, profile field) for every kernel argument the profile implies."""
    cpu = profile.cpu
    runtime_only = set(cpu.isolation) == {RUNTIME_METHOD}
    if irq_cpus is not None and not runtime_only:
        # IRQs are born with this affinity. Moving one later takes effect only at its next
        # interrupt on x86, so an IRQ that rarely fires would otherwise keep its boot-time CPU.
        # Not for runtime-only isolation, which promises no reboot: the boot script moves them.
        yield f"irqaffinity={format_cpulist(irq_cpus)}", "irq.affinity"
    for index, argument in enumerate(profile.kernel.cmdline):
        yield argument, f"kernel.cmdline.{index}"
    cpus = format_cpulist(isolated)
    for index, method in enumerate(cpu.isolation):
        if method == RUNTIME_METHOD:
            continue  # a cgroup partition (knobs/cpuset.py), not a kernel argument
        value = ",".join([*cpu.isolcpus_flags, cpus]) if method == "isolcpus" else cpus
        yield f"{method}={value}", f"cpu.isolation.{index}"
    if profile.hugepages.default_size is not None:
        yield f"default_hugepagesz={profile.hugepages.default_size}", "hugepages.default_size"


def _argument_value(name: str) -> ArgumentValue:
    """How a node compares this argument's value (as ``matches`` does)."""
    if name == "isolcpus":
        return "isolcpus"
    if name in CPULIST_ARGUMENTS:
        return "cpulist"
    return "size" if name in SIZE_ARGUMENTS else "text"


class CmdlineKnob(KnobFamily):
    name = "cmdline"
    managed_paths = (GRUB_DROP_IN,)

    def reads(self, profile: Profile) -> ReadSpec:
        declares = _declares_arguments(profile)
        files = [PROC_CMDLINE] if declares else []
        files += [_EFFECT_FILES[key][0] for key in _effect_checks(profile.cpu)]
        commands = ((BOOT_COMMAND, BOOT_SHELL),) if declares else ()
        return ReadSpec(files=tuple(files), commands=commands)

    def desired(self, ctx: ResolveContext) -> Iterable[Setting]:

        by_name: dict[str, Setting] = {}
        spec = ctx.profile.irq.affinity
        irq_cpus = None if spec is None else ctx.cpuset(spec)
        declared = declared_arguments(ctx.profile, ctx.cpus.isolated, irq_cpus)
        bypass = [*iommu_arguments(ctx), *boot_arguments(ctx)]
        for argument, field in [*declared, *bypass]:
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
            ctx.setting(self.name, key, isolated, field, reboot=True, effect=True)
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
            reason = "not on the running kernel's command line"
            if readings.command(BOOT_COMMAND) is not None and boot_loader(readings) is None:
                reason += "; neither update-grub nor grubby here to add it at boot"
            return Observation(None, reason=reason)
        return Observation(argument)

    def matches(self, setting: Setting, actual: str) -> bool:
        if setting.key in _EFFECT_FILES:
            return super().matches(setting, actual)
        return same_argument(setting.desired, actual)

    def steps_to_set(
        self, key: str, value: str | None, readings: Readings, topology: Topology
    ) -> tuple[Step, ...]:
        if key in _EFFECT_FILES:  # an effect: the arguments produce it at boot
            return ()
        name = _checked_name(key)
        # With GRUB the drop-in file carries every argument; only grubby edits entries.
        if boot_loader(readings) != "grubby":
            return ()
        if value is None:  # absent before: take it out again
            return (Run(("grubby", "--update-kernel=ALL", f"--remove-args={name}")),)
        if argument_name(value) != name:
            raise UnsafeStepError(f"refusing {value!r} for {key}: another argument's name")
        # grubby drops an argument of the same name before adding this one.
        return (Run(("grubby", "--update-kernel=ALL", f"--args={checked_argument(value)}")),)

    def native_files(
        self, settings: Sequence[Setting], readings: Readings, topology: Topology
    ) -> tuple[ManagedFile, ...]:
        arguments = sorted(
            (s for s in settings if s.key.startswith("cmdline/") and not s.effect),
            key=_drop_in_order,
        )
        if not arguments or boot_loader(readings) != "grub":
            return ()
        lines = [
            "# Owned by quietcore: rendered in full at every apply, edits here are overwritten;",
            "# `quietcore rollback` removes this file and runs update-grub again. grub-mkconfig",
            "# sources it after /etc/default/grub and puts GRUB_CMDLINE_LINUX_DEFAULT last on the",
            "# kernel command line: each argument below is its last occurrence, the one the kernel",
            "# applies. Takes effect at the next boot. The arguments and where they come from:",
        ]
        for setting in arguments:
            _checked_name(setting.key)
            argument = checked_argument(setting.desired)
            where = _comment(setting.source or "source unknown")
            lines.append(f"#   {argument}: {_comment(setting.field)} ({where})")
        words = " ".join(setting.desired for setting in arguments)
        lines.append(f'GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT {words}"')
        content = "\n".join(lines) + "\n"
        update = Run(("update-grub",))
        return (ManagedFile(GRUB_DROP_IN, content, self.name, activate=(update,), reboot=True),)

    def node_check(self, setting: Setting) -> NodeCheck:
        if setting.key in _EFFECT_FILES:
            path, absent = _EFFECT_FILES[setting.key]
            return NodeCheck(
                setting.key, path, "cpulist", setting.desired, "unsupported", absent_reason=absent
            )
        return NodeCheck(
            setting.key,
            PROC_CMDLINE,
            "cmdline_arg",
            setting.desired,
            "unsupported",
            absent_reason=f"{PROC_CMDLINE} could not be read",
            argument=_argument_value(argument_name(setting.desired)),
        )
