"""What converging a host is made of: kernel-file writes, fixed commands, and owned files.

Knob families describe changes with these values and never with shell text; the shell is
rendered in one place (``quietcore.converge.shell``), after every part has been checked
against the patterns below. Pure: nothing here touches a host.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Kernel files quietcore writes at runtime: concrete sysfs and procfs paths, no globs.
KERNEL_FILE = re.compile(r"^/(?:proc|sys)/[A-Za-z0-9_.:+/-]+$")
# Values written to kernel files: numbers, CPU lists, masks, mode words, sysctl lists.
KERNEL_VALUE = re.compile(r"^[A-Za-z0-9 ,._:=+/\[\]-]*$")
# Configuration files quietcore may own: under /etc, /boot or its own state directory.
CONFIG_FILE = re.compile(r"^/(?:etc|boot|var/lib/quietcore|var/lib/kubelet)/[A-Za-z0-9_.@+/-]+$")
# One argument of a fixed command: printable, no newline, no NUL (it is quoted, not trusted).
ARGUMENT = re.compile(r"^[^\x00-\x1f\x7f]*$")
FILE_MODE = re.compile(r"^0[0-7]{3}$")


# Kernel files whose write the kernel refused (a managed IRQ answers EIO), one path per line:
# what the host taught quietcore about itself, read back by the family that wrote them.
REFUSED_WRITES = "/var/lib/quietcore/refused-writes"


class UnsafeStepError(ValueError):
    """A step that would write outside the allowed files or carry text the shell could misread."""


# A non-negative integer: hugepage counts, sysfs switches, percentages.
NUMBER = re.compile(r"[0-9]+")


def checked(value: str, pattern: re.Pattern[str], key: str) -> str:
    """``value`` if all of it matches ``pattern``; refused for ``key`` otherwise."""
    if not pattern.fullmatch(value):
        raise UnsafeStepError(f"refusing {value!r} for {key}")
    return value


@dataclass(frozen=True)
class Write:
    """Write ``value`` and a newline into a kernel file (``/proc/sys/...``, ``/sys/...``).

    ``refusable``: the kernel may legitimately refuse it (the affinity of a managed IRQ, which
    only debugfs could have told); a refusal is recorded in ``REFUSED_WRITES``, not an error.
    """

    path: str
    value: str
    refusable: bool = False

    def __post_init__(self) -> None:
        if not KERNEL_FILE.fullmatch(self.path) or "/../" in self.path:
            raise UnsafeStepError(f"refusing to write {self.path!r}: not a kernel file path")
        if not KERNEL_VALUE.fullmatch(self.value):
            raise UnsafeStepError(f"refusing to write {self.value!r} to {self.path}")


@dataclass(frozen=True)
class Run:
    """Run a program with fixed arguments. ``systemd_only``: skip it where PID 1 is not
    systemd (containers, this project's CI sandbox), where ``systemctl`` has nothing to ask."""

    argv: tuple[str, ...]
    systemd_only: bool = False

    def __post_init__(self) -> None:
        if not self.argv or not all(ARGUMENT.fullmatch(argument) for argument in self.argv):
            raise UnsafeStepError(f"refusing to run {self.argv!r}")


# A cgroup directory quietcore creates and removes: only under the cgroup mounts.
CGROUP_DIR = re.compile(r"^/sys/fs/cgroup(?:/[A-Za-z0-9_.@:-]+)*$")


def _check_cgroup_dir(path: str, what: str) -> None:
    if not CGROUP_DIR.fullmatch(path) or "/../" in f"{path}/" or "/./" in f"{path}/":
        raise UnsafeStepError(f"refusing {what} {path!r}: not a cgroup directory")


def _check_cpulist_text(cpus: str, what: str) -> None:
    if not re.fullmatch(r"[0-9]+(?:-[0-9]+)?(?:,[0-9]+(?:-[0-9]+)?)*", cpus):
        raise UnsafeStepError(f"refusing CPUs {cpus!r} for {what}: not a CPU list")


@dataclass(frozen=True)
class ConfineTasks:
    """Move every task outside ``partition`` that the kernel lets move onto ``cpus``: its
    process into the cgroup ``join`` first (cgroup v1's housekeeping cpuset), then each thread's
    affinity. Tasks the kernel pins (per-CPU kernel threads) refuse, and stay where they are;
    verification names them. Generic, not a list of PIDs, so the boot script can replay it."""

    cpus: str
    partition: str  # as ``/proc/PID/cpuset`` names it: ``/quietcore-isolated``
    join: str | None = None

    def __post_init__(self) -> None:
        _check_cpulist_text(self.cpus, "confining tasks")
        if not re.fullmatch(r"(?:/[A-Za-z0-9_.@:-]+)+", self.partition):
            raise UnsafeStepError(f"refusing partition {self.partition!r}: not a cgroup path")
        if self.join is not None:
            _check_cgroup_dir(self.join, "the housekeeping cgroup")


@dataclass(frozen=True)
class PinTasks:
    """Give each thread in ``tids`` the affinity ``cpus`` again (rollback of ``ConfineTasks``);
    a thread that has exited since is not an error."""

    cpus: str
    tids: tuple[int, ...]

    def __post_init__(self) -> None:
        _check_cpulist_text(self.cpus, "pinning tasks")
        if not self.tids or any(tid <= 0 for tid in self.tids):
            raise UnsafeStepError(f"refusing task IDs {self.tids!r}")


@dataclass(frozen=True)
class RemoveCgroup:
    """Move every process of the cgroup ``path`` into ``parent`` (a cgroup directory), then
    remove ``path``; nothing to do when it does not exist."""

    path: str
    parent: str

    def __post_init__(self) -> None:
        _check_cgroup_dir(self.path, "removing cgroup")
        _check_cgroup_dir(self.parent, "the parent cgroup")


# A PCI address as sysfs names it, and a kernel driver name (``vfio-pci``, ``virtio-pci``).
PCI_ADDRESS = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
DRIVER_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class BindDriver:
    """Make ``driver`` the PCI device ``address``'s driver (``None``: leave it unbound).

    ``override``: bind through ``driver_override`` (a driver that matches no device by itself,
    like vfio-pci, whose module is loaded first); otherwise clear any override and let the
    kernel's own matching pick ``driver`` again (rollback). Unbinds from the current driver
    only when it differs, so replaying it (the boot script) changes nothing once it holds.
    """

    address: str
    driver: str | None
    override: bool = False

    def __post_init__(self) -> None:
        if not PCI_ADDRESS.fullmatch(self.address):
            raise UnsafeStepError(f"refusing PCI address {self.address!r}")
        if self.driver is not None and not DRIVER_NAME.fullmatch(self.driver):
            raise UnsafeStepError(f"refusing driver name {self.driver!r}")
        if self.override and self.driver is None:
            raise UnsafeStepError(f"refusing to override {self.address}'s driver with none")


Step = Write | Run | ConfineTasks | PinTasks | RemoveCgroup | BindDriver


@dataclass(frozen=True)
class ManagedFile:
    """A configuration file quietcore renders in full and owns on a host.

    ``activate`` makes the system take a change to it into account (``update-grub``,
    ``systemctl daemon-reload``); it runs after the file is written and again after rollback
    removes or restores it. ``reboot``: the change takes effect only at the next boot.
    """

    path: str
    content: str
    family: str
    activate: tuple[Run, ...] = ()
    reboot: bool = False
    mode: str = "0644"

    def __post_init__(self) -> None:
        if not CONFIG_FILE.fullmatch(self.path) or "/../" in self.path:
            raise UnsafeStepError(f"refusing to own {self.path!r}: not an allowed config path")
        if "\x00" in self.content or not FILE_MODE.fullmatch(self.mode):
            raise UnsafeStepError(f"refusing the content or mode of {self.path}")
