"""Block I/O on the real kernel: a container's O_DIRECT I/O, as the plugin reports it, against what the
process itself did (``/proc/<pid>/io``) and the device's own name in sysfs.

- blk-throttle: since 6.9 its v1 files count a disk only once blk-throttle is active on it, which
  writing ``MAJ:MIN 0`` (no limit) to a ``blkio.throttle.*_device`` file does; we write it to our own
  test cgroup, for the disk holding a scratch directory.
- BFQ: a loop device of the test's own (LOOP_CTL_ADD, on a sparse file), switched to the ``bfq``
  scheduler; removed at the end (LOOP_CTL_REMOVE), which also makes it a device that vanishes.

The I/O runs in a process of ours that waits for commands on stdin: its start-up (Python reading its
files) happens before it is moved into the container, so the container is charged only with the
commands' I/O.
"""

import fcntl
import json
import os
import subprocess
import sys
import tempfile
import time

import pytest

from ccg_lab.synthetic import activate_blk_throttle, check_path, whole_disk
from collectd_cgroups import fs
from tests.support.kernelutil import (CgroupTree, MiB, by_cgroup, make_collector, mountinfo_cgroups, new_prefix,
                                      teardown_tree)

PREFIX = new_prefix("blkio")
LOOP_CTL_ADD, LOOP_CTL_REMOVE = 0x4C80, 0x4C81

WORKER = r"""
import json, mmap, os, sys
buf = mmap.mmap(-1, 1 << 20)
buf.write(os.urandom(1 << 20))
for line in sys.stdin:
    op, path, mib = json.loads(line)
    if op == "write":
        fd = os.open(path, os.O_WRONLY | os.O_DIRECT | (0 if path.startswith("/dev/") else os.O_CREAT), 0o600)
        for _ in range(mib):
            os.write(fd, buf)
        os.fsync(fd)
    else:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        for _ in range(mib):
            os.readv(fd, [buf])
    os.close(fd)
    with open("/proc/self/io") as f:
        print(json.dumps(dict(l.split(": ") for l in f.read().splitlines())), flush=True)
"""


# -- helpers --------------------------------------------------------------------------------------------


def kernel_name(majmin):
    """The device's name as sysfs has it, our own way: the sysfs directory's name (dm: dm/name)."""
    real = os.path.realpath("/sys/dev/block/" + majmin)
    if os.path.exists(real + "/dm/name"):
        with open(real + "/dm/name") as f:
            return f.read().strip()
    return os.path.basename(real)


def rwstat(path):
    """{MAJ:MIN: {op: n}} of a blkio rwstat file, our own way."""
    out = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3:
                out.setdefault(parts[0], {})[parts[1]] = int(parts[2])
    return out


def listed(path):
    """MAJ:MIN listed in a top-level rwstat file."""
    return set(rwstat(path))


@pytest.fixture(scope="module")
def scratch():
    """A scratch directory on a real block device (not tmpfs) and that disk's MAJ:MIN."""
    for base in (tempfile.gettempdir(), "/var/tmp", os.path.dirname(os.path.abspath(__file__))):
        if whole_disk(base):
            d = tempfile.mkdtemp(prefix="ccg-blkio-", dir=base)
            try:
                yield d, whole_disk(d)
            finally:
                for name in os.listdir(d):
                    os.unlink(os.path.join(d, name))
                os.rmdir(d)
            return
    pytest.fail("no directory on a block device for O_DIRECT I/O (tmp, /var/tmp, tests/)")


@pytest.fixture(scope="module", autouse=True)
def module_tree():
    v1, _ = mountinfo_cgroups()
    assert "blkio" in v1, "this machine is documented hybrid with a v1 blkio hierarchy"
    top = CgroupTree(PREFIX)
    yield top
    teardown_tree(top)


class Workers(object):
    """I/O processes of ours and the sub-cgroups we made for them; all gone in teardown."""

    def __init__(self):
        self.procs = []
        self.subdirs = []

    def start(self, dirs):
        """A worker moved into ``dirs`` (cgroup directories, ours only)."""
        p = subprocess.Popen([sys.executable, "-I", "-S", "-c", WORKER], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, cwd="/")
        self.procs.append(p)
        moved = 0
        for d in dirs:
            try:
                with open(check_path(d) + "/cgroup.procs", "w") as f:
                    f.write(str(p.pid))
                moved += 1
            except OSError:
                if "/unified/" not in d:           # cgroup2 without controllers on this hybrid host
                    raise
        assert moved
        return p

    @staticmethod
    def run(p, op, path, mib):
        p.stdin.write((json.dumps([op, path, mib]) + "\n").encode())
        p.stdin.flush()
        line = p.stdout.readline()
        assert line, "worker %d died" % p.pid
        return {k: int(v) for k, v in json.loads(line).items()}

    def subcgroup(self, parent, name):
        d = check_path(parent + "/" + name)
        assert PREFIX in d
        os.mkdir(d)
        self.subdirs.append(d)
        return d

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()            # our own child, by its PID
            p.wait()
            p.stdin.close()
            p.stdout.close()
        for d in reversed(self.subdirs):
            for _ in range(100):
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)


@pytest.fixture
def workers():
    w = Workers()
    yield w
    w.close()


@pytest.fixture
def tree(module_tree, request):
    t = CgroupTree("%s/%s" % (PREFIX, request.node.name.split("[")[0][5:30]))
    yield t
    teardown_tree(t)


def container_dirs(c):
    return sorted(set(c.dirs.values()))


def activate_throttle(c, disk):
    """blk-throttle on ``disk`` (no limit), through our container's own file."""
    with open(check_path(c.dirs["blkio"]) + "/blkio.throttle.write_bps_device", "w") as f:
        f.write("%s 0" % disk)


def one_pass(collector, c):
    results = by_cgroup(collector.collect())
    item = results.get(c.path)
    return {} if item is None else {(t, ti): v for t, ti, v in item.samples}


# -- blk-throttle on the disk ---------------------------------------------------------------------------


def test_direct_io_on_the_disk_is_reported_on_its_name(tree, workers, scratch):
    directory, disk = scratch
    n = 16
    name = kernel_name(disk)
    c = tree.container("writer")
    activate_throttle(c, disk)
    collector, logs = make_collector(tree.prefix)
    before = one_pass(collector, c)
    # nothing done yet (writing the limit file made the kernel list the disk, with zeros)
    assert before.get(("disk_octets", name), (0, 0)) == (0, 0)
    p = workers.start(container_dirs(c))
    io = workers.run(p, "write", os.path.join(directory, "writer.bin"), n)
    v = one_pass(collector, c)
    read, write = v[("disk_octets", name)]
    print("%s: process wrote %d bytes (/proc io write_bytes %d); disk_octets-%s %s, disk_ops-%s %s"
          % (disk, n * MiB, io["write_bytes"], name, v[("disk_octets", name)], name, v[("disk_ops", name)]))
    assert io["write_bytes"] >= n * MiB
    assert n * MiB <= write <= io["write_bytes"] + MiB        # plus ext4 metadata at fsync at most
    # the kernel's file, read our own way, says the same
    kernel = rwstat(c.dirs["blkio"] + "/blkio.throttle.io_service_bytes_recursive")[disk]
    assert (kernel["Read"], kernel["Write"]) == (read, write)
    ops = v[("disk_ops", name)][1]
    with open("/sys/dev/block/%s/queue/max_sectors_kb" % disk) as f:
        largest = int(f.read()) * 1024
    assert -(-n * MiB // largest) <= ops <= write // 512
    assert v[("disk_octets", "total")] == tuple(map(sum, zip(*[
        val for (t, ti), val in v.items() if t == "disk_octets" and ti != "total"])))
    # reading it back with O_DIRECT moves the read figure by as much
    io2 = workers.run(p, "read", os.path.join(directory, "writer.bin"), n)
    v2 = one_pass(collector, c)
    read2 = v2[("disk_octets", name)][0]
    assert n * MiB <= read2 - read <= io2["read_bytes"] - io["read_bytes"] + MiB
    assert v2[("disk_ops", name)][0] - v[("disk_ops", name)][0] >= -(-n * MiB // largest)
    assert not logs.warn


def test_io_of_a_sub_cgroup_counts_for_its_container(tree, workers, scratch):
    directory, disk = scratch
    name = kernel_name(disk)
    c = tree.container("nested")
    activate_throttle(c, disk)
    sub = workers.subcgroup(c.dirs["blkio"], "inner")
    p = workers.start([sub])
    workers.run(p, "write", os.path.join(directory, "nested.bin"), 8)
    collector, logs = make_collector(tree.prefix)
    results = by_cgroup(collector.collect())
    assert sorted(results) == [c.path]                  # the sub-cgroup is no container of its own
    v = {(t, ti): val for t, ti, val in results[c.path].samples}
    assert v[("disk_octets", name)][1] >= 8 * MiB
    # the container's own (non-recursive) file does not see it: the _recursive one is needed
    own = rwstat(c.dirs["blkio"] + "/blkio.throttle.io_service_bytes").get(disk, {"Write": 0})
    assert own["Write"] == 0


# -- a loop device, appearing and vanishing -----------------------------------------------------------


class LoopDevice(object):
    """A loop device of our own: added, attached to a sparse file, removed again."""

    def __init__(self, directory, size=64 * MiB):
        self.ctl = os.open("/dev/loop-control", os.O_RDWR)
        index = 400 + os.getpid() % 400
        while os.path.exists("/sys/block/loop%d" % index):
            index += 1
        self.index = fcntl.ioctl(self.ctl, LOOP_CTL_ADD, index)
        self.name = "loop%d" % self.index
        self.majmin = None
        self.attached = False
        self.image = os.path.join(directory, "loop.img")
        with open(self.image, "wb") as f:
            f.truncate(size)
        self.dev = "/dev/" + self.name
        for _ in range(100):                   # devtmpfs makes the node
            if os.path.exists(self.dev):
                break
            time.sleep(0.01)
        subprocess.check_call(["losetup", self.dev, self.image])
        self.attached = True
        with open("/sys/block/%s/dev" % self.name) as f:
            self.majmin = f.read().strip()

    def schedulers(self):
        with open("/sys/block/%s/queue/scheduler" % self.name) as f:
            return f.read().replace("[", "").replace("]", "").split()

    def set_scheduler(self, name):
        with open("/sys/block/%s/queue/scheduler" % self.name, "w") as f:
            f.write(name)

    def remove(self):
        if self.attached:
            try:
                self.set_scheduler("none")
            except OSError:
                pass
            subprocess.call(["losetup", "-d", self.dev])
            self.attached = False
        if self.index is not None:
            for _ in range(100):
                try:
                    fcntl.ioctl(self.ctl, LOOP_CTL_REMOVE, self.index)
                    break
                except OSError:
                    time.sleep(0.05)
            self.index = None
        if self.ctl is not None:
            os.close(self.ctl)
            self.ctl = None
        if os.path.exists(self.image):
            os.unlink(self.image)


@pytest.mark.parametrize("counter", ["bfq", "blk-throttle"])
def test_a_new_loop_device_appears_counts_and_vanishes(tree, workers, scratch, counter):
    """A disk that did not exist when the collector started: counted by BFQ (the scheduler's own files) or
    by blk-throttle, which on a fresh disk counts nothing until a cgroup has a rule for it (Linux 6.9+)."""
    directory, _ = scratch
    c = tree.container("loop")
    collector, logs = make_collector(tree.prefix)
    collector.collect()                                   # a pass before the device exists
    loop = LoopDevice(directory)
    try:
        files = "blkio.bfq." if counter == "bfq" else "blkio.throttle."
        p = workers.start(container_dirs(c))
        if counter == "bfq":
            if "bfq" not in loop.schedulers():
                pytest.skip("this kernel has no BFQ scheduler (CONFIG_IOSCHED_BFQ not set; a disk's "
                            "schedulers: %s)" % " ".join(loop.schedulers()))
            loop.set_scheduler("bfq")
        else:
            # a fresh queue: blk-throttle not active on it, so I/O on it is in no cgroup's file
            workers.run(p, "write", loop.dev, 1)
            uncounted = loop.majmin not in rwstat(c.dirs["blkio"] + "/blkio.throttle.io_service_bytes_recursive")
            v = one_pass(collector, c)
            print("%s before blk-throttle is active: listed by the kernel: %s, by the plugin: %s"
                  % (loop.name, not uncounted, ("disk_octets", loop.name) in v))
            if uncounted:               # kernels before 6.9 count every disk
                assert ("disk_octets", loop.name) not in v
            activate_blk_throttle(c.dirs["blkio"], loop.dev)
        io_w = workers.run(p, "write", loop.dev, 8)
        io_r = workers.run(p, "read", loop.dev, 4)
        v = one_pass(collector, c)
        read, write = v[("disk_octets", loop.name)]     # named at first sight, no restart
        print("%s (%s, %s): disk_octets %s, disk_ops %s; process io %s"
              % (loop.name, loop.majmin, counter, v[("disk_octets", loop.name)], v[("disk_ops", loop.name)], io_r))
        assert 8 * MiB <= write <= io_w["write_bytes"]
        assert 4 * MiB <= read <= io_r["read_bytes"]
        # the figures are those of the counting generation's file, read our own way
        kernel = rwstat(c.dirs["blkio"] + "/" + files + "io_service_bytes_recursive")
        assert (kernel[loop.majmin]["Read"], kernel[loop.majmin]["Write"]) == (read, write)
        if counter == "bfq":        # blk-throttle's file does not list it (not active there)
            assert loop.majmin not in rwstat(c.dirs["blkio"] + "/blkio.throttle.io_service_bytes_recursive")
        assert loop.majmin in listed(collector.hierarchies().mount_for("blkio").path + "/" + files + "io_service_bytes")
        assert 1 <= v[("disk_ops", loop.name)][1] <= write // 512
        # the device goes away: the next pass works and no longer lists it
        p.kill()
        p.wait()
        loop.remove()
        v = one_pass(collector, c)
        assert not any(ti in (loop.name, loop.majmin.replace(":", "_")) for _, ti in v)
        assert not logs.warn
    finally:
        loop.remove()


# -- what a pass costs in files -----------------------------------------------------------------------------


def test_a_pass_reads_two_blkio_files_per_generation_counting_something(tree, workers, scratch, monkeypatch):
    directory, disk = scratch
    cs = [tree.container("c%d" % n) for n in range(3)]
    activate_throttle(cs[0], disk)
    collector, logs = make_collector(tree.prefix)
    top = collector.hierarchies().mount_for("blkio").path
    # our own reading of which generations count a device on this host now
    counting = [g for g in ("blkio.bfq.", "blkio.", "blkio.throttle.")
                if os.path.exists(top + "/" + g + "io_service_bytes") and listed(top + "/" + g + "io_service_bytes")]
    assert "blkio.throttle." in counting
    calls = []
    real = fs.read_cgroup_file

    def spy(d, name, kept=None, head=None):
        result = real(d, name, kept, head)
        calls.append((d, name, result is not None))
        return result
    monkeypatch.setattr(fs, "read_cgroup_file", spy)
    collector.collect()
    del calls[:]
    collector.collect()
    for c in cs:
        # (cgroup.procs is the network reader's: which PID's namespace to enter)
        reads = [(name, ok) for d, name, ok in calls if d == c.dirs["blkio"] and name.startswith("blkio.")]
        assert len(reads) == 2 * len(counting), reads
        assert all(ok for _, ok in reads) and all(name.endswith("_recursive") for name, _ in reads)
    top_reads = [name for d, name, ok in calls if d == top]
    assert len(top_reads) <= 3                      # one plain bytes file per generation present
