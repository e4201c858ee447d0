"""``quietcore k8s rollout`` and ``quietcore k8s inventory`` (added to the ``k8s`` group)."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from quietcore import console
from quietcore.cli_support import fan_out_options, load_or_exit, output_option, profile_option
from quietcore.engine import FanOut
from quietcore.k8s.cluster import (
    Cluster,
    ClusterError,
    annotations_of,
    from_kubeconfig,
    is_unschedulable,
)
from quietcore.k8s.inventory import InventoryError, host_entry, node_address, render_inventory
from quietcore.k8s.rollout import (
    FAILURE_ANNOTATION,
    NodeTarget,
    Rollout,
    RolloutOptions,
    RolloutReport,
    plan_batches,
)

EXIT_NODE_FAILED = 4
EXIT_UNREACHABLE = 3
# key[=|==|!=value] terms, comma-separated; what a label selector may hold (no set syntax).
_TERM = r"[A-Za-z0-9]([A-Za-z0-9._/-]*[A-Za-z0-9])?(\s*(=|==|!=)\s*[A-Za-z0-9._-]*)?"
_SELECTOR = re.compile(rf"^{_TERM}(,{_TERM})*$")


def _selector(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not _SELECTOR.match(value):
        raise click.BadParameter(f"{value!r} is not a label selector like pool=trading")
    return value


def cluster_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--selector``, ``--kubeconfig``, ``--context`` and the SSH data every node shares."""
    options = [
        click.option(
            "-l",
            "--selector",
            required=True,
            callback=_selector,
            help="Label selector of the pool's nodes, e.g. quietcore.io/pool=trading.",
        ),
        click.option(
            "--kubeconfig",
            type=click.Path(exists=True, dir_okay=False),
            default=None,
            help="Kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).",
        ),
        click.option("--context", default=None, help="Kubeconfig context (default: current)."),
        click.option("--ssh-user", default=None, help="SSH user for every node."),
        click.option(
            "--ssh-key",
            type=click.Path(exists=True, dir_okay=False),
            default=None,
            help="SSH private key for every node.",
        ),
        click.option(
            "--ssh-known-hosts",
            type=click.Path(exists=True, dir_okay=False),
            default=None,
            help="known_hosts file pinning the nodes' host keys (strict checking).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _ssh_data(user: str | None, key: str | None, known_hosts: str | None) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if user:
        data["ssh_user"] = user
    if key:
        data.update(ssh_key=key, ssh_allow_agent=False, ssh_look_for_keys=False)
    if known_hosts:
        data.update(ssh_known_hosts_file=known_hosts, ssh_strict_host_key_checking="yes")
    return data


def _nodes(
    kubeconfig: str | None, context: str | None, selector: str, ssh_data: dict[str, Any]
) -> tuple[Cluster, list[NodeTarget], list[str]]:
    """The pool's nodes as targets, and the names of those already cordoned by someone else.
    Exits when the API server cannot be reached, no node matches, or a node has no address."""
    try:
        cluster = from_kubeconfig(kubeconfig, context)
        nodes = cluster.list_nodes(selector)
    except ClusterError as problem:
        console.fail(str(problem), EXIT_UNREACHABLE)
    if not nodes:
        console.fail(f"no node matches the selector {selector!r}")
    targets, problems, cordoned = [], [], []
    for node in nodes:
        try:
            address = node_address(node)
        except InventoryError as no_address:
            problems.append(str(no_address))
            continue
        targets.append(NodeTarget(address.node, host_entry(address, ssh_data)))
        ours = FAILURE_ANNOTATION in annotations_of(node)
        if is_unschedulable(node) and not ours:
            cordoned.append(address.node)
    for line in problems:
        console.error(line)
    if problems:
        console.fail("nothing was changed: every node needs an SSH address")
    return cluster, targets, cordoned


@click.command()
@cluster_options
@output_option("the inventory")
def inventory(
    selector: str,
    kubeconfig: str | None,
    context: str | None,
    ssh_user: str | None,
    ssh_key: str | None,
    ssh_known_hosts: str | None,
    output: Path | None,
) -> None:
    """Write the pool's nodes as a pyinfra inventory (group ``nodes``).

    Each node is a host named as the node, reached at its annotation quietcore.io/ssh-address
    (host or host:port) when set, else at its InternalIP. Any quietcore command takes the file
    as a target.

    \b
    Examples:
      quietcore k8s inventory -l quietcore.io/pool=trading --ssh-user root -o nodes.py
      quietcore verify --profile trading nodes.py
    """
    _, targets, _ = _nodes(
        kubeconfig, context, selector, _ssh_data(ssh_user, ssh_key, ssh_known_hosts)
    )
    text = render_inventory([target.entry for target in targets], selector)
    if output is None:
        console.show_text(text)
    else:
        output.write_text(text)
        console.note(f"wrote {output} ({len(targets)} nodes)")


@click.command()
@cluster_options
@profile_option
@click.option(
    "--max-unavailable",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Nodes cordoned at once after the canary batch.",
)
@click.option(
    "--canary",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Nodes in the first batch, done alone before any other.",
)
@click.option(
    "--max-failures",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Failed nodes tolerated; one more stops the rollout before the next batch.",
)
@click.option(
    "--reboot",
    type=click.Choice(["never", "if-needed"]),
    default="never",
    show_default=True,
    help="if-needed: reboot nodes whose changes take effect only at boot.",
)
@click.option(
    "--eviction-timeout",
    type=click.IntRange(min=1),
    default=600,
    show_default=True,
    help="Seconds to drain a node (PodDisruptionBudget refusals are retried).",
)
@click.option(
    "--ready-timeout",
    type=click.IntRange(min=1),
    default=900,
    show_default=True,
    help="Seconds for a node to report Ready after its work.",
)
@click.option("--dry-run", is_flag=True, help="Print the batches; change nothing.")
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON document (quietcore.k8s-rollout/v1)."
)
@fan_out_options
def rollout(
    selector: str,
    kubeconfig: str | None,
    context: str | None,
    ssh_user: str | None,
    ssh_key: str | None,
    ssh_known_hosts: str | None,
    profile_name: str,
    max_unavailable: int,
    canary: int,
    max_failures: int,
    reboot: str,
    eviction_timeout: int,
    ready_timeout: int,
    dry_run: bool,
    as_json: bool,
    fan_out: FanOut,
) -> None:
    """Roll a profile across a node pool, a batch at a time.

    Per batch (the canary first): cordon; evict pods through the Eviction API (PDB
    refusals retried until --eviction-timeout; DaemonSet and mirror pods stay); apply over
    SSH (a changed kubelet drop-in restarts the kubelet; a changed CPU/memory manager policy
    first removes its state file); reboot if allowed and needed; wait for Ready; verify
    (zero drift, and the jitter gate when the profile has verify.jitter); label
    quietcore.io/profile and quietcore.io/profile-digest; uncordon. A node that fails stays
    cordoned, annotated quietcore.io/rollout-failure with the reason; past --max-failures
    no further batch starts.

    \b
    Exit status: 0 every node done; 2 bad input; 3 the API server unreachable;
    4 a node failed (the rollout stopped or went on within --max-failures).

    \b
    Examples:
      quietcore k8s rollout -l quietcore.io/pool=trading -p trading --dry-run
      quietcore k8s rollout -l quietcore.io/pool=trading -p trading --max-unavailable 2 \\
        --reboot if-needed --ssh-user root --ssh-key ~/.ssh/nodes
    """
    loaded = load_or_exit(profile_name)
    ssh_data = _ssh_data(ssh_user, ssh_key, ssh_known_hosts)
    cluster, targets, cordoned = _nodes(kubeconfig, context, selector, ssh_data)
    if cordoned:
        console.fail(
            f"already cordoned by someone else: {', '.join(cordoned)}; uncordon them or narrow "
            "the selector (a rollout would uncordon them when done)"
        )
    batches = plan_batches([target.name for target in targets], max_unavailable, canary)
    if dry_run:
        _show_batches(batches, targets, as_json)
        return
    # Loaded here: --dry-run and `inventory` need neither pyinfra's apply side nor the probes.
    from quietcore.k8s.node_work import SshNodeWork

    options = RolloutOptions(
        loaded.profile.name,
        loaded.digest,
        max_unavailable=max_unavailable,
        canary=canary,
        max_failures=max_failures,
        eviction_timeout=eviction_timeout,
        ready_timeout=ready_timeout,
    )
    work = SshNodeWork(loaded, reboot=reboot == "if-needed", fan_out=fan_out)
    report = Rollout(
        cluster, work, options, on_event=lambda node, event: console.note(f"{node}: {event}")
    ).run(targets)
    _show_report(report, as_json)
    sys.exit(0 if report.ok else EXIT_NODE_FAILED)


def _show_batches(batches: list[list[str]], targets: list[NodeTarget], as_json: bool) -> None:
    addresses = {t.name: t.entry[1]["ssh_hostname"] for t in targets}
    if as_json:
        console.show_json(
            {"schema": "quietcore.k8s-rollout-plan/v1", "batches": batches, "ssh": addresses}
        )
        return
    for number, batch in enumerate(batches, 1):
        kind = "canary" if number == 1 and len(batches) > 1 else "batch"
        nodes = ", ".join(f"{name} ({addresses[name]})" for name in batch)
        console.show_text(f"{kind} {number}: {nodes}\n")
    console.note("dry run: nothing was changed")


def _show_report(report: RolloutReport, as_json: bool) -> None:
    if as_json:
        console.show_json(report.document())
        return
    for outcome in report.outcomes:
        line = f"{outcome.node}: {outcome.status}"
        if outcome.status == "failed":
            line += f" at {outcome.step}: {outcome.detail} (left cordoned and annotated)"
        console.show_text(line + "\n")
    if report.stopped:
        console.error("rollout stopped: more failed nodes than --max-failures allows")
