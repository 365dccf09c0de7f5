"""Metric readers, one module per controller.

A reader names the hierarchy it reads (``controller``), the files it needs on
a v1 and on a v2 hierarchy (``files_v1`` / ``files_v2``), and turns their
contents into samples with ``parse_v1`` / ``parse_v2``: pure functions from
``{file name: bytes or None}`` to a list of ``(type, type_instance, values)``.
Lines or fields they cannot use go to the ``bad`` list for the caller to log.
The collector does all I/O.

Two optional refinements, both used by the block I/O reader:

* an entry of ``files_v1``/``files_v2`` may be a tuple of alternatives: the
  first one the cgroup has is read, the others not (``X_recursive``, ``X``);
* a reader with ``probe_v1`` and ``select_v1(probe, notes)`` chooses its v1
  files once per pass from the hierarchy's top directory: the collector reads
  the ``probe_v1`` files there and reads in each container what ``select_v1``
  returns (``notes`` are logged once).
"""

from .blkio import Blkio
from .cpu import CpuThrottling, CpuUsage
from .memory import Memory
from .pids import Pids
from .pressure import Pressure

GROUPS = ("cpu", "memory", "blkio", "pids", "pressure")


def build(groups, per_cpu=False, device_names=None):
    """The readers for the chosen metric groups, in a stable order.  ``device_names``
    maps MAJ:MIN to a device name (devices.DeviceNames)."""
    readers = []
    if "cpu" in groups:
        readers += [CpuUsage(per_cpu=per_cpu), CpuThrottling()]
    if "memory" in groups:
        readers.append(Memory())
    if "blkio" in groups:
        readers.append(Blkio(device_names))
    if "pids" in groups:
        readers.append(Pids())
    if "pressure" in groups:
        readers.append(Pressure())
    return readers
