"""Benchmark: the plugin's CPU cost per container and pass, next to a C floor, at 100 and 1000 containers.

Run as root from the checkout (``make bench`` does)::

    .venv/bin/python tests/bench/run.py [--sizes 100,1000] [--passes 15] [--intervals 30] [--rounds 3] [--profile]

What it does (everything it creates is its own, and removed at the end, also on Ctrl-C or SIGTERM):

1. builds ``box`` and ``floor`` (tests/bench/box.c, floor.c) with gcc in a temporary directory;
2. makes the lab (tests/bench/lab.py): a network namespace playing the host, then N containers: a cgroup
   directory in each hierarchy under ``ccgbench-<hex>``, one process, its own network namespace with a
   veth pair to the lab's host namespace, a little memory and I/O; first N = 100, later 900 more;
3. at each size measures, per container and pass:

   (a) in-process: the plugin's whole pass (``plugin.Instance.read``: discovery, every metric group,
       identifiers, the dispatch loop) on a thread inside the lab's host namespace, dispatching to a
       stand-in ``collectd.Values`` whose ``dispatch`` does nothing: the thread's CPU time per pass;
   (b) in collectd: collectd 5.12 with ``Interval 1`` and the network writer (to a port of the lab's
       loopback that nobody listens on), run under
       ``nsenter --net=<lab host namespace>`` with the soft RLIMIT_NOFILE of a systemd service (1024):
       the CPU time of the whole collectd process (every thread, from /proc/<pid>/task/*/schedstat) in
       each interval, minus the median of the same collectd without the plugin (no python plugin at all);
       and both processes' resident memory (VmRSS) at the end;
   (c) the C floor: ``floor`` opens, reads and closes every file the plugin read in a pass (as traced
       in a pass of the plugin: ``os.open``/``os.read``/``os.pread``/``os.scandir``), lists the same
       directories, and makes the same setns + netlink RTM_GETSTATS dump for each container;

   and for reference (d): collectd with a trivial Python module that dispatches the value lists of one pass
   of the plugin (in the plugin's batches, at its pace) and reads nothing, the same collectd with an idle
   Python module, and at the largest size (b) again with the IgnoreValue patterns of LEAN; and (a) and (c)
   again at collectd's cadence, with a 1-second pause before each pass (``--paced``);

   and with ``--peers`` (tests/bench/peers.py): collectd's C cgroups plugin with the network writer and with
   CSV, Netdata's cgroups collector alone, the plugin with NETDATA_SIZED (with and without network), and
   (c) with every file kept open and re-read with pread;

4. prints a table: medians over the passes (over the intervals for collectd) and their min-max spread,
   the ratios a/c and b/c, the scaling from the smallest to the largest size, the pass wall time, and
   collectd's resident memory split into the interpreter, collectd's value cache and the plugin.

Figures only: nothing here fails on time.  ``--profile`` adds cProfile's top functions for an in-process
pass at each size.
"""

import argparse
import concurrent.futures
import cProfile
import fcntl
import io
import os
import pickle
import pstats
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKOUT = os.path.dirname(os.path.dirname(HERE))      # the benchmark's own checkout: its lab
# A script measuring other checkouts sets sys.path itself (and imports nothing from tests/ but its lab.py):
# collectd_cgroups from SRC, imported before this checkout joins the path so that it stays SRC's (its
# submodules follow the package), then ccg_lab (the lab's synthetic containers) from this checkout.
sys.path.insert(0, HERE)
from srcarg import src_checkout  # noqa: E402
SRC = src_checkout(sys.argv[1:], CHECKOUT)        # the checkout whose collectd_cgroups is measured
sys.path.insert(1, SRC)
import collectd_cgroups  # noqa: E402,F401
sys.path.insert(1, CHECKOUT)

from lab import BenchLab, cleanup_stale  # noqa: E402
from ccg_lab.netlab import ctypes_setns  # noqa: E402
import names  # noqa: E402
import peers  # noqa: E402

COLLECTD = "/usr/sbin/collectd"
SYSTEMD_SOFT_NOFILE = 1024


# -- plumbing ------------------------------------------------------------------------------------------------

class Interrupted(BaseException):
    pass


def _on_signal(signum, frame):
    raise Interrupted("signal %d" % signum)


def build(workdir):
    """Compile box.c and floor.c; returns their paths."""
    out = {}
    for name in ("box", "floor"):
        path = os.path.join(workdir, name)
        res = subprocess.run(["gcc", "-O2", "-Wall", "-o", path, os.path.join(HERE, name + ".c")],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if res.returncode != 0:
            raise RuntimeError("gcc %s.c failed:\n%s" % (name, res.stdout.decode(errors="replace")))
        out[name] = path
    return out


def stats(values):
    return statistics.median(values), min(values), max(values)


# -- (a) in-process ------------------------------------------------------------------------------------------

class Sink(object):
    """Stand-in for collectd.Values: keeps what the plugin sets, ``dispatch`` discards it (or, while
    ``Sink.recording`` is a list, appends the value list to it)."""

    __slots__ = ("host", "plugin", "plugin_instance", "type", "type_instance", "values", "interval", "time",
                 "meta")
    recording = None

    def __init__(self, **kw):
        self.meta = {}
        for key, value in kw.items():
            setattr(self, key, value)

    def dispatch(self):
        if Sink.recording is not None:
            Sink.recording.append((self.plugin_instance, self.type, self.type_instance, tuple(self.values),
                                   dict(self.meta)))


def stub_collectd():
    """A ``collectd`` module just complete enough to import the plugin; logs kept in ``messages``."""
    mod = types.ModuleType("collectd")
    mod.messages = []
    mod.Values = Sink
    for level in ("error", "warning", "notice", "info", "debug"):
        setattr(mod, level, lambda msg, level=level: mod.messages.append((level, msg)))
    for hook in ("register_config", "register_init", "register_read", "register_shutdown"):
        setattr(mod, hook, lambda *a, **kw: None)
    sys.modules["collectd"] = mod
    return mod


class Tracer(object):
    """What a pass reads, in order: [("D", dir) | ("F", file) | ("N", "/proc/<pid>/ns/net")], from
    os.open/read/pread/scandir and netns.call_in (a container's namespace entered for its netlink socket)."""

    def __init__(self):
        self.paths = {}         # fd -> path, for every os.open since install()
        self.on = False
        self.events = []
        self.saved = {}

    def install(self):
        tracer = self
        real = self.saved = {n: getattr(os, n) for n in ("open", "read", "pread", "scandir")}
        real_fcntl = self.saved_fcntl = fcntl.fcntl

        def fcntl_(fd, cmd, arg=0):
            result = real_fcntl(fd, cmd, arg)
            if cmd in (fcntl.F_DUPFD, fcntl.F_DUPFD_CLOEXEC) and fd in tracer.paths:
                tracer.paths[result] = tracer.paths[fd]     # a descriptor moved up (fs.KeptFiles)
            return result
        fcntl.fcntl = fcntl_

        def open_(path, flags, *a, **kw):
            fd = real["open"](path, flags, *a, **kw)
            tracer.paths[fd] = os.fsdecode(path)
            return fd

        def read_(fd, n):
            if tracer.on and fd in tracer.paths:
                tracer.events.append(("F", tracer.paths[fd]))
            return real["read"](fd, n)

        def pread_(fd, n, offset):
            if tracer.on and fd in tracer.paths:
                tracer.events.append(("F", tracer.paths[fd]))
            return real["pread"](fd, n, offset)

        def scandir_(path="."):
            if tracer.on:
                tracer.events.append(("D", os.fsdecode(path)))
            return real["scandir"](path)

        os.open, os.read, os.pread, os.scandir = open_, read_, pread_, scandir_
        from collectd_cgroups import fs, netns
        real_call_in = self.saved_call_in = netns.call_in

        def call_in(handle, home, fn):
            if tracer.on:
                tracer.events.append(("N", handle.path))     # /proc/<pid>/ns/net
            return real_call_in(handle, home, fn)
        netns.call_in = call_in
        self.saved_fs_pread = getattr(fs, "_pread", None)
        if self.saved_fs_pread is not None:
            fs._pread = pread_          # fs binds os.pread at import, for its fast path

    def uninstall(self):
        for name, fn in self.saved.items():
            setattr(os, name, fn)
        fcntl.fcntl = self.saved_fcntl
        from collectd_cgroups import netns
        netns.call_in = self.saved_call_in
        if self.saved_fs_pread is not None:
            from collectd_cgroups import fs
            fs._pread = self.saved_fs_pread


class SpawnCounter(object):
    """Counts fork/exec/spawn calls made through Python while active (a pass must make none)."""

    NAMES = ("fork", "forkpty", "posix_spawn", "posix_spawnp", "execv", "execve", "execvp", "execvpe",
             "system", "popen")

    def __init__(self, calls):
        self.calls = calls
        self.saved = {}

    def __enter__(self):
        for name in self.NAMES:
            real = getattr(os, name, None)
            if real is None:
                continue
            self.saved[name] = real

            def counting(*a, _name=name, _real=real, **kw):
                self.calls.append(_name)
                return _real(*a, **kw)
            setattr(os, name, counting)
        self.saved_popen = subprocess.Popen.__init__

        def popen_init(popen, *a, **kw):
            self.calls.append("subprocess.Popen")
            return self.saved_popen(popen, *a, **kw)
        subprocess.Popen.__init__ = popen_init
        return self

    def __exit__(self, *exc):
        for name, real in self.saved.items():
            setattr(os, name, real)
        subprocess.Popen.__init__ = self.saved_popen


def floor_plan(events, pids):
    """The floor's plan from a traced pass: D and F lines, and an N line for each container namespace the
    pass entered (of one of the lab's PIDs)."""
    lines = []
    last = None
    for kind, path in events:
        if kind == "F" and path == last:
            continue        # a file read in two gulps (larger than one buffer): one open in the floor
        last = path
        if kind == "N":
            pid = int(path.split("/")[-3])
            if pid in pids:
                lines.append("N %d" % pid)
            continue
        lines.append("%s %s" % (kind, path))
    return lines


class InProcess(object):
    """(a): every method runs on a thread inside the lab's host namespace (see measure)."""

    def __init__(self, lab, variants=False):
        from collectd_cgroups import collector, plugin
        self.lab = lab
        self.collector_mod, self.plugin_mod = collector, plugin
        self.inst = self.plain = None
        # variants: also the plugin with the IgnoreValue patterns of LEAN and of NETDATA_SIZED
        self.variants = {"lean": None, "netdata-sized": None} if variants else {}
        self.out = {"cpu_us": [], "wall_ms": [], "cpu_us_plain": [], "spawned": 0}
        self.out.update(("cpu_us_" + k, []) for k in self.variants)

    def options(self, **kw):
        lab = self.lab
        return self.collector_mod.Options(match=[(lab.match_regex(), "bench")], ignore=[lab.ignore_regex()], **kw)

    def setup(self):
        """The floor's plan (a traced pass), the value lists of one pass, the instances warmed up."""
        collector, plugin, lab, out = self.collector_mod, self.plugin_mod, self.lab, self.out
        n = lab.count
        # The plan: a collector of its own, traced from its start, its third pass recorded.
        tracer = Tracer()
        tracer.install()
        traced = None
        try:
            traced = collector.Collector(self.options())
            traced.collect()
            traced.collect()
            tracer.on = True
            results = traced.collect()
            tracer.on = False
        finally:
            tracer.uninstall()
        out["plan"] = floor_plan(tracer.events, set(lab.pids))
        # Cross-check: the files traced in each container's directories are those the collector says it reads.
        mine = "/%s/" % lab.prefix

        def in_a_container(path):
            # under a container's directory: not the lab's own (whose cgroup.stat discovery reads to learn
            # whether its subdirectories are leaves)
            return mine in path and "/" in path.split(mine, 1)[1]
        traced_files = set(p for k, p in tracer.events if k == "F" and in_a_container(p))
        if hasattr(traced, "files_read"):
            said = set(p for c in traced.discover() for p in traced.files_read(c))
            # Limit files are read every 30 s, each container at its own time: one may fall due between
            # the traced pass and the question.
            rare = set().union(*(getattr(r, "rare_files", ()) for r in traced.readers))
            if set(p for p in traced_files ^ said if os.path.basename(p) not in rare):
                raise RuntimeError("the trace and Collector.files_read disagree: %d traced, %d said; e.g. %s"
                                   % (len(traced_files), len(said), sorted(traced_files ^ said)[:4]))
        # Limit files (readers' rare_files) are read every 30 s, not in the traced pass: counted apart.
        rare_read = 0
        if hasattr(traced, "tracks"):
            steps = traced.plan().steps
            for c in traced.discover():
                absent = traced.tracks.get(c).absent
                rare_read += sum(1 for reader, mount_path, _, files in steps if mount_path in c.dirs
                                 for entry in files if entry[0] in getattr(reader, "rare_files", ())
                                 and entry[0] not in absent)
        out["rare_per_container"] = rare_read / float(n)
        if hasattr(traced, "close"):
            traced.close()
        out["files_per_container"] = sum(1 for k, p in tracer.events if k == "F" and in_a_container(p)) / float(n)
        out["containers_seen"] = len(results)
        out["with_network"] = sum(1 for r in results if any(s[0] == "if_octets" for s in r.samples))
        out["with_blkio"] = sum(1 for r in results if any(s[0] == "disk_octets" for s in r.samples))
        out["without_blkio"] = [r.container.name for r in results
                                if not any(s[0] == "disk_octets" for s in r.samples)]
        self.inst = plugin.Instance(self.options())
        Sink.recording = []
        try:
            self.inst.read()
            out["dispatched"] = Sink.recording
        finally:
            Sink.recording = None
        out["values_per_container"] = len(out["dispatched"]) / float(n)
        for _ in range(2):
            self.inst.read()
        # The same with every file opened, read and closed each pass (no kept descriptors), where the
        # plugin has the choice: what keeping them saves.
        try:
            self.plain = plugin.Instance(self.options(keep_files=False))
        except TypeError:
            self.plain = None
        if self.plain is not None:
            for _ in range(2):
                self.plain.read()
        if self.variants and _knows_ignore_value():
            patterns = {"lean": list(LEAN), "netdata-sized": netdata_sized_ignore(out["dispatched"])}
            for key in self.variants:
                self.variants[key] = inst = plugin.Instance(self.options(ignore_values=patterns[key]))
                for _ in range(2):
                    inst.read()
        return self

    def _release(self):
        """With variants: every instance's kept files closed, so that the one measured next may keep its
        own (the process's descriptors, RLIMIT_NOFILE, hold one instance's at 1000 containers)."""
        if self.variants:
            for inst in [self.inst] + list(self.variants.values()):
                if inst is not None and hasattr(inst.collector, "close"):
                    inst.collector.close()

    def _warm(self, inst):
        """After _release: a pass that opens the files again, not measured."""
        if self.variants:
            inst.read()

    def timed(self, passes):
        n, out = self.lab.count, self.out
        spawned = []
        self._release()
        self._warm(self.inst)
        with SpawnCounter(spawned):
            for _ in range(passes):
                t0, w0 = time.thread_time(), time.perf_counter()
                self.inst.read()
                out["cpu_us"].append((time.thread_time() - t0) / n * 1e6)
                out["wall_ms"].append((time.perf_counter() - w0) * 1e3)
        out["spawned"] += len(spawned)
        for key, inst in [("plain", self.plain)] + sorted(self.variants.items()):
            if inst is None:
                continue
            self._release()
            self._warm(inst)
            for _ in range(passes):
                t0 = time.thread_time()
                inst.read()
                out["cpu_us_" + key].append((time.thread_time() - t0) / n * 1e6)

    def paced(self, passes, gap):
        """Passes with an idle pause of ``gap`` seconds before each, as collectd runs them: the CPU's
        caches are cold at the start of each."""
        n, out = self.lab.count, self.out
        out["cpu_us_paced"] = []
        self._release()
        self._warm(self.inst)
        for _ in range(passes):
            time.sleep(gap)
            t0 = time.thread_time()
            self.inst.read()
            out["cpu_us_paced"].append((time.thread_time() - t0) / n * 1e6)

    def profile(self):
        self._release()
        self._warm(self.inst)
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(3):
            self.inst.read()
        prof.disable()
        text = io.StringIO()
        pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(22)
        self.out["profile"] = text.getvalue()

    def close(self):
        for inst in [self.inst, self.plain] + list(self.variants.values()):
            if inst is not None and hasattr(inst.collector, "close"):
                inst.collector.close()
        for key in ["plain"] + list(self.variants):
            if not self.out["cpu_us_" + key]:
                del self.out["cpu_us_" + key]
        return self.out


# -- (c) the C floor -----------------------------------------------------------------------------------------

def floor(lab, binary, plan, passes, workdir, gap=0.0, keep=False):
    """``gap``: seconds of idle pause before each pass (collectd's cadence; 0: back to back); ``keep``:
    every file opened once and re-read with pread (the floor of a collector that keeps them open)."""
    path = os.path.join(workdir, "plan-%d" % lab.count)
    if not os.path.exists(path):
        with open(path, "w") as f:
            f.write("\n".join(plan) + "\n")
    res = subprocess.run(["nsenter", "--net=" + lab.host_path, "--", binary, str(passes + 1), path,
                          str(int(gap * 1000))] + (["keep"] if keep else []),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600,
                         preexec_fn=lambda: peers.die_with_parent(signal.SIGKILL))
    if res.returncode != 0:
        raise RuntimeError("floor failed: %s" % res.stderr.decode(errors="replace"))
    rows = [line.split() for line in res.stdout.decode().splitlines() if line.startswith("pass ")]
    rows = rows[1:]     # the first pass warms the caches up
    n = lab.count
    return {"cpu_us": [int(r[1]) / 1e3 / n for r in rows], "wall_ms": [int(r[2]) / 1e6 for r in rows],
            "links": int(rows[-1][4])}


# -- (b) in collectd -----------------------------------------------------------------------------------------

RUNNING = {}        # pid -> Popen of every collectd we started (stopped in cleanup, by PID)

CONF = """\
Hostname "ccgbench"
FQDNLookup false
BaseDir "{dir}"
Interval {interval}
LoadPlugin logfile
<Plugin logfile>
  LogLevel info
  File "{dir}/collectd.log"
  Timestamp true
</Plugin>
# The writer: the network plugin to a port nobody listens on, inside the lab's own namespace (loopback).
# (With no write plugin at all, collectd logs a complaint for every value: not a figure to measure.)
LoadPlugin network
<Plugin network>
  Server "127.0.0.1" "25826"
</Plugin>
"""

# A leaner set of values, as the README's "Benchmark" section suggests for hosts where collectd's memory
# matters more than the detail: about what `docker stats` shows (CPU, memory usage and limit, network and
# block I/O, PIDs), 15 of the 48 values per container of the lab.
LEAN = ("derive-cpu_*periods", "total_time_in_ms-*", "memory-*active_*", "memory-unevictable", "memory-dirty",
        "memory-writeback", "memory-mapped_file", "memory-shmem", "memory-rss_huge", "memory-swapcached",
        "memory-max_usage", "derive-memory_*", "vmpage_action-*", "disk_*-total", "total_bytes-discard-*",
        "total_operations-discard-*")

# A value set the size of Netdata's (its cgroups collector made 22 dimensions per container of the lab, in
# 10 charts): the plugin's value lists for what those charts show, where the plugin has it (CPU user and
# system for per-core CPU, memory.stat's cache, mapped_file, rss, rss_huge, swap, dirty and writeback, the
# usage, page-in/out and faults, the blkio bytes and operations), and the interface bytes and packets that
# Netdata shows from its proc collector instead: 18 value lists, 22 values.
NETDATA_SIZED = ("cpu-user", "cpu-system", "memory-cache", "memory-mapped_file", "memory-rss", "memory-rss_huge",
                 "memory-swap", "memory-dirty", "memory-writeback", "memory-usage", "vmpage_action-pgpgin",
                 "vmpage_action-pgpgout", "vmpage_action-pgfault", "vmpage_action-pgmajfault", "disk_octets-total",
                 "disk_ops-total", "if_octets-eth0", "if_packets-eth0")
PLUGIN_MODES = ("plugin", "lean", "netdata-sized", "netdata-sized-nonet")
GROUPS = getattr(__import__("collectd_cgroups.config").config, "GROUPS", ())


def netdata_sized_ignore(dispatched):
    """IgnoreValue patterns leaving NETDATA_SIZED alone, as a user would write them: ``type-*`` for a type
    none of NETDATA_SIZED has, every other identifier the plugin dispatched by its name."""
    keep = set(NETDATA_SIZED)
    kept_types = set(ident.split("-", 1)[0] for ident in keep)
    out = []
    for _, t, ti, _, _ in dispatched:
        ident = "%s-%s" % (t, ti) if ti else t
        pattern = ident if t in kept_types or not ti else t + "-*"
        if ident not in keep and pattern not in out:
            out.append(pattern)
    return out


def values_of(dispatched, kept=None):
    """(value lists, values) in ``dispatched``, or in those of its identifiers in ``kept``."""
    lists = [v for _, t, ti, v, _ in dispatched if kept is None or ("%s-%s" % (t, ti) if ti else t) in kept]
    return len(lists), sum(len(v) for v in lists)


CONF_PLUGIN = """\
<LoadPlugin python>
  Globals true
</LoadPlugin>
<Plugin python>
  ModulePath "{src}"
  Import "collectd_cgroups.plugin"
  <Module "collectd_cgroups">
    Match "{match}" "bench"
    Ignore "{ignore}"
{extra}  </Module>
</Plugin>
"""


def _cpu_ns(pid):
    """CPU time of every thread of ``pid`` (nanoseconds, /proc/<pid>/task/*/schedstat)."""
    total = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                total += int(f.read().split()[0])
        except (OSError, IndexError, ValueError):
            pass
    return total


def _rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def _nofile_of(pid):
    """(soft, hard) RLIMIT_NOFILE of ``pid``."""
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                parts = line.split()
                return parts[3], parts[4]
    return None


def _log_has(path, text):
    try:
        with open(path) as f:
            return text in f.read()
    except OSError:
        return False


def _collectd_child():
    """preexec_fn of collectd: the soft open-files limit of a systemd service, and SIGTERM when the
    benchmark dies (even by SIGKILL: the kernel sends it, nsenter's exec keeps it)."""
    import resource
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(SYSTEMD_SOFT_NOFILE, hard), hard))
    peers.die_with_parent(signal.SIGTERM)


REPLAY = """\
# The benchmark's reference (d): dispatch the value lists one pass of the plugin dispatched, as its
# dispatch loop does, in the plugin's batches, and do nothing else: what collectd itself costs for those
# values.  Between batches it pauses for as long as the plugin takes to read a batch's containers (its
# pass wall time in (a)), so that collectd's write threads drain the queue as they do behind the plugin.
import pickle
import time

import collectd

with open({path!r}, "rb") as f:
    CONTAINERS = pickle.load(f)
PAUSE = {pause!r}
EVERY = {every!r}
# collectd's resident memory with these value lists loaded and none dispatched yet: what the module's
# own data costs, taken off (d)'s figure so that (d) shows collectd's value cache alone.
with open("/proc/self/status") as f, open({rss_path!r}, "w") as out:
    out.write([line.split()[1] for line in f if line.startswith("VmRSS:")][0])
EMPTY = {{}}
v = collectd.Values(plugin="container")


def read():
    last_type = last_meta = None
    for n, (instance, items) in enumerate(CONTAINERS):
        if n % EVERY == EVERY - 1:
            time.sleep(PAUSE)
        v.plugin_instance = instance
        for type_, type_instance, values, meta in items:
            meta = meta or EMPTY
            if meta is not last_meta:
                v.meta = last_meta = meta
            if type_ is not last_type:
                v.type = last_type = type_
            v.type_instance = type_instance
            v.values = values
            v.dispatch()


collectd.register_read(read)
"""

CONF_REPLAY = """\
<LoadPlugin python>
  Globals true
</LoadPlugin>
<Plugin python>
  ModulePath "{dir}"
  Import "{module}"
</Plugin>
"""

IDLE = """\
# The benchmark's reference: the python plugin and an interpreter, nothing read, nothing dispatched.
import collectd  # noqa: F401
"""


def collectd_run(lab, mode, intervals, workdir, interval=1.0, dispatched=None, tag=0, pace=0.0):
    """Per-interval CPU (ms) of a collectd over ``intervals`` intervals, its RSS (KiB) and descriptors.
    ``mode``: "base" (no python plugin), "plugin" (the plugin), "lean" (the plugin with the IgnoreValue
    options of LEAN), "netdata-sized" (the plugin keeping NETDATA_SIZED alone), "netdata-sized-nonet" (the
    same without its network group), "replay" (``dispatched`` value lists dispatched by a trivial module,
    pausing ``pace`` seconds per container), "idle" (the python plugin with a module that does nothing),
    "cgroups" and "cgroups-csv" (collectd's C cgroups plugin, with the network writer or with CSV)."""
    d = os.path.join(workdir, "collectd-%s-%d-%d" % (mode, lab.count, tag))
    os.mkdir(d)
    conf = CONF.format(dir=d, interval=interval)
    if mode == "cgroups-csv":
        conf = conf[:conf.index("LoadPlugin network")] + peers.CONF_CSV.format(dir=d)
    with_plugin = mode in PLUGIN_MODES + ("replay", "cgroups", "cgroups-csv")
    if mode in PLUGIN_MODES:
        ignored = {"lean": LEAN}.get(mode) or (netdata_sized_ignore(dispatched) if "netdata" in mode else ())
        extra = "".join('    IgnoreValue "%s"\n' % p for p in ignored)
        if mode == "netdata-sized-nonet":
            extra += '    Metrics %s\n' % " ".join('"%s"' % g for g in GROUPS if g != "network")
        conf += CONF_PLUGIN.format(src=SRC, match=lab.match_regex().replace("\\", "\\\\"),
                                   ignore=lab.ignore_regex().replace("\\", "\\\\"), extra=extra)
    elif mode in ("cgroups", "cgroups-csv"):
        conf += peers.CONF_CGROUPS
    elif mode == "replay":
        containers = []
        for i, t, ti, v, m in dispatched:
            if not containers or containers[-1][0] != i:
                containers.append((i, []))
            containers[-1][1].append((t, ti, v, m or None))
        with open(d + "/values.pickle", "wb") as f:
            pickle.dump(containers, f)
        with open(d + "/ccgbench_replay.py", "w") as f:
            # The plugin dispatches in batches of DISPATCH_BATCH values (older checkouts: a whole pass).
            from collectd_cgroups import plugin
            batch = getattr(plugin, "DISPATCH_BATCH", len(dispatched))
            every = max(1, int(round(batch * len(containers) / float(len(dispatched)))))
            f.write(REPLAY.format(path=d + "/values.pickle", pause=round(every * pace, 6), every=every,
                                  rss_path=d + "/loaded_rss"))
        conf += CONF_REPLAY.format(dir=d, module="ccgbench_replay")
    elif mode == "idle":
        with open(d + "/ccgbench_idle.py", "w") as f:
            f.write(IDLE)
        conf += CONF_REPLAY.format(dir=d, module="ccgbench_idle")
    with open(d + "/collectd.conf", "w") as f:
        f.write(conf)
    log = d + "/collectd.log"
    p = subprocess.Popen(["nsenter", "--net=" + lab.host_path, "--", COLLECTD, "-f", "-C", d + "/collectd.conf"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                         preexec_fn=_collectd_child)
    RUNNING[p.pid] = p
    try:
        ready = "container(s) found" if mode in PLUGIN_MODES else "Initialization complete"
        deadline = time.monotonic() + 60
        while not _log_has(log, ready):
            if p.poll() is not None or time.monotonic() > deadline:
                with open(log) as f:
                    raise RuntimeError("collectd did not get ready:\n" + f.read()[-3000:])
            time.sleep(0.05)
        time.sleep(3 * interval)        # warm-up: namespaces learnt, caches filled
        deltas = sample_intervals([p.pid], intervals, interval, find_burst=with_plugin)
        rss = _rss_kib(p.pid)
        fds = len(os.listdir("/proc/%d/fd" % p.pid))
        nofile = _nofile_of(p.pid)
        threads = len(os.listdir("/proc/%d/task" % p.pid))
        if p.poll() is not None:
            raise RuntimeError("collectd exited during the measurement (status %s)" % p.returncode)
        with open(log) as f:
            logtext = f.read()
        if mode == "cgroups-csv":       # the C plugin saw every container: a CSV directory each
            seen = len([n for n in os.listdir(d + "/csv/ccgbench") if n.startswith("cgroups-c")])
    finally:
        stop(p)
    warnings = [l for l in logtext.splitlines() if "collectd_cgroups" in l and ("warn" in l.lower()
                                                                               or "error" in l.lower())]
    out = {"cpu_ms": deltas, "rss_kib": rss, "fds": fds, "warnings": warnings, "nofile": nofile,
           "threads": threads}
    if mode == "replay":
        with open(d + "/loaded_rss") as f:
            out["loaded_rss_kib"] = int(f.read())
    if mode == "cgroups-csv":
        out["seen"] = seen
    return out


def sample_intervals(pids, intervals, interval, find_burst=True):
    """CPU time (ms) of ``pids`` (every thread) in each of ``intervals`` intervals.  With ``find_burst``
    the intervals begin just before the collector's passes: the CPU is sampled every 2 ms for an interval
    and a half, and the moment the largest burst began is taken as the phase of the passes."""
    def cpu():
        return sum(_cpu_ns(pid) for pid in pids)
    start = time.monotonic()
    samples = []
    while time.monotonic() - start < 1.5 * interval:
        samples.append((time.monotonic(), cpu()))
        time.sleep(0.002)
    jumps = [(b[1] - a[1], a[0]) for a, b in zip(samples, samples[1:])]
    burst_at = max(jumps)[1] if find_burst else start
    t = burst_at - 0.05 * interval
    while t < time.monotonic() + 0.01:
        t += interval
    marks = []
    for _ in range(intervals + 1):
        time.sleep(max(0.0, t - time.monotonic()))
        marks.append(cpu())
        t += interval
    return [(b - a) / 1e6 for a, b in zip(marks, marks[1:])]


def netdata_run(lab, intervals, workdir, tag=0, cgroups=True, interval=1.0):
    """Per-interval CPU (ms) of a Netdata with its cgroups collector alone (or, ``cgroups=False``, with no
    collector), its RSS (KiB), and the charts and dimensions it made per container."""
    nd = peers.Netdata(lab, workdir, tag, cgroups=cgroups).start(RUNNING)
    try:
        mine = nd.wait_ready()
        time.sleep(3 * interval)
        deltas = sample_intervals(nd.pids(), intervals, interval, find_burst=cgroups)
        rss = _rss_kib(nd.proc.pid)
        threads = len(os.listdir("/proc/%d/task" % nd.proc.pid))
        if nd.proc.poll() is not None:
            raise RuntimeError("netdata exited during the measurement (status %s)" % nd.proc.returncode)
    finally:
        nd.stop(RUNNING)
    n = float(lab.count)
    return {"cpu_ms": deltas, "rss_kib": rss, "threads": threads,
            "charts_per_container": sum(len(c) for c in mine.values()) / n,
            "values_per_container": sum(len(d) for c in mine.values() for d in c.values()) / n,
            "charts": sorted(set(k.split(".", 1)[1] for c in mine.values() for k in c))}


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)
    RUNNING.pop(p.pid, None)


# -- the run -------------------------------------------------------------------------------------------------

def measure(lab, args, bins, workdir, host, last=True):
    n = lab.count
    print("\n== N = %d containers" % n, flush=True)
    # (a) and (c) alternate over the rounds as well, so that a busy spell of the neighbours (this machine is
    # shared) falls on both alike.
    ip = host.submit(InProcess(lab, variants=args.peers).setup).result()
    c = {"cpu_us": [], "wall_ms": [], "cpu_us_pread": []}
    per_round = max(1, args.passes // args.rounds)
    for _ in range(args.rounds):
        host.submit(ip.timed, per_round).result()
        part = floor(lab, bins["floor"], ip.out["plan"], per_round, workdir)
        c["cpu_us"] += part["cpu_us"]
        c["wall_ms"] += part["wall_ms"]
        c["links"] = part["links"]
        if args.peers:
            c["cpu_us_pread"] += floor(lab, bins["floor"], ip.out["plan"], per_round, workdir, keep=True)["cpu_us"]
    # At collectd's cadence (a pass a second, idle in between), for (b)'s comparison: the same passes start
    # with cold caches.
    if args.paced:
        host.submit(ip.paced, args.paced, 1.0).result()
        c["cpu_us_paced"] = floor(lab, bins["floor"], ip.out["plan"], args.paced, workdir, gap=1.0)["cpu_us"]
    if args.profile:
        host.submit(ip.profile).result()
    a = host.submit(ip.close).result()
    print("  (a) in-process: %d containers seen, %d with network, %d with block I/O; %.1f files per pass "
          "(%.1f more every 30 s: limits) and %.1f values per container; %d fork/exec/spawn calls in %d passes"
          % (a["containers_seen"], a["with_network"], a["with_blkio"], a["files_per_container"],
             a["rare_per_container"], a["values_per_container"], a["spawned"], len(a["cpu_us"])), flush=True)
    if a["without_blkio"]:
        print("  (no block I/O figures yet: %s)" % " ".join(a["without_blkio"][:10]))
    if a.get("profile"):
        print(a["profile"])
    print("  (c) floor: %d plan lines, %d interfaces per pass" % (len(a["plan"]), c["links"]), flush=True)
    b = base = d = lean = None
    peer = {}
    if not args.no_collectd:
        # The machine is shared: alternate the collectd runs over a few rounds, so that a busy spell of the
        # neighbours falls on each of them alike; intervals of all rounds together, memory of the last.
        runs = {}
        per_round = max(1, args.intervals // args.rounds)
        pace = statistics.median(a["wall_ms"]) / 1e3 / n      # the plugin's wall time per container
        modes = ("base", "plugin", "replay") + (("lean",) if last and _knows_ignore_value() else ())
        if args.peers:
            modes += ("cgroups", "cgroups-csv") + (("netdata-sized", "netdata-sized-nonet")
                                                   if _knows_ignore_value() else ())
            netdata_missing = peers.available()
            if not netdata_missing:
                modes += ("netdata", "netdata-idle")
        for n_round in range(args.rounds):
            for mode in modes:
                if mode in ("netdata", "netdata-idle"):
                    r = netdata_run(lab, per_round, workdir, tag=n_round, cgroups=mode == "netdata")
                else:
                    r = collectd_run(lab, mode, per_round, workdir, dispatched=a["dispatched"], tag=n_round,
                                     pace=pace)
                if mode in runs:
                    r["cpu_ms"] = runs[mode]["cpu_ms"] + r["cpu_ms"]
                    r["warnings"] = runs[mode].get("warnings", []) + r.get("warnings", [])
                runs[mode] = r
        base, b, d = runs["base"], runs["plugin"], runs["replay"]
        d["idle"] = collectd_run(lab, "idle", 2, workdir)
        lean = runs.get("lean")
        if lean is not None:
            from collectd_cgroups.collector import ValueFilter
            keep = ValueFilter(LEAN)
            lean["values_per_container"] = len(keep([x[1:] for x in a["dispatched"]])) / float(n)

            def keep_lean(x):
                return bool(keep([x[1:]]))
        if args.peers:
            peer = {m: runs.get(m) for m in modes if m not in ("base", "plugin", "replay", "lean")}
            a["values"] = values_of(a["dispatched"])
            peer["netdata_sized_values"] = values_of(a["dispatched"], set(NETDATA_SIZED))
            peer["netdata_sized_nonet_values"] = values_of(
                a["dispatched"], {x for x in NETDATA_SIZED if not x.startswith("if_")})
            peer["lean_values"] = (values_of([x for x in a["dispatched"] if keep_lean(x)])
                                   if lean is not None else None)
            if "netdata" not in runs:
                peer["netdata_missing"] = netdata_missing
            for m in ("netdata-sized", "netdata-sized-nonet"):
                b["warnings"] += (runs.get(m) or {}).get("warnings", [])
            cg = runs["cgroups-csv"]
            print("  peers: collectd's cgroups plugin wrote %d containers' CSV files; %s"
                  % (cg["seen"], "Netdata charted %.1f charts, %.1f dimensions per container (%s)"
                     % (runs["netdata"]["charts_per_container"], runs["netdata"]["values_per_container"],
                        ", ".join(runs["netdata"]["charts"])) if "netdata" in runs
                     else "Netdata not measured: " + netdata_missing), flush=True)
        for w in b["warnings"][:5]:
            print("  collectd log: " + w)
        print("  (b) collectd: %d descriptors with the plugin, %d without; open-files limit (soft, hard) %s, "
              "started with %s; %d threads with the plugin, %d without"
              % (b["fds"], base["fds"], "/".join(b["nofile"]), "/".join(base["nofile"]), b["threads"],
                 base["threads"]), flush=True)
    del a["dispatched"]
    return {"n": n, "a": a, "b": b, "base": base, "c": c, "d": d, "lean": lean, "peers": peer}


def _knows_ignore_value():
    """Whether the measured checkout has the IgnoreValue option (--src may name an older one)."""
    from collectd_cgroups import config
    return "IgnoreValue" in config.OPTIONS


def per_container_b(r, key="b"):
    base = statistics.median(r["base"]["cpu_ms"])
    return [(x - base) * 1e3 / r["n"] for x in r[key]["cpu_ms"]]


def table(results):
    def fmt(vals):
        med, lo, hi = stats(vals)
        return "%7.1f (%.0f-%.0f)" % (med, lo, hi)

    head = ("%6s  %-20s %-20s %-20s %5s %5s  %-22s %s"
            % ("N", "(a) plugin us", "(b) collectd us", "(c) C floor us", "a/c", "b/c", "pass wall ms (a)",
               "collectd RSS MiB: without / with / delta"))
    lines = ["", "CPU time per container per pass, median (min-max):", head, "-" * len(head)]
    for r in results:
        a, c = stats(r["a"]["cpu_us"])[0], stats(r["c"]["cpu_us"])[0]
        if r["b"] is not None:
            bvals = per_container_b(r)
            b = statistics.median(bvals)
            bcol, bc = fmt(bvals), "%5.2f" % (b / c)
            rss = "%.1f / %.1f / %+.1f" % (r["base"]["rss_kib"] / 1024.0, r["b"]["rss_kib"] / 1024.0,
                                            (r["b"]["rss_kib"] - r["base"]["rss_kib"]) / 1024.0)
        else:
            bcol, bc, rss = "%-20s" % "-", "    -", "-"
        lines.append("%6d  %-20s %-20s %-20s %5.2f %s  %-22s %s"
                     % (r["n"], fmt(r["a"]["cpu_us"]), bcol, fmt(r["c"]["cpu_us"]), a / c, bc,
                        fmt(r["a"]["wall_ms"]), rss))
    if len(results) >= 2:
        lo, hi = results[0], results[-1]
        def ratio(per_lo, per_hi):
            return (statistics.median(per_hi) * hi["n"]) / (statistics.median(per_lo) * lo["n"])
        parts = ["(a) %.1fx" % ratio(lo["a"]["cpu_us"], hi["a"]["cpu_us"]),
                 "(c) %.1fx" % ratio(lo["c"]["cpu_us"], hi["c"]["cpu_us"])]
        if lo["b"] is not None:
            parts.insert(1, "(b) %.1fx" % ratio(per_container_b(lo), per_container_b(hi)))
        lines.append("")
        lines.append("scaling, cost of a pass at N=%d / at N=%d (%.0fx the containers): %s"
                     % (hi["n"], lo["n"], hi["n"] / float(lo["n"]), ", ".join(parts)))
    if any(r["d"] is not None for r in results):
        lines += ["", "collectd's own share: (d) the same collectd with a trivial Python module that dispatches the",
                  "value lists of one pass of the plugin, in the plugin's batches and at its pace, and reads",
                  "nothing (CPU minus collectd without Python). Resident memory of collectd without Python, and what",
                  "an idle Python module, the values of (d) (collectd's value cache: (d)'s growth from the moment its",
                  "value lists were loaded) and the plugin itself (the rest of (b)) add:"]
        head = "%6s  %-20s %-14s  %s" % ("N", "(d) us", "(b) - (d) us",
                                         "RSS MiB: base / +python / +values (d) / +plugin")
        lines += [head, "-" * len(head)]
        for r in results:
            if r["d"] is None:
                continue
            dvals = per_container_b(r, "d")
            b, d = statistics.median(per_container_b(r)), statistics.median(dvals)
            base, idle = r["base"]["rss_kib"] / 1024.0, r["d"]["idle"]["rss_kib"] / 1024.0
            cache = (r["d"]["rss_kib"] - r["d"]["loaded_rss_kib"]) / 1024.0
            rb = r["b"]["rss_kib"] / 1024.0
            lines.append("%6d  %-20s %7.1f         %.1f / %+.1f / %+.1f / %+.1f" % (
                r["n"], fmt(dvals), b - d, base, idle - base, cache, rb - idle - cache))
    if any("cpu_us_paced" in r["c"] for r in results):
        lines += ["", "(a) and (c) at collectd's cadence, a 1-second idle pause before each pass (caches cold at its",
                  "start, as in (b)), and (b) against that floor:"]
        for r in results:
            if "cpu_us_paced" in r["c"]:
                cp = stats(r["c"]["cpu_us_paced"])[0]
                bline = " b/c' %.2f" % (statistics.median(per_container_b(r)) / cp) if r["b"] is not None else ""
                lines.append("%6d  (a') %-20s (c') %-20s a'/c' %.2f%s" % (
                    r["n"], fmt(r["a"]["cpu_us_paced"]), fmt(r["c"]["cpu_us_paced"]),
                    stats(r["a"]["cpu_us_paced"])[0] / cp, bline))
    for r in results:
        lean = r.get("lean")
        if lean is None:
            continue
        lvals = per_container_b(r, "lean")
        c = stats(r["c"]["cpu_us"])[0]
        lines += ["", "(b) with %d IgnoreValue patterns (LEAN in tests/bench/run.py: %.0f values per container "
                  "instead of %.0f):" % (len(LEAN), lean["values_per_container"], r["a"]["values_per_container"]),
                  "%6d  %-20s b/c %.2f    collectd RSS MiB: %.1f / %.1f / %+.1f"
                  % (r["n"], fmt(lvals), statistics.median(lvals) / c, r["base"]["rss_kib"] / 1024.0,
                     lean["rss_kib"] / 1024.0, (lean["rss_kib"] - r["base"]["rss_kib"]) / 1024.0)]
    if any(r.get("peers") for r in results):
        lines += peers_table(results, fmt)
    if any("cpu_us_lean" in r["a"] for r in results):
        lines += ["", "(a) with IgnoreValue patterns (a file whose every value they leave out is not read):"]
        for r in results:
            if "cpu_us_lean" in r["a"]:
                c = stats(r["c"]["cpu_us"])[0]
                lines.append("%6d  LEAN %-20s a/c %.2f   NETDATA_SIZED %-20s a/c %.2f" % (
                    r["n"], fmt(r["a"]["cpu_us_lean"]), stats(r["a"]["cpu_us_lean"])[0] / c,
                    fmt(r["a"]["cpu_us_netdata-sized"]), stats(r["a"]["cpu_us_netdata-sized"])[0] / c))
    if any("cpu_us_plain" in r["a"] for r in results):
        lines += ["", "(a) with every file opened, read and closed each pass (no descriptors kept between passes):"]
        for r in results:
            if "cpu_us_plain" in r["a"]:
                lines.append("%6d  %-20s a/c %.2f" % (r["n"], fmt(r["a"]["cpu_us_plain"]),
                                                      stats(r["a"]["cpu_us_plain"])[0] / stats(r["c"]["cpu_us"])[0]))
    return "\n".join(lines)


def peers_table(results, fmt):
    """The peers next to the plugin: per container and per value, each ratio to Netdata and to collectd's
    C cgroups plugin with the same (network) writer."""
    lines = ["", "The peers, on the same containers in the same run, each one's idle cost taken off (collectd with no",
             "plugin but its writer; Netdata with no collector). A value is one number: a data source of a value",
             "list dispatched, a dimension of Netdata's; per value = per container / values. Medians (min-max):"]
    head = "%6s  %-60s %6s  %-20s %8s  %-11s %s" % ("N", "collector", "values", "us per container", "us/value",
                                                  "/ Netdata", "/ C cgroups (per value)")
    lines += [head, "-" * len(head)]
    for r in results:
        p, n = r.get("peers"), r["n"]
        if not p:
            continue
        rows = []       # (key, label, values per container or None, per-container figures or None)

        def collectd_rows(key, label, values):
            run = r["b"] if key == "plugin" else (r["lean"] if key == "lean" else p.get(key))
            if run is not None:
                base = statistics.median(r["base"]["cpu_ms"])
                rows.append((key, label, values, [(x - base) * 1e3 / n for x in run["cpu_ms"]]))
        collectd_rows("plugin", "collectd_cgroups, default values (%d lists)" % (r["a"]["values"][0] / n),
                      r["a"]["values"][1] / float(n))
        if p.get("lean_values"):
            collectd_rows("lean", "collectd_cgroups, LEAN (%d lists)" % (p["lean_values"][0] / n),
                          p["lean_values"][1] / float(n))
        sized, nonet = p["netdata_sized_values"], p["netdata_sized_nonet_values"]
        collectd_rows("netdata-sized", "collectd_cgroups, NETDATA_SIZED (%d lists)" % (sized[0] / n),
                      sized[1] / float(n))
        collectd_rows("netdata-sized-nonet", "collectd_cgroups, NETDATA_SIZED without network (%d lists)"
                      % (nonet[0] / n), nonet[1] / float(n))
        collectd_rows("cgroups", "collectd C cgroups plugin, network writer", 2.0)
        collectd_rows("cgroups-csv", "collectd C cgroups plugin, CSV writer", 2.0)
        nd = p.get("netdata")
        if nd is not None:
            idle = statistics.median(p["netdata-idle"]["cpu_ms"])
            rows.append(("netdata", "Netdata 1.37 cgroups (%.0f charts)" % nd["charts_per_container"],
                         nd["values_per_container"], [(x - idle) * 1e3 / n for x in nd["cpu_ms"]]))
        else:
            rows.append(("netdata", "Netdata: not measured (%s)" % p.get("netdata_missing"), None, None))
        rows.append(("floor", "C floor: open, read, close", None, r["c"]["cpu_us"]))
        rows.append(("floor-pread", "C floor: kept open, pread", None, r["c"]["cpu_us_pread"]))
        median = {key: statistics.median(v) for key, _, _, v in rows if v}
        per_value = {key: median[key] / vals for key, _, vals, v in rows if v and vals}
        nd_value, cg_value = per_value.get("netdata"), per_value.get("cgroups")
        for key, label, vals, v in rows:
            if v is None:
                lines.append("%6d  %s" % (n, label))
                continue
            pv = per_value.get(key)
            lines.append("%6d  %-60s %6s  %-20s %8s  %-11s %s" % (
                n, label, "%.0f" % vals if vals else "-", fmt(v), "%.2f" % pv if pv is not None else "-",
                "%.2f" % (pv / nd_value) if pv is not None and nd_value else "-",
                "%.2f" % (pv / cg_value) if pv is not None and cg_value else "-"))
        sized_c, nonet_c, nd_c = median.get("netdata-sized"), median.get("netdata-sized-nonet"), median.get("netdata")
        if sized_c is not None and nd_c:
            line = "        per container, NETDATA_SIZED / Netdata: %.2f" % (sized_c / nd_c)
            if nonet_c is not None:
                line += "; without network: %.2f (network: %.0f of its %.0f us per container)" % (
                    nonet_c / nd_c, sized_c - nonet_c, sized_c)
            lines.append(line)
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="100,1000", help="container counts, ascending (default 100,1000)")
    ap.add_argument("--passes", type=int, default=15, help="timed passes for (a) and (c) (default 15)")
    ap.add_argument("--intervals", type=int, default=30, help="collectd intervals measured for (b) (default 30)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds the passes and intervals are spread over, "
                    "alternating (a), (c) and the collectd runs (default 3)")
    ap.add_argument("--no-collectd", action="store_true", help="skip (b) and the peers")
    ap.add_argument("--peers", action="store_true", help="also measure the peers (tests/bench/peers.py): "
                    "collectd's C cgroups plugin with the network writer and with CSV, Netdata's cgroups "
                    "collector, and the plugin with a value set the size of Netdata's")
    ap.add_argument("--paced", type=int, default=8, help="passes of (a) and (c) with a 1-second pause before "
                    "each, as collectd runs them (default 8; 0 skips them)")
    ap.add_argument("--profile", action="store_true", help="print cProfile's top functions for (a)")
    ap.add_argument("--src", default=SRC, help="measure the collectd_cgroups of this checkout (default: "
                    "this one), e.g. an older version unpacked with `git archive`")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    if sizes != sorted(sizes) or sizes[0] < 1:
        ap.error("--sizes must be ascending positive numbers")
    if os.geteuid() != 0:
        ap.error("run as root: the benchmark makes cgroups, namespaces and veths")
    if not args.no_collectd and not os.path.exists(COLLECTD):
        ap.error("%s not found (apt-get install collectd-core libpython3.11)" % COLLECTD)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)     # also when started with SIGINT ignored (a background job)
    stub_collectd()
    workdir = tempfile.mkdtemp(prefix=BenchLab.NAME + "-work-")
    lab = None
    host = None
    results = []
    status = 0
    try:
        bins = build(workdir)
        print("measuring collectd_cgroups from %s" % SRC, flush=True)
        cleanup_stale()
        lab = BenchLab(bins["box"]).setup(workdir)
        print("lab: cgroups under /%s, host namespace %s" % (lab.prefix, lab.host), flush=True)
        host = concurrent.futures.ThreadPoolExecutor(max_workers=1, initializer=ctypes_setns,
                                                     initargs=(lab.host_path,))
        for size in sizes:
            took = lab.add(size - lab.count)
            print("made %d containers in %.1f s" % (lab.count, took), flush=True)
            results.append(measure(lab, args, bins, workdir, host, last=size == sizes[-1]))
        print(table(results))
        print(names.measure(workdir, sizes[-1]), flush=True)
    except (KeyboardInterrupt, Interrupted) as e:
        print("\ninterrupted (%s): cleaning up" % (e or "Ctrl-C"), file=sys.stderr)
        status = 130
    finally:
        # Cleanup must finish even if another signal arrives meanwhile.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        for p in list(RUNNING.values()):
            if isinstance(p, peers.Netdata):
                p.stop(RUNNING)
            else:
                stop(p)
        if host is not None:
            host.shutdown(wait=True)
        left = lab.close() if lab is not None else []
        shutil.rmtree(workdir, ignore_errors=True)
        if left:
            print("NOT REMOVED: " + ", ".join(left), file=sys.stderr)
            status = status or 1
        elif lab is not None:
            print("cleanup: every process, cgroup, namespace and file of the benchmark removed", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
