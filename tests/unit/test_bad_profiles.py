"""Every schema-level bad profile is refused with the right file, line and field.

The fixtures are ``tests/data/bad_profiles/*.yaml`` except ``host_*`` (those need a host's
topology to be refused). Each has one defect, described in its first comment line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from quietcore.profile.errors import ProfileError
from quietcore.profile.load import load_profile

BAD = Path(__file__).resolve().parents[1] / "data" / "bad_profiles"


@dataclass(frozen=True)
class Expected:
    line: int
    field: str  # a regular expression the whole dotted field must match
    message: str = ""  # a regular expression the message must contain
    file: str | None = None  # where the problem is, when not in the fixture itself


EXPECTED: dict[str, Expected] = {
    "yaml_syntax_error": Expected(6, "", r"YAML syntax error.*line 5"),
    "duplicate_key": Expected(6, r"memory\.swappiness", r"line 4.*line 6"),
    "unknown_top_level_key": Expected(3, "networking", r"did you mean 'network'"),
    "unknown_nested_key": Expected(6, r"irq\.affinty", r"did you mean 'affinity'"),
    "wrong_type": Expected(4, r"numa\.balancing", r"boolean.*'sometimes'"),
    "cpu_range_reversed": Expected(5, r"cpu\.isolated", "reversed CPU range '7-2'"),
    "cpu_list_garbage": Expected(4, r"cpu\.reserved", "not a CPU list"),
    "isolated_is_reserved": Expected(5, r"cpu\.isolated", "cannot be 'reserved'"),
    "isolation_without_isolated": Expected(3, "cpu", "names no CPUs"),
    "hugepage_size_1GB": Expected(5, r"hugepages\.pages\.0\.size", "'1GB'"),
    "hugepage_size_3G": Expected(4, r"hugepages\.default_size", "3G is not a hugepage size"),
    "hugepage_count_negative": Expected(8, r"hugepages\.pages\.1\.count", r"got -2"),
    "duration_without_unit": Expected(6, r"verify\.jitter\.duration", "needs a unit"),
    "sysctl_key_metachar": Expected(6, r"kernel\.sysctl", r"busy_poll;reboot"),
    "sysctl_value_metachar": Expected(5, r"kernel\.sysctl\.kernel\.core_pattern", r"\$\(reboot\)"),
    "interface_match_metachar": Expected(7, r"network\.interfaces\.1\.match", "eth0 && rm"),
    "cmdline_arg_semicolon": Expected(6, r"kernel\.cmdline\.1", "quiet;reboot"),
    "cmdline_arg_space": Expected(4, r"kernel\.cmdline\.0", "'a b'"),
    "cmdline_isolcpus": Expected(6, r"kernel\.cmdline\.1", "isolcpus is derived"),
    "extends_cycle_a": Expected(
        5,
        "extends",
        "extends_cycle_a -> extends_cycle_b -> extends_cycle_a",
        file="extends_cycle_b.yaml",
    ),
    "extends_cycle_b": Expected(
        3,
        "extends",
        "extends_cycle_b -> extends_cycle_a -> extends_cycle_b",
        file="extends_cycle_a.yaml",
    ),
    "extends_self": Expected(3, "extends", "extends_self -> extends_self"),
    "extends_unknown": Expected(
        3, "extends", r"no profile named 'network-latencyy'.*Built-in profiles: .*network-latency"
    ),
    "tcp_rmem_not_ascending": Expected(5, r"network\.tcp\.rmem", "ascending"),
    "swappiness_300": Expected(4, r"memory\.swappiness", r"200 \(got 300\)"),
    "governor_typo": Expected(4, r"cpu\.governor", "'performence'"),
    "kubelet_config_path_relative": Expected(
        6, r"containers\.kubelet\.config_path", "absolute path"
    ),
    "missing_name": Expected(2, "name", "no `name:`"),
    "yaml_alias": Expected(6, r"kernel\.workqueue_mask", "aliases"),
    "yaml_merge_key": Expected(5, "network", "merge keys"),
    "non_text_key": Expected(6, r"containers\.kubelet\.system_reserved", "'on' is not text"),
    "top_level_list": Expected(2, "", "top level must be a mapping"),
    "channels_zero": Expected(
        6, r"network\.interfaces\.0\.channels", r"greater than or equal to 1 \(got 0\)"
    ),
}


def _schema_level_fixtures() -> list[str]:
    return sorted(p.stem for p in BAD.glob("*.yaml") if not p.name.startswith("host_"))


def test_every_fixture_has_an_expectation() -> None:
    assert _schema_level_fixtures() == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_refused_at_file_line_and_field(name: str) -> None:
    fixture = BAD / f"{name}.yaml"
    expected = EXPECTED[name]
    with pytest.raises(ProfileError) as refused:
        load_profile(str(fixture))
    [problem] = refused.value.problems
    assert Path(problem.file).name == (expected.file or fixture.name)
    assert problem.line == expected.line
    assert re.fullmatch(expected.field, problem.field), problem.field
    assert re.search(expected.message, problem.message), problem.message


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_says_what_is_wrong(name: str) -> None:
    assert (BAD / f"{name}.yaml").read_text().startswith("# ")
