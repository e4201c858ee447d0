"""One lab VM for the whole session, shaped like a small two-socket host.

The fixture first clears whatever a killed earlier run left (``lab down``), boots the lab
(building the cached image if needed), and ends it in its finalizer, so no qemu outlives the
session. Lab tests need root (loop devices for the image build, a tap for the data NIC) and
qemu-system-x86, qemu-utils and debootstrap (.ci/run installs them).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import CliResult, run_cli

LAB = "pytest"
SHAPE = ("--cpus", "4", "--numa-nodes", "2", "--memory", "4G", "--nic-queues", "4")
# Image build (first run only) + a TCG boot, with room to spare on a 2-CPU machine.
UP_TIMEOUT = 1500


def run_lab(*args: str, timeout: float = 600) -> CliResult:
    """``quietcore lab ...`` as a subprocess."""
    return run_cli("lab", *args, timeout=timeout)


# apply / rollback with --reboot if-needed: a TCG reboot and the verify after it.
REBOOT_RUN_TIMEOUT = 1800


def timed_cli(*args: str) -> CliResult:
    """``quietcore ARGS`` allowed a reboot's time, its wall time written to stderr."""
    started = time.monotonic()
    result = run_cli(*args, timeout=REBOOT_RUN_TIMEOUT)
    sys.stderr.write(f"\n[timing] quietcore {args[0]}: {time.monotonic() - started:.1f} s\n")
    return result


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh local state directory (QUIETCORE_STATE_DIR: snapshot copies, journals) for the
    test module, so its apply and rollback never meet another module's snapshot."""
    directory = tmp_path_factory.mktemp("quietcore-state")
    os.environ["QUIETCORE_STATE_DIR"] = str(directory)
    yield directory
    os.environ.pop("QUIETCORE_STATE_DIR", None)


def lab_ssh(name: str, script: str, timeout: float = 120) -> CliResult:
    """Run a shell script in the lab (one argument: ssh hands it to the guest's shell)."""
    return run_lab("ssh", name, "--", script, timeout=timeout)


@dataclass(frozen=True)
class Lab:
    name: str
    inventory: Path

    def ssh(self, script: str, timeout: float = 120) -> str:
        result = lab_ssh(self.name, script, timeout)
        assert result.returncode == 0, result.stderr
        return result.stdout


@pytest.fixture(scope="session")
def lab_vm() -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (image build: loop devices; data NIC: a tap)")
    run_lab("down", LAB)
    try:
        result = run_lab("up", "--name", LAB, *SHAPE, timeout=UP_TIMEOUT)
        assert result.returncode == 0, result.stderr
        sys.stderr.write(result.stderr)
        yield Lab(LAB, Path(result.stdout.strip()))
    finally:
        run_lab("down", LAB)


# The lab's own tests leave it changed (isolcpus=3 after a reboot) and finally take it down
# (that is what the last one checks): they come after every other lab test, that one last.
LAB_OWN_TESTS = "test_lab_vm.py"
LAST = "test_lab_down_leaves_no_qemu_no_overlay_no_tap"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the molecule test before the first test that uses ``lab_vm``: it boots its own lab,
    and the session lab, once up, stays up until the session ends. One VM at a time keeps a
    2-CPU machine (TCG) from running two guests at once. ``LAB_OWN_TESTS`` run last."""
    # Stable: the rest keep their order.
    items[:] = sorted(items, key=lambda item: (item.path.name == LAB_OWN_TESTS, item.name == LAST))
    molecule = [item for item in items if item.path.name == "test_molecule.py"]
    if not molecule:
        return
    rest = [item for item in items if item.path.name != "test_molecule.py"]
    first = next(
        (i for i, item in enumerate(rest) if "lab_vm" in getattr(item, "fixturenames", ())),
        len(rest),
    )
    items[:] = [*rest[:first], *molecule, *rest[first:]]
