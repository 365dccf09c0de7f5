"""The in-guest world: two containers on the real cgroup v2 kernel, built once per guest boot.

Runs only inside the v2 guest (loaded with ``-p v2guest.guest_world`` by run.py's suite command;
tests/v2guest/conftest.py keeps the host's pytest away from the guest_*.py files).  Python is
20-40x slower there (TCG), so the world is made once for the session and every test reads it.

- ``/ccg-v2g-<hex>/box``, a user-``Match``ed cgroup, ``memory.max`` 96 MiB, holding: a
  synthetic workload (ccg_lab.synthetic) that burnt CPU, touched 24 MiB and forked 2
  children; an I/O worker that wrote 4 MiB with O_DIRECT (and read them back), then 8 MiB
  buffered + fsync, to an ext4 file system on the scratch disk, and exited; a hog that allocated
  past ``memory.max`` and was OOM-killed.
- ``/system.slice/docker-<64 hex>.scope``, Docker's systemd-driver layout: ``cpu.max`` half a
  core, ``pids.max`` 32, ``memory.high`` 256 MiB; a worker that burns 1 s of CPU (throttled) with
  2 children, and holds.  Its config.v2.json (name "web") is in a private DockerDataRoot.
- ``/machine.slice/libpod-<64 hex>.scope``, podman with crun's layout: the scope enables the
  controllers for its child ``container``, where the payload (a worker burning 0.3 s with one
  child) runs: the scope itself has no process (cgroup v2's "no internal processes" rule).
- ``/ccg-v2g-<hex>-bare/plain``, ``Match``ed too, under a parent that enables no controller: only
  the files every cgroup2 directory has (cpu.stat's usage figures, the *.pressure files).

Workers report what they measured themselves (their own ``/proc/self/stat`` when released into
the cgroup, bytes written and read) as one JSON line.
"""

import json
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from ccg_lab.synthetic import CgroupTree
from tests.support.capture import docker_config_v2

MiB = 1 << 20
CG = "/sys/fs/cgroup"
CLK_TCK = os.sysconf("SC_CLK_TCK")
REPORT = "/report"

BOX_LIMIT = 96 * MiB
BOX_TOUCH_MIB = 24
DOCKER_HIGH = 256 * MiB
DOCKER_PIDS_MAX = 32
DOCKER_CORES = 0.5
DOCKER_BURN = 1.0
PODMAN_BURN = 0.3
DIRECT_MIB = 4
BUFFERED_MIB = 8
SCRATCH_MOUNT = "/mnt/ccg-scratch"

# A worker: says "W" and waits for "go" (it is in its cgroup by then), does what the JSON spec in
# argv[1] says, prints one JSON line (with its own /proc/self/stat at the end), then holds until
# stdin closes ("hold") or exits.  "oom": raise its oom_score_adj and allocate until the kernel
# kills it.
WORKER = r"""
import json, mmap, os, sys, time
spec = json.loads(sys.argv[1])
def ticks():
    with open("/proc/self/stat", "rb") as f:
        d = f.read()
    x = d[d.rindex(b")") + 2:].split()
    return [int(x[11]), int(x[12])]
sys.stdout.write("W\n")
sys.stdout.flush()
if sys.stdin.buffer.readline() != b"go\n":
    os._exit(3)
out = {"pid": os.getpid()}
if spec.get("oom"):
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write("1000")
    # Locked, its own pages cannot be reclaimed: at memory.max the kernel finds nothing of the hog's to
    # evict and kills it, instead of evicting and faulting back in its text (read over 9p, slow under
    # TCG) for as long as that counts as progress.
    import ctypes
    if ctypes.CDLL(None, use_errno=True).mlockall(3) != 0:      # MCL_CURRENT | MCL_FUTURE
        os._exit(4)
    hog = []
    while True:
        b = bytearray(4 << 20)
        b[::4096] = b"\x01" * (len(b) // 4096)
        hog.append(b)
kids = []
for _ in range(spec.get("children", 0)):
    pid = os.fork()
    if pid == 0:
        try:
            sys.stdin.buffer.read()
        finally:
            os._exit(0)
    kids.append(pid)
out["kids"] = kids
t0 = time.process_time()
while time.process_time() - t0 < spec.get("burn", 0):
    pass
out["burnt"] = time.process_time() - t0
mem = bytearray(spec.get("mib", 0) << 20)
mem[::4096] = b"\x02" * (len(mem) // 4096)
io = spec.get("io")
if io:
    block = mmap.mmap(-1, 1 << 20)
    block.write(os.urandom(1 << 20))
    fd = os.open(io["dir"] + "/direct.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o644)
    written = 0
    for _ in range(io["direct_mib"]):
        written += os.write(fd, block)
    os.fsync(fd)
    os.close(fd)
    fd = os.open(io["dir"] + "/direct.bin", os.O_RDONLY | os.O_DIRECT)
    back = mmap.mmap(-1, 1 << 20)
    read = 0
    while True:
        n = os.readv(fd, [back])
        if not n:
            break
        read += n
    os.close(fd)
    buffered = 0
    with open(io["dir"] + "/buffered.bin", "wb") as f:
        for _ in range(io["buffered_mib"]):
            buffered += f.write(os.urandom(1 << 20))
        f.flush()
        os.fsync(f.fileno())
    out["io"] = {"direct_written": written, "direct_read": read, "buffered_written": buffered}
out["at_end"] = ticks()
sys.stdout.write(json.dumps(out) + "\n")
sys.stdout.flush()
if spec.get("hold"):
    sys.stdin.buffer.read()
for pid in kids:
    os.waitpid(pid, 0)
"""


class Worker(object):
    """A WORKER process moved into ``cgroup_dir`` before it starts its work.

    ``baseline``: its utime+stime ticks (our reading of /proc/<pid>/stat) when it was moved, blocked
    on its "go": what it uses from then on is charged to the cgroup."""

    def __init__(self, cgroup_dir, **spec):
        self.spec = spec
        self.proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", WORKER, json.dumps(spec)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
        self.pid = self.proc.pid
        self.report = None
        if self._line() != b"W\n":
            raise RuntimeError("worker %d did not start" % self.pid)
        self.baseline = sum(proc_ticks(self.pid))
        with open(cgroup_dir + "/cgroup.procs", "w") as f:
            f.write(str(self.pid))
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()

    def _line(self, timeout=120):
        fd = self.proc.stdout.fileno()
        data = b""
        deadline = time.monotonic() + timeout
        while not data.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError("worker %d: nothing said after %ss" % (self.pid, timeout))
            chunk = os.read(fd, 1)
            if not chunk:
                return data
            data += chunk
        return data

    def result(self, timeout=120):
        """The worker's JSON line (None if it died without one)."""
        if self.report is None:
            line = self._line(timeout)
            if not line:
                return None
            self.report = json.loads(line)
        return self.report

    def wait(self, timeout=120):
        return self.proc.wait(timeout=timeout)

    def stop(self):
        """Close its stdin (a holding worker and its children exit), then SIGKILL by PID what is left."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        pids = [self.pid] + list((self.report or {}).get("kids", []))
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for pid in pids:
            try:
                if os.getsid(pid) == self.pid:      # still one of ours (its own session)
                    os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.proc.stdout.close()


def proc_ticks(pid):
    """(utime, stime) in clock ticks from /proc/<pid>/stat."""
    with open("/proc/%d/stat" % pid, "rb") as f:
        d = f.read()
    x = d[d.rindex(b")") + 2:].split()
    return int(x[11]), int(x[12])


def scratch_disk():
    """(name, "MAJ:MIN") of the guest's virtio scratch disk."""
    disks = sorted(d for d in os.listdir("/sys/block") if d.startswith("vd"))
    assert len(disks) == 1, "expected one virtio scratch disk, found %s" % disks
    with open("/sys/block/%s/dev" % disks[0]) as f:
        return disks[0], f.read().strip()


class World(object):
    pass


def _build(world):
    w = world
    w.disk, w.disk_dev = scratch_disk()
    subprocess.run(["/bin/busybox", "mke2fs", "-q", "/dev/" + w.disk], check=True)
    os.makedirs(SCRATCH_MOUNT, exist_ok=True)
    subprocess.run(["/bin/busybox", "mount", "-t", "ext4", "/dev/" + w.disk, SCRATCH_MOUNT], check=True)
    w.mounted = True

    w.prefix = "ccg-v2g-%s" % secrets.token_hex(4)
    w.match = [("^/%s(?:-bare)?/(?P<name>[^/]+)$" % re.escape(w.prefix), "cgroup")]
    w.tree = CgroupTree(w.prefix)
    w.box = w.tree.container("box")
    w.box.set_memory_limit(BOX_LIMIT)
    w.box_dir = w.box.dirs["unified"]

    w.docker_id = secrets.token_hex(32)
    w.docker_tree = CgroupTree("system.slice")
    w.docker = w.docker_tree.container("docker-%s.scope" % w.docker_id)
    w.docker_dir = w.docker.dirs["unified"]
    w.docker.set_cpu_limit(DOCKER_CORES)
    w.docker.set_pids_limit(DOCKER_PIDS_MAX)
    with open(w.docker_dir + "/memory.high", "w") as f:
        f.write(str(DOCKER_HIGH))
    w.docker_root = tempfile.mkdtemp(prefix="ccg-docker-root-")
    os.makedirs("%s/containers/%s" % (w.docker_root, w.docker_id))
    w.docker_name = "web"

    w.podman_id = secrets.token_hex(32)
    w.podman_tree = CgroupTree("machine.slice")
    w.podman = w.podman_tree.container("libpod-%s.scope" % w.podman_id)
    w.podman_dir = w.podman.dirs["unified"]
    w.payload_dir = w.podman_dir + "/container"
    os.mkdir(w.payload_dir)
    with open(w.podman_dir + "/cgroup.subtree_control", "w") as f:
        f.write("+cpu +memory +pids +io")

    w.bare_tree = CgroupTree(w.prefix + "-bare", controllers=())   # enables no controller
    w.bare = w.bare_tree.container("plain")
    w.bare_dir = w.bare.dirs["unified"]

    # The workers of the docker and podman containers and the box's synthetic workload run at once.
    w.docker_worker = Worker(w.docker_dir, burn=DOCKER_BURN, mib=8, children=2, hold=True)
    w.workers.append(w.docker_worker)
    w.podman_worker = Worker(w.payload_dir, burn=PODMAN_BURN, mib=4, children=1, hold=True)
    w.workers.append(w.podman_worker)
    w.steady = w.box.spawn(cpu_seconds=0.5, memory_mib=BOX_TOUCH_MIB, children=2)
    w.plain = w.bare.spawn(cpu_seconds=0.3)
    with open("%s/containers/%s/config.v2.json" % (w.docker_root, w.docker_id), "w") as f:
        json.dump(docker_config_v2(w.docker_id, w.docker_name, w.docker_worker.pid, "2026-11-30T00:00:00Z"), f)

    os.makedirs(SCRATCH_MOUNT + "/box", exist_ok=True)
    w.io_worker = Worker(w.box_dir, io={"dir": SCRATCH_MOUNT + "/box", "direct_mib": DIRECT_MIB,
                                        "buffered_mib": BUFFERED_MIB})
    w.workers.append(w.io_worker)
    w.io = w.io_worker.result()["io"]
    assert w.io_worker.wait() == 0

    w.hog = Worker(w.box_dir, oom=True)
    w.workers.append(w.hog)
    w.hog_status = w.hog.wait(timeout=120)
    w.steady.wait_ready(timeout=120)
    w.plain.wait_ready(timeout=120)
    w.docker_worker.result()
    w.podman_worker.result()
    # cgroup -> (directory, plugin_instance) of every container
    w.containers = {
        w.box.path: (w.box_dir, "cgroup-box"),
        w.docker.path: (w.docker_dir, "docker-web"),
        w.podman.path: (w.podman_dir, "podman-" + w.podman_id[:12]),
        w.bare.path: (w.bare_dir, "cgroup-plain"),
    }


@pytest.fixture(scope="session")
def world():
    w = World()
    w.workers = []
    w.tree = w.docker_tree = w.podman_tree = w.bare_tree = None
    w.payload_dir = None
    w.mounted = False
    w.docker_root = None
    start = time.monotonic()
    try:
        _build(w)
        print("\nworld built in %.1f s: %s" % (time.monotonic() - start, ", ".join(sorted(w.containers))))
        yield w
    finally:
        for worker in w.workers:
            worker.stop()
        left = []
        if w.payload_dir:
            for _ in range(100):            # the last task may still be leaving
                try:
                    os.rmdir(w.payload_dir)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)
        for tree in (w.tree, w.docker_tree, w.podman_tree, w.bare_tree):
            if tree is not None:
                left += tree.cleanup()
        if w.mounted:
            subprocess.run(["/bin/busybox", "umount", SCRATCH_MOUNT])
        if w.docker_root:
            shutil.rmtree(w.docker_root, ignore_errors=True)
        assert not left, "cgroups left behind: %s" % left
