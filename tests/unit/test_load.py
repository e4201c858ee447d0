"""The profile loader: extends chains, merge rules, sources, lookup order, digest, problems.

Inputs are the hand-written profiles in ``tests/data/profiles`` (see its README) and, where a
test needs a variation on disk (a changed value, a longer cycle), small files written to
``tmp_path`` by the test itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quietcore.profile.errors import ProfileError
from quietcore.profile.load import BUILTIN_DIR, Key, list_builtin, load_profile, merge
from quietcore.profile.loaded import LoadedProfile

PROFILES = Path(__file__).resolve().parents[1] / "data" / "profiles"
CHAIN = PROFILES / "chain"
NEAR = PROFILES / "lookup" / "near"
FAR = PROFILES / "lookup" / "far"


def line_of(path: Path, text: str) -> int:
    """The 1-based line of ``path`` holding ``text`` (which must occur exactly once)."""
    found = [number for number, line in enumerate(path.read_text().splitlines(), 1) if text in line]
    assert len(found) == 1, (path, text, found)
    return found[0]


def source(loaded: LoadedProfile, field: str) -> tuple[str, int]:
    file, line = loaded.sources[field]
    return Path(file).name, line


# --- extends over three levels ----------------------------------------------------------------


@pytest.fixture(scope="module")
def leaf() -> LoadedProfile:
    return load_profile(str(CHAIN / "leaf.yaml"))


def test_chain_files_requested_first(leaf: LoadedProfile) -> None:
    assert [Path(file).name for file in leaf.files] == ["leaf.yaml", "middle.yaml", "base.yaml"]


def test_name_is_the_childs_and_extends_the_direct_parents(leaf: LoadedProfile) -> None:
    assert leaf.profile.name == "leaf"
    assert leaf.profile.extends == "middle"


def test_maps_merge_across_levels(leaf: LoadedProfile) -> None:
    cpu = leaf.profile.cpu
    assert cpu.reserved == "0"  # base
    assert cpu.isolated == "2-3"  # leaf over base
    assert cpu.isolation == ["nohz_full", "rcu_nocbs"]  # base
    assert cpu.max_cstate == 1  # middle
    assert leaf.profile.memory.thp == "never"  # base
    assert leaf.profile.memory.swappiness == 1  # middle over base
    assert leaf.profile.kernel.sysctl == {"vm.stat_interval": 10, "net.core.busy_read": 50}
    assert leaf.profile.network.busy_poll_us == 50  # base, beside leaf's interfaces
    assert leaf.profile.summary == "Root of the test chain."


def test_null_deletes_so_the_default_applies(leaf: LoadedProfile) -> None:
    assert leaf.profile.cpu.governor is None
    assert "kernel.timer_migration" not in leaf.profile.kernel.sysctl


def test_lists_replace(leaf: LoadedProfile) -> None:
    assert leaf.profile.kernel.cmdline == ["skew_tick=1"]
    [interface] = leaf.profile.network.interfaces
    assert interface.match == "eth*"
    assert interface.rps == "reserved"
    assert interface.coalesce is None  # base's item is gone, not merged into leaf's


def test_sources_of_inherited_and_overridden_fields(leaf: LoadedProfile) -> None:
    base, middle, me = CHAIN / "base.yaml", CHAIN / "middle.yaml", CHAIN / "leaf.yaml"
    assert source(leaf, "cpu.reserved") == ("base.yaml", line_of(base, "reserved:"))
    assert source(leaf, "cpu.isolated") == ("leaf.yaml", line_of(me, "isolated:"))
    assert source(leaf, "cpu.max_cstate") == ("middle.yaml", line_of(middle, "max_cstate"))
    assert source(leaf, "cpu") == ("leaf.yaml", line_of(me, "cpu:"))
    assert source(leaf, "kernel.sysctl.vm.stat_interval") == (
        "base.yaml",
        line_of(base, "vm.stat_interval"),
    )
    assert source(leaf, "kernel.sysctl.net.core.busy_read") == (
        "middle.yaml",
        line_of(middle, "net.core.busy_read"),
    )
    assert source(leaf, "kernel.cmdline.0") == ("middle.yaml", line_of(middle, "cmdline:"))
    assert source(leaf, "network.interfaces.0.rps") == ("leaf.yaml", line_of(me, "rps:"))
    assert source(leaf, "extends") == ("leaf.yaml", line_of(me, "extends:"))
    assert source(leaf, "name") == ("leaf.yaml", line_of(me, "name:"))


def test_deleted_and_replaced_fields_lose_their_sources(leaf: LoadedProfile) -> None:
    for gone in (
        "cpu.governor",
        "kernel.sysctl.kernel.timer_migration",
        "kernel.cmdline.1",
        "network.interfaces.0.coalesce",
        "network.interfaces.0.coalesce.rx_usecs",
    ):
        assert gone not in leaf.sources


def test_locate_falls_back_to_the_nearest_declared_parent(leaf: LoadedProfile) -> None:
    file, line = leaf.locate("network.interfaces.0.rps.extra")
    assert (Path(file).name, line) == ("leaf.yaml", line_of(CHAIN / "leaf.yaml", "rps:"))


# --- cycles -----------------------------------------------------------------------------------


def test_cycle_over_three_files_names_the_chain(tmp_path: Path) -> None:
    for name, parent in (("one", "two"), ("two", "three"), ("three", "one")):
        (tmp_path / f"{name}.yaml").write_text(f"name: {name}\nextends: {parent}\n")
    with pytest.raises(ProfileError) as refused:
        load_profile(str(tmp_path / "one.yaml"))
    [problem] = refused.value.problems
    assert problem.message == "extends cycle: one -> two -> three -> one"
    assert (Path(problem.file).name, problem.line, problem.field) == ("three.yaml", 2, "extends")


# --- lookup order -----------------------------------------------------------------------------


def test_a_name_is_looked_up_in_search_dirs_before_the_builtins() -> None:
    assert load_profile("network-latency", [FAR]).profile.name == "far-network-latency"
    assert load_profile("network-latency").profile.name == "network-latency"
    assert load_profile("network-latency").files[0] == "builtin:network-latency.yaml"


def test_extends_looks_next_to_the_file_first() -> None:
    loaded = load_profile(str(NEAR / "child.yaml"), [FAR])
    assert loaded.profile.extends == "near-network-latency"
    assert loaded.profile.memory.thp == "madvise"


def test_extends_then_looks_in_search_dirs() -> None:
    loaded = load_profile(str(NEAR / "child-of-far.yaml"), [FAR])
    assert loaded.profile.extends == "only-far"
    assert loaded.profile.memory.swappiness == 5


def test_extends_finally_looks_in_the_builtins(tmp_path: Path) -> None:
    child = tmp_path / "mine.yaml"
    child.write_text("name: mine\nextends: network-latency\n")
    loaded = load_profile(str(child))
    assert loaded.files[1].startswith("builtin:")
    assert loaded.profile.memory.thp == "never"


def test_unknown_name_lists_the_builtins() -> None:
    with pytest.raises(ProfileError) as refused:
        load_profile("no-such-profile")
    [problem] = refused.value.problems
    for builtin in list_builtin():
        assert builtin.name in problem.message


def test_missing_file_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    with pytest.raises(ProfileError) as refused:
        load_profile(str(tmp_path / "absent.yaml"))
    assert "no profile file" in refused.value.problems[0].message


# --- digest -----------------------------------------------------------------------------------


def test_digest_is_stable_and_ignores_layout(tmp_path: Path) -> None:
    block = tmp_path / "block.yaml"
    block.write_text("name: d\nmemory:\n  thp: never\n  swappiness: 10\n")
    flow = tmp_path / "flow.yaml"
    flow.write_text("# same content, other layout\nmemory: {swappiness: 10, thp: never}\nname: d\n")
    first = load_profile(str(block)).digest
    assert load_profile(str(block)).digest == first
    assert load_profile(str(flow)).digest == first
    assert re.fullmatch("[0-9a-f]{64}", first)


def test_digest_changes_with_a_value(tmp_path: Path) -> None:
    profile = tmp_path / "p.yaml"
    profile.write_text("name: d\nmemory: {swappiness: 10}\n")
    before = load_profile(str(profile)).digest
    profile.write_text("name: d\nmemory: {swappiness: 11}\n")
    assert load_profile(str(profile)).digest != before


# --- problems ---------------------------------------------------------------------------------


def test_every_problem_is_reported_sorted_by_file_and_line(tmp_path: Path) -> None:
    # pydantic reports in schema order (cpu before memory); the user reads files top down.
    parent = tmp_path / "parent.yaml"
    parent.write_text("name: parent\ncpu:\n  governor: fast\n")
    child = tmp_path / "child.yaml"
    child.write_text("name: child\nextends: parent\nmemory:\n  swappiness: 300\ncpu:\n  bogus: 1\n")
    with pytest.raises(ProfileError) as refused:
        load_profile(str(child))
    where = [(Path(p.file).name, p.line, p.field) for p in refused.value.problems]
    assert where == [
        ("child.yaml", 4, "memory.swappiness"),
        ("child.yaml", 6, "cpu.bogus"),
        ("parent.yaml", 3, "cpu.governor"),
    ]


def test_union_errors_name_the_branch_that_was_meant(tmp_path: Path) -> None:
    profile = tmp_path / "p.yaml"
    profile.write_text("name: p\ncpu:\n  reserved: {per_numa_node: 0}\n")
    with pytest.raises(ProfileError) as refused:
        load_profile(str(profile))
    [problem] = refused.value.problems
    assert problem.field == "cpu.reserved.per_numa_node"
    assert problem.message == "Input should be greater than or equal to 1 (got 0)"


def test_every_duplicate_key_is_reported(tmp_path: Path) -> None:
    profile = tmp_path / "p.yaml"
    profile.write_text("name: p\nmemory:\n  thp: never\n  thp: always\nname: q\n")
    with pytest.raises(ProfileError) as refused:
        load_profile(str(profile))
    assert [(p.line, p.field) for p in refused.value.problems] == [(4, "memory.thp"), (5, "name")]


def test_numeric_mapping_keys_are_read_as_text(tmp_path: Path) -> None:
    profile = tmp_path / "p.yaml"
    profile.write_text("name: p\nverify:\n  jitter:\n    accept:\n      events_over_us: {10: 5}\n")
    jitter = load_profile(str(profile)).profile.verify.jitter
    assert jitter is not None
    assert jitter.accept.events_over_us == {10: 5}


def test_a_channel_count_stays_a_count(tmp_path: Path) -> None:
    profile = tmp_path / "p.yaml"
    profile.write_text("name: p\nnetwork:\n  interfaces: [{match: eth0, channels: 2}]\n")
    assert load_profile(str(profile)).profile.network.interfaces[0].channels == 2


# --- list_builtin -----------------------------------------------------------------------------


def test_list_builtin_reads_name_summary_and_extends() -> None:
    builtins = {builtin.name: builtin for builtin in list_builtin()}
    assert sorted(builtins) == sorted(path.stem for path in BUILTIN_DIR.glob("*.yaml"))
    for name, builtin in builtins.items():
        loaded = load_profile(name)
        assert builtin.summary == loaded.profile.summary
        assert builtin.extends == loaded.profile.extends


# --- merge properties -------------------------------------------------------------------------

KEYS = st.sampled_from(["a", "b", "c", "d.e"])
LEAVES = st.none() | st.integers(-3, 3) | st.lists(st.integers(0, 3), max_size=3)
TREES = st.recursive(
    LEAVES, lambda inner: st.dictionaries(KEYS, inner, max_size=4), max_leaves=12
).filter(lambda tree: isinstance(tree, dict))


def paths(tree: Any, at: Key = ()) -> Iterator[Key]:
    """Every key path in ``tree``: mapping keys and list indices, as the loader records them."""
    items: Mapping[Any, Any] = (
        tree if isinstance(tree, dict) else dict(enumerate(tree)) if isinstance(tree, list) else {}
    )
    for step, value in items.items():
        yield (*at, step)
        yield from paths(value, (*at, step))


def declared(tree: Any) -> set[Key]:
    """Paths a file declares with a value (a null declares a deletion, not a value)."""
    return {path for path in paths(tree) if _value_at(tree, path) is not None}


def _value_at(tree: Any, path: Key) -> Any:
    for step in path:
        tree = tree[step]
    return tree


def has_null_in_a_mapping(tree: Any) -> bool:
    return isinstance(tree, dict) and any(
        value is None or has_null_in_a_mapping(value) for value in tree.values()
    )


def merged_with_sources(
    parent: dict[str, Any], child: dict[str, Any]
) -> tuple[dict[str, Any], dict[Key, tuple[str, int]]]:
    positions: dict[Key, tuple[str, int]] = {}
    base = merge({}, parent, positions, {path: ("parent", 1) for path in paths(parent)})
    child_positions = {path: ("child", 1) for path in paths(child)}
    return merge(base, child, positions, child_positions), positions


@given(TREES, TREES)
def test_merge_sources_cover_exactly_the_merged_data(
    parent: dict[str, Any], child: dict[str, Any]
) -> None:
    merged, positions = merged_with_sources(parent, child)
    assert set(positions) == set(paths(merged))
    child_declares = declared(child)
    for path, (file, _) in positions.items():
        assert (file == "child") == (path in child_declares), path


@given(TREES, TREES)
def test_merge_leaves_no_null_in_mappings(parent: dict[str, Any], child: dict[str, Any]) -> None:
    merged, _ = merged_with_sources(parent, child)
    assert not has_null_in_a_mapping(merged)


@given(TREES, TREES)
def test_the_child_wins_for_every_non_mapping_it_declares(
    parent: dict[str, Any], child: dict[str, Any]
) -> None:
    merged, _ = merged_with_sources(parent, child)
    for path in declared(child):
        value = _value_at(child, path)
        if not isinstance(value, dict) and all(isinstance(step, str) for step in path):
            assert _value_at(merged, path) == value
    for name, value in child.items():
        if value is None:
            assert name not in merged


@given(TREES)
def test_merging_an_empty_child_changes_nothing(parent: dict[str, Any]) -> None:
    once, _ = merged_with_sources(parent, {})
    twice, _ = merged_with_sources(once, {})
    assert once == twice
    assert merged_with_sources({}, once)[0] == once
