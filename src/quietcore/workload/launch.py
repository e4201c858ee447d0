"""Carry an ``ExecPlan`` out in this process, then become the workload (execve).

Everything set here survives execve: the cgroup, the NUMA memory policy, the CPU affinity,
the scheduling policy and the resource limits. mlockall() does not, so memory locking is
delegated to an LD_PRELOAD shim that runs inside the workload (``mlock_shim``).

The order matters: joining a cpuset resets the affinity to the whole cpuset and limits the
memory nodes a policy may name, so the cgroup comes first; SCHED_FIFO comes last, so this
Python process spends as little time as possible as a real-time task before it is replaced.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import platform
import resource
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NoReturn

from quietcore.profile.cpuset import format_cpulist
from quietcore.workload.exec_plan import SET_MEMPOLICY_SYSCALLS, ExecPlan

MPOL_BIND = 2
CAP_IPC_LOCK = 14
SELF_STATUS = "/proc/self/status"
# Bits of the node mask handed to set_mempolicy: far above any real node count (the kernel
# only requires the bits beyond its MAX_NUMNODES to be zero).
_NODEMASK_BITS = 1024
_ULONG_BITS = ctypes.sizeof(ctypes.c_ulong) * 8

log = logging.getLogger(__name__)


class LaunchError(RuntimeError):
    """A step the kernel refused, with the reason in words."""


def launch(plan: ExecPlan, executable: str, argv: Sequence[str], preload: Path | None) -> NoReturn:
    """Apply ``plan`` to this process and replace it with ``executable`` (``argv``)."""
    env = dict(os.environ)
    if plan.cgroup is not None:
        join_cgroup(plan.cgroup)
    if plan.mem_node is not None:
        bind_memory(plan.mem_node)
    pin(plan)
    if plan.mlock:
        if preload is None:
            raise LaunchError("--mlock needs the LD_PRELOAD shim")
        unlimit_memlock()
        env = with_preload(env, preload)
    if plan.fifo is not None:
        set_fifo(plan.fifo)
    _reset_signals()
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(executable, list(argv), env)
    except OSError as problem:
        raise LaunchError(f"cannot execute {executable}: {problem.strerror}") from None


def join_cgroup(directory: str) -> None:
    procs = f"{directory}/cgroup.procs"
    try:
        with open(procs, "w") as file:
            file.write(str(os.getpid()))
    except PermissionError:
        raise LaunchError(f"cannot join {directory}: writing {procs} needs root") from None
    except OSError as problem:
        raise LaunchError(f"cannot join {directory}: {procs}: {problem.strerror}") from None


def bind_memory(node: int) -> None:
    """set_mempolicy(MPOL_BIND, {node}): every page the workload allocates comes from there."""
    number = SET_MEMPOLICY_SYSCALLS.get(platform.machine())
    if number is None:
        raise LaunchError(f"set_mempolicy is not known on {platform.machine()}")
    mask = (ctypes.c_ulong * (_NODEMASK_BITS // _ULONG_BITS))()
    mask[node // _ULONG_BITS] = 1 << (node % _ULONG_BITS)
    libc = ctypes.CDLL(None, use_errno=True)
    # maxnode is one more than the mask's bits: the kernel reads maxnode - 1 of them.
    result = libc.syscall(
        ctypes.c_long(number),
        ctypes.c_int(MPOL_BIND),
        mask,
        ctypes.c_ulong(_NODEMASK_BITS + 1),
    )
    if result != 0:
        code = ctypes.get_errno()
        raise LaunchError(
            f"cannot bind memory to NUMA node {node}: set_mempolicy: {os.strerror(code)}"
            + (" (the node is outside this cpuset's memory nodes)" if code == errno.EINVAL else "")
        )


def pin(plan: ExecPlan) -> None:
    try:
        os.sched_setaffinity(0, plan.cpus)
    except OSError as problem:
        raise LaunchError(
            f"cannot pin to CPU {format_cpulist(plan.cpus)}: {problem.strerror} (outside the "
            "cpuset this process is in?)"
        ) from None
    # The kernel silently narrows an affinity to the CPUs of the task's cpuset.
    actual = frozenset(os.sched_getaffinity(0))
    if actual != plan.cpus:
        raise LaunchError(
            f"asked for CPU {format_cpulist(plan.cpus)} but the kernel allows only "
            f"{format_cpulist(actual)} (the cpuset this process is in)"
        )


def unlimit_memlock() -> None:
    """RLIMIT_MEMLOCK unlimited, so mlockall in the workload cannot fail for its size. Raising
    the hard limit needs CAP_SYS_RESOURCE, which containers often drop; the limit then does
    not matter when the workload will hold CAP_IPC_LOCK (root keeps it across execve)."""
    unlimited = resource.RLIM_INFINITY
    try:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (unlimited, unlimited))
        return
    except (OSError, ValueError):
        pass
    _, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    resource.setrlimit(resource.RLIMIT_MEMLOCK, (hard, hard))
    with open(SELF_STATUS) as status:
        if keeps_ipc_lock(status.read(), os.geteuid()):
            log.info(
                "RLIMIT_MEMLOCK stays at %d bytes (no CAP_SYS_RESOURCE to raise it); CMD "
                "keeps CAP_IPC_LOCK, which lets it lock any amount",
                hard,
            )
            return
    raise LaunchError(
        f"cannot raise RLIMIT_MEMLOCK above {hard} bytes (needs CAP_SYS_RESOURCE) and CMD "
        "would not hold CAP_IPC_LOCK: mlockall would fail for anything larger"
    )


def keeps_ipc_lock(status: str, euid: int) -> bool:
    """Whether a program started by execve from the process of ``status`` (its
    /proc/PID/status text) holds CAP_IPC_LOCK: root gets every capability of the bounding
    set, anyone else only the ambient ones."""
    fields = dict(
        line.split(":", 1) for line in status.splitlines() if line.startswith(("CapBnd", "CapAmb"))
    )
    which = "CapBnd" if euid == 0 else "CapAmb"
    mask = int(fields.get(which, "0").strip() or "0", 16)
    return bool(mask >> CAP_IPC_LOCK & 1)


def with_preload(env: Mapping[str, str], preload: Path) -> dict[str, str]:
    """``env`` with ``preload`` first in LD_PRELOAD (the user's own entries kept after it)."""
    if any(separator in str(preload) for separator in ": \t"):
        raise LaunchError(f"{preload}: LD_PRELOAD cannot name a path with ':' or spaces")
    current = env.get("LD_PRELOAD", "").strip()
    return {**env, "LD_PRELOAD": f"{preload}:{current}" if current else str(preload)}


def set_fifo(priority: int) -> None:
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except PermissionError:
        raise LaunchError(
            "cannot set SCHED_FIFO: needs root, CAP_SYS_NICE or RLIMIT_RTPRIO >= "
            f"{priority} (and, with RT group scheduling, rt_runtime in this cpu cgroup)"
        ) from None
    except OSError as problem:
        raise LaunchError(f"cannot set SCHED_FIFO {priority}: {problem.strerror}") from None


def _reset_signals() -> None:
    """Python ignores SIGPIPE and SIGXFSZ; ignored signals stay ignored across execve, and a
    workload must not inherit that (nor a blocked signal)."""
    for name in ("SIGPIPE", "SIGXFSZ"):
        signal.signal(getattr(signal, name), signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
