#!/usr/bin/env python3
"""How quiet does one CPU stay while stress-ng loads every CPU: untuned, with quietcore's
runtime isolation, and with TuneD's cpu-partitioning profile, against the idle baseline.

The jitter probe (`quietcore jitter --backend c`: quietcore's C probe, one busy-spinning thread
that records every gap longer than the threshold) runs on the probed CPU (--cpu, default 1) in
four states, each repeated --repeats times, interleaved round by round in a rotating order so
that drift of the machine (other guests on the hypervisor) spreads over all states:

  idle       nothing else runs: the baseline every ratio refers to;
  untuned    stress-ng loads every CPU (its workers are ordinary tasks, free to run anywhere);
  quietcore  `quietcore apply --profile benchmarks/isolation-profile.yaml --reboot never`:
             a cpuset partition for the probed CPU, every other task, movable kernel thread,
             IRQ and the workqueues on the housekeeping CPUs; then stress-ng (it lands in the
             housekeeping cpuset) and the probe, which must run inside the partition (checked);
             then `quietcore rollback`;
  tuned      Debian's TuneD, profile cpu-partitioning with isolated_cores = the probed CPU, run
             as `tuned --no-dbus` (no systemd, no reboot: its bootloader part only edits boot
             files); then stress-ng and the probe; then TuneD is stopped and rolls back.

Reported per state, medians of the runs: events >100 µs per 10 s, p99 of the event durations
(µs) and the share of the run the CPU was taken away (interrupted %), with ratios to the idle
baseline, and the issue's goals: quietcore under load within 1.2x of idle and no worse than
TuneD. Every raw run goes to the JSON file of -o.

Everything is restored, also on Ctrl-C, SIGTERM or an error: stress-ng is killed, quietcore
rolled back, TuneD stopped. Before the first change the benchmark snapshots every sysctl, the
sysfs/procfs files both tools tune, IRQ affinities, cpuset cgroups, every thread's affinity and
cpuset, and the configuration files TuneD writes; after each tool's state it compares, puts
back what the tool left behind (saying what) and stops with exit status 1 if the host still
differs from the snapshot.

Needs root, stress-ng, tuned (apt-get install tuned), and a host nobody else is tuning while it
runs; on the project's shared machine: flock /tmp/qc/host.lock. Read
docs/isolation-benchmark.md for the method and for what the numbers mean on a VM.

    sudo .venv/bin/python -m benchmarks.isolation [--repeats 5] [--duration 10s] [-o run.json]
    sudo .venv/bin/python -m benchmarks.isolation --repeats 1 --duration 3s   # a smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from benchmarks import isolation_host as host
from benchmarks import isolation_stats as stats
from benchmarks import isolation_tuned as tuned
from benchmarks.probe import machine
from quietcore import cgroup_layout as layout
from quietcore.cgroup_layout import PARTITION_NAME
from quietcore.profile.cpuset import format_cpulist, parse_cpulist

HERE = Path(__file__).resolve().parent
PROFILE = HERE / "isolation-profile.yaml"
QUIETCORE_SNAPSHOT = Path("/var/lib/quietcore/snapshot.json")
QUIETCORE_JOURNAL = "/var/lib/quietcore/journal.jsonl"
# Files quietcore writes (boot script, sysctl file, systemd drop-ins, grub.d) and keeps
# (/var/lib/quietcore; its journal is a log that stays by design and is not compared).
QUIETCORE_ROOTS = ("/etc/quietcore", "/var/lib/quietcore")
PROBE_COMM = "qc_probe"  # the C probe's process name starts so (its file is qc_probe-HASH)
DEFAULT_LOAD = "standard"
# The load, per name. {cpus} is the number of online CPUs. See docs/isolation-benchmark.md.
LOADS = {
    # Compute on every CPU, plus the kernel work a busy service host makes: timer interrupts,
    # loopback networking (softirqs), context switches, page faults and memory reclaim.
    "standard": "--cpu {cpus} --cpu-method matrixprod --timer 1 --timer-freq 10000 "
    "--udp 1 --switch 1 --vm 1 --vm-bytes 128m",
    # The same plus file I/O with fsync: block-device completion interrupts, writeback and
    # journal threads. On a VM whose disk has one managed (immovable) IRQ those interrupts
    # land wherever the kernel put that IRQ, isolated or not.
    "with-disk": "--cpu {cpus} --cpu-method matrixprod --timer 1 --timer-freq 10000 "
    "--udp 1 --switch 1 --vm 1 --vm-bytes 128m --iomix 1 --iomix-bytes 64m",
    # Only the CPU hogs.
    "cpu": "--cpu {cpus} --cpu-method matrixprod",
}


class BenchmarkError(RuntimeError):
    """Something the benchmark cannot work around; the message says what to do."""


class StopRequestedError(Exception):
    """SIGTERM or SIGHUP: unwind like Ctrl-C so that every state is restored."""


@dataclass
class Context:
    args: argparse.Namespace
    cpu: int
    housekeeping: frozenset[int]
    scratch: Path
    roots: tuple[str, ...]
    baseline: host.Snapshot
    volatile: set[str]
    samples: list[stats.Sample] = field(default_factory=list)
    raw: list[dict[str, Any]] = field(default_factory=list)
    left_behind: dict[str, list[str]] = field(default_factory=dict)
    tuned_findings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the probe ---------------------------------------------------------------------------------


@contextlib.contextmanager
def pinned_to(cpus: frozenset[int]) -> Iterator[None]:
    """Keep the benchmark itself (and the `quietcore jitter` it starts) off the probed CPU
    while the probe runs, in every state alike."""
    before = os.sched_getaffinity(0)
    allowed = before & cpus
    if allowed:
        os.sched_setaffinity(0, allowed)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, before)


def _process_stats() -> Iterator[tuple[int, str, list[str]]]:
    """(PID, name, the /proc/PID/stat fields after the name) of every running process."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue  # exited
        name = text[text.index("(") + 1 : text.rindex(")")]
        yield int(entry.name), name, text.rsplit(")", 1)[1].split()


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for pid, _, fields in _process_stats():
        tree.setdefault(int(fields[1]), []).append(pid)
    return tree


def _probe_process(root: int) -> int | None:
    """The C probe among the descendants of ``root`` (the `quietcore jitter` process)."""
    tree = _children()
    pending = list(tree.get(root, []))
    while pending:
        pid = pending.pop()
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().startswith(PROBE_COMM):
                return pid
        pending.extend(tree.get(pid, []))
    return None


def where_probe_runs(jitter: subprocess.Popen[bytes], deadline: float) -> str:
    """Watch for the probe and report its cpuset and allowed CPUs once it has pinned itself
    (its warm-up is 0.2 s); "not seen" when it never appeared."""
    while time.monotonic() < deadline and jitter.poll() is None:
        pid = _probe_process(jitter.pid)
        if pid is not None:
            time.sleep(0.5)
            try:
                cpuset = Path(f"/proc/{pid}/cpuset").read_text().strip()
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                return "ended before it could be looked at"
            allowed = re.search(r"^Cpus_allowed_list:\s*(\S+)", status, re.M)
            return f"cpuset {cpuset}, CPUs {allowed.group(1) if allowed else '?'}"
        time.sleep(0.05)
    return "not seen"


def probe(context: Context, state: str, round_number: int) -> stats.Sample:
    args = context.args
    output = context.scratch / f"jitter-{state}-{round_number}.json"
    wrapper: list[str] = []
    if state == stats.QUIETCORE and args.quietcore_probe == "exec":
        # The whole `quietcore jitter` joins the partition: its controller and driver shell
        # share the probed CPU with the probe (asleep while it spins, but not nothing).
        wrapper = [sys.executable, "-m", "quietcore", "exec", "--cpus", "isolated[0]"]
        wrapper += ["--mem-node", "none", "--"]
    argv = [
        *wrapper,
        *(sys.executable, "-m", "quietcore", "jitter", "--backend", args.backend),
        *("--cpus", str(context.cpu), "--duration", f"{args.duration}s"),
        *("--threshold-us", f"{args.threshold_us:g}", "--format", "json", "-o", str(output)),
        "@local",
    ]
    with pinned_to(context.housekeeping):
        jitter = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        try:
            placement = where_probe_runs(jitter, time.monotonic() + args.duration + 5)
            _, errors = jitter.communicate(timeout=args.duration + 180)
        finally:
            if jitter.poll() is None:
                os.killpg(jitter.pid, signal.SIGKILL)
                jitter.wait()
    if jitter.returncode not in (0, 1) or not output.exists():
        reason = errors.decode(errors="replace").strip()
        with contextlib.suppress(OSError, ValueError, KeyError, IndexError):
            reason += "\n" + str(json.loads(output.read_text())["hosts"][0]["error"])
        hint = ""
        if state == stats.QUIETCORE and not wrapper:
            hint = (
                "\nthe probe could not pin itself to the isolated CPU: `quietcore jitter` "
                "places it in quietcore's partition when that CPU belongs to it; "
                "--quietcore-probe exec is the fallback"
            )
        raise BenchmarkError(
            f"{state}: quietcore jitter failed ({jitter.returncode}), probe {placement}:\n"
            f"{reason}{hint}"
        )
    document = json.loads(output.read_text())
    if wrapper:
        placement += ", started by quietcore exec"
    sample = stats.parse_probe(document, context.cpu, state, round_number, placement)
    [result] = [entry for entry in document["hosts"][0]["cpus"] if entry["cpu"] == context.cpu]
    result.pop("timeline", None)  # thousands of events per run; the histogram is kept
    context.raw.append({"state": state, "round": round_number, "probe": result})
    return sample


def check_placement(context: Context, sample: stats.Sample) -> None:
    """The quietcore state is only meaningful with the probe inside the partition."""
    if context.args.backend != "c":
        return
    if PARTITION_NAME not in sample.placement:
        raise BenchmarkError(
            f"quietcore: the probe ran outside the partition ({sample.placement}). "
            "`quietcore jitter` must start its probe inside quietcore's cpuset partition "
            f"(write the probe's PID to .../{PARTITION_NAME}/cgroup.procs before it pins "
            "itself) when the probed CPUs belong to it; --quietcore-probe exec is the "
            "fallback; see docs/isolation-benchmark.md"
        )


# --- the load ----------------------------------------------------------------------------------


@contextlib.contextmanager
def loaded(context: Context) -> Iterator[None]:
    """stress-ng on every CPU for the probe run; killed (its whole process group) after."""
    args = context.args
    budget = args.duration + args.settle + 240  # it ends by itself even if we are SIGKILLed
    workdir = Path(tempfile.mkdtemp(prefix="stress-", dir=context.scratch))
    argv = [
        "stress-ng",
        *shlex.split(args.load_args.format(cpus=os.cpu_count() or 1)),
        *("--timeout", f"{budget}s", "--temp-path", str(workdir)),
    ]
    log = (context.scratch / "stress-ng.log").open("ab")
    stress = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    try:
        time.sleep(args.settle)
        if stress.poll() is not None:
            raise BenchmarkError(
                f"stress-ng exited ({stress.returncode}): {shlex.join(argv)}; "
                f"see {context.scratch / 'stress-ng.log'}"
            )
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(stress.pid, signal.SIGTERM)
        try:
            stress.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(stress.pid, signal.SIGKILL)
            stress.wait()
        _wait_group_gone(stress.pid)
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_group_gone(pgid: int, timeout_s: float = 10) -> None:
    """stress-ng's workers may outlive their parent for a moment; none may run into the next
    state."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


# --- the tools ---------------------------------------------------------------------------------


def _run_to_end(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run a quietcore command in its own session and let it finish even if we are
    interrupted meanwhile (a half-done apply or rollback is worse than waiting for it); the
    interruption is raised once it has."""
    child = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    interrupted: StopRequestedError | None = None
    while True:
        try:
            out, err = child.communicate()
            break
        except StopRequestedError as stop:
            interrupted = stop
            say(f"waiting for `{shlex.join(argv[2:4])}` to finish before cleaning up")
    if interrupted is not None:
        raise interrupted
    return subprocess.CompletedProcess(list(argv), child.returncode, out, err)


def verify_restored(context: Context, tool: str) -> None:
    """Compare the host with the snapshot taken before anything changed; put back what
    ``tool`` left behind (recorded, and said); fail if the host still differs."""
    after = host.snapshot(context.roots, [QUIETCORE_JOURNAL])
    left = host.diff(context.baseline, after, context.volatile)
    if not left:
        return
    context.left_behind.setdefault(tool, []).extend(str(item) for item in left)
    say(f"{tool} left {len(left)} change(s) behind; restoring them:")
    for item in left[:30]:
        say(f"  {item}")
    if len(left) > 30:
        say(f"  ... and {len(left) - 30} more (all in the JSON of -o)")
    host.restore(context.baseline, after, left)
    remaining = host.diff(
        context.baseline, host.snapshot(context.roots, [QUIETCORE_JOURNAL]), context.volatile
    )
    if remaining:
        listed = "\n  ".join(str(item) for item in remaining[:30])
        more = f"\n  ... and {len(remaining) - 30} more" if len(remaining) > 30 else ""
        raise BenchmarkError(
            "the host still differs from the snapshot taken before the benchmark, after "
            f"restoring what {tool} left behind:\n  {listed}{more}"
        )


@contextlib.contextmanager
def quietcore_applied(context: Context) -> Iterator[None]:
    quietcore = [sys.executable, "-m", "quietcore"]
    try:
        done = _run_to_end(
            [
                *(*quietcore, "apply", "--profile", str(context.args.profile)),
                *("--reboot", "never", "--yes", "--json", "@local"),
            ]
        )
        # 1 is "drift remains": on x86 an IRQ's effective affinity moves only at its next
        # interrupt, so a runtime apply often ends with a few pending IRQs. What the
        # benchmark needs, the partition, is checked directly.
        if done.returncode not in (0, 1):
            raise BenchmarkError(
                f"quietcore apply failed ({done.returncode}):\n{done.stderr.strip()}\n"
                + _apply_summary(done.stdout)
            )
        partition_cpus = _partition_cpus()
        if partition_cpus != frozenset({context.cpu}):
            raise BenchmarkError(
                f"after quietcore apply (exit {done.returncode}) the partition holds CPUs "
                f"{partition_cpus} instead of {context.cpu}:\n{_apply_summary(done.stdout)}"
            )
        if done.returncode == 1:
            note = "quietcore apply exited 1 (drift: IRQ effective affinities still pending)"
            if note not in context.notes:
                context.notes.append(note)
        yield
    finally:
        if QUIETCORE_SNAPSHOT.exists():
            done = _run_to_end([*quietcore, "rollback", "--yes", "--json", "@local"])
            if done.returncode != 0:
                say(f"quietcore rollback failed ({done.returncode}):\n{done.stderr.strip()}")
        verify_restored(context, "quietcore")


def _partition_cpus() -> frozenset[int] | None:
    """The live partition's effective CPUs (None: no partition)."""
    version = layout.cpuset_version(_text(layout.V2_CONTROLLERS), _text(layout.V1_ROOT_CPUS))
    if version is None:
        return None
    text = _text(f"{layout.partition(version)}/{layout.EFFECTIVE_CPUS[version]}")
    return None if text is None else parse_cpulist(text)


def _text(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _apply_summary(output: str) -> str:
    """The keys quietcore did not get to their declared value, from `apply --json`."""
    try:
        document = json.loads(output)
    except json.JSONDecodeError:
        return output[-2000:]
    return json.dumps(document.get("summary", document), indent=1)[:4000]


@contextlib.contextmanager
def tuned_running(context: Context) -> Iterator[None]:
    scratch = Path(tempfile.mkdtemp(prefix="tuned-", dir=context.scratch))
    running: tuned.Tuned | None = None
    try:
        running = tuned.start(format_cpulist(frozenset({context.cpu})), scratch)
        yield
    finally:
        if running is not None:
            try:
                tuned.stop(running)
            finally:
                for finding in tuned.findings(tuned.read_log(running)):
                    if finding not in context.tuned_findings:
                        context.tuned_findings.append(finding)
        verify_restored(context, "TuneD")


# --- the states --------------------------------------------------------------------------------


def measure(context: Context, state: str, round_number: int) -> stats.Sample:
    if state == stats.IDLE:
        return probe(context, state, round_number)
    if state == stats.UNTUNED:
        with loaded(context):
            return probe(context, state, round_number)
    if state == stats.QUIETCORE:
        with quietcore_applied(context), loaded(context):
            sample = probe(context, state, round_number)
        check_placement(context, sample)
        return sample
    with tuned_running(context), loaded(context):
        return probe(context, state, round_number)


def rounds(states: Sequence[str], repeats: int) -> Iterator[tuple[int, str]]:
    """(round, state) in a rotating order: round r starts with the r-th state."""
    for number in range(repeats):
        shift = number % len(states)
        for state in [*states[shift:], *states[:shift]]:
            yield number + 1, state


# --- checks, signals, output -------------------------------------------------------------------


def preflight(args: argparse.Namespace, cpu: int) -> list[str]:
    """Refuse to start (with what to do) rather than fail half-way; returns notes."""
    notes: list[str] = []
    if os.geteuid() != 0:
        raise BenchmarkError("needs root (cgroups, IRQ affinities, sysctls, TuneD)")
    online = parse_cpulist(Path("/sys/devices/system/cpu/online").read_text().strip())
    if cpu not in online or len(online) < 2:
        raise BenchmarkError(f"CPU {cpu} must be one of at least two online CPUs ({online})")
    if QUIETCORE_SNAPSHOT.exists():
        raise BenchmarkError(
            f"{QUIETCORE_SNAPSHOT} exists: quietcore has tuned this host (is someone else "
            "testing on it?); the benchmark starts from an untuned host: `quietcore rollback "
            "@local` first"
        )
    if (allowed := os.sched_getaffinity(0)) != online:
        raise BenchmarkError(
            f"this process may only run on CPUs {format_cpulist(frozenset(allowed))} of "
            f"{format_cpulist(online)}: the host is partitioned already (cpuset, taskset)"
        )
    if shutil.which("stress-ng") is None and set(args.states) - {stats.IDLE}:
        raise BenchmarkError("stress-ng is not installed (apt-get install stress-ng)")
    if stats.TUNED in args.states:
        if tuned.executable() is None:
            raise BenchmarkError("TuneD is not installed: apt-get install tuned (see the docs)")
        if pids := tuned.running_daemons():
            raise BenchmarkError(f"TuneD is already running (PID {pids}): stop it first")
    if stats.QUIETCORE in args.states:
        from quietcore.profile.load import load_profile

        declared = load_profile(str(args.profile)).profile.cpu
        if declared.isolated != str(cpu) or "cpuset" not in declared.isolation:
            raise BenchmarkError(
                f"{args.profile} must isolate exactly CPU {cpu} with isolation [cpuset] "
                f"(it says isolated {declared.isolated!r}, isolation {declared.isolation})"
            )
    if busy := busy_processes():
        notes.append(
            "the machine was not idle when the benchmark started: "
            + ", ".join(busy)
            + "; these run in the idle and untuned states as well (each tool confines them "
            "to the housekeeping CPU in its state), so the baseline is not a quiet machine"
        )
        say(f"warning: {notes[-1]}")
    if "hypervisor" in Path("/proc/cpuinfo").read_text():
        notes.append(
            "a VM: the hypervisor can stop a vCPU at any time (steal), which no tuning inside "
            "the guest can isolate away; other guests' load changes the numbers between runs"
        )
    return notes


def _cpu_ticks() -> dict[int, tuple[str, int]]:
    """PID -> (name, user+system clock ticks so far) of every process."""
    return {
        pid: (name, int(fields[11]) + int(fields[12])) for pid, name, fields in _process_stats()
    }


def busy_processes(seconds: float = 2.0, least_pct: float = 5.0) -> list[str]:
    """Processes that used at least ``least_pct`` % of one CPU over ``seconds``: on an idle
    machine there are none, and whatever is found runs in the idle and untuned states too."""
    hertz = os.sysconf("SC_CLK_TCK")
    before = _cpu_ticks()
    time.sleep(seconds)
    after = _cpu_ticks()
    busy = []
    for pid, (name, ticks) in after.items():
        if pid in before and pid != os.getpid():
            share = (ticks - before[pid][1]) / hertz / seconds * 100
            if share >= least_pct:
                busy.append(f"{name} (PID {pid}) {share:.0f} %")
    return busy


HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def shield() -> None:
    """Ignore every handled signal from now on: the cleanup must run to its end."""
    for number in HANDLED_SIGNALS:
        signal.signal(number, signal.SIG_IGN)


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    shield()  # the first Ctrl-C (or SIGTERM/SIGHUP) unwinds; more would break the cleanup
    raise StopRequestedError(signal.Signals(signum).name)


@contextlib.contextmanager
def signals_unwind() -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP raise ``StopRequestedError``, so every state's cleanup runs."""
    previous = {number: signal.getsignal(number) for number in HANDLED_SIGNALS}
    for number in HANDLED_SIGNALS:
        signal.signal(number, _interrupt)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def duration_seconds(text: str) -> int:
    """``10``, ``10s`` or ``2m``: whole seconds, at least 1."""
    match = re.fullmatch(r"(\d+)(s|m)?", text.strip())
    if not match or int(match.group(1)) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected seconds such as 10s or 2m")
    return int(match.group(1)) * (60 if match.group(2) == "m" else 1)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    description, _, examples = (__doc__ or "").partition("\n\n    sudo ")
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.isolation",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  sudo " + examples.replace("\n    sudo", "\n  sudo")
        if examples
        else None,
    )
    parser.add_argument("--cpu", type=int, default=1, help="the CPU to probe (default 1)")
    parser.add_argument(
        "--repeats", type=int, default=5, help="runs per state, interleaved (default 5)"
    )
    parser.add_argument(
        "--duration", type=duration_seconds, default=10, help="per probe run (default 10s)"
    )
    parser.add_argument(
        "--threshold-us",
        type=float,
        default=10.0,
        help="a gap longer than this is an event; p99 and interrupted %% count only events "
        "(default 10)",
    )
    parser.add_argument(
        "--states",
        type=lambda text: [word.strip() for word in text.split(",") if word.strip()],
        default=list(stats.STATES),
        help=f"which states, comma-separated (default {','.join(stats.STATES)})",
    )
    parser.add_argument(
        "--load",
        choices=sorted(LOADS),
        default=DEFAULT_LOAD,
        help="the stress-ng mix (default standard; see the docs for each)",
    )
    parser.add_argument(
        "--stress-args",
        dest="custom_load",
        default=None,
        metavar="ARGS",
        help="stress-ng arguments instead of --load ({cpus}: the number of online CPUs)",
    )
    parser.add_argument(
        "--settle", type=float, default=2.0, help="seconds between starting stress-ng and the probe"
    )
    parser.add_argument(
        "--profile", type=Path, default=PROFILE, help="quietcore's profile (default: %(default)s)"
    )
    parser.add_argument(
        "--backend",
        choices=("c", "python", "oslat"),
        default="c",
        help="the probe (default c: finest sampling; the partition check needs it)",
    )
    parser.add_argument(
        "--quietcore-probe",
        choices=("jitter", "exec"),
        default="jitter",
        help="how the probe enters quietcore's partition: jitter (default): `quietcore "
        "jitter` places its probe there; exec: the whole `quietcore jitter` is started by "
        "`quietcore exec --cpus isolated[0]`, so its controller shares the probed CPU",
    )
    parser.add_argument(
        "-o", "--output", type=Path, default=None, help="also write every run as JSON here"
    )
    args = parser.parse_args(argv)
    if unknown := set(args.states) - set(stats.STATES):
        parser.error(f"unknown state(s) {', '.join(sorted(unknown))}; choose from {stats.STATES}")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    args.load_args = args.custom_load or LOADS[args.load]
    return args


def report(context: Context, started: float) -> str:
    args = context.args
    rows = stats.medians(context.samples)
    lines = [
        f"CPU {context.cpu} of {machine()}; probe: quietcore jitter --backend {args.backend}, "
        f"threshold {args.threshold_us:g} µs; {args.duration} s per run, medians of "
        f"{args.repeats} run(s) per state, interleaved; load: stress-ng "
        f"{args.load_args.format(cpus=os.cpu_count() or 1)}; "
        f"{(time.monotonic() - started) / 60:.1f} min",
        "",
        stats.table(rows),
    ]
    if checks := stats.goals(rows):
        lines += ["", stats.goals_table(checks, rows)]
    if context.tuned_findings:
        lines += ["", "TuneD said:"] + [f"- {finding}" for finding in context.tuned_findings]
    for tool, items in context.left_behind.items():
        lines += ["", f"{tool} left {len(items)} change(s) behind (restored by the benchmark):"]
        lines += [f"- {item}" for item in items[:20]]
        if len(items) > 20:
            lines.append(f"- ... {len(items) - 20} more (see the JSON)")
    lines += [""] + [f"Note: {note}" for note in context.notes]
    return "\n".join(lines).rstrip()


def document(context: Context, status: str) -> dict[str, Any]:
    rows = stats.medians(context.samples)
    args = context.args
    return {
        "schema": "quietcore.bench.isolation/v1",
        "status": status,
        "machine": machine(),
        "settings": {
            "cpu": context.cpu,
            "housekeeping": format_cpulist(context.housekeeping),
            "repeats": args.repeats,
            "duration_s": args.duration,
            "threshold_us": args.threshold_us,
            "states": args.states,
            "backend": args.backend,
            "quietcore_probe": args.quietcore_probe,
            "stress_ng": args.load_args.format(cpus=os.cpu_count() or 1),
            "profile": str(args.profile),
        },
        "medians": rows,
        "goals": [check.__dict__ for check in stats.goals(rows)],
        "samples": [sample.as_json() for sample in context.samples],
        "runs": context.raw,
        "tuned_findings": context.tuned_findings,
        "left_behind": context.left_behind,
        "notes": context.notes,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    cpu = args.cpu
    try:
        notes = preflight(args, cpu)
    except BenchmarkError as problem:
        say(f"error: {problem}")
        return 2
    housekeeping = frozenset(os.sched_getaffinity(0)) - {cpu}
    roots = tuple(dict.fromkeys(tuned.FILE_ROOTS + QUIETCORE_ROOTS))
    say("snapshotting the host (twice, to learn which values change by themselves)")
    first = host.snapshot(roots, [QUIETCORE_JOURNAL])
    time.sleep(1)
    baseline = host.snapshot(roots, [QUIETCORE_JOURNAL])
    status = "failed"
    with (
        tempfile.TemporaryDirectory(prefix="qc-isolation-") as scratch,
        signals_unwind(),
    ):
        context = Context(
            args, cpu, housekeeping, Path(scratch), roots, baseline,
            host.volatile(first, baseline), notes=notes,
        )  # fmt: skip
        try:
            for round_number, state in rounds(args.states, args.repeats):
                say(f"round {round_number}/{args.repeats}: {stats.LABELS[state]}")
                sample = measure(context, state, round_number)
                context.samples.append(sample)
                say(
                    f"  events >100 µs per 10 s {sample.events_over_100us_per_10s:.1f}, "
                    f"p99 {sample.p99_us:.1f} µs, interrupted {sample.interrupted_pct:.3f} %, "
                    f"probe {sample.placement}"
                )
            status = "complete"
        except StopRequestedError as stop:
            status = "interrupted"
            say(f"interrupted ({stop}): each state's cleanup has run")
        except (BenchmarkError, tuned.TunedError, stats.ProbeOutputError) as problem:
            say(f"error: {problem}")
        finally:
            shield()
            try:
                verify_restored(context, "the benchmark run")
            except BenchmarkError as problem:
                say(f"error: {problem}")
                status = "host not restored"
        if context.samples:
            print(report(context, started))
        if args.output is not None:
            args.output.write_text(json.dumps(document(context, status), indent=1) + "\n")
            say(f"wrote {args.output}")
    if status != "complete":
        return 1
    if "quietcore" in context.left_behind:
        say("error: quietcore rollback did not restore everything (listed above)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
