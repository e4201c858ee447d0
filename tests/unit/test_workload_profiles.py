"""The workload profiles (market-data, postgres-host, redis-host, api-gateway): each validates,
says what every setting does and costs, and resolves on the real 4-CPU, 2-node lab (captures
``lab-api-gateway-default`` / ``-applied``, see tests/data/bundles/README.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from tests.bundles import load_readings
from tests.unit.test_builtin_profiles import BUILTIN, TOPOLOGY, _leaf_lines

from quietcore.audit import audit_host
from quietcore.knobs.base import Setting
from quietcore.profile.load import load_profile
from quietcore.profile.resolve import resolve
from quietcore.profile.schema import pages_to_cover
from quietcore.readings import HostRead
from quietcore.topology import Topology, parse_topology

WORKLOADS = ("market-data", "postgres-host", "redis-host", "api-gateway")
LAB_DEFAULT = "lab-api-gateway-default"
LAB_APPLIED = "lab-api-gateway-applied"
# shared_memory_size_in_huge_pages that PostgreSQL 15.18 (Debian 12) reports with default
# settings for these shared_buffers (`postgres -C`, 2 MiB pages; docs/profiles/postgres-host.md).
POSTGRES_15_PAGES = {"128M": 72, "1G": 537, "8G": 4200, "64G": 33502}


def lab_topology() -> Topology:
    return parse_topology(load_readings(LAB_DEFAULT))


def settings_of(name: str, topology: Topology) -> dict[str, Setting]:
    return {setting.key: setting for setting in resolve(load_profile(name), topology)}


def _comment_block(lines: list[str], index: int) -> str:
    """The comment that documents line ``index``: inline, or the nearest comment lines above
    it within its paragraph (one comment may cover the lines of one list item); empty when
    there is none."""
    block = [lines[index].partition(" # ")[2]]
    for line in reversed(lines[:index]):
        text = line.strip()
        if not text or (block[1:] and not text.startswith("#")):
            break
        if text.startswith("#"):
            block.append(text)
    return " ".join(block)


@pytest.mark.parametrize("name", WORKLOADS)
def test_profile_validates_names_itself_and_says_why(name: str) -> None:
    path = BUILTIN / f"{name}.yaml"
    raw = yaml.safe_load(path.read_text())
    assert raw["name"] == name and raw["summary"].strip() and "extends" in raw
    loaded = load_profile(name)
    assert loaded.profile.name == name
    # The header says why this parent (or none) was chosen.
    header = path.read_text().split("\nname:")[0]
    assert "extends" in header


@pytest.mark.parametrize("name", WORKLOADS)
def test_every_setting_states_its_reason_and_cost(name: str) -> None:
    # Stricter than test_builtin_profiles' check (a comment): the comment names the cost.
    text = (BUILTIN / f"{name}.yaml").read_text()
    lines = text.splitlines()
    settings = [
        index
        for index in _leaf_lines(yaml.compose(text) or yaml.ScalarNode("", ""))
        if not lines[index].startswith(("name:", "summary:"))
    ]
    assert settings
    assert [
        f"{name}.yaml:{i + 1}" for i in settings if "Cost" not in _comment_block(lines, i)
    ] == []


@pytest.mark.parametrize("name", WORKLOADS)
def test_resolves_on_the_lab_topology(name: str) -> None:
    settings = settings_of(name, lab_topology())
    assert settings
    # Nothing a database, cache or gateway host is given isolates CPUs or needs a reboot.
    if name != "market-data":
        assert not [key for key in settings if key.startswith(("cmdline/", "isolation/"))]
        assert not [s.key for s in settings.values() if s.reboot_required]


def test_database_cache_and_gateway_hosts_extend_nothing() -> None:
    for name in ("postgres-host", "redis-host", "api-gateway"):
        assert load_profile(name).files == (f"builtin:{name}.yaml",)


def test_market_data_on_the_lab() -> None:
    settings = settings_of("market-data", lab_topology())
    desired = {key: setting.desired for key, setting in settings.items()}
    # network-latency underneath: busy polling and the TSC argument the clock check needs.
    assert desired["sysctl/net.core.busy_poll"] == "50"
    assert desired["cmdline/tsc"] == "tsc=reliable"
    # Coalescing off and steering on the housekeeping CPUs (first core of each node: 0, 2) on
    # every queue of the 4-queue data NIC.
    assert desired["nic/enp0s3/coalesce/rx-usecs"] == "0"
    assert desired["nic/enp0s3/coalesce/adaptive-rx"] == "off"
    for queue in range(4):
        assert desired[f"nic/enp0s3/rx-{queue}/rps_cpus"] == "0,2"
        assert desired[f"nic/enp0s3/tx-{queue}/xps_cpus"] == "0,2"
    assert int(desired["sysctl/net.core.rmem_max"]) >= 32 << 20
    assert int(desired["sysctl/net.ipv4.tcp_rmem"].split()[2]) >= 32 << 20
    assert int(desired["sysctl/net.core.netdev_max_backlog"]) > 1000
    assert int(desired["sysctl/net.core.netdev_budget"]) > 300
    clock = load_profile("market-data").profile.verify.clock
    assert clock is not None
    assert (clock.clocksource, clock.max_offset_us) == ("tsc", 100)


def test_postgres_pages_cover_shared_buffers_and_headroom() -> None:
    [pool] = load_profile("postgres-host").profile.hugepages.pages
    assert (pool.size, pool.cover, pool.count) == ("2M", "128M", None)
    # 128 MiB + 15% in 2 MiB pages, rounded up; at least what PostgreSQL 15 asks for.
    assert pool.pages == 74 >= POSTGRES_15_PAGES["128M"]
    settings = settings_of("postgres-host", lab_topology())
    assert settings["hugepages/2048kB"].desired == "74"
    assert settings["hugepages/2048kB"].field == "hugepages.pages.0.cover"
    # The same headroom holds for every measured size.
    for shared_buffers, needed in POSTGRES_15_PAGES.items():
        assert pages_to_cover(shared_buffers, pool.headroom_pct, "2M") >= needed


def test_a_child_profile_with_larger_shared_buffers_gets_more_pages(tmp_path: Path) -> None:
    child = tmp_path / "pg-8g.yaml"
    child.write_text(
        "name: pg-8g\n"
        "extends: postgres-host\n"
        "hugepages:\n"
        "  pages:\n"
        "    - {size: 2M, cover: 8G, headroom_pct: 5}\n"
    )
    loaded = load_profile(str(child))
    # 8 GiB + 5% = 8601.6 MiB: 4301 pages, on the 2-node, 32 GiB test host of
    # test_builtin_profiles (the 4 GiB lab could not hold them: resolve would refuse).
    settings = {s.key: s for s in resolve(loaded, TOPOLOGY)}
    assert settings["hugepages/2048kB"].desired == "4301"
    assert int(settings["hugepages/2048kB"].desired) >= POSTGRES_15_PAGES["8G"]
    assert settings["vm/thp_enabled"].desired == "never"  # the rest is inherited


def test_redis_host_follows_redis_docs() -> None:
    desired = {k: s.desired for k, s in settings_of("redis-host", lab_topology()).items()}
    assert desired["vm/thp_enabled"] == "never"
    assert desired["sysctl/vm.overcommit_memory"] == "1"
    assert int(desired["sysctl/net.core.somaxconn"]) >= 511  # Redis's tcp-backlog
    assert int(desired["sysctl/net.ipv4.tcp_max_syn_backlog"]) >= 511


def test_api_gateway_on_the_lab_before_and_after_apply() -> None:
    # The captures: the lab as booted, then after `quietcore apply --profile api-gateway`.
    loaded = load_profile("api-gateway")
    before = audit_host(loaded, HostRead("lab", load_readings(LAB_DEFAULT), None, 0.0))
    after = audit_host(loaded, HostRead("lab", load_readings(LAB_APPLIED), None, 0.0))
    seen = {r.setting.key: (r.status, r.actual) for r in before.results}
    assert seen["sysctl/fs.nr_open"] == ("ok", "1048576")  # stated for DefaultLimitNOFILE
    assert seen["sysctl/fs.file-max"] == ("drift", "9223372036854775807")  # systemd's bump
    assert seen["systemd/manager_limit_nofile"] == ("drift", "1024:524288")
    assert seen["systemd/DefaultLimitNOFILE"] == ("drift", None)
    assert [r.setting.key for r in after.results if r.status != "ok"] == []
    desired = {r.setting.key: r.setting.desired for r in after.results}
    assert int(desired["systemd/manager_limit_nofile"]) <= int(desired["sysctl/fs.nr_open"])
    assert int(desired["sysctl/net.core.somaxconn"]) >= 10_000
    low, high = map(int, desired["sysctl/net.ipv4.ip_local_port_range"].split())
    assert high - low > 50_000 and low % 2 != high % 2
