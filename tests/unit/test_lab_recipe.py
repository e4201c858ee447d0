"""The image recipe: its cache key and the GRUB configuration it renders (pure)."""

from __future__ import annotations

import dataclasses
import re

from quietcore.lab.recipe import FILES, PACKAGES, Recipe


def test_key_is_stable_and_names_the_image() -> None:
    assert Recipe().key() == Recipe().key()
    assert re.fullmatch(r"[0-9a-f]{16}", Recipe().key())
    assert Recipe().image_stem() == f"debian-bookworm-{Recipe().key()}"


def test_key_changes_with_the_package_list() -> None:
    more = Recipe(packages=(*PACKAGES, "numactl"))
    fewer = Recipe(packages=PACKAGES[:-1])
    assert len({Recipe().key(), more.key(), fewer.key()}) == 3


def test_key_ignores_package_order() -> None:
    assert Recipe(packages=tuple(reversed(PACKAGES))).key() == Recipe().key()


def test_key_changes_with_grub_config_and_recipe_version() -> None:
    grub = dict(FILES)
    grub["/etc/default/grub"] += "GRUB_CMDLINE_LINUX=quiet\n"
    keys = {
        Recipe().key(),
        Recipe(files=grub).key(),
        Recipe(version=Recipe().version + 1).key(),
        dataclasses.replace(Recipe(), disk_gib=8).key(),
    }
    assert len(keys) == 4


def _grub_settings() -> dict[str, str]:
    settings = {}
    for line in FILES["/etc/default/grub"].splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings[key] = value
    return settings


def test_grub_boots_at_once_on_the_serial_console() -> None:
    grub = _grub_settings()
    assert grub["GRUB_TIMEOUT"] == "0"
    assert grub["GRUB_CMDLINE_LINUX_DEFAULT"] == '"console=ttyS0,115200"'
    assert grub["GRUB_TERMINAL"] == "serial"
    assert "--speed=115200" in grub["GRUB_SERIAL_COMMAND"]


def test_the_image_has_what_later_issues_need() -> None:
    for package in ("linux-image-amd64", "grub-pc", "openssh-server", "irqbalance", "rt-tests"):
        assert package in PACKAGES
    for package in ("python3", "ethtool", "chrony", "iproute2"):
        assert package in PACKAGES


def test_sshd_takes_keys_only() -> None:
    sshd = FILES["/etc/ssh/sshd_config.d/quietcore.conf"]
    assert "PasswordAuthentication no" in sshd
    assert "PermitRootLogin prohibit-password" in sshd
