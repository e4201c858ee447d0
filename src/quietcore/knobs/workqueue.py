"""Where the kernel runs unbound workqueue work: ``kernel.workqueue_mask``.

Keys: ``workqueue/cpumask`` (``/sys/devices/virtual/workqueue/cpumask``, every unbound
workqueue) and ``workqueue/writeback_cpumask`` (``/sys/bus/workqueue/devices/writeback/
cpumask``, the flusher workqueue, which newer kernels fold into the first). The kernel writes
hex masks; quietcore reports and compares CPU lists, and converts back to a mask to write
(the kernel forgets it at reboot, so the boot script writes it again).
"""

from __future__ import annotations

from collections.abc import Iterable

from quietcore.knobs.base import (
    KnobFamily,
    Observation,
    ResolveContext,
    Setting,
    cpuset_observation,
    step_cpus,
)
from quietcore.knobs.node_check import NodeCheck
from quietcore.profile.cpuset import (
    format_cpulist,
    format_cpumask,
    parse_cpumask,
)
from quietcore.profile.schema import Profile
from quietcore.readings import Readings, ReadSpec
from quietcore.steps import Step, UnsafeStepError, Write
from quietcore.topology import Topology

FIELD = "kernel.workqueue_mask"
# Key -> (sysfs mask file, why that file may not exist on a host).
MASK_FILES = {
    "workqueue/cpumask": (
        "/sys/devices/virtual/workqueue/cpumask",
        "this kernel has no unbound workqueue cpumask",
    ),
    "workqueue/writeback_cpumask": (
        "/sys/bus/workqueue/devices/writeback/cpumask",
        "this kernel has no separate writeback workqueue cpumask",
    ),
}


class WorkqueueKnob(KnobFamily):
    name = "workqueue"
    boot_script = True

    def reads(self, profile: Profile) -> ReadSpec:
        if profile.kernel.workqueue_mask is None:
            return ReadSpec()
        return ReadSpec(files=tuple(path for path, _ in MASK_FILES.values()))

    def desired(self, ctx: ResolveContext) -> Iterable[Setting]:
        spec = ctx.profile.kernel.workqueue_mask
        if spec is None:
            return []
        cpus = ctx.cpuset(spec)  # never empty: the kernel refuses an empty mask
        return [ctx.setting(self.name, key, format_cpulist(cpus), FIELD) for key in MASK_FILES]

    def observe(self, setting: Setting, readings: Readings, topology: Topology) -> Observation:
        path, absent = MASK_FILES[setting.key]
        return cpuset_observation(readings.first_line(path), absent, parse_cpumask)

    def steps_to_set(
        self, key: str, value: str | None, readings: Readings, topology: Topology
    ) -> tuple[Step, ...]:
        if key not in MASK_FILES:
            raise UnsafeStepError(f"refusing workqueue key {key!r}: not one quietcore knows")
        if value is None:  # the file did not exist before: nothing to restore
            return ()
        path, _ = MASK_FILES[key]
        return (Write(path, format_cpumask(step_cpus(value, key), topology.possible_count)),)

    def node_check(self, setting: Setting) -> NodeCheck:
        path, absent = MASK_FILES[setting.key]
        return NodeCheck(setting.key, path, "cpumask", setting.desired, "unsupported", absent)
