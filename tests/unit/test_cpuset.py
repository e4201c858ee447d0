"""CPU-set algebra: the kernel's list and mask forms, round trips and set laws.

Examples come from the kernel's documentation (kernel-parameters.txt "cpu lists",
core-api/irq/irq-affinity.rst) and from this machine's /proc/irq (read live, not changed).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quietcore.profile.cpuset import (
    MAX_CPUS,
    CpuSet,
    CpuSetError,
    complement,
    format_cpulist,
    format_cpumask,
    parse_cpulist,
    parse_cpumask,
)

cpu_ids = st.integers(min_value=0, max_value=1023)
cpu_sets = st.frozensets(cpu_ids, max_size=64)
widths = st.integers(min_value=1, max_value=1024)


# --- Lists ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cpus"),
    [
        ("0-3,8,10-11", {0, 1, 2, 3, 8, 10, 11}),
        ("0-15:2/4", {0, 1, 4, 5, 8, 9, 12, 13}),
        ("1,2,10-20", {1, 2, *range(10, 21)}),
        ("7", {7}),
        ("0-1\n", {0, 1}),  # as read from /sys/devices/system/cpu/online
        ("(null)", set()),  # what some kernels print for an empty list
        ("", set()),  # /sys/devices/system/cpu/isolated without isolcpus
    ],
)
def test_parse_kernel_lists(text: str, cpus: set[int]) -> None:
    assert parse_cpulist(text) == cpus


def test_parse_documented_group_example() -> None:
    # kernel-parameters.txt: "100-2000:2/25" is CPUs 100,101,125,126,150,151,...
    cpus = parse_cpulist("100-2000:2/25")
    assert sorted(cpus)[:6] == [100, 101, 125, 126, 150, 151]
    assert all((cpu - 100) % 25 < 2 for cpu in cpus)
    # The last group is cut at the range's end (the kernel's bitmap_set_region does the same).
    assert max(cpus) == 2000


@pytest.mark.parametrize(
    "text",
    ["3-1", "0-3,9-8", "a", "0-", "-1", "0,,1", "1 2", "0x3", "0-15:5/4", "0-15:0/4", "2-3;"],
)
def test_parse_refuses_reversed_ranges_and_garbage(text: str) -> None:
    with pytest.raises(CpuSetError):
        parse_cpulist(text)


def test_parse_refuses_lists_beyond_the_cpu_limit() -> None:
    with pytest.raises(CpuSetError):
        parse_cpulist(f"0-{MAX_CPUS}")


def test_format_collapses_runs() -> None:
    assert format_cpulist([11, 0, 2, 1, 3, 8, 10]) == "0-3,8,10-11"
    assert format_cpulist([]) == ""


@given(cpu_sets)
def test_list_round_trip_from_sets(cpus: CpuSet) -> None:
    assert parse_cpulist(format_cpulist(cpus)) == cpus


@given(cpu_sets)
def test_formatted_list_is_canonical(cpus: CpuSet) -> None:
    text = format_cpulist(cpus)
    assert format_cpulist(parse_cpulist(text)) == text
    # Canonical: any other spelling of the same set formats to the same text.
    spelled_out = ",".join(str(cpu) for cpu in sorted(cpus, reverse=True))
    assert format_cpulist(parse_cpulist(spelled_out)) == text


# --- Masks ------------------------------------------------------------------------------------


def _mask_value(mask: str) -> int:
    return int(mask.replace(",", ""), 16)


@pytest.mark.parametrize(
    ("text", "cpus"),
    [
        ("0000000f", {0, 1, 2, 3}),  # irq-affinity.rst, an 8-CPU box
        ("000000f0", {4, 5, 6, 7}),
        ("ffffffff", set(range(32))),
        ("3", {0, 1}),  # this 2-CPU machine's /proc/irq/N/smp_affinity
        ("00000001,00000000", {32}),
        ("ff,ffffffff", set(range(40))),
        ("0x3\n", {0, 1}),
        ("0", set()),
    ],
)
def test_parse_masks(text: str, cpus: set[int]) -> None:
    assert parse_cpumask(text) == cpus


@pytest.mark.parametrize("text", ["", "xyz", "123456789", "3,,0", "0-3", "ff ff"])
def test_parse_mask_refuses_garbage(text: str) -> None:
    with pytest.raises(CpuSetError):
        parse_cpumask(text)


@pytest.mark.parametrize(
    ("cpus", "width", "text"),
    [
        ({0, 1}, 2, "3"),
        ({0, 1, 2, 3}, 32, "0000000f"),
        ({0, 1}, 40, "00,00000003"),
        ({32}, 64, "00000001,00000000"),
        (set(), 8, "00"),
        (set(range(72)), 72, "ff,ffffffff,ffffffff"),
    ],
)
def test_format_mask_as_the_kernel_prints_it(cpus: set[int], width: int, text: str) -> None:
    assert format_cpumask(cpus, width_cpus=width) == text


@given(cpu_sets, widths)
def test_mask_round_trip_from_sets(cpus: CpuSet, width: int) -> None:
    assert parse_cpumask(format_cpumask(cpus, width_cpus=width)) == cpus


@given(cpu_sets, widths)
def test_mask_groups_are_32_bits(cpus: CpuSet, width: int) -> None:
    groups = format_cpumask(cpus, width_cpus=width).split(",")
    bits = max(width, max(cpus, default=0) + 1)
    assert len(groups) == -(-bits // 32)
    assert all(len(group) == 8 for group in groups[1:])
    assert 1 <= len(groups[0]) <= 8


@given(cpu_sets, widths)
def test_mask_and_list_agree(cpus: CpuSet, width: int) -> None:
    mask = format_cpumask(cpus, width_cpus=width)
    assert format_cpulist(parse_cpumask(mask)) == format_cpulist(cpus)
    assert _mask_value(mask) == sum(1 << cpu for cpu in cpus)


def _possible_count() -> int:
    possible = parse_cpulist(Path("/sys/devices/system/cpu/possible").read_text())
    return max(possible) + 1


@pytest.mark.host
def test_masks_of_this_kernel_match_its_lists() -> None:
    """Every IRQ's mask and list on the running kernel name the same CPUs, and formatting the
    list with the host's possible CPU count reproduces the kernel's exact mask text."""
    width = _possible_count()
    irqs = sorted(Path("/proc/irq").glob("[0-9]*"))
    assert irqs
    for irq in irqs:
        mask = (irq / "smp_affinity").read_text().strip()
        cpus = parse_cpulist((irq / "smp_affinity_list").read_text())
        assert parse_cpumask(mask) == cpus, irq
        assert format_cpumask(cpus, width_cpus=width) == mask, irq


# --- Set algebra ------------------------------------------------------------------------------


@given(cpu_sets, cpu_sets)
def test_union_and_intersection_survive_both_forms(a: CpuSet, b: CpuSet) -> None:
    union = parse_cpulist(f"{format_cpulist(a)},{format_cpulist(b)}".strip(","))
    assert union == a | b
    mask_a, mask_b = (_mask_value(format_cpumask(cpus)) for cpus in (a, b))
    assert _mask_value(format_cpumask(a | b)) == mask_a | mask_b
    assert _mask_value(format_cpumask(a & b)) == mask_a & mask_b


@given(cpu_sets, cpu_sets)
def test_complement_over_the_online_cpus(cpus: CpuSet, online: CpuSet) -> None:
    rest = complement(cpus, online)
    assert rest | (cpus & online) == online
    assert not rest & cpus
    assert complement(rest, online) == cpus & online


@given(cpu_sets, cpu_sets, cpu_sets)
def test_complement_follows_de_morgan(a: CpuSet, b: CpuSet, online: CpuSet) -> None:
    assert complement(a | b, online) == complement(a, online) & complement(b, online)
    assert complement(a & b, online) == complement(a, online) | complement(b, online)
