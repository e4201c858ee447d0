"""CPU-set algebra in the kernel's two text forms.

The kernel writes CPU sets as *lists* (``0-3,8,10-11``: ``/sys/devices/system/cpu/online``,
``smp_affinity_list``) and as *masks* (hex, most significant 32-bit group first, groups
separated by commas: ``/proc/irq/N/smp_affinity``, ``rps_cpus``, workqueue ``cpumask``).
Everything inside quietcore is a ``frozenset[int]``; these functions are the only place that
converts, so every comparison happens on sets and ``0-1`` equals ``0,1`` equals mask ``3``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

CpuSet = frozenset[int]

_LIST_ITEM = re.compile(r"^(\d+)(?:-(\d+)(?::(\d+)/(\d+))?)?$")
_MASK_GROUP = re.compile(r"^[0-9a-fA-F]{1,8}$")
# Refuse absurd lists early: no machine has this many CPUs and a typo like "0-99999999"
# must not allocate a giant set.
MAX_CPUS = 8192


class CpuSetError(ValueError):
    """A CPU list or mask that the kernel would not accept."""


def parse_cpulist(text: str) -> CpuSet:
    """Parse a kernel CPU list such as ``0-3,8,10-11`` (also ``0-15:2/4`` groups, empty)."""
    text = text.strip()
    if text in ("", "(null)"):
        return frozenset()
    cpus: set[int] = set()
    for item in text.split(","):
        match = _LIST_ITEM.match(item.strip())
        if not match:
            raise CpuSetError(f"not a CPU list item: {item!r} in {text!r}")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if last < first:
            raise CpuSetError(f"reversed CPU range {item!r}: {last} is below {first}")
        if last >= MAX_CPUS:
            raise CpuSetError(f"CPU {last} in {item!r} is beyond the {MAX_CPUS}-CPU limit")
        if match.group(3) is not None:
            used, group = int(match.group(3)), int(match.group(4))
            if not 0 < used <= group:
                raise CpuSetError(f"bad CPU group stride {item!r}")
            cpus.update(c for c in range(first, last + 1) if (c - first) % group < used)
        else:
            cpus.update(range(first, last + 1))
    return frozenset(cpus)


def format_cpulist(cpus: Iterable[int]) -> str:
    """Format CPUs as the kernel does: ascending, consecutive runs collapsed (``0-3,8``)."""
    return format_ranges(cpus)


def format_ranges(numbers: Iterable[int]) -> str:
    """Ascending, consecutive runs collapsed: ``0-3,8`` (CPUs, thread IDs)."""
    ordered = sorted(set(numbers))
    runs: list[str] = []
    index = 0
    while index < len(ordered):
        start = end = ordered[index]
        while index + 1 < len(ordered) and ordered[index + 1] == end + 1:
            index += 1
            end = ordered[index]
        runs.append(str(start) if start == end else f"{start}-{end}")
        index += 1
    return ",".join(runs)


def parse_cpumask(text: str) -> CpuSet:
    """Parse a hex CPU mask, with or without the kernel's comma-separated 32-bit groups."""
    text = text.strip().lower().removeprefix("0x")
    if not text:
        raise CpuSetError("empty CPU mask")
    groups = text.split(",")
    if any(not _MASK_GROUP.match(group) for group in groups):
        raise CpuSetError(f"not a hex CPU mask: {text!r}")
    value = 0
    for group in groups:
        value = (value << 32) | int(group, 16)
    if value.bit_length() > MAX_CPUS:
        raise CpuSetError(f"CPU mask {text!r} names CPUs beyond the {MAX_CPUS}-CPU limit")
    return frozenset(bit for bit in range(value.bit_length()) if value >> bit & 1)


def format_cpumask(cpus: Iterable[int], width_cpus: int = 32) -> str:
    """Format CPUs as the kernel prints a mask of ``width_cpus`` bits (``%*pb``): 32-bit groups
    of 8 hex digits joined by commas, most significant first, the leading group only as wide
    as the bits it holds.

    ``width_cpus`` is the host's possible CPU count (``nr_cpu_ids``), so the text equals what
    the kernel shows: ``3`` on a 2-CPU host, ``0000000f`` on 32, ``00,00000003`` on 40.
    """
    value = 0
    for cpu in cpus:
        value |= 1 << cpu
    bits = max(width_cpus, value.bit_length(), 1)
    groups = -(-bits // 32)
    lead_digits = -(-(bits % 32 or 32) // 4)
    text = [f"{(value >> (32 * i)) & 0xFFFFFFFF:08x}" for i in reversed(range(groups))]
    text[0] = text[0][8 - lead_digits :]
    return ",".join(text)


# ``isolated[0]``, ``reserved[1-2]``: CPUs picked by position (0 = the lowest) from a named set.
_SELECTION = re.compile(r"^([a-z]+)\[(\d+)(?:-(\d+))?\]$")


def parse_selection(text: str) -> tuple[str, range] | None:
    """``isolated[1-2]`` -> (``isolated``, range(1, 3)); ``None`` when ``text`` picks nothing
    by position. A reversed range is refused."""
    match = _SELECTION.match(text.strip())
    if match is None:
        return None
    first = int(match.group(2))
    last = int(match.group(3)) if match.group(3) is not None else first
    if last < first:
        raise CpuSetError(f"reversed position range in {text!r}: {last} is below {first}")
    return match.group(1), range(first, last + 1)


def select_positions(cpus: CpuSet, positions: range, name: str) -> CpuSet:
    """The CPUs at ``positions`` of ``cpus`` in ascending order (``name`` labels errors)."""
    ordered = sorted(cpus)
    if positions.stop > len(ordered):
        raise CpuSetError(
            f"{name}[{positions.start}{'' if len(positions) == 1 else f'-{positions.stop - 1}'}]"
            f" asks for position {positions.stop - 1} but {name} has {len(ordered)} CPU"
            f"{'' if len(ordered) == 1 else 's'} ({format_cpulist(cpus) or 'none'})"
        )
    return frozenset(ordered[index] for index in positions)


def complement(cpus: CpuSet, universe: CpuSet) -> CpuSet:
    """The CPUs of ``universe`` (usually the online CPUs) that are not in ``cpus``."""
    return universe - cpus
