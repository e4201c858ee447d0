"""Runtime isolation applied to this machine and rolled back: every cpuset cgroup file and
every thread's allowed CPUs and cgroup must equal what they were before.

On this kind of machine (2 CPUs, cgroup v1, no systemd) ``examples/runtime-isolation.yaml``
reserves CPU 0 and isolates CPU 1. Nothing here touches the interfaces or the IRQs' handlers:
IRQ affinity moves to CPU 0 and back, which keeps the machine reachable.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from quietcore import cgroup_layout
from quietcore.profile.cpuset import parse_cpulist
from tests.conftest import run_cli

pytestmark = pytest.mark.host

ROOT = Path(__file__).parents[2]
PROFILE = str(ROOT / "examples" / "runtime-isolation.yaml")
# Kernel statistics, not settings: they change by themselves.
VOLATILE = {"cpuset.memory_pressure"}


def _version() -> cgroup_layout.CgroupVersion:
    controllers = Path(cgroup_layout.V2_CONTROLLERS)
    v1_cpus = Path(cgroup_layout.V1_ROOT_CPUS)
    version = cgroup_layout.cpuset_version(
        controllers.read_text() if controllers.exists() else None,
        v1_cpus.read_text() if v1_cpus.exists() else None,
    )
    assert version is not None, "this machine has no cpuset cgroup controller"
    return version


def cgroup_files() -> dict[str, str]:
    """Every cpuset setting of every cgroup, and which cgroups exist."""
    files: dict[str, str] = {}
    for directory, _, names in os.walk(cgroup_layout.root(_version())):
        files[directory] = "(cgroup)"
        for name in names:
            if name.startswith("cpuset.") and name not in VOLATILE:
                try:
                    files[f"{directory}/{name}"] = Path(directory, name).read_text().strip()
                except OSError as error:  # write-only or gone
                    files[f"{directory}/{name}"] = f"unreadable: {error.strerror}"
    subtree = Path(cgroup_layout.V2_ROOT, "cgroup.subtree_control")
    if subtree.exists():
        files[str(subtree)] = subtree.read_text()
    return files


def threads() -> dict[tuple[int, int], tuple[frozenset[int], str, str]]:
    """(TID, start time) -> (allowed CPUs, cpuset cgroup, name) of every thread: the start time
    tells a thread from a later one that took its TID (``pid_max`` is 32768 here)."""
    found = {}
    for task in Path("/proc").glob("[0-9]*/task/[0-9]*"):
        tid = int(task.name)
        try:
            started = int((task / "stat").read_text().rpartition(")")[2].split()[19])
            allowed = frozenset(os.sched_getaffinity(tid))
            found[tid, started] = (
                allowed,
                (task / "cpuset").read_text().strip(),
                (task / "comm").read_text().strip(),
            )
        except OSError:
            continue  # exited
    return found


@pytest.fixture
def pinned_sleepers() -> Iterator[dict[int, frozenset[int]]]:
    """Processes an operator pinned by hand, one to each CPU: rollback must give each its own
    CPUs back, not merely "all CPUs"."""
    processes = {
        cpu: subprocess.Popen(["taskset", "-c", str(cpu), "sleep", "600"]) for cpu in (0, 1)
    }
    yield {process.pid: frozenset({cpu}) for cpu, process in processes.items()}
    for process in processes.values():
        process.kill()
        process.wait()


@pytest.fixture
def rolled_back_afterwards(root_only: None, state_dir: Path) -> Iterator[None]:
    yield
    # Whatever happened, leave the machine as it was (a no-op when the test already did).
    run_cli("rollback", "--yes", "@local", timeout=300)


def test_apply_isolates_cpu_1_and_rollback_restores_every_file_and_thread(
    rolled_back_afterwards: None, pinned_sleepers: dict[int, frozenset[int]]
) -> None:
    files_before, threads_before = cgroup_files(), threads()
    assert all(_of(threads_before, pid)[0] == cpus for pid, cpus in pinned_sleepers.items())

    applied = run_cli(
        "apply", "--yes", "--profile", PROFILE, "--reboot", "never", "@local", timeout=300
    )
    # Exit 1 only for IRQs whose move waits for their next interrupt (x86): nothing to apply.
    assert applied.returncode in (0, 1), applied.stdout + applied.stderr
    assert _drift_after_apply() == set()
    partition = cgroup_layout.partition(_version())
    effective = cgroup_layout.EFFECTIVE_CPUS[_version()]
    assert parse_cpulist(Path(partition, effective).read_text()) == {1}

    # A workload placed in the partition stays on CPU 1, and is not counted as drift.
    workload = subprocess.Popen(
        ["sh", "-c", f"echo $$ > {partition}/cgroup.procs && exec sleep 600"]
    )
    try:
        # Only the kernel's own pinned threads and the workload may use CPU 1 now.
        for (tid, _), (allowed, cgroup, name) in threads().items():
            if (
                1 in allowed
                and tid != workload.pid
                and cgroup != f"/{cgroup_layout.PARTITION_NAME}"
            ):
                assert _pinned_by_kernel(tid), f"{tid} ({name}) may still run on CPU 1: {allowed}"
        for pid in pinned_sleepers:
            assert _of(threads(), pid)[0] == {0}
        assert _drift_after_apply() == set()
        assert _of(threads(), workload.pid)[0] == {1}
    finally:
        workload.kill()
        workload.wait()

    rolled = run_cli("rollback", "--yes", "@local", timeout=300)
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert "keys back to their snapshot value" in rolled.stdout

    assert cgroup_files() == files_before
    after = threads()
    changed = {
        tid: (threads_before[tid], after[tid])
        for tid in threads_before.keys() & after.keys()
        if threads_before[tid][:2] != after[tid][:2]
    }
    assert changed == {}
    assert all(_of(after, pid)[0] == cpus for pid, cpus in pinned_sleepers.items())


def _of(
    found: dict[tuple[int, int], tuple[frozenset[int], str, str]], tid: int
) -> tuple[frozenset[int], str, str]:
    return next(value for (each, _), value in found.items() if each == tid)


def _drift_after_apply() -> set[str]:
    """Keys that drift (with the reason), leaving out IRQs whose allowed CPUs are right and that
    x86 moves at their next interrupt; and the cpuset keys must all have been judged."""
    verified = run_cli("verify", "--profile", PROFILE, "-f", "json", "@local", timeout=300)
    settings = [s for host in json.loads(verified.stdout)["hosts"] for s in host["settings"]]
    cpuset_keys = [s["key"] for s in settings if s["family"] == "cpuset"]
    assert len(cpuset_keys) >= 5, cpuset_keys
    return {
        f"{s['key']}: {s['reason']}"
        for s in settings
        if s["status"] != "ok"
        and not (s["status"] == "immovable" or "at its next interrupt" in (s["reason"] or ""))
    }


def _pinned_by_kernel(tid: int) -> bool:
    stat = Path(f"/proc/{tid}/stat").read_text()
    flags = int(stat.rpartition(")")[2].split()[6])
    return bool(flags & 0x04000000)
