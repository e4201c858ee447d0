"""The one list of knob families. Adding a family means adding its module and one line here."""

from __future__ import annotations

from quietcore.knobs.base import KnobFamily
from quietcore.knobs.bypass import BypassKnob
from quietcore.knobs.clock import ClockKnob
from quietcore.knobs.cmdline import CmdlineKnob
from quietcore.knobs.cpu import CpuKnob
from quietcore.knobs.cpuset import CpusetKnob
from quietcore.knobs.hugepages import HugepagesKnob
from quietcore.knobs.iommu import IommuKnob
from quietcore.knobs.irq import IrqKnob
from quietcore.knobs.irqbalance import IrqbalanceKnob
from quietcore.knobs.kubelet import KubeletKnob
from quietcore.knobs.machinecheck import MachinecheckKnob
from quietcore.knobs.nic import NicKnob
from quietcore.knobs.sysctl import SysctlKnob
from quietcore.knobs.systemd import SystemdKnob
from quietcore.knobs.units import UnitsKnob
from quietcore.knobs.vfio import VfioKnob
from quietcore.knobs.vm import VmKnob
from quietcore.knobs.workqueue import WorkqueueKnob

FAMILIES: tuple[KnobFamily, ...] = (
    SysctlKnob(),
    VmKnob(),
    CmdlineKnob(),
    HugepagesKnob(),
    WorkqueueKnob(),
    MachinecheckKnob(),
    IrqKnob(),
    IrqbalanceKnob(),
    CpuKnob(),
    CpusetKnob(),
    NicKnob(),
    IommuKnob(),
    VfioKnob(),
    BypassKnob(),
    SystemdKnob(),
    UnitsKnob(),
    KubeletKnob(),
    ClockKnob(),
)


def family(name: str) -> KnobFamily:
    for candidate in FAMILIES:
        if candidate.name == name:
            return candidate
    raise KeyError(f"no knob family named {name!r}")
