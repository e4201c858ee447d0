"""``quietcore baseline``: save a known-good verify (and jitter) result, list, show, delete."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from quietcore import console
from quietcore.baseline import store
from quietcore.baseline.model import BaselineError, joined
from quietcore.cli_support import (
    EXIT_BAD_INPUT,
    TARGETS_HELP,
    fan_out_options,
    format_option,
    load_or_exit,
    profile_option,
)
from quietcore.engine import FanOut
from quietcore.report.baseline_view import baseline_overview, baselines_table, percentiles_table
from quietcore.verify_command import VerifyRun, run_verify

EXIT_UNREACHABLE = 3


def _checked_name(name: str, force: bool) -> str:
    try:
        store.check_name(name)
        if store.exists(name) and not force:
            raise BaselineError(
                f"baseline {name!r} exists ({store.baseline_dir(name)}); --force replaces it"
            )
    except BaselineError as problem:
        console.fail(str(problem), EXIT_BAD_INPUT)
    return name


def _refusal(run: VerifyRun) -> tuple[int, list[str]] | None:
    """Why nothing may be saved (exit status, one line per host), or None: a baseline must
    hold every host whole, or ``verify --against`` would take a gap for a change."""
    problems: dict[str, tuple[int, str]] = {}
    for audit in run.audits:
        if audit.status in ("unreachable", "refused"):
            status = EXIT_UNREACHABLE if audit.status == "unreachable" else EXIT_BAD_INPUT
            problems[audit.host] = (status, f"{audit.host}: {audit.status}: {audit.error}")
    for host in [] if run.jitter is None else run.jitter.hosts:
        # The audit's reason first: a host that could not be read could not be probed either.
        if host.error is not None and host.host not in problems:
            kind = host.error_kind or "failed"
            status = EXIT_BAD_INPUT if kind == "refused" else EXIT_UNREACHABLE
            problems[host.host] = (status, f"{host.host}: jitter {kind}: {host.error}")
    if not problems:
        return None
    return max(status for status, _ in problems.values()), [line for _, line in problems.values()]


@click.group()
def baseline() -> None:
    """Save a known-good verify result per host, to judge later runs against it.

    \b
    Start here:
      quietcore apply -p trading HOST                   make it right
      quietcore baseline save --name known-good -p trading HOST
      quietcore verify -p trading --against known-good HOST
                                          fails on new drift or a jitter regression
      quietcore baseline list | show NAME | delete NAME

    Baselines live in the controller's state directory ($QUIETCORE_STATE_DIR, else
    $XDG_STATE_HOME/quietcore, else ~/.local/state/quietcore), under baselines/NAME/.
    See docs/baselines.md.
    """


@baseline.command("save", epilog=TARGETS_HELP)
@click.option(
    "--name",
    required=True,
    metavar="NAME",
    help="The baseline's name: 1-64 letters, digits, '.', '_' or '-'.",
)
@profile_option
@click.option("--force", is_flag=True, help="Replace a baseline of that name.")
@fan_out_options
@click.argument("targets", nargs=-1, required=True, metavar="TARGET...")
def save(
    name: str, profile_name: str, force: bool, fan_out: FanOut, targets: tuple[str, ...]
) -> None:
    """Verify the hosts and save the result as baseline NAME: per host, every setting's
    status and value and, when the profile has verify.jitter, the jitter measurement (as
    `verify --jitter` runs it), with the profile's name and digest, quietcore's version and
    the time.

    Drift the hosts have now is saved as known: `verify --against NAME` shows it but does not
    fail on it. Save after a known-good apply.

    \b
    Nothing is saved when a host cannot be read or probed, or refuses the profile: a baseline
    holds every host it names, whole.

    \b
    Exit status: 0 saved; 2 bad input (name, an existing baseline without --force, profile,
    targets) or a host that refuses the profile or the probe; 3 a host could not be reached
    or read (the reason is printed).
    """
    _checked_name(name, force)
    loaded = load_or_exit(profile_name)
    with_jitter = loaded.profile.verify.jitter is not None
    if not with_jitter:
        console.note("the profile has no verify.jitter: the baseline holds the verify result only")
    run = run_verify(loaded, targets, fan_out, with_jitter=with_jitter)
    refusal = _refusal(run)
    if refusal is not None:
        status, lines = refusal
        for line in lines:
            console.error(line)
        console.fail(f"baseline {name!r} not saved", status)
    document = run.document()
    try:
        folder = store.save(name, document, force=force)
        listing = store.read_manifest(name)
    except BaselineError as problem:
        console.fail(str(problem), EXIT_BAD_INPUT)
    console.show(baseline_overview(listing))
    table = percentiles_table(document)
    if table is not None:
        console.show(table)
    known = sum(host["drift"] for host in listing["hosts"])
    if known:
        console.note(f"{known} drifting key(s) saved as known drift: --against will not fail them")
    console.note(f"saved {folder}")


@baseline.command("list")
@format_option("table for people; json (each baseline's manifest) for tools.")
def list_baselines(output_format: str) -> None:
    """The saved baselines: name, when, profile and digest, hosts, jitter."""
    listings = store.manifests()
    if output_format == "json":
        console.show_json(listings)
    else:
        console.show(baselines_table(listings))


@baseline.command("show")
@format_option(
    "table for people; json (the baseline as one quietcore.verify/v1 document, for "
    "`quietcore report diff` and the renderers) for tools."
)
@click.argument("name")
def show(output_format: str, name: str) -> None:
    """One baseline: when and from which profile, each host's state then, and its jitter
    percentiles per CPU. Exit status 2 when there is no such baseline."""
    try:
        listing = store.read_manifest(name)
        documents = store.host_documents(name)
    except BaselineError as problem:
        console.fail(str(problem), EXIT_BAD_INPUT)
    document = joined([documents[entry["file"]] for entry in listing["hosts"]])
    if output_format == "json":
        console.show_json(document)
        return
    console.show(baseline_overview(listing))
    table = percentiles_table(document)
    if table is not None:
        console.show(table)


@baseline.command("delete")
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
def delete(names: Sequence[str]) -> None:
    """Delete saved baselines. Exit status 2 when one does not exist (the others are still
    deleted)."""
    status = 0
    for name in names:
        try:
            console.note(f"deleted {store.delete(name)}")
        except BaselineError as problem:
            console.error(str(problem))
            status = EXIT_BAD_INPUT
    sys.exit(status)
