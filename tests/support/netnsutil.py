"""Lab helpers for the network tests: real network namespaces, veths and "containers" of the tests' own.

``NetLab`` makes a "host" namespace ``ccgt<hex>-h`` (never the root namespace: every veth has one end in
it and the other in a container's namespace) and "containers" (``Box``): a ``sleep`` process of ours in a
cgroup of ours (``ccg-test-net-<hex>``), in its own namespace made by ``unshare --net`` (or sharing
another box's, or in the lab's host namespace), with a veth pair ``ccgt<hex>v<n>`` <-> ``eth0`` and
addresses from 192.0.2.0/24.  ``lab.in_host(fn)`` runs ``fn`` on a thread that entered the lab's host
namespace (with ctypes' setns, not the shim under test); ``lab.host_run(argv)`` runs a command there.
``close()`` (or leaving ``with NetLab() as lab``) removes every namespace, veth, process and cgroup.

Independent sources for the tests: ``/proc/<pid>/net/dev`` (``proc_net_dev``), ``/proc/<pid>/net/netlink``
(``netlink_inodes``), readlink of ``/proc/<pid>/fd/*`` (``nsfs_fds``, ``socket_inodes``).

Shared by tests/kernel/: test_network.py, test_netns.py and test_network_integration.py (their ``lab``
fixture, a NetLab per test, is in tests/conftest.py).
"""

import concurrent.futures
import json
import os
import re
import secrets
import subprocess
import time

from collectd_cgroups import containers
from ccg_lab.netlab import ctypes_setns     # ctypes: independent of the cffi shim under test
from ccg_lab.synthetic import UNIFIED, CgroupTree


# -- independent helpers ----------------------------------------------------------------------------------------

def ns_of(path):
    st = os.stat(path)
    return (st.st_dev, st.st_ino)


def proc_net_dev(pid):
    """{name: (rx_bytes, rx_packets, rx_errs, rx_drop, tx_bytes, tx_packets, tx_errs, tx_drop)}."""
    with open("/proc/%d/net/dev" % pid, "rb") as f:
        lines = f.read().split(b"\n")[2:]
    out = {}
    for line in lines:
        if not line.strip():
            continue
        name, _, rest = line.rpartition(b":")
        f = [int(x) for x in rest.split()]
        out[name.strip().decode("utf-8", "surrogateescape")] = (f[0], f[1], f[2], f[3], f[8], f[9], f[10], f[11])
    return out


def as_netdev(samples):
    """Plugin samples -> the same shape as proc_net_dev (keyed by type_instance)."""
    by = {}
    for type_, ti, (rx, tx) in samples:
        by.setdefault(ti, {})[type_] = (rx, tx)
    return {ti: (v["if_octets"][0], v["if_packets"][0], v["if_errors"][0], v["if_dropped"][0],
                 v["if_octets"][1], v["if_packets"][1], v["if_errors"][1], v["if_dropped"][1])
            for ti, v in by.items()}


def _fd_links(pid):
    """[(fd, readlink target)] of the descriptors of ``pid`` ("self": this process)."""
    base = "/proc/%s/fd" % pid
    out = []
    try:
        fds = os.listdir(base)
    except FileNotFoundError:
        return out
    for fd in fds:
        try:
            out.append((int(fd), os.readlink(base + "/" + fd)))
        except OSError:
            continue
    return out


def nsfs_fds(pid="self"):
    """Descriptors of a process that are namespace files (readlink ``net:[...]`` and the like)."""
    return [(fd, target) for fd, target in _fd_links(pid)
            if re.match(r"^(net|mnt|uts|ipc|pid|user|cgroup|time):\[\d+\]$", target)]


def pidfd_count(pid="self"):
    """Descriptors of a process that are pidfds."""
    return sum(1 for _, target in _fd_links(pid) if target == "anon_inode:[pidfd]")


def socket_inodes(pid="self"):
    """Inodes of the sockets a process has descriptors on."""
    out = set()
    for _, target in _fd_links(pid):
        m = re.match(r"^socket:\[(\d+)\]$", target)
        if m:
            out.add(int(m.group(1)))
    return out


def netlink_inodes(pid):
    """Inodes of the netlink sockets of ``pid``'s network namespace (/proc/<pid>/net/netlink)."""
    with open("/proc/%d/net/netlink" % pid) as f:
        rows = f.read().splitlines()[1:]
    return {int(r.split()[-1]) for r in rows if r.split()}


def run(*argv, check=True, **kw):
    res = subprocess.run(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60, **kw)
    if check and res.returncode != 0:
        raise AssertionError("%s failed (%s): %s" % (" ".join(argv), res.returncode,
                                                     res.stderr.decode(errors="replace")))
    return res


def wait_for(predicate, timeout=20.0, what="condition", pause=0.05):
    """The first true result of ``predicate()``, polled every ``pause`` seconds; AssertionError after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(pause)


class Logs(object):
    def __init__(self):
        self.lines = []
        self._seen = set()

    def once(self, key, message, cause=None):
        if key not in self._seen:
            self._seen.add(key)
            self.lines.append(message)

    def about(self, text):
        return [m for m in self.lines if text in m]


# -- the lab ---------------------------------------------------------------------------------------------------

class Box(object):
    """A "container": our sleep process, in a cgroup of ours, in some network namespace."""

    def __init__(self, lab, name, cgroup, dirs, popen, host_if=None, addr=None, peer_addr=None, container=None):
        self.lab = lab
        self.container = container      # the SyntheticContainer of its cgroup (None: no cgroup)
        self.name = name
        self.cgroup = cgroup
        self.dirs = dirs
        self.popen = popen
        self.pid = popen.pid
        self.host_if = host_if
        self.addr = addr
        self.peer_addr = peer_addr

    @property
    def key(self):
        return ("cgroup", self.name)

    def ns(self):
        return ns_of("/proc/%d/ns/net" % self.pid)

    def sh(self, script, check=True):
        """Run ``sh -c script`` in the box's network namespace."""
        return run("nsenter", "--net=/proc/%d/ns/net" % self.pid, "--", "sh", "-c", script, check=check)

    def send_udp(self, count, size, port=9):
        """``count`` UDP datagrams of ``size`` bytes from the box to its host-side address; bytes on the wire."""
        code = ("import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);"
                "[s.sendto(b'x'*%d,(%r,%d)) for _ in range(%d)]" % (size, self.peer_addr, port, count))
        run("nsenter", "--net=/proc/%d/ns/net" % self.pid, "--", "/usr/bin/python3", "-I", "-S", "-c", code)
        return count * (size + 8 + 20 + 14)

    def stop(self):
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(timeout=10)

    def remove(self):
        """Stop the process and remove the box's cgroup (what a runtime does when a container stops)."""
        self.stop()
        if self.container is not None and not self.container.removed:
            self.container.remove()


class NetLab(object):
    """Namespaces, veths, processes and cgroups of one test; ``close()`` removes them all."""

    def __init__(self):
        self.tag = "ccgt" + secrets.token_hex(3)          # interface names: at most 15 bytes
        self.host = self.tag + "-h"
        self.host_path = "/run/netns/" + self.host
        self.tree = CgroupTree("ccg-test-net-%s" % self.tag[4:])
        self.boxes = []
        self.n = 0
        self._executor = None
        run("ip", "netns", "add", self.host)
        self.host_sh("sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1; "
                     "ip link set lo up")

    def host_sh(self, script, check=True):
        return run("nsenter", "--net=" + self.host_path, "--", "sh", "-c", script, check=check)

    def host_run(self, *argv, check=True, **kw):
        """Run ``argv`` in the lab's host namespace (nsenter execs it: same PID, no fork)."""
        return run("nsenter", "--net=" + self.host_path, "--", *argv, check=check, **kw)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def host_links(self):
        out = run("ip", "-n", self.host, "-j", "link", "show").stdout
        return {l["ifname"]: l for l in json.loads(out or b"[]")}

    # -- boxes

    def _spawn(self, argv):
        popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, start_new_session=True)
        try:
            wait_for(lambda: proc_comm(popen.pid) == "sleep" or popen.poll() is not None, 10, "sleep to start")
            if popen.poll() is not None:
                raise AssertionError("%s exited: %s" % (argv, popen.stderr.read().decode(errors="replace")))
        except BaseException:
            if popen.poll() is None:
                popen.kill()
            popen.wait()
            raise
        popen.stderr.close()
        return popen

    def box(self, name, veth=True, share_with=None, in_host=False, cgroup=True):
        """A box; by default in its own namespace with a veth to the host namespace and an address."""
        if share_with is not None:
            argv = ["nsenter", "--net=/proc/%d/ns/net" % share_with.pid, "--", "sleep", "3600"]
        elif in_host:
            argv = ["nsenter", "--net=" + self.host_path, "--", "sleep", "3600"]
        else:
            argv = ["unshare", "--net", "--", "sleep", "3600"]
        popen = self._spawn(argv)
        dirs = {}
        path = c = None
        try:
            if cgroup:
                c = self.tree.container(name)
                path = c.path
                dirs = dict(c.dirs)
                self.move(popen.pid, dirs)
            b = Box(self, name, path, dirs, popen, container=c)
            self.boxes.append(b)
            if share_with is None and not in_host:
                b.sh("sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1; "
                     "ip link set lo up")
                if veth:
                    self.veth(b)
        except BaseException:
            popen.kill()
            popen.wait()
            raise
        return b

    def veth(self, b, inside="eth0", host_index=None, inside_index=None):
        if self.n >= 60:
            raise AssertionError("the lab's /30 subnets of 192.0.2.0/24 are used up")
        self.n += 1
        host_if = "%sv%d" % (self.tag, self.n)
        base = 4 * self.n
        b.addr, b.peer_addr = "192.0.2.%d" % (base + 1), "192.0.2.%d" % (base + 2)
        run("ip", "-n", self.host, "link", "add", host_if,
            *(("index", str(host_index)) if host_index else ()), "type", "veth", "peer", "name", inside,
            "netns", str(b.pid), *(("index", str(inside_index)) if inside_index else ()))
        self.host_sh("ip addr add %s/30 dev %s && ip link set %s up" % (b.peer_addr, host_if, host_if))
        b.sh("ip addr add %s/30 dev %s && ip link set %s up" % (b.addr, inside, inside))
        b.host_if = host_if
        return host_if

    def move(self, pid, dirs):
        for d in sorted(set(dirs.values()), key=lambda d: d == dirs.get(UNIFIED)):
            try:
                with open(d + "/cgroup.procs", "w") as f:
                    f.write(str(pid))
            except OSError:
                if d != dirs.get(UNIFIED):      # hybrid: the cgroup2 dir may refuse, as in synthetic.py
                    raise

    # -- running code in the lab's host namespace

    def in_host(self, fn, *args, **kw):
        """Run ``fn`` on the lab's host thread (one thread, in the lab's host namespace since it started)."""
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, initializer=ctypes_setns, initargs=(self.host_path,))
        return self._executor.submit(fn, *args, **kw).result(timeout=120)

    def host_ident(self):
        return ns_of(self.host_path)

    def close(self):
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        for b in self.boxes:
            try:
                b.stop()
            except Exception:
                pass
        left = self.tree.cleanup()
        run("ip", "netns", "del", self.host, check=False)
        assert not left, "cgroups left behind: %s" % left


def proc_comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return None


def one_pass(reader, boxes):
    """{box name: NetResult or None} of one pass over ``boxes`` (on the calling thread)."""
    out = {}
    with reader.begin() as p:
        for b in boxes:
            pid = containers.first_pid(b.dirs)
            out[b.name] = p.read(b.key, pid, b.cgroup) if pid else None
    return out
