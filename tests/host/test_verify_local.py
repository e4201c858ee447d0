"""verify against this machine's real kernel: drift first, then ok after setting by hand."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.host

# Keys of network-latency that are safe to flip on this machine and back: none of them can
# cost us the connection (no interface, route or firewall setting among them).
SAFE_FILES = {
    "sysctl/net.core.busy_read": "/proc/sys/net/core/busy_read",
    "sysctl/net.core.busy_poll": "/proc/sys/net/core/busy_poll",
    "sysctl/kernel.timer_migration": "/proc/sys/kernel/timer_migration",
    "sysctl/vm.stat_interval": "/proc/sys/vm/stat_interval",
    "sysctl/vm.swappiness": "/proc/sys/vm/swappiness",
    "sysctl/vm.dirty_ratio": "/proc/sys/vm/dirty_ratio",
    "sysctl/vm.dirty_background_ratio": "/proc/sys/vm/dirty_background_ratio",
    "vm/thp_enabled": "/sys/kernel/mm/transparent_hugepage/enabled",
}


def _schema() -> dict[str, object]:
    text = resources.files("quietcore").joinpath("schemas/verify-v1.json").read_text()
    return json.loads(text)  # type: ignore[no-any-return]


def _current(path: str) -> str:
    text = Path(path).read_text().strip()
    if "[" in text:  # THP: the bracketed word is the active mode
        return text.split("[", 1)[1].split("]", 1)[0]
    return text


@pytest.fixture
def restore_knobs(root_only: None) -> Iterator[None]:
    saved = {path: _current(path) for path in SAFE_FILES.values()}
    yield
    for path, value in saved.items():
        Path(path).write_text(value)


def _declaration_line(profile: str, field: str) -> int:
    """The line of the built-in profile that declares ``field`` (a YAML key)."""
    text = resources.files("quietcore").joinpath(f"builtin_profiles/{profile}.yaml").read_text()
    [line] = [
        n for n, row in enumerate(text.splitlines(), 1) if row.strip().startswith(field + ":")
    ]
    return line


def _by_key(document: dict[str, Any]) -> dict[str, dict[str, object]]:
    [host] = document["hosts"]
    return {setting["key"]: setting for setting in host["settings"]}


def test_verify_reports_real_drift_then_ok_after_setting_by_hand(restore_knobs: None) -> None:
    # Start from values that are certainly not the declared ones.
    Path(SAFE_FILES["sysctl/net.core.busy_poll"]).write_text("0")
    Path(SAFE_FILES["vm/thp_enabled"]).write_text("always")

    before = run_cli("verify", "--profile", "network-latency", "--format", "json", "@local")
    assert before.returncode == 1, before.stderr
    document = before.json()
    jsonschema.validate(document, _schema())
    settings = _by_key(document)
    assert settings["sysctl/net.core.busy_poll"]["status"] == "drift"
    assert settings["sysctl/net.core.busy_poll"]["actual"] == "0"
    assert settings["vm/thp_enabled"]["actual"] == "always"
    assert settings["sysctl/net.core.busy_poll"]["source"] == (
        f"builtin:network-latency.yaml:{_declaration_line('network-latency', 'busy_poll_us')}"
    )

    for key, path in SAFE_FILES.items():
        Path(path).write_text(str(settings[key]["desired"]))

    after = run_cli("verify", "--profile", "network-latency", "--format", "json", "@local")
    settings = _by_key(after.json())
    for key in SAFE_FILES:
        assert settings[key]["status"] == "ok", settings[key]


def test_table_output_names_keys_and_summary(root_only: None) -> None:
    result = run_cli("verify", "--profile", "network-latency", "@local")
    assert result.returncode in (0, 1), result.stderr
    assert "sysctl/net.core.busy_poll" in result.stdout
    assert "settings:" in result.stdout
    assert "1 host(s):" in result.stdout
