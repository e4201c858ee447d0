"""Where the lab keeps its cached images and per-lab state."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/quietcore``, by default ``~/.cache/quietcore``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "quietcore"


def images_dir() -> Path:
    return cache_root() / "images"


def labs_dir() -> Path:
    return cache_root() / "labs"


def lab_dir(name: str) -> Path:
    return labs_dir() / name
