"""Synthetic containers: cgroups with real processes in them, for tests, the demo and benchmarks.

A synthetic container is one directory per cgroup hierarchy (v1 controllers and the cgroup2 mount)
under a prefix the caller owns, with workload processes moved into all of them::

    from ccg_lab.synthetic import CgroupTree

    with CgroupTree("ccg-test-1a2b") as tree:
        c = tree.container("web1")          # /sys/fs/cgroup/<hierarchy>/ccg-test-1a2b/web1
        c.set_memory_limit(64 << 20)
        p = c.spawn(cpu_seconds=0.5, memory_mib=32, children=2)
        p.wait_ready()                      # the work has been done inside the cgroups
        ...                                 # read the cgroup files
    # every process killed, every directory removed

Safety, on purpose strict: every path this module writes, creates, removes or reads goes through
:func:`check_path`, which refuses anything with a component named ``process_api`` (the machine's own
cgroup), relative paths and ``..``. Directories are created only under ``<mount>/<prefix>`` (absolute, from
each hierarchy's root, never relative to the caller's own cgroup), removed only with ``rmdir``, and the only
processes ever signalled are those this module started (checked by session id, see
:meth:`SyntheticContainer.stop`).

Workloads are ``python -I -S -c <program>`` processes started with :class:`subprocess.Popen` in their own
session.  Each blocks on its stdin until the parent has written its PID to ``cgroup.procs`` of every
directory of the container, so everything it does afterwards (forking its children, burning CPU, touching
memory) is charged to the container.  Readiness comes back as one line on its stderr pipe.  A workload whose
parent process dies exits by itself within :data:`ORPHAN_CHECK_INTERVAL` seconds, and its children exit with
it, so a crashed test leaves at most empty directories, which the next :meth:`CgroupTree.cleanup` of the same
prefix removes.

Standard library and :mod:`collectd_cgroups.hierarchy` (the mountinfo parser) only; Python 3.9+.
"""

import atexit
import errno
import os
import re
import select
import signal
import stat
import subprocess
import sys
import threading
import time

from collectd_cgroups import hierarchy

__all__ = [
    "CgroupTree",
    "SyntheticContainer",
    "SyntheticProcess",
    "CgroupError",
    "UnsafePathError",
    "WorkloadError",
    "check_path",
    "read_hierarchies",
    "whole_disk",
    "activate_blk_throttle",
    "DEFAULT_CONTROLLERS",
]

#: The v1 controllers a container gets a directory in (those mounted); it also always gets the cgroup2 dir.
DEFAULT_CONTROLLERS = ("cpu", "cpuacct", "memory", "pids", "blkio")

#: Name of the machine's own cgroup: never created, entered, written, removed or followed.
FORBIDDEN = "process_api"

#: Upper bounds that keep test processes harmless.
MAX_MEMORY_MIB = 4096
MAX_CPU_SECONDS = 3600.0
MAX_CHILDREN = 1000

#: A workload checks every this many seconds whether its parent is still alive, and exits if not.
ORPHAN_CHECK_INTERVAL = 5.0

#: cgroup v1 controller name -> the cgroup2 controller that provides it.
V2_NAME = {"cpu": "cpu", "cpuacct": "cpu", "memory": "memory", "pids": "pids", "blkio": "io",
           "cpuset": "cpuset", "hugetlb": "hugetlb", "io": "io", "rdma": "rdma", "misc": "misc"}

UNIFIED = "unified"


class CgroupError(RuntimeError):
    """A cgroup operation failed."""


class UnsafePathError(CgroupError, ValueError):
    """A path or name that this module refuses to touch."""


class WorkloadError(CgroupError):
    """A workload process died or did not become ready; ``stderr`` holds what it printed."""

    def __init__(self, message, stderr="", returncode=None):
        if stderr:
            message = "%s; stderr:\n%s" % (message, stderr.rstrip())
        super().__init__(message)
        self.stderr = stderr
        self.returncode = returncode


# --------------------------------------------------------------------------------------------------------
# The one safety check


def check_path(path):
    """Return ``path`` if it is safe to touch, raise :class:`UnsafePathError` otherwise.

    Safe means: a str, absolute, normalised (no ``.``, ``..``, ``//``, trailing ``/``), no NUL, and no
    component named ``process_api``.  Every write, mkdir, rmdir and read of this module goes through here.
    """
    if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
        raise UnsafePathError("refusing non-absolute or malformed path %r" % (path,))
    parts = path.split("/")[1:]
    if FORBIDDEN in parts:
        raise UnsafePathError("refusing path %r: it is (under) a cgroup named %s" % (path, FORBIDDEN))
    if path != "/" and ("" in parts or "." in parts or ".." in parts):
        raise UnsafePathError("refusing non-normalised path %r" % (path,))
    return path


def _check_component(name, what):
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\0" in name:
        raise UnsafePathError("invalid %s %r: must be one non-empty path component" % (what, name))
    if name == FORBIDDEN:
        raise UnsafePathError("invalid %s %r: %s belongs to the machine" % (what, name, FORBIDDEN))
    if any(ord(ch) < 32 for ch in name):
        raise UnsafePathError("invalid %s %r: control characters" % (what, name))
    return name


def _normalise_prefix(prefix):
    if not isinstance(prefix, str):
        raise UnsafePathError("prefix must be a str, not %r" % (prefix,))
    stripped = prefix.strip("/") if prefix.startswith("/") else prefix
    if not stripped:
        raise UnsafePathError("empty prefix %r: the tree must live below the hierarchy root" % (prefix,))
    parts = stripped.split("/")
    for part in parts:
        _check_component(part, "prefix component of %r" % (prefix,))
    return "/".join(parts)


def _mkdir(path):
    """mkdir; True if created, False if it already existed."""
    try:
        os.mkdir(check_path(path))
        return True
    except FileExistsError:
        return False


def _write(path, data):
    fd = os.open(check_path(path), os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, data if isinstance(data, bytes) else str(data).encode())
    finally:
        os.close(fd)


def _read(path):
    with open(check_path(path), "rb") as f:
        return f.read()


# --------------------------------------------------------------------------------------------------------
# Finding the hierarchies

#: The v1 controllers in the kernel's order (its subsystem ids): the order of /proc/cgroups and of a mount's
#: controllers in mountinfo.
_KERNEL_ORDER = ("cpuset", "cpu", "cpuacct", "blkio", "memory", "devices", "freezer", "net_cls", "perf_event",
                 "net_prio", "hugetlb", "pids", "rdma", "misc", "debug")


def whole_disk(path):
    """MAJ:MIN of the whole disk holding ``path``, or that is ``path`` (a block device node); a partition's
    parent, as blk-throttle works on disks.  None when ``path`` is on no block device (tmpfs, overlay)."""
    st = os.stat(path)
    st_dev = st.st_rdev if stat.S_ISBLK(st.st_mode) else st.st_dev
    sysdir = "/sys/dev/block/%d:%d" % (os.major(st_dev), os.minor(st_dev))
    if not os.path.exists(sysdir):
        return None
    real = os.path.realpath(sysdir)
    if os.path.exists(real + "/partition"):
        real = os.path.dirname(real)
    with open(real + "/dev") as f:
        return f.read().strip()


def activate_blk_throttle(blkio_dir, path):
    """Make cgroup v1 count block I/O on the disk holding ``path``: since Linux 6.9 blk-throttle (whose
    ``blkio.throttle.*`` files are v1's only counters on disks without BFQ) starts counting on a disk only
    once some cgroup has a rule for it (seen on 6.18: every file ``Total 0`` until then).  The rule written,
    ``MAJ:MIN 0``, limits nothing; it goes into ``blkio_dir``, a v1 blkio directory of the caller's own.
    Returns the disk's MAJ:MIN."""
    disk = whole_disk(path)
    if disk is None:
        raise CgroupError("%s is on no block device" % path)
    _write(blkio_dir + "/blkio.throttle.write_bps_device", "%s 0" % disk)
    return disk


def _v1_subsystems():
    """The kernel's controllers in its order (/proc/cgroups); without that file, those of :data:`V2_NAME`."""
    try:
        with open("/proc/cgroups") as f:
            found = [line.split()[0] for line in f if line.strip() and not line.startswith("#")]
    except OSError:
        found = []
    return found or [c for c in _KERNEL_ORDER if c in V2_NAME]


def read_hierarchies(mountinfo="/proc/self/mountinfo"):
    """``{controller_or_"unified": mountpoint}`` from mountinfo (parsed by :mod:`collectd_cgroups.hierarchy`).

    v1 mounts map each of their controllers (``cpu``, ``memory``, ... and named hierarchies as
    ``name=systemd``) to the mount point; co-mounted controllers (``cpu,cpuacct``) map to the same
    directory.  The cgroup2 mount is ``"unified"``.  When a hierarchy is mounted several times the mount of
    its root (``/``) wins, then the first one.  Mount points with a ``process_api`` component are ignored.
    """
    subsystems = _v1_subsystems()
    with open(mountinfo) as f:
        mounts = hierarchy.parse_mountinfo(f.read())
    found = {}      # key -> (is_root_mount, mountpoint)
    for m in mounts:
        try:
            check_path(m.path)
        except UnsafePathError:
            continue
        if m.version == 2:
            keys = [UNIFIED]
        else:
            keys = [c for c in subsystems if c in m.controllers]
            if m.name is not None:
                keys.append("name=" + m.name)
        for key in keys:
            entry = (m.root == "/", m.path)
            if key not in found or (entry[0] and not found[key][0]):
                found[key] = entry
    return {key: mp for key, (_, mp) in found.items()}


# --------------------------------------------------------------------------------------------------------
# The workload program (runs in a fresh ``python -I -S``; keep it small, stdlib builtins only)

_WORKLOAD = r"""
import os, sys, time
def main(cpu, mib, nkids, duty, exit_after, ppid, check):
    gate = b""
    while not gate.endswith(b"\n"):
        chunk = os.read(0, 64)
        if not chunk:
            os._exit(3)
        gate += chunk
    if gate != b"go\n":
        os._exit(3)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    r, w = os.pipe()
    kids = []
    for _ in range(nkids):
        pid = os.fork()
        if pid == 0:
            try:
                os.close(w)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                while os.read(r, 1):
                    pass
            finally:
                os._exit(0)
        kids.append(pid)
    os.close(r)
    t0 = time.process_time()
    end = t0 + cpu
    while time.process_time() < end:
        for _ in range(1000):
            pass
    used = time.process_time() - t0
    buf = bytearray(mib << 20)
    if mib:
        buf[::4096] = b"\x01" * (len(buf) // 4096)
    os.write(2, ("READY %d %.6f %s\n" % (os.getpid(), used, " ".join(map(str, kids)))).encode())
    os.dup2(null, 1)
    os.dup2(null, 2)
    now = time.monotonic()
    deadline = None if exit_after < 0 else now + exit_after
    next_check = now + check
    period = 0.1
    tick = now
    while True:
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            break
        if now >= next_check:
            next_check = now + check
            if os.getppid() != ppid:
                break
        if duty > 0:
            tick += period
            if tick < now:
                tick = now + period
            cpu_end = time.process_time() + duty * period
            while time.process_time() < cpu_end and time.monotonic() < tick:
                for _ in range(200):
                    pass
            wake = tick
        else:
            wake = next_check
        if deadline is not None and deadline < wake:
            wake = deadline
        pause = wake - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    os.close(w)
    for pid in kids:
        try:
            os.waitpid(pid, 0)
        except OSError:
            pass
    os._exit(0)
a = sys.argv[1:]
main(float(a[0]), int(a[1]), int(a[2]), float(a[3]), float(a[4]), int(a[5]), float(a[6]))
"""


# The program travels in the environment so that ps and top show a short command line.
_ENV_VAR = "CCG_SYNTHETIC_WORKLOAD"
_BOOTSTRAP = "import os;exec(os.environ.pop(%r))  # ccg_lab.synthetic workload" % _ENV_VAR


def _python_executable():
    """A real Python interpreter: sys.executable, unless it is not one (as inside collectd)."""
    for candidate in (sys.executable, getattr(sys, "_base_executable", None)):
        if candidate and re.match(r"python[0-9.]*$", os.path.basename(candidate)) \
                and os.access(candidate, os.X_OK):
            return candidate
    return "/usr/bin/python3"


def _getsid(pid):
    try:
        return os.getsid(pid)
    except OSError:
        return None


def _kill(pid, sig=signal.SIGKILL):
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


# --------------------------------------------------------------------------------------------------------


class SyntheticProcess:
    """One workload process (and the children it forks) in a :class:`SyntheticContainer`."""

    def __init__(self, container, popen):
        self.container = container
        self.popen = popen
        self.pid = popen.pid
        self.child_pids = []
        self.cpu_used = None        # CPU seconds the workload burnt, as it measured it
        self.ready = False
        self._stderr = b""

    def __repr__(self):
        return "<SyntheticProcess pid=%d children=%s ready=%s rc=%s>" % (
            self.pid, self.child_pids, self.ready, self.popen.returncode)

    @property
    def returncode(self):
        return self.popen.returncode

    def poll(self):
        """None while running, else its exit status (reaps it)."""
        return self.popen.poll()

    def _close_pipe(self):
        if self.popen.stderr is not None:
            try:
                self.popen.stderr.close()
            except OSError:
                pass
            self.popen.stderr = None

    def _died(self, why):
        self._close_pipe()
        try:
            rc = self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            rc = None
        text = self._stderr.decode(errors="replace")
        if rc is not None and rc < 0:
            status = "killed by %s%s" % (signal.Signals(-rc).name,
                                         " (out of memory?)" if rc == -signal.SIGKILL else "")
        else:
            status = "exit status %s" % rc
        return WorkloadError("workload pid %d in %s %s (%s)"
                             % (self.pid, self.container.path, why, status), text, rc)

    def _pump(self, timeout):
        """Read readiness; True once ready, False on timeout, WorkloadError if it died first."""
        if self.ready:
            return True
        pipe = self.popen.stderr
        if pipe is None:
            raise self._died("never became ready")
        fd = pipe.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            remaining = deadline - time.monotonic()
            if not poller.poll(max(0, int(remaining * 1000) + 1) if remaining > 0 else 0):
                if time.monotonic() >= deadline:
                    return False
                continue
            try:
                chunk = os.read(fd, 65536)
            except InterruptedError:
                continue
            if not chunk:
                raise self._died("exited before it was ready")
            self._stderr += chunk
            for line in self._stderr.split(b"\n")[:-1]:
                if line.startswith(b"READY "):
                    words = line.split()
                    self.cpu_used = float(words[2])
                    self.child_pids = [int(w) for w in words[3:]]
                    self.ready = True
                    self._stderr = self._stderr.replace(line + b"\n", b"")
                    self._close_pipe()
                    return True

    def is_ready(self):
        """Non-blocking: True once the workload has done its CPU and memory work."""
        return self._pump(0)

    def wait_ready(self, timeout=30):
        """Block until the workload did its CPU and memory work; return self.

        Raises :class:`WorkloadError` (with the workload's stderr) if it died first, TimeoutError after
        ``timeout`` seconds.
        """
        if not self._pump(timeout):
            raise TimeoutError("workload pid %d in %s not ready after %ss; stderr so far: %r"
                               % (self.pid, self.container.path, timeout,
                                  self._stderr.decode(errors="replace")))
        return self

    def _victims(self, listed=()):
        """PIDs of this workload's descendants still alive: its session (they never leave it)."""
        found = []
        for pid in set(self.child_pids) | set(listed):
            if pid != self.pid and _getsid(pid) == self.pid:
                found.append(pid)
        return found

    def _signal(self, listed=()):
        """SIGKILL the descendants first (the still-living workload holds their zombies, so their PIDs
        cannot be reused meanwhile), then the workload itself.  Does not wait."""
        for pid in self._victims(listed):
            _kill(pid)
        # The workload leads its own session: checking that also guards against a reused PID when
        # SIGCHLD is ignored (as in collectd) and the kernel reaped it behind Popen's back.
        if self.popen.returncode is None and _getsid(self.pid) == self.pid:
            _kill(self.pid)
        self._close_pipe()

    def _reap(self, timeout=10):
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        except ChildProcessError:           # SIGCHLD ignored (collectd): the kernel reaped it
            pass

    def kill(self):
        """Kill the workload and its children and reap the workload."""
        self._signal(self.container.pids())
        self._reap()


class SyntheticContainer:
    """A cgroup directory per hierarchy; see :meth:`CgroupTree.container`."""

    def __init__(self, tree, name, dirs, unique_dirs):
        self.tree = tree
        self.name = name
        self.path = "/%s/%s" % (tree.prefix, name)
        self.dirs = dirs                      # {controller or "unified": directory}
        self._unique = unique_dirs            # distinct directories, in creation order
        self.processes = []
        self.removed = False
        self.unified_move_error = None        # why moving into the cgroup2 dir failed (hybrid: tolerated)

    def __repr__(self):
        return "<SyntheticContainer %s (%d processes)>" % (self.path, len(self.processes))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()

    # ---- limits

    def _v1(self, controller):
        return controller in self.tree.v1_controllers and controller in self.dirs

    def _v2(self, controller):
        return V2_NAME.get(controller, controller) in self.tree.v2_controllers and UNIFIED in self.dirs

    def set_memory_limit(self, limit_bytes):
        """Memory limit in bytes (None: unlimited): v1 ``memory.limit_in_bytes`` or v2 ``memory.max``."""
        if self._v1("memory"):
            _write(self.dirs["memory"] + "/memory.limit_in_bytes",
                   "-1" if limit_bytes is None else str(int(limit_bytes)))
        elif self._v2("memory"):
            _write(self.dirs[UNIFIED] + "/memory.max",
                   "max" if limit_bytes is None else str(int(limit_bytes)))
        else:
            raise CgroupError("no memory controller for %s" % self.path)

    def set_cpu_limit(self, cores, period_us=100000):
        """CPU bandwidth limit in cores (None: unlimited): v1 ``cpu.cfs_quota_us`` or v2 ``cpu.max``."""
        quota = None if cores is None else max(1000, int(cores * period_us))
        if self._v1("cpu"):
            _write(self.dirs["cpu"] + "/cpu.cfs_period_us", str(period_us))
            _write(self.dirs["cpu"] + "/cpu.cfs_quota_us", "-1" if quota is None else str(quota))
        elif self._v2("cpu"):
            _write(self.dirs[UNIFIED] + "/cpu.max",
                   "%s %d" % ("max" if quota is None else quota, period_us))
        else:
            raise CgroupError("no cpu controller for %s" % self.path)

    def set_pids_limit(self, limit):
        """``pids.max`` (None: unlimited)."""
        value = "max" if limit is None else str(int(limit))
        if self._v1("pids"):
            _write(self.dirs["pids"] + "/pids.max", value)
        elif self._v2("pids"):
            _write(self.dirs[UNIFIED] + "/pids.max", value)
        else:
            raise CgroupError("no pids controller for %s" % self.path)

    # ---- processes

    def _procs_dir(self):
        for key in ("memory", UNIFIED, "pids"):
            if key in self.dirs:
                return self.dirs[key]
        return self._unique[0]

    def pids(self):
        """PIDs currently in the container (``cgroup.procs`` of the memory or cgroup2 directory)."""
        try:
            return [int(x) for x in _read(self._procs_dir() + "/cgroup.procs").split()]
        except FileNotFoundError:
            return []

    def spawn(self, cpu_seconds=0.0, memory_mib=0, children=0, duty=0.0, exit_after=None, netns=None):
        """Start a workload process in the container and return its :class:`SyntheticProcess`.

        The process waits until it is in every cgroup of the container, then forks ``children`` sleeping
        processes, burns ``cpu_seconds`` of CPU (its own process time), touches ``memory_mib`` MiB, reports
        readiness (see :meth:`SyntheticProcess.wait_ready`), then keeps burning CPU at duty cycle ``duty``
        (0..1, in 100 ms periods) or sleeps, until killed or until ``exit_after`` seconds after readiness.
        ``netns``: the path of a network namespace (``/run/netns/NAME``) it enters before it starts
        (nsenter execs it: the same PID).  Returns at once, without waiting for readiness.
        """
        if self.removed:
            raise CgroupError("container %s was removed" % self.path)
        cpu_seconds = float(cpu_seconds)
        duty = float(duty)
        if not 0 <= cpu_seconds <= MAX_CPU_SECONDS:
            raise ValueError("cpu_seconds must be within 0..%s" % MAX_CPU_SECONDS)
        if not isinstance(memory_mib, int) or not 0 <= memory_mib <= MAX_MEMORY_MIB:
            raise ValueError("memory_mib must be an int within 0..%d" % MAX_MEMORY_MIB)
        if not isinstance(children, int) or not 0 <= children <= MAX_CHILDREN:
            raise ValueError("children must be an int within 0..%d" % MAX_CHILDREN)
        if not 0 <= duty <= 1:
            raise ValueError("duty must be within 0..1")
        if exit_after is not None and not float(exit_after) >= 0:
            raise ValueError("exit_after must be None or >= 0")
        argv = [self.tree.python, "-I", "-S", "-c", _BOOTSTRAP,
                repr(cpu_seconds), str(memory_mib), str(children), repr(duty),
                repr(-1.0 if exit_after is None else float(exit_after)),
                str(os.getpid()), repr(float(ORPHAN_CHECK_INTERVAL))]
        if netns is not None:
            argv = ["nsenter", "--net=" + check_path(netns), "--"] + argv
        popen = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, close_fds=True, start_new_session=True,
                                 cwd="/", bufsize=0, env=self.tree._env)
        proc = SyntheticProcess(self, popen)
        self.processes.append(proc)
        pid = b"%d" % popen.pid
        try:
            for d in self._unique:
                try:
                    _write(d + "/cgroup.procs", pid)
                except OSError as e:
                    if d == self.dirs.get(UNIFIED) and self.tree.mode == "hybrid" \
                            and not self.tree.v2_controllers:
                        self.unified_move_error = e     # no controller lives there: tolerated
                        continue
                    raise CgroupError("cannot move pid %d into %s: %s" % (popen.pid, d, e)) from e
            try:
                os.write(popen.stdin.fileno(), b"go\n")
            except BrokenPipeError:
                raise proc._died("exited before it was released into its cgroups") from None
        except WorkloadError:
            raise
        except BaseException:
            _kill(popen.pid)
            proc._reap()
            proc._close_pipe()
            raise
        finally:
            try:
                popen.stdin.close()
            except OSError:
                pass
        return proc

    def _signal_all(self):
        listed = self.pids() if not self.removed else []
        for proc in self.processes:
            proc._signal(listed)

    def _reap_all(self, timeout=10):
        deadline = time.monotonic() + timeout
        for proc in self.processes:
            proc._reap(max(0.0, deadline - time.monotonic()))

    def stop(self):
        """Kill every process this container started (and their children), by PID, and reap them.

        Only processes whose session is one of our workloads are signalled: a foreign process that
        someone moved into the cgroup is left alone (and then keeps :meth:`remove` from succeeding).
        """
        self._signal_all()
        self._reap_all()

    def _rmdirs(self, timeout):
        left = []
        for d in reversed(self._unique):
            if not _rmdir_retry(d, timeout):
                left.append(d)
        return left

    def remove(self, timeout=5.0):
        """:meth:`stop`, then rmdir the container's directories (retrying on EBUSY up to ``timeout``).

        Raises :class:`CgroupError` naming the directories that could not be removed."""
        self.stop()
        left = self._rmdirs(timeout)
        self.removed = True
        self.tree._forget(self)
        if left:
            raise CgroupError("could not remove %s (still busy): %s" % (self.path, ", ".join(left)))


def _rmdir_retry(path, timeout):
    """rmdir, retrying on EBUSY while exiting tasks leave; True when the directory is gone."""
    check_path(path)
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        try:
            os.rmdir(path)
            return True
        except FileNotFoundError:
            return True
        except OSError as e:
            if e.errno not in (errno.EBUSY, errno.ENOTEMPTY) or time.monotonic() >= deadline:
                return False
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


_LIVE_TREES = set()
_LIVE_LOCK = threading.Lock()


def _cleanup_live_trees():
    with _LIVE_LOCK:
        trees = list(_LIVE_TREES)
    for tree in trees:
        if tree._owner_pid != os.getpid():      # a forked child exiting: not its containers
            continue
        try:
            tree.cleanup()
        except Exception as e:      # at exit: report, carry on with the others
            sys.stderr.write("ccg_lab.synthetic: cleanup of %s failed: %s\n" % (tree.prefix, e))


atexit.register(_cleanup_live_trees)


class CgroupTree:
    """The synthetic containers under one prefix, in every cgroup hierarchy.

    ``prefix`` is one path component or ``a/b`` below each hierarchy's root; the caller owns it (cleanup
    removes everything below it that it can).  ``controllers`` are the v1 controllers to use where mounted;
    on cgroup2 the corresponding controllers are enabled in ``cgroup.subtree_control`` along the prefix when
    they are not bound to v1 (on a pure v2 system: all of them; on this hybrid machine: none).
    ``hierarchies`` overrides what mountinfo says (``{controller or "unified": mountpoint}``).
    """

    def __init__(self, prefix, controllers=DEFAULT_CONTROLLERS, hierarchies=None, python=None):
        self.prefix = _normalise_prefix(prefix)
        self.path = "/" + self.prefix
        self.hierarchies = dict(read_hierarchies() if hierarchies is None else hierarchies)
        for mp in self.hierarchies.values():
            check_path(mp)
        self.controllers = tuple(controllers)
        self.python = python or _python_executable()
        self._env = dict(os.environ, **{_ENV_VAR: _WORKLOAD})
        v1_keys = [k for k in self.hierarchies if k != UNIFIED]
        if UNIFIED in self.hierarchies:
            self.mode = "hybrid" if any(not k.startswith("name=") for k in v1_keys) else "v2"
        else:
            self.mode = "v1"
        self.v1_controllers = {c for c in self.controllers if c in self.hierarchies and c != UNIFIED}
        self.v2_controllers = set()     # cgroup2 controllers we enable and use, set in _setup()
        self._containers = {}
        self._owner_pid = os.getpid()
        self._lock = threading.RLock()
        self._ready = False
        with _LIVE_LOCK:
            _LIVE_TREES.add(self)

    def __repr__(self):
        return "<CgroupTree %s (%s, %d containers)>" % (self.path, self.mode, len(self._containers))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()

    @property
    def containers(self):
        """``{name: SyntheticContainer}`` of the live containers."""
        return dict(self._containers)

    def _mounts(self):
        """Distinct mount points this tree uses, v1 first, cgroup2 last."""
        seen = []
        for c in self.controllers:
            mp = self.hierarchies.get(c)
            if mp and mp not in seen:
                seen.append(mp)
        if UNIFIED in self.hierarchies and self.hierarchies[UNIFIED] not in seen:
            seen.append(self.hierarchies[UNIFIED])
        return seen

    def _prefix_dirs(self, mount):
        parts = self.prefix.split("/")
        return [mount + "/" + "/".join(parts[:i]) for i in range(1, len(parts) + 1)]

    def _setup(self):
        """Create the prefix directories; on cgroup2 enable the controllers that live there."""
        if self._ready:
            return
        wanted_v2 = []
        if UNIFIED in self.hierarchies:
            root = self.hierarchies[UNIFIED]
            try:
                available = _read(root + "/cgroup.controllers").decode().split()
            except OSError:
                available = []
            for c in self.controllers:
                v2 = V2_NAME.get(c, c)
                if c not in self.v1_controllers and v2 in available and v2 not in wanted_v2:
                    wanted_v2.append(v2)
        for mount in self._mounts():
            for d in self._prefix_dirs(mount):
                if _mkdir(d):
                    self._init_cpuset(d)
        if wanted_v2:
            root = self.hierarchies[UNIFIED]
            for d in [root] + self._prefix_dirs(root):
                enabled = _read(d + "/cgroup.subtree_control").decode().split()
                for v2 in wanted_v2:
                    if v2 not in enabled:
                        _write(d + "/cgroup.subtree_control", "+" + v2)
        self.v2_controllers = set(wanted_v2)
        self._ready = True

    def _init_cpuset(self, d):
        """A new v1 cpuset cgroup starts with no CPUs and no memory nodes: copy the parent's."""
        if self.hierarchies.get("cpuset") and d.startswith(self.hierarchies["cpuset"] + "/"):
            parent = os.path.dirname(d)
            for name in ("cpuset.cpus", "cpuset.mems"):
                if not _read(d + "/" + name).strip():
                    _write(d + "/" + name, _read(parent + "/" + name).strip() or b"\n")

    def container(self, name):
        """Create (or adopt, if the directories exist) container ``name``: a directory
        ``<mount>/<prefix>/<name>`` in every hierarchy of ``controllers`` that is mounted, and in the
        cgroup2 mount."""
        _check_component(name, "container name")
        with self._lock:
            if name in self._containers:
                raise CgroupError("container %s/%s exists already" % (self.path, name))
            self._setup()
            with _LIVE_LOCK:
                _LIVE_TREES.add(self)
            dirs = {}
            for c in self.controllers:
                if c in self.v1_controllers:
                    dirs[c] = "%s/%s/%s" % (self.hierarchies[c], self.prefix, name)
            if UNIFIED in self.hierarchies:
                udir = "%s/%s/%s" % (self.hierarchies[UNIFIED], self.prefix, name)
                for c in self.controllers:
                    if c not in dirs and V2_NAME.get(c, c) in self.v2_controllers:
                        dirs[c] = udir
                dirs[UNIFIED] = udir
            unique = []
            for d in dirs.values():
                if d not in unique:
                    unique.append(d)
            if not unique:
                raise CgroupError("no cgroup hierarchy found for controllers %s" % (self.controllers,))
            created = []
            try:
                for d in unique:
                    if _mkdir(d):
                        created.append(d)
                    self._init_cpuset(d)
            except BaseException:
                for d in reversed(created):
                    _rmdir_retry(d, 0)
                raise
            c = SyntheticContainer(self, name, dirs, unique)
            self._containers[name] = c
            return c

    def _forget(self, container):
        with self._lock:
            if self._containers.get(container.name) is container:
                del self._containers[container.name]

    def _leftovers(self, path, out):
        """rmdir everything below ``path`` bottom-up (only directories; never a process_api one)."""
        try:
            entries = list(os.scandir(check_path(path)))
        except FileNotFoundError:
            return
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                child = path + "/" + entry.name
                if entry.name == FORBIDDEN:
                    out.append(child)
                    continue
                self._leftovers(child, out)
                if not _rmdir_retry(child, 0.5):
                    out.append(child)

    def cleanup(self, strict=False, timeout=5.0):
        """Stop and remove every container, then everything left below the prefix, then the prefix.

        Idempotent, and safe after partial failures (also of an earlier run with the same prefix: empty
        leftover directories are removed, foreign processes are never signalled).  Returns the list of
        directories that could not be removed; with ``strict`` raises :class:`CgroupError` instead.
        """
        with self._lock:
            containers = list(self._containers.values())
            for c in containers:          # all signals first, then all reaping: fast for many containers
                c._signal_all()
            deadline = time.monotonic() + timeout
            for c in containers:
                c._reap_all(max(0.0, deadline - time.monotonic()))
            left = []
            for c in containers:
                left.extend(c._rmdirs(max(0.5, deadline - time.monotonic())))
                c.removed = True
                self._forget(c)
            for mount in self._mounts():
                dirs = self._prefix_dirs(mount)
                self._leftovers(dirs[-1], left)
                for d in reversed(dirs):
                    if not _rmdir_retry(d, 0):
                        if os.path.isdir(d):
                            left.append(d)
                        break
            self._ready = False
            with _LIVE_LOCK:
                _LIVE_TREES.discard(self)
        left = sorted(set(left))
        if left and strict:
            raise CgroupError("cleanup of %s left: %s" % (self.path, ", ".join(left)))
        return left

    def existing_dirs(self):
        """Directories of the prefix that exist now, in any hierarchy (empty after a full cleanup)."""
        found = []
        for mp in sorted(set(self.hierarchies.values())):
            d = "%s/%s" % (mp, self.prefix)
            if os.path.isdir(check_path(d)):
                found.append(d)
        return found
