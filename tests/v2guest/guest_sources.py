"""What the kernel says, read without the plugin's code: the independent side of the in-guest checks.

``snapshot(dir)`` reads a cgroup directory's files with parsers of its own; ``expected(...)``
maps each identifier the plugin may emit on cgroup v2 to the figure it must carry, computed from
a snapshot.  An identifier this module cannot map is "unchecked", and the tests fail on it: every
identifier the plugin emits on v2 has to be accounted for here.
"""

import os
import re

USEC_PER_CENTISECOND = 10 ** 4

MEMORY_SINGLE = ("memory.current", "memory.peak", "memory.max", "memory.high", "memory.swap.current",
                 "memory.swap.max")


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode()
    except FileNotFoundError:
        return None


def flat(text):
    out = {}
    for line in text.splitlines():
        key, value = line.split(" ")
        out[key] = int(value)
    return out


def single(text):
    """int, or None for "max"."""
    text = text.strip()
    return None if text == "max" else int(text)


def pressure(text):
    """{"some": total usec, "full": total usec}."""
    out = {}
    for line in text.splitlines():
        kind, rest = line.split(" ", 1)
        out[kind] = int(dict(kv.split("=") for kv in rest.split(" "))["total"])
    return out


def io_stat(text):
    """{"MAJ:MIN": {"rbytes": n, ...}}."""
    out = {}
    for line in text.splitlines():
        dev, *fields = line.split()
        out[dev] = {k: int(v) for k, v in (f.split("=") for f in fields)}
    return out


def snapshot(directory, root=""):
    """The files of one cgroup directory; ``root`` is the prefix of a captured tree (block device
    names are looked up under ``<root>/sys/dev/block``)."""
    s = {"dir": directory, "root": root}
    for name in ("cpu.stat", "memory.stat", "memory.events"):
        text = _read(directory + "/" + name)
        s[name] = None if text is None else flat(text)
    for name in MEMORY_SINGLE + ("pids.current", "pids.max"):
        text = _read(directory + "/" + name)
        s[name] = "absent" if text is None else single(text)
    for r in ("cpu", "memory", "io"):
        text = _read("%s/%s.pressure" % (directory, r))
        s[r + ".pressure"] = None if text is None else pressure(text)
    text = _read(directory + "/io.stat")
    s["io.stat"] = None if text is None else io_stat(text)
    s["cgroup.procs"] = sorted(int(p) for p in _read(directory + "/cgroup.procs").split())
    s["cgroup.threads"] = sorted(int(p) for p in _read(directory + "/cgroup.threads").split())
    return s


def device_key(type_instance, devices, root=""):
    """The io.stat device ("MAJ:MIN") a disk_* type instance names: a device name (vda, per
    ``<root>/sys/dev/block/MAJ:MIN/uevent``), MAJ:MIN, or MAJ-MIN / MAJ_MIN."""
    m = re.match(r"^(\d+)[:_-](\d+)$", type_instance)
    if m:
        key = "%s:%s" % m.groups()
        return key if key in devices else None
    for key in devices:
        uevent = _read("%s/sys/dev/block/%s/uevent" % (root, key)) or ""
        if ("DEVNAME=%s\n" % type_instance) in uevent:
            return key
    return None


# io.stat fields behind the block I/O identifiers: collectd's two-valued disk types (read, write)
# and the discard counters.
DISK_TYPES = {"disk_octets": ("rbytes", "wbytes"), "disk_ops": ("rios", "wios")}
DISCARD_TYPES = {"total_bytes": "dbytes", "total_operations": "dios"}


def is_disk(type_, type_instance):
    """A block I/O identifier (whatever the plugin may emit for them, v1-only kinds included)."""
    return (type_ in ("disk_octets", "disk_ops", "disk_time", "disk_merged", "queue_length")
            or (type_ in DISCARD_TYPES and type_instance.startswith("discard-"))
            or (type_ == "derive" and type_instance.startswith("disk_")))


def _disk_value(type_, type_instance, devices, root):
    if type_ in DISK_TYPES:
        fields = DISK_TYPES[type_]
        if type_instance == "total":        # the sum over every device io.stat lists
            return tuple(sum(d.get(f, 0) for d in devices.values()) for f in fields)
        dev = device_key(type_instance, devices, root)
        if dev is not None:
            return tuple(devices[dev].get(f, 0) for f in fields)
    if type_ in DISCARD_TYPES and type_instance.startswith("discard-"):
        dev = device_key(type_instance[len("discard-"):], devices, root)
        if dev is not None:
            return (devices[dev].get(DISCARD_TYPES[type_], 0),)
    raise KeyError((type_, type_instance))


def expected_value(type_, type_instance, s):
    """The values (a tuple) identifier type-type_instance must carry per snapshot ``s``;
    raises KeyError when the identifier has no source on cgroup v2 (unchecked)."""
    cpu, mem, events = s["cpu.stat"] or {}, s["memory.stat"] or {}, s["memory.events"] or {}
    key = (type_, type_instance)
    if is_disk(type_, type_instance):
        return _disk_value(type_, type_instance, s["io.stat"] or {}, s["root"])
    if key == ("cpu", "user"):
        return (cpu["user_usec"] // USEC_PER_CENTISECOND,)
    if key == ("cpu", "system"):
        return (cpu["system_usec"] // USEC_PER_CENTISECOND,)
    if key == ("cpu", "total"):
        return (cpu["usage_usec"] // USEC_PER_CENTISECOND,)
    if key == ("derive", "cpu_periods"):
        return (cpu["nr_periods"],)
    if key == ("derive", "cpu_throttled_periods"):
        return (cpu["nr_throttled"],)
    if key == ("total_time_in_ms", "cpu_throttled"):
        return (cpu["throttled_usec"] // 1000,)
    if key == ("memory", "usage"):
        return (s["memory.current"],)
    if key == ("memory", "working_set"):
        return (max(s["memory.current"] - mem["inactive_file"], 0),)
    singles = {"max_usage": "memory.peak", "limit": "memory.max", "high": "memory.high",
               "swap_usage": "memory.swap.current", "swap_limit": "memory.swap.max"}
    if type_ == "memory" and type_instance in singles:
        value = s[singles[type_instance]]
        if value is None or value == "absent":
            raise KeyError(key)       # "max" (no limit) or no such file: must not be dispatched
        return (value,)
    if type_ == "derive" and type_instance.startswith("memory_") and type_instance[7:] in events:
        return (events[type_instance[7:]],)
    if type_ in ("memory", "vmpage_action") and type_instance in mem:
        if type_ != ("memory" if memory_stat_kinds(mem)[type_instance] == "bytes" else "vmpage_action"):
            raise KeyError(key)       # a byte figure as an event counter, or the reverse
        return (mem[type_instance],)
    m = re.match(r"^pressure_(cpu|memory|io)_(some|full)$", type_instance)
    if type_ == "total_time_in_ms" and m and s[m.group(1) + ".pressure"]:
        return (s[m.group(1) + ".pressure"][m.group(2)] // 1000,)
    if key == ("count", "pids"):
        return (s["pids.current"],)
    if key == ("count", "pids_limit") and s["pids.max"] not in (None, "absent"):
        return (s["pids.max"],)
    raise KeyError(key)


def expected_identifiers(s):
    """The identifiers other than block I/O that the plugin must emit for a cgroup v2 snapshot:
    what the files there carry (a cgroup whose parent enables no controller has only cpu.stat's
    usage figures and the pressure files)."""
    cpu = s["cpu.stat"] or {}
    ids = set()
    for type_instance, key in (("user", "user_usec"), ("system", "system_usec"), ("total", "usage_usec")):
        if key in cpu:
            ids.add(("cpu", type_instance))
    for ident, key in ((("derive", "cpu_periods"), "nr_periods"), (("derive", "cpu_throttled_periods"), "nr_throttled"),
                       (("total_time_in_ms", "cpu_throttled"), "throttled_usec")):
        if key in cpu:
            ids.add(ident)
    if s["memory.current"] != "absent":
        ids.add(("memory", "usage"))
        if s["memory.stat"] is not None:
            ids.add(("memory", "working_set"))
    for type_instance, name in (("max_usage", "memory.peak"), ("limit", "memory.max"), ("high", "memory.high"),
                                ("swap_usage", "memory.swap.current"), ("swap_limit", "memory.swap.max")):
        if s[name] not in (None, "absent"):
            ids.add(("memory", type_instance))
    if s["pids.current"] != "absent":
        ids.add(("count", "pids"))
    if s["pids.max"] not in (None, "absent"):
        ids.add(("count", "pids_limit"))
    for k in s["memory.events"] or ():
        ids.add(("derive", "memory_" + k))
    for field, kind in memory_stat_kinds(s["memory.stat"] or {}).items():
        ids.add(("memory" if kind == "bytes" else "vmpage_action", field))
    for r in ("cpu", "memory", "io"):
        for kind in s[r + ".pressure"] or ():
            ids.add(("total_time_in_ms", "pressure_%s_%s" % (r, kind)))
    return ids


def disk_coverage(emitted, s):
    """Problems with the block I/O identifiers ``emitted`` ({(type, type_instance)}) for snapshot
    ``s``, once the plugin emits any: each io.stat device needs disk_octets and disk_ops (and the
    discard counters where io.stat has dbytes/dios), plus the two totals."""
    devices = s["io.stat"] or {}
    problems = []
    for type_ in DISK_TYPES:
        covered = {device_key(ti, devices, s["root"]) for t, ti in emitted if t == type_ and ti != "total"}
        if covered != set(devices):
            problems.append("%s for devices %s, io.stat lists %s" % (type_, sorted(covered - {None}),
                                                                    sorted(devices)))
        if devices and (type_, "total") not in emitted:
            problems.append("no %s-total" % type_)
    for type_, field in DISCARD_TYPES.items():
        covered = {device_key(ti[len("discard-"):], devices, s["root"]) for t, ti in emitted
                   if t == type_ and ti.startswith("discard-")}
        want = {dev for dev, fields in devices.items() if field in fields}
        if covered != want:
            problems.append("%s-discard-* for devices %s, io.stat has %s for %s" % (type_, sorted(covered - {None}),
                                                                                 field, sorted(want)))
    return problems


def memory_stat_kinds(stat):
    """{field: "bytes" or "events"} for a memory.stat dict in the kernel's order.

    mm/memcontrol.c prints the byte figures first (memory_stats[], ending with "slab" or, with
    memory_hugetlb_accounting, "hugetlb"), then the event counters: the position tells which is
    which, independently of any list of names."""
    fields = list(stat)
    if not fields:
        return {}
    last = max(i for i, f in enumerate(fields) if f in ("slab", "hugetlb"))
    return {f: ("bytes" if i <= last else "events") for i, f in enumerate(fields)}


def proc_ticks(pid):
    """(utime, stime) in clock ticks from /proc/<pid>/stat."""
    with open("/proc/%d/stat" % pid, "rb") as f:
        d = f.read()
    x = d[d.rindex(b")") + 2:].split()
    return int(x[11]), int(x[12])


def proc_status(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                parts = line.split()
                return int(parts[1]) * (1024 if parts[-1] == "kB" else 1)
    raise KeyError(key)


def kernel_cmdline():
    with open("/proc/cmdline") as f:
        return f.read().split()


def proc_cgroups():
    """{controller: hierarchy id} from /proc/cgroups."""
    out = {}
    with open("/proc/cgroups") as f:
        for line in f:
            if not line.startswith("#"):
                parts = line.split()
                out[parts[0]] = int(parts[1])
    return out


def uname_release():
    return os.uname().release
