"""The rollout's work on drained nodes over SSH: quietcore's own plan/apply and verify, plus
what only a drained Kubernetes node may have done to it.

The kubelet reads its drop-in only when it starts, and a kubelet whose CPU or memory manager
policy changed refuses to start while its old state file (``/var/lib/kubelet/
cpu_manager_state``, ``memory_manager_state``) is there. So when apply changed the kubelet's
drop-in, the kubelet is restarted, and when a manager policy changed it is stopped, the state
file removed and started again; when the node reboots anyway, the state files are removed
before the reboot and the boot starts the kubelet. Either way the rollout then waits for the
node to report Ready afresh.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyinfra.api.command import StringCommand
from pyinfra.api.connect import connect_all, disconnect_all
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.operation import add_op, operation
from pyinfra.api.operations import run_ops
from pyinfra.api.state import State

from quietcore.audit import audit_host, reads_for
from quietcore.converge import journal
from quietcore.converge.operations import reboot_and_wait
from quietcore.converge.plan import HostPlan, apply_reads, plan_apply
from quietcore.converge.run import run_plans
from quietcore.engine import FanOut, inventory_for, read_hosts
from quietcore.k8s.inventory import render_inventory
from quietcore.k8s.rollout import NodeTarget, WorkResult
from quietcore.knobs.kubelet import STATE_FILES
from quietcore.profile.loaded import LoadedProfile
from quietcore.steps import UnsafeStepError

log = logging.getLogger(__name__)

KUBELET_FAMILY = "kubelet"
# Only these paths are ever removed: the kubelet's manager checkpoints.
STATE_FILE_BY_KEY = {f"kubelet/{field}": path for field, path in STATE_FILES.items()}


@dataclass(frozen=True)
class NodeSteps:
    """What a drained node needs after quietcore's apply, decided from its plan."""

    reset_state: tuple[str, ...] = ()  # kubelet state files to remove
    restart_kubelet: bool = False
    reboot: bool = False

    @property
    def any(self) -> bool:
        return bool(self.reset_state or self.restart_kubelet or self.reboot)


def node_steps(plan: HostPlan, reboot_allowed: bool) -> NodeSteps:
    """Pure. The kubelet's drop-in counts as a reboot in a host's plan (the kubelet reads it
    only at start); on a Kubernetes node a kubelet restart is enough, so only the other
    families' boot-time changes ask for a reboot here."""
    reset = tuple(
        sorted({STATE_FILE_BY_KEY[c.key] for c in plan.changes if c.key in STATE_FILE_BY_KEY})
    )
    kubelet_changed = any(f.family == KUBELET_FAMILY for f in plan.files) or bool(reset)
    other_reboot = any(
        c.reboot and c.kind != "manual" and c.family != KUBELET_FAMILY for c in plan.changes
    ) or any(f.reboot and f.family != KUBELET_FAMILY for f in plan.files)
    reboot = reboot_allowed and other_reboot
    return NodeSteps(reset, kubelet_changed and not reboot, reboot)


@operation()
def reset_kubelet(state_files: Sequence[str] = (), restart: bool = True) -> Generator[Any]:
    """Remove the kubelet's manager state files (kubelet stopped meanwhile) and, with
    ``restart``, start it again; without, the reboot that follows starts it."""
    unknown = set(state_files) - set(STATE_FILE_BY_KEY.values())
    if unknown:
        raise UnsafeStepError(f"refusing to remove {sorted(unknown)}: not a kubelet state file")
    if state_files:
        yield StringCommand("systemctl", "stop", "kubelet")
        yield StringCommand("rm", "-f", "--", *sorted(state_files))
        if restart:
            yield StringCommand("systemctl", "start", "kubelet")
    elif restart:
        yield StringCommand("systemctl", "restart", "kubelet")


class SshNodeWork:
    """``NodeWork`` over SSH with quietcore's plan/apply/verify; one batch at a time."""

    def __init__(
        self,
        loaded: LoadedProfile,
        *,
        reboot: bool,
        fan_out: FanOut,
        reboot_timeout: int = 900,
    ) -> None:
        self.loaded = loaded
        self.reboot = reboot
        self.fan_out = fan_out
        self.reboot_timeout = reboot_timeout
        self._workdir = tempfile.TemporaryDirectory(prefix="quietcore-rollout-")

    def _inventory(self, nodes: Sequence[NodeTarget]) -> str:
        """The batch as a pyinfra inventory file, so engine reaches each node with its data."""
        path = Path(self._workdir.name) / "nodes.py"
        path.write_text(render_inventory([node.entry for node in nodes], "rollout batch"))
        return str(path)

    def apply(self, nodes: Sequence[NodeTarget]) -> dict[str, WorkResult]:
        targets = [self._inventory(nodes)]
        reads = read_hosts(targets, apply_reads(self.loaded), self.fan_out)
        now = journal.now_utc()
        plans = [plan_apply(self.loaded, read, now) for read in reads]
        results = {p.host: WorkResult(False, f"plan: {p.error}") for p in plans if p.error}
        runnable = [plan for plan in plans if plan.error is None]
        who, name, digest = journal.operator(), self.loaded.profile.name, self.loaded.digest
        outcomes = run_plans(
            targets,
            runnable,
            lambda plan: journal.Context(now, who, plan.host, "apply", name, digest),
            reboot=False,
            fan_out=self.fan_out,
        )
        steps: dict[str, NodeSteps] = {}
        for plan, outcome in zip(runnable, outcomes, strict=True):
            if outcome.ran and not outcome.ok:
                results[plan.host] = WorkResult(False, f"apply: {outcome.error}")
                continue
            steps[plan.host] = node_steps(plan, self.reboot)
            changed = f"{plan.action_count} changes" if outcome.ran else "no changes"
            results[plan.host] = WorkResult(True, changed)
        results.update(self._node_steps(targets, steps, results))
        return results

    def _node_steps(
        self, targets: list[str], steps: dict[str, NodeSteps], results: dict[str, WorkResult]
    ) -> dict[str, WorkResult]:
        """Kubelet reset/restart and reboot where the plan asks for them."""
        wanted = {host: step for host, step in steps.items() if step.any}
        if not wanted:
            return {}
        state = State(inventory_for(targets, wanted), self.fan_out.config(FAIL_PERCENT=100))
        for host in state.inventory:
            step = wanted[host.name]
            if step.reset_state or step.restart_kubelet:
                add_op(
                    state,
                    reset_kubelet,
                    state_files=step.reset_state,
                    restart=not step.reboot,
                    host=[host],
                    name="quietcore: reset and restart the kubelet",
                )
            if step.reboot:
                add_op(
                    state,
                    reboot_and_wait,
                    timeout=self.reboot_timeout,
                    host=[host],
                    name="quietcore: reboot and wait for a new boot id",
                )
        try:
            connect_all(state)
            run_ops(state)
        except PyinfraError as error:
            log.debug("pyinfra stopped: %s", error)
        finally:
            disconnect_all(state)
        failed = {host.name for host in state.failed_hosts}
        done: dict[str, WorkResult] = {}
        for name, step in wanted.items():
            what, before = _describe(step), results[name].detail
            if name in failed:
                done[name] = WorkResult(False, f"{before}; {what} failed (run with -vv)")
            else:
                done[name] = WorkResult(True, f"{before}; {what}", restarted=True)
        return done

    def verify(self, nodes: Sequence[NodeTarget]) -> dict[str, WorkResult]:
        targets = [self._inventory(nodes)]
        results: dict[str, WorkResult] = {}
        for read in read_hosts(targets, reads_for(self.loaded), self.fan_out):
            audit = audit_host(self.loaded, read)
            if audit.status == "ok":
                results[read.host] = WorkResult(True, "zero drift")
                continue
            drifted = [
                f"{r.setting.key}: {r.status} ({r.actual}, want {r.setting.desired})"
                for r in audit.results
                if r.status in ("drift", "missing")
            ]
            detail = audit.error or "; ".join(drifted[:5]) + (" ..." if len(drifted) > 5 else "")
            results[read.host] = WorkResult(False, f"{audit.status}: {detail}")
        if self.loaded.profile.verify.jitter is not None:
            results.update(self._jitter_gate(targets, results))
        return results

    def _jitter_gate(
        self, targets: list[str], results: dict[str, WorkResult]
    ) -> dict[str, WorkResult]:
        from quietcore.probes.commands import jitter_exit_code, measure_for_verify

        measured = measure_for_verify(self.loaded, targets, self.fan_out)
        gated: dict[str, WorkResult] = {}
        for host in measured.hosts:
            verdicts = {host.host: measured.verdicts.get(host.host, ())}
            if not results[host.host].ok:
                continue
            if jitter_exit_code([host], verdicts) == 0:
                gated[host.host] = WorkResult(True, "zero drift; jitter gate passed")
            else:
                why = host.error or "a CPU broke the profile's verify.jitter accept rules"
                gated[host.host] = WorkResult(False, f"jitter gate: {why}")
        return gated


def _describe(step: NodeSteps) -> str:
    parts = []
    if step.reset_state:
        parts.append(f"removed {', '.join(step.reset_state)}")
    if step.restart_kubelet:
        parts.append("restarted the kubelet")
    if step.reboot:
        parts.append("rebooted")
    return ", ".join(parts)
