"""The soak's memory probe (``tests/soak/run.py --probe``): a tiny module loaded into the same collectd as
the plugin (same ``<Plugin python>`` block, hence the same interpreter), imported *before* the plugin.

Every ``Every`` seconds it appends one JSON line to ``Out``:

- ``rss_kib``: the process's VmRSS;
- ``traced_kib``: what Python's allocator holds (tracemalloc, when ``Tracemalloc true``: started at import,
  so every allocation of the plugin is traced), and the top ``Top`` differences by line against the first
  snapshot taken after ``Baseline`` seconds (the soak's warm-up);
- ``sizes``: the length of every dict, list, set, deque (and OrderedDict) reachable from the plugin's
  instances (``collectd_cgroups.plugin._instances``, attributes followed through objects of collectd_cgroups
  classes) and held in a module global of a ``collectd_cgroups`` module: a cache keyed by container shows
  up there as a length that keeps growing;
- ``objects``: counts of the most common Python object types (gc.get_objects), for the top differences;
- ``malloc_kib``: glibc's ``mallinfo2()`` over all arenas: ``in_use`` (allocated chunks, whoever asked:
  collectd, its plugins, Python), ``free`` (free chunks held in the arenas), ``arena`` (their total,
  ``sbrk`` and arena heaps), ``mmap`` (chunks mmapped on their own), ``releasable`` (free at the tops of
  the heaps): RSS that rises with ``in_use`` flat is the allocator's fragmentation, not a leak;
- ``rss_trimmed_kib`` (with ``CCGSOAK_TRIM=1`` in collectd's environment: ``--env CCGSOAK_TRIM=1``): VmRSS
  right after glibc's ``malloc_trim(0)``, which gives the free pages of every arena back to the kernel:
  what of the RSS was free heap, and (the next records) whether trimming keeps it flat.

Lab code: never loaded by users.  Standard library only.
"""

import collections
import ctypes
import gc
import json
import os
import sys
import time
import tracemalloc

import collectd

CONF = {"out": None, "every": 60.0, "baseline": 120.0, "top": 25, "tracemalloc": False}
STATE = {"start": time.monotonic(), "base": None, "base_objects": None, "base_sizes": None}
SEQUENCES = (dict, list, set, frozenset, collections.deque, collections.OrderedDict)


def configure(node):
    for child in node.children:
        key = child.key.lower()
        value = child.values[0] if child.values else None
        if key == "out":
            CONF["out"] = str(value)
        elif key in ("every", "baseline"):
            CONF[key] = float(value)
        elif key == "top":
            CONF["top"] = int(value)
        elif key == "tracemalloc":
            CONF["tracemalloc"] = bool(value)
    if CONF["tracemalloc"] and not tracemalloc.is_tracing():
        tracemalloc.start(8)


def _rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
        "keepcost")]


def _malloc_kib():
    """glibc's own account of the heap (None where the C library has no mallinfo2: glibc < 2.33, musl)."""
    try:
        libc = ctypes.CDLL(None)
        libc.mallinfo2.restype = _Mallinfo2
        info = libc.mallinfo2()
    except (AttributeError, OSError):
        return None
    return {"in_use": info.uordblks // 1024, "free": info.fordblks // 1024, "arena": info.arena // 1024,
            "mmap": info.hblkhd // 1024, "releasable": info.keepcost // 1024}


def _walk(obj, path, out, seen, depth):
    if id(obj) in seen or depth > 6:
        return
    seen.add(id(obj))
    if isinstance(obj, SEQUENCES):
        out[path] = len(obj)
        return
    cls = type(obj)
    if not (getattr(cls, "__module__", "") or "").startswith("collectd_cgroups"):
        return
    names = list(getattr(obj, "__dict__", {}).keys())
    for klass in cls.__mro__:
        names += [s for s in getattr(klass, "__slots__", ()) if isinstance(s, str)]
    for name in names:
        try:
            value = getattr(obj, name)
        except AttributeError:
            continue
        if callable(value) and not isinstance(value, SEQUENCES) and not hasattr(value, "__dict__"):
            continue
        if hasattr(value, "__self__") and not isinstance(value, SEQUENCES):   # a bound method: its object
            value = value.__self__
        _walk(value, "%s.%s" % (path, name), out, seen, depth + 1)


def sizes():
    out = {}
    seen = set()
    plugin = sys.modules.get("collectd_cgroups.plugin")
    for n, instance in enumerate(getattr(plugin, "_instances", []) or []):
        _walk(instance, "instance%d" % n, out, seen, 0)
    for name, module in list(sys.modules.items()):
        if not name.startswith("collectd_cgroups") or module is None:
            continue
        for attr, value in list(vars(module).items()):
            if isinstance(value, SEQUENCES) and not attr.startswith("__") and len(value) > 0:
                out.setdefault("%s.%s" % (name, attr), len(value))
            elif not isinstance(value, type) and (getattr(type(value), "__module__", "") or "").startswith(
                    "collectd_cgroups"):
                _walk(value, "%s.%s" % (name, attr), out, seen, 0)
    return out


def _objects():
    return collections.Counter(type(o).__name__ for o in gc.get_objects())


def read(data=None):
    now = time.monotonic() - STATE["start"]
    record = {"t": round(now, 1), "rss_kib": _rss_kib(), "malloc_kib": _malloc_kib(),
              "gc_objects": len(gc.get_objects())}
    if os.environ.get("CCGSOAK_TRIM") == "1":
        ctypes.CDLL(None).malloc_trim(0)
        record["rss_trimmed_kib"] = _rss_kib()
    cur_sizes = sizes()
    objects = _objects()
    if tracemalloc.is_tracing():
        snap = tracemalloc.take_snapshot().filter_traces((
            tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, __file__)))
        record["traced_kib"] = round(sum(s.size for s in snap.statistics("filename")) / 1024.0, 1)
        if STATE["base"] is None and now >= CONF["baseline"]:
            STATE["base"] = snap
        if STATE["base"] is not None:
            diffs = snap.compare_to(STATE["base"], "lineno")
            record["top"] = ["%+.1f KiB %+d blocks %s" % (d.size_diff / 1024.0, d.count_diff,
                                                          d.traceback.format()[0].strip())
                             for d in diffs[:CONF["top"]]]
            tb = snap.compare_to(STATE["base"], "traceback")
            record["top_tracebacks"] = ["%+.1f KiB %+d blocks\n    %s" % (
                d.size_diff / 1024.0, d.count_diff, "\n    ".join(l.strip() for l in d.traceback.format()
                                                                  if l.strip().startswith("File")))
                for d in tb[:5]]
    if STATE["base_sizes"] is None and now >= CONF["baseline"]:
        STATE["base_sizes"] = cur_sizes
        STATE["base_objects"] = objects
    if STATE["base_sizes"] is not None:
        base = STATE["base_sizes"]
        grown = sorted(((v - base.get(k, 0), k, v) for k, v in cur_sizes.items()), reverse=True)
        record["sizes_grown"] = ["%s: %d (%+d)" % (k, v, d) for d, k, v in grown[:15] if d]
        obj = sorted(((objects[k] - STATE["base_objects"].get(k, 0), k) for k in objects), reverse=True)
        record["objects_grown"] = ["%s %+d" % (k, d) for d, k in obj[:12] if d]
    record["sizes_largest"] = ["%s: %d" % (k, v) for k, v in
                               sorted(cur_sizes.items(), key=lambda kv: -kv[1])[:12]]
    if CONF["out"]:
        with open(CONF["out"], "a") as f:
            f.write(json.dumps(record) + "\n")


def init():
    collectd.register_read(read, CONF["every"], name="ccgsoak_probe")


if os.environ.get("CCGSOAK_TRACEMALLOC") == "1" and not tracemalloc.is_tracing():
    tracemalloc.start(8)
collectd.register_config(configure, name="ccgsoak_probe")
collectd.register_init(init)
