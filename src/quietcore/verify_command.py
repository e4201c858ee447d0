"""``quietcore verify``: every declared setting read back from each host, declared vs actual."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from quietcore import console
from quietcore.audit import audit_host, exit_code, reads_for
from quietcore.cli_support import (
    TARGETS_HELP,
    fan_out_options,
    load_or_exit,
    output_option,
    profile_option,
    read_or_exit,
)
from quietcore.engine import FanOut
from quietcore.report.formats import FORMAT_HELP, RENDERERS, render
from quietcore.report.json_report import verify_document

if TYPE_CHECKING:
    from quietcore.probes.commands import ProfileJitter


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
@fan_out_options
@click.argument("targets", nargs=-1, required=True, metavar="TARGET...")
def verify(
    profile_name: str,
    output_format: str,
    output: Path | None,
    problems_only: bool,
    with_jitter: bool,
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
    Exit status: 0 every host as declared; 1 drift or missing on some host (or a CPU
    failed the jitter rules);
    2 bad input (profile, targets) or a host that cannot satisfy the profile;
    3 a host could not be reached or read.

    \b
    Examples:
      quietcore verify --profile network-latency @local
      quietcore verify -p ./my-profile.yaml --format json -o audit.json inventory/fleet.py
      quietcore verify -p trading --format junit -o verify.xml inventory/fleet.py
      quietcore verify -p trading --format prometheus \\
        -o /var/lib/node_exporter/textfile/quietcore.prom inventory/fleet.py
    """
    started = datetime.now(UTC)
    clock = time.monotonic()
    loaded = load_or_exit(profile_name)
    reads = read_or_exit(targets, reads_for(loaded), fan_out)
    audits = [audit_host(loaded, read) for read in reads]
    status = exit_code(audits)
    jitter: ProfileJitter | None = None
    if with_jitter:
        # Loaded on demand: a plain verify starts faster without the probes' modules.
        from quietcore.probes.commands import measure_for_verify

        jitter = measure_for_verify(loaded, targets, fan_out)
        status = max(status, jitter.exit_code)
    if output_format in RENDERERS:
        document = verify_document(loaded, audits, datetime.now(UTC))
        if jitter is not None:
            document["jitter"] = jitter.document()
        document["timing"] = {
            "started_at": started.isoformat(timespec="seconds"),
            "wall_s": round(time.monotonic() - clock, 3),
        }
        _emit_text(render(output_format, document), output)
    else:
        # rich and the tables load only for this format: JSON, XML and metrics never need them.
        from quietcore.report.table import show_audits

        show_audits(audits, problems_only, output)
        if jitter is not None:
            jitter.show()
    sys.exit(status)


def _emit_text(text: str, output: Path | None) -> None:
    if output is None:
        console.show_text(text)
        return
    output.write_text(text)
    console.note(f"wrote {output}")
