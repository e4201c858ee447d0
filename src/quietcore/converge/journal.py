"""The journal: one JSON line per key quietcore changed, appended on the host and mirrored on
the controller. Pure: building and parsing lines; the host fills in each line's result.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from quietcore.converge.shell import JournalLine

Action = Literal["apply", "rollback"]
RESULT_SLOT = "\x00result\x00"  # replaced by the host's ok/failed; JSON never contains NUL


def now_utc() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def operator() -> str:
    """Who runs quietcore: the sudo caller if any, at the controller's host name."""
    user = os.environ.get("SUDO_USER") or getpass.getuser()
    return f"{user}@{socket.gethostname()}"


@dataclass(frozen=True)
class Context:
    """What every line of one run shares."""

    time: str
    operator: str
    host: str
    action: Action
    profile: str | None  # name; None for a rollback
    digest: str | None  # sha256 of the resolved (merged) profile


def entry(
    context: Context, key: str, before: str | None, after: str | None, reboot: bool
) -> JournalLine:
    """One journal line with its result left to the host (see ``shell.qc_record``)."""
    document = {
        "time": context.time,
        "operator": context.operator,
        "host": context.host,
        "action": context.action,
        "profile": context.profile,
        "digest": context.digest,
        "key": key,
        "before": before,
        "after": after,
        "reboot": reboot,
        "result": RESULT_SLOT,
    }
    text = json.dumps(document, sort_keys=True)
    head, _, tail = text.partition(json.dumps(RESULT_SLOT))
    return JournalLine(head + '"', '"' + tail)


def parse(lines: tuple[str, ...]) -> Iterator[dict[str, Any]]:
    """Journal records; a line that is not a JSON object (torn write) is skipped."""
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            yield record
