"""Block device names: ``MAJ:MIN`` -> the kernel's name, for identifiers.

``<root>/sys/dev/block/MAJ:MIN/uevent`` has ``DEVNAME`` (``vda``, ``nvme0n1``,
``dm-0``); for a device-mapper device ``dm/name`` has the name people know
(``vg0-root``).  A device the system does not (or no longer) know is called
``MAJ_MIN``.

Names are cached per ``MAJ:MIN``: a found name for ``ttl`` seconds (a device
can be renamed or replaced under the same numbers), a miss for ``retry``
seconds, so a device seen for the first time is looked up at once and a
vanished one costs one failed lookup per ``retry`` seconds, never an exception.
"""

import re
import time

from . import fs, identifiers
from .root import HostRoot

MAX_NAME = 64          # leaves room for "discard-" and friends within collectd's 127
_MAJMIN = re.compile(r"^[0-9]+:[0-9]+$")


def fallback(majmin):
    return identifiers.sanitize(majmin.replace(":", "_"), MAX_NAME)


class DeviceNames(object):
    def __init__(self, root="/", clock=time.monotonic, ttl=300.0, retry=30.0, capacity=4096):
        self.root = HostRoot(root)
        self.clock = clock
        self.ttl = ttl
        self.retry = retry
        self.capacity = capacity
        self._cache = {}       # MAJ:MIN -> (name, valid until)
        self.lookups = 0       # sysfs lookups made (for tests and cost figures)

    def __call__(self, majmin):
        now = self.clock()
        entry = self._cache.get(majmin)
        if entry is not None and now < entry[1]:
            return entry[0]
        name = self.lookup(majmin)
        if len(self._cache) >= self.capacity:
            self._cache.clear()
        if name is None:
            name = fallback(majmin)
            self._cache[majmin] = (name, now + self.retry)
        else:
            self._cache[majmin] = (name, now + self.ttl)
        return name

    def lookup(self, majmin):
        """The device's name from sysfs, sanitised; None if sysfs does not know it."""
        if not _MAJMIN.match(majmin):
            return None
        self.lookups += 1
        base = self.root.sys("dev", "block", majmin) + "/"
        try:
            uevent = fs.read_text(base + "uevent")
        except OSError:
            return None
        name = None
        for line in uevent.splitlines():
            if line.startswith("DEVNAME="):
                name = line[8:].strip()
                break
        if name and name.startswith("dm-"):
            try:
                dm_name = fs.read_text(base + "dm/name").strip()
            except OSError:
                dm_name = ""
            name = dm_name or name
        if not name:
            return None
        return identifiers.sanitize(name, MAX_NAME)
