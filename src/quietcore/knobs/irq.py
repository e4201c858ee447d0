"""Where the kernel delivers interrupts: ``irq.affinity`` (a CPU spec, usually ``reserved``).

Keys: ``irq/default_smp_affinity`` (the mask a newly requested IRQ starts with) and, for every
numbered IRQ of the host, ``irq/<N>/smp_affinity_list`` (the CPUs the IRQ may go to: must equal
the declared set) and ``irq/<N>/effective_affinity_list`` (where the interrupt controller really
delivers it: the kernel picks one or more CPUs of the allowed set, so it must be a subset).

Some IRQs are not the user's to move, and are reported ``immovable`` instead of drift: per-CPU
IRQs, managed IRQs (the kernel spreads the queue vectors of NVMe drives and multi-queue NICs
over the CPUs itself) and IRQs their driver marks no-balancing. The kernel names these flags in
debugfs (``/sys/kernel/debug/irq/irqs/N``, CONFIG_GENERIC_IRQ_DEBUGFS, root only); without it
only x86's legacy timer and cascade IRQs (0 and 2) are known to be fixed.

Converging writes ``smp_affinity_list`` (a CPU list) and ``default_smp_affinity`` (a hex mask,
converted back from the canonical list); the kernel forgets both at reboot, so the boot script
writes them again. ``effective_affinity_list`` is an effect: the kernel derives it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from quietcore.knobs import irqbalance
from quietcore.knobs.base import KnobFamily, Observation, ResolveContext, Setting, step_cpus
from quietcore.knobs.node_check import ITEM, KernelOwned, NodeCheck
from quietcore.profile.cpuset import format_cpulist, format_cpumask, parse_cpulist, parse_cpumask
from quietcore.profile.schema import Profile
from quietcore.readings import Readings, ReadSpec
from quietcore.steps import REFUSED_WRITES, Step, UnsafeStepError, Write
from quietcore.topology import Topology

FIELD = "irq.affinity"
DEFAULT_KEY = "irq/default_smp_affinity"
DEFAULT_AFFINITY = "/proc/irq/default_smp_affinity"
ALLOWED = "smp_affinity_list"
EFFECTIVE = "effective_affinity_list"
DEBUG_IRQS = "/sys/kernel/debug/irq/irqs"

# dstate flags of kernel/irq/debugfs.c (printed one per line under ``dstate:``) that mean the
# kernel, not the administrator, decides where the IRQ goes.
KERNEL_OWNED_FLAGS = {
    "IRQD_PER_CPU": "a per-CPU IRQ: each CPU has its own",
    "IRQD_AFFINITY_MANAGED": "a managed IRQ: the kernel spreads its vectors over the CPUs",
    "IRQD_NO_BALANCING": "its driver marks it no-balancing",
}
LEGACY_IRQS = {0: "timer", 2: "cascade"}
IRQBALANCE_PLACES = (
    "irqbalance runs: it places this IRQ, so the affinity it had chosen when the snapshot "
    "was taken is not a value to restore"
)
MOVE_PENDING = (
    "allowed CPUs are set; x86 moves an IRQ at its next interrupt (irqaffinity= on the kernel "
    "command line places IRQs right from boot)"
)
NO_DEBUGFS = "may be a managed IRQ, which the kernel will not move: only debugfs tells"

_IRQ_KEY = re.compile(r"^irq/([0-9]+)/(smp_affinity_list|effective_affinity_list)$")


def irq_file(irq: int, name: str) -> str:
    return f"/proc/irq/{irq}/{name}"


def _parse_key(key: str) -> tuple[int, str]:
    """``irq/45/smp_affinity_list`` -> (45, ``smp_affinity_list``)."""
    _, irq, name = key.split("/")
    return int(irq), name


def kernel_owned(irq: int, readings: Readings) -> str | None:
    """Why the kernel will not let ``irq`` be moved, or ``None`` when it may be moved."""
    lines = readings.lines(f"{DEBUG_IRQS}/{irq}")
    if lines is not None:
        flags = {line.strip() for line in lines}
        for flag, why in KERNEL_OWNED_FLAGS.items():
            if flag in flags:
                return f"{why} ({flag})"
        return None
    if irq_file(irq, ALLOWED) in (readings.lines(REFUSED_WRITES) or ()):
        return "the kernel refused to move it when quietcore applied: a managed IRQ"
    if irq in LEGACY_IRQS:
        return (
            f"x86's legacy {LEGACY_IRQS[irq]} IRQ stays put; without debugfs "
            "(/sys/kernel/debug/irq) managed IRQs cannot be told apart"
        )
    return None


# How a node tells an IRQ the kernel owns: as ``kernel_owned`` does, from debugfs flags when
# readable, else by the legacy numbers.
_NODE_KERNEL_OWNED = KernelOwned(
    f"{DEBUG_IRQS}/{ITEM}",
    {flag: f"{why} ({flag})" for flag, why in KERNEL_OWNED_FLAGS.items()},
    {
        str(number): f"x86's legacy {name} IRQ stays put (debugfs flags not readable here)"
        for number, name in LEGACY_IRQS.items()
    },
)


class IrqKnob(KnobFamily):
    name = "irq"
    boot_script = True

    def reads(self, profile: Profile) -> ReadSpec:
        if profile.irq.affinity is None:
            return ReadSpec()
        return ReadSpec(
            files=(
                DEFAULT_AFFINITY,
                f"/proc/irq/[0-9]*/{ALLOWED}",
                f"/proc/irq/[0-9]*/{EFFECTIVE}",
                f"{DEBUG_IRQS}/[0-9]*",
                REFUSED_WRITES,
            ),
            # Whether irqbalance runs: while it does, it places the IRQs (placed_by_daemon).
            commands=((irqbalance.STATE_COMMAND, irqbalance.STATE_SHELL),),
        )

    def desired(self, ctx: ResolveContext) -> Iterable[Setting]:
        spec = ctx.profile.irq.affinity
        if spec is None:
            return
        cpus = format_cpulist(ctx.cpuset(spec))
        yield ctx.setting(self.name, DEFAULT_KEY, cpus, FIELD)
        for irq in ctx.topology.irqs:
            yield ctx.setting(self.name, f"{self.name}/{irq}/{ALLOWED}", cpus, FIELD)
            key = f"{self.name}/{irq}/{EFFECTIVE}"
            yield ctx.setting(self.name, key, cpus, FIELD, effect=True)

    def observe(self, setting: Setting, readings: Readings, topology: Topology) -> Observation:
        if setting.key == DEFAULT_KEY:
            mask = readings.first_line(DEFAULT_AFFINITY)
            if mask is None:
                return Observation(None, "unsupported", "kernel without SMP IRQ affinity")
            return Observation(format_cpulist(parse_cpumask(mask)))
        irq, name = _parse_key(setting.key)
        text = readings.first_line(irq_file(irq, name))
        if text is None:
            if readings.first_line(irq_file(irq, ALLOWED)) is not None:
                return Observation(
                    None,
                    "unsupported",
                    "this kernel does not report effective affinity (no "
                    "CONFIG_GENERIC_IRQ_EFFECTIVE_AFF_MASK); smp_affinity_list is checked alone",
                )
            return Observation(None, "missing", f"IRQ {irq} no longer exists on this host")
        actual = format_cpulist(parse_cpulist(text))
        owned = kernel_owned(irq, readings)
        if owned is not None:
            return Observation(actual, "immovable", owned)
        if name == EFFECTIVE and not self.matches(setting, actual):
            allowed = readings.first_line(irq_file(irq, ALLOWED))
            if allowed is not None and parse_cpulist(allowed) == parse_cpulist(setting.desired):
                return Observation(actual, reason=MOVE_PENDING)
        debugfs_read = readings.lines(f"{DEBUG_IRQS}/{irq}") is not None
        if not debugfs_read and not self.matches(setting, actual):
            return Observation(actual, reason=NO_DEBUGFS)
        return Observation(actual)

    def matches(self, setting: Setting, actual: str) -> bool:
        desired, got = parse_cpulist(setting.desired), parse_cpulist(actual)
        if setting.key == DEFAULT_KEY:
            return got == desired
        # Allowed on a part of the declared CPUs still keeps the IRQ off every other CPU, which
        # is what a profile asks (TuneD's verify judges it the same way). The kernel narrows an
        # IRQ's affinity itself when a driver requests it again (the serial port, when getty
        # opens it after the boot unit ran), and delivers to one CPU of the allowed set.
        return bool(got) and got <= desired

    def restored(self, setting: Setting, actual: str) -> bool:
        desired, got = parse_cpulist(setting.desired), parse_cpulist(actual)
        if setting.key.endswith(f"/{EFFECTIVE}"):
            return got <= desired
        return got == desired

    def placed_by_daemon(self, key: str, readings: Readings) -> str | None:
        state = irqbalance.daemon_state(readings)
        if key == DEFAULT_KEY or state is None or not state.running:
            return None
        return IRQBALANCE_PLACES

    def steps_to_set(
        self, key: str, value: str | None, readings: Readings, topology: Topology
    ) -> tuple[Step, ...]:
        if key == DEFAULT_KEY:
            if value is None:
                return ()
            mask = format_cpumask(step_cpus(value, key), topology.possible_count)
            return (Write(DEFAULT_AFFINITY, mask),)
        match = _IRQ_KEY.fullmatch(key)
        if match is None:
            raise UnsafeStepError(f"refusing irq key {key!r}: not one quietcore knows")
        if match.group(2) == EFFECTIVE or value is None:
            # The effective affinity follows the allowed one; an IRQ absent before is gone.
            return ()
        path, cpus = irq_file(int(match.group(1)), ALLOWED), format_cpulist(step_cpus(value, key))
        return (Write(path, cpus, refusable=True),)

    def node_check(self, setting: Setting) -> NodeCheck:
        if setting.key == DEFAULT_KEY:
            return NodeCheck(
                setting.key,
                DEFAULT_AFFINITY,
                "cpumask",
                setting.desired,
                "unsupported",
                "kernel without SMP IRQ affinity",
            )
        # One check over every IRQ a node has: IRQ numbers differ from node to node of a
        # pool, the declared affinity does not.
        _, name = _parse_key(setting.key)
        effective = name == EFFECTIVE
        return NodeCheck(
            f"irq/{ITEM}/{name}",
            f"/proc/irq/{ITEM}/{name}",
            # A part of the declared CPUs is as declared (see ``matches``).
            "cpulist_subset",
            setting.desired,
            "unsupported" if effective else "missing",
            "this kernel does not report effective affinity" if effective else "the IRQ is gone",
            each="/proc/irq/[0-9]*",
            owned=_NODE_KERNEL_OWNED,
        )
