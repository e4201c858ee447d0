"""Memory-management switches in sysfs: transparent hugepages (enabled, defrag) and KSM.

Keys: ``vm/thp_enabled``, ``vm/thp_defrag`` (the THP files list every mode and bracket the
active one: ``always [madvise] never``), ``vm/ksm_run`` (``0`` stopped, ``1`` merging, ``2``
stopped after unmerging everything).

Converging writes the mode word or the number back into the same file; the kernel forgets it
at reboot, so the boot script writes it again.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from quietcore.knobs.base import KnobFamily, Observation, ResolveContext, Setting
from quietcore.knobs.node_check import NodeCheck
from quietcore.profile.schema import MemorySection, Profile
from quietcore.readings import Readings, ReadSpec
from quietcore.steps import NUMBER, Step, UnsafeStepError, Write, checked
from quietcore.topology import Topology

THP_DIR = "/sys/kernel/mm/transparent_hugepage"
KSM_RUN = "/sys/kernel/mm/ksm/run"
KSM_STOPPED = "0"
KSM_UNMERGED = "2"

_SELECTED = re.compile(r"\[([^\]]+)\]")
# THP modes (always, madvise, never; defrag also defer, defer+madvise) and KSM's run number.
_MODE = re.compile(r"^[a-z]+(?:\+[a-z]+)?$")


def selected_mode(text: str) -> str:
    """The bracketed word of a sysfs mode list (``always [madvise] never`` -> ``madvise``)."""
    match = _SELECTED.search(text)
    return match.group(1) if match else text.strip()


@dataclass(frozen=True)
class _VmFile:
    key: str
    field: str
    path: str
    absent: str  # why the file may not exist on a host
    declared: Callable[[MemorySection], str | None]
    parse: Callable[[str], str]
    value: re.Pattern[str]  # what may be written back: the file takes one word, not the list


_NO_THP = "kernel built without transparent hugepages"
_FILES = (
    _VmFile(
        "vm/thp_enabled",
        "memory.thp",
        f"{THP_DIR}/enabled",
        _NO_THP,
        lambda m: m.thp,
        selected_mode,
        _MODE,
    ),
    _VmFile(
        "vm/thp_defrag",
        "memory.thp_defrag",
        f"{THP_DIR}/defrag",
        _NO_THP,
        lambda m: m.thp_defrag,
        selected_mode,
        _MODE,
    ),
    _VmFile(
        "vm/ksm_run",
        "memory.ksm",
        KSM_RUN,
        "kernel built without KSM",
        lambda m: None if m.ksm is None else ("1" if m.ksm else KSM_STOPPED),
        str.strip,
        NUMBER,
    ),
)
_BY_KEY = {file.key: file for file in _FILES}


class VmKnob(KnobFamily):
    name = "vm"
    boot_script = True

    def reads(self, profile: Profile) -> ReadSpec:
        return ReadSpec(
            files=tuple(file.path for file in _FILES if file.declared(profile.memory) is not None)
        )

    def desired(self, ctx: ResolveContext) -> Iterable[Setting]:
        for file in _FILES:
            value = file.declared(ctx.profile.memory)
            if value is not None:
                yield ctx.setting(self.name, file.key, value, file.field)

    def observe(self, setting: Setting, readings: Readings, topology: Topology) -> Observation:
        file = _BY_KEY[setting.key]
        text = readings.text(file.path)
        if text is None:
            return Observation(None, "unsupported", file.absent)
        return Observation(file.parse(text))

    def matches(self, setting: Setting, actual: str) -> bool:
        # run=2 is "stopped, and every merged page split again": KSM is off either way.
        if setting.key == "vm/ksm_run" and setting.desired == KSM_STOPPED:
            return actual in (KSM_STOPPED, KSM_UNMERGED)
        return super().matches(setting, actual)

    def steps_to_set(
        self, key: str, value: str | None, readings: Readings, topology: Topology
    ) -> tuple[Step, ...]:
        file = _BY_KEY.get(key)
        if file is None:
            raise UnsafeStepError(f"refusing vm key {key!r}: not one quietcore knows")
        if value is None:  # the file did not exist before: nothing to restore
            return ()
        return (Write(file.path, checked(value, file.value, key)),)

    def node_check(self, setting: Setting) -> NodeCheck:
        file = _BY_KEY[setting.key]
        # run=2 is "stopped, and every merged page split again": KSM is off either way.
        stopped = setting.key == "vm/ksm_run" and setting.desired == KSM_STOPPED
        return NodeCheck(
            setting.key,
            file.path,
            "bracketed" if file.parse is selected_mode else "exact",
            setting.desired,
            absent="unsupported",
            absent_reason=file.absent,
            accept=(KSM_UNMERGED,) if stopped else (),
        )
