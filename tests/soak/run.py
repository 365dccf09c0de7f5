"""The churn soak: synthetic containers started and stopped continuously under a real collectd.

Run as root from the checkout (``make soak`` does, with ``SOAK_ARGS ?= --minutes 60 --reference``)::

    .venv/bin/python tests/soak/run.py [--minutes 20] [--containers 20] [--life 3:12] [--seed 1]
                                       [--mode both|plain|exit] [--reference] [--src DIR] [--probe]
                                       [--tracemalloc]

What it does (everything it creates is its own, and removed at the end, also on Ctrl-C or SIGTERM; a run
killed outright is cleaned up by the next one):

1. builds ``box`` (tests/bench/box.c) with gcc in a temporary directory;
2. makes one lab per collectd (tests/bench/lab.py's ``BenchLab`` under another name, :class:`SoakLab`): a
   cgroup prefix ``ccgsoak-<hex>`` in every hierarchy, a network namespace ``ccgsoak-<hex>-h`` playing the
   host (never the root namespace), a scratch directory with the owner file a later run cleans up by;
3. starts two collectd 5.12 (``/usr/sbin/collectd -f``) *at the same time*, one per lab, each at
   ``Interval 1`` with the plugin of ``--src`` matching only its own lab (``Match``, and an ``Ignore`` of
   everything else), the soft open-files limit of a systemd service (1024), run with
   ``nsenter --net=<lab host namespace>`` as tests/bench/run.py does, and in a private mount namespace
   whose ``/run`` is an empty tmpfs (CollectOnExit's state file, /run/collectd-cgroups/exited.json, stays
   out of the host's ``/run``, where the test suite's CollectOnExit tests read theirs): ``plain`` without
   CollectOnExit, ``exit`` with ``CollectOnExit true``.  The writer is the network plugin to
   127.0.0.1:25826 of the lab's host namespace, where nothing listens (no files pile up; collectd still
   builds and sends every packet); a logfile plugin (LogLevel info) to the work directory;
4. keeps ``--containers`` containers alive in each lab: each one process of ``box`` in cgroups of its own
   (``/ccgsoak-<hex>/c000123`` in cpu, cpuacct, memory, pids, blkio and the cgroup2 mount), in a network
   namespace of its own with ``lo`` up and a veth pair (host end ``cs<hex>v<n>`` in the lab's host
   namespace, ``eth0`` inside), living a random time from ``--life`` (seeded by ``--seed``), then stopped
   (its process killed, its cgroups removed with one ``rmdir`` each, as a runtime does: with CollectOnExit
   the sentinel is still there, the ``rmdir`` fails and the plugin has to remove them) and replaced by a new
   one with a new name: names are never reused, as with real runtimes;
5. every ``--sample`` seconds (10) samples, for each collectd: open descriptors, nsfs descriptors
   (``net:[...]`` and the like; one of collectd's own home network namespace does not count), descriptors
   that are pidfds, VmRSS, threads and the threads outside the home network namespace (each taken as the
   minimum over a few readings 30 ms apart, so that a pass in progress does not count), and for its lab:
   the lab's network namespaces (named ones and nsfs mounts), the container namespaces still alive of
   stopped containers (their veth's host end still exists), cgroup directories and processes (sentinels)
   still in cgroups of stopped containers, those of them stopped more than ``STALE`` seconds ago,
   containers started and stopped so far, and the lines collectd logged;
6. at the end stops every container, waits for the sentinels to go, stops collectd, and checks that nothing
   is left: no cgroup, namespace, veth, process or sentinel of the lab;
7. prints the series as a table per collectd, then per series the least-squares slope over the samples
   after the warm-up (the larger of 2 minutes and the first 20% of the run, at most half of it), per minute.

It exits 1 when a series grows without bound after the warm-up or anything is left behind:

- VmRSS: its slope over the last half of the samples after the warm-up above ``RSS_SLOPE_MAX`` (32 KiB per
  minute: 45 MiB a day, well below the 190-270 KiB per minute measured under churn before).  The last half,
  because a leak keeps its rate while glibc's arenas settle: under churn their free chunks grow for about
  40 minutes with the memory in use flat (``--probe``: mallinfo2's in_use 3.6-3.9 MiB from minute 2 to 15
  while free rose 2.3 to 3.5 MiB), then stop; the slope over the whole window is printed too;
- descriptors (other than pidfds, which follow the number of sentinels), nsfs descriptors, threads,
  threads outside the home namespace, the lab's namespaces, and the stale cgroups, sentinels and
  namespaces of stopped containers: the maximum of the last window (the last quarter of the samples after
  the warm-up) above the maximum of the first window: a count that climbs, however slowly;
- pidfds: above the number of containers that can hold a sentinel (the live ones and the stopped ones
  whose sentinel has not left yet) plus ``PIDFD_SLACK``;
- the log: more than ``LOG_MAX_PER_MIN`` lines a minute in any window after the warm-up (bounded per cause:
  a line per container started or stopped would be about 160 a minute at the defaults);
- anything left at the end, or errors (and read failures) in collectd's log.

Runs shorter than ``MIN_JUDGED_MINUTES`` (3) print the slopes and verdicts without failing on growth (they
are too short for a slope to mean anything; ``--judge-growth yes`` judges them anyway); leftovers always fail.

``--probe`` loads tests/soak/ccgsoak_probe.py into the same collectd (before the plugin): every minute it
writes the sizes of the plugin's containers (dicts, lists, sets reachable from its instances and module
globals) and, with ``--tracemalloc``, tracemalloc's top differences against the end of the warm-up, to
``probe-<role>.jsonl`` in the work directory; the last record of each is printed at the end.
``--reference`` runs a third collectd at the same time, in a lab of its own without containers: the
reference, with tests/soak/ccgsoak_replay.py instead of the plugin (the plugin's value lists for
``--containers`` churning container names, nothing read): what collectd's own memory does under the same
churn, judged like the others.
``--env MALLOC_ARENA_MAX=1`` and the like go into collectd's environment; ``--option LINE`` into the
plugin's ``<Module>`` block.
"""

import argparse
import ctypes
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKOUT = os.path.dirname(os.path.dirname(HERE))       # the soak's own checkout: its lab
sys.path.insert(0, os.path.join(CHECKOUT, "tests", "bench"))
from srcarg import src_checkout  # noqa: E402
SRC = src_checkout(sys.argv[1:], CHECKOUT)        # the checkout whose plugin collectd loads
sys.path.insert(0, CHECKOUT)

from ccg_lab.synthetic import UNIFIED, check_path  # noqa: E402
from tests.bench import lab as bench_lab  # noqa: E402
from tests.bench.lab import BenchLab  # noqa: E402

COLLECTD = "/usr/sbin/collectd"
STATE_DIR = "/run/collectd-cgroups"     # CollectOnExit's state directory: in collectd's private /run
SYSTEMD_SOFT_NOFILE = 1024
PR_SET_PDEATHSIG = 1
PORT = 25826
REFERENCE = "reference"     # --reference: the role of the collectd with tests/soak/ccgsoak_replay.py

STALE = 15.0            # seconds after its stop by which a container must have left nothing
RSS_SLOPE_MAX = 32.0    # KiB per minute after the warm-up
LOG_MAX_PER_MIN = 30.0  # lines a minute collectd may log after the warm-up
PIDFD_SLACK = 2
MIN_JUDGED_MINUTES = 3.0   # shorter runs (--judge-growth auto) print slopes without failing on them
DRAIN_TIMEOUT = 30.0    # seconds the end waits for the stopped containers' cgroups, sentinels, namespaces

_libc = ctypes.CDLL(None, use_errno=True)


class Interrupted(BaseException):
    pass


def _on_signal(signum, frame):
    raise Interrupted("signal %d" % signum)


def build_box(workdir):
    path = os.path.join(workdir, "box")
    res = subprocess.run(["gcc", "-O2", "-Wall", "-o", path, os.path.join(CHECKOUT, "tests", "bench", "box.c")],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if res.returncode != 0:
        raise RuntimeError("gcc box.c failed:\n%s" % res.stdout.decode(errors="replace"))
    return path


# -- the lab ---------------------------------------------------------------------------------------------

class Container(object):
    __slots__ = ("idx", "name", "cgroup", "box", "pid", "ifname", "started", "deadline", "stopped")

    def __init__(self, idx, name, cgroup, box, pid, ifname, started, deadline):
        self.idx, self.name, self.cgroup, self.box, self.pid = idx, name, cgroup, box, pid
        self.ifname, self.started, self.deadline, self.stopped = ifname, started, deadline, None


class SoakLab(BenchLab):
    """tests/bench/lab.py's lab under the soak's names (``ccgsoak-<hex>``, host namespace
    ``ccgsoak-<hex>-h``, veths ``cs<hex>v<n>``), with containers started and stopped one at a time: one box
    process (tests/bench/box.c with a count of 1) per container."""

    NAME = "ccgsoak"
    IFNAME = "cs"

    def __init__(self, box_binary, role="", tag=None, rng=None, life=(3.0, 12.0)):
        super().__init__(box_binary, tag=tag)
        self.role = role
        self.rng = rng or random.Random(0)
        self.life = life
        self.live = []          # Container, in start order
        self.gone = []          # stopped Containers that may still have something left (checked by sample())
        self.started = 0
        self.stopped = 0
        self.next_idx = 0
        self.home_ino = None
        self.pending_rmdir_failed = 0   # rmdirs at stop that failed (busy: a sentinel is there)

    def setup(self, workdir=""):
        super().setup(workdir)
        with open(self.iofile, "r+b") as f:
            f.truncate(4096)            # every box child writes at offset 0 (its index in its box)
        self.home_ino = os.stat(self.host_path).st_ino
        return self

    def match_regex(self):
        return "^/%s/(?P<name>c[0-9]+)$" % self.prefix

    # -- one container

    def _dirs(self, c):
        dirs = [d for k, d in c.dirs.items() if k != UNIFIED]
        dirs = sorted(set(dirs), key=dirs.index)
        if UNIFIED in c.dirs:
            dirs.append(c.dirs[UNIFIED])
        return dirs

    def start_one(self):
        idx = self.next_idx
        self.next_idx += 1
        name = "c%06d" % idx
        c = self.tree.container(name)
        try:
            self._activate_throttle(c)
        except OSError:
            pass
        listfile = os.path.join(self.scratch, "dirs-%d" % idx)
        with open(listfile, "w") as f:
            f.write("\t".join(self._dirs(c)) + "\n")
        box = subprocess.Popen([self.box_binary, "1", listfile, self.iofile], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            pid = None
            for line in box.stdout:
                line = line.strip()
                if line == b"ready":
                    break
                pid = int(line)
            if pid is None:
                err = box.stderr.read().decode(errors="replace") if box.wait(5) is not None else ""
                raise RuntimeError("box did not start container %s: %s" % (name, err.strip()))
            ifname = "%s%d" % (self.ifprefix, idx)
            bench_lab.run("ip", "-n", self.host, "link", "add", ifname, "up", "type", "veth", "peer", "name",
                          "eth0", "netns", str(pid))
            box.stdin.write(b"up\n")
            box.stdin.flush()
            reply = box.stdout.readline().split()
            if reply != [b"up", b"1"]:
                raise RuntimeError("box: container %s did not bring eth0 up: %r" % (name, reply))
        except BaseException:
            self._stop_box(box)
            self._rmdirs(c)
            raise
        finally:
            os.unlink(listfile)
        now = time.monotonic()
        rec = Container(idx, name, c, box, pid, ifname, now, now + self.rng.uniform(*self.life))
        self.live.append(rec)
        self.started += 1
        return rec

    @staticmethod
    def _stop_box(box):
        try:
            box.stdin.close()           # end of file: the box kills and reaps its child
        except OSError:
            pass
        try:
            box.wait(timeout=30)
        except subprocess.TimeoutExpired:
            box.kill()                  # our own process, by PID
            box.wait(timeout=10)
        for stream in (box.stdout, box.stderr):
            if stream is not None:
                stream.close()

    def _rmdirs(self, c):
        """One rmdir of each directory, as a runtime does on stop; True if all are gone."""
        ok = True
        for d in reversed(c._unique):
            try:
                os.rmdir(check_path(d))
            except FileNotFoundError:
                pass
            except OSError:
                ok = False
        c.removed = True
        c.tree._forget(c)
        return ok

    def stop_one(self, rec):
        self._stop_box(rec.box)
        rec.box = None
        if not self._rmdirs(rec.cgroup):
            self.pending_rmdir_failed += 1
        rec.stopped = time.monotonic()
        self.live.remove(rec)
        self.gone.append(rec)
        self.stopped += 1

    def churn(self, now):
        """Replace every container whose time is up; returns how many."""
        due = [r for r in self.live if r.deadline <= now]
        for rec in due:
            self.stop_one(rec)
            self.start_one()
        return len(due)

    def stop_all(self):
        for rec in list(self.live):
            self.stop_one(rec)

    # -- what stopped containers left

    def veths(self):
        """Indexes of the containers whose veth's host end exists in the lab's host namespace."""
        out = bench_lab.run("ip", "-n", self.host, "-o", "link", "show").stdout.decode(errors="replace")
        found = set()
        for m in re.finditer(r"^\d+: %s(\d+)[@:]" % re.escape(self.ifprefix), out, re.M):
            found.add(int(m.group(1)))
        return found

    def leftovers(self, now):
        """(namespaces, cgroups, sentinel processes) of stopped containers, and the same for those stopped
        more than STALE seconds ago; forgets containers that left nothing."""
        veths = self.veths()
        counts = [0, 0, 0]
        stale = [0, 0, 0]
        keep = []
        for rec in self.gone:
            ns = rec.idx in veths
            dirs = [d for d in rec.cgroup._unique if os.path.isdir(d)]
            procs = set()
            for d in dirs:
                try:
                    with open(d + "/cgroup.procs") as f:
                        procs.update(f.read().split())
                except OSError:
                    pass
            item = (int(ns), int(bool(dirs)), len(procs))
            if any(item):
                keep.append(rec)
                for i in range(3):
                    counts[i] += item[i]
                    if now - rec.stopped > STALE:
                        stale[i] += item[i]
        self.gone = keep
        return counts, stale

    def netns_count(self):
        """The lab's network namespaces: names under /run/netns and nsfs mounts with the lab's prefix."""
        points = set()
        try:
            points.update("/run/netns/" + n for n in os.listdir("/run/netns") if n.startswith(self.prefix))
        except FileNotFoundError:
            pass
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                if right.split(" ", 1)[0] == "nsfs" and self.prefix in left.split()[4]:
                    points.add(left.split()[4])
        return len(points)

    def close(self):
        """Stop every container, then BenchLab.close() (namespace, cgroups, scratch directory)."""
        for rec in self.live:
            if rec.box is not None:
                self.boxes.append(rec.box)
                self.pids.append(rec.pid)
        self.live = []
        return super().close()


def cleanup_stale(log=print):
    """What runs killed outright left: tests/bench/lab.py's cleanup_stale for the soak's names."""
    bench_lab.cleanup_stale(log, lab_class=SoakLab)


# -- collectd ----------------------------------------------------------------------------------------------

# The head of both configurations: daemon, log, writer (the network plugin to a port nobody listens on, in
# the lab's own host namespace: loopback), the python plugin loaded.
CONF_HEAD = """\
# Written by tests/soak/run.py ({role}{what})
Hostname "ccgsoak-{role}"
FQDNLookup false
BaseDir "{dir}"
PIDFile "{dir}/collectd.pid"
Interval 1
LoadPlugin logfile
<Plugin logfile>
  LogLevel info
  File "{dir}/collectd.log"
  Timestamp true
  PrintSeverity true
</Plugin>
LoadPlugin network
<Plugin network>
  Server "127.0.0.1" "{port}"
</Plugin>
<LoadPlugin python>
  Globals true
</LoadPlugin>
"""

CONF = CONF_HEAD + """\
<Plugin python>
  ModulePath "{src}"
{probe}  Import "collectd_cgroups.plugin"
  <Module "collectd_cgroups">
    Match "{match}" "soak"
    Ignore "{ignore}"
{extra}  </Module>
</Plugin>
"""

# --reference: the reference, collectd with tests/soak/ccgsoak_replay.py instead of the plugin.
CONF_REPLAY = CONF_HEAD + """\
<Plugin python>
{probe}  ModulePath "{here}"
  Import "ccgsoak_replay"
  <Module "ccgsoak_replay">
    Containers {containers}
    Life {life0} {life1}
    Seed {seed}
  </Module>
</Plugin>
"""

PROBE = """\
  ModulePath "{here}"
  Import "ccgsoak_probe"
  <Module "ccgsoak_probe">
    Out "{out}"
    Every 60
    Baseline {baseline}
    Tracemalloc {tracemalloc}
  </Module>
"""


def _collectd_child():
    """preexec_fn: the soft open-files limit of a systemd service, SIGTERM when the soak dies."""
    import resource
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(SYSTEMD_SOFT_NOFILE, hard), hard))
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _esc(s):
    return s.replace("\\", "\\\\").replace('"', '\\"')


class Collectd(object):
    def __init__(self, lab, role, workdir, collect_on_exit, probe=False, tracemalloc=False, baseline=120.0,
                 options=(), replay=None, env=None):
        self.lab = lab
        self.role = role
        self.dir = os.path.join(workdir, "collectd-" + role)
        os.mkdir(self.dir)
        self.log = os.path.join(self.dir, "collectd.log")
        self.probe_out = os.path.join(workdir, "probe-%s.jsonl" % role) if probe else None
        probe_text = PROBE.format(here=HERE, out=self.probe_out, baseline=int(baseline),
                                  tracemalloc="true" if tracemalloc else "false") if probe else ""
        self.conf = os.path.join(self.dir, "collectd.conf")
        self.replay = replay
        if replay:
            with open(self.conf, "w") as f:
                f.write(CONF_REPLAY.format(role=role, what=", --reference", dir=self.dir, port=PORT,
                                           probe=probe_text, here=HERE,
                                           containers=replay["containers"], life0=replay["life"][0],
                                           life1=replay["life"][1], seed=replay["seed"]))
        else:
            with open(self.conf, "w") as f:
                f.write(CONF.format(role=role, what="", dir=self.dir, port=PORT, src=_esc(SRC), probe=probe_text,
                                    match=_esc(lab.match_regex()), ignore=_esc(lab.ignore_regex()),
                                    extra=("    CollectOnExit true\n" if collect_on_exit else "") +
                                    "".join("    %s\n" % o for o in options)))
        self.env = dict(env or {})
        self.proc = None
        self.status = None
        self._log_offset = 0
        self._log_lines = 0

    def start(self):
        # Its own mount namespace, whose /run/collectd-cgroups is an empty tmpfs: CollectOnExit's state file
        # does not touch the host's (a test suite may be reading it).  unshare and sh exec: the PID is
        # collectd's.
        # The tmpfs goes on /run itself (nothing of the host's /run is needed there: collectd is already in the
        # lab's namespace): a mount on /run/collectd-cgroups would be detached by anyone removing that directory
        # in the host's namespace (the suite's package test does), and the host's /run is never touched.
        script = ('mount -t tmpfs -o size=4m,mode=0755 ccgsoak /run && mkdir "%s" && exec "%s" -f -C "$1"'
                  % (STATE_DIR, COLLECTD))
        argv = ["nsenter", "--net=" + self.lab.host_path, "--", "unshare", "--mount", "--propagation", "private",
                "--", "/bin/sh", "-c", script, "sh", self.conf]
        env = dict({"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}, **self.env)
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=open(self.dir + "/stdout", "wb"),
                                     stderr=subprocess.STDOUT, cwd=self.dir, env=env, preexec_fn=_collectd_child)
        return self

    def wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            text = _read(self.log)
            if "container(s) found" in text or (self.replay and "Initialization complete" in text):
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("collectd (%s) did not get ready (status %s):\n%s\n%s" % (
                    self.role, self.proc.poll(), _read(self.dir + "/stdout")[-2000:], text[-3000:]))
            time.sleep(0.1)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=30):
        if self.proc is None or self.status is not None:
            return self.status
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)      # our own process, by PID
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.status = self.proc.returncode
        return self.status

    def log_lines(self):
        """Lines collectd has logged so far (read incrementally)."""
        try:
            with open(self.log, "rb") as f:
                f.seek(self._log_offset)
                chunk = f.read()
        except FileNotFoundError:
            return 0
        end = chunk.rfind(b"\n") + 1
        self._log_lines += chunk[:end].count(b"\n")
        self._log_offset += end
        return self._log_lines


def _read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


NSFS = re.compile(r"^(net|mnt|pid|user|uts|ipc|cgroup|time)(_for_children)?:\[\d+\]$")   # not socket:[...]


def _proc_reading(pid, home):
    """(fds, nsfs fds other than the home network namespace, pidfds, VmRSS KiB, threads, threads outside the
    home network namespace)."""
    fds = nsfs = pidfds = 0
    base = "/proc/%d/fd" % pid
    for fd in os.listdir(base):
        try:
            target = os.readlink(base + "/" + fd)
        except OSError:
            continue
        fds += 1
        if NSFS.match(target):
            if target != "net:[%d]" % home:      # the plugin keeps its threads' home namespace open: fine
                nsfs += 1
        elif target == "anon_inode:[pidfd]":
            pidfds += 1
    rss = None
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    threads = out = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            ns = os.readlink("/proc/%d/task/%s/ns/net" % (pid, tid))
        except OSError:
            continue
        threads += 1
        if ns != "net:[%d]" % home:
            out += 1
    return fds, nsfs, pidfds, rss, threads, out


def proc_sample(pid, home, readings=3, pause=0.03):
    """The minimum of a few readings: what stays between passes (a pass in progress opens files, enters
    namespaces); more readings while a thread is out of its namespace or an nsfs descriptor is open."""
    best = None
    n = 0
    while True:
        cur = _proc_reading(pid, home)
        best = cur if best is None else tuple(min(a, b) for a, b in zip(best, cur))
        n += 1
        if n >= readings and (not (best[1] or best[5]) or n >= 4 * readings):
            return best
        time.sleep(pause)


# -- series ------------------------------------------------------------------------------------------------

COLUMNS = (
    # key, header, format
    ("t", "min", "%.1f"),
    ("started", "started", "%d"),
    ("stopped", "stopped", "%d"),
    ("rss", "rss_KiB", "%d"),
    ("fds", "fds", "%d"),
    ("pidfds", "pidfds", "%d"),
    ("nsfs", "nsfs", "%d"),
    ("threads", "thr", "%d"),
    ("thr_out", "thr_out", "%d"),
    ("netns", "netns", "%d"),
    ("ns_left", "ns_left", "%d"),
    ("cg_left", "cg_left", "%d"),
    ("sentinels", "sent", "%d"),
    ("stale", "stale", "%d"),
    ("log_rate", "log/min", "%.1f"),
)

# Series judged by "the last window's maximum above the first window's maximum".
TREND = ("fds_other", "nsfs", "threads", "thr_out", "netns", "stale_ns", "stale_cg", "stale_sent")


def sample(cd, lab, t0, last):
    now = time.monotonic()
    fds, nsfs, pidfds, rss, threads, out = proc_sample(cd.pid, lab.home_ino)
    (ns_left, cg_left, sent), (s_ns, s_cg, s_sent) = lab.leftovers(now)
    lines = cd.log_lines()
    t = (now - t0) / 60.0
    if last is None or t <= last["t"]:
        rate = 0.0
    else:
        rate = (lines - last["log_lines"]) / (t - last["t"])
    return {"t": t, "started": lab.started, "stopped": lab.stopped, "rss": rss, "fds": fds, "pidfds": pidfds,
            "fds_other": fds - pidfds, "nsfs": nsfs, "threads": threads, "thr_out": out,
            "netns": lab.netns_count(), "ns_left": ns_left, "cg_left": cg_left, "sentinels": sent,
            "stale_ns": s_ns, "stale_cg": s_cg, "stale_sent": s_sent, "stale": s_ns + s_cg + s_sent,
            "log_lines": lines, "log_rate": rate, "live": len(lab.live)}


def table(rows):
    heads = [h for _, h, _ in COLUMNS]
    cells = [[fmt % r[k] for k, _, fmt in COLUMNS] for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(heads)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(heads, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(cell, widths)) for cell in cells]
    return "\n".join(lines)


def slope(points):
    """Least-squares slope of [(x, y)]; None with fewer than two distinct x."""
    n = len(points)
    if n < 2:
        return None
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in points) / sxx


def warmup_minutes(minutes):
    return min(max(2.0, 0.2 * minutes), 0.5 * minutes)


def judge(role, rows, minutes, containers, growth=True):
    """(lines to print, failures) for one collectd's series; ``growth`` False: verdicts on growth are
    printed but are not failures (a run too short for slopes to mean anything)."""
    warm = warmup_minutes(minutes)
    post = [r for r in rows if r["t"] >= warm]
    out = []
    fails = []
    if len(post) < 2:
        out.append("  (fewer than 2 samples after the %.1f-minute warm-up: no slopes)" % warm)
        return out, fails
    w = max(1, len(post) // 4)
    first, last = post[:w], post[-w:]
    out.append("  slopes per minute over %d samples after the %.1f-minute warm-up (t %.1f-%.1f min); windows "
               "of %d samples:" % (len(post), warm, post[0]["t"], post[-1]["t"], w))
    keys = ["rss", "fds", "fds_other", "pidfds", "nsfs", "threads", "thr_out", "netns", "ns_left", "cg_left",
            "sentinels", "stale_ns", "stale_cg", "stale_sent", "log_rate", "log_lines"]
    half = [r for r in post if r["t"] >= (post[0]["t"] + post[-1]["t"]) / 2]
    rss_late = slope([(r["t"], r["rss"]) for r in half])
    for key in keys:
        s = slope([(r["t"], r[key]) for r in post])
        f_max = max(r[key] for r in first)
        l_max = max(r[key] for r in last)
        verdict = ""
        if key == "rss" and rss_late is not None and rss_late > RSS_SLOPE_MAX:
            verdict = "GROWS (slope over the last half %+.1f, above %.0f KiB/min)" % (rss_late, RSS_SLOPE_MAX)
        elif key in TREND and l_max > f_max:
            verdict = "GROWS (last window max %s > first window max %s)" % (l_max, f_max)
        elif key == "log_rate" and max(r[key] for r in post) > LOG_MAX_PER_MIN:
            verdict = "UNBOUNDED (above %.0f lines/min)" % LOG_MAX_PER_MIN
        elif key == "pidfds":
            worst = max(r["pidfds"] - (r["live"] + r["sentinels"]) for r in post)
            if worst > PIDFD_SLACK:
                verdict = "LEAKS (up to %d pidfds more than live containers and sentinels)" % worst
        if verdict and growth:
            fails.append("%s: %s %s" % (role, key, verdict))
        elif verdict:
            verdict += " (not judged: run shorter than %.0f minutes)" % MIN_JUDGED_MINUTES
        unit = " KiB" if key == "rss" else ""
        out.append("    %-11s %+10.3f%s/min   first window max %-8s last window max %-8s %s" % (
            key, s if s is not None else float("nan"), unit, _num(f_max), _num(l_max), verdict or "ok"))
    if "rss" in keys:
        lifecycles = post[-1]["stopped"] - post[0]["stopped"]
        grown = post[-1]["rss"] - post[0]["rss"]
        each = (" (%+.2f KiB each)" % (grown / float(lifecycles))) if lifecycles else ""
        out.append("    rss: %+d KiB from %.1f to %.1f min over %d container lifecycles%s; "
                   "slope over the last half %+.1f KiB/min" % (
                       grown, post[0]["t"], post[-1]["t"], lifecycles, each,
                       rss_late if rss_late is not None else float("nan")))
    return out, fails


def _num(v):
    return ("%.1f" % v) if isinstance(v, float) else str(v)


# -- the run ---------------------------------------------------------------------------------------------

def parse_life(text):
    lo, _, hi = text.partition(":")
    lo = float(lo)
    hi = float(hi or lo)
    if not 0.5 <= lo <= hi:
        raise argparse.ArgumentTypeError("--life MIN:MAX with 0.5 <= MIN <= MAX (seconds)")
    return lo, hi


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=20.0, help="churn this long (default 20)")
    ap.add_argument("--containers", type=int, default=20, help="containers alive at a time per collectd "
                    "(default 20)")
    ap.add_argument("--life", type=parse_life, default=(3.0, 12.0), help="a container lives a uniform random "
                    "time in MIN:MAX seconds (default 3:12)")
    ap.add_argument("--seed", type=int, default=1, help="random seed of the lifetimes (default 1)")
    ap.add_argument("--sample", type=float, default=10.0, help="seconds between samples (default 10)")
    ap.add_argument("--mode", choices=("both", "plain", "exit"), default="both", help="both collectd at the "
                    "same time (default), or only the one without (plain) or with CollectOnExit (exit)")
    ap.add_argument("--probe", action="store_true", help="load tests/soak/ccgsoak_probe.py into each collectd: "
                    "sizes of the plugin's containers every minute")
    ap.add_argument("--tracemalloc", action="store_true", help="with --probe: tracemalloc's top differences "
                    "(slows the passes down)")
    ap.add_argument("--option", action="append", default=[], metavar="LINE", help="one more line in the "
                    "plugin's <Module> block of both collectd, e.g. 'Interval 1' (repeatable)")
    ap.add_argument("--judge-growth", choices=("auto", "yes", "no"), default="auto", help="fail when a series "
                    "grows after the warm-up: auto (default) only in runs of %.0f minutes or more; leftovers at "
                    "the end always fail" % MIN_JUDGED_MINUTES)
    ap.add_argument("--reference", action="store_true", help="one more collectd at the same time, the "
                    "reference: tests/soak/ccgsoak_replay.py instead of the plugin (the plugin's value lists for "
                    "--containers churning containers living --life seconds, nothing read), in a lab of its own "
                    "without containers")
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="one more variable in "
                    "collectd's (otherwise clean) environment, e.g. MALLOC_ARENA_MAX=1 (repeatable)")
    ap.add_argument("--keep-workdir", action="store_true", help="keep the work directory (logs, probe output)")
    ap.add_argument("--src", default=SRC, help="soak the collectd_cgroups of this checkout (default: this one)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        ap.error("run as root: the soak makes cgroups, namespaces and veths")
    if not os.path.exists(COLLECTD):
        ap.error("%s not found (apt-get install collectd-core libpython3.11)" % COLLECTD)
    if args.containers < 1 or args.minutes <= 0 or args.sample <= 0:
        ap.error("--containers, --minutes and --sample must be positive")
    if args.tracemalloc:
        args.probe = True

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    workdir = tempfile.mkdtemp(prefix=SoakLab.NAME + "-work-")
    roles = {"both": ("plain", "exit"), "plain": ("plain",), "exit": ("exit",)}[args.mode]
    roles += (REFERENCE,) if args.reference else ()
    labs = {}
    daemons = {}
    rows = {role: [] for role in roles}
    status = 0
    fails = []
    try:
        print("soaking collectd_cgroups from %s; work directory %s" % (SRC, workdir), flush=True)
        cleanup_stale()
        box = build_box(workdir)
        rng = random.Random(args.seed)
        for role in roles:
            labs[role] = SoakLab(box, role=role, rng=random.Random(rng.random()), life=args.life).setup(workdir)
            print("lab %s: cgroups under /%s, host namespace %s" % (role, labs[role].prefix, labs[role].host),
                  flush=True)
        for role in roles:
            for _ in range(args.containers if role != REFERENCE else 0):
                labs[role].start_one()
        for role in roles:
            daemons[role] = Collectd(labs[role], role, workdir, collect_on_exit=role == "exit", probe=args.probe,
                                     tracemalloc=args.tracemalloc,
                                     baseline=warmup_minutes(args.minutes) * 60, options=args.option,
                                     replay={"containers": args.containers, "life": args.life, "seed": args.seed}
                                     if role == REFERENCE else None,
                                     env=dict(e.split("=", 1) for e in args.env)).start()
        for role in roles:
            daemons[role].wait_ready()
        print("collectd %s: %s (%s), writer: network to 127.0.0.1:%d in the lab's host namespace (nobody "
              "listens), interval 1 s" % (", ".join("%s pid %d" % (r, daemons[r].pid) for r in roles),
                                          "both at once" if len(roles) > 1 else roles[0],
                                          "; ".join("%s: CollectOnExit %s" % (r, "true" if r == "exit" else "false")
                                                    if r != REFERENCE else "reference: no plugin"
                                                    for r in roles), PORT), flush=True)
        print("churn: %d containers per lab, each living %.0f-%.0f s (seed %d), for %.1f minutes; a sample every "
              "%.0f s; warm-up %.1f min" % (args.containers, args.life[0], args.life[1], args.seed, args.minutes,
                                           args.sample, warmup_minutes(args.minutes)), flush=True)
        t0 = time.monotonic()
        end = t0 + args.minutes * 60
        next_sample = t0
        while True:
            now = time.monotonic()
            if now >= next_sample:
                for role in roles:
                    if not daemons[role].alive():
                        raise RuntimeError("collectd (%s) exited (status %s):\n%s" % (
                            role, daemons[role].proc.returncode, _read(daemons[role].log)[-3000:]))
                    r = sample(daemons[role], labs[role], t0, rows[role][-1] if rows[role] else None)
                    rows[role].append(r)
                    print("[%s] t=%.1f min started %d rss %d KiB fds %d nsfs %d threads %d/%d out netns %d "
                          "left ns/cg/sent %d/%d/%d stale %d log %d" % (
                              role, r["t"], r["started"], r["rss"], r["fds"], r["nsfs"], r["threads"],
                              r["thr_out"], r["netns"], r["ns_left"], r["cg_left"], r["sentinels"], r["stale"],
                              r["log_lines"]), flush=True)
                next_sample += args.sample
                if now >= end:
                    break
                continue
            for role in roles:
                if role != REFERENCE:       # the reference's module churns names of its own
                    labs[role].churn(now)
            time.sleep(min(0.05, max(0.0, next_sample - time.monotonic())))

        # The end: every container stops; what they left must go within DRAIN_TIMEOUT (the pidfds the
        # plugin keeps of their PIDs too: the first pass that no longer finds them closes them).
        for role in roles:
            labs[role].stop_all()
        drained = {}
        deadline = time.monotonic() + DRAIN_TIMEOUT
        pending = list(roles)
        while pending:
            for role in list(pending):
                counts, _ = labs[role].leftovers(time.monotonic())
                if not any(counts) and proc_sample(daemons[role].pid, labs[role].home_ino)[2] == 0:
                    drained[role] = time.monotonic() - (deadline - DRAIN_TIMEOUT)
                    pending.remove(role)
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        final = {}
        for role in roles:
            cd, lab = daemons[role], labs[role]
            fds, nsfs, pidfds, rss, threads, out = proc_sample(cd.pid, lab.home_ino)
            counts, _ = lab.leftovers(time.monotonic())
            final[role] = {"fds": fds, "nsfs": nsfs, "pidfds": pidfds, "rss": rss, "threads": threads,
                           "thr_out": out, "ns_left": counts[0], "cg_left": counts[1], "sentinels": counts[2]}
            st = cd.stop()
            final[role]["status"] = st
            log = _read(cd.log)
            final[role]["read_failed"] = len(re.findall(r"read-function of plugin .* failed", log))
            final[role]["errors"] = [l for l in log.splitlines() if "[error]" in l]
            final[role]["warnings"] = [l for l in log.splitlines() if "[warning]" in l]
            final[role]["log_lines"] = cd.log_lines()
        time.sleep(0.5)             # sentinels die with collectd's watcher thread (pdeathsig)

        # Report.
        for role in roles:
            if role == REFERENCE:
                print("\n== %s: collectd with tests/soak/ccgsoak_replay.py instead of the plugin (%d churning "
                      "containers' value lists, nothing read)" % (role, args.containers))
            else:
                print("\n== %s: collectd %s CollectOnExit (the plugin from %s)" % (
                    role, "with" if role == "exit" else "without", SRC))
            print(table(rows[role]))
            growth = args.judge_growth == "yes" or (args.judge_growth == "auto" and args.minutes >= MIN_JUDGED_MINUTES)
            lines, f = judge(role, rows[role], args.minutes, args.containers, growth=growth)
            print("\n".join(lines))
            fails += f
            fin = final[role]
            lab = labs[role]
            print("  end: %d containers started and stopped; after the last stop, %s; collectd then had %d fds "
                  "(%d nsfs, %d pidfds), %d threads (%d outside its namespace), RSS %d KiB; exit status %s; "
                  "%d log lines (%d warnings, %d errors, %d read failures); %d rmdirs at stop found a sentinel" % (
                      lab.stopped, "everything left within %.1f s" % drained[role] if role in drained else
                      "NOT everything left within %.0f s" % DRAIN_TIMEOUT, fin["fds"], fin["nsfs"], fin["pidfds"],
                      fin["threads"], fin["thr_out"], fin["rss"], fin["status"], fin["log_lines"],
                      len(fin["warnings"]), len(fin["errors"]), fin["read_failed"], lab.pending_rmdir_failed))
            for key in ("ns_left", "cg_left", "sentinels", "nsfs", "thr_out", "pidfds"):
                if fin[key]:
                    fails.append("%s: at the end %s = %d (want 0)" % (role, key, fin[key]))
            if fin["status"] not in (0, None):
                fails.append("%s: collectd exited with status %s" % (role, fin["status"]))
            if fin["read_failed"]:
                fails.append("%s: %d read failures in collectd's log" % (role, fin["read_failed"]))
            if fin["errors"]:
                fails.append("%s: %d errors in collectd's log, e.g. %s" % (role, len(fin["errors"]), fin["errors"][0]))
            kinds = {}
            for l in _read(daemons[role].log).splitlines():
                k = re.sub(r"\d+", "N", l.split("] ", 2)[-1])[:110]
                kinds[k] = kinds.get(k, 0) + 1
            print("  log, by message (numbers as N):")
            for k, n in sorted(kinds.items(), key=lambda kv: -kv[1])[:8]:
                print("    %6d  %s" % (n, k))
            if daemons[role].probe_out and os.path.exists(daemons[role].probe_out):
                with open(daemons[role].probe_out) as f:
                    recs = [json.loads(l) for l in f if l.strip()]
                if recs:
                    print("  probe (last record, t=%.0f s after collectd start):" % recs[-1]["t"])
                    for key in ("rss_kib", "rss_trimmed_kib", "traced_kib", "gc_objects"):
                        if key in recs[-1]:
                            print("    %s: %s" % (key, " ".join(str(r.get(key)) for r in recs)))
                    for key in ("in_use", "free", "arena", "mmap", "releasable"):
                        if recs[-1].get("malloc_kib"):
                            print("    malloc %s KiB: %s" % (key, " ".join(
                                str((r.get("malloc_kib") or {}).get(key)) for r in recs)))
                    for key in ("sizes_grown", "objects_grown", "sizes_largest", "top", "top_tracebacks"):
                        for item in recs[-1].get(key, [])[:15]:
                            print("    %s: %s" % (key, item))
    except (KeyboardInterrupt, Interrupted) as e:
        print("\ninterrupted (%s): cleaning up" % (e or "Ctrl-C"), file=sys.stderr)
        status = 130
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        for cd in daemons.values():
            cd.stop()
        left = []
        for role, lab in labs.items():
            # Left by the plugin (before we remove the rest): directories below the prefix, processes in them.
            for d in lab.tree.existing_dirs():
                for entry in os.listdir(d):
                    if os.path.isdir(os.path.join(d, entry)) and status == 0 and \
                            not any(r.name == entry for r in lab.live):
                        left.append("cgroup %s/%s (of a stopped container)" % (d, entry))
            pids = [r.pid for r in lab.live] + [r.pid for r in lab.gone]
            left += lab.close()
            left += ["process %d" % p for p in pids if bench_lab._alive(p)]
            if lab.home_ino is not None and os.path.exists(lab.host_path):
                left.append("network namespace %s" % lab.host)
            if lab.netns_count():
                left.append("nsfs mounts of %s" % lab.prefix)
        if args.keep_workdir:
            print("work directory kept: %s" % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        if left:
            print("NOT REMOVED / LEFT BEHIND: " + ", ".join(sorted(set(left))), file=sys.stderr)
            fails.append("left behind: " + ", ".join(sorted(set(left))))
        elif labs:
            print("cleanup: every process, cgroup, namespace and file of the soak removed; nothing was left "
                  "behind", flush=True)
    if status == 0:
        if fails:
            print("\nsoak: FAIL\n  " + "\n  ".join(fails), flush=True)
            status = 1
        else:
            print("\nsoak: PASS (nothing grew after the warm-up, nothing left behind)", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
