"""Export a quietcore profile to the formats of other tuning tools (OpenShift's
PerformanceProfile, a TuneD profile directory), for teams that keep those tools.

Pure: a ``LoadedProfile`` and, when the profile's CPU sets depend on a host, that host's
``Topology`` in; text and the list of what the target format cannot express out. A profile
that names only literal CPU lists exports without a host; ``rest``, ``all`` and
``{per_numa_node: N}`` need one, and are refused without it, naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass

from quietcore.profile.cpuplan import CpuPlan, plan_cpus, resolve_cpu_text
from quietcore.profile.cpuset import CpuSet, format_cpulist, parse_cpulist
from quietcore.profile.errors import ResolveError
from quietcore.profile.loaded import LoadedProfile
from quietcore.profile.resolve import resolve
from quietcore.topology import Topology

HOST_NEEDED = "needs a host's topology: pass --topology-from TARGET"


@dataclass(frozen=True)
class Export:
    """The exported files (name -> text) and what the target format cannot express."""

    files: dict[str, str]
    not_expressed: tuple[str, ...]


@dataclass(frozen=True)
class CpuSets:
    """The profile's CPU sets, concrete on a host or from literal lists alone."""

    plan: CpuPlan
    known_online: bool  # False: no host was read, ``plan.online`` is only reserved | isolated

    def resolve(self, spec: str, field: str) -> CpuSet:
        if not self.known_online and spec in ("all", "rest"):
            raise ResolveError(field, f"{spec!r} {HOST_NEEDED}")
        try:
            return resolve_cpu_text(spec, self.plan)
        except ResolveError as error:
            raise ResolveError(error.field or field, error.message) from None


def cpu_sets(loaded: LoadedProfile, topology: Topology | None) -> CpuSets:
    """The CPU sets to export. With a topology the whole profile is resolved first, so what
    the host cannot satisfy is refused exactly as ``plan`` would refuse it."""
    profile = loaded.profile
    if topology is not None:
        resolve(loaded, topology)
        return CpuSets(plan_cpus(profile, topology), known_online=True)
    cpu = profile.cpu
    if cpu.reserved is not None and not isinstance(cpu.reserved, str):
        raise ResolveError("cpu.reserved.per_numa_node", HOST_NEEDED)
    if cpu.reserved == "all":
        raise ResolveError("cpu.reserved", f"'all' {HOST_NEEDED}")
    if cpu.isolated == "rest":
        raise ResolveError("cpu.isolated", f"'rest' {HOST_NEEDED}")
    reserved: CpuSet = parse_cpulist(cpu.reserved) if cpu.reserved else frozenset()
    isolated: CpuSet = parse_cpulist(cpu.isolated) if cpu.isolated else frozenset()
    if overlap := reserved & isolated:
        raise ResolveError("cpu.isolated", f"CPUs {format_cpulist(overlap)} are also reserved")
    plan = CpuPlan(online=reserved | isolated, reserved=reserved, isolated=isolated)
    return CpuSets(plan, known_online=False)
