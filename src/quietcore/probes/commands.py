"""``quietcore jitter``, and the jitter half of ``quietcore verify --jitter``."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from quietcore import console
from quietcore.cli_support import (
    EXIT_BAD_INPUT,
    TARGETS_HELP,
    fan_out_options,
    format_option,
    load_or_exit,
    output_option,
)
from quietcore.engine import FanOut, TargetError
from quietcore.probes.gate import CpuVerdict, judge_host
from quietcore.probes.hdr import hdr_log
from quietcore.probes.request import Request, jitter_request
from quietcore.probes.result import HostJitter
from quietcore.probes.runner import PlanCpus, probe_hosts
from quietcore.profile.cpuplan import plan_cpus
from quietcore.profile.errors import ResolveError
from quietcore.profile.loaded import LoadedProfile
from quietcore.profile.schema import duration_seconds
from quietcore.report.jitter_json import hosts_from_document, jitter_document
from quietcore.report.jitter_plot import plot_files
from quietcore.report.jitter_view import compare_fleet, jitter_summary, jitter_table

EXIT_UNREACHABLE = 3
Verdicts = Mapping[str, Sequence[CpuVerdict]]


class _DurationType(click.ParamType):  # type: ignore[type-arg]
    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            if duration_seconds(str(value)) <= 0:
                self.fail("must be positive", param, ctx)
        except ValueError as problem:
            self.fail(str(problem), param, ctx)
        return str(value)


def probe_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """How the probe runs; shared by ``jitter`` and ``verify --jitter``."""
    options = [
        click.option(
            "--cpus",
            metavar="isolated|LIST",
            default=None,
            help="CPUs to probe, all at once: 'isolated' (the profile's isolated CPUs, else the "
            "kernel's) or a list such as 2-5,8. Default: the profile's verify.jitter.cpus, "
            "else isolated.",
        ),
        click.option(
            "--duration",
            type=_DurationType(),
            default=None,
            help="How long each CPU spins, e.g. 10s, 2m (oslat rounds up to whole seconds). "
            "Default: the profile's, else 30s.",
        ),
        click.option(
            "--threshold-us",
            type=click.FloatRange(min=0, min_open=True, max=1_000_000),
            default=None,
            help="A gap longer than this is an event. Default: the profile's, else 5.",
        ),
        click.option(
            "--backend",
            type=click.Choice(["auto", "c", "python", "oslat"]),
            default="auto",
            show_default=True,
            help="c: quietcore's C probe (built here or on the host, cached by hash); oslat: "
            "rt-tests' oslat on the host; python: a stdlib script for the host's python3. "
            "auto takes the first that can run, in that order, and says why.",
        ),
        click.option(
            "--fifo",
            type=click.IntRange(1, 99),
            default=None,
            metavar="PRIO",
            help="Run the probe SCHED_FIFO at this priority. Refused unless the host has RT "
            "throttling off (kernel.sched_rt_runtime_us = -1). Default: normal priority.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def request_from(loaded: LoadedProfile | None, options: Mapping[str, Any]) -> Request:
    section = loaded.profile.verify.jitter if loaded is not None else None
    return jitter_request(
        section,
        cpus=options["cpus"],
        duration=options["duration"],
        threshold_us=options["threshold_us"],
        backend=options["backend"],
        fifo=options["fifo"],
    )


def jitter_request_for(loaded: LoadedProfile) -> Request:
    """``verify --jitter``: the profile's section as written (defaults when it has none)."""
    return jitter_request(loaded.profile.verify.jitter)


def _cpu_planner(loaded: LoadedProfile | None) -> PlanCpus:
    if loaded is None:
        return lambda topology: None

    def plan(topology: Any) -> Any:
        try:
            return plan_cpus(loaded.profile, topology)
        except ResolveError:
            # The profile cannot be resolved on this host; 'isolated' falls back to the
            # kernel's list, and verify (when it runs) reports the profile's problem.
            return None

    return plan


def run_probes(
    loaded: LoadedProfile | None,
    request: Request,
    targets: Sequence[str],
    fan_out: FanOut,
) -> tuple[list[HostJitter], dict[str, tuple[CpuVerdict, ...]]]:
    seconds = request.settings.duration_ns / 1e9
    console.note(f"probing for {seconds:g} s per host (all chosen CPUs at once)")
    try:
        with console.progress("probing hosts") as advance:
            hosts = probe_hosts(
                targets,
                request,
                _cpu_planner(loaded),
                fan_out,
                on_done=advance,
            )
    except TargetError as problem:
        console.fail(str(problem))
    verdicts = {}
    if request.accept is not None:
        verdicts = {host.host: judge_host(request.accept, host) for host in hosts if host.cpus}
    return hosts, verdicts


def jitter_exit_code(hosts: Sequence[HostJitter], verdicts: Verdicts) -> int:
    """0 measured (and passed); 1 a CPU failed its gate; 2 a host refused; 3 a host could not
    be reached or its run failed."""
    kinds = {host.error_kind for host in hosts}
    if kinds & {"unreachable", "failed"}:
        return EXIT_UNREACHABLE
    if "refused" in kinds:
        return EXIT_BAD_INPUT
    failed = any(not verdict.ok for cpu_verdicts in verdicts.values() for verdict in cpu_verdicts)
    return 1 if failed else 0


@dataclass(frozen=True)
class ProfileJitter:
    """The jitter half of ``quietcore verify --jitter``: every host measured as the profile's
    verify.jitter section says, and judged by its accept rules."""

    loaded: LoadedProfile
    hosts: list[HostJitter]
    verdicts: Verdicts

    @property
    def exit_code(self) -> int:
        return jitter_exit_code(self.hosts, self.verdicts)

    def document(self) -> dict[str, Any]:
        return jitter_document(self.hosts, self.verdicts, self.loaded, datetime.now(UTC))

    def show(self) -> None:
        show_results(
            self.hosts,
            self.verdicts,
            loaded=self.loaded,
            output_format="table",
            output=None,
            extras={},
        )


def measure_for_verify(
    loaded: LoadedProfile, targets: Sequence[str], fan_out: FanOut
) -> ProfileJitter:
    return ProfileJitter(loaded, *run_probes(loaded, jitter_request_for(loaded), targets, fan_out))


def _write(path: Path, text: str) -> None:
    path.write_text(text)
    console.note(f"wrote {path}")


def _load_before(path: Path) -> list[HostJitter]:
    try:
        return hosts_from_document(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError) as problem:
        console.fail(f"--compare {path}: not a quietcore.jitter/v1 document ({problem})")


def show_results(
    hosts: Sequence[HostJitter],
    verdicts: Verdicts,
    *,
    loaded: LoadedProfile | None,
    output_format: str,
    output: Path | None,
    extras: Mapping[str, Any],
) -> None:
    if extras.get("hdr_log") is not None:
        _write(extras["hdr_log"], hdr_log(hosts, datetime.now(UTC)))
    if extras.get("plots") is not None:
        folder: Path = extras["plots"]
        folder.mkdir(parents=True, exist_ok=True)
        for host in hosts:
            for name, svg in plot_files(host).items():
                (folder / name).write_text(svg)
        console.note(f"wrote plots to {folder}")
    if output_format == "json":
        document = jitter_document(hosts, verdicts, loaded, datetime.now(UTC))
        text = json.dumps(document, indent=2) + "\n"
        if output is None:
            console.show_json(document)
        else:
            _write(output, text)
        return
    renderables: list[Any] = [jitter_table(host, verdicts.get(host.host)) for host in hosts]
    renderables.append(jitter_summary(hosts, verdicts))
    before_path = extras.get("compare")
    if before_path is not None:
        renderables.append(compare_fleet(_load_before(before_path), hosts))
    if output is None:
        for renderable in renderables:
            console.show(renderable)
    else:
        _write(output, console.render_plain(renderables))


def output_options(command: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--hdr-log",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="Also write the event durations as an HdrHistogram log (one tagged interval "
            "per host and CPU), for HdrHistogram's HistogramLogProcessor and plotters.",
        ),
        click.option(
            "--plots",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            metavar="DIR",
            help="Also write SVG plots per CPU: event-duration histogram and event timeline.",
        ),
        click.option(
            "--compare",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            default=None,
            metavar="BEFORE.json",
            help="Table: show each CPU's change against an earlier `--format json` result.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.command(epilog=TARGETS_HELP)
@click.option(
    "-p",
    "--profile",
    "profile_name",
    default=None,
    metavar="NAME|FILE",
    help="Take CPUs, duration, threshold and the pass/fail rules from the profile's "
    "verify.jitter section. Without it: measure only.",
)
@probe_options
@format_option(
    "table for people; json (schema quietcore.jitter/v1: per CPU statistics, histogram, "
    "timeline, context and verdicts) for tools."
)
@output_option()
@output_options
@fan_out_options
@click.argument("targets", nargs=-1, required=True, metavar="TARGET...")
def jitter(
    profile_name: str | None,
    output_format: str,
    output: Path | None,
    fan_out: FanOut,
    targets: tuple[str, ...],
    **options: Any,
) -> None:
    """Measure the jitter a busy-spinning thread sees on each host's CPUs.

    One thread per chosen CPU spins reading the clock and records every gap longer than the
    threshold: the time the CPU was taken away (an interrupt, a kernel thread, another task,
    the hypervisor). Reported per CPU: loop period, events and their rate, event duration
    percentiles and max, counts above 10 us / 100 us / 1 ms, interrupted time, and what else
    ran there (interrupts and softirqs on that CPU, the probe's involuntary context switches,
    steal time). On a VM, max and the far tail are not trustworthy and are labelled so.

    \b
    Exit status: 0 measured (and every CPU passed the profile's rules); 1 a CPU failed them;
    2 bad input or a host that cannot be probed as asked (the reason is printed);
    3 a host could not be reached or its run failed.

    \b
    Examples:
      quietcore jitter --cpus 1 --duration 10s @local
      quietcore jitter --profile trading --format json -o before.json inventory/lab.py
      quietcore jitter --profile trading --compare before.json --plots plots/ HOST
    """
    loaded = load_or_exit(profile_name) if profile_name is not None else None
    request = request_from(loaded, options)
    hosts, verdicts = run_probes(loaded, request, targets, fan_out)
    show_results(
        hosts, verdicts, loaded=loaded, output_format=output_format, output=output, extras=options
    )
    raise SystemExit(jitter_exit_code(hosts, verdicts))
