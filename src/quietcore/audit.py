"""From one host's readings to its verdict: topology, resolved settings, declared vs actual.

Pure: the I/O happened in ``engine.read_hosts``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from quietcore.drift import SettingResult, compare, has_drift
from quietcore.facts import merge_reads
from quietcore.knobs.registry import FAMILIES
from quietcore.profile.cpuplan import CpuPlan, plan_cpus
from quietcore.profile.errors import ProfileError, ResolveError
from quietcore.profile.loaded import LoadedProfile
from quietcore.profile.resolve import refuse, resolve
from quietcore.profile.schema import Profile
from quietcore.readings import HostRead, ReadSpec
from quietcore.topology import TOPOLOGY_READS, Topology, parse_topology

HostStatus = Literal["ok", "drift", "refused", "unreachable"]


@dataclass(frozen=True)
class HostAudit:
    host: str
    status: HostStatus
    results: tuple[SettingResult, ...] = ()
    topology: Topology | None = None
    cpus: CpuPlan | None = None
    error: str | None = None  # why the host was refused or could not be read
    elapsed_s: float = 0.0


def reads_for_profile(profile: Profile) -> ReadSpec:
    """Everything one verify needs from a host: its topology and every family's knobs."""
    return merge_reads([TOPOLOGY_READS, *(knob.reads(profile) for knob in FAMILIES)])


def reads_for(loaded: LoadedProfile) -> ReadSpec:
    return reads_for_profile(loaded.profile)


def audit_host(loaded: LoadedProfile, read: HostRead) -> HostAudit:
    host, elapsed_s = read.host, read.elapsed_s
    if read.readings is None:
        return HostAudit(host, "unreachable", error=read.error, elapsed_s=elapsed_s)
    topology = parse_topology(read.readings)
    try:
        cpus = plan_cpus(loaded.profile, topology)
        settings = resolve(loaded, topology)
    except ResolveError as error:
        problem: ProfileError = refuse(loaded, error)
        return HostAudit(
            host, "refused", topology=topology, error=str(problem), elapsed_s=elapsed_s
        )
    results = tuple(compare(settings, read.readings, topology))
    status: HostStatus = "drift" if has_drift(results) else "ok"
    return HostAudit(host, status, results, topology, cpus, elapsed_s=elapsed_s)


def exit_code(audits: Sequence[HostAudit]) -> int:
    """0 all clean; 1 drift on some host; 2 a host refused the profile; 3 a host unreachable.
    The most severe wins: an unreadable host is worse than a known drift."""
    statuses = {audit.status for audit in audits}
    if "unreachable" in statuses:
        return 3
    if "refused" in statuses:
        return 2
    return 1 if "drift" in statuses else 0
