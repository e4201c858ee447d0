"""What every quietcore command shares: loading a profile, reading hosts, common options."""

from __future__ import annotations

import sys
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import click

from quietcore import console
from quietcore.engine import TargetError, read_hosts
from quietcore.profile.errors import ProfileError
from quietcore.profile.load import load_profile
from quietcore.profile.loaded import LoadedProfile
from quietcore.readings import HostRead, ReadSpec

EXIT_BAD_INPUT = 2

TARGETS_HELP = (
    "TARGET is a pyinfra target: @local (this machine, no SSH), a host name or [user@]address "
    "reached over SSH, a comma-separated list of them, or a pyinfra inventory file (*.py)."
)


def load_or_exit(name_or_path: str) -> LoadedProfile:
    try:
        return load_profile(name_or_path)
    except ProfileError as problem:
        for line in problem.problems:
            console.error(str(line))
        console.note("nothing was read or changed on any host")
        sys.exit(EXIT_BAD_INPUT)


def read_or_exit(
    targets: Sequence[str],
    spec: ReadSpec,
    parallel: int | None,
    timeout: int,
    only: Collection[str] | None = None,
) -> list[HostRead]:
    """Read the targets' hosts (``only``: just those of these names), or exit on bad targets."""
    try:
        with console.progress("reading hosts") as advance:
            return read_hosts(
                targets,
                spec,
                parallel=parallel,
                connect_timeout=timeout,
                on_done=advance,
                only=only,
            )
    except TargetError as problem:
        console.fail(str(problem))


def format_option(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        "-f",
        "--format",
        "output_format",
        type=click.Choice(["table", "json"]),
        default="table",
        show_default=True,
        help=help_text,
    )


def output_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "-o",
        "--output",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Write the report to this file instead of stdout.",
    )(command)


def fan_out_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option(
        "--parallel",
        type=click.IntRange(min=1),
        default=None,
        help="Hosts read at once (default: pyinfra's, up to 20 per CPU).",
    )(command)
    return click.option(
        "--connect-timeout",
        type=click.IntRange(min=1),
        default=10,
        show_default=True,
        help="Seconds to wait for each host's SSH connection.",
    )(command)


def profile_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "-p",
        "--profile",
        "profile_name",
        required=True,
        metavar="NAME|FILE",
        help="A built-in profile name (see `quietcore profiles list`) or a profile YAML file.",
    )(command)
