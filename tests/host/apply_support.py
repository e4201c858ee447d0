"""What the apply/rollback host tests share: this machine's quietcore files before and after,
the memory knobs they change (always put back), the journal and the controller's copy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from quietcore.converge import paths
from quietcore.converge.plan import managed_reads
from quietcore.converge.snapshot import Snapshot, from_json
from tests.conftest import run_cli

ROOT = Path(__file__).parents[2]
BIN = Path(sys.executable).parent
QUIETCORE = BIN / "quietcore"
PYINFRA = BIN / "pyinfra"

THP = "/sys/kernel/mm/transparent_hugepage/enabled"
POOL_2M = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"
POOL_2M_NODE0 = "/sys/devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages"

# Everything an apply may leave on this machine, named here as well as taken from the code
# (``managed_reads``), so a path the code forgets to own still counts.
QUIETCORE_PATHS = (
    "/etc/quietcore",
    "/etc/quietcore/boot.sh",
    "/etc/sysctl.d/zz-quietcore.conf",
    "/etc/systemd/system/quietcore-boot.service",
    "/etc/systemd/system/multi-user.target.d",
    "/etc/systemd/system/multi-user.target.d/90-quietcore-boot.conf",
    "/var/lib/quietcore/snapshot.json",
    "/var/lib/quietcore/backup",
    *managed_reads().files,
    paths.BOOT_SCRIPT,
    paths.BOOT_UNIT,
    paths.BOOT_WANTS,
    paths.SNAPSHOT,
    paths.BACKUP_DIR,
)


def _state(path: Path) -> object:
    """A path as the test compares it: absent, a directory listing, or the file's bytes."""
    if path.is_dir():
        return sorted(child.name for child in path.iterdir())
    if path.exists():
        return path.read_bytes()
    return None


def quietcore_files() -> dict[str, object]:
    return {path: _state(Path(path)) for path in dict.fromkeys(QUIETCORE_PATHS)}


def selected(text: str) -> str:
    """The bracketed word of a sysfs mode list: ``always [madvise] never`` -> ``madvise``."""
    return text.split("[", 1)[1].split("]", 1)[0] if "[" in text else text.strip()


def thp_mode() -> str:
    return selected(Path(THP).read_text())


def read_int(path: str) -> int:
    return int(Path(path).read_text())


@dataclass(frozen=True)
class MemoryKnobs:
    thp: str
    pool_node0: int
    pool: int

    @classmethod
    def now(cls) -> MemoryKnobs:
        return cls(thp_mode(), read_int(POOL_2M_NODE0), read_int(POOL_2M))


@contextmanager
def memory_knobs_restored() -> Iterator[MemoryKnobs]:
    """The THP mode and the 2 MB pools as they are now, written back at the end whatever
    happened (and checked, so a test that cannot restore them fails loudly)."""
    saved = MemoryKnobs.now()
    try:
        yield saved
    finally:
        Path(POOL_2M_NODE0).write_text(f"{saved.pool_node0}\n")
        Path(THP).write_text(f"{saved.thp}\n")
        assert MemoryKnobs.now() == saved


@dataclass(frozen=True)
class Pristine:
    files: dict[str, object]
    journal_records: int


def journal_records(target: str = "@local") -> list[dict[str, Any]]:
    result = run_cli("history", "--json", target)
    assert result.returncode == 0, result.stderr
    records: list[dict[str, Any]] = result.json()
    return records


@contextmanager
def pristine_host() -> Iterator[Pristine]:
    """This machine without a quietcore snapshot; on the way out, whatever files the test's
    apply left behind are removed (the test itself asserts rollback removed them)."""
    if Path(paths.SNAPSHOT).exists():
        pytest.fail(
            f"{paths.SNAPSHOT} exists: an earlier apply was not rolled back "
            "(run `quietcore rollback --yes @local` and look at `quietcore history @local`)"
        )
    before = quietcore_files()
    start = Pristine(before, len(journal_records()))
    try:
        yield start
    finally:
        for path, state in sorted(before.items(), key=lambda item: -len(item[0])):
            if state is None:
                _remove(Path(path))


def _remove(path: Path) -> None:
    if path.is_dir():
        for child in sorted(path.rglob("*"), key=lambda p: -len(p.parts)):
            child.rmdir() if child.is_dir() else child.unlink()
        path.rmdir()
    elif path.exists():
        path.unlink()


def quietcore(*args: str, netns: str | None = None, timeout: float = 180) -> CliRun:
    """The installed console script, optionally inside a network namespace."""
    command = [str(QUIETCORE), *args]
    if netns is not None:
        command = ["ip", "netns", "exec", netns, *command]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
        check=False,
    )
    return CliRun(done.returncode, done.stdout, done.stderr)


@dataclass(frozen=True)
class CliRun:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    @property
    def output(self) -> str:
        return f"exit {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def host_snapshot() -> Snapshot:
    return from_json(Path(paths.SNAPSHOT).read_text(), paths.SNAPSHOT)


def assert_rolled_back(
    start: Pristine,
    keys: Sequence[str],
    state_dir: Path,
    *,
    host: str = "@local",
    profile: str,
) -> list[dict[str, Any]]:
    """After a rollback: no quietcore file remains (or each is as it was), the journal stays
    and holds an ok apply and an ok rollback record for every key, and the controller has a
    copy of the journal and of the rolled-back snapshot. Returns the new journal records."""
    assert quietcore_files() == start.files
    assert Path(paths.JOURNAL).is_file(), "rollback must keep the journal"

    records = journal_records()[start.journal_records :]
    assert records, "the journal got no records"
    failed = [record for record in records if record["result"] != "ok"]
    assert not failed, failed
    assert {record["host"] for record in records} == {host}
    applied = {r["key"] for r in records if r["action"] == "apply" and r["profile"] == profile}
    rolled_back = {r["key"] for r in records if r["action"] == "rollback"}
    assert set(keys) <= applied, sorted(applied)
    assert set(keys) <= rolled_back, sorted(rolled_back)
    assert not any(r["profile"] for r in records if r["action"] == "rollback")

    copy = state_dir / "hosts" / host
    mirrored = (copy / "journal.jsonl").read_text().splitlines()
    assert mirrored == Path(paths.JOURNAL).read_text().splitlines()
    kept = sorted(copy.glob("snapshot.rolled-back-*.json"))
    assert kept, f"no rolled-back snapshot kept in {copy}: {sorted(copy.iterdir())}"
    assert set(keys) <= set(from_json(kept[-1].read_text(), str(kept[-1])).keys)
    assert not (copy / "snapshot.json").exists()
    return records
