"""The image cache: names per recipe, readiness, pruning of older recipes (no build here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from quietcore.lab.image import image_for, prune_images
from quietcore.lab.paths import images_dir
from quietcore.lab.recipe import Recipe

SUFFIXES = (".qcow2", ".json", ".id_ed25519", ".id_ed25519.pub", ".host_ed25519.pub", ".vmlinuz")


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    images_dir().mkdir(parents=True)
    return tmp_path


def _fake_image(stem: str) -> None:
    for suffix in SUFFIXES:
        (images_dir() / f"{stem}{suffix}").write_text("x")


def test_images_live_in_the_xdg_cache_named_by_recipe_key(cache: Path) -> None:
    image = image_for(Recipe())
    assert image.disk == cache / "quietcore" / "images" / f"{Recipe().image_stem()}.qcow2"
    assert not image.ready()
    _fake_image(image.stem)
    assert image.ready()


def test_prune_keeps_the_current_and_in_use_images_only() -> None:
    for stem in ("debian-bookworm-old", "debian-bookworm-used", "debian-bookworm-new"):
        _fake_image(stem)
    (images_dir() / "debs").mkdir()
    removed = prune_images({"debian-bookworm-new", "debian-bookworm-used"})
    assert removed == ["debian-bookworm-old"]
    left = sorted(path.name for path in images_dir().iterdir())
    assert not any(name.startswith("debian-bookworm-old") for name in left)
    assert len([name for name in left if name.startswith("debian-bookworm-")]) == 2 * len(SUFFIXES)
    assert "debs" in left
