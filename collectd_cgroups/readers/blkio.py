"""Block I/O per device and per container: bytes and operations, read and write.

cgroup v1 has had three generations of statistics files, and which one counts
depends on the kernel and on each disk, not on which files exist:

* ``blkio.bfq.*`` (kernel 4.12+): requests on disks whose I/O scheduler is BFQ;
* ``blkio.io_*`` and ``blkio.sectors`` (CFQ, until 4.20): requests on CFQ disks;
* ``blkio.throttle.*``: bios on any disk before 5.0; since then only on disks
  where blk-throttle is active (a limit was once written for the disk).

Every file lists only the devices its generation counts, and the top directory
of the hierarchy (the root cgroup, which has a group on every disk) lists all of
them.  So once per pass the collector reads the top directory's plain
``io_service_bytes`` file of each generation (``probe_v1``), and ``select_v1``
keeps the generations that are the first, in the order above, to count some
device: usually one, so a container costs one file per kind (bytes, ops).  The
parser takes each device from the first generation that lists it, so a disk
counted by two generations is not counted twice.  Without a readable top
directory (a captured tree), every generation is read.

cgroup v2: ``io.stat`` (``rbytes wbytes rios wios dbytes dios`` per device,
hierarchical), one file.

Per device: ``disk_octets-<dev>`` and ``disk_ops-<dev>`` (read, write),
``total_bytes-discard-<dev>`` / ``total_operations-discard-<dev>`` where the
kernel counts discards (4.19+); per container ``disk_octets-total`` and
``disk_ops-total``, the sums over the devices listed (a stacked device, e.g.
device-mapper over a disk, is counted at each level, as ``docker stats`` does).
CFQ-era extras where present: ``queue_length-<dev>`` (GAUGE, requests queued
now), ``derive-disk_sectors-<dev>``, ``disk_time-service-<dev>`` and
``disk_time-wait-<dev>`` (read, write; milliseconds).  ``Sync``, ``Async`` and
``Total`` lines are sums of the others and never added again.

Device names come from ``names`` (``devices.DeviceNames``): MAJ:MIN -> the
kernel's name, or ``MAJ_MIN``.

Bounds and faults.  A container lists at most ``max_devices`` devices (MaxDevices): beyond that, the
first ones by (major, minor) are reported, no sample is built for the others, a :class:`base.Limit` in
``bad`` says so, and the ``total`` figures are still the sums over every device listed.  A counter that
is not a number (one device's ``Read`` line, its ``rbytes=``) costs that device's figure of that kind
(``disk_octets-sda``, both its read and write) and that kind's ``total`` (a sum without one device is
no total), nothing else.
"""

import re

from . import formats
from .base import Limit, Reader

READ, WRITE, DISCARD = 0, 1, 2
_OPS = {b"Read": READ, b"Write": WRITE, b"Discard": DISCARD}
_SUMS = frozenset((b"Sync", b"Async", b"Total"))
# dev_t has a 12-bit major and a 20-bit minor: 10 digits each leave room, and bound the names made of them.
_MAJMIN = re.compile(rb"[0-9]{1,10}:[0-9]{1,10}\Z")
NS_PER_MS = 10 ** 6

# io.stat keys -> (kind, index); other keys (cost.*, use_delay, ... of newer
# kernels and of io controllers like iocost) are ignored.
_V2_KEYS = {b"rbytes": ("bytes", READ), b"wbytes": ("bytes", WRITE), b"dbytes": ("bytes", DISCARD),
            b"rios": ("ops", READ), b"wios": ("ops", WRITE), b"dios": ("ops", DISCARD)}

TOTAL = "total"


class _Bad(object):
    __slots__ = ()

    def __repr__(self):
        return "BAD"


#: A counter of a device that could not be read (in place of its number in what the parsers return).
BAD = _Bad()

MAX_DEVICES = 64


class Generation(object):
    """One generation of v1 files: each kind is a (``_recursive``, plain) pair,
    read as alternatives: the recursive one counts the container's sub-cgroups too."""

    def __init__(self, name, prefix, extras=()):
        self.name = name
        self.probe = prefix + "io_service_bytes"
        self.kinds = [("bytes", _pair(prefix + "io_service_bytes")), ("ops", _pair(prefix + "io_serviced"))]
        self.kinds += [(kind, _pair(prefix + base)) for kind, base in extras]

    def files(self):
        return tuple(names for _, names in self.kinds)


def _pair(name):
    return (name + "_recursive", name)


GENERATIONS = (
    Generation("bfq", "blkio.bfq."),
    Generation("cfq", "blkio.", extras=(("queued", "io_queued"), ("sectors", "sectors"),
                                        ("service_time", "io_service_time"), ("wait_time", "io_wait_time"))),
    Generation("throttle", "blkio.throttle."),
)

# v1 file name -> (generation index, kind index, 0 for X_recursive / 1 for X, name): the order parse_v1
# takes them in.
_KIND_OF = dict((name, (g, k, alt, name)) for g, gen in enumerate(GENERATIONS)
                for k, (_, names) in enumerate(gen.kinds) for alt, name in enumerate(names))

# parse of each kind's file: rwstat (per device Read/Write/...) or one value per device
_SINGLE = frozenset(("sectors",))

# The identifiers of each kind's values (Reader.yields).
_YIELDS = {"bytes": ("disk_octets-*", "total_bytes-discard-*"), "ops": ("disk_ops-*", "total_operations-discard-*"),
           "queued": ("queue_length-*",), "sectors": ("derive-disk_sectors-*",),
           "service_time": ("disk_time-service-*",), "wait_time": ("disk_time-wait-*",)}


_majmin_seen = set()     # device tokens that matched _MAJMIN already (a handful per host)


def _is_majmin(dev):
    if dev in _majmin_seen:
        return True
    if _MAJMIN.match(dev) is None:
        return False
    if len(_majmin_seen) < 4096:
        _majmin_seen.add(dev)
    return True


def _number(token):
    """An int64 counter, or BAD (formats.number, with the fast test first)."""
    if token.isdigit() and len(token) <= 18:
        return int(token)
    value = formats.number(token)
    return BAD if value is None else value


def rwstat(data, bad):
    """``MAJ:MIN Op value`` lines (and a closing ``Total N``) -> {MAJ:MIN: [read, write, discard or None]}.
    A value that is not a number is BAD in its place (and described in ``bad``), whatever other line of
    the same device and operation says."""
    out = {}
    for line in data.split(b"\n"):
        parts = line.split()
        if len(parts) == 3:
            dev, op, token = parts
            index = _OPS.get(op)
            if index is None:                 # the sums are skipped unchecked: they are never used
                if op not in _SUMS:
                    bad.append("unknown operation %r" % op.decode("ascii", "replace")[:32])
                continue
            if _is_majmin(dev):
                entry = out.get(dev)
                if entry is None:
                    entry = out[dev] = [0, 0, None]
                value = _number(token)
                if value is BAD:
                    bad.append("malformed %s %s counter: %s" % (dev.decode("ascii"), op.decode("ascii"),
                                                                formats.what(token)))
                if entry[index] is not BAD:
                    entry[index] = value
                continue
        elif len(parts) == 2 and _OPS.get(parts[1]) is not None and _is_majmin(parts[0]):
            # "MAJ:MIN Read", the value missing: that device's counter is unknown
            entry = out.get(parts[0])
            if entry is None:
                entry = out[parts[0]] = [0, 0, None]
            entry[_OPS[parts[1]]] = BAD
            bad.append("malformed %s %s counter: empty" % (parts[0].decode("ascii"), parts[1].decode("ascii")))
            continue
        elif not parts or (len(parts) == 2 and parts[0] == b"Total"):
            continue
        bad.append(line)
    return out


def per_device(data, bad):
    """``MAJ:MIN value`` lines (blkio.sectors) -> {MAJ:MIN: value, or BAD}."""
    out = {}
    for line in data.split(b"\n"):
        parts = line.split()
        if not parts:
            continue
        if len(parts) == 2 and parts[0] == b"Total":
            continue
        if len(parts) != 2 or not _MAJMIN.match(parts[0]):
            bad.append(line)
            continue
        value = _number(parts[1])
        if value is BAD:
            bad.append("malformed %s sectors: %s" % (parts[0].decode("ascii"), formats.what(parts[1])))
        if out.get(parts[0], 0) is not BAD:
            out[parts[0]] = value
    return out


def io_stat(data, bad):
    """cgroup v2 io.stat -> {"bytes": {MAJ:MIN: [r, w, d]}, "ops": {...}}.  A device
    listed without counters has none yet (the kernel leaves out zeros): zeros.  A counter that is not a
    number is BAD in its place."""
    found = {"bytes": {}, "ops": {}}
    for line in data.split(b"\n"):
        parts = line.split()
        if not parts:
            continue
        if not _MAJMIN.match(parts[0]):
            bad.append(line)
            continue
        values = {"bytes": [0, 0, None], "ops": [0, 0, None]}
        malformed = False
        for token in parts[1:]:
            key, sep, value = token.partition(b"=")
            where = _V2_KEYS.get(key)
            if where is None:
                malformed = malformed or not sep
                continue
            kind = values[where[0]]
            if value.isdigit() and len(value) <= 18:
                if kind[where[1]] is not BAD:       # a bad counter wins, as in rwstat
                    kind[where[1]] = int(value)
                continue
            number = formats.number(value)
            if number is None:
                bad.append("malformed io.stat counter %s of %s: %s" % (
                    key.decode("ascii"), parts[0].decode("ascii"), formats.what(value)))
                kind[where[1]] = BAD
            elif kind[where[1]] is not BAD:
                kind[where[1]] = number
        if malformed:
            bad.append(line)
        for kind in ("bytes", "ops"):
            found[kind][parts[0]] = values[kind]
    return found


def _device_order(majmin):
    major, minor = majmin.split(b":")
    return int(major), int(minor)


class Blkio(Reader):
    group = "blkio"
    controller = "blkio"
    probe_v1 = tuple(g.probe for g in GENERATIONS)
    files_v1 = tuple(f for g in GENERATIONS for f in g.files())
    files_v2 = ("io.stat",)
    yields = dict([(name, _YIELDS[kind]) for g in GENERATIONS for kind, names in g.kinds for name in names]
                  + [("io.stat", _YIELDS["bytes"] + _YIELDS["ops"])])
    unchanged_reuse = True      # an idle container's block I/O files stay the same

    def __init__(self, names=None, max_devices=MAX_DEVICES):
        self.names = names if names is not None else (lambda majmin: majmin.replace(":", "_"))
        self.max_devices = max_devices

    # -- which v1 files --------------------------------------------------------

    def select_v1(self, probe, notes):
        """The v1 files to read in each container this pass, from the top directory's files."""
        if not probe:
            return self.files_v1          # nothing to go by: every generation, absent files drop out
        counted = set()
        files = []
        for gen in GENERATIONS:
            raw = probe.get(gen.probe)
            if raw is None:
                continue
            devices = set(rwstat(raw, []))
            if devices - counted:
                counted |= devices
                files.extend(gen.files())
        if not files:
            notes.append("no disk is accounted in this blkio hierarchy (no disk uses the BFQ or CFQ "
                         "scheduler, blk-throttle is not active on any): no block I/O figures until one is")
        return tuple(files)

    # -- parsing ---------------------------------------------------------------

    def parse_v1(self, data, bad):
        found = {}
        # Which (generation, kind) files are here, in generation order (usually one generation's two).
        present = sorted(_KIND_OF[name] for name in data if name in _KIND_OF)
        done = None
        for gen_index, kind_index, _, name in present:
            if (gen_index, kind_index) == done:
                continue                      # X_recursive was there: X is not read again
            done = (gen_index, kind_index)
            kind = GENERATIONS[gen_index].kinds[kind_index][0]
            raw = data[name]
            parsed = per_device(raw, bad) if kind in _SINGLE else rwstat(raw, bad)
            merged = found.get(kind)
            if merged is None:
                found[kind] = parsed
                continue
            for dev, value in parsed.items():
                merged.setdefault(dev, value)     # the first generation to list a device wins
        return self._samples(found, bad)

    def parse_v2(self, data, bad):
        raw = data.get("io.stat")
        if raw is None:
            return []
        return self._samples(io_stat(raw, bad), bad)

    def _samples(self, found, bad):
        devices = set()
        for per in found.values():
            devices.update(per)
        if not devices:
            return []
        every = sorted(devices, key=_device_order) if len(devices) > 1 else list(devices)
        order = every
        if len(every) > self.max_devices:
            # The first max_devices by MAJ:MIN; the others count in the totals only, no sample is built.
            order = every[:self.max_devices]
            bad.append(Limit("MaxDevices %d: %d block devices, the first %d by MAJ:MIN reported"
                             % (self.max_devices, len(devices), self.max_devices)))
        names, used = {}, set()
        for dev in order:
            text = dev.decode("ascii")
            name = self.names(text)
            if name == TOTAL or name in used:      # no real device is called "total"; never two alike
                name = text.replace(":", "_")
            used.add(name)
            names[dev] = name
        out = []
        for kind, type_, discard_type in (("bytes", "disk_octets", "total_bytes"),
                                          ("ops", "disk_ops", "total_operations")):
            per = found.get(kind)
            if not per:
                continue
            read = write = 0
            whole = True        # every device's counters known: the total is a total
            for dev in every:
                value = per.get(dev)
                if value is None:
                    continue
                r, w, d = value
                name = names.get(dev)       # None: past MaxDevices, in the total only
                if r is BAD or w is BAD:
                    whole = False
                else:
                    read += r
                    write += w
                    if name is not None:
                        out.append((type_, name, (r, w)))
                if name is not None and d is not None and d is not BAD:
                    out.append((discard_type, "discard-" + name, (d,)))
            if not whole:
                bad.append("%s-%s left out: a device's counters are not numbers" % (type_, TOTAL))
            elif read > formats.INT64_MAX or write > formats.INT64_MAX:
                bad.append("%s-%s left out: the sum over the devices is beyond the int64 range" % (type_, TOTAL))
            else:
                out.append((type_, TOTAL, (read, write)))
        if len(found) > ("bytes" in found) + ("ops" in found):     # the CFQ extras
            queued = found.get("queued", {})
            sectors = found.get("sectors", {})
            for dev in order:
                value = queued.get(dev)
                if value is not None:
                    r, w, d = value
                    if r is not BAD and w is not BAD and d is not BAD:
                        total = r + w + (d or 0)
                        if total <= formats.INT64_MAX:
                            out.append(("queue_length", names[dev], (total,)))
                value = sectors.get(dev)
                if value is not None and value is not BAD:
                    out.append(("derive", "disk_sectors-" + names[dev], (value,)))
                for kind, label in (("service_time", "service"), ("wait_time", "wait")):
                    value = found.get(kind, {}).get(dev)
                    if value is not None:
                        r, w, _ = value
                        if r is not BAD and w is not BAD:
                            out.append(("disk_time", "%s-%s" % (label, names[dev]), (r // NS_PER_MS, w // NS_PER_MS)))
        return out
