"""``quietcore report``: work on reports already written, without touching any host."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from quietcore import console
from quietcore.cli_support import format_option
from quietcore.report.diff import diff_documents, diff_json, diff_table

VERIFY_SCHEMA_ID = "quietcore.verify/v1"


@click.group()
def report() -> None:
    """Compare and inspect saved reports (`verify --format json -o FILE`)."""


def _load(path: Path) -> Any:
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as problem:
        console.fail(f"{path}: cannot read a JSON report ({problem})")
    if not isinstance(document, dict) or document.get("schema") != VERIFY_SCHEMA_ID:
        console.fail(f"{path}: not a {VERIFY_SCHEMA_ID} document (`verify --format json`)")
    return document


@report.command("diff")
@format_option("table for people; json for tools.")
@click.argument("old", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("new", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def report_diff(output_format: str, old: Path, new: Path) -> None:
    """What changed between two audits: hosts added or removed, keys that started drifting,
    keys that were fixed, drifting values that changed, and jitter when both have it.

    \b
    Exit status: 0 nothing changed; 1 something changed; 2 a file is not a verify report.

    \b
    Example:
      quietcore verify -p trading -f json -o monday.json inventory/fleet.py
      quietcore verify -p trading -f json -o tuesday.json inventory/fleet.py
      quietcore report diff monday.json tuesday.json
    """
    difference = diff_documents(_load(old), _load(new))
    if output_format == "json":
        console.show_json(diff_json(difference))
    else:
        console.show(diff_table(difference))
    sys.exit(1 if difference.changed else 0)
