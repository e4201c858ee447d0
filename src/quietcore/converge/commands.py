"""``quietcore plan``, ``apply``, ``rollback`` and ``history``."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import click

from quietcore import console
from quietcore.audit import HostAudit, audit_host, exit_code, reads_for
from quietcore.cli_support import (
    TARGETS_HELP,
    fan_out_options,
    load_or_exit,
    profile_option,
    read_or_exit,
)
from quietcore.converge import journal, paths
from quietcore.converge.plan import (
    HostPlan,
    RollbackCheck,
    apply_reads,
    check_key,
    existing_snapshot,
    managed_reads,
    plan_apply,
    plan_rollback,
    rollback_reads,
)
from quietcore.converge.run import RunOutcome, run_plans
from quietcore.converge.snapshot import Snapshot, SnapshotError
from quietcore.engine import FanOut
from quietcore.facts import merge_reads
from quietcore.profile.loaded import LoadedProfile
from quietcore.readings import HostRead, ReadSpec
from quietcore.report.converge_view import (
    apply_document,
    history_table,
    rollback_checks_table,
)
from quietcore.report.plan_view import fleet_line, plan_document, plan_table
from quietcore.report.table import fleet_summary, host_table
from quietcore.topology import TOPOLOGY_READS, parse_topology

EXIT_APPLY_FAILED = 4
REBOOT_CHOICES = click.Choice(["never", "if-needed"])


def _reboot_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option(
        "--reboot-timeout",
        type=click.IntRange(min=30),
        default=900,
        show_default=True,
        help="Seconds to wait for a rebooted host to answer over SSH again.",
    )(command)
    return click.option(
        "--reboot",
        type=REBOOT_CHOICES,
        default="never",
        show_default=True,
        help="if-needed: reboot hosts whose changes only take effect at boot, wait for them, "
        "then verify. never: leave that to you; those keys keep drifting until a reboot.",
    )(command)


def _confirm_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print one JSON document (schema quietcore.apply/v1) instead of tables.",
    )(command)
    return click.option("-y", "--yes", is_flag=True, help="Do not ask before changing hosts.")(
        command
    )


def _show_plans(plans: Sequence[HostPlan], as_json: bool) -> None:
    if as_json:
        return
    for plan in plans:
        console.show(plan_table(plan))
    console.show(fleet_line(plans))


def _confirm(plans: Sequence[HostPlan], yes: bool, verb: str) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        console.fail(f"not on a terminal: add --yes to {verb} without being asked")
    hosts = sum(1 for plan in plans if plan.action_count)
    if not click.confirm(f"{verb.capitalize()} on {hosts} host(s)?", default=False, err=True):
        console.note("nothing was changed")
        sys.exit(1)


def _has_work(plans: Sequence[HostPlan], reboot: str) -> bool:
    """Something to change, or a pending reboot that is allowed."""
    to_reboot = reboot == "if-needed" and any(plan.needs_reboot for plan in plans)
    return to_reboot or any(plan.action_count for plan in plans)


def _context_for(
    action: journal.Action, loaded: LoadedProfile | None
) -> Callable[[HostPlan], journal.Context]:
    time, who = journal.now_utc(), journal.operator()
    name = loaded.profile.name if loaded else None
    digest = loaded.digest if loaded else None
    return lambda plan: journal.Context(time, who, plan.host, action, name, digest)


def _run(
    targets: Sequence[str],
    plans: Sequence[HostPlan],
    verb: str,
    context_for: Callable[[HostPlan], journal.Context],
    yes: bool,
    reboot: str,
    reboot_timeout: int,
    fan_out: FanOut,
) -> list[RunOutcome]:
    """Ask, then carry the plans out; nothing (no question either) when there is nothing to
    do."""
    if not _has_work(plans, reboot):
        return []
    _confirm(plans, yes, verb)
    waiting = " (rebooting where needed and waiting for the hosts)" if reboot != "never" else ""
    with console.progress(f"changing hosts{waiting}"):
        outcomes = run_plans(
            targets,
            plans,
            context_for,
            reboot=reboot == "if-needed",
            fan_out=fan_out,
            reboot_timeout=reboot_timeout,
        )
    for outcome in outcomes:
        if outcome.ran and not outcome.ok:
            console.error(f"{outcome.host}: {outcome.error}")
    return outcomes


def _final_status(audit_status: int, outcomes: Sequence[RunOutcome]) -> int:
    failed = any(outcome.ran and not outcome.ok for outcome in outcomes)
    return max(audit_status, EXIT_APPLY_FAILED if failed else 0)


@click.command(epilog=TARGETS_HELP)
@profile_option
@click.option("--json", "as_json", is_flag=True, help="JSON (schema quietcore.plan/v1).")
@fan_out_options
@click.argument("targets", nargs=-1, required=True, metavar="TARGET...")
def plan(
    profile_name: str,
    as_json: bool,
    fan_out: FanOut,
    targets: tuple[str, ...],
) -> None:
    """Show what `apply` would change on each host, and touch nothing.

    Per host and key: the value before and after, and when the change takes effect: now
    (runtime, persisted by a native file or the boot script), at next boot (kernel
    arguments and what follows from them), or cannot (with the reason). Then the files
    quietcore would write, and whether a reboot is needed. One round trip per host.

    \b
    Exit status: 0 nothing to change; 1 changes pending; 2 bad input or a host refuses
    the profile; 3 a host could not be read.

    \b
    Examples:
      quietcore plan --profile network-latency @local
      quietcore plan -p trading inventory/lab.py
    """
    loaded = load_or_exit(profile_name)
    reads = read_or_exit(targets, apply_reads(loaded), fan_out)
    plans = [plan_apply(loaded, read, journal.now_utc()) for read in reads]
    if as_json:
        console.show_json(plan_document(plans))
    else:
        _show_plans(plans, as_json=False)
    status = exit_code([plan.audit for plan in plans])
    pending = any(plan.action_count or plan.needs_reboot for plan in plans)
    sys.exit(status if status > 1 else int(pending))


@click.command(epilog=TARGETS_HELP)
@profile_option
@_reboot_options
@_confirm_options
@fan_out_options
@click.argument("targets", nargs=-1, required=True, metavar="TARGET...")
def apply(
    profile_name: str,
    reboot: str,
    reboot_timeout: int,
    yes: bool,
    as_json: bool,
    fan_out: FanOut,
    targets: tuple[str, ...],
) -> None:
    """Converge hosts to a profile: plan, ask, change, reboot if allowed, verify.

    Before the first change on a host, the value of every key the profile touches is saved
    there (/var/lib/quietcore/snapshot.json; a copy stays on this machine) so `quietcore
    rollback` can restore it. Every change is appended to the journal (`quietcore history`).
    Settings without native persistence go into one boot script run by a systemd unit
    before the workload. A second apply on an unchanged host changes nothing.

    \b
    Exit status: 0 every host verified as declared; 1 drift remains (e.g. a reboot is
    pending); 2 bad input or a host refuses the profile; 3 a host could not be reached;
    4 a change failed on a host.

    \b
    Examples:
      quietcore apply --profile network-latency @local
      quietcore apply -p trading --reboot if-needed --yes inventory/lab.py
    """
    loaded = load_or_exit(profile_name)
    reads = read_or_exit(targets, apply_reads(loaded), fan_out)
    plans = [plan_apply(loaded, read, journal.now_utc()) for read in reads]
    _show_plans(plans, as_json)
    outcomes = _run(
        targets,
        plans,
        "apply",
        _context_for("apply", loaded),
        yes,
        reboot,
        reboot_timeout,
        fan_out,
    )
    if not outcomes and not as_json:
        console.note("no changes: every host already runs the profile as planned")
    audits = _verify_after(loaded, targets, plans, outcomes, fan_out)
    if as_json:
        console.show_json(apply_document(loaded, plans, outcomes, audits))
    else:
        for audit in audits:
            console.show(host_table(audit, problems_only=True))
        console.show(fleet_summary(audits))
        _explain_pending(plans, audits, reboot)
    sys.exit(_final_status(exit_code(audits), outcomes))


def _verify_after(
    loaded: LoadedProfile,
    targets: Sequence[str],
    plans: Sequence[HostPlan],
    outcomes: Sequence[RunOutcome],
    fan_out: FanOut,
) -> list[HostAudit]:
    """Read the hosts that changed again; the others' plan reading is already their verify."""
    changed = [outcome.host for outcome in outcomes if outcome.ran]
    fresh: dict[str, HostAudit] = {}
    if changed:
        # By name among the targets: an inventory host is reached with its inventory's data.
        spec = reads_for(loaded)
        for read in read_or_exit(targets, spec, fan_out, only=changed):
            fresh[read.host] = audit_host(loaded, read)
    return [fresh.get(plan.host, plan.audit) for plan in plans]


def _explain_pending(plans: Sequence[HostPlan], audits: Sequence[HostAudit], reboot: str) -> None:
    if reboot != "never":
        return
    for plan, audit in zip(plans, audits, strict=True):
        if audit.status == "drift" and plan.needs_reboot:
            console.note(
                f"{plan.host}: keys that take effect at boot drift until the host reboots "
                "(reboot it, or run apply with --reboot if-needed)"
            )


# --- rollback ----------------------------------------------------------------------------------


def _snapshots(reads: Sequence[HostRead]) -> dict[str, Snapshot]:
    found = {}
    for read in reads:
        if read.readings is None:
            console.error(f"{read.host}: {read.error}")
            continue
        try:
            snapshot = existing_snapshot(read.host, read.readings)
        except SnapshotError as error:
            console.error(str(error))
            continue
        if snapshot is None:
            console.note(f"{read.host}: no snapshot: quietcore has not changed this host")
        else:
            found[read.host] = snapshot
    return found


def _checks(
    reads: Sequence[HostRead], snapshots: dict[str, Snapshot]
) -> dict[str, list[RollbackCheck]]:
    checks = {}
    for read in reads:
        snapshot = snapshots.get(read.host)
        if snapshot is None or read.readings is None:
            continue
        topology = parse_topology(read.readings)
        checks[read.host] = [
            check_key(key, saved, read.readings, topology) for key, saved in snapshot.keys.items()
        ]
    return checks


@click.command(epilog=TARGETS_HELP)
@_reboot_options
@_confirm_options
@fan_out_options
@click.argument("targets", nargs=-1, required=True, metavar="TARGET...")
def rollback(
    reboot: str,
    reboot_timeout: int,
    yes: bool,
    as_json: bool,
    fan_out: FanOut,
    targets: tuple[str, ...],
) -> None:
    """Return hosts to their state before quietcore's first change, from their snapshot.

    Every key in the snapshot gets its saved value back, every file quietcore created is
    removed and every file it rewrote is restored from its backup; then the snapshot itself
    is removed. The journal stays (it records the rollback too). Kernel arguments return at
    the next boot: use --reboot if-needed, or reboot yourself.

    \b
    Exit status: 0 every key is back to its snapshot value; 1 some are not yet (a reboot
    is pending); 3 a host could not be read; 4 a change failed on a host.

    \b
    Examples:
      quietcore rollback inventory/lab.py --reboot if-needed --yes
    """
    first = read_or_exit(targets, merge_reads([TOPOLOGY_READS, managed_reads()]), fan_out)
    snapshots = _snapshots(first)
    if not snapshots:
        sys.exit(3 if any(read.readings is None for read in first) else 0)
    spec = merge_reads([TOPOLOGY_READS, *(rollback_reads(s) for s in snapshots.values())])
    hosts = list(snapshots)
    reads = read_or_exit(targets, spec, fan_out, only=hosts)
    plans = [plan_rollback(read, snapshots[read.host]) for read in reads]
    _show_plans(plans, as_json)
    outcomes = _run(
        targets,
        plans,
        "roll back",
        _context_for("rollback", None),
        yes,
        reboot,
        reboot_timeout,
        fan_out,
    )
    after = read_or_exit(targets, spec, fan_out, only=hosts)
    checks = _checks(after, snapshots)
    if as_json:
        console.show_json(apply_document(None, plans, outcomes, [], checks))
    else:
        for host, host_checks in checks.items():
            console.show(rollback_checks_table(host, host_checks))
    unreachable = any(read.readings is None for read in after)
    pending = any(not check.restored for host_checks in checks.values() for check in host_checks)
    sys.exit(_final_status(3 if unreachable else int(pending), outcomes))


# --- history -----------------------------------------------------------------------------------


@click.command(epilog=TARGETS_HELP)
@click.option(
    "--controller",
    is_flag=True,
    help="Print this machine's copy of each host's journal; do not connect.",
)
@click.option("--json", "as_json", is_flag=True, help="The records as a JSON list.")
@fan_out_options
@click.argument("targets", nargs=-1, required=True, metavar="TARGET...")
def history(
    controller: bool,
    as_json: bool,
    fan_out: FanOut,
    targets: tuple[str, ...],
) -> None:
    """Print the journal of each host: who changed which key, from what to what, when.

    The journal is append-only JSON lines at /var/lib/quietcore/journal.jsonl on the host;
    each record holds the time, operator, profile name and sha256 of the resolved profile,
    key, before, after, whether it needs a reboot, and whether the host succeeded.
    """
    records_by_host: dict[str, list[dict[str, Any]]] = {}
    if controller:
        for host in targets:
            copy = paths.controller_host_dir(host) / "journal.jsonl"
            lines = tuple(copy.read_text().splitlines()) if copy.exists() else ()
            records_by_host[host] = list(journal.parse(lines))
    else:
        spec = ReadSpec(files=(paths.JOURNAL,))
        for read in read_or_exit(targets, spec, fan_out):
            if read.readings is None:
                console.error(f"{read.host}: {read.error}")
                continue
            lines = read.readings.lines(paths.JOURNAL) or ()
            records_by_host[read.host] = list(journal.parse(lines))
    if as_json:
        console.show_json([r for records in records_by_host.values() for r in records])
        return
    for host, records in records_by_host.items():
        console.show(history_table(host, records))
