"""Final figures on exit (issue 6), on the real kernel with synthetic containers.

A watcher of our own (collectd_cgroups.sentinel.Watcher) places a sentinel in each synthetic container;
the tests end the containers' processes and check the final figures against independent sources (what the
workload measured itself, what it allocated, what it sent), that the cgroups are gone afterwards and that no
sentinel is left running.
"""

import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from ccg_lab.synthetic import CgroupTree, check_path
from collectd_cgroups import sentinel
from collectd_cgroups.collector import Collector, Options
from tests.support import CHECKOUT, netnsutil
from tests.support.kernelutil import proc_alive as alive


def wait_for(predicate, timeout=20.0, what="condition"):
    return netnsutil.wait_for(predicate, timeout, what, pause=0.01)     # finer: exits are timed here


class Log(object):
    def __init__(self):
        self.lines = []

    def __call__(self, msg):
        self.lines.append(msg)


@pytest.fixture
def tree():
    prefix = "ccg-test-exit-%s" % secrets.token_hex(4)
    with CgroupTree(prefix) as t:
        yield t
    assert t.existing_dirs() == []


def make_watcher(tree, finals, groups=None, interfaces=(), **kw):
    opts = Options(match=[("^/%s/(?P<name>[^/]+)$" % tree.prefix, "cgroup")], interfaces=list(interfaces),
                   runtimes=())     # only this test's containers get sentinels
    if groups is not None:
        opts.groups = tuple(groups)
    log = Log()
    w = sentinel.Watcher(Collector(opts, warn=log, info=log), on_final=finals.append, warn=log, info=log, **kw)
    w.log = log
    return w


def sentinel_of(w, timeout=10):
    return wait_for(lambda: next(iter(w.sentinels.values()), None), timeout, "a sentinel to be placed")


def test_final_figures_after_exit(tree):
    finals = []
    w = make_watcher(tree, finals)
    c = tree.container("burn")
    p = c.spawn(cpu_seconds=0.4, memory_mib=48, children=2).wait_ready()
    w.start()
    try:
        s = sentinel_of(w)
        assert s.pid in c.pids() and p.pid in c.pids()
        for d in c.dirs.values():     # in every hierarchy of the container (v1 and the cgroup2 mount)
            with open(d + "/cgroup.procs") as f:
                assert str(s.pid) in f.read().split(), d
        t_exit = time.monotonic()
        p.kill()
        wait_for(lambda: finals, 10, "final figures")
        latency = time.monotonic() - t_exit
        print("final figures %.3f s after the last process was killed" % latency)
    finally:
        w.stop()
    f = finals[0]
    values = {(t, ti): v for t, ti, v in f.samples}
    totals = {ti: v[0] for _, ti, v in f.totals}
    assert f.instance == "cgroup-burn"
    # CPU: at least what the workload measured itself; peak memory: at least what it touched.
    assert totals["final_cpu"] >= p.cpu_used - 0.01
    assert values[("cpu", "total")][0] / 100.0 == pytest.approx(totals["final_cpu"])
    assert values[("memory", "max_usage")][0] >= 48 << 20
    assert values[("count", "pids")][0] >= 1      # the sentinel (pids.current also counts unreaped exits)
    assert f.removed is True
    for d in c.dirs.values():
        assert not os.path.exists(d), d
    assert not alive(s.pid)
    assert w.sentinels == {} and w.recent[-1] is f


def test_short_lived_container_gets_final_figures(tree):
    """A container living less than one read interval (collectd's default 10 s) is covered as long as it
    lives longer than the watcher's own discovery interval (DISCOVER_INTERVAL)."""
    finals = []
    w = make_watcher(tree, finals).start()
    try:
        c = tree.container("short")
        p = c.spawn(cpu_seconds=0.2, exit_after=sentinel.DISCOVER_INTERVAL + 0.5)
        p.wait_ready()
        wait_for(lambda: finals, 15, "final figures of the short-lived container")
        p.poll()
    finally:
        w.stop()
    totals = {ti: v[0] for _, ti, v in finals[0].totals}
    assert totals["final_cpu"] >= p.cpu_used - 0.01
    assert finals[0].removed is True
    assert not any(os.path.exists(d) for d in c.dirs.values())


def test_killed_sentinel_is_noticed_once_and_nothing_breaks(tree):
    """What crun does on stop (kill every process in the cgroup, the sentinel too)."""
    finals = []
    w = make_watcher(tree, finals).start()
    try:
        c = tree.container("crunlike")
        p = c.spawn().wait_ready()
        s = sentinel_of(w)
        os.kill(s.pid, signal.SIGKILL)   # a process of ours: the sentinel the watcher started
        p.kill()
        wait_for(lambda: w.lost == 1, 10, "the watcher to notice")
        time.sleep(3 * sentinel.POLL_INTERVAL + sentinel.DISCOVER_INTERVAL)
        c.remove()      # the cgroups are removable: nothing of ours is left in them
    finally:
        w.stop()
    assert finals == []
    assert w.lost == 1 and w.sentinels == {}
    assert len([m for m in w.log.lines if "sentinel was killed" in m]) == 1


def test_stop_releases_every_sentinel(tree):
    finals = []
    w = make_watcher(tree, finals).start()
    cs = [tree.container("run%d" % i) for i in range(3)]
    procs = [c.spawn().wait_ready() for c in cs]
    wait_for(lambda: len(w.sentinels) == 3, 10, "three sentinels")
    pids = [s.pid for s in w.sentinels.values()]
    w.stop()
    for pid in pids:
        assert not alive(pid)
    for c, p in zip(cs, procs):
        assert c.pids() == [p.pid]      # the containers' own processes are untouched
        c.remove()
    assert finals == []


def test_sentinel_is_small_and_holds_nothing(tree):
    finals = []
    w = make_watcher(tree, finals).start()
    try:
        c = tree.container("small")
        c.spawn().wait_ready()
        s = sentinel_of(w)
        wait_for(lambda: os.readlink("/proc/%d/exe" % s.pid).endswith("/sleep"), 5, "sleep to run")
        status = dict(line.split(":", 1) for line in open("/proc/%d/status" % s.pid))
        anon_kib = int(status["RssAnon"].split()[0])
        rss_kib = int(status["VmRSS"].split()[0])
        pss = [l for l in open("/proc/%d/smaps_rollup" % s.pid) if l.startswith("Pss:")][0]
        print("sentinel: VmRSS %d KiB, RssAnon %d KiB, %s" % (rss_kib, anon_kib, pss.strip()))
        assert anon_kib < 1024
        fds = {int(n): os.readlink("/proc/%d/fd/%s" % (s.pid, n)) for n in os.listdir("/proc/%d/fd" % s.pid)}
        assert fds == {0: "/dev/null", 1: "/dev/null", 2: "/dev/null"}
        assert os.readlink("/proc/%d/cwd" % s.pid) == "/"
        assert os.readlink("/proc/%d/root" % s.pid) == "/"
        env = open("/proc/%d/environ" % s.pid, "rb").read()
        assert sentinel.MARK.encode() + b"=" in env
        # PR_SET_PDEATHSIG is set (field 'SigQ' does not show it; /proc/<pid>/stat does not either):
        # proven by test_sentinels_die_with_a_killed_parent.
    finally:
        w.stop()


_ORPHAN = textwrap.dedent("""
    import time
    from collectd_cgroups import sentinel
    from collectd_cgroups.collector import Collector, Options
    opts = Options(match=[("^/%(prefix)s/(?P<name>[^/]+)$", "cgroup")], runtimes=())
    w = sentinel.Watcher(Collector(opts)).start()
    while not w.sentinels:
        time.sleep(0.01)
    print(" ".join(str(s.pid) for s in w.sentinels.values()), flush=True)
    time.sleep(3600)
""")


def test_sentinels_die_with_a_killed_parent(tree):
    """SIGKILL the process running the watcher: its sentinels exit by themselves (parent-death signal)
    and leave the container's cgroups removable."""
    c = tree.container("orphan")
    p = c.spawn().wait_ready()
    proc = subprocess.Popen([sys.executable, "-c", _ORPHAN % {"prefix": tree.prefix}], cwd=CHECKOUT,
                            stdout=subprocess.PIPE, start_new_session=True)
    try:
        pids = [int(x) for x in proc.stdout.readline().split()]
        assert len(pids) == 1 and pids[0] in c.pids()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        wait_for(lambda: not alive(pids[0]), 10, "the sentinel to exit")
        assert c.pids() == [p.pid]
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        proc.stdout.close()
    c.remove()


_SENDER = r"""
read gate
ip link set lo up
python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); r.bind(("127.0.0.1", 9999))
for _ in range(200):
    s.sendto(b"x" * 1000, ("127.0.0.1", 9999))
'
echo SENT
exec sleep 1000
"""


def test_final_network_counters_survive_the_last_process(tree):
    """The sentinel holds the container's network namespace: its counters are read after the container's
    last process is gone.  The container sends 200 UDP datagrams of 1000 bytes over its own lo."""
    finals = []
    w = make_watcher(tree, finals, interfaces=["lo"])
    c = tree.container("net")
    proc = subprocess.Popen(["unshare", "--net", "--", "sh", "-c", _SENDER], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, start_new_session=True, cwd="/")
    try:
        for d in c.dirs.values():
            with open(check_path(d) + "/cgroup.procs", "w") as f:
                f.write(str(proc.pid))
        proc.stdin.write(b"go\n")
        proc.stdin.close()
        assert proc.stdout.readline() == b"SENT\n"
        w.start()
        s = sentinel_of(w)
        assert s.netns
        ns = os.stat("/proc/%d/ns/net" % proc.pid)
        st = os.stat("/proc/%d/ns/net" % s.pid)
        assert (st.st_dev, st.st_ino) == (ns.st_dev, ns.st_ino)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        wait_for(lambda: finals, 10, "final figures")
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        proc.stdout.close()
        w.stop()
    f = finals[0]
    values = {(t, ti): v for t, ti, v in f.samples}
    totals = {ti: v[0] for _, ti, v in f.totals}
    rx, tx = values[("if_octets", "lo")]
    assert tx >= 200 * 1000 and rx >= 200 * 1000
    assert values[("if_packets", "lo")][1] >= 200
    assert totals["final_net_rx"] == rx and totals["final_net_tx"] == tx
    assert f.removed is True and not any(os.path.exists(d) for d in c.dirs.values())
    c.removed = True


def test_two_watchers_share_a_container(tree):
    """Two watchers (two collectd instances, or collectd and the CLI) each place a sentinel in the same
    container: each recognises the other's sentinel, both report, and the cgroups end up removed."""
    f1, f2 = [], []
    w1 = make_watcher(tree, f1).start()
    w2 = make_watcher(tree, f2).start()
    try:
        c = tree.container("shared")
        p = c.spawn(cpu_seconds=0.1).wait_ready()
        wait_for(lambda: w1.sentinels and w2.sentinels, 10, "two sentinels")
        p.kill()
        wait_for(lambda: f1 and f2, 10, "final figures from both watchers")
        wait_for(lambda: not any(os.path.exists(d) for d in c.dirs.values()), 10, "the cgroups to go")
    finally:
        w1.stop()
        w2.stop()
    assert f1[0].instance == f2[0].instance == "cgroup-shared"
    c.removed = True


def test_a_container_seen_half_created_gets_one_sentinel_in_every_directory(tree):
    """Runtimes create a container's hierarchies one after the other: a discovery may see only some of
    them.  The sentinel placed then must join the others when they appear (not a second sentinel, whose
    partial "final" would come when the runtime tears the container down hierarchy by hierarchy)."""
    finals = []
    hier = dict(tree.hierarchies)
    first, rest = "pids", [h for h in ("cpu", "cpuacct", "memory", "blkio") if h in hier]
    dirs = {h: check_path("%s/%s/late" % (hier[h], tree.prefix)) for h in [first] + rest}
    for h in [first] + rest:
        os.makedirs(os.path.dirname(dirs[h]), exist_ok=True)
    proc = subprocess.Popen(["sleep", "120"], start_new_session=True)
    w = make_watcher(tree, finals)
    try:
        os.mkdir(dirs[first])
        with open(dirs[first] + "/cgroup.procs", "w") as f:
            f.write(str(proc.pid))
        w.start()
        s = sentinel_of(w)
        for h in rest:                      # the runtime goes on creating the container
            os.mkdir(dirs[h])
            with open(dirs[h] + "/cgroup.procs", "w") as f:
                f.write(str(proc.pid))

        def joined_everywhere():
            for d in dirs.values():
                with open(d + "/cgroup.procs") as f:
                    if str(s.pid) not in f.read().split():
                        return False
            return True
        wait_for(joined_everywhere, 10, "the sentinel to join the late directories")
        time.sleep(2 * sentinel.DISCOVER_INTERVAL)
        assert len(w.sentinels) == 1
        proc.kill()
        wait_for(lambda: finals, 10, "final figures")
    finally:
        w.stop()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for d in dirs.values():
            if os.path.isdir(d):
                os.rmdir(d)
    assert len(finals) == 1 and finals[0].removed is True
    values = {(t, ti) for t, ti, _ in finals[0].samples}
    assert ("cpu", "total") in values and ("memory", "usage") in values   # not a pids-only "final"


def test_finals_go_out_under_the_live_identifier_also_after_a_collision(tree):
    """Two containers whose InstanceFormat gives the same identifier: the read pass calls one of them
    ``cgroup-<short id>``.  Each one's final figures carry the identifier its live values had, because
    the watcher's collector shares the read collector's naming (as plugin.Instance builds them)."""
    opts = Options(match=[("^/%s/(?P<name>[^/]+)$" % tree.prefix, "cgroup")], runtimes=(),
                   instance_format="{runtime}", groups=("cpu", "memory", "pids"))
    log = Log()
    live = Collector(opts, warn=log, info=log)
    finals = []
    w = sentinel.Watcher(Collector(opts, warn=log, info=log, naming=live.naming), on_final=finals.append,
                         warn=log, info=log)
    procs = {name: tree.container(name).spawn(memory_mib=8).wait_ready() for name in ("one", "two")}
    w.start()
    try:
        wait_for(lambda: len(w.sentinels) == 2, 10, "two sentinels")
        items = live.collect()
        names = {item.container.name.rsplit("/", 1)[-1]: item.instance for item in items}
        assert sorted(names) == ["one", "two"], names
        assert sorted(names.values())[0] == "cgroup", names          # the first one found keeps it
        collided = next(n for n, inst in names.items() if inst != "cgroup")
        short = next(item.container.short_id for item in items if item.instance != "cgroup")
        assert names[collided] == "cgroup-%s" % short
        assert any("already taken" in line for line in log.lines), log.lines
        # A second pass in another order keeps both names where they were.
        again = {item.container.name.rsplit("/", 1)[-1]: item.instance
                 for item in live.collect(list(reversed(live.discover())))}
        assert again == names
        for name in (collided, next(n for n in names if n != collided)):
            procs[name].kill()
            wait_for(lambda: any(f.container.name.endswith(name) for f in finals), 10, "final of " + name)
            final = next(f for f in finals if f.container.name.endswith(name))
            assert final.instance == names[name], (name, final.instance, names)
            assert ("memory", "max_usage") in [(t, ti) for t, ti, _ in final.samples]
            live.collect()
    finally:
        w.stop()
        live.close()
