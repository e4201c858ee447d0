"""vfio-pci, and the PCI devices handed to it for kernel bypass (DPDK, VPP, SPDK).

Keys:

- ``vfio/module`` = ``loaded``: the vfio-pci driver is registered
  (``/sys/bus/pci/drivers/vfio-pci``, or ``/sys/module/vfio_pci``). Converging runs
  ``modprobe vfio-pci``; ``/etc/modules-load.d/quietcore.conf`` loads it at every boot.
  Declared when the profile lists devices or asks for ``bypass.iommu``.
- ``vfio/device/<PCI address>`` = the device's bound driver (``vfio-pci``; ``none`` when
  unbound), for each of ``bypass.devices``. Converging binds through ``driver_override``:
  set it, unbind from the current driver, reprobe (the ``BindDriver`` step; the boot script
  replays it, since the kernel binds the device's own driver again at boot). Rollback clears
  the override and reprobes, so the kernel's matching rebinds the driver it had.

The devices' drivers come from the topology's PCI listing (``topology.PCI_COMMAND``). A listed
device the host lacks is refused at resolve time, and so is one that carries a routed
interface (the management network): binding it to a user-space driver would cut the host off.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from quietcore.knobs.base import KnobFamily, Observation, ResolveContext, Setting
from quietcore.knobs.bypass_resolve import devices
from quietcore.knobs.node_check import Need, NodeCheck
from quietcore.profile.errors import ResolveError
from quietcore.profile.schema import Profile
from quietcore.readings import Readings, ReadSpec
from quietcore.steps import BindDriver, ManagedFile, Run, Step, UnsafeStepError
from quietcore.topology import PciDevice, Topology

DRIVER = "vfio-pci"
MODULE_KEY = "vfio/module"
DEVICE_PREFIX = "vfio/device/"
LOADED, UNLOADED, UNBOUND = "loaded", "not loaded", "none"
MODULES_LOAD = "/etc/modules-load.d/quietcore.conf"
STATE_COMMAND = "vfio-state"
STATE_SHELL = (
    "[ -d /sys/bus/pci/drivers/vfio-pci ] && echo driver=vfio-pci;"
    " [ -d /sys/module/vfio_pci ] && echo module=vfio_pci; true"
)
# Drivers that match no device by themselves: bound through driver_override.
OVERRIDE_DRIVERS = frozenset({DRIVER})


def device_key(address: str) -> str:
    return f"{DEVICE_PREFIX}{address}"


def routed(device: PciDevice, topology: Topology) -> list[str]:
    """The device's interfaces that carry IP routes (the host's management network)."""
    return sorted(set(device.interfaces) & topology.routed_interfaces)


def _cut_off(device: PciDevice, names: list[str]) -> str:
    return (
        f"{device.address} carries {', '.join(names)}, which routes this host's traffic; "
        f"binding it to {DRIVER} would cut the host off (take the interface down and "
        "remove its addresses first, if it really is meant for kernel bypass)"
    )


class VfioKnob(KnobFamily):
    name = "vfio"
    boot_script = True
    managed_paths = (MODULES_LOAD,)

    def reads(self, profile: Profile) -> ReadSpec:
        bypass = profile.bypass
        wanted = bool(bypass.devices or bypass.iommu)
        return ReadSpec(commands=((STATE_COMMAND, STATE_SHELL),) if wanted else ())

    def desired(self, ctx: ResolveContext) -> Iterable[Setting]:
        bypass = ctx.profile.bypass
        if not (bypass.devices or bypass.iommu):
            return []
        settings = [ctx.setting(self.name, MODULE_KEY, LOADED, "bypass.driver")]
        for field, device in devices(ctx):
            names = routed(device, ctx.topology)
            if names:
                raise ResolveError(field, _cut_off(device, names))
            settings.append(
                ctx.setting(self.name, device_key(device.address), bypass.driver, field)
            )
        return settings

    def observe(self, setting: Setting, readings: Readings, topology: Topology) -> Observation:
        if setting.key == MODULE_KEY:
            state = readings.command(STATE_COMMAND)
            if state is None:
                return Observation(None, "unsupported", "the vfio state was not read")
            return Observation(LOADED if state.lines else UNLOADED)
        address = setting.key.removeprefix(DEVICE_PREFIX)
        device = topology.pci_devices.get(address)
        if device is None:
            return Observation(None, "missing", f"no PCI device {address} on this host")
        return Observation(device.driver or UNBOUND)

    def restore_rank(self, key: str) -> int:
        # Devices go back to their drivers before vfio-pci is unloaded.
        return 1 if key == MODULE_KEY else 0

    def steps_to_set(
        self, key: str, value: str | None, readings: Readings, topology: Topology
    ) -> tuple[Step, ...]:
        if key == MODULE_KEY:
            if value == LOADED:
                return (Run(("modprobe", DRIVER)),)
            if value == UNLOADED:
                return (Run(("modprobe", "-r", DRIVER)),)
            raise UnsafeStepError(f"refusing {value!r} for {key}")
        address = key.removeprefix(DEVICE_PREFIX)
        if address == key or value is None:
            raise UnsafeStepError(f"refusing {value!r} for {key}")
        device = topology.pci_devices.get(address)
        if device is not None and device.driver != value:
            names = routed(device, topology)
            if names:
                raise UnsafeStepError(_cut_off(device, names))
        driver = None if value == UNBOUND else value
        return (BindDriver(address, driver, override=driver in OVERRIDE_DRIVERS),)

    def native_files(
        self, settings: Sequence[Setting], readings: Readings, topology: Topology
    ) -> tuple[ManagedFile, ...]:
        if not any(setting.key == MODULE_KEY for setting in settings):
            return ()
        content = (
            "# Owned by quietcore: systemd-modules-load loads vfio-pci at every boot, before\n"
            "# quietcore's boot unit binds the bypass devices to it. `quietcore rollback`\n"
            "# removes this file.\n"
            f"{DRIVER}\n"
        )
        return (ManagedFile(MODULES_LOAD, content, self.name),)

    def node_check(self, setting: Setting) -> NodeCheck:
        if setting.key == MODULE_KEY:
            return NodeCheck(
                setting.key,
                f"/sys/bus/pci/drivers/{DRIVER}",
                "exists",
                setting.desired,
                "drift",
                absent_reason=f"{DRIVER} is not loaded",
            )
        address = setting.key.removeprefix(DEVICE_PREFIX)
        # A bound device appears in its driver's directory.
        return NodeCheck(
            setting.key,
            f"/sys/bus/pci/drivers/{setting.desired}/{address}",
            "exists",
            setting.desired,
            "drift",
            absent_reason=f"{address} is not bound to {setting.desired}",
            needs=(Need(f"/sys/bus/pci/devices/{address}", "missing", "no such PCI device"),),
        )
