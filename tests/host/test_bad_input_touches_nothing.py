"""Bad input is refused with file, line and field, and no host is changed.

Schema-level defects are refused before any host is contacted: the target is a listening
socket that counts connections, and it must see none. Host-level defects (a CPU the host does
not have, hugepages beyond its memory) need the host's topology, so the host is read once —
and its kernel tunables must be identical before and after.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_cli

BAD = Path(__file__).parents[1] / "data" / "bad_profiles"
WHERE = re.compile(r"error: \S+\.ya?ml:\d+: (?:[\w.-]+|\(profile\)): ")


class CountingListener:
    """A TCP port on loopback that counts who connects (and closes them at once)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[CountingListener]:
    counting = CountingListener()
    yield counting
    counting.close()


def _schema_level() -> list[Path]:
    return sorted(p for p in BAD.glob("*.yaml") if not p.name.startswith("host_"))


def _host_level() -> list[Path]:
    return sorted(BAD.glob("host_*.yaml"))


def test_there_are_enough_bad_profiles() -> None:
    assert len(_schema_level()) + len(_host_level()) >= 25


@pytest.mark.parametrize("profile", _schema_level(), ids=lambda p: p.stem)
def test_schema_defect_refused_before_any_connection(
    profile: Path, listener: CountingListener, tmp_path: Path
) -> None:
    inventory = tmp_path / "inventory.py"
    inventory.write_text(f'hosts = [("127.0.0.1", {{"ssh_port": {listener.port}}})]\n')
    result = run_cli("verify", "--profile", str(profile), str(inventory))
    assert result.returncode == 2, result.stderr
    assert WHERE.search(result.stderr), result.stderr
    assert listener.connections == 0


SNAPSHOT_GLOBS = (
    "/proc/sys/vm/*",
    "/proc/sys/net/core/*",
    "/proc/sys/kernel/sched_*",
    "/proc/sys/kernel/numa_balancing",
    "/proc/sys/kernel/timer_migration",
    "/sys/kernel/mm/transparent_hugepage/*",
    "/sys/kernel/mm/hugepages/*/nr_hugepages",
    "/proc/irq/*/smp_affinity_list",
    "/sys/devices/virtual/workqueue/cpumask",
)


def _snapshot() -> dict[str, str]:
    values = {}
    for pattern in SNAPSHOT_GLOBS:
        for path in Path("/").glob(pattern.lstrip("/")):
            try:
                values[str(path)] = path.read_text()
            except OSError:
                continue  # write-only or unreadable entries
    return values


@pytest.mark.host
@pytest.mark.parametrize("profile", _host_level(), ids=lambda p: p.stem)
def test_host_defect_refused_and_host_unchanged(profile: Path, root_only: None) -> None:
    before = _snapshot()
    result = run_cli("verify", "--profile", str(profile), "@local")
    after = _snapshot()
    assert result.returncode == 2, result.stdout + result.stderr
    assert str(profile.name) in result.stdout + result.stderr
    assert re.search(r"\.yaml:\d+", result.stdout + result.stderr)
    assert before == after
