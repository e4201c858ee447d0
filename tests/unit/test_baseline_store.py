"""The baseline store on the controller: names are checked, a save is whole or absent and
replaces only with --force, host names become safe file names, and a baseline reads back as
saved. On a real verify capture (tests/data/reports/jitter-before.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from quietcore.baseline import store
from quietcore.baseline.model import BaselineError, with_hosts
from quietcore.converge import paths

DATA = Path(__file__).parents[1] / "data" / "reports"


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(paths.STATE_DIR_ENV, str(tmp_path))
    return tmp_path


def _document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((DATA / "jitter-before.json").read_text())
    return document


@pytest.mark.parametrize("name", ["", ".hidden", "../up", "a/b", "x" * 65, "sp ace"])
def test_bad_names_are_refused(name: str, state_dir: Path) -> None:
    with pytest.raises(BaselineError, match="use 1-64 letters"):
        store.check_name(name)


def test_save_then_load_reads_back_every_host(state_dir: Path) -> None:
    folder = store.save("quiet-1", _document(), force=False)
    assert folder == state_dir / "baselines" / "quiet-1"
    assert sorted(p.name for p in (folder / "hosts").iterdir()) == ["@local.json", "gone-d.json"]
    baseline = store.load("quiet-1")
    assert list(baseline.hosts) == ["@local", "gone-d"]
    local = baseline.hosts["@local"]
    assert local.jitter is not None and local.jitter["cpus"][0]["events"]["p99_us"] == 39.039
    assert baseline.profile["name"] == "jitter-cpu1" and baseline.jitter
    assert store.names() == ["quiet-1"]
    [listing] = store.manifests()
    assert [(h["host"], h["drift"], h["jitter"]) for h in listing["hosts"]] == [
        ("@local", 14, "pass"),
        ("gone-d", 0, "unreachable"),
    ]


def test_an_existing_baseline_is_replaced_only_with_force(state_dir: Path) -> None:
    store.save("quiet", with_hosts(_document(), ["@local", "gone-d"]), force=False)
    with pytest.raises(BaselineError, match="--force replaces it"):
        store.save("quiet", _document(), force=False)
    store.save("quiet", with_hosts(_document(), ["@local"]), force=True)
    assert list(store.load("quiet").hosts) == ["@local"]
    # Nothing is left of the staging or the old copy.
    assert [p.name for p in (state_dir / "baselines").iterdir()] == ["quiet"]


def test_host_names_that_sanitise_alike_get_their_own_files(state_dir: Path) -> None:
    document = with_hosts(_document(), ["@local"])
    twin = json.loads(json.dumps(document["hosts"][0]))
    document["hosts"][0]["host"] = "a:b"
    twin["host"] = "a/b"
    document["hosts"].append(twin)
    folder = store.save("twins", document, force=False)
    assert sorted(p.name for p in (folder / "hosts").iterdir()) == ["a_b-2.json", "a_b.json"]
    assert list(store.load("twins").hosts) == ["a:b", "a/b"]


def test_unknown_deleted_and_tampered_baselines(state_dir: Path) -> None:
    with pytest.raises(
        BaselineError, match=r"no baseline named 'nope' .*\(known: none saved yet\)"
    ):
        store.load("nope")
    folder = store.save("quiet", _document(), force=False)
    manifest = json.loads((folder / "baseline.json").read_text())
    manifest["hosts"][0]["file"] = "../../../etc/passwd"
    (folder / "baseline.json").write_text(json.dumps(manifest))
    with pytest.raises(BaselineError, match="is outside the baseline"):
        store.load("quiet")
    assert store.delete("quiet") == folder and not folder.exists()
    with pytest.raises(BaselineError, match="no baseline named 'quiet'"):
        store.delete("quiet")
