"""``quietcore topology`` and ``quietcore profiles``: what a host has, what a profile says."""

from __future__ import annotations

import sys

import click

from quietcore import console
from quietcore.audit import audit_host, reads_for
from quietcore.cli_support import (
    EXIT_BAD_INPUT,
    TARGETS_HELP,
    fan_out_options,
    format_option,
    load_or_exit,
    read_or_exit,
)
from quietcore.engine import FanOut
from quietcore.profile.load import list_builtin
from quietcore.report.profile_view import builtin_table, profile_yaml, resolved_table
from quietcore.report.topology_view import topology_document, topology_table
from quietcore.topology import TOPOLOGY_READS, parse_topology


@click.command(epilog=TARGETS_HELP)
@format_option("table for people; json for tools.")
@fan_out_options
@click.argument("targets", nargs=-1, required=True, metavar="TARGET...")
def topology(output_format: str, fan_out: FanOut, targets: tuple[str, ...]) -> None:
    """Show each host's CPUs, cores, sockets, NUMA nodes, hugepages and NICs.

    This is what profile tokens such as `reserved`, `rest` and `{per_numa_node: 1}` are
    resolved against. Read-only, one round trip per host.
    """
    reads = read_or_exit(targets, TOPOLOGY_READS, fan_out)
    documents = []
    for read in reads:
        if read.readings is None:
            console.error(f"{read.host}: {read.error}")
            continue
        host_topology = parse_topology(read.readings)
        if output_format == "json":
            documents.append(topology_document(read.host, host_topology))
        else:
            console.show(topology_table(read.host, host_topology))
    if output_format == "json":
        console.show_json(documents)
    sys.exit(3 if any(read.readings is None for read in reads) else 0)


@click.group()
def profiles() -> None:
    """List and inspect profiles (built-in or your own YAML files)."""


@profiles.command("list")
def profiles_list() -> None:
    """The built-in profiles, with what each extends and is for."""
    console.show(builtin_table(list_builtin()))


@profiles.command("show")
@click.argument("name", metavar="NAME|FILE")
@click.option(
    "--resolved-for",
    "target",
    metavar="TARGET",
    default=None,
    help="Resolve CPU tokens and list the concrete settings for this host (read-only).",
)
def profiles_show(name: str, target: str | None) -> None:
    """Show a profile after `extends` is merged, or the concrete settings for one host.

    \b
    Examples:
      quietcore profiles show trading
      quietcore profiles show trading --resolved-for @local
    """
    loaded = load_or_exit(name)
    if target is None:
        console.show(profile_yaml(loaded))
        return
    [read] = read_or_exit([target], reads_for(loaded), FanOut())
    audit = audit_host(loaded, read)
    if audit.status in ("refused", "unreachable"):
        console.error(f"{audit.host}: {audit.error}")
        sys.exit(EXIT_BAD_INPUT if audit.status == "refused" else 3)
    console.show(resolved_table(loaded, audit))
