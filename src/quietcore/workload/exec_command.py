"""``quietcore exec``: start a workload on isolated CPUs, the way it should be started."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import click

from quietcore import console
from quietcore.profile.cpuset import format_cpulist
from quietcore.workload.exec_plan import ExecError, ExecPlan, ExecRequest, describe, plan_exec

log = logging.getLogger(__name__)

# Like env(1), nice(1) and `docker run`: the workload's own exit status passes through, so
# quietcore's failures use the codes no program is expected to return for itself.
EXIT_SETUP = 125
EXIT_CANNOT_EXECUTE = 126
EXIT_NOT_FOUND = 127

EPILOG = """\b
Exit status: CMD's own; 2 for a bad option; 125 when quietcore refuses or cannot set
something up; 126 when CMD cannot be executed; 127 when it is not found.
"""


@click.command(
    "exec",
    epilog=EPILOG,
    # Everything after CMD belongs to CMD, even `-x` without a `--` before CMD.
    context_settings={"allow_interspersed_args": False},
)
@click.option(
    "--cpus",
    "cpus_text",
    required=True,
    metavar="SPEC",
    help="isolated, isolated[i], isolated[i-j] (positions, lowest CPU first) or a CPU list "
    "such as 2-3,6. Quote the brackets in a shell.",
)
@click.option(
    "--mem-node",
    default="local",
    show_default=True,
    metavar="local|N|none",
    help="Bind all memory to this NUMA node (MPOL_BIND). local: the node of the chosen CPUs; "
    "none: leave the memory policy alone.",
)
@click.option(
    "--fifo",
    type=click.IntRange(1, 99),
    default=None,
    metavar="PRIO",
    help="Run as SCHED_FIFO with this priority (1-99); default: the policy is inherited.",
)
@click.option(
    "--mlock",
    is_flag=True,
    help="Lock all of CMD's memory (mlockall MCL_CURRENT|MCL_FUTURE) through an LD_PRELOAD "
    "shim, with RLIMIT_MEMLOCK unlimited. Not for statically linked programs.",
)
@click.option(
    "--allow-housekeeping",
    is_flag=True,
    help="Accept a CPU list that is not (entirely) isolated: CMD is only pinned there and "
    "joins no partition.",
)
@click.option("-n", "--dry-run", is_flag=True, help="Print what would be done; change nothing.")
@click.argument("command", nargs=-1, required=True, metavar="-- CMD [ARG]...")
def exec_command(
    cpus_text: str,
    mem_node: str,
    fifo: int | None,
    mlock: bool,
    allow_housekeeping: bool,
    dry_run: bool,
    command: tuple[str, ...],
) -> None:
    """Start CMD on isolated CPUs: in the isolation partition, pinned, with its memory on the
    NUMA node of those CPUs, optionally SCHED_FIFO and with its memory locked.

    This is what people otherwise hand-roll with cgexec, taskset, numactl and chrt. quietcore
    sets it all up on itself, then replaces itself with CMD (execve: same PID, no shell, no
    wrapper left behind), so CMD and every thread and child it starts inherit it. Runs on this
    host only; needs root for the cgroup, SCHED_FIFO and --mlock.

    \b
    Examples:
      quietcore exec --cpus 'isolated[0]' -- ./md-handler --config md.toml
      quietcore exec --cpus 'isolated[1-2]' --fifo 50 --mlock -- ./engine
      quietcore exec --cpus 3 --mem-node 1 -- ./feed        (CPU 3, memory on node 1)
      quietcore exec --cpus 'isolated[0]' --dry-run -- ./engine
      quietcore -v exec --cpus isolated -- ./engine       (-v: where the CPUs come from)

    \b
    Where the isolated CPUs come from:
      1. quietcore's cpuset partition (a profile with `cpu.isolation: [cpuset]`, applied by
         `quietcore apply`): cgroup v2 /sys/fs/cgroup/quietcore-isolated, v1
         /sys/fs/cgroup/cpuset/quietcore-isolated. CMD joins it.
      2. otherwise boot-time isolcpus= (/sys/devices/system/cpu/isolated): CMD is pinned
         there; there is no cgroup to join.
    A CPU list outside them is refused unless --allow-housekeeping: CMD would share those
    CPUs with the OS, its interrupts and kernel threads.

    \b
    Good to know:
      - Isolated CPUs are not load-balanced: a thread stays on the CPU where it starts.
        Give each busy thread its own CPU (pin threads inside CMD, or one CMD per CPU).
      - --mlock works through LD_PRELOAD, which statically linked programs (Go, musl
        -static, ...) and setuid programs ignore: they must call mlockall() themselves, and
        quietcore refuses --mlock for a static ELF. The shim is built once with the system C
        compiler (cc, gcc or clang) and cached; child processes of CMD inherit it.
      - SCHED_FIFO tasks are still throttled by kernel.sched_rt_runtime_us (95% by default).
    """
    argv = list(command)
    executable = _resolve(argv[0])
    request = ExecRequest(
        cpus=cpus_text,
        mem_node=mem_node,
        fifo=fifo,
        mlock=mlock,
        allow_housekeeping=allow_housekeeping,
    )
    from quietcore.workload.host_view import read_host_view

    try:
        plan = plan_exec(request, read_host_view())
    except ExecError as problem:
        console.fail(str(problem), EXIT_SETUP)
    log.info("CPU %s: %s", format_cpulist(plan.cpus), plan.origin)
    for note in plan.notes:
        log.info("%s", note)
    if dry_run:
        _show_plan(plan, [executable, *argv[1:]])
        return
    preload = _shim(executable) if plan.mlock else None
    from quietcore.workload.launch import LaunchError, launch

    try:
        launch(plan, executable, argv, preload)
    except LaunchError as problem:
        console.fail(str(problem), EXIT_SETUP)


def _resolve(name: str) -> str:
    """CMD's path, looked up in PATH as a shell would, before anything changes."""
    found = shutil.which(name) if "/" not in name else name
    if found is None or not os.path.exists(found):
        console.fail(f"{name}: command not found", EXIT_NOT_FOUND)
    if os.path.isdir(found) or not os.access(found, os.X_OK):
        console.fail(f"{found}: not an executable file", EXIT_CANNOT_EXECUTE)
    return found


def _shim(executable: str) -> Path:
    from quietcore.probes.build import is_static
    from quietcore.workload.mlock_shim import ShimError, ensure_shim

    try:
        static = is_static(Path(executable))
    except (OSError, ValueError):
        # Not an ELF file (a script): its interpreter is what the shim is loaded into.
        static = False
    if static:
        console.fail(
            f"--mlock: {executable} is statically linked, so it ignores LD_PRELOAD and the "
            "shim cannot lock its memory; call mlockall(MCL_CURRENT|MCL_FUTURE) in the program "
            "and drop --mlock",
            EXIT_SETUP,
        )
    try:
        return ensure_shim()
    except ShimError as problem:
        console.fail(str(problem), EXIT_SETUP)


def _show_plan(plan: ExecPlan, argv: list[str]) -> None:
    from rich.table import Table

    preload = None
    if plan.mlock:
        from quietcore.workload.mlock_shim import ShimError, find_compiler, shim_path

        try:
            library = shim_path(find_compiler())
            preload = f"{library}" + ("" if library.exists() else " (built on first use)")
        except ShimError as problem:
            preload = f"unavailable: {problem}"
    table = Table(box=None, pad_edge=False, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for step, what in describe(plan, argv, preload):
        table.add_row(step, what)
    console.show(table)
