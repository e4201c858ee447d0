"""``quietcore export``: a profile as an OpenShift PerformanceProfile or a TuneD profile."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from quietcore import console
from quietcore.cli_support import EXIT_BAD_INPUT, load_or_exit, profile_option, read_or_exit
from quietcore.engine import FanOut
from quietcore.export import Export
from quietcore.profile.errors import ResolveError
from quietcore.profile.resolve import refuse
from quietcore.topology import TOPOLOGY_READS, Topology, parse_topology


def _topology_or_exit(target: str) -> Topology:
    [read] = read_or_exit([target], TOPOLOGY_READS, FanOut())
    if read.readings is None:
        console.fail(f"{read.host}: {read.error}", 3)
    return parse_topology(read.readings)


@click.command()
@profile_option
@click.option(
    "-f",
    "--format",
    "output_format",
    type=click.Choice(["performanceprofile", "tuned"]),
    required=True,
    help="performanceprofile: OpenShift performance.openshift.io/v2; tuned: a TuneD profile.",
)
@click.option(
    "--topology-from",
    "target",
    metavar="TARGET",
    default=None,
    help="Read this host's topology to resolve CPU tokens (rest, {per_numa_node: N}).",
)
@click.option(
    "--pool",
    default=None,
    help="Node role of the PerformanceProfile (default: the profile name).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Write here (a directory for tuned: PATH/tuned.conf) instead of stdout.",
)
def export(
    profile_name: str,
    output_format: str,
    target: str | None,
    pool: str | None,
    output: Path | None,
) -> None:
    """Export a profile for teams that keep OpenShift's Node Tuning Operator or TuneD.

    What the target format cannot express is listed in the output's header and on stderr.

    \b
    Examples:
      quietcore export --profile trading --format performanceprofile \\
          --topology-from node1 --pool trading -o trading-pp.yaml
      quietcore export --profile network-latency --format tuned -o /etc/tuned/qc-netlat
    """
    from quietcore.export.performanceprofile import export_performance_profile
    from quietcore.export.tuned import export_tuned

    loaded = load_or_exit(profile_name)
    topology = None if target is None else _topology_or_exit(target)
    try:
        if output_format == "tuned":
            result: Export = export_tuned(loaded, topology)
        else:
            result = export_performance_profile(loaded, topology, pool)
    except ResolveError as error:
        for problem in refuse(loaded, error).problems:
            console.error(str(problem))
        sys.exit(EXIT_BAD_INPUT)
    for note in result.not_expressed:
        console.note(f"not expressed: {note}")
    [(name, text)] = result.files.items()
    if output is None:
        console.show_text(text)
        return
    path = output / name if output_format == "tuned" else output
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    console.note(f"wrote {path}")
