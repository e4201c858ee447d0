"""A profile rolled across a pool of Kubernetes nodes, a batch at a time.

For each batch (the canary batch first, then batches of ``max_unavailable``): cordon, evict
the pods through the Eviction API (PodDisruptionBudget refusals retried until a timeout;
DaemonSet and mirror pods stay), apply over SSH (and reboot if allowed), wait until the
kubelet reports Ready, verify (zero drift, and the jitter gate when the profile has one),
label the node with the profile and its digest, uncordon. A node that fails any step stays
cordoned with ``quietcore.io/rollout-failure`` saying why; once more nodes have failed than
the failure budget allows, no further batch starts.

The SSH side is a ``NodeWork`` handed in, so this module knows only the API server.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from quietcore.k8s.cluster import Cluster, ClusterError, pod_ref, readiness, to_evict

log = logging.getLogger(__name__)

PROFILE_LABEL = "quietcore.io/profile"
DIGEST_LABEL = "quietcore.io/profile-digest"
FAILURE_ANNOTATION = "quietcore.io/rollout-failure"
DIGEST_ANNOTATION = "quietcore.io/profile-sha256"
LABEL_VALUE_MAX = 63  # Kubernetes' limit on a label value

Step = Literal["cordon", "evict", "apply", "ready", "verify", "label", "uncordon"]
NodeStatus = Literal["done", "failed", "not-started"]


@dataclass(frozen=True)
class NodeTarget:
    """A node and the pyinfra host entry (name, SSH data) that reaches it."""

    name: str
    entry: tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class WorkResult:
    ok: bool
    detail: str = ""
    # The kubelet was restarted or the node rebooted: Ready must be reported afresh.
    restarted: bool = False


class NodeWork(Protocol):
    """Apply and verify the profile on drained nodes, over SSH; one result per node name."""

    def apply(self, nodes: Sequence[NodeTarget]) -> dict[str, WorkResult]: ...

    def verify(self, nodes: Sequence[NodeTarget]) -> dict[str, WorkResult]: ...


@dataclass(frozen=True)
class RolloutOptions:
    profile: str
    digest: str
    max_unavailable: int = 1
    canary: int = 1
    max_failures: int = 0  # failed nodes tolerated before the rollout stops
    eviction_timeout: float = 600.0
    ready_timeout: float = 600.0
    poll_interval: float = 5.0


@dataclass
class NodeOutcome:
    node: str
    batch: int
    status: NodeStatus = "not-started"
    step: Step | None = None  # the step that failed, or the last one done
    detail: str = ""
    evicted: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RolloutReport:
    batches: tuple[tuple[str, ...], ...]
    outcomes: tuple[NodeOutcome, ...]
    stopped: bool  # the failure budget ran out before every batch ran

    @property
    def failed(self) -> tuple[NodeOutcome, ...]:
        return tuple(outcome for outcome in self.outcomes if outcome.status == "failed")

    @property
    def ok(self) -> bool:
        return all(outcome.status == "done" for outcome in self.outcomes)

    def document(self) -> dict[str, Any]:
        return {
            "schema": "quietcore.k8s-rollout/v1",
            "batches": [list(batch) for batch in self.batches],
            "stopped": self.stopped,
            "nodes": [
                {
                    "node": o.node,
                    "batch": o.batch,
                    "status": o.status,
                    "step": o.step,
                    "detail": o.detail,
                    "evicted": o.evicted,
                }
                for o in self.outcomes
            ],
        }


def plan_batches(nodes: Sequence[str], max_unavailable: int, canary: int) -> list[list[str]]:
    """The canary batch (``canary`` nodes, none when 0), then batches of ``max_unavailable``."""
    if max_unavailable < 1:
        raise ValueError("max-unavailable must be at least 1")
    if canary < 0:
        raise ValueError("canary must not be negative")
    first = list(nodes[:canary])
    rest = nodes[canary:]
    batches = [first] if first else []
    batches += [list(rest[i : i + max_unavailable]) for i in range(0, len(rest), max_unavailable)]
    return batches


def label_value(text: str) -> str:
    """``text`` cut to a valid label value (63 characters, alphanumeric at both ends)."""
    return text[:LABEL_VALUE_MAX].rstrip("-_.")


class StepError(Exception):
    def __init__(self, step: Step, detail: str) -> None:
        super().__init__(f"{step}: {detail}")
        self.step = step
        self.detail = detail


Event = Callable[[str, str], None]


class Rollout:
    def __init__(
        self,
        cluster: Cluster,
        work: NodeWork,
        options: RolloutOptions,
        *,
        on_event: Event | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.cluster = cluster
        self.work = work
        self.options = options
        self.on_event = on_event or (lambda _node, _message: None)
        self.sleep = sleep

    def run(self, targets: Sequence[NodeTarget]) -> RolloutReport:
        options = self.options
        by_name = {target.name: target for target in targets}
        batches = plan_batches(list(by_name), options.max_unavailable, options.canary)
        outcomes = {
            name: NodeOutcome(name, number)
            for number, batch in enumerate(batches, 1)
            for name in batch
        }
        failures = 0
        stopped = False
        for number, batch in enumerate(batches, 1):
            if failures > options.max_failures:
                stopped = True
                break
            log.info("batch %d/%d: %s", number, len(batches), ", ".join(batch))
            self._batch([by_name[name] for name in batch], outcomes)
            failures = sum(1 for o in outcomes.values() if o.status == "failed")
        return RolloutReport(
            tuple(tuple(batch) for batch in batches), tuple(outcomes.values()), stopped
        )

    # --- one batch, step by step; a node that fails drops out of the steps after it -----------

    def _batch(self, batch: Sequence[NodeTarget], outcomes: dict[str, NodeOutcome]) -> None:
        alive = list(batch)

        def each(step: Step, action: Callable[[NodeTarget], None]) -> None:
            for target in list(alive):
                try:
                    action(target)
                    outcomes[target.name].step = step
                except (StepError, ClusterError) as problem:
                    detail = problem.detail if isinstance(problem, StepError) else str(problem)
                    self._fail(target.name, step, detail, outcomes)
                    alive.remove(target)

        def on_results(step: Step, results: dict[str, WorkResult]) -> dict[str, WorkResult]:
            for target in list(alive):
                result = results.get(target.name, WorkResult(False, "no result"))
                if result.ok:
                    outcomes[target.name].step = step
                    self.on_event(target.name, f"{step}: ok {result.detail}".rstrip())
                else:
                    self._fail(target.name, step, result.detail, outcomes)
                    alive.remove(target)
            return results

        each("cordon", self._cordon)
        each("evict", lambda target: self._drain(target, outcomes[target.name]))
        # Taken before the work starts, so a kubelet restarted by it reports after this; the
        # API server keeps whole seconds.
        since = datetime.now(UTC).replace(microsecond=0)
        applied = on_results("apply", self._work(self.work.apply, alive))
        each("ready", lambda target: self._wait_ready(target, applied, since))
        on_results("verify", self._work(self.work.verify, alive))
        each("label", self._label)
        each("uncordon", self._uncordon)
        for target in alive:
            outcomes[target.name].status = "done"

    @staticmethod
    def _work(
        call: Callable[[Sequence[NodeTarget]], dict[str, WorkResult]], nodes: list[NodeTarget]
    ) -> dict[str, WorkResult]:
        """The nodes' results; whatever the SSH side raises fails them all rather than ending
        the rollout with cordoned nodes that say nothing about why."""
        if not nodes:
            return {}
        try:
            return call(nodes)
        except Exception as problem:
            log.exception("node work failed")
            failed = WorkResult(False, f"{type(problem).__name__}: {problem}")
            return {node.name: failed for node in nodes}

    def _fail(self, node: str, step: Step, detail: str, outcomes: dict[str, NodeOutcome]) -> None:
        outcome = outcomes[node]
        outcome.status, outcome.step, outcome.detail = "failed", step, detail
        reason = f"{step}: {detail}"
        self.on_event(node, f"FAILED {reason}; the node stays cordoned")
        try:
            self.cluster.annotate(node, {FAILURE_ANNOTATION: reason[:1024]})
        except ClusterError as problem:
            log.error("%s: could not annotate the failure: %s", node, problem)

    def _cordon(self, target: NodeTarget) -> None:
        self.cluster.set_unschedulable(target.name, True)
        self.on_event(target.name, "cordoned")

    def _drain(self, target: NodeTarget, outcome: NodeOutcome) -> None:
        """Evict until no evictable pod is left on the node; refusals are retried."""
        deadline = time.monotonic() + self.options.eviction_timeout
        while True:
            pods = [pod for pod in self.cluster.pods_on(target.name) if to_evict(pod)]
            if not pods:
                self.on_event(target.name, f"drained ({len(outcome.evicted)} pods evicted)")
                return
            refused = []
            for pod in pods:
                key = "/".join(pod_ref(pod))
                result = self.cluster.evict(pod)
                if result == "evicted" and key not in outcome.evicted:
                    outcome.evicted.append(key)
                elif result == "refused":
                    refused.append(key)
            if time.monotonic() >= deadline:
                left = ", ".join(refused or ["/".join(pod_ref(p)) for p in pods])
                raise StepError(
                    "evict",
                    f"pods still on the node after {self.options.eviction_timeout:g} s "
                    f"(a PodDisruptionBudget refused or they did not terminate): {left}",
                )
            self.sleep(self.options.poll_interval)

    def _wait_ready(
        self, target: NodeTarget, applied: dict[str, WorkResult], since: datetime
    ) -> None:
        """Ready, and when the kubelet restarted, Ready as reported after the restart (a stale
        Ready from before would otherwise pass)."""
        fresh_after = since if applied[target.name].restarted else None
        deadline = time.monotonic() + self.options.ready_timeout
        while True:
            seen = readiness(self.cluster.get_node(target.name))
            fresh = fresh_after is None or (
                seen.heartbeat is not None and seen.heartbeat >= fresh_after
            )
            if seen.ready and fresh:
                self.on_event(target.name, "Ready")
                return
            if time.monotonic() >= deadline:
                why = seen.reason if not seen.ready else "no heartbeat since the restart"
                raise StepError(
                    "ready", f"not Ready after {self.options.ready_timeout:g} s ({why})"
                )
            self.sleep(self.options.poll_interval)

    def _label(self, target: NodeTarget) -> None:
        self.cluster.label(
            target.name,
            {
                PROFILE_LABEL: label_value(self.options.profile),
                DIGEST_LABEL: label_value(self.options.digest),
            },
        )
        # The label holds at most 63 characters of the digest; the whole one is annotated,
        # and an earlier failure annotation is cleared (null deletes in a merge patch).
        self.cluster.annotate(
            target.name, {DIGEST_ANNOTATION: self.options.digest, FAILURE_ANNOTATION: None}
        )

    def _uncordon(self, target: NodeTarget) -> None:
        self.cluster.set_unschedulable(target.name, False)
        self.on_event(target.name, "uncordoned")
