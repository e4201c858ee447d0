"""The ``quietcore`` command line."""

# pyinfra's SSH fan-out runs on gevent; patch before anything opens sockets or threads
# (pyinfra's own CLI does the same; without it connecting to many hosts is serialised).
from gevent import monkey

monkey.patch_all()

import logging  # noqa: E402
import sys  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import click  # noqa: E402

from quietcore import __version__, console  # noqa: E402
from quietcore.audit import HostAudit, audit_host, exit_code, reads_for  # noqa: E402
from quietcore.cli_support import (  # noqa: E402
    EXIT_BAD_INPUT,
    TARGETS_HELP,
    fan_out_options,
    format_option,
    load_or_exit,
    output_option,
    profile_option,
    read_or_exit,
)
from quietcore.converge.commands import apply, history, plan, rollback  # noqa: E402
from quietcore.lab.cli import lab  # noqa: E402
from quietcore.probes.commands import (  # noqa: E402
    jitter,
    jitter_exit_code,
    jitter_request_for,
    run_probes,
    show_results,
)
from quietcore.profile.load import list_builtin  # noqa: E402
from quietcore.report.jitter_json import jitter_document  # noqa: E402
from quietcore.report.json_report import verify_document  # noqa: E402
from quietcore.report.profile_view import builtin_table, profile_yaml, resolved_table  # noqa: E402
from quietcore.report.table import fleet_summary, host_table  # noqa: E402
from quietcore.report.topology_view import topology_document, topology_table  # noqa: E402
from quietcore.topology import TOPOLOGY_READS, parse_topology  # noqa: E402


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="quietcore")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv: pyinfra's too).")
def main(verbose: int) -> None:
    """Make Linux hosts quiet enough for latency-critical work.

    A profile (YAML) declares CPU isolation, IRQ affinity, hugepages, NUMA, memory, network,
    kernel and container settings. quietcore resolves it against each host's real topology,
    plans and applies it over SSH (snapshot first, journal of every change, exact rollback)
    and reads every declared setting back from the running kernel.

    \b
    Start here:
      quietcore profiles list                       the built-in profiles
      quietcore topology @local                     CPUs, NUMA nodes, NICs of a host
      quietcore profiles show trading --resolved-for @local
                                                    the concrete settings for that host
      quietcore verify --profile network-latency @local
                                                    declared vs actual, exit 1 on drift
      quietcore plan --profile trading HOST         what apply would change, touching nothing
      quietcore apply --profile trading --reboot if-needed HOST
      quietcore rollback HOST                       back to the snapshot before quietcore
      quietcore history HOST                        the journal: who changed what, when
    """
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(
        level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s"
    )
    if verbose < 2:
        logging.getLogger("pyinfra").setLevel(logging.ERROR)
        # A rebooting host refuses SSH banners for a while: expected, not worth a traceback.
        logging.getLogger("paramiko").setLevel(logging.CRITICAL)


@main.command(epilog=TARGETS_HELP)
@profile_option
@format_option("table for people; json (schema quietcore.verify/v1) for tools.")
@output_option
@click.option("--problems-only", is_flag=True, help="Table: hide settings that are ok.")
@click.option(
    "--jitter",
    "with_jitter",
    is_flag=True,
    help="Then run the jitter probe as the profile's verify.jitter section says (CPUs, "
    "duration, threshold) and judge every CPU by its accept rules; see `quietcore jitter`.",
)
@fan_out_options
@click.argument("targets", nargs=-1, required=True, metavar="TARGET...")
def verify(
    profile_name: str,
    output_format: str,
    output: Path | None,
    problems_only: bool,
    with_jitter: bool,
    parallel: int | None,
    connect_timeout: int,
    targets: tuple[str, ...],
) -> None:
    """Read every setting the profile declares back from each host: declared vs actual.

    One SSH round trip per host reads the topology and every knob; nothing is changed.
    Each setting is ok, drift, missing (the host lacks the sysctl/file it lives in),
    unsupported (the host cannot have it, e.g. no cpufreq in a VM, with the reason) or
    immovable (the kernel owns it, e.g. a managed IRQ).

    \b
    With --jitter the probe then runs as the profile's verify.jitter section says, and a CPU
    that breaks its accept rules fails the verify like drift does.

    \b
    Exit status: 0 every host as declared; 1 drift or missing on some host (or a CPU
    failed the jitter rules);
    2 bad input (profile, targets) or a host that cannot satisfy the profile;
    3 a host could not be reached or read.

    \b
    Examples:
      quietcore verify --profile network-latency @local
      quietcore verify -p ./my-profile.yaml --format json -o audit.json inventory/fleet.py
    """
    loaded = load_or_exit(profile_name)
    reads = read_or_exit(targets, reads_for(loaded), parallel, connect_timeout)
    audits = [audit_host(loaded, read) for read in reads]
    status = exit_code(audits)
    jitter_part = None
    if with_jitter:
        request = jitter_request_for(loaded)
        hosts, verdicts = run_probes(loaded, request, targets, parallel, connect_timeout)
        jitter_part = (hosts, verdicts)
        status = max(status, jitter_exit_code(hosts, verdicts))
    if output_format == "json":
        document = verify_document(loaded, audits, datetime.now(UTC))
        if jitter_part is not None:
            document["jitter"] = jitter_document(*jitter_part, loaded, datetime.now(UTC))
        _emit_json(document, output)
    else:
        _emit_tables(audits, problems_only, output)
        if jitter_part is not None:
            show_results(*jitter_part, loaded=loaded, output_format="table", output=None, extras={})
    sys.exit(status)


def _emit_json(document: Any, output: Path | None) -> None:
    if output is None:
        console.show_json(document)
        return
    import json

    output.write_text(json.dumps(document, indent=2) + "\n")
    console.note(f"wrote {output}")


def _emit_tables(audits: Sequence[HostAudit], problems_only: bool, output: Path | None) -> None:
    renderables = [host_table(audit, problems_only=problems_only) for audit in audits]
    renderables.append(fleet_summary(audits))
    if output is None:
        for renderable in renderables:
            console.show(renderable)
        return
    output.write_text(console.render_plain(renderables))
    console.note(f"wrote {output}")


@main.command(epilog=TARGETS_HELP)
@format_option("table for people; json for tools.")
@fan_out_options
@click.argument("targets", nargs=-1, required=True, metavar="TARGET...")
def topology(
    output_format: str, parallel: int | None, connect_timeout: int, targets: tuple[str, ...]
) -> None:
    """Show each host's CPUs, cores, sockets, NUMA nodes, hugepages and NICs.

    This is what profile tokens such as `reserved`, `rest` and `{per_numa_node: 1}` are
    resolved against. Read-only, one round trip per host.
    """
    reads = read_or_exit(targets, TOPOLOGY_READS, parallel, connect_timeout)
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


@main.group()
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
    [read] = read_or_exit([target], reads_for(loaded), None, 10)
    audit = audit_host(loaded, read)
    if audit.status in ("refused", "unreachable"):
        console.error(f"{audit.host}: {audit.error}")
        sys.exit(EXIT_BAD_INPUT if audit.status == "refused" else 3)
    console.show(resolved_table(loaded, audit))


for command in (plan, apply, rollback, history, jitter, lab):
    main.add_command(command)

if __name__ == "__main__":
    main()
