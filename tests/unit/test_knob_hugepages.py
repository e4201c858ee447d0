"""The hugepages family on real captures of the 2-CPU Firecracker VM (see knob_hosts): the
default capture has no pages, the tuned one 4 x 2M on node 0."""

from __future__ import annotations

import pytest
from tests.bundles import load_readings
from tests.unit.knob_hosts import context, profile, results, synthetic_host, this_vm, verdicts

from quietcore.knobs.base import Setting
from quietcore.knobs.bypass_resolve import format_size_kib
from quietcore.knobs.hugepages import (
    DEFAULT_SIZE_KEY,
    HOST_POOLS,
    NODE_POOLS,
    HugepagesKnob,
    default_size_kib,
)
from quietcore.profile.errors import ResolveError
from quietcore.readings import Readings

KNOB = HugepagesKnob()
ON_THIS_VM = profile(
    hugepages={
        "default_size": "2M",
        "pages": [
            {"size": "2M", "count": 4, "node": 0},
            {"size": "1G", "count": 0},
            {"size": "32M", "count": 1},
        ],
    }
)
# Node 1 does not exist on the VM, so no profile resolves to this setting there; the capture
# read its file (see knob_hosts.CAPTURE_PROFILE) and found nothing.
NODE1 = Setting("hugepages/node1/2048kB", "hugepages", "2", "hugepages.pages.1.count")


def _verdicts(capture: str) -> dict[str, tuple[str, str | None]]:
    settings = [*KNOB.desired(context(ON_THIS_VM, this_vm())), NODE1]
    return dict(verdicts(settings, load_readings(capture), this_vm()))


def test_sizes_print_in_their_largest_exact_unit() -> None:
    assert [format_size_kib(kib) for kib in (64, 2048, 32768, 1048576, 3072)] == [
        "64K",
        "2M",
        "32M",
        "1G",
        "3M",
    ]
    assert default_size_kib(["MemTotal: 1 kB", "Hugepagesize:    1048576 kB"]) == 1048576
    assert default_size_kib(["MemTotal: 1 kB"]) is None


def test_default_vm_has_no_pages() -> None:
    assert _verdicts("knobs-vm-default") == {
        "hugepages/node0/2048kB": ("drift", "0"),
        "hugepages/1048576kB": ("ok", "0"),
        "hugepages/32768kB": ("unsupported", None),
        "hugepages/default_size": ("ok", "2M"),
        "hugepages/node1/2048kB": ("missing", None),
    }


def test_tuned_vm_has_four_2m_pages_on_node0() -> None:
    verdicts = _verdicts("knobs-vm-tuned")
    assert verdicts["hugepages/node0/2048kB"] == ("ok", "4")
    assert {key for key, (status, _) in verdicts.items() if status == "ok"} == {
        "hugepages/node0/2048kB",
        "hugepages/1048576kB",
        "hugepages/default_size",
    }


def test_reasons_name_what_the_host_lacks() -> None:
    settings = [*KNOB.desired(context(ON_THIS_VM, this_vm())), NODE1]
    seen = results(settings, load_readings("knobs-vm-default"), this_vm())
    assert seen["hugepages/32768kB"].reason == (
        "this host offers no 32M hugepages (offered: 2M, 1G)"
    )
    assert seen["hugepages/node1/2048kB"].reason == "NUMA node 1 has no 2M hugepage pool"
    assert seen[DEFAULT_SIZE_KEY].setting.reboot_required


def test_kernel_without_hugetlbfs_is_unsupported() -> None:
    # Such a kernel has no hugepage directories and no Hugepagesize line (built explicitly).
    readings = Readings({"/proc/meminfo": ("MemTotal:        4024524 kB",)})
    assert set(
        verdicts(KNOB.desired(context(ON_THIS_VM, this_vm())), readings, this_vm()).values()
    ) == {("unsupported", None)}


def test_pools_per_node_on_a_two_node_host() -> None:
    declared = profile(
        hugepages={
            "default_size": "1024M",
            "pages": [
                {"size": "1G", "count": 8, "node": 0},
                {"size": "1G", "count": 4, "node": 1},
                {"size": "2M", "count": 512},
            ],
        }
    )
    settings = KNOB.desired(context(declared, synthetic_host()))
    assert {s.key: (s.desired, s.field, s.reboot_required) for s in settings} == {
        "hugepages/node0/1048576kB": ("8", "hugepages.pages.0.count", False),
        "hugepages/node1/1048576kB": ("4", "hugepages.pages.1.count", False),
        "hugepages/2048kB": ("512", "hugepages.pages.2.count", False),
        "hugepages/default_size": ("1G", "hugepages.default_size", True),
    }
    assert KNOB.reads(declared).files == (HOST_POOLS, NODE_POOLS, "/proc/meminfo")


def test_one_size_both_per_node_and_host_wide_is_refused() -> None:
    # Writing the host-wide count would redistribute the per-node pools.
    pages = [{"size": "2M", "count": 1}, {"size": "2M", "count": 1, "node": 0}]
    with pytest.raises(ResolveError, match="both for node 0 and for the whole host") as refused:
        list(KNOB.desired(context(profile(hugepages={"pages": pages}), synthetic_host())))
    assert refused.value.field == "hugepages.pages.1"
