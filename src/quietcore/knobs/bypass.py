"""Kernel-bypass readiness: what a poll-mode application finds when it starts. Verify-only.

Keys (effects: other families and the boot produce them, nothing here sets anything):

- ``bypass/hugetlbfs`` = the ``bypass.hugepages`` size (``1G``): a hugetlbfs mount in
  ``/proc/mounts`` with that ``pagesize=`` (DPDK maps its memory from such a mount); actual is
  the page sizes of the mounts there are, ``none`` without any;
- ``bypass/free/node<N>/<size>`` = ``at least 1``: free pages of that size
  (``free_hugepages``) on each NUMA node local to the bypass devices (see ``bypass_resolve``);
  actual is the number of free pages;
- ``bypass/numa/<PCI address>`` = the poll CPUs: the device's NUMA node must hold one of them,
  or every packet crosses the interconnect; actual is the CPUs of the device's node. A device
  of unknown node (-1) on a host with several nodes is drift, with that reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from quietcore.knobs.base import KnobFamily, Observation, ResolveContext, Setting
from quietcore.knobs.bypass_resolve import (
    devices,
    format_size_kib,
    local_nodes,
    nodes_of,
    poll_cpus,
)
from quietcore.knobs.hugepages import MEMINFO, MOUNTS, default_size_kib, hugetlbfs_mounts
from quietcore.profile.cpuset import CpuSetError, format_cpulist, parse_cpulist
from quietcore.profile.schema import Profile, size_kib
from quietcore.readings import Readings, ReadSpec
from quietcore.topology import Topology

FREE_PAGES = "/sys/devices/system/node/node[0-9]*/hugepages/hugepages-*kB/free_hugepages"
HUGETLBFS_KEY = "bypass/hugetlbfs"
AT_LEAST = "at least "
NONE = "none"
_FREE_KEY = re.compile(r"^bypass/free/node(\d+)/(\d+)kB$")
_NUMA_PREFIX = "bypass/numa/"
FIELD = "bypass.hugepages"


def free_path(node: int, kib: int) -> str:
    return f"/sys/devices/system/node/node{node}/hugepages/hugepages-{kib}kB/free_hugepages"


class BypassKnob(KnobFamily):
    name = "bypass"
    unchecked_on_node = (
        "readiness is judged from /proc/mounts, free-page counts and the PCI listing, which "
        "`quietcore verify` reads over SSH"
    )

    def reads(self, profile: Profile) -> ReadSpec:
        if profile.bypass.hugepages is None:
            return ReadSpec()
        return ReadSpec(files=(MOUNTS, MEMINFO, FREE_PAGES))

    def desired(self, ctx: ResolveContext) -> Iterable[Setting]:
        bypass = ctx.profile.bypass
        settings = []
        if bypass.hugepages is not None:
            kib = size_kib(bypass.hugepages.size)
            size = format_size_kib(kib)
            settings.append(
                ctx.setting(self.name, HUGETLBFS_KEY, size, f"{FIELD}.size", effect=True)
            )
            for node in local_nodes(ctx):
                key = f"bypass/free/node{node}/{kib}kB"
                settings.append(ctx.setting(self.name, key, f"{AT_LEAST}1", FIELD, effect=True))
        if bypass.devices:
            cpus = format_cpulist(poll_cpus(ctx))
            for field, device in devices(ctx):
                key = f"{_NUMA_PREFIX}{device.address}"
                settings.append(ctx.setting(self.name, key, cpus, field, effect=True))
        return settings

    def observe(self, setting: Setting, readings: Readings, topology: Topology) -> Observation:
        if setting.key == HUGETLBFS_KEY:
            return self._mount(setting, readings)
        free = _FREE_KEY.fullmatch(setting.key)
        if free is not None:
            node, kib = int(free.group(1)), int(free.group(2))
            count = readings.first_line(free_path(node, kib))
            if count is None:
                size = format_size_kib(kib)
                return Observation(None, "missing", f"NUMA node {node} has no {size} pool")
            return Observation(count)
        return self._locality(setting, topology)

    def _mount(self, setting: Setting, readings: Readings) -> Observation:
        default_kib = default_size_kib(readings.lines(MEMINFO) or ())
        mounts = hugetlbfs_mounts(readings.lines(MOUNTS) or (), default_kib)
        for kib, points in mounts.items():
            if format_size_kib(kib) == setting.desired:
                return Observation(setting.desired, reason=f"mounted at {points[0]}")
        sizes = sorted(format_size_kib(kib) for kib in mounts)
        mounted = ", ".join(
            f"{point} ({format_size_kib(kib)})" for kib, each in mounts.items() for point in each
        )
        return Observation(
            ",".join(sizes) or NONE,
            reason=f"no hugetlbfs mount with pagesize={setting.desired}"
            + (f"; mounted: {mounted}" if mounted else ""),
        )

    def _locality(self, setting: Setting, topology: Topology) -> Observation:
        address = setting.key.removeprefix(_NUMA_PREFIX)
        device = topology.pci_devices.get(address)
        if device is None:
            return Observation(None, "missing", f"no PCI device {address} on this host")
        node = device.numa_node
        if node is None and len(topology.nodes) > 1:
            return Observation(
                "unknown",
                "drift",
                f"{address} reports NUMA node -1 (the firmware gives no proximity), so its "
                "locality to the poll CPUs cannot be known on this multi-node host",
            )
        node = min(topology.nodes) if node is None else node
        cpus = topology.nodes[node].cpus if node in topology.nodes else frozenset()
        try:
            poll = nodes_of(parse_cpulist(setting.desired), topology)
        except CpuSetError:
            poll = []
        where = ", ".join(str(each) for each in poll) or "no node"
        return Observation(
            format_cpulist(cpus),
            reason=f"{address} is on NUMA node {node}; poll CPUs {setting.desired} are on "
            f"node {where}",
        )

    def matches(self, setting: Setting, actual: str) -> bool:
        if _FREE_KEY.fullmatch(setting.key):
            wanted = int(setting.desired.removeprefix(AT_LEAST))
            return actual.isdigit() and int(actual) >= wanted
        if setting.key.startswith(_NUMA_PREFIX):
            try:
                return bool(parse_cpulist(setting.desired) & parse_cpulist(actual))
            except CpuSetError:
                return False
        return super().matches(setting, actual)
