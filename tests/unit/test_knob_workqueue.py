"""The workqueue family on real captures of the 2-CPU Firecracker VM (see knob_hosts): the
default capture has masks ``3`` (CPUs 0-1), the tuned one ``1`` (CPU 0)."""

from __future__ import annotations

from tests.bundles import load_readings
from tests.unit.knob_hosts import (
    CAPTURE_PROFILE,
    context,
    profile,
    synthetic_host,
    this_vm,
    verdicts,
)

from quietcore.knobs.base import cpuset_observation
from quietcore.knobs.workqueue import MASK_FILES, WorkqueueKnob
from quietcore.profile.cpuset import parse_cpumask
from quietcore.readings import Readings

KNOB = WorkqueueKnob()


def test_default_vm_runs_unbound_work_everywhere() -> None:
    settings = KNOB.desired(context(CAPTURE_PROFILE, this_vm()))
    assert verdicts(settings, load_readings("knobs-vm-default"), this_vm()) == {
        "workqueue/cpumask": ("drift", "0-1"),
        "workqueue/writeback_cpumask": ("drift", "0-1"),
    }


def test_tuned_vm_runs_unbound_work_on_the_reserved_cpu() -> None:
    settings = KNOB.desired(context(CAPTURE_PROFILE, this_vm()))
    assert verdicts(settings, load_readings("knobs-vm-tuned"), this_vm()) == {
        "workqueue/cpumask": ("ok", "0"),
        "workqueue/writeback_cpumask": ("ok", "0"),
    }


def test_kernel_without_a_writeback_mask_is_unsupported() -> None:
    # Built explicitly: a kernel whose writeback workqueue has no sysfs cpumask of its own,
    # with the 64-CPU mask grouping the kernel prints.
    readings = Readings({"/sys/devices/virtual/workqueue/cpumask": ("00000000,00000011",)})
    settings = KNOB.desired(context(profile(kernel={"workqueue_mask": "0,4"}), synthetic_host()))
    assert verdicts(settings, readings, synthetic_host()) == {
        "workqueue/cpumask": ("ok", "0,4"),
        "workqueue/writeback_cpumask": ("unsupported", None),
    }


def test_mask_follows_the_reserved_cpus_of_the_host() -> None:
    declared = profile(
        cpu={"reserved": "0,4", "isolated": "rest"}, kernel={"workqueue_mask": "reserved"}
    )
    settings = KNOB.desired(context(declared, synthetic_host(), reserved=frozenset({0, 4})))
    assert {s.key: (s.desired, s.field) for s in settings} == {
        key: ("0,4", "kernel.workqueue_mask") for key in MASK_FILES
    }
    assert KNOB.reads(declared).files == tuple(path for path, _ in MASK_FILES.values())


def test_garbage_in_a_mask_file_is_drift_not_a_crash() -> None:
    seen = cpuset_observation("zz", "absent", parse_cpumask)
    assert (seen.actual, seen.status) == ("zz", "drift")
    assert cpuset_observation(None, "absent", parse_cpumask).status == "unsupported"
