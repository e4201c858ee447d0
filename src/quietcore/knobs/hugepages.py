"""Hugepage pools, per NUMA node or host-wide, and the boot-time default hugepage size.

Keys: ``hugepages/node<N>/<size>kB`` (``/sys/devices/system/node/nodeN/hugepages/...``),
``hugepages/<size>kB`` (``/sys/kernel/mm/hugepages/...``, the sum over all nodes) and
``hugepages/default_size`` (``Hugepagesize:`` in ``/proc/meminfo``; it follows
``default_hugepagesz=`` on the kernel command line, so it changes only at boot).

Converging writes a pool's count into its ``nr_hugepages`` file; the kernel forgets runtime
pools at reboot, so the boot script writes them again. ``default_size`` is an effect: the
cmdline family sets ``default_hugepagesz=``, this key only proves it took.

Boot-time pools (``boot: true``, and the per-node pools ``bypass.hugepages`` derives on the
NUMA nodes local to the bypass devices, see ``bypass_resolve``) have the same keys but are
reboot-time: the cmdline family allocates them with ``hugepagesz=`` / ``hugepages=``, where
1G pages still find contiguous memory. The runtime write is tried as well (harmless: the kernel
allocates what it can, and a count it already has is no change).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from quietcore.knobs.base import KnobFamily, Observation, ResolveContext, Setting
from quietcore.knobs.bypass_resolve import format_size_kib, pools
from quietcore.knobs.node_check import Need, NodeCheck
from quietcore.profile.errors import ResolveError
from quietcore.profile.schema import Profile, size_kib
from quietcore.readings import Readings, ReadSpec
from quietcore.steps import NUMBER, Step, UnsafeStepError, Write, checked
from quietcore.topology import Topology

# The same globs as topology.TOPOLOGY_READS, so the bundle reads each file once.
HOST_POOLS = "/sys/kernel/mm/hugepages/hugepages-*kB/nr_hugepages"
NODE_POOLS = "/sys/devices/system/node/node[0-9]*/hugepages/hugepages-*kB/nr_hugepages"
MEMINFO = "/proc/meminfo"
DEFAULT_SIZE_KEY = "hugepages/default_size"

_POOL_KEY = re.compile(r"^hugepages/(?:node(\d+)/)?(\d+)kB$")
_POOL_SIZE = re.compile(r"/hugepages-(\d+)kB/")
_MEMINFO_DEFAULT = re.compile(r"^Hugepagesize:\s*(\d+)\s*kB$")
_PAGESIZE = re.compile(r"^([0-9]+)([KMG])$")
MOUNTS = "/proc/mounts"


def host_pool_path(kib: int) -> str:
    return f"/sys/kernel/mm/hugepages/hugepages-{kib}kB/nr_hugepages"


def node_pool_path(node: int, kib: int) -> str:
    return f"/sys/devices/system/node/node{node}/hugepages/hugepages-{kib}kB/nr_hugepages"


def pool_key(kib: int, node: int | None) -> str:
    return f"hugepages/{kib}kB" if node is None else f"hugepages/node{node}/{kib}kB"


def default_size_kib(meminfo: Iterable[str]) -> int | None:
    """The ``Hugepagesize:`` of ``/proc/meminfo``; ``None`` without hugetlbfs."""
    for line in meminfo:
        match = _MEMINFO_DEFAULT.match(line.strip())
        if match:
            return int(match.group(1))
    return None


def _unescape(field: str) -> str:
    """/proc/mounts writes space, tab, newline and backslash as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), field)


def hugetlbfs_mounts(lines: Iterable[str], default_kib: int | None) -> dict[int, list[str]]:
    """Page size (KiB) -> mount points of hugetlbfs, in ``/proc/mounts`` order. A mount
    without ``pagesize=`` serves the default hugepage size."""
    mounts: dict[int, list[str]] = {}
    for line in lines:
        words = line.split()
        if len(words) < 4 or words[2] != "hugetlbfs":
            continue
        kib = default_kib
        for option in words[3].split(","):
            name, _, value = option.partition("=")
            match = _PAGESIZE.match(value)
            if name == "pagesize" and match:
                kib = size_kib(f"{match.group(1)}{match.group(2)}")
        if kib is not None:
            mounts.setdefault(kib, []).append(_unescape(words[1]))
    return mounts


def offered_sizes_kib(readings: Readings) -> list[int]:
    """The hugepage sizes the host's kernel offers, from its host-wide pool files."""
    found = (_POOL_SIZE.search(path) for path in readings.glob(HOST_POOLS))
    return sorted(int(match.group(1)) for match in found if match)


def _parse_pool_key(key: str) -> tuple[int | None, int]:
    """``hugepages/node1/2048kB`` -> (1, 2048); ``hugepages/2048kB`` -> (None, 2048)."""
    match = _POOL_KEY.fullmatch(key)
    if match is None:
        raise ValueError(f"not a hugepages key: {key!r}")
    return (None if match.group(1) is None else int(match.group(1))), int(match.group(2))


class HugepagesKnob(KnobFamily):
    name = "hugepages"
    boot_script = True

    def reads(self, profile: Profile) -> ReadSpec:
        section = profile.hugepages
        derived = profile.bypass.hugepages is not None
        files = [HOST_POOLS] if section.pages or derived else []
        if derived or any(pool.node is not None for pool in section.pages):
            files.append(NODE_POOLS)
        if section.default_size is not None:
            files.append(MEMINFO)
        return ReadSpec(files=tuple(files))

    def desired(self, ctx: ResolveContext) -> Iterable[Setting]:
        # Sizes, nodes and memory are checked by resolve before any family runs.

        section = ctx.profile.hugepages
        every = pools(ctx)
        host_wide = {pool.kib for pool in every if pool.node is None}
        for pool in every:
            if pool.node is not None and pool.kib in host_wide:
                # Writing the host-wide count redistributes pages over the nodes, so the two
                # declarations would undo each other.
                raise ResolveError(
                    pool.origin,
                    f"{format_size_kib(pool.kib)} pages are declared both for node {pool.node} "
                    "and for the whole host; declare either per-node pools or one host-wide count",
                )
            key = pool_key(pool.kib, pool.node)
            yield ctx.setting(self.name, key, str(pool.pages), pool.count_field, reboot=pool.boot)
        if section.default_size is not None:
            size = format_size_kib(size_kib(section.default_size))
            yield ctx.setting(
                self.name,
                DEFAULT_SIZE_KEY,
                size,
                "hugepages.default_size",
                reboot=True,
                effect=True,
            )

    def observe(self, setting: Setting, readings: Readings, topology: Topology) -> Observation:
        if setting.key == DEFAULT_SIZE_KEY:
            kib = default_size_kib(readings.lines(MEMINFO) or ())
            if kib is None:
                return Observation(None, "unsupported", "kernel built without hugetlbfs")
            return Observation(format_size_kib(kib))
        node, kib = _parse_pool_key(setting.key)
        offered = offered_sizes_kib(readings)
        if kib not in offered:
            sizes = ", ".join(format_size_kib(size) for size in offered) or "none"
            return Observation(
                None,
                "unsupported",
                f"this host offers no {format_size_kib(kib)} hugepages (offered: {sizes})",
            )
        if node is None:
            return Observation(readings.first_line(host_pool_path(kib)))
        count = readings.first_line(node_pool_path(node, kib))
        if count is None:
            return Observation(
                None, "missing", f"NUMA node {node} has no {format_size_kib(kib)} hugepage pool"
            )
        return Observation(count)

    def steps_to_set(
        self, key: str, value: str | None, readings: Readings, topology: Topology
    ) -> tuple[Step, ...]:
        if key == DEFAULT_SIZE_KEY:  # an effect of default_hugepagesz=, set by cmdline
            return ()
        try:
            node, kib = _parse_pool_key(key)
        except ValueError as error:
            raise UnsafeStepError(str(error)) from None
        if value is None:  # the pool did not exist before: nothing to restore
            return ()
        path = host_pool_path(kib) if node is None else node_pool_path(node, kib)
        return (Write(path, checked(value, NUMBER, key)),)

    def node_check(self, setting: Setting) -> NodeCheck:
        if setting.key == DEFAULT_SIZE_KEY:
            return NodeCheck(
                setting.key,
                MEMINFO,
                "meminfo_kib",
                setting.desired,
                "unsupported",
                absent_reason="kernel built without hugetlbfs",
                label="Hugepagesize",
            )
        node, kib = _parse_pool_key(setting.key)
        size = format_size_kib(kib)
        offered = Need(host_pool_path(kib), "unsupported", f"no {size} hugepages offered")
        if node is None:
            return NodeCheck(
                setting.key,
                offered.path,
                "exact",
                setting.desired,
                offered.status,
                absent_reason=offered.reason,
            )
        return NodeCheck(
            setting.key,
            node_pool_path(node, kib),
            "exact",
            setting.desired,
            absent_reason=f"NUMA node {node} has no {size} hugepage pool",
            needs=(offered,),
        )
