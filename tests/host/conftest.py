"""Fixtures the host tests share: a real loopback sshd, and a private controller state dir."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from quietcore.converge import paths
from tests.sshd import SshServer, start_sshd


@pytest.fixture
def sshd(tmp_path: Path, root_only: None) -> Iterator[SshServer]:
    server = start_sshd(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The controller's copy of snapshots and journals, for this test alone."""
    directory = tmp_path / "controller-state"
    monkeypatch.setenv(paths.STATE_DIR_ENV, str(directory))
    return directory
