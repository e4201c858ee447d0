"""The pure parts of benchmarks/isolation.py: reading the probe's JSON, medians, the table and
the goals, TuneD's log, the state snapshot's comparison, and the file restore (on a real
temporary directory)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from benchmarks import isolation_host as host
from benchmarks import isolation_stats as stats
from benchmarks import isolation_tuned as tuned
from benchmarks.isolation import duration_seconds, parse_args, rounds

DATA = Path(__file__).parent.parent / "data" / "isolation"


def _capture() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((DATA / "jitter-c-local-cpu1.json").read_text())
    return document


def _sample(state: str, events: float, p99: float, interrupted: float) -> stats.Sample:
    return stats.Sample(
        state=state, round=1, duration_s=10.0, threshold_us=10.0, events=0,
        events_over_100us_per_10s=events, p99_us=p99, max_us=p99, interrupted_pct=interrupted,
        steal_ms=None, involuntary_switches=None, interrupts=0, backend="c", placement="",
    )  # fmt: skip


def test_parse_probe_reads_the_captured_run() -> None:
    document = _capture()
    [cpu] = document["hosts"][0]["cpus"]
    sample = stats.parse_probe(document, 1, "idle", 3, "cpuset /, CPUs 1")
    assert sample.state == "idle" and sample.round == 3 and sample.backend == "c"
    assert sample.events == cpu["events"]["count"]
    assert sample.events_over_100us_per_10s == pytest.approx(
        cpu["events"]["over_100us"] * 10 / cpu["duration_s"]
    )
    assert sample.p99_us == cpu["events"]["p99_us"]
    assert sample.interrupted_pct == cpu["events"]["interrupted_pct"]
    assert sample.interrupts == sum(cpu["context"]["interrupts"].values())
    assert sample.placement == "cpuset /, CPUs 1"


def test_parse_probe_refuses_what_it_cannot_use() -> None:
    document = _capture()
    with pytest.raises(stats.ProbeOutputError, match="no result for CPU 2"):
        stats.parse_probe(document, 2, "idle", 1, "")
    with pytest.raises(stats.ProbeOutputError, match=r"not a quietcore\.jitter/v1"):
        stats.parse_probe({**document, "schema": "other"}, 1, "idle", 1, "")
    failed = {**document, "hosts": [{"status": "failed", "error": "probe exited 2"}]}
    with pytest.raises(stats.ProbeOutputError, match="probe exited 2"):
        stats.parse_probe(failed, 1, "idle", 1, "")


def test_parse_probe_without_events_has_p99_zero() -> None:
    document = _capture()
    [cpu] = document["hosts"][0]["cpus"]
    cpu["events"] |= {"count": 0, "over_100us": 0, "p99_us": None, "max_us": None}
    assert stats.parse_probe(document, 1, "idle", 1, "").p99_us == 0.0


def test_medians_per_state() -> None:
    samples = [
        _sample("idle", 1, 20, 0.1),
        _sample("idle", 3, 40, 0.3),
        _sample("idle", 2, 30, 0.2),
        _sample("untuned", 500, 4000, 50.0),
    ]
    rows = stats.medians(samples)
    assert rows["idle"] == {
        "events_over_100us_per_10s": 2,
        "p99_us": 30,
        "interrupted_pct": 0.2,
        "runs": 3,
    }
    assert rows["untuned"]["runs"] == 1
    assert stats.spread(samples, "idle", "p99_us") == (20, 40)


def test_ratio_of_zeros() -> None:
    assert stats.ratio(3, 2) == 1.5
    assert stats.ratio(0, 0) == 1.0
    assert stats.ratio(1, 0) is None


def test_table_and_goals() -> None:
    rows = stats.medians(
        [
            _sample("idle", 10, 20, 1.0),
            _sample("untuned", 400, 4000, 50.0),
            _sample("quietcore", 11, 25, 1.1),
            _sample("tuned", 12, 22, 1.5),
        ]
    )
    text = stats.table(rows)
    lines = text.splitlines()
    assert lines[2].startswith("| idle baseline") and "| 1.00x |" in lines[2]
    assert lines[3].startswith("| untuned + load") and "| 40.00x |" in lines[3]
    assert lines[4].startswith("| quietcore") and "| 1.10x |" in lines[4]
    assert lines[5].startswith("| TuneD")
    checks = {(check.metric, check.claim): check.met for check in stats.goals(rows)}
    assert checks[("events >100 µs per 10 s", "quietcore <= 1.2x idle")]
    assert not checks[("p99 µs", "quietcore <= 1.2x idle")]  # 25 > 24
    assert not checks[("p99 µs", "quietcore <= TuneD")]  # 25 > 22
    assert checks[("interrupted %", "quietcore <= TuneD")]
    summary = stats.goals_table(stats.goals(rows), rows)
    assert "| p99 µs | quietcore <= TuneD | 25.00 | 22.00 | **no** |" in summary
    assert "quietcore / TuneD: events >100 µs per 10 s 0.92x" in summary


def test_table_without_idle_or_with_a_quiet_idle() -> None:
    assert "n/a" in stats.table(stats.medians([_sample("untuned", 1, 2, 3)]))
    rows = stats.medians([_sample("idle", 0, 0, 0), _sample("untuned", 5, 0, 1)])
    untuned = stats.table(rows).splitlines()[3]
    assert "| 5.00 | ∞ | 0.00 | 1.00x |" in untuned
    assert stats.goals(rows) == []  # quietcore not measured: no goal to check


def test_rounds_rotate_the_order() -> None:
    order = list(rounds(["a", "b", "c"], 4))
    assert [state for _, state in order] == list("abcbcacababc")
    assert [number for number, _ in order][:4] == [1, 1, 1, 2]


def test_options() -> None:
    assert duration_seconds("10s") == 10 and duration_seconds("2m") == 120
    assert duration_seconds("3") == 3
    with pytest.raises(Exception, match="expected seconds"):
        duration_seconds("0s")
    args = parse_args(["--states", "idle,tuned", "--load", "cpu", "--duration", "3s"])
    assert args.states == ["idle", "tuned"] and args.duration == 3
    assert args.load_args == "--cpu {cpus} --cpu-method matrixprod"
    with pytest.raises(SystemExit):
        parse_args(["--states", "idle,fast"])


def test_tuned_findings_from_its_log() -> None:
    """A real TuneD 2.20 log of cpu-partitioning on the Firecracker VM (see the README)."""
    found = tuned.findings((DATA / "tuned-2.20-cpu-partitioning.log").read_text())
    assert (
        "ERROR plugin_scheduler: Failed to set SMP affinity of IRQ 36 to '00000001': "
        "[Errno 1] Operation not permitted" in found
    )
    assert any(line.startswith("WARNING plugin_irqbalance: irqbalance sysconfig") for line in found)
    assert found[-1].startswith("soft rollback")
    assert len(found) == len(set(found))
    assert tuned.APPLIED in (DATA / "tuned-2.20-cpu-partitioning.log").read_text()


def _snapshot(values: dict[str, str], tasks: dict[str, host.TaskState]) -> host.Snapshot:
    return host.Snapshot(values, tasks, {})


def test_diff_values_tasks_and_volatile() -> None:
    before = _snapshot(
        {"/proc/sys/vm/swappiness": "60", "/proc/sys/fs/x": "1"},
        {
            "7@100": host.TaskState("kworker/u8:1-events", "0-1", "/"),
            "8@100": host.TaskState("gone", "0-1", "/"),
        },
    )
    after = _snapshot(
        {
            "/proc/sys/vm/swappiness": "10",
            "/proc/sys/fs/x": "2",
            "/proc/irq/44/smp_affinity_list": "0",
            "cgroup /sys/fs/cgroup/cpuset/quietcore-isolated": "present",
        },
        {
            "7@100": host.TaskState("kworker/u8:1-other", "0", "/quietcore-housekeeping"),
            "9@200": host.TaskState("new", "0", "/"),
        },
    )
    found = [str(item) for item in host.diff(before, after, {"/proc/sys/fs/x"})]
    # A new IRQ (or a network interface that went away) is not a setting; a new cgroup is.
    assert found == [
        "value /proc/sys/vm/swappiness: '60' -> '10'",
        "value cgroup /sys/fs/cgroup/cpuset/quietcore-isolated: None -> 'present'",
        "task 7@100 kworker/u8:1-events: 'cpus 0-1 cpuset /' -> "
        "'cpus 0 cpuset /quietcore-housekeeping'",
    ]
    # A kworker renaming itself is not a change.
    renamed = _snapshot({}, {"7@100": host.TaskState("kworker/u8:1-other", "0-1", "/")})
    assert host.diff(_snapshot({}, dict(before.tasks)), renamed) == []
    assert host.volatile(before, after) == {
        "/proc/sys/vm/swappiness", "/proc/sys/fs/x", "/proc/irq/44/smp_affinity_list",
        "cgroup /sys/fs/cgroup/cpuset/quietcore-isolated", "7@100",
    }  # fmt: skip


def test_value_to_write() -> None:
    thp = "/sys/kernel/mm/transparent_hugepage/enabled"
    assert host.value_to_write(thp, "always [madvise] never") == "madvise"
    assert host.value_to_write("/proc/irq/36/smp_affinity_list", "0-1") == "0-1"


def test_restore_files_puts_a_tree_back(tmp_path: Path) -> None:
    root = tmp_path / "etc-tuned"
    (root / "sub").mkdir(parents=True)
    (root / "active_profile").write_text("")
    (root / "sub" / "keep.conf").write_text("a=1\n")
    (root / "gone.conf").write_text("x\n")
    os.symlink("keep.conf", root / "sub" / "link")
    absent = tmp_path / "var-log-tuned"
    roots = [str(root), str(absent)]
    before = host.Snapshot({}, {}, host.read_files(roots))

    (root / "active_profile").write_text("cpu-partitioning\n")
    (root / "sub" / "keep.conf").chmod(0o600)
    (root / "gone.conf").unlink()
    (root / "new" / "deep").mkdir(parents=True)
    (root / "new" / "deep" / "file").write_text("new")
    (root / "sub" / "link").unlink()
    os.symlink("elsewhere", root / "sub" / "link")
    absent.mkdir()
    (absent / "tuned.log").write_text("log")
    after = host.Snapshot({}, {}, host.read_files(roots))
    changes = host.diff(before, after)
    assert {item.key for item in changes} >= {
        str(root / "active_profile"), str(root / "gone.conf"), str(root / "new"),
        str(root / "sub" / "link"), str(absent),
    }  # fmt: skip

    done = host.restore(before, after, changes)
    assert done.failed == []
    assert host.diff(before, host.Snapshot({}, {}, host.read_files(roots))) == []
    assert (root / "active_profile").read_text() == ""
    assert not absent.exists()


def test_restore_refuses_a_big_file_it_did_not_keep(tmp_path: Path) -> None:
    big = tmp_path / "initrd.img"
    big.write_bytes(b"\0" * (host.KEEP_BYTES + 1))
    before = host.Snapshot({}, {}, host.read_files([str(tmp_path)]))
    assert before.files[str(big)] is not None
    big.write_bytes(b"changed")
    after = host.Snapshot({}, {}, host.read_files([str(tmp_path)]))
    done = host.restore(before, after, host.diff(before, after))
    [(difference, reason)] = done.failed
    assert difference.key == str(big) and "content was not kept" in reason
