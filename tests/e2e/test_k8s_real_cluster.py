"""Opt-in: the rollout against a real cluster. Runs only when QUIETCORE_E2E_KUBECONFIG names
a kubeconfig; without it the test is deselected at collection (marker ``e2e``), never skipped.

Settings (environment):
- QUIETCORE_E2E_KUBECONFIG: kubeconfig of a disposable cluster whose nodes quietcore may
  cordon, drain, tune and uncordon;
- QUIETCORE_E2E_SELECTOR: the pool's label selector (default ``quietcore.io/e2e=true``);
- QUIETCORE_E2E_PROFILE: a profile name or file (default ``network-latency``);
- QUIETCORE_E2E_SSH_USER / QUIETCORE_E2E_SSH_KEY: how to reach the nodes over SSH.

What it proves beyond the tests with the API server double: the real API server's merge
patches, its Eviction API and PodDisruptionBudgets, a real kubelet reporting Ready.
"""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from quietcore.k8s.cluster import annotations_of, from_kubeconfig, is_unschedulable
from quietcore.k8s.rollout import FAILURE_ANNOTATION, PROFILE_LABEL
from quietcore.k8s.rollout_cli import rollout

pytestmark = pytest.mark.e2e

KUBECONFIG = os.environ.get("QUIETCORE_E2E_KUBECONFIG", "")
SELECTOR = os.environ.get("QUIETCORE_E2E_SELECTOR", "quietcore.io/e2e=true")
PROFILE = os.environ.get("QUIETCORE_E2E_PROFILE", "network-latency")


def _ssh_args() -> list[str]:
    args = []
    if user := os.environ.get("QUIETCORE_E2E_SSH_USER"):
        args += ["--ssh-user", user]
    if key := os.environ.get("QUIETCORE_E2E_SSH_KEY"):
        args += ["--ssh-key", key]
    return args


def test_rollout_on_a_real_pool() -> None:
    base = ["-l", SELECTOR, "-p", PROFILE, "--kubeconfig", KUBECONFIG, *_ssh_args()]
    dry = CliRunner().invoke(rollout, [*base, "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    batches = json.loads(dry.stdout)["batches"]
    assert batches, "the selector matches no node"

    result = CliRunner().invoke(rollout, [*base, "--reboot", "if-needed", "--json"])

    report = json.loads(result.stdout)
    cluster = from_kubeconfig(KUBECONFIG, None)
    for entry in report["nodes"]:
        node = cluster.get_node(entry["node"])
        labels = (node.metadata.labels if node.metadata else None) or {}
        annotations = annotations_of(node)
        if entry["status"] == "done":
            assert not is_unschedulable(node)
            assert labels.get(PROFILE_LABEL)
        elif entry["status"] == "failed":
            assert is_unschedulable(node)
            assert FAILURE_ANNOTATION in annotations
    assert result.exit_code == 0, result.output
