"""The rendered converge scripts, run by a real ``sh`` against temporary files.

``quietcore.converge.shell`` is the only place steps become shell text; these tests run what
it renders (prelude included) and look at the files and exit status the shell leaves, so a
quoting slip, a wrong parameter expansion or a lost exit status shows up here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from quietcore.converge import journal
from quietcore.converge.shell import (
    backup_line,
    put_line,
    record_line,
    remove_line,
    restore_line,
    runs_once,
    script,
    step_line,
)
from quietcore.steps import ManagedFile, Run, Write

SH = shutil.which("sh") or "/bin/sh"

# Text a shell would love to misread: expansions, quotes, globs, backslashes, printf formats,
# a leading dash, non-ASCII, and trailing newlines that command substitution would eat.
NASTY = "-n $HOME $(touch pwned) `touch pwned` 'single' \"double\" \\n \\\\ %s %d * ? é\n\n"


class TmpFile(ManagedFile):
    """A ManagedFile allowed under the test's temporary directory.

    ``ManagedFile`` refuses paths outside /etc, /boot and quietcore's state directory (tested
    in the steps tests); the shell functions under test only see the path string.
    """

    def __post_init__(self) -> None:
        pass


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


def run(lines: list[str], cwd: Path) -> Ran:
    """Run ``script(lines)`` as the hosts do (``sh -c``), in ``cwd``, with a bare PATH."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd)}
    done = subprocess.run(
        [SH, "-c", script(lines)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return Ran(done.returncode, done.stdout, done.stderr)


def context(action: journal.Action = "apply") -> journal.Context:
    return journal.Context(
        time="2026-11-23T12:00:00+00:00",
        operator="tester@controller",
        host="web-1",
        action=action,
        profile="trading" if action == "apply" else None,
        digest="ab" * 32 if action == "apply" else None,
    )


def records(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text().splitlines()
    parsed = [json.loads(line) for line in lines]  # every line is valid JSON on its own
    assert list(journal.parse(tuple(lines))) == parsed
    return parsed


# --- qc_put ------------------------------------------------------------------------------------


def test_put_creates_missing_directories_with_exact_content_and_mode(tmp_path: Path) -> None:
    target = tmp_path / "etc" / "deep" / "er" / "file.conf"
    ran = run([put_line(TmpFile(str(target), NASTY, "test", mode="0640"))], tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert target.read_bytes() == NASTY.encode()
    assert target.stat().st_mode & 0o777 == 0o640
    assert not (tmp_path / "pwned").exists()
    assert not Path(f"{target}.qc-new").exists()


def test_put_replaces_an_existing_file_and_its_mode(tmp_path: Path) -> None:
    target = tmp_path / "file.conf"
    target.write_text("old content that is longer than the new one\n")
    target.chmod(0o600)
    ran = run([put_line(TmpFile(str(target), "new\n", "test", mode="0755"))], tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert target.read_text() == "new\n"
    assert target.stat().st_mode & 0o777 == 0o755


def test_put_into_an_unwritable_place_fails_the_script(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be\n")
    ran = run([put_line(TmpFile(str(blocker / "file.conf"), "x\n", "test"))], tmp_path)
    assert ran.returncode == 1
    assert f"quietcore: could not write {blocker / 'file.conf'}" in ran.stderr
    assert blocker.read_text() == "a file where a directory should be\n"


# --- qc_remove ---------------------------------------------------------------------------------


def test_remove_deletes_the_file_and_prunes_the_directory_it_left_empty(tmp_path: Path) -> None:
    parent = tmp_path / "a" / "b"
    parent.mkdir(parents=True)
    (parent / "only.conf").write_text("x\n")
    ran = run([remove_line(str(parent / "only.conf"))], tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert not parent.exists()
    # One level only: the grandparent was not emptied by this removal's own file.
    assert (tmp_path / "a").is_dir()


def test_remove_keeps_a_directory_that_still_holds_other_files(tmp_path: Path) -> None:
    parent = tmp_path / "sysctl.d"
    parent.mkdir()
    (parent / "zz-quietcore.conf").write_text("x\n")
    (parent / "99-sysctl.conf").write_text("vm.swappiness = 1\n")
    ran = run([remove_line(str(parent / "zz-quietcore.conf"))], tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert sorted(p.name for p in parent.iterdir()) == ["99-sysctl.conf"]
    assert (parent / "99-sysctl.conf").read_text() == "vm.swappiness = 1\n"


def test_remove_of_a_file_already_gone_succeeds(tmp_path: Path) -> None:
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "other").write_text("x\n")
    ran = run([remove_line(str(tmp_path / "keep" / "gone.conf"))], tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert ran.stderr == ""
    assert (tmp_path / "keep" / "other").exists()


def test_remove_of_a_path_with_spaces_and_quotes(tmp_path: Path) -> None:
    parent = tmp_path / 'it\'s a "dir"'
    parent.mkdir()
    victim = parent / "f $(x).conf"
    victim.write_text("x\n")
    bystander = tmp_path / "it's"
    bystander.write_text("must survive\n")
    ran = run([remove_line(str(victim))], tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert not parent.exists()
    assert bystander.read_text() == "must survive\n"


# --- qc_backup / qc_restore --------------------------------------------------------------------

# Every byte value, CRLF, no final newline: a backup must not normalise anything.
ORIGINAL = bytes(range(256)) + b"line\r\nno final newline"


def test_backup_then_restore_is_byte_exact_and_keeps_the_mode(tmp_path: Path) -> None:
    original = tmp_path / "etc" / "default" / "grub"
    original.parent.mkdir(parents=True)
    original.write_bytes(ORIGINAL)
    original.chmod(0o640)
    backup = tmp_path / "state" / "backup" / "etc" / "default" / "grub"

    ran = run(
        [
            backup_line(str(original), str(backup)),
            put_line(TmpFile(str(original), "quietcore's version\n", "test")),
        ],
        tmp_path,
    )
    assert ran.returncode == 0, ran.stderr
    assert backup.read_bytes() == ORIGINAL
    assert original.read_text() == "quietcore's version\n"

    ran = run([restore_line(str(original), str(backup))], tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert original.read_bytes() == ORIGINAL
    assert original.stat().st_mode & 0o777 == 0o640


def test_backup_keeps_the_first_original_on_a_second_apply(tmp_path: Path) -> None:
    original = tmp_path / "grub"
    original.write_bytes(ORIGINAL)
    backup = tmp_path / "backup" / "grub"
    lines = [
        backup_line(str(original), str(backup)),
        put_line(TmpFile(str(original), "first apply\n", "test")),
    ]
    assert run(lines, tmp_path).returncode == 0
    # The second apply backs up again: quietcore's own rendering must not replace the original.
    lines[1] = put_line(TmpFile(str(original), "second apply\n", "test"))
    ran = run(lines, tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert backup.read_bytes() == ORIGINAL
    assert original.read_text() == "second apply\n"


def test_backup_of_a_missing_file_does_nothing(tmp_path: Path) -> None:
    backup = tmp_path / "backup" / "absent"
    ran = run([backup_line(str(tmp_path / "absent"), str(backup))], tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert not backup.exists()
    assert not backup.parent.exists()


def test_restore_without_a_backup_fails_the_script(tmp_path: Path) -> None:
    original = tmp_path / "grub"
    original.write_text("current\n")
    ran = run([restore_line(str(original), str(tmp_path / "no-backup"))], tmp_path)
    assert ran.returncode == 1
    assert f"quietcore: could not restore {original}" in ran.stderr
    assert original.read_text() == "current\n"


# --- qc_record and the journal ----------------------------------------------------------------


def test_record_writes_valid_json_lines_with_the_result_of_each_block(tmp_path: Path) -> None:
    log = tmp_path / "var" / "lib" / "quietcore" / "journal.jsonl"
    ok_entry = journal.entry(context(), "sysctl/net.core.busy_poll", "0", "50", False)
    # Values that need JSON escaping and must survive printf and the shell untouched.
    odd = journal.entry(context(), 'file:/etc/it\'s "x"', "a\nb\\c %s", "é ✓ $HOME", True)
    ran = run(
        [
            "qc_block",
            step_line(Run(("true",))),
            record_line(str(log), ok_entry),
            "qc_block",
            step_line(Run(("false",))),
            record_line(str(log), odd),
        ],
        tmp_path,
    )
    assert ran.returncode == 1
    first, second = records(log)
    assert first == {
        "time": "2026-11-23T12:00:00+00:00",
        "operator": "tester@controller",
        "host": "web-1",
        "action": "apply",
        "profile": "trading",
        "digest": "ab" * 32,
        "key": "sysctl/net.core.busy_poll",
        "before": "0",
        "after": "50",
        "reboot": False,
        "result": "ok",
    }
    assert second["key"] == 'file:/etc/it\'s "x"'
    assert second["before"] == "a\nb\\c %s"
    assert second["after"] == "é ✓ $HOME"
    assert second["reboot"] is True
    assert second["result"] == "failed"


def test_record_appends_and_a_rollback_record_has_no_profile(tmp_path: Path) -> None:
    log = tmp_path / "journal.jsonl"
    log.write_text('{"earlier": "record"}\n')
    entry = journal.entry(context("rollback"), "vm/thp_enabled", "never", "madvise", False)
    ran = run(["qc_block", record_line(str(log), entry)], tmp_path)
    assert ran.returncode == 0, ran.stderr
    earlier, rollback = records(log)
    assert earlier == {"earlier": "record"}
    assert rollback["action"] == "rollback"
    assert rollback["profile"] is None
    assert rollback["digest"] is None
    assert rollback["before"] == "never"
    assert rollback["result"] == "ok"


def test_a_failure_marks_only_its_own_block(tmp_path: Path) -> None:
    log = tmp_path / "journal.jsonl"
    lines = []
    for index, argv in enumerate([("true",), ("sh", "-c", "exit 7"), ("true",)]):
        lines += [
            "qc_block",
            step_line(Run(argv)),
            record_line(str(log), journal.entry(context(), f"k/{index}", "a", "b", False)),
        ]
    ran = run(lines, tmp_path)
    assert ran.returncode == 1
    assert "quietcore: failed (exit 7): sh -c exit 7" in ran.stderr
    assert [(r["key"], r["result"]) for r in records(log)] == [
        ("k/0", "ok"),
        ("k/1", "failed"),
        ("k/2", "ok"),
    ]


# --- failures do not stop the batch -----------------------------------------------------------


def test_a_failing_step_exits_1_but_the_steps_after_it_still_run(tmp_path: Path) -> None:
    before = tmp_path / "before"
    after = tmp_path / "after.conf"
    # /proc/sys has no such file, and nobody (not even root) can create one there.
    refused = Write("/proc/sys/quietcore_test_does_not_exist", "1")
    ran = run(
        [
            step_line(Run(("touch", str(before)))),
            step_line(refused),
            step_line(Run(("false",))),
            put_line(TmpFile(str(after), "still written\n", "test")),
        ],
        tmp_path,
    )
    assert ran.returncode == 1
    assert before.exists()
    assert after.read_text() == "still written\n"
    assert "quietcore: could not write '1' to /proc/sys/quietcore_test_does_not_exist" in (
        ran.stderr
    )
    assert "quietcore: failed (exit 1): false" in ran.stderr


def test_a_clean_script_exits_0_and_is_silent(tmp_path: Path) -> None:
    target = tmp_path / "out"
    ran = run([step_line(Run(("sh", "-c", f"printf x > {target}")))], tmp_path)
    assert (ran.returncode, ran.stdout, ran.stderr) == (0, "", "")
    assert target.read_text() == "x"


def test_write_puts_the_value_and_a_newline(tmp_path: Path) -> None:
    # qc_write only ever targets kernel files; a /sys path that the kernel gives us to write
    # is not available unprivileged, so call the function itself on a temp file.
    target = tmp_path / "smp_affinity_list"
    line = step_line(Write("/proc/irq/45/smp_affinity_list", "0-1,4"))
    assert line == "qc_write /proc/irq/45/smp_affinity_list 0-1,4"
    ran = run([line.replace("/proc/irq/45/smp_affinity_list", str(target))], tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert target.read_text() == "0-1,4\n"


def test_systemd_only_steps_run_only_under_systemd(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    ran = run([step_line(Run(("touch", str(marker)), systemd_only=True))], tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert marker.exists() == Path("/run/systemd/system").is_dir()


@pytest.mark.parametrize("argument", ["a b", "$(id)", "'", '"', "\\", "*", "-e", ""])
def test_run_passes_each_argument_verbatim(tmp_path: Path, argument: str) -> None:
    out = tmp_path / "args"
    step = Run(("sh", "-c", 'printf "%s|" "$@" > "$0"', str(out), argument, "last"))
    ran = run([step_line(step)], tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert out.read_text() == f"{argument}|last|"


def test_activation_runs_are_deduplicated_in_first_seen_order() -> None:
    grub, reload = Run(("update-grub",)), Run(("systemctl", "daemon-reload"), systemd_only=True)
    assert runs_once([grub, reload, grub, reload]) == [grub, reload]


def test_a_refused_write_is_recorded_once_and_does_not_fail_the_script(tmp_path: Path) -> None:
    refused = tmp_path / "state" / "refused-writes"
    target = tmp_path / "no-such-dir" / "smp_affinity_list"
    line = step_line(Write("/proc/irq/25/smp_affinity_list", "0-1", refusable=True))
    # The rendered line names the real kernel file; aim it at one that cannot be written.
    line = line.replace("/proc/irq/25/smp_affinity_list", str(target))
    ran = run([f"REFUSED={refused}", line, line, "qc_write /dev/null 1"], tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert "recorded as kernel-owned" in ran.stdout
    assert refused.read_text() == f"{target}\n"


def test_a_refused_write_is_journalled_as_refused(tmp_path: Path) -> None:
    journal_file = tmp_path / "journal.jsonl"
    target = tmp_path / "no-such-dir" / "smp_affinity_list"
    line = step_line(Write("/proc/irq/25/smp_affinity_list", "0-1", refusable=True))
    entry = journal.entry(context(), "irq/25/smp_affinity_list", "0-3", "0-1", False)
    lines = [f"REFUSED={tmp_path / 'refused'}", "qc_block"]
    lines += [line.replace("/proc/irq/25/smp_affinity_list", str(target))]
    lines += [record_line(str(journal_file), entry)]
    assert run(lines, tmp_path).returncode == 0
    assert [r["result"] for r in records(journal_file)] == ["refused"]


def test_a_refusable_write_that_works_records_nothing(tmp_path: Path) -> None:
    refused = tmp_path / "refused-writes"
    target = tmp_path / "value"
    line = step_line(Write("/proc/irq/25/smp_affinity_list", "0-1", refusable=True))
    ran = run(
        [f"REFUSED={refused}", line.replace("/proc/irq/25/smp_affinity_list", str(target))],
        tmp_path,
    )
    assert ran.returncode == 0, ran.stderr
    assert target.read_text() == "0-1\n" and not refused.exists()
