"""Network namespaces for the lab: a thread entering one (``ctypes_setns``, shared with
tests/support/netnsutil.py), and the demo's network (``DemoNetwork``, for :mod:`ccg_lab.demo`).

``DemoNetwork(prefix, names)`` owns named network namespaces (``ip netns``, under /run/netns):
``<base>-host``, which plays the host side, and ``<base>-<name>`` for each container, where ``<base>`` is
the demo's cgroup prefix with ``/`` made ``-``.  Container ``name`` (the ``index``-th) gets a veth pair
``veth-<name>`` (in the host namespace) <-> ``eth0`` (in its namespace), ``192.0.2.(4i+1)/30`` on ``eth0``
and ``192.0.2.(4i+2)/30`` on the host end.  Nothing is ever made in the root namespace.

Traffic: a thread of the demo that entered the host namespace sends ICMP echo requests to each
container's address at the container's rate; the container's kernel answers them, so ``eth0`` counts the
same bytes received and sent.  No process is needed for it (none is left when the demo is killed), and
the container's processes only have to live in its namespace for the plugin to find it.
"""

import ctypes
import os
import secrets
import socket
import struct
import subprocess
import threading
import time

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)

NETNS_DIR = "/run/netns"
FRAME_BYTES = 1024          # one echo request on the wire: Ethernet 14 + IP 20 + ICMP 8 + payload
_PAYLOAD = b"collectd-cgroups demo ".ljust(FRAME_BYTES - 42, b".")
_SEND_PERIOD = 0.1


def ctypes_setns(path):
    """Move the calling thread into the network namespace at ``path`` (Python 3.11 has no os.setns)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e), path)
    finally:
        os.close(fd)


def _ip(*argv, check=True):
    res = subprocess.run(("ip",) + argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, timeout=30)
    if check and res.returncode != 0:
        raise RuntimeError("ip %s failed: %s" % (" ".join(argv), res.stderr.decode(errors="replace").strip()))
    return res


def _no_ipv6(netns):
    # No IPv6 autoconfiguration chatter on eth0: the counters show only the demo's own traffic.
    subprocess.run(["nsenter", "--net=" + os.path.join(NETNS_DIR, netns), "--", "sysctl", "-q", "-w",
                    "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"],
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)


def _checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xffff)
    total += total >> 16
    return ~total & 0xffff


def echo_request(ident, seq, payload=_PAYLOAD):
    """An ICMP echo request (type 8) with its checksum."""
    header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    return struct.pack("!BBHHH", 8, 0, _checksum(header + payload), ident, seq) + payload


class _Pinger(threading.Thread):
    """Sends echo requests from the host namespace: ``targets`` is {address: bytes per second}."""

    def __init__(self, netns_path):
        super().__init__(name="demo-pinger", daemon=True)
        self.netns_path = netns_path
        self.targets = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.started_ok = threading.Event()
        self.error = None

    def run(self):
        try:
            ctypes_setns(self.netns_path)       # this thread only: the demo itself stays where it is
            sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        except OSError as e:
            self.error = e
            self.started_ok.set()
            return
        sock.setblocking(False)
        self.started_ok.set()
        ident, seq = secrets.randbelow(0x10000), 0
        credit = {}
        last = time.monotonic()
        with sock:
            while not self.stopping.wait(_SEND_PERIOD):
                now = time.monotonic()
                elapsed, last = now - last, now
                with self.lock:
                    targets = dict(self.targets)
                for addr in list(credit):
                    if addr not in targets:
                        del credit[addr]
                for addr, rate in targets.items():
                    # at most a few frames of catching up after a stall: the rate stays smooth
                    credit[addr] = min(credit.get(addr, 0.0) + rate * elapsed, 4.0 * FRAME_BYTES)
                    while credit[addr] >= FRAME_BYTES:
                        credit[addr] -= FRAME_BYTES
                        seq = (seq + 1) & 0xffff
                        try:
                            sock.sendto(echo_request(ident, seq), (addr, 0))
                        except OSError:         # a container going away meanwhile, a full queue: skip it
                            pass
                while True:                     # the replies (and anything else ICMP): only drained
                    try:
                        sock.recv(65536)
                    except (BlockingIOError, InterruptedError):
                        break


class DemoNetwork:
    """The demo's network namespaces, veths and traffic (see the module's docstring)."""

    def __init__(self, prefix, names):
        self.base = prefix.strip("/").replace("/", "-")
        self.host = self.base + "-host"
        self.names = tuple(names)
        self.links = {}             # container name -> {"netns", "path", "addr", "host_addr", "host_if"}
        self._pinger = None

    def netns_name(self, name):
        return "%s-%s" % (self.base, name)

    def all_netns(self):
        return [self.host] + [self.netns_name(n) for n in self.names]

    def leftovers(self):
        """Namespaces of this demo that exist now (an earlier demo killed with SIGKILL left them)."""
        return [n for n in self.all_netns() if os.path.exists(os.path.join(NETNS_DIR, n))]

    def start(self):
        _ip("netns", "add", self.host)
        _no_ipv6(self.host)
        _ip("-n", self.host, "link", "set", "lo", "up")
        self._pinger = _Pinger(os.path.join(NETNS_DIR, self.host))
        self._pinger.start()
        self._pinger.started_ok.wait(10)
        if self._pinger.error is not None:
            raise RuntimeError("cannot send from %s: %s" % (self.host, self._pinger.error))

    def add(self, name, bytes_per_second):
        """Container ``name``'s namespace, veth and addresses; its traffic starts.  Returns the link."""
        index = self.names.index(name) + 1
        netns, host_if = self.netns_name(name), "veth-" + name
        link = {"netns": netns, "path": os.path.join(NETNS_DIR, netns), "host_if": host_if,
                "addr": "192.0.2.%d" % (4 * index + 1), "host_addr": "192.0.2.%d" % (4 * index + 2),
                "rate": bytes_per_second}
        _ip("netns", "add", netns)
        self.links[name] = link
        _no_ipv6(netns)
        _ip("-n", netns, "link", "set", "lo", "up")
        _ip("-n", self.host, "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", netns)
        _ip("-n", self.host, "addr", "add", link["host_addr"] + "/30", "dev", host_if)
        _ip("-n", self.host, "link", "set", host_if, "up")
        _ip("-n", netns, "addr", "add", link["addr"] + "/30", "dev", "eth0")
        _ip("-n", netns, "link", "set", "eth0", "up")
        if self._pinger is not None:
            with self._pinger.lock:
                self._pinger.targets[link["addr"]] = bytes_per_second
        return link

    def remove(self, name):
        """Stop ``name``'s traffic, delete its veth (both ends at once) and its namespace."""
        link = self.links.pop(name, None)
        if link is None:
            return
        if self._pinger is not None:
            with self._pinger.lock:
                self._pinger.targets.pop(link["addr"], None)
        _ip("-n", self.host, "link", "del", link["host_if"], check=False)
        _ip("netns", "del", link["netns"], check=False)

    def close(self):
        """Remove everything (also what an earlier demo of the same prefix left); returns what is left."""
        if self._pinger is not None:
            self._pinger.stopping.set()
            self._pinger.join(10)
            self._pinger = None
        for name in list(self.links):
            self.remove(name)
        for name in self.names:                # leftovers: the veths go with the host namespace anyway
            if os.path.exists(os.path.join(NETNS_DIR, self.host)):
                _ip("-n", self.host, "link", "del", "veth-" + name, check=False)
        for netns in self.leftovers():
            _ip("netns", "del", netns, check=False)
        return ["network namespace %s" % n for n in self.leftovers()]
