"""``quietcore container-args``: docker/podman flags for a profile's workload on one host."""

from __future__ import annotations

import shlex
import sys

import click

from quietcore import console
from quietcore.cli_support import EXIT_BAD_INPUT, TARGETS_HELP, load_or_exit, read_or_exit
from quietcore.container_args import READS, container_placement
from quietcore.engine import FanOut
from quietcore.profile.errors import ResolveError
from quietcore.profile.resolve import refuse
from quietcore.topology import parse_topology


@click.command("container-args", epilog=TARGETS_HELP)
@click.option(
    "-p",
    "--profile",
    "profile_name",
    required=True,
    metavar="NAME|FILE",
    help="The profile declaring the workload under containers.workloads.",
)
@click.option("-w", "--workload", required=True, metavar="NAME", help="The workload's name.")
@click.option(
    "-f",
    "--format",
    "output_format",
    type=click.Choice(["shell", "lines", "json"]),
    default="shell",
    show_default=True,
    help="shell: one line, quoted; lines: one flag per line; json: the flags and placement.",
)
@click.argument("target", default="@local", metavar="[TARGET]")
def container_args(profile_name: str, workload: str, output_format: str, target: str) -> None:
    """Print the docker/podman flags that place a workload on its CPUs and NUMA node.

    The profile is resolved against TARGET's topology (default: this machine): the workload's
    CPUs (`isolated[0]`, a list, ...) become --cpuset-cpus, its memory nodes (`local`: the
    nodes of those CPUs) --cpuset-mems, then --memory, --ulimit memlock and a bind mount of
    the host's hugetlbfs mount of the workload's page size. Read-only.

    \b
    Examples:
      docker run $(quietcore container-args -p my-profile.yaml -w feed) IMAGE
      podman run $(quietcore container-args -p my-profile.yaml -w feed HOST) IMAGE
    """
    loaded = load_or_exit(profile_name)
    [read] = read_or_exit([target], READS, FanOut())
    if read.readings is None:
        console.error(f"{read.host}: {read.error}")
        sys.exit(3)
    try:
        placed = container_placement(loaded, workload, read.readings, parse_topology(read.readings))
    except ResolveError as error:
        for problem in refuse(loaded, error).problems:
            console.error(f"{read.host}: {problem}")
        sys.exit(EXIT_BAD_INPUT)
    for note in placed.notes:
        console.note(f"{read.host}: {note}")
    if output_format == "json":
        console.show_json(
            {
                "host": read.host,
                "workload": placed.workload,
                "cpus": placed.cpus,
                "mem_nodes": placed.mem_nodes,
                "args": list(placed.args),
            }
        )
    elif output_format == "lines":
        console.show_text("".join(f"{arg}\n" for arg in placed.args))
    else:
        console.show_text(shlex.join(placed.args) + "\n")
