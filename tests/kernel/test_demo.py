"""``make demo`` for real: ``python -m ccg_lab.demo`` as a subprocess with a prefix of the test's own, read
by the project's own collector while it runs (web and db with traffic on eth0 in their own network
namespaces, CPU near their duty against their processes' own /proc/<pid>/stat, memory about what they
touch, batch coming and going), then stopped by SIGTERM to its PID: nothing of it may remain.  Also a demo
killed with SIGKILL: the next one removes what it left."""

import os
import signal
import subprocess
import sys
import time

import pytest

from ccg_lab.netlab import NETNS_DIR, DemoNetwork
from ccg_lab.procs import read_text, terminate, wait_until
from ccg_lab.synthetic import CgroupTree
from tests.support import CHECKOUT
from tests.support.kernelutil import (CLK_TCK, MiB, by_cgroup, cgroup_procs, make_collector, new_prefix, proc_alive,
                                      proc_cpu_ticks, values)
from tests.support.netnsutil import proc_net_dev, run

NAMES = ("web", "db", "batch")
DUTY = {"web": 0.20, "db": 0.05}            # ccg_lab.demo.STEADY
TOUCHED_MIB = {"web": 64, "db": 200}
TRAFFIC = {"web": 8192, "db": 2048}          # bytes per second each way (ccg_lab.demo.TRAFFIC)
WINDOW = 3.0                                 # seconds between the two passes that rates are taken over


class DemoRun(object):
    def __init__(self, prefix, log_path, seconds=120):
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ccg_lab.demo", "--seconds", str(seconds), "--prefix", prefix],
                cwd=CHECKOUT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    def output(self):
        return read_text(str(self.log_path))

    def wait_for(self, text, timeout=60):
        wait_until(lambda: text in self.output() or self.proc.poll() is not None, timeout,
                   what="%r in the demo's output" % text)
        assert text in self.output(), "the demo exited (%s):\n%s" % (self.proc.returncode, self.output())

    def sigterm(self):
        os.kill(self.proc.pid, signal.SIGTERM)
        return self.proc.wait(timeout=60)


@pytest.fixture
def demo_prefix():
    """A prefix of the test's own; in teardown (also on failure) every demo it started is stopped by PID
    and whatever is left of it is removed."""
    prefix = new_prefix("demo")
    runs = []
    yield prefix, runs
    for r in runs:
        terminate(r.proc, 30)
    DemoNetwork(prefix, NAMES).close()
    tree = CgroupTree(prefix)
    wait_until(lambda: not _pids_below(tree), 20, what="the demo's processes to exit")
    tree.cleanup()
    base = DemoNetwork(prefix, NAMES).base
    if os.path.exists("/run/%s.demo-pid" % base):
        os.unlink("/run/%s.demo-pid" % base)


def _pids_below(tree):
    pids = set()
    for top in tree.existing_dirs():
        for d, _, _ in os.walk(top):
            pids.update(read_text(d + "/cgroup.procs").split())
    return pids


def _pids(item):
    pids = set()
    for d in item.container.dirs.values():
        try:
            pids.update(cgroup_procs(d))
        except FileNotFoundError:
            pass
    return sorted(pids)


def _netns_inode(path):
    return os.stat(path).st_ino


def _processes_in_netns(inodes, prefix):
    """Processes of ours (in our cgroups) in one of these namespaces (an inode freed may be reused at once by
    another test's new namespace: those processes are not ours)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat("/proc/%s/ns/net" % entry).st_ino in inodes \
                        and "/%s/" % prefix in read_text("/proc/%s/cgroup" % entry):
                    found.append(int(entry))
            except OSError:
                continue
    return found


def _snapshot(prefix):
    """What the running demo made: {"pids": all its processes, "netns": {name: inode}}."""
    net = DemoNetwork(prefix, NAMES)
    collector, _ = make_collector(prefix)
    items = by_cgroup(collector.collect())
    collector.close()           # it keeps pidfds from pass to pass
    pids = set()
    for item in items.values():
        pids.update(_pids(item))
    return {"pids": pids, "netns": {n: _netns_inode(os.path.join(NETNS_DIR, n)) for n in net.leftovers()}}


def _assert_nothing_left(prefix, made):
    net = DemoNetwork(prefix, NAMES)
    assert net.leftovers() == [], "network namespaces left: %s" % net.leftovers()
    assert CgroupTree(prefix).existing_dirs() == []
    wait_until(lambda: not [p for p in made["pids"] if proc_alive(p)], 20, what="the demo's processes to go")
    inodes = set(made["netns"].values())
    wait_until(lambda: not _processes_in_netns(inodes, prefix), 20, what="no process in the demo's namespaces")
    root_links = run("ip", "-o", "link", "show").stdout.decode()
    for name in NAMES:
        assert "veth-%s" % name not in root_links     # never made there; and nothing of it came back
    assert not os.path.exists("/run/%s.demo-pid" % net.base)


def test_demo_containers_report_every_group_with_their_own_network(demo_prefix, tmp_path):
    prefix, runs = demo_prefix
    demo = DemoRun(prefix, tmp_path / "demo.log")
    runs.append(demo)
    demo.wait_for("running until")
    out = demo.output()
    conf = os.path.join(CHECKOUT, "build", "collectd.conf")
    cli = os.path.join(CHECKOUT, ".venv", "bin", "collectd-cgroups")
    assert "%s --config %s" % (cli, conf) in out
    assert "%s top --config %s" % (cli, conf) in out

    net = DemoNetwork(prefix, NAMES)
    collector, logs = make_collector(prefix)
    first = by_cgroup(collector.collect())
    t1 = time.monotonic()
    ticks1 = {n: sum(proc_cpu_ticks(p) for p in _pids(first["/%s/%s" % (prefix, n)])) for n in DUTY}
    # A window of WINDOW seconds between the two passes, for the rates (a measurement, not a wait for the code).
    wait_until(lambda: time.monotonic() - t1 >= WINDOW, WINDOW + 5, pause=0.1, what="the window")
    second = by_cgroup(collector.collect())
    t2 = time.monotonic()
    elapsed = t2 - t1

    for name in DUTY:
        cgroup = "/%s/%s" % (prefix, name)
        v1, v2 = values(first[cgroup]), values(second[cgroup])
        pids = _pids(second[cgroup])
        # the processes are in the container's own namespace, not the one the test runs in
        own = _netns_inode(os.path.join(NETNS_DIR, net.netns_name(name)))
        assert {_netns_inode("/proc/%d/ns/net" % p) for p in pids} == {own} != {_netns_inode("/proc/self/ns/net")}

        rx1, tx1 = v1[("if_octets", "eth0")]
        rx2, tx2 = v2[("if_octets", "eth0")]
        rx_rate, tx_rate = (rx2 - rx1) / elapsed, (tx2 - tx1) / elapsed
        # the kernel's own counters of that namespace, read after the pass: at least what the plugin saw
        kernel_rx, kernel_tx = [proc_net_dev(pids[0])["eth0"][i] for i in (0, 4)]
        print("%s eth0: %.0f B/s received, %.0f B/s sent (demo sends %d B/s each way); /proc net/dev %d/%d "
              "after the plugin's %d/%d" % (name, rx_rate, tx_rate, TRAFFIC[name], kernel_rx, kernel_tx, rx2, tx2))
        assert rx2 > rx1 and tx2 > tx1
        assert kernel_rx >= rx2 and kernel_tx >= tx2
        assert rx_rate <= 1.5 * TRAFFIC[name] + 2048 and tx_rate <= 1.5 * TRAFFIC[name] + 2048

        cpu = (v2[("cpu", "total")] - v1[("cpu", "total")]) / 100.0 / elapsed
        ticks2 = sum(proc_cpu_ticks(p) for p in pids)
        own_cpu = (ticks2 - ticks1[name]) / float(CLK_TCK) / elapsed
        print("%s CPU: %.1f %% of a core from the plugin, %.1f %% from its processes' /proc/<pid>/stat "
              "(duty %d %%)" % (name, 100 * cpu, 100 * own_cpu, 100 * DUTY[name]))
        assert abs(cpu - own_cpu) <= 0.03 + 0.15 * own_cpu
        assert 0.4 * DUTY[name] <= own_cpu <= DUTY[name] + 0.08      # never above its duty; below if starved

        n = TOUCHED_MIB[name]
        print("%s memory: usage %.1f MiB, rss %.1f MiB (touches %d MiB)"
              % (name, v2[("memory", "usage")] / MiB, v2[("memory", "rss")] / MiB, n))
        assert v2[("memory", "usage")] >= n * MiB
        assert 0.95 * n * MiB <= v2[("memory", "rss")] <= (n + 48) * MiB     # + the Python processes' own

    # batch: its cgroup and namespace come and go (a new one every 15 s, removed 10 s after it appeared)
    batch = "/%s/batch" % prefix
    seen = wait_until(lambda: by_cgroup(collector.collect()).get(batch), 30, pause=0.5, what="batch to appear")
    assert ("cpu", "total") in values(seen)
    made = _snapshot(prefix)
    wait_until(lambda: batch not in by_cgroup(collector.collect())
               and net.netns_name("batch") not in net.leftovers(), 30, pause=0.5, what="batch to go")
    made["pids"] |= _snapshot(prefix)["pids"]
    collector.close()

    assert demo.sigterm() == 0, demo.output()
    assert "cleaned up" in demo.output()
    _assert_nothing_left(prefix, made)
    # batch may vanish during a pass (logged once, as designed); nothing else may go wrong
    assert [w for w in logs.warn if "batch" not in w] == [], logs.warn


def test_a_demo_killed_with_sigkill_leaves_what_the_next_one_removes(demo_prefix, tmp_path):
    prefix, runs = demo_prefix
    first = DemoRun(prefix, tmp_path / "first.log")
    runs.append(first)
    first.wait_for("running until")
    made = _snapshot(prefix)
    assert set(made["netns"]) >= {DemoNetwork(prefix, NAMES).host, DemoNetwork(prefix, NAMES).netns_name("web")}
    os.kill(first.proc.pid, signal.SIGKILL)
    first.proc.wait(timeout=30)
    assert DemoNetwork(prefix, NAMES).leftovers() and CgroupTree(prefix).existing_dirs()

    second = DemoRun(prefix, tmp_path / "second.log", seconds=60)
    runs.append(second)
    second.wait_for("removed what the earlier demo left")
    second.wait_for("running until")
    assert "an earlier demo was killed" in second.output()
    assert not [p for p in made["pids"] if proc_alive(p)]        # they went by themselves (orphaned)
    made2 = _snapshot(prefix)
    assert made2["pids"] and not made2["pids"] & made["pids"]
    assert second.sigterm() == 0, second.output()
    made["pids"] |= made2["pids"]
    made["netns"].update({n + "-2": i for n, i in made2["netns"].items()})
    _assert_nothing_left(prefix, made)
