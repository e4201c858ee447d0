"""`quietcore container-args` flags, run for real: a podman container started with them on this
machine reports, from inside, the CPUs, memory nodes, memory limit, memlock limit and hugetlbfs
mount the profile asked for. And docker's own CLI accepts the same flags.

This machine's constraints, each the reason for one extra flag (none is a quietcore flag):
- the cgroup hierarchy is v1 with an empty unified v2 mount ("hybrid"); crun refuses that,
  runc does not: ``--runtime runc``;
- root here lacks CAP_SYS_RESOURCE, so no hard rlimit can be raised: podman's default nofile
  (1048576) and nproc limits are lowered to fit (``--ulimit nofile/nproc``), and the
  workload's memlock (4M) stays under this machine's hard limit (8M);
- no registry is reachable: the image is made from this machine's dash, cat and grep with
  ``podman import``.
Restores what it changes: the image, the hugetlbfs mount and podman's cgroups are removed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.host

IMAGE = "localhost/quietcore-test-mini:1"
PROFILE = """\
name: container-args-host
cpu:
  reserved: "0"
  isolated: rest
containers:
  workloads:
    - name: feed
      cpus: isolated[0]
      memory: 256M
      memlock: 4M
      hugepages: 2M
"""
INSIDE = (
    "grep -E '^(Cpus|Mems)_allowed_list' /proc/self/status;"
    " echo memlock_kib=$(ulimit -l);"
    " for f in /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory.max; do"
    ' [ -r "$f" ] && echo "memory_limit=$(cat "$f")"; done;'
    " grep ' /dev/hugepages ' /proc/mounts"
)
# Cgroups podman creates under each v1 hierarchy and leaves behind.
PODMAN_CGROUP = "libpod_parent"


def _run(*argv: str, check: bool = True, stdin: bytes | None = None) -> str:
    done = subprocess.run(argv, capture_output=True, input=stdin, check=False, timeout=300)
    out = done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
    assert not check or done.returncode == 0, f"{argv}: {out}"
    return out


def _podman_cgroups() -> set[Path]:
    return set(Path("/sys/fs/cgroup").glob(f"*/{PODMAN_CGROUP}"))


@pytest.fixture
def image(root_only: None) -> Iterator[str]:
    for tool in ("podman", "runc"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: apt-get install podman runc")
    cgroups_before = _podman_cgroups()
    programs = ["/bin/dash", "/bin/cat", "/bin/grep"]
    libraries = {
        word
        for program in programs
        for word in _run("ldd", program).split()
        if word.startswith("/")
    }
    archive = subprocess.run(
        ["tar", "-chf", "-", *programs, *sorted(libraries)],
        capture_output=True,
        check=True,
    ).stdout
    _run("podman", "import", "-", IMAGE, stdin=archive)
    try:
        yield IMAGE
    finally:
        _run("podman", "rmi", "-f", IMAGE, check=False)
        for cgroup in sorted(_podman_cgroups() - cgroups_before, reverse=True):
            for child in sorted(cgroup.glob("*/"), reverse=True):
                child.rmdir()
            cgroup.rmdir()


@pytest.fixture
def hugetlbfs(tmp_path: Path, root_only: None) -> Iterator[Path]:
    """A hugetlbfs mount of 2M pages (no page reserved: mounting one costs nothing)."""
    mount = tmp_path / "hugepages-2M"
    mount.mkdir()
    _run("mount", "-t", "hugetlbfs", "-o", "pagesize=2M", "none", str(mount))
    try:
        yield mount
    finally:
        _run("umount", str(mount))


def _flags(tmp_path: Path) -> dict[str, object]:
    profile = tmp_path / "profile.yaml"
    profile.write_text(PROFILE)
    result = run_cli("container-args", "-p", str(profile), "-w", "feed", "-f", "json")
    assert result.returncode == 0, result.stderr
    document: dict[str, object] = result.json()
    return document


def test_podman_runs_the_container_where_the_flags_say(
    tmp_path: Path, image: str, hugetlbfs: Path
) -> None:
    placed = _flags(tmp_path)
    isolated_first = "1"  # reserved 0, isolated rest: CPU 1 is isolated[0] on a 0-N host
    assert placed["cpus"] == isolated_first and placed["mem_nodes"] == "0", placed
    args = placed["args"]
    assert isinstance(args, list)
    assert args[:4] == [
        f"--cpuset-cpus={isolated_first}",
        "--cpuset-mems=0",
        "--memory=256m",
        "--ulimit=memlock=4194304:4194304",
    ]
    assert args[4] == f"--mount=type=bind,source={hugetlbfs},destination=/dev/hugepages"

    inside = _run(
        "podman",
        "--runtime",
        "runc",
        "run",
        "--rm",
        "--network",
        "none",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        *[str(arg) for arg in args],
        image,
        "/bin/dash",
        "-c",
        INSIDE,
    )
    lines = dict(line.split(":", 1) for line in inside.splitlines() if "_allowed_list:" in line)
    assert lines["Cpus_allowed_list"].strip() == isolated_first, inside
    assert lines["Mems_allowed_list"].strip() == "0", inside
    assert "memlock_kib=4096" in inside.splitlines(), inside
    assert f"memory_limit={256 * 1024 * 1024}" in inside.splitlines(), inside
    [mount] = [line for line in inside.splitlines() if " /dev/hugepages " in line]
    assert mount.split()[2] == "hugetlbfs" and "pagesize=2M" in mount, mount


def test_docker_cli_accepts_the_same_flags(tmp_path: Path, hugetlbfs: Path) -> None:
    """No docker daemon here: with DOCKER_HOST pointing nowhere, the CLI parses every flag
    (sizes, ulimits and mounts are parsed client-side) and only then fails to connect."""
    # .ci/run installs Debian's docker.io where this machine kind's docker CLI is missing.
    assert shutil.which("docker") is not None, "no docker CLI on this machine"
    args = [str(arg) for arg in _flags(tmp_path)["args"]]  # type: ignore[attr-defined]
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}

    def docker_run(*flags: str) -> str:
        done = subprocess.run(
            ["docker", "run", "--rm", *flags, IMAGE, "true"],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=60,
        )
        return done.stdout + done.stderr

    accepted = docker_run(*args)
    assert "Cannot connect to the Docker daemon" in accepted, accepted
    assert "invalid argument" not in accepted, accepted
    # The same check catches a flag docker would refuse, so the test can fail.
    refused = docker_run(*args, "--ulimit=memlock=4M:4M")
    assert 'invalid argument "memlock=4M:4M" for "--ulimit" flag' in refused, refused
