"""Snapshot, compare and restore everything on this host that quietcore or TuneD may change,
for benchmarks/isolation.py.

A snapshot holds three kinds of state:

- **values**: every readable sysctl under /proc/sys, and the sysfs/procfs files the two tools
  tune (transparent hugepages, KSM, workqueue masks, machine-check polling, cpufreq and cpuidle
  knobs, IRQ affinities, cpuset cgroup files and which cpuset cgroups exist, the PM QoS CPU
  latency request);
- **tasks**: every thread's CPU affinity and cpuset, keyed by thread id *and* start time so
  that a recycled id is never mistaken for the same thread;
- **files**: every file, directory and symlink under the configuration trees the tools write
  (/etc/tuned, /etc/systemd, /etc/default, /etc/modprobe.d, grub, /boot, ...), with content.

``diff`` (pure) lists what differs; ``restore`` writes back what a tool left behind. Keys that
change by themselves (counters such as fs.file-nr) are found by comparing two snapshots taken
before anything is changed (``volatile``) and never compared.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import os
import re
import shutil
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from quietcore.profile.cpuset import CpuSetError, parse_cpulist

SYSCTL_ROOT = "/proc/sys"
# sysctls that are counters or change on every read: never compared.
VOLATILE_SYSCTLS = (
    "fs/dentry-state", "fs/dentry-negative", "fs/file-nr", "fs/inode-nr", "fs/inode-state",
    "fs/aio-nr", "fs/quota/*", "fs/binfmt_misc/*", "kernel/random/*", "kernel/ns_last_pid",
    "kernel/pty/nr", "kernel/perf_event_max_sample_rate", "kernel/hung_task_detect_count",
    "kernel/warn_count", "kernel/oops_count", "kernel/hung_task_warnings",
    "net/netfilter/nf_conntrack_count",
)  # fmt: skip
# sysfs/procfs files the tools tune (globs; a file the kernel lacks is simply absent).
VALUE_GLOBS = (
    "/sys/kernel/mm/transparent_hugepage/enabled",
    "/sys/kernel/mm/transparent_hugepage/defrag",
    "/sys/kernel/mm/transparent_hugepage/khugepaged/defrag",
    "/sys/kernel/mm/ksm/run",
    "/sys/devices/virtual/workqueue/cpumask",
    "/sys/devices/virtual/workqueue/*/cpumask",
    "/sys/devices/virtual/workqueue/*/nice",
    "/sys/devices/virtual/workqueue/*/affinity_scope",
    "/sys/bus/workqueue/devices/writeback/cpumask",
    "/sys/devices/system/machinecheck/machinecheck*/ignore_ce",
    "/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor",
    "/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_min_freq",
    "/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_max_freq",
    "/sys/devices/system/cpu/cpu[0-9]*/cpufreq/energy_performance_preference",
    "/sys/devices/system/cpu/cpu[0-9]*/power/energy_perf_bias",
    "/sys/devices/system/cpu/cpu[0-9]*/cpuidle/state*/disable",
    "/sys/devices/system/cpu/cpufreq/boost",
    "/sys/devices/system/cpu/intel_pstate/min_perf_pct",
    "/sys/devices/system/cpu/intel_pstate/no_turbo",
    "/proc/irq/default_smp_affinity",
    "/proc/irq/[0-9]*/smp_affinity_list",
)
CGROUP_ROOTS = ("/sys/fs/cgroup/cpuset", "/sys/fs/cgroup/unified", "/sys/fs/cgroup")
CGROUP_FILES = (
    "cpuset.cpus", "cpuset.mems", "cpuset.cpu_exclusive", "cpuset.mem_exclusive",
    "cpuset.sched_load_balance", "cpuset.cpus.partition", "cpuset.cpus.exclusive",
)  # fmt: skip
PM_QOS = "/dev/cpu_dma_latency"
# Files larger than this are compared by hash only: a change to one cannot be undone.
KEEP_BYTES = 8 << 20
# Where TuneD writes a shell-style "[chosen] other" word list.
BRACKETED = re.compile(r"\[([^\]]+)\]")


@dataclass(frozen=True)
class FileState:
    kind: str  # "file", "dir" or "link"
    mode: int
    uid: int
    gid: int
    digest: str = ""  # sha256 of a file's content, a link's target
    data: bytes | None = None  # a file's content when at most KEEP_BYTES
    target: str | None = None  # a link's target

    def describe(self) -> str:
        detail = self.target if self.kind == "link" else self.digest[:12]
        return f"{self.kind} {stat.filemode(self.mode)} {self.uid}:{self.gid} {detail}".strip()


@dataclass(frozen=True)
class TaskState:
    comm: str = field(compare=False)  # kworkers rename themselves after their current work
    affinity: str  # Cpus_allowed_list
    cpuset: str  # /proc/PID/task/TID/cpuset ("" without the cpuset controller)


@dataclass(frozen=True)
class Snapshot:
    values: Mapping[str, str]
    tasks: Mapping[str, TaskState]  # "TID@STARTTIME" -> state
    files: Mapping[str, FileState | None]  # path -> state; None: a watched root that is absent


@dataclass(frozen=True)
class Difference:
    kind: str  # "value", "task" or "file"
    key: str
    before: str | None
    after: str | None

    def __str__(self) -> str:
        return f"{self.kind} {self.key}: {self.before!r} -> {self.after!r}"


@dataclass
class Restored:
    """What ``restore`` did: written back, and what it could not put back."""

    fixed: list[Difference] = field(default_factory=list)
    failed: list[tuple[Difference, str]] = field(default_factory=list)


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            return handle.read(1 << 16).decode(errors="replace").strip()
    except OSError:
        return None


def _sysctls() -> dict[str, str]:
    found: dict[str, str] = {}
    for directory, _dirs, names in os.walk(SYSCTL_ROOT):
        for name in names:
            path = os.path.join(directory, name)
            relative = path[len(SYSCTL_ROOT) + 1 :]
            if any(fnmatch.fnmatch(relative, pattern) for pattern in VOLATILE_SYSCTLS):
                continue
            try:
                if not os.stat(path).st_mode & stat.S_IRUSR:
                    continue  # write-only (vm/drop_caches, net/ipv4/route/flush)
            except OSError:
                continue
            value = _read(path)
            if value is not None:
                found[path] = " ".join(value.split())
    return found


def _cgroups() -> dict[str, str]:
    """Which cpuset cgroups exist and their cpuset files, under every mounted hierarchy."""
    found: dict[str, str] = {}
    seen: set[str] = set()
    for root in CGROUP_ROOTS:
        if not os.path.isdir(root):
            continue
        for directory, dirs, names in os.walk(root):
            if directory in seen:
                dirs[:] = []
                continue
            seen.add(directory)
            # Nested mounts (cpuset/, unified/ under /sys/fs/cgroup) are walked as their own root.
            dirs[:] = [name for name in dirs if os.path.join(directory, name) not in CGROUP_ROOTS]
            wanted = [name for name in names if name in CGROUP_FILES]
            if not wanted:
                continue
            found[f"cgroup {directory}"] = "present"
            for name in wanted:
                value = _read(os.path.join(directory, name))
                if value is not None:
                    found[os.path.join(directory, name)] = value
    return found


def _pm_qos() -> dict[str, str]:
    """The CPU latency the kernel currently grants (µs, 2000000000 when nobody asks)."""
    try:
        with open(PM_QOS, "rb") as handle:
            raw = handle.read(4)
    except OSError:
        return {}
    return {PM_QOS: str(int.from_bytes(raw, "little", signed=True))} if len(raw) == 4 else {}


def read_values() -> dict[str, str]:
    values = _sysctls()
    for pattern in VALUE_GLOBS:
        for path in sorted(glob.glob(pattern)):
            value = _read(path)
            if value is not None:
                values[path] = value
    return values | _cgroups() | _pm_qos()


def _status_field(status: str, name: str) -> str:
    for line in status.splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    return ""


def read_tasks() -> dict[str, TaskState]:
    tasks: dict[str, TaskState] = {}
    for task in glob.glob("/proc/[0-9]*/task/[0-9]*"):
        status, process_stat = _read(f"{task}/status"), _read(f"{task}/stat")
        if status is None or process_stat is None:
            continue  # ended while we looked
        # stat: "TID (comm) S ..."; the comm may hold spaces and parentheses.
        start_time = process_stat.rsplit(")", 1)[1].split()[19]
        tid = task.rsplit("/", 1)[1]
        tasks[f"{tid}@{start_time}"] = TaskState(
            comm=_status_field(status, "Name"),
            affinity=_status_field(status, "Cpus_allowed_list"),
            cpuset=_read(f"{task}/cpuset") or "",
        )
    return tasks


def _file_state(path: str) -> FileState:
    info = os.lstat(path)
    mode, uid, gid = info.st_mode, info.st_uid, info.st_gid
    if stat.S_ISLNK(mode):
        target = os.readlink(path)
        return FileState("link", mode, uid, gid, digest=target, target=target)
    if stat.S_ISDIR(mode):
        return FileState("dir", mode, uid, gid)
    digest = hashlib.sha256()
    data = bytearray()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            if len(data) <= KEEP_BYTES:
                data += chunk
    kept = bytes(data) if len(data) <= KEEP_BYTES else None
    return FileState("file", mode, uid, gid, digest=digest.hexdigest(), data=kept)


def read_files(roots: Iterable[str], skip: Iterable[str] = ()) -> dict[str, FileState | None]:
    """Every entry under each root (a root may be a single file); ``skip`` are paths left out
    (logs the tools are meant to keep, such as quietcore's journal)."""
    skipped = set(skip)
    files: dict[str, FileState | None] = {}
    for root in roots:
        if not os.path.lexists(root):
            files[root] = None
            continue
        files[root] = _file_state(root)
        if os.path.isdir(root) and not os.path.islink(root):
            for directory, dirs, names in os.walk(root):
                for name in sorted(dirs + names):
                    path = os.path.join(directory, name)
                    if path not in skipped:
                        files[path] = _file_state(path)
    return files


def snapshot(roots: Iterable[str], skip: Iterable[str] = ()) -> Snapshot:
    return Snapshot(read_values(), read_tasks(), read_files(roots, skip))


def _is_cgroup(key: str) -> bool:
    return key.startswith("cgroup ") or key.startswith("/sys/fs/cgroup/")


def diff(before: Snapshot, after: Snapshot, volatile: Iterable[str] = ()) -> list[Difference]:
    """What changed from ``before`` to ``after``. Values: keys on both sides, and cgroups on
    either. Tasks: only threads alive in both (threads come and go). Files: every path of
    either side."""
    ignored = set(volatile)
    found: list[Difference] = []
    # A value that exists on one side only belongs to something that came or went meanwhile
    # (a network interface, an IRQ): not a setting. Cgroups are the exception: whether one
    # exists is the setting.
    keys = (before.values.keys() & after.values.keys()) | {
        key for key in before.values.keys() ^ after.values.keys() if _is_cgroup(key)
    }
    for key in sorted(keys):
        old, new = before.values.get(key), after.values.get(key)
        if old != new and key not in ignored:
            found.append(Difference("value", key, old, new))
    for key in sorted(before.tasks.keys() & after.tasks.keys()):
        old_task, new_task = before.tasks[key], after.tasks[key]
        if old_task != new_task and key not in ignored:
            found.append(
                Difference(
                    "task",
                    f"{key} {old_task.comm}",
                    f"cpus {old_task.affinity} cpuset {old_task.cpuset}",
                    f"cpus {new_task.affinity} cpuset {new_task.cpuset}",
                )
            )
    for path in sorted(before.files.keys() | after.files.keys()):
        old_file, new_file = before.files.get(path), after.files.get(path)
        if old_file != new_file:
            found.append(
                Difference(
                    "file",
                    path,
                    old_file.describe() if old_file else None,
                    new_file.describe() if new_file else None,
                )
            )
    return found


def volatile(first: Snapshot, second: Snapshot) -> set[str]:
    """Keys that changed between two snapshots taken while nothing was being tuned."""
    changed = {key for key in first.values.keys() | second.values.keys()
               if first.values.get(key) != second.values.get(key)}  # fmt: skip
    changed |= {key for key in first.tasks.keys() & second.tasks.keys()
                if first.tasks[key] != second.tasks[key]}  # fmt: skip
    return changed


def value_to_write(path: str, value: str) -> str:
    """What to write to restore a value read from ``path``: the bracketed choice of a
    "always [madvise] never" list, the value itself otherwise."""
    chosen = BRACKETED.search(value)
    return chosen.group(1) if chosen and "transparent_hugepage" in path else value


def _restore_value(difference: Difference) -> str | None:
    """Write one value back; the reason when it cannot be."""
    path, value = difference.key, difference.before
    if value is None:
        return "it did not exist before"
    if _is_cgroup(path) or path == PM_QOS:
        return "cgroups and PM QoS requests are only compared, never written by the benchmark"
    try:
        with open(path, "w") as handle:
            handle.write(value_to_write(path, value) + "\n")
    except OSError as error:
        return str(error)
    return None


def _restore_task(difference: Difference, before: Snapshot) -> str | None:
    tid_key = difference.key.split(" ", 1)[0]
    task = before.tasks[tid_key]
    try:
        os.sched_setaffinity(int(tid_key.split("@", 1)[0]), parse_cpulist(task.affinity))
    except ProcessLookupError:
        return None  # ended since: nothing left to restore
    except (OSError, CpuSetError) as error:
        return str(error)
    return None


def _remove(path: str, problems: list[tuple[str, str]]) -> None:
    """Delete what a tool created at ``path`` (a tree or a file), noting a failure."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.unlink(path)
    except OSError as error:
        problems.append((path, str(error)))


def _restore_files(before: Snapshot, after: Snapshot) -> list[tuple[str, str]]:
    """Put every watched path back as it was; (path, reason) for each that could not be."""
    problems: list[tuple[str, str]] = []
    # New entries go first, deepest first, so directories are empty when removed.
    for path in sorted(after.files.keys() - before.files.keys(), key=len, reverse=True):
        if before.files.get(path) is None and after.files.get(path) is not None:
            _remove(path, problems)
    for path in sorted(before.files):
        old = before.files[path]
        new = after.files.get(path)
        if old == new:
            continue
        if old is None:  # an absent root that now exists
            _remove(path, problems)
            continue
        try:
            _put_back(path, old, new)
        except OSError as error:
            problems.append((path, str(error)))
    return problems


def _put_back(path: str, old: FileState, new: FileState | None) -> None:
    if new is not None and new.kind != old.kind:
        if new.kind == "dir":
            shutil.rmtree(path)
        else:
            os.unlink(path)
        new = None
    if old.kind == "dir":
        if new is None:
            os.mkdir(path)
    elif old.kind == "link":
        if new is not None:
            os.unlink(path)
        if old.target is None:
            raise OSError(f"no target kept for {path}")
        os.symlink(old.target, path)
    else:
        if old.data is None:
            raise OSError(f"{path} is larger than {KEEP_BYTES} bytes: its content was not kept")
        if new is None or new.digest != old.digest:
            Path(path).write_bytes(old.data)
    if old.kind != "link":
        os.chmod(path, stat.S_IMODE(old.mode))
    os.lchown(path, old.uid, old.gid)


def restore(before: Snapshot, after: Snapshot, differences: Iterable[Difference]) -> Restored:
    """Write back every difference that can be: values, task affinities, files."""
    done = Restored()
    changed = list(differences)
    for difference in changed:
        if difference.kind == "value":
            reason = _restore_value(difference)
        elif difference.kind == "task":
            reason = _restore_task(difference, before)
        else:
            continue
        if reason is None:
            done.fixed.append(difference)
        else:
            done.failed.append((difference, reason))
    files = [difference for difference in changed if difference.kind == "file"]
    if files:
        problems = dict(_restore_files(before, after))
        for difference in files:
            if difference.key in problems:
                done.failed.append((difference, problems[difference.key]))
            else:
                done.fixed.append(difference)
    return done
