"""The TuneD export: every section and option is one TuneD's plugins define (captured plugin
sources in ``tests/data/export/``), and for the four profiles quietcore shares with TuneD the
exported ``tuned.conf`` asks for exactly what quietcore resolves on a host: each item, read
the way ``test_builtin_profiles`` reads TuneD's own files, is met by a resolved setting, and
each resolved setting is carried by some item."""

from __future__ import annotations

import ast
import configparser
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from tests.conftest import run_cli
from tests.unit import test_builtin_profiles as tuned_side
from tests.unit.test_builtin_profiles import (
    TOPOLOGY,
    TUNED_NAMES,
    Sections,
    TunedContext,
    desired_settings,
    tuned_expectations,
    unmet,
)

from quietcore.export.tuned import export_tuned
from quietcore.knobs.hugepages import pool_key
from quietcore.profile.load import load_profile
from quietcore.profile.schema import size_kib
from quietcore.topology import Topology

CAPTURE = Path(__file__).resolve().parents[1] / "data" / "export" / "tuned-plugin-options.yaml"
# tuned/profiles/unit.py pops these from every section before the plugin sees the rest.
UNIT_OPTIONS = frozenset(
    {"type", "enabled", "replace", "devices", "devices_udev_regex", "script_pre", "script_post"}
)


def _dict_keys(source: str) -> dict[str, set[str]]:
    """Method name -> keys of the dict literal it returns, from captured plugin source."""
    tree = ast.parse(textwrap.dedent(source.expandtabs(4)))
    found: dict[str, set[str]] = {}
    for function in ast.walk(tree):
        if isinstance(function, ast.FunctionDef):
            for node in ast.walk(function):
                if isinstance(node, ast.Dict):
                    found[function.name] = {
                        key.value
                        for key in node.keys
                        if isinstance(key, ast.Constant) and isinstance(key.value, str)
                    }
    return found


PLUGINS = yaml.safe_load(CAPTURE.read_text())["plugins"]
OPTIONS = {name: _dict_keys(plugin["source"]) for name, plugin in PLUGINS.items()}


def parse_tuned_conf(text: str) -> Sections:
    """As TuneD's profile loader reads tuned.conf: '=' only, '#' starts a comment."""
    parser = configparser.ConfigParser(
        delimiters=("=",), inline_comment_prefixes=("#",), interpolation=None, strict=True
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return {name: dict(parser[name]) for name in parser.sections()}


def unknown_options(sections: Sections) -> list[str]:
    problems = []
    for name, options in sections.items():
        if name == "main":
            continue
        plugin = options.get("type", name)
        if plugin not in PLUGINS:
            problems.append(f"[{name}]: no captured TuneD plugin {plugin!r}")
            continue
        known = OPTIONS[plugin].get("_get_config_options", set())
        for option, value in options.items():
            if option in UNIT_OPTIONS or PLUGINS[plugin]["dynamic_options"]:
                continue
            if plugin == "bootloader" and option.startswith("cmdline"):
                continue  # cmdline<suffix>: the plugin merges every cmdline* option
            if option not in known:
                problems.append(f"[{name}] {option}: not a {plugin} plugin option")
            sub = OPTIONS[plugin].get(f"_get_config_options_{option}")
            if sub is not None:
                words = value.split()[::2]
                problems += [
                    f"[{name}] {option}: no parameter {w!r}" for w in words if w not in sub
                ]
    return problems


def test_capture_holds_the_options_the_export_uses() -> None:
    assert {"governor", "force_latency", "boost"} <= OPTIONS["cpu"]["_get_config_options"]
    assert OPTIONS["net"]["_get_config_options_coalesce"] >= {"rx-usecs", "adaptive-rx"}


@pytest.mark.parametrize(
    "name", ["latency-performance", "network-latency", "cpu-partitioning", "realtime", "trading"]
)
def test_every_section_and_option_is_one_tuned_knows(name: str) -> None:
    text = export_tuned(load_profile(name), TOPOLOGY).files["tuned.conf"]
    sections = parse_tuned_conf(text)
    assert unknown_options(sections) == []


def test_a_wrong_option_name_is_caught() -> None:
    assert unknown_options({"vm": {"transparent_hugepages_enabled": "never"}})
    assert unknown_options({"n": {"type": "net", "coalesce": "rx_usecs 0"}})
    assert unknown_options({"numa": {"balancing": "0"}})


def _as_tuned_reads(sections: Sections) -> Sections:
    """Plugin instances ``[net_0] type=net`` under their plugin's name, options that only
    select devices dropped, as test_builtin_profiles' mapping expects."""
    merged: Sections = {}
    for name, options in sections.items():
        plugin = options.get("type", name)
        kept = {k: v for k, v in options.items() if k not in UNIT_OPTIONS}
        merged.setdefault(plugin, {}).update(kept)
    return merged


def _always(key: str) -> Callable[[Topology], list[str]]:
    return lambda _: [key]


@pytest.mark.parametrize("name", TUNED_NAMES)
def test_export_asks_for_exactly_what_quietcore_resolves(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile = load_profile(name)
    sections = _as_tuned_reads(
        parse_tuned_conf(export_tuned(profile, TOPOLOGY).files["tuned.conf"])
    )
    # [sysfs] paths the export writes beyond those TuneD's own profiles use.
    monkeypatch.setitem(tuned_side.SYSFS_KEYS, "/sys/kernel/mm/ksm/run", lambda _: ["vm/ksm_run"])
    for pool in profile.profile.hugepages.pages:
        kib = size_kib(pool.size)
        path = (
            f"/sys/devices/system/node/node{pool.node}/hugepages/hugepages-{kib}kB/nr_hugepages"
            if pool.node is not None
            else f"/sys/kernel/mm/hugepages/hugepages-{kib}kB/nr_hugepages"
        )
        key = pool_key(kib, pool.node)
        monkeypatch.setitem(tuned_side.SYSFS_KEYS, path, _always(key))
    context = TunedContext(TOPOLOGY, sections, {}, frozenset())
    expectations = tuned_expectations(context)
    settings = desired_settings(name, TOPOLOGY)
    assert unmet(expectations, settings) == []
    covered = {expectation.key for expectation in expectations}
    uncovered = sorted(
        key for key, setting in settings.items() if not setting.effect and key not in covered
    )
    assert uncovered == []


def test_cli_writes_a_profile_directory_and_refuses_without_a_host(tmp_path: Path) -> None:
    done = run_cli(
        "export", "--profile", "network-latency", "--format", "tuned", "-o", str(tmp_path)
    )
    assert done.returncode == 0, done.stderr
    assert parse_tuned_conf((tmp_path / "tuned.conf").read_text())["vm"] == {
        "transparent_hugepages": "never"
    }
    refused = run_cli("export", "--profile", "trading", "--format", "performanceprofile")
    assert refused.returncode == 2
    assert "cpu.reserved.per_numa_node" in refused.stderr
    assert "--topology-from" in refused.stderr
