"""`quietcore container-args` on a real capture of this Firecracker VM (2 CPUs, one NUMA node,
2M and 1G hugepage sizes, hugetlbfs mounted for both; see tests/data/units/README.md), and on
the 4-CPU, 2-node lab capture for the NUMA-local choice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.conftest import run_cli

from quietcore.container_args import container_placement, memory_flag
from quietcore.knobs.hugepages import hugetlbfs_mounts
from quietcore.profile.errors import ResolveError
from quietcore.profile.load import load_profile
from quietcore.readings import Readings, parse_bundle_output
from quietcore.topology import parse_topology

DATA = Path(__file__).resolve().parents[1] / "data" / "units"
FIRECRACKER = "firecracker-container-args"


def capture(name: str) -> Readings:
    return parse_bundle_output((DATA / f"{name}.txt").read_text().splitlines())


def profile(tmp_path: Path, workloads: str, cpu: str = "reserved: '0'\n  isolated: rest") -> str:
    path = tmp_path / "w.yaml"
    path.write_text(f"name: w\ncpu:\n  {cpu}\ncontainers:\n  workloads:\n{workloads}")
    return str(path)


def placement(path: str, name: str, capture_name: str = FIRECRACKER) -> tuple[str, ...]:
    readings = capture(capture_name)
    return container_placement(load_profile(path), name, readings, parse_topology(readings)).args


def test_flags_place_the_container_on_its_cpus_node_and_hugepages(tmp_path: Path) -> None:
    path = profile(
        tmp_path,
        "    - {name: feed, cpus: 'isolated[0]', memory: 512M, memlock: infinity, hugepages: 1G}\n",
    )
    assert placement(path, "feed") == (
        "--cpuset-cpus=1",
        "--cpuset-mems=0",
        "--memory=512m",
        "--ulimit=memlock=-1:-1",
        "--mount=type=bind,source=/tmp/qc-helper-a/hp1g,destination=/dev/hugepages",
    )


def test_the_default_page_size_mount_serves_2m(tmp_path: Path) -> None:
    path = profile(tmp_path, "    - {name: feed, cpus: '1', hugepages: 2M, memlock: 4M}\n")
    args = placement(path, "feed")
    assert args[-2:] == (
        "--ulimit=memlock=4194304:4194304",
        "--mount=type=bind,source=/tmp/qc-helper-a/hp2m,destination=/dev/hugepages",
    )


def test_local_memory_is_the_node_of_the_cpus_on_a_two_node_host(tmp_path: Path) -> None:
    path = profile(
        tmp_path,
        "    - {name: a, cpus: 'isolated[1]'}\n    - {name: b, cpus: '0-3', mem_nodes: 0}\n",
        cpu="reserved: '0-1'\n  isolated: rest",
    )
    assert placement(path, "a", "lab-before") == ("--cpuset-cpus=3", "--cpuset-mems=1")
    assert placement(path, "b", "lab-before") == ("--cpuset-cpus=0-3", "--cpuset-mems=0")


@pytest.mark.parametrize(
    ("workload", "field", "message"),
    [
        ("{name: feed, cpus: '1', mem_nodes: 1}", "containers.workloads.0.mem_nodes", "node 1"),
        ("{name: feed, cpus: '1', hugepages: 16G}", "containers.workloads.0.hugepages", "16G"),
        ("{name: feed, cpus: 'isolated[3]'}", "containers.workloads.0.cpus", "isolated"),
    ],
)
def test_what_the_host_cannot_give_is_refused_with_the_field(
    tmp_path: Path, workload: str, field: str, message: str
) -> None:
    path = profile(tmp_path, f"    - {workload}\n")
    with pytest.raises(ResolveError) as raised:
        placement(path, "feed")
    assert raised.value.field == field and message in raised.value.message, raised.value


def test_a_missing_mount_says_how_to_make_one(tmp_path: Path) -> None:
    path = profile(tmp_path, "    - {name: feed, cpus: '1', hugepages: 2M}\n")
    readings = capture(FIRECRACKER)
    unmounted = Readings(
        {p: v for p, v in readings.files.items() if p != "/proc/mounts"}, readings.commands
    )
    with pytest.raises(ResolveError, match="mount -t hugetlbfs -o pagesize=2M"):
        container_placement(load_profile(path), "feed", unmounted, parse_topology(readings))


def test_an_unknown_workload_lists_the_declared_ones(tmp_path: Path) -> None:
    path = profile(tmp_path, "    - {name: feed, cpus: '1'}\n")
    with pytest.raises(ResolveError, match=r"no workload named 'nope'.*declare.*feed"):
        placement(path, "nope")


def test_runtime_isolation_refuses_its_partitioned_cpus(tmp_path: Path) -> None:
    path = profile(
        tmp_path,
        "    - {name: feed, cpus: 'isolated[0]'}\n",
        cpu="reserved: '0'\n  isolated: rest\n  isolation: [cpuset]",
    )
    with pytest.raises(ResolveError, match="cpuset partition"):
        placement(path, "feed")


def test_sizes_and_mount_parsing() -> None:
    assert [memory_flag(n) for n in (8 * 1024**3, 1536 * 1024**2, 4097)] == ["8g", "1536m", "4097"]
    lines = [r"none /mnt/huge\040pages hugetlbfs rw,pagesize=2M 0 0", "none /x hugetlbfs rw 0 0"]
    assert hugetlbfs_mounts(lines, 2048) == {2048: ["/mnt/huge pages", "/x"]}


def test_cli_prints_one_shell_line_and_refuses_with_file_and_line(tmp_path: Path) -> None:
    """@local here is this machine: 2 CPUs on one node (the capture's machine)."""
    path = profile(tmp_path, "    - {name: feed, cpus: '1', memory: 1G}\n")
    result = run_cli("container-args", "-p", path, "-w", "feed")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "--cpuset-cpus=1 --cpuset-mems=0 --memory=1g\n"
    as_json = json.loads(run_cli("container-args", "-p", path, "-w", "feed", "-f", "json").stdout)
    assert as_json["args"] == ["--cpuset-cpus=1", "--cpuset-mems=0", "--memory=1g"]
    refused = run_cli("container-args", "-p", path, "-w", "other")
    assert refused.returncode == 2
    assert "w.yaml:6: containers.workloads: no workload named 'other'" in refused.stderr
