"""``quietcore lab``: a local VM with a chosen hardware topology, the default target."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from quietcore import console
from quietcore.cli_support import output_option
from quietcore.lab.spec import DEFAULT_NAME, LabError, LabSpec, check_name, format_mib, parse_memory


def _name(value: str) -> str:
    try:
        return check_name(value)
    except LabError as problem:
        raise click.BadParameter(str(problem)) from None


def _name_callback(_ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
    if isinstance(value, tuple):
        return tuple(_name(item) for item in value)
    return None if value is None else _name(value)


def _name_argument(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.argument(
        "name", required=False, default=DEFAULT_NAME, callback=_name_callback, metavar="[NAME]"
    )(command)


def _timeout_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--timeout",
        type=click.FloatRange(min=1),
        default=None,
        help="Seconds to wait for SSH (default: 180 with KVM, longer with TCG).",
    )(command)


@click.group("lab")
def lab() -> None:
    """A local VM shaped like the target hardware: CPUs, NUMA nodes, a multi-queue NIC.

    The lab is the safe place to try a profile: tune it, reboot it, verify it, throw it away.
    It boots a cached Debian image (built once with debootstrap, root needed) with a real
    GRUB, so kernel command-line changes made inside take effect on reboot. SSH listens on
    127.0.0.1 only. Each lab runs on a copy-on-write overlay: `lab down` returns it to
    pristine.

    \b
    Start here:
      quietcore lab up                         4 CPUs, 2 NUMA nodes, 2G, 4 NIC queues
      quietcore topology $(quietcore lab inventory --path)
      quietcore lab ssh -- cat /proc/cmdline
      quietcore lab down
    """


@lab.command()
@click.option("--name", default=DEFAULT_NAME, show_default=True, callback=_name_callback)
@click.option("--cpus", type=int, default=4, show_default=True, help="Online vCPUs.")
@click.option(
    "--numa-nodes", type=int, default=2, show_default=True, help="CPUs and memory split evenly."
)
@click.option("--memory", default="2G", show_default=True, help="Total memory, e.g. 2G, 1536M.")
@click.option(
    "--nic-queues",
    type=int,
    default=4,
    show_default=True,
    help="Queue pairs (and MSI-X vectors) of the data NIC.",
)
@click.option("--threads", type=int, default=1, show_default=True, help="SMT threads per core.")
@click.option(
    "--accel",
    type=click.Choice(["auto", "kvm", "tcg"]),
    default="auto",
    show_default=True,
    help="auto: KVM if it runs the lab kernel here (tried once per host boot), else TCG.",
)
@_timeout_option
def up(
    name: str,
    cpus: int,
    numa_nodes: int,
    memory: str,
    nic_queues: int,
    threads: int,
    accel: str,
    timeout: float | None,
) -> None:
    """Boot a lab (building the image first if it is not cached) and wait for SSH.

    Prints the path of the lab's pyinfra inventory file on stdout, e.g.
    `quietcore topology $(quietcore lab up)`. A lab of the same name and shape that is
    already running is reused; one whose qemu died is cleared and booted afresh.
    """
    from quietcore.lab.lifecycle import up as lab_up

    try:
        spec = LabSpec(name, cpus, numa_nodes, parse_memory(memory), nic_queues, threads)
        result = lab_up(spec, accel=accel, timeout=timeout)  # type: ignore[arg-type]
    except LabError as problem:
        console.fail(str(problem))
    state = result.lab
    if result.reused:
        console.note(f"lab {name} is already running ({state.spec.describe()}): reusing it")
    else:
        console.note(
            f"lab {name} up: SSH answered {state.boot_seconds:.1f} s after qemu started "
            f"({state.accel}); `quietcore lab ssh {name}` to log in"
        )
    console.show(Text(str(state.inventory)))


@lab.command()
def status() -> None:
    """Every lab: running or not, SSH port, shape, uptime, accelerator."""
    from quietcore.lab.state import LabState, lab_names

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("lab", "state", "pid", "ssh", "cpus", "nodes", "memory", "queues"):
        table.add_column(column)
    for column in ("accel", "uptime", "boot to ssh"):
        table.add_column(column)
    for name in lab_names():
        state = LabState.load(name)
        if state is None:
            table.add_row(name, "broken (no lab.json)", *["-"] * 9)
            continue
        pid = state.pid
        alive = "stopped (qemu gone)" if pid is None else state.status
        spec = state.spec
        table.add_row(
            name,
            alive,
            "-" if pid is None else str(pid),
            f"127.0.0.1:{state.ssh_port}",
            str(spec.cpus),
            str(spec.numa_nodes),
            format_mib(spec.memory_mib),
            str(spec.nic_queues),
            state.accel,
            _duration(time.time() - state.started_at) if pid is not None else "-",
            "-" if state.boot_seconds is None else f"{state.boot_seconds:.1f} s",
        )
    if not table.rows:
        console.note("no labs: `quietcore lab up` starts one")
        return
    console.show(table)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class _SshCommand(click.Command):
    """``lab ssh [NAME] [-- CMD...]``: everything after ``--`` is the remote command (click
    would otherwise take its first word for NAME)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            split = args.index("--")
            ctx.meta["lab_remote_command"] = tuple(args[split + 1 :])
            args = args[:split]
        return super().parse_args(ctx, args)


@lab.command(cls=_SshCommand)
@_name_argument
@click.pass_context
def ssh(ctx: click.Context, name: str) -> None:
    """Log in to a lab as root, or run `-- CMD` there (exit status is the command's).

    \b
    Examples:
      quietcore lab ssh
      quietcore lab ssh big -- cat /sys/devices/system/cpu/isolated
    """
    from quietcore.lab.lifecycle import guest, running

    command: tuple[str, ...] = ctx.meta.get("lab_remote_command", ())
    try:
        state = running(name)
        argv = guest(state).argv(command, batch=bool(command))
    except LabError as problem:
        console.fail(str(problem))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)


@lab.command()
@_name_argument
@_timeout_option
def reboot(name: str, timeout: float | None) -> None:
    """Reboot the guest (systemctl reboot) and wait until SSH answers with a new boot id."""
    from quietcore.lab.lifecycle import reboot as lab_reboot

    try:
        seconds = lab_reboot(name, timeout)
    except LabError as problem:
        console.fail(str(problem))
    console.note(f"lab {name} rebooted: SSH answered again after {seconds:.1f} s")


@lab.command()
@click.argument("names", nargs=-1, callback=_name_callback, metavar="[NAME]...")
@click.option("--all", "all_labs", is_flag=True, help="Every lab.")
def down(names: tuple[str, ...], all_labs: bool) -> None:
    """Stop a lab and delete its overlay and state (the cached image stays)."""
    from quietcore.lab.lifecycle import down as lab_down
    from quietcore.lab.state import lab_names

    targets = lab_names() if all_labs else list(names or (DEFAULT_NAME,))
    for name in targets:
        try:
            stopped = lab_down(name)
        except LabError as problem:
            console.fail(str(problem))
        console.note(f"lab {name}: {'stopped and removed' if stopped else 'not running; removed'}")


@lab.command()
@click.argument("names", nargs=-1, callback=_name_callback, metavar="[NAME]...")
@output_option("the inventory")
@click.option(
    "--path",
    "print_path",
    is_flag=True,
    help="Print the path of each named lab's own inventory file instead.",
)
def inventory(names: tuple[str, ...], output: Path | None, print_path: bool) -> None:
    """A pyinfra inventory of running labs (all of them unless named); hosts are lab-NAME.

    \b
    Examples:
      quietcore lab inventory -o lab.py && quietcore verify -p trading lab.py
      quietcore topology $(quietcore lab inventory --path)
    """
    from quietcore.lab.inventory import host_entry, render_inventory
    from quietcore.lab.lifecycle import running, write_inventory
    from quietcore.lab.state import running_labs

    try:
        if print_path:
            for name in names or (DEFAULT_NAME,):
                console.show(Text(str(write_inventory(running(name)))))
            return
        labs = [running(name) for name in names] if names else running_labs()
    except LabError as problem:
        console.fail(str(problem))
    if not labs:
        console.fail("no lab is running: `quietcore lab up` starts one")
    text = render_inventory(
        [host_entry(s.spec.host, s.ssh_port, s.client_key, s.known_hosts) for s in labs]
    )
    if output is None:
        sys.stdout.write(text)
        return
    output.write_text(text)
    console.note(f"wrote {output} ({', '.join(s.spec.host for s in labs)})")
