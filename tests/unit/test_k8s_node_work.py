"""What a drained node needs after apply (pure, from its plan), and the commands of the
kubelet step as pyinfra would run them."""

from __future__ import annotations

import pytest
from pyinfra.api.config import Config
from pyinfra.api.operation import add_op
from pyinfra.api.state import State
from pyinfra.context import ctx_host, ctx_state

from quietcore.audit import HostAudit
from quietcore.converge.plan import Change, FileChange, HostPlan
from quietcore.engine import inventory_for
from quietcore.k8s.node_work import NodeSteps, node_steps, reset_kubelet
from quietcore.knobs.kubelet import DROP_IN
from quietcore.steps import UnsafeStepError

CPU_STATE = "/var/lib/kubelet/cpu_manager_state"
MEMORY_STATE = "/var/lib/kubelet/memory_manager_state"
DROP_IN_WRITE = FileChange(DROP_IN, "kubelet", "create", reboot=True)


def _plan(*changes: Change, files: tuple[FileChange, ...] = ()) -> HostPlan:
    return HostPlan("n1", "apply", HostAudit("n1", "drift"), changes, files)


def _kubelet(field: str, before: str, after: str) -> Change:
    return Change(f"kubelet/{field}", "kubelet", before, after, "by-file", reboot=True)


def test_policy_change_resets_state_and_restarts() -> None:
    plan = _plan(
        _kubelet("cpuManagerPolicy", "none", "static"),
        _kubelet("memoryManagerPolicy", "None", "Static"),
        _kubelet("topologyManagerPolicy", "none", "single-numa-node"),
        files=(DROP_IN_WRITE,),
    )
    assert node_steps(plan, reboot_allowed=False) == NodeSteps(
        (CPU_STATE, MEMORY_STATE), restart_kubelet=True
    )
    # The kubelet drop-in alone never asks for a reboot: a restart is enough.
    assert node_steps(plan, reboot_allowed=True) == NodeSteps(
        (CPU_STATE, MEMORY_STATE), restart_kubelet=True
    )


def test_other_fields_restart_without_reset() -> None:
    plan = _plan(_kubelet("systemReserved", "", "cpu=1"), files=(DROP_IN_WRITE,))
    assert node_steps(plan, reboot_allowed=False) == NodeSteps((), restart_kubelet=True)


def test_boot_time_change_reboots_instead_of_restarting() -> None:
    cmdline = Change("cmdline/isolcpus", "cmdline", None, "2-3", "at-boot", reboot=True)
    plan = _plan(cmdline, _kubelet("cpuManagerPolicy", "none", "static"), files=(DROP_IN_WRITE,))
    assert node_steps(plan, reboot_allowed=True) == NodeSteps((CPU_STATE,), reboot=True)
    # Not allowed to reboot: the kubelet still restarts; isolcpus drifts (verify fails).
    assert node_steps(plan, reboot_allowed=False) == NodeSteps((CPU_STATE,), restart_kubelet=True)


def test_nothing_for_a_plain_runtime_change() -> None:
    sysctl = Change("sysctl/vm.swappiness", "sysctl", "60", "10", "now", reboot=False)
    assert not node_steps(_plan(sysctl), reboot_allowed=True).any


def _commands(**kwargs: object) -> list[str]:
    inventory = inventory_for(["n1"])
    state = State(inventory, Config())  # type: ignore[no-untyped-call]  # pyinfra's
    host = next(iter(inventory))
    add_op(state, reset_kubelet, host=[host], **kwargs)
    [op_hash] = state.get_op_order()  # type: ignore[no-untyped-call]
    with ctx_state.use(state), ctx_host.use(host):
        data = state.get_op_data_for_host(host, op_hash)
        return [str(command) for command in data.command_generator()]


def test_reset_stops_removes_starts() -> None:
    assert _commands(state_files=(CPU_STATE,), restart=True) == [
        "systemctl stop kubelet",
        f"rm -f -- {CPU_STATE}",
        "systemctl start kubelet",
    ]
    # Before a reboot: the boot starts the kubelet.
    assert _commands(state_files=(CPU_STATE, MEMORY_STATE), restart=False) == [
        "systemctl stop kubelet",
        f"rm -f -- {CPU_STATE} {MEMORY_STATE}",
    ]
    assert _commands(restart=True) == ["systemctl restart kubelet"]


def test_reset_refuses_any_other_path() -> None:
    with pytest.raises(UnsafeStepError, match="not a kubelet state file"):
        _commands(state_files=("/var/lib/kubelet/../../etc/passwd",), restart=True)
