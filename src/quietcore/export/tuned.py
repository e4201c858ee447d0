"""A quietcore profile as a TuneD profile directory (``tuned.conf``), plugin by plugin.

The result stands alone (no ``include=``): every option is written out, so what TuneD applies
does not depend on which TuneD release, and which version of its stock profiles, a host has.
Sections and option names are the ones TuneD's plugins define (``tuned/plugins/plugin_*.py``);
``tests/unit/test_export_tuned.py`` checks them against captured plugin sources.

TuneD options are host-independent patterns (``governor`` applies to every CPU, ``[net]``
``devices=`` is a glob, ``[sysfs]`` paths may hold wildcards), so the export follows the
profile's sections, not the per-host settings ``resolve`` expands them to.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from quietcore.export import CpuSets, Export, cpu_sets
from quietcore.knobs.cmdline import declared_arguments
from quietcore.knobs.sysctl import declared_sysctls
from quietcore.profile.cpuset import CpuSet, format_cpulist, format_cpumask
from quietcore.profile.loaded import LoadedProfile
from quietcore.profile.schema import InterfaceRule, Profile, size_kib
from quietcore.topology import Topology

Section = dict[str, str]

_SUFFIX_UNSAFE = re.compile(r"[^A-Za-z0-9_]")
# TuneD reads tuned.conf with "#" as an inline comment prefix: free text must not hold one.
_NOT_TEXT = re.compile(r"[\x00-\x1f\x7f#]")
WORKQUEUE_MASKS = (
    "/sys/devices/virtual/workqueue/cpumask",
    "/sys/bus/workqueue/devices/writeback/cpumask",
)
MCE_IGNORE_CE = "/sys/devices/system/machinecheck/machinecheck*/ignore_ce"
KSM_RUN = "/sys/kernel/mm/ksm/run"


def _bool(value: bool) -> str:
    return "1" if value else "0"


def _mask(cpus: CpuSet) -> str:
    # The kernel parses a shorter mask than nr_cpu_ids as the low bits, so the narrowest
    # mask is valid on every host that has these CPUs.
    return format_cpumask(cpus, width_cpus=1)


def _cpu_section(profile: Profile) -> Section:
    cpu = profile.cpu
    section: Section = {}
    if cpu.governor is not None:
        section["governor"] = cpu.governor
    if cpu.energy_perf_bias is not None:
        section["energy_perf_bias"] = cpu.energy_perf_bias
    if cpu.min_perf_pct is not None:
        section["min_perf_pct"] = str(cpu.min_perf_pct)
    if cpu.boost is not None:
        section["boost"] = _bool(cpu.boost)
    if cpu.max_cstate is not None:
        # PM QoS at C-state N's exit latency lets exactly states 0..N be entered; TuneD's
        # daemon holds /dev/cpu_dma_latency open for as long as the profile is active.
        section["force_latency"] = f"cstate.id:{cpu.max_cstate}"
    return section


def _vm_section(profile: Profile) -> Section:
    memory = profile.memory
    section: Section = {}
    if memory.thp is not None:
        section["transparent_hugepages"] = memory.thp
    if memory.thp_defrag is not None:
        section["transparent_hugepage.defrag"] = memory.thp_defrag
    return section


def _bootloader_section(profile: Profile, cpus: CpuSets) -> Section:
    spec = profile.irq.affinity
    irq_cpus = None if spec is None else cpus.resolve(spec, "irq.affinity")
    arguments = [
        argument for argument, _ in declared_arguments(profile, cpus.plan.isolated, irq_cpus)
    ]
    if not arguments:
        return {}
    # The suffix keeps these arguments apart from those of any profile TuneD merges in.
    suffix = _SUFFIX_UNSAFE.sub("_", profile.name)
    return {f"cmdline_quietcore_{suffix}": " ".join(arguments)}


def _hugepage_paths(profile: Profile) -> Iterator[tuple[str, str]]:
    for pool in profile.hugepages.pages:
        kib = size_kib(pool.size)
        if pool.node is None:
            path = f"/sys/kernel/mm/hugepages/hugepages-{kib}kB/nr_hugepages"
        else:
            path = (
                f"/sys/devices/system/node/node{pool.node}/hugepages/hugepages-{kib}kB/nr_hugepages"
            )
        yield path, str(pool.pages)


def _steering_paths(rule: InterfaceRule, index: int, cpus: CpuSets) -> Iterator[tuple[str, str]]:
    field = f"network.interfaces.{index}"
    if rule.rps is not None:
        mask = _mask(cpus.resolve(rule.rps, f"{field}.rps"))
        yield f"/sys/class/net/{rule.match}/queues/rx-*/rps_cpus", mask
    if rule.xps is not None:
        mask = _mask(cpus.resolve(rule.xps, f"{field}.xps"))
        yield f"/sys/class/net/{rule.match}/queues/tx-*/xps_cpus", mask


def _sysfs_section(profile: Profile, cpus: CpuSets) -> Section:
    section: Section = {}
    kernel = profile.kernel
    if kernel.workqueue_mask is not None:
        mask = _mask(cpus.resolve(kernel.workqueue_mask, "kernel.workqueue_mask"))
        section.update(dict.fromkeys(WORKQUEUE_MASKS, mask))
    if kernel.mce_ignore_ce is not None:
        section[MCE_IGNORE_CE] = _bool(kernel.mce_ignore_ce)
    if profile.memory.ksm is not None:
        section[KSM_RUN] = _bool(profile.memory.ksm)
    section.update(_hugepage_paths(profile))
    for index, rule in enumerate(profile.network.interfaces):
        section.update(_steering_paths(rule, index, cpus))
    return section


def _irq_sections(profile: Profile, cpus: CpuSets) -> dict[str, Section]:
    sections: dict[str, Section] = {}
    if profile.irq.irqbalance == "ban-isolated":
        isolated = cpus.resolve("isolated", "irq.irqbalance")
        sections["irqbalance"] = {"banned_cpus": format_cpulist(isolated)}
    if profile.irq.affinity is not None:
        irq_cpus = cpus.resolve(profile.irq.affinity, "irq.affinity")
        # The scheduler plugin moves IRQs off isolated_cores and sets the default IRQ
        # affinity to the other CPUs; isolated_cores is therefore the complement.
        others = cpus.resolve("all", "irq.affinity") - irq_cpus
        if others:
            sections["scheduler"] = {"isolated_cores": format_cpulist(others)}
    return sections


def _systemd_section(profile: Profile, cpus: CpuSets) -> Section:
    systemd = profile.containers.systemd
    if systemd is None or systemd.cpu_affinity is None:
        return {}
    affinity = cpus.resolve(systemd.cpu_affinity, "containers.systemd.cpu_affinity")
    return {"cpu_affinity": format_cpulist(affinity)}


def _net_sections(profile: Profile, cpus: CpuSets) -> dict[str, Section]:
    sections: dict[str, Section] = {}
    for index, rule in enumerate(profile.network.interfaces):
        field = f"network.interfaces.{index}"
        section: Section = {"type": "net", "devices": rule.match}
        if rule.coalesce is not None:
            pairs = rule.coalesce.model_dump(exclude_none=True)
            section["coalesce"] = " ".join(
                f"{name.replace('_', '-')} {_onoff(value)}" for name, value in pairs.items()
            )
        if rule.rings is not None:
            pairs = rule.rings.model_dump(exclude_none=True)
            section["ring"] = " ".join(f"{name} {value}" for name, value in pairs.items())
        if rule.channels is not None:
            count = (
                rule.channels
                if isinstance(rule.channels, int)
                else len(cpus.resolve(rule.channels, f"{field}.channels"))
            )
            section["channels"] = f"combined {count}"
        if len(section) > 2:
            sections[f"net_{index}"] = section
    return sections


def _onoff(value: object) -> str:
    return ("on" if value else "off") if isinstance(value, bool) else str(value)


def not_expressed(profile: Profile) -> tuple[str, ...]:
    """What TuneD cannot carry of this profile."""
    notes = []
    if profile.containers.kubelet is not None:
        notes.append(
            "containers.kubelet: TuneD does not configure the kubelet; use `quietcore k8s "
            "render` for its drop-in"
        )
    if profile.irq.irqbalance == "disabled":
        notes.append("irq.irqbalance: disabled: stop and disable the irqbalance service yourself")
    if profile.verify.jitter is not None:
        notes.append("verify.jitter: TuneD has no jitter acceptance test; run `quietcore verify`")
    if any(rule.rps or rule.xps for rule in profile.network.interfaces):
        notes.append(
            "network.interfaces rps/xps: written through [sysfs] globs, which TuneD applies "
            "only to the interfaces present when the profile is applied"
        )
    return tuple(notes)


def render_conf(sections: dict[str, Section], header: list[str]) -> str:
    lines = [f"# {_NOT_TEXT.sub('?', line)}".rstrip() for line in header]
    for name, options in sections.items():
        lines += ["", f"[{name}]", *(f"{option}={value}" for option, value in options.items())]
    return "\n".join(lines) + "\n"


def tuned_sections(loaded: LoadedProfile, topology: Topology | None) -> dict[str, Section]:
    """The sections of ``tuned.conf``, in TuneD's plugin order, empty ones left out."""
    profile = loaded.profile
    cpus = cpu_sets(loaded, topology)
    summary = _NOT_TEXT.sub("?", " ".join((profile.summary or profile.name).split()))
    sections: dict[str, Section] = {
        "main": {"summary": f"{summary} (exported from quietcore)"},
        "cpu": _cpu_section(profile),
        "vm": _vm_section(profile),
        "sysctl": {name: value for name, (value, _) in declared_sysctls(profile).items()},
        "sysfs": _sysfs_section(profile, cpus),
        **_irq_sections(profile, cpus),
        "systemd": _systemd_section(profile, cpus),
        **_net_sections(profile, cpus),
        "bootloader": _bootloader_section(profile, cpus),
    }
    return {name: options for name, options in sections.items() if options}


def export_tuned(loaded: LoadedProfile, topology: Topology | None = None) -> Export:
    """``{"tuned.conf": text}`` for ``/etc/tuned/<name>/``, and what it cannot express."""
    notes = not_expressed(loaded.profile)
    header = [
        f"TuneD profile exported by `quietcore export` from profile {loaded.profile.name}",
        f"(digest {loaded.digest[:16]}). Install as /etc/tuned/<name>/tuned.conf and run",
        "`tuned-adm profile <name>`. Not expressible in TuneD:",
        *(f"- {note}" for note in notes or ("nothing",)),
    ]
    return Export({"tuned.conf": render_conf(tuned_sections(loaded, topology), header)}, notes)
