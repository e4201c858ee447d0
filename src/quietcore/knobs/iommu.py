"""The IOMMU as kernel bypass needs it: on, and in passthrough. Verify-only effects.

Keys (for ``bypass.iommu: passthrough``):

- ``iommu/enabled`` = ``yes``: the kernel made IOMMU groups (``/sys/kernel/iommu_groups/N``),
  which vfio needs to hand a device to user space;
- ``iommu/passthrough`` = ``identity``: every group's ``type`` is ``identity`` (host drivers'
  DMA is not translated, the effect of ``iommu=pt``); otherwise the types found (``DMA-FQ``).

The cmdline family sets the arguments (``iommu=pt`` and the vendor's ``intel_iommu=on`` /
``amd_iommu=on``), so both keys are reboot-time effects. A host without IOMMU hardware (no
``/sys/class/iommu`` unit, no ACPI DMAR or IVRS table: most VMs) has them ``unsupported``.
"""

from __future__ import annotations

from collections.abc import Iterable

from quietcore.knobs.base import KnobFamily, Observation, ResolveContext, Setting
from quietcore.knobs.node_check import Need, NodeCheck
from quietcore.profile.schema import Profile
from quietcore.readings import Readings, ReadSpec
from quietcore.topology import Topology

GROUP_TYPES = "/sys/kernel/iommu_groups/*/type"
ENABLED_KEY = "iommu/enabled"
PASSTHROUGH_KEY = "iommu/passthrough"
IDENTITY = "identity"
FIELD = "bypass.iommu"
NO_HARDWARE = (
    "no IOMMU on this host (no /sys/class/iommu unit, no ACPI DMAR or IVRS table); "
    "a VM needs a virtual one (qemu: -device intel-iommu)"
)

OFF = "the IOMMU is off: no group in /sys/kernel/iommu_groups"
NO_UNIT = "no IOMMU unit in /sys/class/iommu (no IOMMU hardware, or the IOMMU is switched off)"


def group_types(readings: Readings) -> list[str]:
    """The ``type`` of every IOMMU group (``identity``, ``DMA``, ``DMA-FQ``, ``blocked``)."""
    return [lines[0].strip() for lines in readings.glob(GROUP_TYPES).values() if lines]


class IommuKnob(KnobFamily):
    name = "iommu"

    def reads(self, profile: Profile) -> ReadSpec:
        return ReadSpec(files=(GROUP_TYPES,) if profile.bypass.iommu else ())

    def desired(self, ctx: ResolveContext) -> Iterable[Setting]:
        if ctx.profile.bypass.iommu is None:
            return []
        return [
            ctx.setting(self.name, ENABLED_KEY, "yes", FIELD, reboot=True, effect=True),
            ctx.setting(self.name, PASSTHROUGH_KEY, IDENTITY, FIELD, reboot=True, effect=True),
        ]

    def observe(self, setting: Setting, readings: Readings, topology: Topology) -> Observation:
        if not topology.has_iommu:
            return Observation(None, "unsupported", NO_HARDWARE)
        types = group_types(readings)
        if setting.key == ENABLED_KEY:
            if types:
                return Observation("yes", reason=f"{len(types)} IOMMU groups")
            return Observation("no", reason=OFF)
        if not types:
            return Observation(None, reason="the IOMMU is off: no group to be in passthrough")
        found = sorted(set(types))
        other = len([kind for kind in types if kind != IDENTITY])
        reason = f"{other} of {len(types)} groups translate DMA" if other else ""
        return Observation(",".join(found), reason=reason)

    def node_check(self, setting: Setting) -> NodeCheck:
        # A node sees no ACPI table (binary, not read): an IOMMU switched off that registered
        # no unit looks like none here, where `quietcore verify` would say drift.
        hardware = Need("/sys/class/iommu/*", "unsupported", NO_UNIT)
        if setting.key == ENABLED_KEY:
            return NodeCheck(
                setting.key,
                "/sys/kernel/iommu_groups/*",
                "exists",
                setting.desired,
                "drift",
                absent_reason=OFF,
                needs=(hardware,),
            )
        return NodeCheck(
            setting.key,
            GROUP_TYPES,
            "all_equal",
            setting.desired,
            "drift",
            absent_reason="the IOMMU is off: no group to be in passthrough",
            needs=(hardware,),
        )
