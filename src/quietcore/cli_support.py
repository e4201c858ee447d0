"""What every quietcore command shares: loading a profile, reading hosts, common options."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import click

from quietcore import console
from quietcore.engine import FanOut, TargetError, read_hosts
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
    fan_out: FanOut,
    only: Collection[str] | None = None,
) -> list[HostRead]:
    """Read the targets' hosts (``only``: just those of these names), or exit on bad targets."""
    try:
        with console.progress("reading hosts") as advance:
            return read_hosts(targets, spec, fan_out, on_done=advance, only=only)
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


def output_option(
    what: str = "the report",
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``-o/--output FILE``: write ``what`` there instead of to stdout."""
    return click.option(
        "-o",
        "--output",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help=f"Write {what} to this file instead of stdout.",
    )


def fan_out_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--parallel``, ``--connect-timeout`` and ``--command-timeout``, handed to the command
    as one ``fan_out: FanOut`` argument."""

    @functools.wraps(command)
    def with_fan_out(
        *args: Any, parallel: int | None, connect_timeout: int, command_timeout: int, **kwargs: Any
    ) -> Any:
        fan_out = FanOut(parallel, connect_timeout, command_timeout)
        return command(*args, fan_out=fan_out, **kwargs)

    options = [
        click.option(
            "--parallel",
            type=click.IntRange(min=1),
            default=None,
            help="Hosts worked on at once (default: pyinfra's, up to 20 per CPU).",
        ),
        click.option(
            "--connect-timeout",
            type=click.IntRange(min=1),
            default=10,
            show_default=True,
            help="Seconds to wait for each host's SSH connection.",
        ),
        click.option(
            "--command-timeout",
            type=click.IntRange(min=1),
            default=120,
            show_default=True,
            help="Seconds each host may take to answer a read; a slower host is reported as "
            "timed out and never holds up the others.",
        ),
    ]
    wrapped: Callable[..., Any] = with_fan_out
    for option in reversed(options):
        wrapped = option(wrapped)
    return wrapped


def profile_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "-p",
        "--profile",
        "profile_name",
        required=True,
        metavar="NAME|FILE",
        help="A built-in profile name (see `quietcore profiles list`) or a profile YAML file.",
    )(command)
