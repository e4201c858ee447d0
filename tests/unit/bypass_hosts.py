"""The lab captures of kernel-bypass readiness (``tests/data/bypass/``, see its README).

``python -m tests.unit.bypass_hosts`` prints the bundle script that made them: the topology
and what every family reads for ``PROFILE`` (kernel-bypass listing the lab's bypass NIC); run
it in the lab with ``quietcore lab ssh bp -- sh -s < script > tests/data/bypass/NAME.txt``.
"""

from __future__ import annotations

from pathlib import Path

from quietcore.facts import bundle_script, merge_reads
from quietcore.knobs.base import ResolveContext
from quietcore.knobs.registry import FAMILIES
from quietcore.profile.cpuplan import plan_cpus
from quietcore.profile.load import load_profile
from quietcore.profile.loaded import LoadedProfile
from quietcore.readings import Readings, ReadSpec, parse_bundle_output
from quietcore.topology import TOPOLOGY_READS, Topology, parse_topology

DATA = Path(__file__).resolve().parents[1] / "data" / "bypass"
PROFILE = DATA / "lab-bypass.yaml"
UNTUNED = "lab-untuned"  # as booted: virtio-pci, IOMMU translated, no 1G page
READY = "lab-ready"  # after the bypass kernel arguments, a reboot and the NIC bound
DEVICE = "0000:81:00.0"


def loaded() -> LoadedProfile:
    return load_profile(str(PROFILE))


def capture_spec() -> ReadSpec:
    profile = loaded().profile
    return merge_reads([TOPOLOGY_READS, *(family.reads(profile) for family in FAMILIES)])


def readings(name: str) -> Readings:
    return parse_bundle_output((DATA / f"{name}.txt").read_text().splitlines())


def host(name: str) -> tuple[Readings, Topology]:
    found = readings(name)
    return found, parse_topology(found)


def context(topology: Topology, profile: LoadedProfile | None = None) -> ResolveContext:
    chosen = profile or loaded()
    return ResolveContext(
        chosen.profile, topology, plan_cpus(chosen.profile, topology), chosen.source_of
    )


if __name__ == "__main__":
    print(bundle_script(capture_spec()))
