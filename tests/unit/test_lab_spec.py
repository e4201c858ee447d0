"""Lab shapes and names: what is accepted, what is refused and why (pure)."""

from __future__ import annotations

import pytest

from quietcore.lab.spec import LabError, LabSpec, check_name, format_mib, parse_memory


@pytest.mark.parametrize(
    ("text", "mib"), [("2G", 2048), ("2g", 2048), ("2GiB", 2048), ("1536M", 1536), ("512MB", 512)]
)
def test_memory_sizes(text: str, mib: int) -> None:
    assert parse_memory(text) == mib


@pytest.mark.parametrize("text", ["", "2", "2T", "1.5G", "-1G", "2 G B", "G"])
def test_bad_memory_sizes_are_refused(text: str) -> None:
    with pytest.raises(LabError, match="bad memory size"):
        parse_memory(text)


def test_format_mib() -> None:
    assert (format_mib(2048), format_mib(1536)) == ("2G", "1536M")


@pytest.mark.parametrize("name", ["default", "a", "pytest-b", "lab-01", "0123456789ab"])
def test_good_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "Default", "-x", "a_b", "a b", "a;rm", "0123456789abc", "../x", "x\n"]
)
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(LabError, match="bad lab name"):
        check_name(name)


def test_memory_that_does_not_split_over_the_nodes_is_refused() -> None:
    with pytest.raises(LabError, match="does not split evenly over 3 NUMA nodes"):
        LabSpec(name="x", cpus=3, numa_nodes=3, memory_mib=1000)


def test_cpus_that_do_not_split_over_the_nodes_are_refused() -> None:
    with pytest.raises(LabError, match="5 CPUs do not split evenly over 2 NUMA nodes"):
        LabSpec(name="x", cpus=5, numa_nodes=2)


def test_more_nodes_than_cpus_is_refused() -> None:
    with pytest.raises(LabError, match="one CPU per node at least"):
        LabSpec(name="x", cpus=2, numa_nodes=4)


def test_cpus_per_node_must_be_whole_smt_cores() -> None:
    with pytest.raises(LabError, match="not whole cores of 2 threads"):
        LabSpec(name="x", cpus=6, numa_nodes=2, memory_mib=2048, threads=2)


def test_tiny_nodes_are_refused() -> None:
    with pytest.raises(LabError, match="at least 256M"):
        LabSpec(name="x", cpus=4, numa_nodes=4, memory_mib=512)


def test_every_problem_is_named_at_once() -> None:
    with pytest.raises(LabError) as caught:
        LabSpec(name="x", cpus=5, numa_nodes=2, memory_mib=1001, nic_queues=0)
    message = str(caught.value)
    assert "5 CPUs" in message
    assert "1001M" in message
    assert "--nic-queues" in message


def test_derived_names_and_layout() -> None:
    spec = LabSpec(name="trade-1", cpus=8, numa_nodes=2, memory_mib=4096)
    assert (spec.tap, spec.host) == ("qctrade-1", "lab-trade-1")
    assert len(LabSpec(name="abcdefghijkl").tap) <= 15  # IFNAMSIZ - 1
    assert [spec.node_cpus(node) for node in range(2)] == [(0, 3), (4, 7)]
    assert spec.node_memory_mib == 2048
    assert LabSpec.from_dict(spec.to_dict()) == spec
