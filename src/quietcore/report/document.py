"""Reading a ``quietcore.verify/v1`` document for the reports made from it (JUnit, HTML,
Prometheus, diff). Pure: documents in, values out.

The renderers take the document, not the in-memory audit, so a report can be made again later
from a saved ``--format json`` file and every format says the same thing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from quietcore.report.table import ABSENT

Document = Mapping[str, Any]

HOST_STATUSES = ("ok", "drift", "refused", "unreachable")
# Both mean the host does not run what was declared (drift.has_drift).
DRIFTING = ("drift", "missing")
# The host was not audited: no setting was compared.
NOT_AUDITED = ("refused", "unreachable")
EMPTY = "(empty)"


def is_drifting(setting: Mapping[str, Any]) -> bool:
    return setting["status"] in DRIFTING


def shown(value: str | None) -> str:
    """A desired or actual value as people read it: absent and empty are spelled out."""
    if value is None:
        return ABSENT
    return value or EMPTY


def drift_message(setting: Mapping[str, Any]) -> str:
    """``desired 3, actual 1 (network.tcp.fastopen at quiet-net.yaml:10)``, with the host's
    reason when it gave one."""
    reason = f": {setting['reason']}" if setting["reason"] else ""
    boot = "; takes effect at boot" if setting["reboot_required"] else ""
    return (
        f"desired {shown(setting['desired'])}, actual {shown(setting['actual'])}{reason} "
        f"({setting['field']} at {setting['source']}){boot}"
    )


def generated_at(document: Document) -> datetime:
    return datetime.fromisoformat(document["generated_at"])


def jitter_hosts(document: Document) -> Sequence[Mapping[str, Any]]:
    """The hosts of the embedded ``quietcore.jitter/v1`` document; none without ``--jitter``."""
    jitter: Mapping[str, Any] | None = document.get("jitter")
    return [] if jitter is None else jitter["hosts"]


def failed_rules(cpu: Mapping[str, Any]) -> list[str]:
    """The accept rules a probed CPU broke: ``max_us 65.999 > 20``."""
    gate: Mapping[str, Any] | None = cpu["gate"]
    if gate is None:
        return []
    return [
        f"{rule['rule']} unknown"
        if rule["measured"] is None
        else f"{rule['rule']} {rule['measured']:g} > {rule['limit']:g}"
        for rule in gate["rules"]
        if not rule["ok"]
    ]
