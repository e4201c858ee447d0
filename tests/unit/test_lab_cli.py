"""``quietcore lab`` without a VM: refusals, argument parsing, stale state (no root needed)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from quietcore.lab import lifecycle
from quietcore.lab.cli import lab
from quietcore.lab.spec import LabError, LabSpec
from quietcore.lab.state import LabState, lab_names
from quietcore.lab.tools import require, require_root
from quietcore.lab.vm import running_pid


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    yield tmp_path / "quietcore"


def _lab(*args: str) -> Any:
    return CliRunner().invoke(lab, list(args), catch_exceptions=False)


def test_a_shape_that_does_not_split_is_refused_before_anything_starts(cache: Path) -> None:
    result = _lab("up", "--cpus", "3", "--numa-nodes", "3", "--memory", "1G")
    assert result.exit_code == 2
    assert "1G of memory does not split evenly over 3 NUMA nodes" in result.output
    assert not (cache / "labs").exists()
    assert not (cache / "images").exists()


def test_a_bad_name_is_a_usage_error() -> None:
    result = _lab("up", "--name", "Bad;name")
    assert result.exit_code == 2
    assert "bad lab name" in result.output


def test_no_labs(cache: Path) -> None:
    assert "no labs" in _lab("status").output
    result = _lab("inventory")
    assert result.exit_code == 2
    assert "no lab is running" in result.output
    result = _lab("ssh", "nosuch", "--", "true")
    assert result.exit_code == 2
    assert "no lab nosuch" in result.output


def _stale_lab(cache: Path, name: str = "old") -> LabState:
    """The state a `kill -9`ed qemu leaves: lab.json says up, the pid is not a qemu."""
    state = LabState(LabSpec(name=name), "tcg", 40022, "debian-bookworm-x", status="up")
    state.save()
    state.pidfile.write_text(f"{os.getpid()}\n")  # alive, but not this lab's qemu
    state.overlay.write_bytes(b"dirty")
    return state


def test_a_pid_that_is_not_this_labs_qemu_is_never_taken_for_it(cache: Path) -> None:
    state = _stale_lab(cache)
    assert running_pid(state.pidfile) is None
    assert state.pid is None


def test_stale_lab_shows_as_stopped_and_down_clears_it(cache: Path) -> None:
    state = _stale_lab(cache)
    status = _lab("status")
    assert "old" in status.output
    assert "stopped (qemu gone)" in status.output
    assert _lab("inventory").exit_code == 2  # a stale lab is not a target
    result = _lab("down", "old")
    assert result.exit_code == 0
    assert "not running; removed" in result.output
    assert not state.directory.exists()
    assert lab_names() == []


def test_ssh_splits_name_and_remote_command_at_double_dash(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = _stale_lab(cache, "big")
    seen: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(lifecycle, "running", lambda name: state if name == "big" else None)
    monkeypatch.setattr(os, "execv", lambda path, argv: seen.append((path, argv)))
    assert _lab("ssh", "big", "--", "cat", "/proc/cmdline").exit_code == 0
    [(path, argv)] = seen
    assert argv[0] == path
    assert argv[-4:] == ["root@127.0.0.1", "--", "cat", "/proc/cmdline"]
    assert argv[argv.index("-p") + 1] == "40022"
    assert "UserKnownHostsFile=" + str(state.known_hosts) in argv
    assert "StrictHostKeyChecking=yes" in argv
    assert "IdentitiesOnly=yes" in argv


def test_ssh_without_name_means_the_default_lab(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names: list[str] = []

    def running(name: str) -> LabState:
        names.append(name)
        return _stale_lab(cache, name)

    monkeypatch.setattr(lifecycle, "running", running)
    monkeypatch.setattr(os, "execv", lambda path, argv: None)
    assert _lab("ssh", "--", "uname", "-a").exit_code == 0
    assert names == ["default"]


def test_state_round_trips(cache: Path) -> None:
    state = _stale_lab(cache)
    document = json.loads((state.directory / "lab.json").read_text())
    assert document["spec"]["cpus"] == 4
    assert LabState.load("old") == state


def test_not_root_is_told_why_root_is_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(LabError, match=r"building the lab image .* needs root"):
        require_root("building the lab image (loop devices, mount, chroot)")


def test_missing_tools_are_named_with_their_debian_packages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shutil, "which", lambda program, path=None: None)
    with pytest.raises(LabError) as caught:
        require(("qemu-system-x86_64", "qemu-img", "debootstrap"))
    assert str(caught.value) == (
        "missing qemu-system-x86_64, qemu-img, debootstrap: "
        "apt-get install debootstrap qemu-system-x86 qemu-utils"
    )
