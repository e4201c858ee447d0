"""The pyinfra-CLI side of apply and rollback: what ``deploys/tune.py`` and
``deploys/rollback.py`` run for each host, inside pyinfra's own deploy context.

Planning and queueing are the same functions the quietcore CLI uses; only the reading
(``host.get_fact``) and the way operations are added (called directly) differ.
"""

from __future__ import annotations

import logging
from typing import Any

from pyinfra.context import host

from quietcore.converge import journal
from quietcore.converge.operations import queue_plan
from quietcore.converge.plan import (
    HostPlan,
    apply_reads,
    existing_snapshot,
    managed_reads,
    plan_apply,
    plan_rollback,
    rollback_reads,
)
from quietcore.facts import HostBundle, merge_reads
from quietcore.profile.load import load_profile
from quietcore.readings import HostRead, ReadSpec
from quietcore.report.plan_view import summary_line
from quietcore.topology import TOPOLOGY_READS

log = logging.getLogger("quietcore.deploy")
REBOOT_CHOICES = ("never", "if-needed")


def _read(spec: ReadSpec) -> HostRead:
    readings = host.get_fact(HostBundle, files=spec.files, commands=spec.commands)
    error = None if readings is not None else "the read command failed"
    return HostRead(host.name, readings, error, 0.0)


def _reboot() -> bool:
    choice = str(host.data.get("reboot", "never"))
    if choice not in REBOOT_CHOICES:
        raise ValueError(f"--data reboot={choice}: choose one of {', '.join(REBOOT_CHOICES)}")
    return choice == "if-needed"


def _call(op: Any, *args: Any, **kwargs: Any) -> None:
    op(*args, **kwargs)


def _queue(plan: HostPlan, context: journal.Context) -> None:
    # Logged to stderr: pyinfra's --json output on stdout must stay clean.
    log.warning("%s: %s: %s", host.name, plan.kind, summary_line(plan))
    if plan.error is None:
        queue_plan(plan, _call, context, reboot=_reboot())


def tune_this_host() -> None:
    loaded = load_profile(str(host.data.get("profile", "network-latency")))
    now = journal.now_utc()
    plan = plan_apply(loaded, _read(apply_reads(loaded)), now)
    context = journal.Context(
        now, journal.operator(), host.name, "apply", loaded.profile.name, loaded.digest
    )
    _queue(plan, context)


def roll_back_this_host() -> None:
    first = _read(merge_reads([TOPOLOGY_READS, managed_reads()]))
    if first.readings is None:
        log.error("%s: %s", host.name, first.error)
        return
    snapshot = existing_snapshot(host.name, first.readings)
    if snapshot is None:
        log.warning("%s: no snapshot: quietcore has not changed this host", host.name)
        return
    read = _read(merge_reads([TOPOLOGY_READS, rollback_reads(snapshot)]))
    context = journal.Context(
        journal.now_utc(), journal.operator(), host.name, "rollback", None, None
    )
    _queue(plan_rollback(read, snapshot), context)
