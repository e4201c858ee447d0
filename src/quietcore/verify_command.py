"""``quietcore verify``: every declared setting read back from each host, declared vs actual."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from quietcore import console
from quietcore.audit import HostAudit, audit_host, exit_code, reads_for
from quietcore.cli_support import (
    EXIT_BAD_INPUT,
    TARGETS_HELP,
    fan_out_options,
    load_or_exit,
    output_option,
    profile_option,
    read_or_exit,
)
from quietcore.engine import FanOut
from quietcore.profile.loaded import LoadedProfile
from quietcore.report.formats import FORMAT_HELP, RENDERERS, render
from quietcore.report.json_report import verify_document

if TYPE_CHECKING:
    from quietcore.baseline.model import Baseline
    from quietcore.probes.commands import ProfileJitter


@dataclass(frozen=True)
class VerifyRun:
    """One verify of some hosts: the audits, the jitter when measured, and when it ran."""

    loaded: LoadedProfile
    audits: list[HostAudit]
    jitter: ProfileJitter | None
    started: datetime
    clock: float = field(default_factory=time.monotonic)  # monotonic time at the start

    @property
    def verify_status(self) -> int:
        return exit_code(self.audits)

    @property
    def jitter_status(self) -> int:
        return 0 if self.jitter is None else self.jitter.exit_code

    def document(self) -> dict[str, Any]:
        """The ``quietcore.verify/v1`` document of this run."""
        document = verify_document(self.loaded, self.audits, datetime.now(UTC))
        if self.jitter is not None:
            document["jitter"] = self.jitter.document()
        document["timing"] = {
            "started_at": self.started.isoformat(timespec="seconds"),
            "wall_s": round(time.monotonic() - self.clock, 3),
        }
        return document


def run_verify(
    loaded: LoadedProfile, targets: Sequence[str], fan_out: FanOut, *, with_jitter: bool
) -> VerifyRun:
    """Read and judge every host; then, with ``with_jitter``, probe them as the profile's
    verify.jitter says. Shared by ``verify`` and ``baseline save``."""
    started, clock = datetime.now(UTC), time.monotonic()
    reads = read_or_exit(targets, reads_for(loaded), fan_out)
    audits = [audit_host(loaded, read) for read in reads]
    jitter: ProfileJitter | None = None
    if with_jitter:
        # Loaded on demand: a plain verify starts faster without the probes' modules.
        from quietcore.probes.commands import measure_for_verify

        jitter = measure_for_verify(loaded, targets, fan_out)
    return VerifyRun(loaded, audits, jitter, started, clock)


def _load_baseline(name: str) -> Baseline:
    from quietcore.baseline import store
    from quietcore.baseline.model import BaselineError

    try:
        return store.load(name)
    except BaselineError as problem:
        console.fail(f"--against: {problem}", EXIT_BAD_INPUT)


@click.command(epilog=TARGETS_HELP)
@profile_option
@click.option(
    "-f",
    "--format",
    "output_format",
    type=click.Choice(["table", *RENDERERS]),
    default="table",
    show_default=True,
    help=FORMAT_HELP,
)
@output_option()
@click.option("--problems-only", is_flag=True, help="Table: hide settings that are ok.")
@click.option(
    "--jitter",
    "with_jitter",
    is_flag=True,
    help="Then run the jitter probe as the profile's verify.jitter section says (CPUs, "
    "duration, threshold) and judge every CPU by its accept rules; see `quietcore jitter`.",
)
@click.option(
    "--against",
    "baseline_name",
    metavar="NAME",
    default=None,
    help="Judge the hosts against the baseline NAME (`quietcore baseline save`): fail on drift "
    "the baseline did not have and on jitter percentiles worse than the profile's "
    "verify.jitter.regression allows; known drift is shown, not failed. Implies --jitter "
    "when the baseline has jitter and the profile has verify.jitter. See docs/baselines.md.",
)
@fan_out_options
@click.argument("targets", nargs=-1, required=True, metavar="TARGET...")
def verify(
    profile_name: str,
    output_format: str,
    output: Path | None,
    problems_only: bool,
    with_jitter: bool,
    baseline_name: str | None,
    fan_out: FanOut,
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
    With --against NAME the saved baseline judges instead: a key drifting or missing now
    that was not drifting in the baseline fails, as does a CPU's jitter percentile more than
    verify.jitter.regression's percent over the baseline (each one named: host, CPU,
    percentile, baseline, now, change, limit); drift the baseline had already is shown only.

    \b
    Exit status: 0 every host as declared (with --against: nothing new since the baseline);
    1 drift or missing on some host, or a CPU failed the jitter rules (with --against: drift
    the baseline did not have, a rule newly broken, or a percentile regressed);
    2 bad input (profile, targets, an unknown baseline) or a host that cannot satisfy the
    profile;
    3 a host could not be reached or read.

    \b
    Examples:
      quietcore verify --profile network-latency @local
      quietcore verify -p ./my-profile.yaml --format json -o audit.json inventory/fleet.py
      quietcore verify -p trading --format junit -o verify.xml inventory/fleet.py
      quietcore verify -p trading --format prometheus \\
        -o /var/lib/node_exporter/textfile/quietcore.prom inventory/fleet.py
      quietcore verify -p trading --against known-good inventory/fleet.py
    """
    loaded = load_or_exit(profile_name)
    baseline = None if baseline_name is None else _load_baseline(baseline_name)
    if baseline is not None and baseline.jitter and not with_jitter:
        if loaded.profile.verify.jitter is not None:
            with_jitter = True
        else:
            console.note(
                f"baseline {baseline.name} has jitter but the profile has no verify.jitter: "
                "jitter is not measured or compared (--jitter measures with the defaults)"
            )
    run = run_verify(loaded, targets, fan_out, with_jitter=with_jitter)
    status = max(run.verify_status, run.jitter_status)
    document = run.document() if output_format in RENDERERS or baseline is not None else None
    if baseline is not None and document is not None:
        from quietcore.baseline import compare

        section = loaded.profile.verify.jitter
        tolerances = {} if section is None else section.regression.model_dump()
        against = compare.compare_with_baseline(baseline, document, tolerances)
        document["against"] = compare.against_block(against)
        status = compare.exit_code(run.verify_status, run.jitter_status, against)
    if output_format in RENDERERS and document is not None:
        _emit_text(render(output_format, document), output)
    else:
        _show_tables(run, document, problems_only, output)
    sys.exit(status)


def _show_tables(
    run: VerifyRun, document: dict[str, Any] | None, problems_only: bool, output: Path | None
) -> None:
    """Every host's table, the jitter's, and the baseline's verdict last (in ``output`` with
    the hosts' tables when given; the jitter table always goes to the terminal)."""
    # rich and the tables load only for this format: JSON, XML and metrics never need them.
    from quietcore.report.table import show_audits

    verdict = []
    if document is not None and "against" in document:
        from quietcore.report.baseline_view import against_summary

        verdict.append(against_summary(document["against"]))
    show_audits(run.audits, problems_only, output, extra=verdict if output else ())
    if run.jitter is not None:
        run.jitter.show()
    if output is None:
        for renderable in verdict:
            console.show(renderable)


def _emit_text(text: str, output: Path | None) -> None:
    if output is None:
        console.show_text(text)
        return
    output.write_text(text)
    console.note(f"wrote {output}")
