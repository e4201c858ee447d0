"""`quietcore exec` on this machine: the started process is read back from /proc.

The partition is the real one: each test that needs it applies examples/runtime-isolation.yaml
to this machine (``--reboot never``) and rolls it back afterwards.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from quietcore import cgroup_layout
from quietcore.probes import build
from quietcore.profile.cpuset import CpuSet, format_cpulist, parse_cpulist
from tests.conftest import run_cli

pytestmark = pytest.mark.host

ISOLATED = Path("/sys/devices/system/cpu/isolated")
ONLINE = parse_cpulist(Path("/sys/devices/system/cpu/online").read_text())
SLEEP = shutil.which("sleep") or "/bin/sleep"
EXEC_TIMEOUT_S = 30
SIGPIPE_BIT = 1 << (signal.SIGPIPE - 1)
PROFILE = Path(__file__).parents[2] / "examples" / "runtime-isolation.yaml"


def _version() -> cgroup_layout.CgroupVersion | None:
    def text(path: str) -> str | None:
        return Path(path).read_text() if Path(path).exists() else None

    return cgroup_layout.cpuset_version(
        text(cgroup_layout.V2_CONTROLLERS), text(cgroup_layout.V1_ROOT_CPUS)
    )


@dataclass(frozen=True)
class Made:
    path: Path
    cpus: CpuSet
    mems: CpuSet
    # The line of /proc/PID/cgroup that names the partition.
    cgroup_line: str


@pytest.fixture
def partition(root_only: None, state_dir: Path) -> Iterator[Made]:
    """The real runtime partition: ``quietcore apply`` of examples/runtime-isolation.yaml (the
    first CPU of each node reserved, the rest isolated), rolled back afterwards."""
    applied = run_cli(
        "apply", "--yes", "--profile", str(PROFILE), "--reboot", "never", "@local", timeout=300
    )
    try:
        version = _version()
        assert version is not None, "this machine has no cpuset cgroup controller"
        path = Path(cgroup_layout.partition(version))
        # Exit 1 at most for IRQs that move at their next interrupt (docs/isolation.md).
        assert applied.returncode in (0, 1) and path.is_dir(), applied.stdout + applied.stderr
        yield Made(
            path,
            parse_cpulist((path / cgroup_layout.EFFECTIVE_CPUS[version]).read_text()),
            parse_cpulist((path / cgroup_layout.EFFECTIVE_MEMS[version]).read_text()),
            f":/{cgroup_layout.PARTITION_NAME}",
        )
    finally:
        rolled = run_cli("rollback", "--yes", "@local", timeout=300)
        assert rolled.returncode == 0, rolled.stdout + rolled.stderr


@pytest.fixture
def no_partition(root_only: None) -> None:
    version = _version()
    # Every test that makes the partition rolls it back: one left here is a leak to report.
    assert version is None or not Path(cgroup_layout.partition(version)).exists(), (
        "a quietcore partition was left on this host"
    )


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private cache, so the --mlock shim is really built by the test."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


@dataclass
class Workload:
    process: subprocess.Popen[str]

    @property
    def pid(self) -> int:
        return self.process.pid

    def status(self) -> dict[str, str]:
        text = Path(f"/proc/{self.pid}/status").read_text()
        return {
            key: value.strip() for key, value in (line.split(":", 1) for line in text.splitlines())
        }

    def proc(self, name: str) -> str:
        return Path(f"/proc/{self.pid}/{name}").read_text()

    def in_partition(self, partition: Made) -> bool:
        return any(line.endswith(partition.cgroup_line) for line in self.proc("cgroup").split())


Start = Callable[..., Workload]


@pytest.fixture
def start() -> Iterator[Start]:
    """start(*exec_args) -> Workload: `quietcore exec ... -- sleep 60`, once it is sleep."""
    started: list[subprocess.Popen[str]] = []

    def run(*args: str) -> Workload:
        process = subprocess.Popen(
            [sys.executable, "-m", "quietcore", "exec", *args, "--", "sleep", "60"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        deadline = time.monotonic() + EXEC_TIMEOUT_S
        # execve keeps the PID: quietcore's process becomes sleep.
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if os.readlink(f"/proc/{process.pid}/exe") == os.path.realpath(SLEEP):
                    return Workload(process)
            except FileNotFoundError:
                pass
            time.sleep(0.05)
        _, stderr = process.communicate(timeout=EXEC_TIMEOUT_S)
        pytest.fail(f"quietcore exec did not become sleep (exit {process.returncode}): {stderr}")

    yield run
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=EXEC_TIMEOUT_S)


def _unlocked_mappings(smaps: str) -> list[str]:
    unlocked, mapping = [], ""
    for line in smaps.splitlines():
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            mapping = line
        elif line.startswith("VmFlags:") and "lo" not in line.split()[1:]:
            name = mapping.split()[5] if len(mapping.split()) > 5 else ""
            if not re.fullmatch(r"\[(vdso|vvar\w*|vsyscall)\]", name):
                unlocked.append(mapping)
    return unlocked


def _policies(numa_maps: str) -> set[str]:
    return {line.split()[1] for line in numa_maps.splitlines()}


def test_workload_in_partition_fifo_locked_and_bound(
    partition: Made, cache: Path, start: Start
) -> None:
    node = min(partition.mems)
    workload = start("--cpus", "isolated[0]", "--fifo", "10", "--mlock", "--mem-node", str(node))
    status = workload.status()
    assert status["Cpus_allowed_list"] == str(min(partition.cpus))
    assert status["Mems_allowed_list"] == format_cpulist(partition.mems)
    locked_kb = int(status["VmLck"].split()[0])
    assert locked_kb > 0
    # Every mapping is locked (VmFlags `lo`): the shim ran mlockall(MCL_CURRENT|MCL_FUTURE)
    # before main. The kernel's own special mappings (vdso, vvar) cannot be locked.
    assert _unlocked_mappings(workload.proc("smaps")) == []
    assert os.sched_getscheduler(workload.pid) == os.SCHED_FIFO
    assert os.sched_getparam(workload.pid).sched_priority == 10
    assert re.search(r"^policy\s*:\s*1$", workload.proc("sched"), re.MULTILINE)  # SCHED_FIFO
    assert _policies(workload.proc("numa_maps")) == {f"bind:{node}"}
    assert workload.in_partition(partition)
    assert str(workload.pid) in (partition.path / "cgroup.procs").read_text().split()
    environ = workload.proc("environ").split("\0")
    [preload] = [entry for entry in environ if entry.startswith("LD_PRELOAD=")]
    shim = Path(preload.removeprefix("LD_PRELOAD="))
    assert shim.is_relative_to(cache) and shim.exists()
    assert f"{shim}" in workload.proc("maps")
    # Python ignores SIGPIPE; the workload must not inherit that.
    assert int(status["SigIgn"], 16) & SIGPIPE_BIT == 0


def test_defaults_bind_memory_to_the_local_node_only(partition: Made, start: Start) -> None:
    cpu = min(partition.cpus)
    [local] = [
        int(node.name.removeprefix("node"))
        for node in Path("/sys/devices/system/node").glob("node[0-9]*")
        if cpu in parse_cpulist((node / "cpulist").read_text())
    ]
    workload = start("--cpus", "isolated")
    status = workload.status()
    assert parse_cpulist(status["Cpus_allowed_list"]) == partition.cpus
    assert _policies(workload.proc("numa_maps")) == {f"bind:{local}"}
    assert os.sched_getscheduler(workload.pid) == os.SCHED_OTHER
    assert int(status["VmLck"].split()[0]) == 0
    assert not any(e.startswith("LD_PRELOAD=") for e in workload.proc("environ").split("\0"))
    assert any(
        line.endswith(partition.cgroup_line) for line in workload.proc("cgroup").splitlines()
    )


def test_housekeeping_cpus_need_the_flag_and_join_nothing(partition: Made, start: Start) -> None:
    outside = min(ONLINE - partition.cpus)
    refused = run_cli("exec", "--cpus", str(outside), "--", "true")
    assert refused.returncode == 125
    assert f"CPU {outside} is not isolated" in refused.stderr
    assert "--allow-housekeeping" in refused.stderr
    workload = start("--cpus", str(outside), "--allow-housekeeping", "--mem-node", "none")
    assert workload.status()["Cpus_allowed_list"] == str(outside)
    assert _policies(workload.proc("numa_maps")) == {"default"}
    assert not workload.in_partition(partition)


def test_position_out_of_range(partition: Made) -> None:
    count = len(partition.cpus)
    result = run_cli("exec", "--cpus", f"isolated[{count}]", "--", "true")
    assert result.returncode == 125
    assert f"asks for position {count} but isolated has {count} CPU" in result.stderr


def test_dry_run_changes_nothing(partition: Made) -> None:
    result = run_cli(
        "exec", "--cpus", "isolated[0]", "--fifo", "5", "--dry-run", "--", "sleep", "9"
    )
    assert result.returncode == 0, result.stderr
    assert re.search(rf"^cgroup\s+join {partition.path}\s*$", result.stdout, re.MULTILINE)
    assert re.search(r"^scheduling\s+SCHED_FIFO priority 5\s*$", result.stdout, re.MULTILINE)
    assert re.search(rf"^exec\s+{re.escape(SLEEP)} 9\s*$", result.stdout, re.MULTILINE)
    assert (partition.path / "cgroup.procs").read_text() == ""


def test_exit_status_passes_through(partition: Made) -> None:
    result = run_cli("exec", "--cpus", "isolated[0]", "--", "sh", "-c", "exit 7")
    assert result.returncode == 7, result.stderr
    missing = run_cli("exec", "--cpus", "isolated[0]", "--", "no-such-program-qc")
    assert missing.returncode == 127
    assert "no-such-program-qc: command not found" in missing.stderr


def test_mlock_refuses_a_static_program(partition: Made, cache: Path) -> None:
    probe = build.compile_on_controller(build.probe_source(), "qc_probe", platform.machine())
    assert probe is not None, "this machine has cc"
    # .ci/run installs libc6-dev, whose static libc the probe links against.
    assert build.is_static(probe), "no static C library here: no static program to try"
    result = run_cli("exec", "--cpus", "isolated[0]", "--mlock", "--", str(probe), "--help")
    assert result.returncode == 125
    assert "is statically linked, so it ignores LD_PRELOAD" in result.stderr


def test_no_isolated_cpus_is_refused(no_partition: None) -> None:
    assert not parse_cpulist(ISOLATED.read_text()), "this test needs a host without isolcpus="
    result = run_cli("exec", "--cpus", "isolated[0]", "--", "true")
    assert result.returncode == 125
    assert "no CPU is isolated on this host" in result.stderr
    assert "cpu.isolation: [cpuset]" in result.stderr
