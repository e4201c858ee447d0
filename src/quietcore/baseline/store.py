"""Where baselines live on the controller: ``controller_state_dir()/baselines/NAME/``, a
``baseline.json`` manifest and ``hosts/HOST.json`` (one verify document per host).

A save is written to a temporary directory first and renamed into place, so a baseline is
either whole or absent, and ``--force`` replaces the old one only once the new one is complete.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from quietcore.baseline.model import Baseline, BaselineError, baseline_from, manifest, with_hosts
from quietcore.converge.paths import controller_state_dir
from quietcore.report.document import Document

MANIFEST = "baseline.json"
HOSTS = "hosts"
# A baseline's name is a directory name: letters, digits, '.', '_', '-', not starting with '.'.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# As converge/paths.py names the hosts' directories; a clash gets a number (see _file_names).
_UNSAFE_IN_NAME = re.compile(r"[^A-Za-z0-9@._-]")


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise BaselineError(
            f"baseline name {name!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def baselines_dir() -> Path:
    return controller_state_dir() / "baselines"


def baseline_dir(name: str) -> Path:
    return baselines_dir() / check_name(name)


def exists(name: str) -> bool:
    return (baseline_dir(name) / MANIFEST).is_file()


def _file_names(hosts: list[str]) -> dict[str, str]:
    """``hosts/NAME.json`` per host, sanitised, numbered when two names sanitise alike."""
    files: dict[str, str] = {}
    for host in hosts:
        stem = _UNSAFE_IN_NAME.sub("_", host)
        candidate, number = stem, 1
        while f"{HOSTS}/{candidate}.json" in files.values():
            number += 1
            candidate = f"{stem}-{number}"
        files[host] = f"{HOSTS}/{candidate}.json"
    return files


def _write_json(path: Path, document: Any) -> None:
    path.write_text(json.dumps(document, indent=2) + "\n")


def save(name: str, document: Document, *, force: bool) -> Path:
    """Store a verify document (with its ``jitter`` when measured) as baseline ``name``, one
    file per host. Refuses to replace an existing baseline unless ``force``."""
    target = baseline_dir(name)
    if exists(name) and not force:
        raise BaselineError(f"baseline {name!r} exists ({target}); --force replaces it")
    hosts = [host["host"] for host in document["hosts"]]
    files = _file_names(hosts)
    root = baselines_dir()
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".{name}.saving-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / HOSTS).mkdir(parents=True)
    for host in hosts:
        _write_json(staging / files[host], with_hosts(document, [host]))
    _write_json(staging / MANIFEST, manifest(name, document, files))
    old = root / f".{name}.old-{os.getpid()}"
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise BaselineError(f"{path} is missing") from None
    except (OSError, ValueError) as problem:
        raise BaselineError(f"{path}: cannot read it ({problem})") from None


def read_manifest(name: str) -> dict[str, Any]:
    if not exists(name):
        known = ", ".join(names()) or "none saved yet"
        raise BaselineError(f"no baseline named {name!r} in {baselines_dir()} (known: {known})")
    listing: dict[str, Any] = _read_json(baseline_dir(name) / MANIFEST)
    return listing


def host_documents(name: str) -> dict[str, Any]:
    """Each host's verify document of baseline ``name``, by its file name."""
    listing = read_manifest(name)
    folder = baseline_dir(name)
    try:
        files = [entry["file"] for entry in listing["hosts"]]
    except (KeyError, TypeError) as problem:
        raise BaselineError(f"{folder / MANIFEST}: bad or missing {problem}") from None
    return {file: _read_json(folder / file) for file in files if _inside(folder, file)}


def _inside(folder: Path, file: str) -> bool:
    # A hand-edited manifest must not make quietcore read files outside the baseline.
    if not (folder / file).resolve().is_relative_to(folder.resolve()):
        raise BaselineError(f"{folder / MANIFEST}: {file!r} is outside the baseline")
    return True


def load(name: str) -> Baseline:
    return baseline_from(read_manifest(name), host_documents(name))


def names() -> list[str]:
    root = baselines_dir()
    if not root.is_dir():
        return []
    return sorted(
        path.name
        for path in root.iterdir()
        if _NAME.match(path.name) and (path / MANIFEST).is_file()
    )


def manifests() -> list[Mapping[str, Any]]:
    """Every saved baseline's manifest, by name; one that cannot be read says so."""
    found: list[Mapping[str, Any]] = []
    for name in names():
        try:
            found.append(read_manifest(name))
        except BaselineError as problem:
            found.append({"name": name, "error": str(problem)})
    return found


def delete(name: str) -> Path:
    target = baseline_dir(name)
    if not exists(name):
        raise BaselineError(f"no baseline named {name!r} in {baselines_dir()}")
    shutil.rmtree(target)
    return target
