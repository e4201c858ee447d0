"""The contract every knob family fulfils.

A knob family (one module in ``quietcore.knobs``) knows, for its kind of kernel setting:

1. ``reads(profile)``: which files and fixed commands the one-round-trip bundle must read;
2. ``desired(ctx)``: the concrete ``Setting`` values a profile asks for on one host;
3. ``observe(setting, readings, topology)``: what the host actually has for a setting;
4. ``matches(setting, actual)``: whether that counts as equal (sets, masks, sizes are
   compared normalised, never as raw text);

and, to converge a host:

5. ``steps_to_set(key, value, readings, topology)``: the runtime ``Write``/``Run`` steps that
   give one key a canonical value now. Apply uses it with the desired value, rollback with the
   snapshot's value, and the boot script (``boot_script = True``) replays it at every boot;
6. ``native_files(settings, readings, topology)``: the configuration files that persist the
   family's settings natively (``/etc/sysctl.d``, a GRUB drop-in, irqbalance's config).

Each family's pyinfra operation is made once from those two, for every registered family
(``quietcore.converge.operations.operation_for``). Nothing outside the family module knows
its file paths or formats; the registry is the only list of families.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from quietcore.knobs.node_check import NodeCheck, Unchecked
from quietcore.profile.cpuplan import CpuPlan, resolve_cpu_text
from quietcore.profile.cpuset import CpuSet, CpuSetError, format_cpulist, parse_cpulist
from quietcore.profile.schema import Profile
from quietcore.readings import Readings, ReadSpec
from quietcore.steps import ManagedFile, Step, UnsafeStepError
from quietcore.topology import Topology

Status = Literal["ok", "drift", "missing", "unsupported", "immovable"]
"""ok: actual equals desired. drift: it differs. missing: the thing the setting lives in
does not exist on the host (an unknown sysctl, no kubelet config file). unsupported: the host
cannot have this setting at all (no cpufreq in a VM, no ethtool), with the reason.
immovable: the kernel owns the value (a managed or per-CPU IRQ), so it is not drift."""


@dataclass(frozen=True)
class Setting:
    """One desired value for one stable key, e.g. ``sysctl/net.core.busy_poll`` = ``50``."""

    key: str
    family: str
    desired: str  # canonical text form, as ``observe`` reports actual values
    field: str  # the profile field path it comes from, e.g. ``network.busy_poll_us``
    source: str | None = None  # ``file:line`` where that field was declared
    reboot_required: bool = False
    # An effect is read to prove other settings work (``/sys/devices/system/cpu/isolated``
    # after ``isolcpus=``); nothing sets it, so apply and rollback never change it directly.
    effect: bool = False


@dataclass(frozen=True)
class Observation:
    """What the host has for a setting. ``status`` forces a verdict (missing, unsupported,
    immovable) when comparing makes no sense; ``None`` means compare ``actual``."""

    actual: str | None
    status: Status | None = None
    reason: str = ""


@dataclass(frozen=True)
class ResolveContext:
    """Everything ``desired`` may use: the profile, the host's topology, the resolved CPU
    sets, and where each profile field was declared."""

    profile: Profile
    topology: Topology
    cpus: CpuPlan
    source_of: Callable[[str], str | None]

    def cpuset(self, spec: str) -> CpuSet:
        """A symbolic or literal CPU set from the profile, made concrete on this host."""
        return resolve_cpu_text(spec, self.cpus)

    def setting(
        self,
        family: str,
        key: str,
        desired: str,
        field: str,
        *,
        reboot: bool = False,
        effect: bool = False,
    ) -> Setting:
        return Setting(
            key=key,
            family=family,
            desired=desired,
            field=field,
            source=self.source_of(field),
            reboot_required=reboot,
            effect=effect,
        )


class KnobFamily(ABC):
    name: ClassVar[str]
    # True when the kernel forgets this family's values at reboot and no native file brings
    # them back: its ``steps_to_set`` are then replayed by the boot script.
    boot_script: ClassVar[bool] = False
    # Every file ``native_files`` may render, read by plan to compare and by rollback to undo.
    managed_paths: ClassVar[tuple[str, ...]] = ()
    # Why a Kubernetes node cannot judge this family from /proc and /sys (see ``node_check``).
    unchecked_on_node: ClassVar[str] = "no file check for this family"

    @abstractmethod
    def reads(self, profile: Profile) -> ReadSpec: ...

    @abstractmethod
    def desired(self, ctx: ResolveContext) -> Iterable[Setting]: ...

    @abstractmethod
    def observe(self, setting: Setting, readings: Readings, topology: Topology) -> Observation: ...

    def matches(self, setting: Setting, actual: str) -> bool:
        return setting.desired == actual

    def restored(self, setting: Setting, actual: str) -> bool:
        """Whether ``actual`` is the snapshot's value (``setting.desired``) again: rollback's
        comparison. The same as ``matches`` unless the family accepts more than one value as
        declared (IRQ affinity accepts a part of the declared CPUs; a rollback wants them all)."""
        return self.matches(setting, actual)

    def steps_to_set(
        self, key: str, value: str | None, readings: Readings, topology: Topology
    ) -> tuple[Step, ...]:
        """The runtime steps that give ``key`` the canonical ``value`` (as ``observe``
        reports it; ``None``: the key was absent before, e.g. a kernel argument). Empty when
        the key cannot change at runtime: it is set through ``native_files`` and a reboot."""
        return ()

    def restore_rank(self, key: str) -> int:
        """Where ``key`` comes in a rollback among this family's keys, lowest first (keys
        whose restore undoes another's, like leaving a cgroup resetting affinities, go first)."""
        return 0

    def placed_by_daemon(self, key: str, readings: Readings) -> str | None:
        """Why a daemon running on the host, not quietcore, now decides ``key`` (so rollback
        has no value of its own to restore), or ``None``."""
        return None

    def node_check(self, setting: Setting) -> NodeCheck | Unchecked:
        """How a Kubernetes node judges ``setting`` by reading its own /proc and /sys (the
        in-cluster verifier), with the same normalisation as ``observe``; or why it cannot."""
        return Unchecked(setting.key, self.unchecked_on_node)

    def native_files(
        self, settings: Sequence[Setting], readings: Readings, topology: Topology
    ) -> tuple[ManagedFile, ...]:
        """The files that persist ``settings`` natively: every applicable setting of this
        family on the host, not only the drifted ones, so the files always say everything."""
        return ()


def step_cpus(value: str, key: str, *, allow_empty: bool = False) -> CpuSet:
    """A canonical CPU list about to be written to ``key``: refused when it is not a CPU list,
    or when empty unless ``allow_empty`` (the kernel refuses an empty affinity or workqueue
    mask; an empty steering mask just turns steering off)."""
    try:
        cpus = parse_cpulist(value)
    except CpuSetError as error:
        raise UnsafeStepError(f"refusing {value!r} for {key}: {error}") from None
    if not cpus and not allow_empty:
        raise UnsafeStepError(f"refusing an empty CPU list for {key}: the kernel needs a CPU")
    return cpus


def cpuset_observation(
    text: str | None, absent: str, parse: Callable[[str], CpuSet]
) -> Observation:
    """A kernel CPU list or mask file (``parse`` says which) as a canonical CPU list; a missing
    file is ``unsupported`` for the ``absent`` reason, unparsable text is drift."""
    if text is None:
        return Observation(None, "unsupported", absent)
    try:
        return Observation(format_cpulist(parse(text)))
    except CpuSetError:
        return Observation(text, "drift", "not a kernel CPU set")
