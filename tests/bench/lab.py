"""The benchmark's synthetic containers: cgroups, processes, network namespaces and veths of its own.

``BenchLab(workdir)`` owns:

- a cgroup prefix ``ccgbench-<hex>`` in every v1 hierarchy the plugin reads and in the cgroup2 mount
  (``ccg_lab.synthetic.CgroupTree``: absolute paths from each hierarchy root, never under
  ``process_api``; the prefix does not start with ``ccg-`` so that a test suite running at the same time
  does not take it for its own leftovers);
- a network namespace ``ccgbench-<hex>-h`` that plays the host: the host end of every veth lives there,
  never in the root namespace;
- "containers" ``c0000``, ``c0001``...: one process of ``box`` (tests/bench/box.c) each, moved into its
  cgroups, in a network namespace of its own with ``lo`` up and a veth pair ``cb<hex>v<n>`` (host) <->
  ``eth0`` (container), both up, 64 KiB of memory touched and 4 KiB written and read with O_DIRECT;
- a scratch directory on a block device (the O_DIRECT file), with blk-throttle activated on its disk
  (``MAJ:MIN 0``, no limit) so that the blkio files count it.

``close()`` undoes all of it and returns what it could not undo (nothing, normally): the box processes are
told to go (their stdin closes; each child also dies with its box), then the namespace, the cgroups and the
scratch directory are removed.  It is safe to call twice and after a partial setup.
"""

import os
import secrets
import shutil
import subprocess
import time

from ccg_lab.procs import start_time as _start_time
from ccg_lab.synthetic import UNIFIED, CgroupTree, activate_blk_throttle


def run(*argv, **kw):
    res = subprocess.run(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300, **kw)
    if res.returncode != 0:
        raise RuntimeError("%s failed (%s): %s" % (" ".join(argv), res.returncode,
                                                   res.stderr.decode(errors="replace").strip()))
    return res


def cleanup_stale(log=print, lab_class=None):
    """Remove what earlier runs left behind when they were killed outright (SIGKILL leaves no time to
    clean up): labs of ``lab_class`` (BenchLab, or a subclass with names of its own) whose owner file names
    a process that is no longer running.  Their processes are gone already (they die with the run); this
    removes cgroups, namespaces and files."""
    lab_class = lab_class or BenchLab
    name_prefix, work_prefix = lab_class.NAME + "-", lab_class.NAME + "-work-"
    for base in ("/var/tmp", "/tmp"):
        try:
            names = os.listdir(base)
        except OSError:
            continue
        for name in names:
            if not name.startswith(name_prefix) or name.startswith(work_prefix):
                continue
            scratch = os.path.join(base, name)
            try:
                with open(os.path.join(scratch, "owner")) as f:
                    pid, started, workdir = f.read().split("\n")[:3]
            except (OSError, ValueError):
                continue
            if _start_time(int(pid)) == started:
                continue                    # that run is still going
            lab = lab_class(None, tag=name[len(name_prefix):])
            lab.tree = CgroupTree(lab.prefix)
            lab.host_made = os.path.exists(lab.host_path)
            lab.scratch = scratch
            left = lab.close()
            if workdir.startswith("/tmp/" + work_prefix):
                shutil.rmtree(workdir, ignore_errors=True)
            log("removed the leftovers of an earlier run (%s)%s" % (lab.prefix, ": left " + ", ".join(left)
                                                                    if left else ""))


def _scratch_dir():
    """A directory on a real block device (O_DIRECT, blkio accounting): /var/tmp, else /tmp."""
    for base in ("/var/tmp", "/tmp"):
        try:
            st = os.stat(base)
        except OSError:
            continue
        if os.path.exists("/sys/dev/block/%d:%d" % (os.major(st.st_dev), os.minor(st.st_dev))):
            return base
    raise RuntimeError("no directory on a block device for the O_DIRECT file (/var/tmp, /tmp)")


class BenchLab(object):
    NAME = "ccgbench"       # the cgroup prefix and scratch directory are NAME-<hex>, the work directory
    IFNAME = "cb"           # NAME-work-...; host ends of the veths IFNAME<hex>v<n>

    def __init__(self, box_binary, tag=None):
        self.hex = tag or secrets.token_hex(3)
        self.prefix = "%s-%s" % (self.NAME, self.hex)
        self.host = self.prefix + "-h"
        self.host_path = "/run/netns/" + self.host
        self.ifprefix = "%s%sv" % (self.IFNAME, self.hex)
        self.box_binary = box_binary
        self.tree = None
        self.boxes = []            # Popen of each box process
        self.pids = []             # container processes, in container order
        self.names = []            # container names, same order
        self.scratch = None
        self.iofile = None
        self.host_made = False
        self.closed = False

    # -- setup ---------------------------------------------------------------------------------------------

    def setup(self, workdir=""):
        # The owner file first: whatever follows can be found and removed by a later run.
        self.scratch = os.path.join(_scratch_dir(), self.prefix)
        os.mkdir(self.scratch, 0o700)
        with open(os.path.join(self.scratch, "owner"), "w") as f:
            f.write("%d\n%s\n%s\n" % (os.getpid(), _start_time(os.getpid()), workdir))
        run("ip", "netns", "add", self.host)
        self.host_made = True
        # No IPv6 in the lab (its autoconfiguration chatter on a thousand links costs softirq time).
        run("nsenter", "--net=" + self.host_path, "--", "sysctl", "-q", "-w",
            "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
        run("ip", "-n", self.host, "link", "set", "lo", "up")
        self.tree = CgroupTree(self.prefix)
        self.iofile = os.path.join(self.scratch, "io")
        with open(self.iofile, "wb"):
            pass
        return self

    def _activate_throttle(self, container):
        """blk-throttle on the scratch disk, through our own cgroup's file (no limit)."""
        blkio = container.dirs.get("blkio")
        if blkio is not None:
            activate_blk_throttle(blkio, self.scratch)

    def add(self, count):
        """``count`` more containers; returns how long it took (seconds)."""
        start = time.monotonic()
        first = len(self.names)
        names = ["c%04d" % i for i in range(first, first + count)]
        lines = []
        for name in names:
            c = self.tree.container(name)
            if first == 0 and name == names[0]:
                self._activate_throttle(c)
            dirs = [d for k, d in c.dirs.items() if k != UNIFIED]
            dirs = sorted(set(dirs), key=dirs.index)
            if UNIFIED in c.dirs:
                dirs.append(c.dirs[UNIFIED])     # last: moving into it may fail on a hybrid host
            lines.append("\t".join(dirs))
        with open(self.iofile, "r+b") as f:
            f.truncate((first + count) * 4096)
        listfile = os.path.join(self.scratch, "dirs-%d" % first)
        with open(listfile, "w") as f:
            f.write("\n".join(lines) + "\n")
        # The box's stdout is read only here; its stdin stays open until close() (its end of file stops it).
        box = subprocess.Popen([self.box_binary, str(count), listfile, self.iofile], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.boxes.append(box)
        pids = []
        for line in box.stdout:
            line = line.strip()
            if line == b"ready":
                break
            pids.append(int(line))
        if len(pids) != count:
            err = box.stderr.read().decode(errors="replace") if box.poll() is not None else ""
            raise RuntimeError("box started %d of %d containers: %s" % (len(pids), count, err.strip()))
        # Offset the container indexes by ``first`` so that interface names stay unique across boxes.
        batch = ["link add %s%d up type veth peer name eth0 netns %d" % (self.ifprefix, first + i, pid)
                 for i, pid in enumerate(pids)]
        batchfile = os.path.join(self.scratch, "veths-%d" % first)
        with open(batchfile, "w") as f:
            f.write("\n".join(batch) + "\n")
        run("ip", "-n", self.host, "-batch", batchfile)
        box.stdin.write(b"up\n")          # each container brings its own end up
        box.stdin.flush()
        reply = box.stdout.readline().split()
        if reply != [b"up", str(count).encode()]:
            raise RuntimeError("box: %d containers did not bring eth0 up: %r" % (count, reply))
        self.pids += pids
        self.names += names
        return time.monotonic() - start

    @property
    def count(self):
        return len(self.names)

    def cgroup(self, name):
        return "/%s/%s" % (self.prefix, name)

    def match_regex(self):
        """The plugin's Match option for these containers (names c0000...)."""
        return "^/%s/(?P<name>c[0-9]+)$" % self.prefix

    def ignore_regex(self):
        """The plugin's Ignore option: every container of the host but ours (a test suite running at the
        same time may have Docker or runc containers of its own)."""
        return "^(?!/%s/)" % self.prefix

    # -- teardown ------------------------------------------------------------------------------------------

    def close(self):
        """Remove everything; returns a list of what is left (empty when all is gone)."""
        if self.closed:
            return []
        self.closed = True
        left = []
        for box in self.boxes:
            try:
                box.stdin.close()           # end of file: the box kills and reaps its children
            except OSError:
                pass
        for box in self.boxes:
            try:
                box.wait(timeout=60)
            except subprocess.TimeoutExpired:
                box.kill()                  # our own process, by PID (children die with it: PDEATHSIG)
                box.wait(timeout=30)
            for stream in (box.stdout, box.stderr):
                if stream is not None:
                    stream.close()
        deadline = time.monotonic() + 30
        alive = [p for p in self.pids if _alive(p)]
        while alive and time.monotonic() < deadline:
            time.sleep(0.05)
            alive = [p for p in alive if _alive(p)]
        left += ["process %d" % p for p in alive]
        if self.host_made:
            res = subprocess.run(["ip", "netns", "del", self.host], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE)
            if res.returncode != 0 and os.path.exists(self.host_path):
                left.append("network namespace %s" % self.host)
        if self.tree is not None:
            left += self.tree.cleanup(timeout=30)
            left += self.tree.existing_dirs()
        if self.scratch is not None and os.path.isdir(self.scratch):
            shutil.rmtree(self.scratch, ignore_errors=True)
            if os.path.exists(self.scratch):
                left.append(self.scratch)
        return sorted(set(left))


def _alive(pid):
    """Whether ``pid`` is still one of ours (a box child: a zombie counts as gone)."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != b"Z"
