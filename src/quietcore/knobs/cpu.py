"""CPU frequency and idle states: ``cpu.governor``, ``cpu.energy_perf_bias``, ``cpu.max_cstate``,
``cpu.min_perf_pct`` and ``cpu.boost``.

Per online CPU N:

- ``cpu/N/scaling_governor``: the cpufreq governor.
- ``cpu/N/energy_perf_bias``: the Energy Performance Bias as the kernel's number (performance
  0, balance-performance 4, normal 6, powersave 15, as TuneD maps them). A CPU without the EPB
  file but with ``energy_performance_preference`` (HWP/EPP drivers) is compared through the
  kernel's own EPB-to-EPP buckets (intel_pstate: 0-3 performance, 4-7 balance_performance,
  8-11 balance_power, 12-15 power).
- ``cpu/N/cpuidle/stateS/disable`` = ``0`` for every idle state S <= ``max_cstate``, and
  ``cpu/N/cpuidle/deeper_than_stateK/disable`` = ``1``: every state deeper than K disabled.
  Deeper states are one key because how many a CPU has is only known on the host; the reason
  names them.

Host-wide: ``cpu/intel_pstate/min_perf_pct`` and ``cpu/boost`` (``cpufreq/boost``, or
intel_pstate's ``no_turbo`` inverted).

Converging writes the same files back (the EPB number, or on EPP-only CPUs the EPP bucket name
of that number; ``no_turbo`` inverted); the kernel forgets all of them at reboot, so the boot
script writes them again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from quietcore.knobs.base import KnobFamily, Observation, ResolveContext, Setting
from quietcore.knobs.node_check import NodeCheck
from quietcore.profile.schema import Profile
from quietcore.readings import Readings, ReadSpec
from quietcore.steps import NUMBER, Step, UnsafeStepError, Write, checked
from quietcore.topology import Topology

CPU = "/sys/devices/system/cpu"
GOVERNOR = "cpufreq/scaling_governor"
SCALING_DRIVER = "cpufreq/scaling_driver"
EPB = "power/energy_perf_bias"
EPP = "cpufreq/energy_performance_preference"
IDLE_DRIVER = f"{CPU}/cpuidle/current_driver"
MIN_PERF = f"{CPU}/intel_pstate/min_perf_pct"
NO_TURBO = f"{CPU}/intel_pstate/no_turbo"
BOOST = f"{CPU}/cpufreq/boost"

MIN_PERF_KEY = "cpu/intel_pstate/min_perf_pct"
BOOST_KEY = "cpu/boost"
EPB_VALUES = {"performance": 0, "balance-performance": 4, "normal": 6, "powersave": 15}
EPP_BUCKETS = ("performance", "balance_performance", "balance_power", "power")
NO_CPUFREQ = "no cpufreq driver (common in VMs)"

EPB_MAX = 15  # EPB is 4 bits; a larger number on an EPP-only CPU is a raw EPP value

_IDLE_STATE = re.compile(r"/cpuidle/state(\d+)/disable$")
_DEEPER = re.compile(r"^deeper_than_state(\d+)$")
# Keys steps_to_set accepts, beyond the two host-wide ones.
_PER_CPU_KEY = re.compile(
    r"^cpu/([0-9]+)/(scaling_governor|energy_perf_bias"
    r"|cpuidle/(?:state([0-9]+)|deeper_than_state([0-9]+))/disable)$"
)
# Governor names, EPB/EPP words (``balance-performance``, ``balance_power``) and numbers.
_WORD = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_FLAG = re.compile(r"^[01]$")


def cpu_file(cpu: int | str, name: str) -> str:
    return f"{CPU}/cpu{cpu}/{name}"


def epp_of_epb(epb: int) -> str:
    """The energy_performance_preference the kernel shows for an EPB value."""
    return EPP_BUCKETS[min(epb >> 2, len(EPP_BUCKETS) - 1)]


def cpufreq_driver(readings: Readings) -> str | None:
    for lines in readings.glob(cpu_file("[0-9]*", SCALING_DRIVER)).values():
        if lines:
            return lines[0].strip()
    return None


def idle_states(readings: Readings, cpu: int) -> dict[int, tuple[str, str]]:
    """Idle state index -> (``disable`` value, state name) of one CPU."""
    states: dict[int, tuple[str, str]] = {}
    for path, lines in readings.glob(cpu_file(cpu, "cpuidle/state*/disable")).items():
        match = _IDLE_STATE.search(path)
        if match and lines:
            name = readings.first_line(path.replace("/disable", "/name")) or "?"
            states[int(match.group(1))] = (lines[0].strip(), name)
    return states


def _missing_cpufreq(readings: Readings, what: str) -> str:
    driver = cpufreq_driver(readings)
    return NO_CPUFREQ if driver is None else f"{what} (this host's cpufreq driver is {driver})"


def _describe(states: dict[int, tuple[str, str]]) -> str:
    return ", ".join(f"state{index} ({name})" for index, (_, name) in sorted(states.items()))


def _energy_steps(readings: Readings, cpu: int, value: str) -> tuple[Step, ...]:
    """EPB where the CPU has it; else EPP, an EPB number turned into the kernel's bucket name
    (an EPP word or raw EPP number read before is written back as it was)."""
    if readings.first_line(cpu_file(cpu, EPB)) is not None:
        return (Write(cpu_file(cpu, EPB), value),)
    if readings.first_line(cpu_file(cpu, EPP)) is not None:
        if value.isdigit() and int(value) <= EPB_MAX:
            value = epp_of_epb(int(value))
        return (Write(cpu_file(cpu, EPP), value),)
    return ()


class CpuKnob(KnobFamily):
    name = "cpu"
    boot_script = True

    def reads(self, profile: Profile) -> ReadSpec:
        cpu = profile.cpu
        per_cpu = f"{CPU}/cpu[0-9]*"
        files: list[str] = []
        cpufreq = (cpu.governor, cpu.energy_perf_bias, cpu.min_perf_pct, cpu.boost)
        if any(value is not None for value in cpufreq):
            files.append(f"{per_cpu}/{SCALING_DRIVER}")
        if cpu.governor:
            files.append(f"{per_cpu}/{GOVERNOR}")
        if cpu.energy_perf_bias:
            files += [f"{per_cpu}/{EPB}", f"{per_cpu}/{EPP}"]
        if cpu.max_cstate is not None:
            states = f"{per_cpu}/cpuidle/state[0-9]*"
            files += [f"{states}/disable", f"{states}/name", IDLE_DRIVER]
        if cpu.min_perf_pct is not None:
            files.append(MIN_PERF)
        if cpu.boost is not None:
            files += [BOOST, NO_TURBO]
        return ReadSpec(files=tuple(files))

    def desired(self, ctx: ResolveContext) -> Iterable[Setting]:
        cpu = ctx.profile.cpu
        for n in sorted(ctx.cpus.online):
            if cpu.governor:
                yield ctx.setting(
                    self.name, f"cpu/{n}/scaling_governor", cpu.governor, "cpu.governor"
                )
            if cpu.energy_perf_bias:
                epb = str(EPB_VALUES[cpu.energy_perf_bias])
                yield ctx.setting(
                    self.name, f"cpu/{n}/energy_perf_bias", epb, "cpu.energy_perf_bias"
                )
            if cpu.max_cstate is not None:
                for state in range(cpu.max_cstate + 1):
                    key = f"cpu/{n}/cpuidle/state{state}/disable"
                    yield ctx.setting(self.name, key, "0", "cpu.max_cstate")
                key = f"cpu/{n}/cpuidle/deeper_than_state{cpu.max_cstate}/disable"
                yield ctx.setting(self.name, key, "1", "cpu.max_cstate")
        if cpu.min_perf_pct is not None:
            yield ctx.setting(self.name, MIN_PERF_KEY, str(cpu.min_perf_pct), "cpu.min_perf_pct")
        if cpu.boost is not None:
            yield ctx.setting(self.name, BOOST_KEY, "1" if cpu.boost else "0", "cpu.boost")

    def observe(self, setting: Setting, readings: Readings, topology: Topology) -> Observation:
        if setting.key == MIN_PERF_KEY:
            return self._min_perf_pct(readings)
        if setting.key == BOOST_KEY:
            return self._boost(readings)
        _, cpu_text, *rest = setting.key.split("/")
        cpu = int(cpu_text)
        if rest == ["scaling_governor"]:
            governor = readings.first_line(cpu_file(cpu, GOVERNOR))
            if governor is None:
                return Observation(
                    None, "unsupported", _missing_cpufreq(readings, f"CPU {cpu} has no policy")
                )
            return Observation(governor)
        if rest == ["energy_perf_bias"]:
            return self._energy_perf_bias(readings, cpu)
        return self._idle(readings, cpu, rest[1])

    def matches(self, setting: Setting, actual: str) -> bool:
        if setting.key.endswith("/energy_perf_bias"):
            desired = int(setting.desired)
            return int(actual) == desired if actual.isdigit() else actual == epp_of_epb(desired)
        return super().matches(setting, actual)

    @staticmethod
    def _energy_perf_bias(readings: Readings, cpu: int) -> Observation:
        epb = readings.first_line(cpu_file(cpu, EPB))
        if epb is not None:
            return Observation(epb) if epb.isdigit() else Observation(epb, "drift", "not a number")
        epp = readings.first_line(cpu_file(cpu, EPP))
        if epp is not None:
            return Observation(
                epp,
                reason="no energy_perf_bias on this CPU: energy_performance_preference compared "
                "through the kernel's EPB buckets (0-3 performance, 4-7 balance_performance, "
                "8-11 balance_power, 12-15 power)",
            )
        return Observation(
            None,
            "unsupported",
            "no energy_perf_bias nor energy_performance_preference (common in VMs)",
        )

    @staticmethod
    def _idle(readings: Readings, cpu: int, state_name: str) -> Observation:
        states = idle_states(readings, cpu)
        if not states:
            driver = readings.first_line(IDLE_DRIVER)
            if driver in (None, "none"):
                return Observation(
                    None, "unsupported", "no cpuidle driver (idle=poll or cpuidle.off=1?)"
                )
            return Observation(None, "unsupported", f"{driver} exposes no idle state on CPU {cpu}")
        deeper = _DEEPER.match(state_name)
        if deeper:
            limit = int(deeper.group(1))
            beyond = {index: state for index, state in states.items() if index > limit}
            if not beyond:
                return Observation("1", reason=f"no idle state deeper than state{limit}")
            enabled = {index: state for index, state in beyond.items() if state[0] != "1"}
            if enabled:
                return Observation("0", reason=f"still enabled: {_describe(enabled)}")
            return Observation("1", reason=f"disabled: {_describe(beyond)}")
        index = int(state_name.removeprefix("state"))
        if index not in states:
            return Observation(
                None,
                "unsupported",
                f"CPU {cpu} has no idle state {index}; it has {_describe(states)}",
            )
        disable, name = states[index]
        return Observation(disable, reason=name)

    @staticmethod
    def _min_perf_pct(readings: Readings) -> Observation:
        value = readings.first_line(MIN_PERF)
        if value is None:
            return Observation(
                None, "unsupported", _missing_cpufreq(readings, "min_perf_pct is intel_pstate's")
            )
        return Observation(value)

    @staticmethod
    def _boost(readings: Readings) -> Observation:
        boost = readings.first_line(BOOST)
        if boost is not None:
            return Observation(boost)
        no_turbo = readings.first_line(NO_TURBO)
        if no_turbo is not None:
            return Observation(
                "0" if no_turbo == "1" else "1",
                reason=f"intel_pstate no_turbo is {no_turbo} (boost is its inverse)",
            )
        return Observation(
            None, "unsupported", _missing_cpufreq(readings, "the driver has no boost switch")
        )

    def steps_to_set(
        self, key: str, value: str | None, readings: Readings, topology: Topology
    ) -> tuple[Step, ...]:
        if value is None:  # absent before: nothing to restore
            if key in (MIN_PERF_KEY, BOOST_KEY) or _PER_CPU_KEY.fullmatch(key):
                return ()
            raise UnsafeStepError(f"refusing cpu key {key!r}: not one quietcore knows")
        if key == MIN_PERF_KEY:
            return (Write(MIN_PERF, checked(value, NUMBER, key)),)
        if key == BOOST_KEY:
            return self._boost_steps(readings, checked(value, _FLAG, key))
        match = _PER_CPU_KEY.fullmatch(key)
        if match is None:
            raise UnsafeStepError(f"refusing cpu key {key!r}: not one quietcore knows")
        cpu_text, what, state, deeper = match.groups()
        cpu = int(cpu_text)  # cpu007 is no file: always the kernel's own number
        if what == "scaling_governor":
            return (Write(cpu_file(cpu, GOVERNOR), checked(value, _WORD, key)),)
        if what == "energy_perf_bias":
            return _energy_steps(readings, cpu, checked(value, _WORD, key))
        flag = checked(value, _FLAG, key)
        if state is not None:
            return (Write(cpu_file(cpu, f"cpuidle/state{int(state)}/disable"), flag),)
        # Every deeper state the host showed for this CPU; disabling is the desired value,
        # enabling them all (0) is how rollback undoes it.
        return tuple(
            Write(cpu_file(cpu, f"cpuidle/state{index}/disable"), flag)
            for index in sorted(idle_states(readings, cpu))
            if index > int(deeper)
        )

    @staticmethod
    def _boost_steps(readings: Readings, boost: str) -> tuple[Step, ...]:
        if readings.first_line(BOOST) is not None:
            return (Write(BOOST, boost),)
        if readings.first_line(NO_TURBO) is not None:
            return (Write(NO_TURBO, "0" if boost == "1" else "1"),)
        return ()

    def node_check(self, setting: Setting) -> NodeCheck:
        if setting.key == MIN_PERF_KEY:
            return NodeCheck(
                setting.key,
                MIN_PERF,
                "exact",
                setting.desired,
                "unsupported",
                "min_perf_pct is intel_pstate's",
            )
        if setting.key == BOOST_KEY:
            # cpufreq's switch, or intel_pstate's no_turbo, its inverse.
            inverse = "0" if setting.desired == "1" else "1"
            no_turbo = NodeCheck(
                setting.key, NO_TURBO, "exact", inverse, "unsupported", "the driver has no boost"
            )
            return NodeCheck(
                setting.key, BOOST, "exact", setting.desired, "unsupported", fallback=no_turbo
            )
        _, cpu_text, *rest = setting.key.split("/")
        cpu = int(cpu_text)
        if rest == ["scaling_governor"]:
            path = cpu_file(cpu, GOVERNOR)
            return NodeCheck(setting.key, path, "exact", setting.desired, "unsupported", NO_CPUFREQ)
        if rest == ["energy_perf_bias"]:
            # HWP/EPP CPUs have no EPB file: the kernel's EPB-to-EPP bucket is compared instead.
            epp = NodeCheck(
                setting.key,
                cpu_file(cpu, EPP),
                "exact",
                epp_of_epb(int(setting.desired)),
                "unsupported",
                "no energy_perf_bias nor energy_performance_preference",
            )
            path = cpu_file(cpu, EPB)
            return NodeCheck(
                setting.key, path, "exact", setting.desired, "unsupported", fallback=epp
            )
        state_name = rest[1]
        deeper = _DEEPER.fullmatch(state_name)
        if deeper is None:
            path = cpu_file(cpu, f"cpuidle/{state_name}/disable")
            return NodeCheck(
                setting.key, path, "exact", setting.desired, "unsupported", f"no idle {state_name}"
            )
        limit = int(deeper.group(1))
        return NodeCheck(
            setting.key,
            cpu_file(cpu, "cpuidle/state*/disable"),
            "all_equal",
            setting.desired,
            "unsupported",
            "no cpuidle driver",
            exclude=tuple(cpu_file(cpu, f"cpuidle/state{s}/disable") for s in range(limit + 1)),
        )
