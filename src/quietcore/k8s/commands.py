"""``quietcore k8s``: Kubernetes node pools. The group and ``render`` are here; ``rollout`` and
``inventory`` live in ``quietcore.k8s.rollout_cli``."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

from quietcore import console
from quietcore.cli_support import EXIT_BAD_INPUT, load_or_exit, profile_option, read_or_exit
from quietcore.engine import FanOut
from quietcore.k8s.pool import TAINT_EFFECTS, PoolError, TaintEffect, declared_topology, pool_values
from quietcore.k8s.render import DEFAULT_HANDLER, as_stream, render_pool
from quietcore.k8s.rollout_cli import inventory, rollout
from quietcore.k8s.templates import verifier_script
from quietcore.profile.cpuset import format_cpulist
from quietcore.profile.errors import ResolveError
from quietcore.profile.loaded import LoadedProfile
from quietcore.profile.resolve import refuse
from quietcore.topology import TOPOLOGY_READS, Topology, parse_topology

# A RuntimeClass handler is a DNS-1123 label (the container runtime's name for it).
_HANDLER = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@click.group()
def k8s() -> None:
    """Kubernetes node pools: one profile drives the kubelet, the cluster objects and the
    rollout across a pool's nodes.

    \b
      quietcore k8s render --profile trading --pool trading --topology-from NODE -o out/
      kubectl apply -f out/cluster/
      quietcore k8s rollout --selector quietcore.io/pool=trading --profile trading --dry-run
      quietcore k8s rollout --selector quietcore.io/pool=trading --profile trading \\
        --max-unavailable 1 --canary 1 --reboot if-needed
      quietcore k8s inventory --selector quietcore.io/pool=trading -o pool.py
    """


def _refuse(loaded: LoadedProfile, error: ResolveError) -> None:
    for problem in refuse(loaded, error).problems:
        console.error(str(problem))
    sys.exit(EXIT_BAD_INPUT)


def _node_topology(target: str) -> Topology:
    [read] = read_or_exit([target], TOPOLOGY_READS, FanOut())
    if read.readings is None:
        console.fail(f"{read.host}: {read.error}", 3)
    return parse_topology(read.readings)


def _write(files: dict[str, str], directory: Path) -> None:
    for relative, text in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if path.suffix == ".sh":
            path.chmod(0o755)
    console.note(f"wrote {len(files)} files under {directory}")
    console.note(f"next: kubectl apply -f {directory / 'cluster'}")


@k8s.command()
@profile_option
@click.option(
    "--pool",
    required=True,
    metavar="NAME",
    help="The pool's name: its nodes carry the label quietcore.io/pool=NAME.",
)
@click.option(
    "--topology-from",
    "target",
    metavar="TARGET",
    default=None,
    help="A node of the pool to read the CPUs and NUMA nodes from (read-only, over SSH, or "
    "@local). Without it the profile must spell its CPUs out as lists.",
)
@click.option(
    "--taint",
    type=click.Choice(TAINT_EFFECTS),
    default=None,
    help="Also taint the pool's nodes quietcore.io/pool=NAME with this effect; the "
    "RuntimeClass, the verifier and the example pod tolerate it.",
)
@click.option(
    "--runtime-handler",
    default=DEFAULT_HANDLER,
    show_default=True,
    help="The RuntimeClass handler: a runtime handler the nodes' containerd or CRI-O defines.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write one file per object under this directory (cluster/, node/, examples/) instead "
    "of one YAML stream on stdout.",
)
def render(
    profile_name: str,
    pool: str,
    target: str | None,
    taint: TaintEffect | None,
    runtime_handler: str,
    output: Path | None,
) -> None:
    """Render a node pool's kubelet drop-in and cluster objects from a profile.

    \b
    Files (with -o DIR):
      node/90-quietcore.conf        the kubelet drop-in `quietcore apply` writes too
      node/node-labels.yaml         the pool's label, for kubectl patch
      node/label-nodes.sh           labels (and taints) nodes: sh label-nodes.sh NODE...
      cluster/*.yaml                namespace, RuntimeClass, verifier ConfigMap + DaemonSet
      examples/guaranteed-pod.yaml  a Guaranteed pod on isolated CPUs and hugepages

    Nothing is sent to a cluster; the only read is --topology-from's node.
    """
    loaded = load_or_exit(profile_name)
    if not _HANDLER.match(runtime_handler):
        console.fail(f"--runtime-handler {runtime_handler!r} must be a DNS-1123 label")
    try:
        topology = declared_topology(loaded.profile) if target is None else _node_topology(target)
        values = pool_values(loaded, topology, pool, taint=taint, topology_from=target)
    except PoolError as problem:
        console.fail(f"--pool: {problem}")
    except ResolveError as problem:
        _refuse(loaded, problem)
        return
    if target is None:
        console.note(
            f"no --topology-from: rendered for a node of CPUs {format_cpulist(topology.online)} "
            "on one NUMA node (reservedMemory on node 0); per-IRQ and per-NIC checks need a node"
        )
    files = render_pool(values, verifier_script(), runtime_handler)
    if output is None:
        console.show_text(as_stream(files))
    else:
        _write(files, output)


k8s.add_command(rollout)
k8s.add_command(inventory)
