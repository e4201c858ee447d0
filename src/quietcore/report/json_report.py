"""The versioned machine-readable verify report (``quietcore.verify/v1``).

The JSON Schema lives in ``quietcore/schemas/verify-v1.json`` and is documented in
``docs/verify-json.md``. Adding optional fields keeps v1; renaming or removing one is v2.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from quietcore import __version__
from quietcore.audit import HostAudit
from quietcore.drift import count_statuses
from quietcore.profile.cpuset import format_cpulist
from quietcore.profile.loaded import LoadedProfile

SCHEMA_ID = "quietcore.verify/v1"


def _host(audit: HostAudit) -> dict[str, Any]:
    topology = audit.topology
    return {
        "host": audit.host,
        "status": audit.status,
        "error": audit.error,
        "elapsed_s": round(audit.elapsed_s, 4),
        "topology": None
        if topology is None
        else {
            "online_cpus": format_cpulist(topology.online),
            "numa_nodes": len(topology.nodes),
            "smt": topology.smt_active,
            "hypervisor": topology.hypervisor,
            "kernel": topology.kernel_release,
        },
        "cpus": None
        if audit.cpus is None
        else {
            "reserved": format_cpulist(audit.cpus.reserved),
            "isolated": format_cpulist(audit.cpus.isolated),
        },
        "summary": count_statuses(audit.results),
        "settings": [
            {
                "key": result.setting.key,
                "family": result.setting.family,
                "desired": result.setting.desired,
                "actual": result.actual,
                "status": result.status,
                "reason": result.reason or None,
                "reboot_required": result.setting.reboot_required,
                "field": result.setting.field,
                "source": result.setting.source,
            }
            for result in audit.results
        ],
    }


def profile_block(loaded: LoadedProfile) -> dict[str, Any]:
    """Which declaration a report judged against: name, digest, the extends chain."""
    return {
        "name": loaded.profile.name,
        "digest": f"sha256:{loaded.digest}",
        "files": list(loaded.files),
    }


def verify_document(
    loaded: LoadedProfile, audits: Sequence[HostAudit], generated_at: datetime
) -> dict[str, Any]:
    by_status = {
        status: sum(1 for audit in audits if audit.status == status)
        for status in ("ok", "drift", "refused", "unreachable")
    }
    return {
        "schema": SCHEMA_ID,
        "generated_at": generated_at.isoformat(timespec="seconds"),
        "quietcore_version": __version__,
        "profile": profile_block(loaded),
        "summary": {"hosts": len(audits), **by_status},
        "hosts": [_host(audit) for audit in audits],
    }
