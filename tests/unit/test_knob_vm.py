"""The vm family (THP, KSM) on real captures of the 2-CPU Firecracker VM (see knob_hosts)."""

from __future__ import annotations

from tests.bundles import load_readings
from tests.unit.knob_hosts import CAPTURE_PROFILE, context, profile, results, this_vm, verdicts

from quietcore.knobs.base import Status
from quietcore.knobs.vm import VmKnob, selected_mode
from quietcore.readings import Readings

KNOB = VmKnob()


def _verdicts(readings: Readings) -> dict[str, tuple[Status, str | None]]:
    return verdicts(KNOB.desired(context(CAPTURE_PROFILE, this_vm())), readings, this_vm())


def test_the_bracketed_mode_is_the_active_one() -> None:
    assert selected_mode("always defer defer+madvise [madvise] never") == "madvise"
    assert selected_mode("[always] madvise never\n") == "always"


def test_default_vm_has_thp_on_madvise_and_ksm_stopped() -> None:
    assert _verdicts(load_readings("knobs-vm-default")) == {
        "vm/thp_enabled": ("drift", "madvise"),
        "vm/thp_defrag": ("drift", "madvise"),
        "vm/ksm_run": ("ok", "0"),
    }


def test_tuned_vm_has_thp_never_and_ksm_unmerged() -> None:
    # ksm/run = 2 (stopped after unmerging every page) satisfies "ksm: false".
    assert _verdicts(load_readings("knobs-vm-tuned")) == {
        "vm/thp_enabled": ("ok", "never"),
        "vm/thp_defrag": ("ok", "never"),
        "vm/ksm_run": ("ok", "2"),
    }


def test_ksm_wanted_on_is_not_satisfied_by_unmerged() -> None:
    declared = profile(memory={"ksm": True})
    settings = list(KNOB.desired(context(declared, this_vm())))
    seen = results(settings, load_readings("knobs-vm-tuned"), this_vm())
    assert (seen["vm/ksm_run"].setting.desired, seen["vm/ksm_run"].status) == ("1", "drift")


def test_kernel_without_thp_or_ksm_is_unsupported() -> None:
    # No capture shows such a kernel: an empty Readings is what its bundle would bring back.
    settings = KNOB.desired(context(CAPTURE_PROFILE, this_vm()))
    reasons = {
        key: (r.status, r.reason) for key, r in results(settings, Readings(), this_vm()).items()
    }
    assert reasons == {
        "vm/thp_enabled": ("unsupported", "kernel built without transparent hugepages"),
        "vm/thp_defrag": ("unsupported", "kernel built without transparent hugepages"),
        "vm/ksm_run": ("unsupported", "kernel built without KSM"),
    }


def test_reads_only_what_is_declared() -> None:
    assert KNOB.reads(profile(memory={"ksm": False})).files == ("/sys/kernel/mm/ksm/run",)
    assert list(KNOB.desired(context(profile(), this_vm()))) == []
