"""Metric readers, one module per controller.

A reader names the hierarchy it reads (``controller``), the files it needs on
a v1 and on a v2 hierarchy (``files_v1`` / ``files_v2``), and turns their
contents into samples with ``parse_v1`` / ``parse_v2``: pure functions from
``{file name: bytes or None}`` to a list of ``(type, type_instance, values)``.
Lines or fields they cannot use go to the ``bad`` list for the caller to log.
The collector does all I/O.
"""

from .cpu import CpuThrottling, CpuUsage
from .memory import Memory
from .pids import Pids
from .pressure import Pressure

GROUPS = ("cpu", "memory", "pids", "pressure")


def build(groups, per_cpu=False):
    """The readers for the chosen metric groups, in a stable order."""
    readers = []
    if "cpu" in groups:
        readers += [CpuUsage(per_cpu=per_cpu), CpuThrottling()]
    if "memory" in groups:
        readers.append(Memory())
    if "pids" in groups:
        readers.append(Pids())
    if "pressure" in groups:
        readers.append(Pressure())
    return readers
