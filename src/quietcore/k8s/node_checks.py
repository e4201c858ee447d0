"""What a Kubernetes node can check about itself by reading files: the verifier's checks.

The verifier DaemonSet (``k8s/target/qc_node_verifier.py``) runs in a stock python image with
the host's ``/proc`` and ``/sys`` mounted read-only, so it can judge every setting whose state
is a kernel file, and nothing else. This module turns resolved ``Setting``s into those checks:
each names the file, how its text is compared (the same normalisation the knob family's
``observe``/``matches`` apply) and which verdict a missing file means, as ``quietcore verify``
gives it. Each knob family defines its own checks (``KnobFamily.node_check``); settings that
live elsewhere (the kubelet's configuration, irqbalance's environment file and service,
systemd's configuration, ethtool's ioctls) are listed as ``unchecked`` with the reason; the
rollout verifies them over SSH.

Per-IRQ settings become one check over every numbered IRQ the node has (``irq/{item}/...``):
IRQ numbers differ from node to node of a pool, the declared affinity does not.

Pure: settings in, a versioned JSON document (``quietcore.node-checks/v1``) out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from quietcore.knobs.base import Setting
from quietcore.knobs.node_check import NodeCheck, Unchecked
from quietcore.knobs.registry import FAMILIES

SCHEMA_ID = "quietcore.node-checks/v1"


@dataclass(frozen=True)
class NodeChecks:
    checks: tuple[NodeCheck, ...]
    unchecked: tuple[Unchecked, ...] = field(default=())


_BY_NAME = {known.name: known for known in FAMILIES}


def node_check(setting: Setting) -> NodeCheck | Unchecked:
    """The file check for one setting, as its knob family defines it, or why a node cannot
    check it by reading files."""
    owner = _BY_NAME.get(setting.family)
    if owner is None:
        return Unchecked(setting.key, f"no file check for the {setting.family} family")
    return owner.node_check(setting)


def node_checks(settings: Iterable[Setting]) -> NodeChecks:
    """Every setting as a check or an unchecked entry; per-IRQ settings collapse into one
    check per IRQ file (they all declare the same CPUs)."""
    checks: dict[str, NodeCheck] = {}
    unchecked: list[Unchecked] = []
    for setting in settings:
        made = node_check(setting)
        if isinstance(made, Unchecked):
            unchecked.append(made)
            continue
        earlier = checks.setdefault(made.key, made)
        if earlier.desired != made.desired:
            raise ValueError(
                f"{setting.key} wants {made.desired!r} but {made.key} already wants "
                f"{earlier.desired!r}: one node check cannot say both"
            )
    return NodeChecks(tuple(checks.values()), tuple(unchecked))


# --- The JSON document ---------------------------------------------------------------------


def _optional(check: NodeCheck) -> dict[str, Any]:
    return {
        "absent": check.absent,
        "absent_reason": check.absent_reason,
        "accept": list(check.accept),
        "needs": [vars(need) for need in check.needs],
        "fallback": None if check.fallback is None else _check_document(check.fallback),
        "each": check.each,
        "exclude": list(check.exclude),
        "argument": check.argument,
        "label": check.label,
        "owned": None
        if check.owned is None
        else {
            "flags_path": check.owned.flags_path,
            "flags": dict(check.owned.flags),
            "fixed": dict(check.owned.fixed),
        },
        "empty_is_absent": check.empty_is_absent,
    }


_DEFAULTS = _optional(NodeCheck("", "", "exact", ""))


def _check_document(check: NodeCheck) -> dict[str, Any]:
    """A check as JSON, fields at their default left out so the ConfigMap stays readable."""
    document: dict[str, Any] = {
        "key": check.key,
        "path": check.path,
        "kind": check.kind,
        "desired": check.desired,
    }
    document.update(
        {name: value for name, value in _optional(check).items() if value != _DEFAULTS[name]}
    )
    return document


def checks_document(settings: Sequence[Setting], *, profile: str, digest: str) -> dict[str, Any]:
    made = node_checks(settings)
    return {
        "schema": SCHEMA_ID,
        "profile": {"name": profile, "digest": digest},
        "checks": [_check_document(check) for check in made.checks],
        "unchecked": [{"key": entry.key, "reason": entry.reason} for entry in made.unchecked],
    }


def checks_json(settings: Sequence[Setting], *, profile: str, digest: str) -> str:
    """The verifier's ``checks.json``: ``profile`` and ``digest`` label its metrics."""
    document = checks_document(settings, profile=profile, digest=digest)
    return json.dumps(document, indent=1, sort_keys=False) + "\n"
