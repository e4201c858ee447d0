"""Corrected machine-check errors: ``kernel.mce_ignore_ce`` (TuneD's cpu-partitioning sets it
so the kernel stops polling machine-check banks on every CPU, a periodic interrupt).

x86 kernels create one ``/sys/devices/system/machinecheck/machinecheck<cpu>`` device per online
CPU when the CPU has MCE and MCA, so the keys are ``machinecheck/machinecheck<N>/ignore_ce``.
A host without those CPU flags gets the single key ``machinecheck/ignore_ce``, reported for
all devices together (usually: unsupported, as in VMs and on non-x86 machines).

Converging writes ``ignore_ce`` of each device (for the all-devices key, of every device the
readings show); the kernel forgets it at reboot, so the boot script writes it again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from quietcore.knobs.base import KnobFamily, Observation, ResolveContext, Setting
from quietcore.knobs.node_check import Need, NodeCheck
from quietcore.profile.schema import Profile
from quietcore.readings import Readings, ReadSpec
from quietcore.steps import NUMBER, Step, UnsafeStepError, Write, checked
from quietcore.topology import Topology

DEVICES = "/sys/devices/system/machinecheck"
IGNORE_CE_FILES = f"{DEVICES}/machinecheck*/ignore_ce"
FIELD = "kernel.mce_ignore_ce"
ALL_DEVICES_KEY = "machinecheck/ignore_ce"
NO_DEVICES = "no machine-check devices (VM or non-x86)"
# The kernel registers machine-check devices only on CPUs with both (arch/x86 mce_available).
MCE_FLAGS = frozenset({"mce", "mca"})

_DEVICE_KEY = re.compile(r"^machinecheck/(machinecheck\d+)/ignore_ce$")
_DEVICE = re.compile(r"/(machinecheck\d+)/ignore_ce$")
# The all-devices key's actual when devices disagree: ``machinecheck0=1 machinecheck1=0``.
_PER_DEVICE = re.compile(r"^(machinecheck\d+)=([0-9]+)$")


def ignore_ce_path(device: str) -> str:
    return f"{DEVICES}/{device}/ignore_ce"


def ignore_ce_values(readings: Readings) -> dict[str, str]:
    """Device name -> its ``ignore_ce`` value, for every machine-check device read."""
    values = {}
    for path, lines in readings.glob(IGNORE_CE_FILES).items():
        match = _DEVICE.search(path)
        if match and lines:
            values[match.group(1)] = lines[0].strip()
    return values


class MachinecheckKnob(KnobFamily):
    name = "machinecheck"
    boot_script = True

    def reads(self, profile: Profile) -> ReadSpec:
        if profile.kernel.mce_ignore_ce is None:
            return ReadSpec()
        return ReadSpec(files=(IGNORE_CE_FILES,))

    def desired(self, ctx: ResolveContext) -> Iterable[Setting]:
        declared = ctx.profile.kernel.mce_ignore_ce
        if declared is None:
            return []
        value = "1" if declared else "0"
        if not ctx.topology.flags >= MCE_FLAGS:
            return [ctx.setting(self.name, ALL_DEVICES_KEY, value, FIELD)]
        return [
            ctx.setting(self.name, f"{self.name}/machinecheck{cpu}/ignore_ce", value, FIELD)
            for cpu in sorted(ctx.topology.online)
        ]

    def observe(self, setting: Setting, readings: Readings, topology: Topology) -> Observation:
        values = ignore_ce_values(readings)
        if not values:
            return Observation(None, "unsupported", NO_DEVICES)
        match = _DEVICE_KEY.match(setting.key)
        if match is None:  # the all-devices key: one value if they agree, else each one
            distinct = set(values.values())
            if len(distinct) == 1:
                return Observation(distinct.pop())
            return Observation(" ".join(f"{dev}={value}" for dev, value in values.items()))
        device = match.group(1)
        if device not in values:
            return Observation(None, "missing", f"no machine-check device {device}")
        return Observation(values[device])

    def steps_to_set(
        self, key: str, value: str | None, readings: Readings, topology: Topology
    ) -> tuple[Step, ...]:
        match = _DEVICE_KEY.fullmatch(key)
        if match is None and key != ALL_DEVICES_KEY:
            raise UnsafeStepError(f"refusing machinecheck key {key!r}: not one quietcore knows")
        if value is None:  # the device did not exist before: nothing to restore
            return ()
        if match is not None:
            return (Write(ignore_ce_path(match.group(1)), checked(value, NUMBER, key)),)
        if "=" in value:
            # Rolling back devices that disagreed: each gets its own value back.
            pairs = [_PER_DEVICE.fullmatch(word) for word in value.split()]
            if not pairs or not all(pairs):
                raise UnsafeStepError(f"refusing ignore_ce values {value!r} for {key}")
            return tuple(
                Write(ignore_ce_path(pair.group(1)), pair.group(2)) for pair in pairs if pair
            )
        value = checked(value, NUMBER, key)
        devices = ignore_ce_values(readings)
        return tuple(Write(ignore_ce_path(device), value) for device in devices)

    def node_check(self, setting: Setting) -> NodeCheck:
        if setting.key == ALL_DEVICES_KEY:
            return NodeCheck(
                setting.key,
                IGNORE_CE_FILES,
                "all_equal",
                setting.desired,
                "unsupported",
                NO_DEVICES,
            )
        match = _DEVICE_KEY.fullmatch(setting.key)
        if match is None:
            raise ValueError(f"not a machinecheck key: {setting.key!r}")
        device = match.group(1)
        return NodeCheck(
            setting.key,
            ignore_ce_path(device),
            "exact",
            setting.desired,
            absent_reason=f"no machine-check device {device}",
            needs=(Need(IGNORE_CE_FILES, "unsupported", NO_DEVICES),),
        )
