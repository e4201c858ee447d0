"""Carry plans out through pyinfra's Python API: connect, queue, run, report per host.

The I/O side of apply and rollback. A host that fails never stops the others; its error is
the stderr of the operation that failed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pyinfra.api.connect import connect_all, disconnect_all
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.inventory import Inventory
from pyinfra.api.operation import add_op
from pyinfra.api.operations import run_ops
from pyinfra.api.state import State

from quietcore.converge import journal
from quietcore.converge.operations import queue_plan
from quietcore.converge.plan import HostPlan
from quietcore.engine import DEFAULT_FAN_OUT, FanOut, inventory_for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOutcome:
    host: str
    ran: bool  # operations were queued and run for this host
    ok: bool
    error: str | None = None
    rebooted: bool = False
    elapsed_s: float = 0.0


ContextFor = Callable[[HostPlan], journal.Context]


def _host_error(metas: Sequence[Any]) -> str:
    for meta in metas:
        if meta.is_complete() and meta.did_error():
            return meta.stderr.strip() or "an operation failed (run with -vv for pyinfra's log)"
    return "could not connect or an operation failed (run with -vv for pyinfra's log)"


def run_plans(
    targets: Sequence[str],
    plans: Sequence[HostPlan],
    context_for: ContextFor,
    *,
    reboot: bool,
    fan_out: FanOut = DEFAULT_FAN_OUT,
    reboot_timeout: int = 600,
) -> list[RunOutcome]:
    """Run every plan that has something to do; hosts with nothing to do are not contacted."""
    wanted = {plan.host: plan for plan in plans if plan.error is None}
    full = inventory_for(targets)
    hosts = [(host.name, host.data.dict()) for host in full if host.name in wanted]
    outcomes = {plan.host: RunOutcome(plan.host, False, plan.error is None) for plan in plans}
    if not hosts:
        return list(outcomes.values())
    state = State(Inventory((hosts, {})), fan_out.config(FAIL_PERCENT=100))
    metas: dict[str, list[Any]] = {}
    queued: set[str] = set()
    started = time.monotonic()
    try:
        for host in state.inventory:
            plan = wanted[host.name]

            def add(op: Any, *args: Any, _host: Any = host, **kwargs: Any) -> None:
                result = add_op(state, op, *args, host=[_host], **kwargs)
                metas.setdefault(_host.name, []).append(result[_host])

            if queue_plan(
                plan, add, context_for(plan), reboot=reboot, reboot_timeout=reboot_timeout
            ):
                queued.add(host.name)
        if queued:
            connect_all(state)
            run_ops(state)
    except PyinfraError as error:
        # "No hosts remaining": every host failed; each one's reason is in its metas.
        log.debug("pyinfra stopped: %s", error)
    finally:
        disconnect_all(state)
    elapsed = time.monotonic() - started
    failed = {host.name for host in state.failed_hosts}
    for name in queued:
        plan = wanted[name]
        ok = name not in failed
        outcomes[name] = RunOutcome(
            name,
            True,
            ok,
            None if ok else _host_error(metas.get(name, [])),
            rebooted=ok and reboot and plan.needs_reboot,
            elapsed_s=elapsed,
        )
    return list(outcomes.values())
