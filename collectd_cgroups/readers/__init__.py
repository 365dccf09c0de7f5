"""Metric readers, one module per controller, each a :class:`base.Reader` (the protocol: which
hierarchy and files, and pure parsers from file contents to samples; the pass does all I/O)."""

from .base import Limit, Reader  # noqa: F401 (the protocol)
from .blkio import Blkio
from .cpu import CpuThrottling, CpuUsage
from .memory import Memory
from .pids import Pids
from .pressure import Pressure

GROUPS = ("cpu", "memory", "blkio", "pids", "pressure")


def build(groups, per_cpu=False, device_names=None, max_devices=64):
    """The readers for the chosen metric groups, in a stable order.  ``device_names``
    maps MAJ:MIN to a device name (devices.DeviceNames); ``max_devices``: the most block devices
    reported per container (MaxDevices)."""
    readers = []
    if "cpu" in groups:
        readers += [CpuUsage(per_cpu=per_cpu), CpuThrottling()]
    if "memory" in groups:
        readers.append(Memory())
    if "blkio" in groups:
        readers.append(Blkio(device_names, max_devices=max_devices))
    if "pids" in groups:
        readers.append(Pids())
    if "pressure" in groups:
        readers.append(Pressure())
    return readers
