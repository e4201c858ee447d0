"""What a Kubernetes node can check about itself by reading files: the verifier's checks.

The verifier DaemonSet (``k8s/target/qc_node_verifier.py``) runs in a stock python image with
the host's ``/proc`` and ``/sys`` mounted read-only, so it can judge every setting whose state
is a kernel file, and nothing else. This module turns resolved ``Setting``s into those checks:
each names the file, how its text is compared (the same normalisation the knob family's
``observe``/``matches`` apply) and which verdict a missing file means, as ``quietcore verify``
gives it. Settings that live elsewhere (the kubelet's configuration, irqbalance's environment
file and service, systemd's configuration, ethtool's ioctls) are listed as ``unchecked`` with
the reason; the rollout verifies them over SSH.

Per-IRQ settings become one check over every numbered IRQ the node has (``irq/{item}/...``):
IRQ numbers differ from node to node of a pool, the declared affinity does not.

Pure: settings in, a versioned JSON document (``quietcore.node-checks/v1``) out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from quietcore.knobs import cmdline, cpu, hugepages, irq, machinecheck, nic, vm, workqueue
from quietcore.knobs.base import Setting
from quietcore.knobs.sysctl import sysctl_path

SCHEMA_ID = "quietcore.node-checks/v1"
ITEM = "{item}"  # in a key or path of a check with ``each``: one match of the ``each`` glob

CheckKind = Literal[
    "exact",  # the file's text, whitespace collapsed, equals desired (or one of ``accept``)
    "cpulist",  # a kernel CPU list, equal as a set to the desired list
    "cpulist_subset",  # a kernel CPU list, a subset of the desired list
    "cpumask",  # a hex CPU mask, equal as a set to the desired list
    "bracketed",  # the ``[selected]`` word of a sysfs mode list
    "cmdline_arg",  # the last argument of that name in the kernel command line
    "meminfo_kib",  # a ``Label: N kB`` line, equal in bytes to a desired size (``1G``)
    "all_equal",  # every file the glob path matches (minus ``exclude``) equals desired
    "exists",  # the glob path matches at least one file
]
AbsentStatus = Literal["missing", "unsupported", "drift"]
ArgumentValue = Literal["text", "cpulist", "size", "isolcpus"]


@dataclass(frozen=True)
class Need:
    """A path (or glob) that must exist for the check to make sense; else ``status``."""

    path: str
    status: AbsentStatus
    reason: str


@dataclass(frozen=True)
class KernelOwned:
    """How to tell an IRQ the kernel owns (``immovable``, not drift): its debugfs flags when
    readable, else the numbers known to be fixed."""

    flags_path: str
    flags: Mapping[str, str]
    fixed: Mapping[str, str]


@dataclass(frozen=True)
class NodeCheck:
    key: str
    path: str
    kind: CheckKind
    desired: str
    absent: AbsentStatus = "missing"
    absent_reason: str = ""
    accept: tuple[str, ...] = ()  # more actual values that count as ok
    needs: tuple[Need, ...] = ()
    fallback: NodeCheck | None = None  # tried when ``path`` does not exist
    each: str | None = None  # a glob: one verdict per match, its file name fills ``{item}``
    exclude: tuple[str, ...] = ()  # for all_equal: matches that are not judged
    argument: ArgumentValue = "text"  # for cmdline_arg: how the argument's value compares
    label: str = ""  # for meminfo_kib
    owned: KernelOwned | None = None
    # An empty file counts as absent: the file exists but the kernel refused the read.
    empty_is_absent: bool = False


@dataclass(frozen=True)
class Unchecked:
    key: str
    reason: str


@dataclass(frozen=True)
class NodeChecks:
    checks: tuple[NodeCheck, ...]
    unchecked: tuple[Unchecked, ...] = field(default=())


NOT_MOUNTED = "the verifier sees only /proc and /sys; `quietcore verify` reads it over SSH"
UNCHECKED_FAMILIES = {
    "kubelet": f"the kubelet's configuration is outside /proc and /sys: {NOT_MOUNTED}",
    "irqbalance": f"irqbalance's environment file and service state: {NOT_MOUNTED}",
    "systemd": f"systemd's configuration in /etc: {NOT_MOUNTED}",
}
ETHTOOL = f"read through ethtool's ioctls, not a file: {NOT_MOUNTED}"

_POOL_KEY = re.compile(r"^hugepages/(?:node(\d+)/)?(\d+)kB$")
_PER_IRQ_KEY = re.compile(r"^irq/\d+/(smp_affinity_list|effective_affinity_list)$")
_CPU_KEY = re.compile(r"^cpu/(\d+)/(.+)$")
_IDLE_STATE = re.compile(r"^cpuidle/state(\d+)/disable$")
_IDLE_DEEPER = re.compile(r"^cpuidle/deeper_than_state(\d+)/disable$")
_MACHINECHECK_KEY = re.compile(r"^machinecheck/(machinecheck\d+)/ignore_ce$")


# --- One mapper per family whose state is a file ----------------------------------------------


def _sysctl(setting: Setting) -> NodeCheck:
    name = setting.key.removeprefix("sysctl/")
    return NodeCheck(
        setting.key,
        sysctl_path(name),
        "exact",
        setting.desired,
        absent_reason=f"the running kernel has no sysctl {name}",
    )


_VM_FILES = {
    "vm/thp_enabled": (f"{vm.THP_DIR}/enabled", "bracketed"),
    "vm/thp_defrag": (f"{vm.THP_DIR}/defrag", "bracketed"),
    "vm/ksm_run": (vm.KSM_RUN, "exact"),
}


def _vm(setting: Setting) -> NodeCheck:
    path, kind = _VM_FILES[setting.key]
    # run=2 is "stopped, and every merged page split again": KSM is off either way.
    stopped = setting.key == "vm/ksm_run" and setting.desired == vm.KSM_STOPPED
    return NodeCheck(
        setting.key,
        path,
        "bracketed" if kind == "bracketed" else "exact",
        setting.desired,
        absent="unsupported",
        absent_reason="the kernel has no such file (built without THP or KSM)",
        accept=(vm.KSM_UNMERGED,) if stopped else (),
    )


_EFFECTS = {
    cmdline.ISOLATED_KEY: (cmdline.CPU_ISOLATED, "this kernel does not report isolated CPUs"),
    cmdline.NOHZ_FULL_KEY: (cmdline.CPU_NOHZ_FULL, "kernel built without NO_HZ_FULL"),
}


def _argument_value(name: str) -> ArgumentValue:
    if name == "isolcpus":
        return "isolcpus"
    if name in cmdline.CPULIST_ARGUMENTS:
        return "cpulist"
    return "size" if name in cmdline.SIZE_ARGUMENTS else "text"


def _cmdline(setting: Setting) -> NodeCheck:
    if setting.key in _EFFECTS:
        path, absent = _EFFECTS[setting.key]
        return NodeCheck(
            setting.key, path, "cpulist", setting.desired, "unsupported", absent_reason=absent
        )
    return NodeCheck(
        setting.key,
        cmdline.PROC_CMDLINE,
        "cmdline_arg",
        setting.desired,
        "unsupported",
        absent_reason=f"{cmdline.PROC_CMDLINE} could not be read",
        argument=_argument_value(cmdline.argument_name(setting.desired)),
    )


def _hugepages(setting: Setting) -> NodeCheck:
    if setting.key == hugepages.DEFAULT_SIZE_KEY:
        return NodeCheck(
            setting.key,
            hugepages.MEMINFO,
            "meminfo_kib",
            setting.desired,
            "unsupported",
            absent_reason="kernel built without hugetlbfs",
            label="Hugepagesize",
        )
    match = _POOL_KEY.fullmatch(setting.key)
    if match is None:
        raise ValueError(f"not a hugepages key: {setting.key!r}")
    kib = int(match.group(2))
    size = hugepages.format_size_kib(kib)
    offered = Need(hugepages.host_pool_path(kib), "unsupported", f"no {size} hugepages offered")
    if match.group(1) is None:
        return NodeCheck(
            setting.key,
            offered.path,
            "exact",
            setting.desired,
            offered.status,
            absent_reason=offered.reason,
        )
    node = int(match.group(1))
    return NodeCheck(
        setting.key,
        hugepages.node_pool_path(node, kib),
        "exact",
        setting.desired,
        absent_reason=f"NUMA node {node} has no {size} hugepage pool",
        needs=(offered,),
    )


def _workqueue(setting: Setting) -> NodeCheck:
    path, absent = workqueue.MASK_FILES[setting.key]
    return NodeCheck(setting.key, path, "cpumask", setting.desired, "unsupported", absent)


def _machinecheck(setting: Setting) -> NodeCheck:
    if setting.key == machinecheck.ALL_DEVICES_KEY:
        return NodeCheck(
            setting.key,
            machinecheck.IGNORE_CE_FILES,
            "all_equal",
            setting.desired,
            "unsupported",
            machinecheck.NO_DEVICES,
        )
    match = _MACHINECHECK_KEY.fullmatch(setting.key)
    if match is None:
        raise ValueError(f"not a machinecheck key: {setting.key!r}")
    device = match.group(1)
    return NodeCheck(
        setting.key,
        machinecheck.ignore_ce_path(device),
        "exact",
        setting.desired,
        absent_reason=f"no machine-check device {device}",
        needs=(Need(machinecheck.IGNORE_CE_FILES, "unsupported", machinecheck.NO_DEVICES),),
    )


def _kernel_owned() -> KernelOwned:
    fixed = {
        str(number): f"x86's legacy {name} IRQ stays put (debugfs flags not readable here)"
        for number, name in irq.LEGACY_IRQS.items()
    }
    flags = {flag: f"{why} ({flag})" for flag, why in irq.KERNEL_OWNED_FLAGS.items()}
    return KernelOwned(f"{irq.DEBUG_IRQS}/{ITEM}", flags, fixed)


def _irq(setting: Setting) -> NodeCheck:
    if setting.key == irq.DEFAULT_KEY:
        return NodeCheck(
            setting.key,
            irq.DEFAULT_AFFINITY,
            "cpumask",
            setting.desired,
            "unsupported",
            "kernel without SMP IRQ affinity",
        )
    match = _PER_IRQ_KEY.fullmatch(setting.key)
    if match is None:
        raise ValueError(f"not an irq key: {setting.key!r}")
    name = match.group(1)
    effective = name == irq.EFFECTIVE
    return NodeCheck(
        f"irq/{ITEM}/{name}",
        f"/proc/irq/{ITEM}/{name}",
        # The kernel delivers to one CPU (or a few) of the allowed set.
        "cpulist_subset" if effective else "cpulist",
        setting.desired,
        "unsupported" if effective else "missing",
        "this kernel does not report effective affinity" if effective else "the IRQ is gone",
        each="/proc/irq/[0-9]*",
        owned=_kernel_owned(),
    )


def _cpu_global(setting: Setting) -> NodeCheck:
    if setting.key == cpu.MIN_PERF_KEY:
        return NodeCheck(
            setting.key,
            cpu.MIN_PERF,
            "exact",
            setting.desired,
            "unsupported",
            "min_perf_pct is intel_pstate's",
        )
    # boost: cpufreq's switch, or intel_pstate's no_turbo, its inverse.
    inverse = "0" if setting.desired == "1" else "1"
    no_turbo = NodeCheck(
        setting.key, cpu.NO_TURBO, "exact", inverse, "unsupported", "the driver has no boost"
    )
    return NodeCheck(
        setting.key, cpu.BOOST, "exact", setting.desired, "unsupported", fallback=no_turbo
    )


def _cpu(setting: Setting) -> NodeCheck:
    match = _CPU_KEY.fullmatch(setting.key)
    if match is None:
        return _cpu_global(setting)
    number, rest = int(match.group(1)), match.group(2)
    if rest == "scaling_governor":
        path = cpu.cpu_file(number, cpu.GOVERNOR)
        return NodeCheck(setting.key, path, "exact", setting.desired, "unsupported", cpu.NO_CPUFREQ)
    if rest == "energy_perf_bias":
        # HWP/EPP CPUs have no EPB file: the kernel's EPB-to-EPP bucket is compared instead.
        epp = NodeCheck(
            setting.key,
            cpu.cpu_file(number, cpu.EPP),
            "exact",
            cpu.epp_of_epb(int(setting.desired)),
            "unsupported",
            "no energy_perf_bias nor energy_performance_preference",
        )
        path = cpu.cpu_file(number, cpu.EPB)
        return NodeCheck(setting.key, path, "exact", setting.desired, "unsupported", fallback=epp)
    state = _IDLE_STATE.fullmatch(rest)
    if state is not None:
        path = cpu.cpu_file(number, rest)
        return NodeCheck(
            setting.key, path, "exact", setting.desired, "unsupported", f"no idle {rest}"
        )
    deeper = _IDLE_DEEPER.fullmatch(rest)
    if deeper is None:
        raise ValueError(f"not a cpu key: {setting.key!r}")
    limit = int(deeper.group(1))
    return NodeCheck(
        setting.key,
        cpu.cpu_file(number, "cpuidle/state*/disable"),
        "all_equal",
        setting.desired,
        "unsupported",
        "no cpuidle driver",
        exclude=tuple(cpu.cpu_file(number, f"cpuidle/state{s}/disable") for s in range(limit + 1)),
    )


def _nic(setting: Setting) -> NodeCheck | Unchecked:
    parts = setting.key.split("/")
    if len(parts) == 3:  # nic/<pattern>/match: some interface matches the rule
        return NodeCheck(
            setting.key,
            f"{nic.NET}/{parts[1]}",
            "exists",
            setting.desired,
            absent_reason=f"no interface matches {parts[1]}",
        )
    _, interface, queue, item = parts
    if queue in nic.ETHTOOL_KEYS:
        return Unchecked(setting.key, ETHTOOL)
    device = f"{nic.NET}/{interface}"
    return NodeCheck(
        setting.key,
        f"{device}/queues/{queue}/{item}",
        "cpumask",
        setting.desired,
        "unsupported",
        f"kernel without {item} for {queue} (or a single-queue device)",
        needs=(
            Need(device, "missing", f"no interface {interface}"),
            Need(f"{device}/queues/{queue}", "missing", f"{interface} has no queue {queue}"),
        ),
        # The kernel never prints an empty mask; quietcore's bundle shows a refused read so.
        empty_is_absent=True,
    )


MAPPERS: dict[str, Callable[[Setting], NodeCheck | Unchecked]] = {
    "sysctl": _sysctl,
    "vm": _vm,
    "cmdline": _cmdline,
    "hugepages": _hugepages,
    "workqueue": _workqueue,
    "machinecheck": _machinecheck,
    "irq": _irq,
    "cpu": _cpu,
    "nic": _nic,
}


def node_check(setting: Setting) -> NodeCheck | Unchecked:
    """The file check for one setting, or why a node cannot check it by reading files."""
    if setting.family in UNCHECKED_FAMILIES:
        return Unchecked(setting.key, UNCHECKED_FAMILIES[setting.family])
    mapper = MAPPERS.get(setting.family)
    if mapper is None:
        return Unchecked(setting.key, f"no file check for the {setting.family} family")
    return mapper(setting)


def node_checks(settings: Iterable[Setting]) -> NodeChecks:
    """Every setting as a check or an unchecked entry; per-IRQ settings collapse into one
    check per IRQ file (they all declare the same CPUs)."""
    checks: dict[str, NodeCheck] = {}
    unchecked: list[Unchecked] = []
    for setting in settings:
        made = node_check(setting)
        if isinstance(made, Unchecked):
            unchecked.append(made)
            continue
        earlier = checks.setdefault(made.key, made)
        if earlier.desired != made.desired:
            raise ValueError(
                f"{setting.key} wants {made.desired!r} but {made.key} already wants "
                f"{earlier.desired!r}: one node check cannot say both"
            )
    return NodeChecks(tuple(checks.values()), tuple(unchecked))


# --- The JSON document ---------------------------------------------------------------------


def _optional(check: NodeCheck) -> dict[str, Any]:
    return {
        "absent": check.absent,
        "absent_reason": check.absent_reason,
        "accept": list(check.accept),
        "needs": [vars(need) for need in check.needs],
        "fallback": None if check.fallback is None else _check_document(check.fallback),
        "each": check.each,
        "exclude": list(check.exclude),
        "argument": check.argument,
        "label": check.label,
        "owned": None
        if check.owned is None
        else {
            "flags_path": check.owned.flags_path,
            "flags": dict(check.owned.flags),
            "fixed": dict(check.owned.fixed),
        },
        "empty_is_absent": check.empty_is_absent,
    }


_DEFAULTS = _optional(NodeCheck("", "", "exact", ""))


def _check_document(check: NodeCheck) -> dict[str, Any]:
    """A check as JSON, fields at their default left out so the ConfigMap stays readable."""
    document: dict[str, Any] = {
        "key": check.key,
        "path": check.path,
        "kind": check.kind,
        "desired": check.desired,
    }
    document.update(
        {name: value for name, value in _optional(check).items() if value != _DEFAULTS[name]}
    )
    return document


def checks_document(settings: Sequence[Setting], *, profile: str, digest: str) -> dict[str, Any]:
    made = node_checks(settings)
    return {
        "schema": SCHEMA_ID,
        "profile": {"name": profile, "digest": digest},
        "checks": [_check_document(check) for check in made.checks],
        "unchecked": [{"key": entry.key, "reason": entry.reason} for entry in made.unchecked],
    }


def checks_json(settings: Sequence[Setting], *, profile: str, digest: str) -> str:
    """The verifier's ``checks.json``: ``profile`` and ``digest`` label its metrics."""
    document = checks_document(settings, profile=profile, digest=digest)
    return json.dumps(document, indent=1, sort_keys=False) + "\n"
