"""The e2e tests run only against a real cluster named by QUIETCORE_E2E_KUBECONFIG; without
it they are deselected (reported as such), never run against nothing."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("QUIETCORE_E2E_KUBECONFIG"):
        return
    e2e = [item for item in items if item.get_closest_marker("e2e")]
    if e2e:
        config.hook.pytest_deselected(items=e2e)
        items[:] = [item for item in items if not item.get_closest_marker("e2e")]
