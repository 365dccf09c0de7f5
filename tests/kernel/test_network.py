"""Network counters per container (collectd_cgroups.network) on real network namespaces.

Everything runs in namespaces these tests make (``NetLab``): a "host" namespace ``ccgt<hex>-h`` plays
the host (the passes run on a thread that entered it, collectd runs inside it), and each "container" is a
``sleep`` process of ours in a cgroup of ours (``ccg-test-net-<hex>``), in its own namespace made by
``unshare --net``, joined to the host namespace by a veth pair ``ccgt<hex>v<n>`` <-> ``eth0`` with
addresses from 192.0.2.0/24.  Traffic goes only between those addresses.  Nothing touches the root
namespace's interfaces; every namespace, veth, process and cgroup is removed in teardown.

Independent sources: ``/proc/<pid>/net/dev`` of a process in the container, ``ip -j -s -d link`` (iproute2)
for names, indexes, links and kinds, ``/proc/<pid>/net/netlink`` for sockets, readlink of
``/proc/self/fd/*`` for namespace descriptors, and setns through ctypes (not the shim under test) to
put test threads into the lab's host namespace.
"""

import errno
import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from collectd_cgroups import containers, fs, netlink, netns, network
from tests.support import CHECKOUT
from tests.support.netnsutil import (
    Logs, as_netdev, ctypes_setns, netlink_inodes, nsfs_fds, one_pass, pidfd_count, proc_net_dev, run,
    socket_inodes, wait_for)

VALID_NAME = re.compile(r"\A[A-Za-z0-9_.:+@=,~-]{1,127}\Z")


# -- pure parts ------------------------------------------------------------------------------------------------

def L(index, name, stats=None, link=None, netnsid=None, kind=None):
    return netlink.Link(index, name, link, netnsid, kind, stats or tuple(range(100 * index, 100 * index + 16)))


def test_select_default_ignores_lo_only():
    s = network.InterfaceSelect()
    assert not s("lo") and s("eth0") and s("lo0") and s("veth1")


def test_select_names_and_regexes_like_collectds_interface_plugin():
    s = network.InterfaceSelect(["eth0", "/^cali/"])
    assert s("eth0") and s("cali123") and not s("eth1") and not s("lo")
    s = network.InterfaceSelect(["eth0", "/^cali/"], ignore_selected=True)
    assert not s("eth0") and not s("cali123") and s("eth1") and s("lo")
    with pytest.raises(ValueError, match="Interface"):
        network.InterfaceSelect(["/(/"])


def test_samples_from_links_maps_counters_like_proc_net_dev():
    stats = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16)
    samples, names = network.samples_from_links([L(2, "eth0", stats), L(1, "lo")])
    # rx_packets tx_packets rx_bytes tx_bytes rx_errors tx_errors rx_dropped tx_dropped ... rx_missed_errors
    assert samples == [("if_octets", "eth0", (3, 4)), ("if_packets", "eth0", (1, 2)),
                       ("if_errors", "eth0", (5, 6)), ("if_dropped", "eth0", (7 + 16, 8))]
    assert names == {2: "eth0"}


def test_samples_from_links_sanitizes_and_skips_clashing_names():
    bad = []
    samples, names = network.samples_from_links([L(3, "a#b"), L(4, "\u00e91"), L(5, "\u00fc1"), L(6, None)],
                                                network.InterfaceSelect(), bad)
    assert names == {3: "a_b", 4: "_1"}
    assert {ti for _, ti, _ in samples} == {"a_b", "_1"}
    assert len(bad) == 2 and any("\u00fc1" in b for b in bad) and any("without a name" in b for b in bad)


def test_host_peers_needs_both_links_and_the_hosts_namespace_id():
    links = [L(2, "eth0", link=7, netnsid=0, kind="veth"), L(3, "eth1", link=8, netnsid=1, kind="veth"),
             L(4, "eth2", link=9, netnsid=0, kind="veth")]
    host = {7: L(7, "vethA", link=2, kind="veth"), 8: L(8, "vethB", link=3, kind="veth"),
            9: L(9, "vethC", link=5, kind="veth")}
    names = {2: "eth0", 3: "eth1", 4: "eth2"}
    # eth1's peer is in namespace 1, not the host's (0): an ifindex coincidence must not name vethB;
    # vethC's peer is ifindex 5, not eth2.
    assert network.host_peers(links, names, host, 0) == {"eth0": "vethA"}


def test_parse_messages_reports_netlink_errors():
    msg = netlink._NLMSGHDR.pack(36, netlink.NLMSG_ERROR, 0, 1, 0) + netlink._ERR.pack(-errno.EPERM) + b"\0" * 16
    with pytest.raises(netlink.NetlinkError) as e:
        netlink.parse_messages(msg, [], [])
    assert e.value.errno == errno.EPERM


# -- first_pid ---------------------------------------------------------------------------------------------------

def test_first_pid_empty_nested_and_gone(lab):
    b = lab.box("p1", veth=False)
    assert containers.first_pid(b.dirs) == b.pid
    empty = lab.tree.container("empty")
    assert containers.first_pid(empty.dirs) is None
    # A container whose processes live in a sub-cgroup only (nspawn, nested runtimes).
    nested = lab.tree.container("nested")
    subdirs = {k: d + "/payload" for k, d in nested.dirs.items()}
    for d in set(subdirs.values()):
        os.mkdir(d)
    try:
        lab.move(b.pid, subdirs)
        assert containers.first_pid(nested.dirs) == b.pid
        assert containers.first_pid(list(nested.dirs.values())) == b.pid
    finally:
        lab.move(b.pid, b.dirs)
        for d in set(subdirs.values()):
            os.rmdir(d)
    gone = {k: d + "-missing" for k, d in empty.dirs.items()}
    with pytest.raises(fs.Gone):
        containers.first_pid(gone)


# -- values ------------------------------------------------------------------------------------------------------

def test_link_dump_matches_iproute2(lab):
    """Names, indexes, IFLA_LINK, kinds and 64-bit counters as `ip -j -s -d link` reports them."""
    b = lab.box("ip1")
    b.sh("ip link add ccgp0 type veth peer name ccgp1 && ip link set ccgp0 up && ip link set ccgp1 up")

    def dump_inside():
        with netns.entered("/proc/%d/ns/net" % b.pid):
            s = network.netlink_socket()
        with s:
            return netlink.dump(s, netlink.LINKS_REQUEST)[0]
    for attempt in range(5):
        before = json.loads(b.sh("ip -j -s -d link show").stdout)
        links = lab.in_host(dump_inside)
        after = json.loads(b.sh("ip -j -s -d link show").stdout)
        if before == after:
            break
    assert before == after, "the interfaces kept changing"
    ours = {l.index: l for l in links}
    assert sorted(ours) == sorted(l["ifindex"] for l in after)
    for ref in after:
        mine = ours[ref["ifindex"]]
        assert mine.name == ref["ifname"]
        assert mine.kind == ref.get("linkinfo", {}).get("info_kind")
        link = ref.get("link_index")
        if "link" in ref:                       # a link in the same namespace: iproute2 prints its name
            link = [l["ifindex"] for l in after if l["ifname"] == ref["link"]][0]
        assert mine.link == link, (mine, ref)
        s = ref["stats64"]
        assert (mine.stats[2], mine.stats[0], mine.stats[4], mine.stats[6]) == \
            (s["rx"]["bytes"], s["rx"]["packets"], s["rx"]["errors"], s["rx"]["dropped"])
        assert (mine.stats[3], mine.stats[1], mine.stats[5], mine.stats[7]) == \
            (s["tx"]["bytes"], s["tx"]["packets"], s["tx"]["errors"], s["tx"]["dropped"])
    eth0 = [l for l in links if l.name == "eth0"][0]
    assert eth0.kind == "veth" and eth0.link_netnsid is not None
    inner = [l for l in links if l.name == "ccgp0"][0]
    assert inner.kind == "veth" and inner.link_netnsid is None      # its peer is in the same namespace
    assert ours[1].name == "lo" and ours[1].link is None


def test_counters_match_proc_net_dev_and_grow_with_traffic(lab):
    boxes = [lab.box("v%d" % i) for i in range(3)]
    reader = lab.in_host(network.NetworkReader, select=network.InterfaceSelect(["lo"], ignore_selected=False))
    everything = lab.in_host(network.NetworkReader, select=network.InterfaceSelect(["/./"]))

    def compare(reader):
        """One pass; each box's figures against /proc/<pid>/net/dev read just before and just after."""
        for attempt in range(10):
            before = {b.name: proc_net_dev(b.pid) for b in boxes}
            res = lab.in_host(one_pass, reader, boxes)
            after = {b.name: proc_net_dev(b.pid) for b in boxes}
            if before == after:
                return {name: as_netdev(r.samples) for name, r in res.items()}, after
        raise AssertionError("counters kept moving between the reads: %r / %r" % (before, after))

    got, ref = compare(everything)
    for b in boxes:
        assert got[b.name] == ref[b.name], (b.name, got[b.name], ref[b.name])
        assert set(got[b.name]) == {"lo", "eth0"}
    got, _ = compare(reader)
    assert all(set(g) == {"lo"} for g in got.values())

    # Traffic between 192.0.2.x addresses of our namespaces: tx grows by at least the bytes sent.
    start, _ = compare(everything)
    sent = boxes[1].send_udp(200, 1000)
    end, ref = compare(everything)
    assert end == ref
    assert end["v1"]["eth0"][4] - start["v1"]["eth0"][4] >= sent
    assert end["v1"]["eth0"][5] - start["v1"]["eth0"][5] >= 200
    assert end["v0"]["eth0"][4] == start["v0"]["eth0"][4]      # no traffic from the others


def test_host_veth_peers_and_no_peer_between_containers(lab):
    """A veth between two containers whose ifindexes happen to match a host veth pair both ways must not
    be reported as having a host peer: only the namespace id tells them apart."""
    a, b = lab.box("pa"), lab.box("pb")
    d = lab.box("pd", veth=False)
    lab.veth(d, host_index=40, inside_index=3)                      # d.eth0 = 3 <-> host 40
    c = lab.box("pc", veth=False)
    # a.eth1 = 3 <-> c.eth1 = 40, both ends inside containers.
    run("ip", "link", "add", lab.tag + "x", "netns", str(a.pid), "index", "3", "type", "veth", "peer", "name",
        "eth1", "netns", str(c.pid), "index", "40")
    a.sh("ip link set %sx name eth1 && ip link set eth1 up" % lab.tag)
    c.sh("ip link set eth1 up")
    index = lambda box, name: [l for l in json.loads(box.sh("ip -j link show").stdout) if l["ifname"] == name][0]
    a_eth1 = index(a, "eth1")
    host_d = lab.host_links()[d.host_if]
    # The trap: a.eth1's peer index names d's host end, and d's host end's peer index is a.eth1's index.
    assert (a_eth1["link_index"], host_d["link_index"]) == (host_d["ifindex"], a_eth1["ifindex"]), \
        (a_eth1, host_d)
    reader = lab.in_host(network.NetworkReader)
    for _ in range(2):      # the first pass dumps links, the second uses what it learnt
        res = lab.in_host(one_pass, reader, [a, b, c, d])
        assert res["pa"].peers == {"eth0": a.host_if}
        assert res["pb"].peers == {"eth0": b.host_if}
        assert res["pd"].peers == {"eth0": d.host_if}
        assert res["pc"].peers == {}
        assert {ti for _, ti, _ in res["pc"].samples} == {"eth1"}
        assert {ti for _, ti, _ in res["pa"].samples} == {"eth0", "eth1"}
    # Without peers wanted: no host dump at all.
    quiet = lab.in_host(network.NetworkReader, host_peers=False)
    assert lab.in_host(one_pass, quiet, [a])["pa"].peers == {}


def test_host_ends_renamed_or_added_are_seen_in_the_next_pass(lab):
    """The host's veths are kept between passes and checked by name: a renamed host end or a new
    container's veth shows up in the next pass."""
    a = lab.box("ha")
    reader = lab.in_host(network.NetworkReader)
    assert lab.in_host(one_pass, reader, [a])["ha"].peers == {"eth0": a.host_if}
    lab.host_sh("ip link set %s name %sr" % (a.host_if, lab.tag))
    assert lab.in_host(one_pass, reader, [a])["ha"].peers == {"eth0": lab.tag + "r"}
    b = lab.box("hb")
    res = lab.in_host(one_pass, reader, [a, b])
    assert res["ha"].peers == {"eth0": lab.tag + "r"} and res["hb"].peers == {"eth0": b.host_if}
    lab.host_sh("ip link set %sr name %s" % (lab.tag, a.host_if))


def test_rename_and_new_interfaces_are_seen_in_the_next_pass(lab):
    b = lab.box("rn")
    reader = lab.in_host(network.NetworkReader)
    names = lambda: {ti for _, ti, _ in lab.in_host(one_pass, reader, [b])["rn"].samples}
    assert names() == {"eth0"}
    assert names() == {"eth0"}
    b.sh("ip link set eth0 down && ip link set eth0 name eth7 && ip link set eth7 up")
    assert names() == {"eth7"}
    b.sh("ip link add ccgd1 type veth peer name ccgd2")
    assert names() == {"eth7", "ccgd1", "ccgd2"}
    assert lab.in_host(one_pass, reader, [b])["rn"].peers == {"eth7": b.host_if}


def test_same_figures_without_netns_cookie(lab, monkeypatch):
    """Kernels before 5.14 have no netns cookie: every pass then dumps links, with the same result."""
    b = lab.box("nc")
    monkeypatch.setattr(network, "netns_cookie", lambda sock: None)
    reader = lab.in_host(network.NetworkReader)
    for _ in range(2):
        before = proc_net_dev(b.pid)
        res = lab.in_host(one_pass, reader, [b])["nc"]
        after = proc_net_dev(b.pid)
        if before == after:
            assert as_netdev(res.samples) == {"eth0": after["eth0"]}
        assert res.peers == {"eth0": b.host_if}
    assert reader.info == {}


def test_unusual_interface_names_are_sanitized_or_skipped_and_logged(lab):
    b = lab.box("odd", veth=False)
    b.sh("ip link add 'a#b' type veth peer name '\u00e91' && ip link add 'x.y-z' type veth peer name '\u00fc1'")
    logs = Logs()
    reader = lab.in_host(network.NetworkReader, warn_once=logs.once, info_once=logs.once)
    for _ in range(2):
        res = lab.in_host(one_pass, reader, [b])["odd"]
        tis = {ti for _, ti, _ in res.samples}
        assert tis == {"a_b", "_1", "x.y-z"}, tis
        assert all(VALID_NAME.match(ti) for ti in tis)
    assert len(logs.about("is taken by")) == 1, logs.lines


# -- shared and host namespaces ----------------------------------------------------------------------------------

def test_shared_namespace_read_once_and_kept_under_one_container(lab, monkeypatch):
    s1 = lab.box("s1")
    s2 = lab.box("s2", share_with=s1)
    solo = lab.box("solo")
    assert s1.ns() == s2.ns() != solo.ns()
    opened = []
    real = network.netlink_socket

    def counting():
        opened.append(netns.thread_ns_ident())
        return real()
    monkeypatch.setattr(network, "netlink_socket", counting)
    reader = lab.in_host(network.NetworkReader)
    inside = lambda: sorted(i for i in opened if i != lab.host_ident())    # the host dump's socket aside
    res = lab.in_host(one_pass, reader, [s1, s2, solo])
    assert inside() == sorted([s1.ns(), solo.ns()])                       # one socket per namespace
    assert res["s1"].samples and res["s1"].shared_with is None
    assert res["s2"].samples == [] and res["s2"].shared_with == s1.key
    # Next pass, s2 comes first: the figures stay under s1.
    del opened[:]
    res = lab.in_host(one_pass, reader, [s2, solo, s1])
    assert res["s2"].shared_with == s1.key and res["s1"].samples and inside() == sorted([s1.ns(), solo.ns()])
    # s1's process leaves: one pass without the figures, then s2 reports them.
    s1.stop()
    res = lab.in_host(one_pass, reader, [s1, s2])
    assert res["s1"] is None and res["s2"].shared_with == s1.key
    res = lab.in_host(one_pass, reader, [s1, s2])
    assert res["s2"].samples and res["s2"].shared_with is None


def test_container_in_the_host_namespace_is_not_reported(lab):
    h = lab.box("inhost", in_host=True)
    other = lab.box("own")
    logs = Logs()
    reader = lab.in_host(network.NetworkReader, info_once=logs.once, warn_once=logs.once)
    res = lab.in_host(one_pass, reader, [h, other])
    assert res["inhost"] is None and res["own"].samples
    assert logs.about("in the host's network namespace"), logs.lines


# -- faults ------------------------------------------------------------------------------------------------------

def test_pid_that_left_the_container_is_not_attributed(lab):
    a = lab.box("ra")
    b = lab.box("rb")
    logs = Logs()
    reader = lab.in_host(network.NetworkReader, info_once=logs.once, warn_once=logs.once)
    pid = containers.first_pid(a.dirs)
    # Between finding the PID and opening its namespace, the process moved to another cgroup (what a reused
    # PID looks like too: the number now names a process outside the container).
    lab.move(pid, b.dirs)

    def read():
        with reader.begin() as p:
            return p.read(a.key, pid, a.cgroup), p.read(b.key, b.pid, b.cgroup)
    got_a, got_b = lab.in_host(read)
    assert got_a is None
    assert got_b.samples                    # b's own figures, read once, under b
    assert logs.about("is not in " + a.cgroup), logs.lines
    # The pidfd path and the /proc path agree.
    for use_pidfd in (True, False):
        with pytest.raises(netns.PidMoved):
            netns.open_netns(pid, a.cgroup, use_pidfd=use_pidfd)


def test_container_that_vanished_is_skipped_and_logged(lab):
    a = lab.box("va")
    b = lab.box("vb")
    logs = Logs()
    reader = lab.in_host(network.NetworkReader, info_once=logs.once, warn_once=logs.once)
    pid = containers.first_pid(a.dirs)
    a.stop()

    def read():
        with reader.begin() as p:
            return p.read(a.key, pid, a.cgroup), p.read(b.key, b.pid, b.cgroup)
    got_a, got_b = lab.in_host(read)
    assert got_a is None and got_b.samples
    assert logs.about("gone before its network could be read"), logs.lines
    assert lab.in_host(netns.thread_ns_ident) == lab.host_ident()


PROBE_EPERM = textwrap.dedent("""
    import json
    from collectd_cgroups import netns, network
    logs = []
    reader = network.NetworkReader(warn_once=lambda k, m, cause=None: logs.append([list(map(str, k)), m]),
                                   info_once=lambda k, m, cause=None: logs.append([list(map(str, k)), m]))
    home = netns.thread_ns_ident()
    with reader.begin() as p:
        res = p.read("box", %(pid)d, %(cgroup)r)
    print(json.dumps({"res": res, "logs": logs, "home": netns.thread_ns_ident() == home}))
""")


def test_namespace_we_may_not_enter_is_skipped_with_errno_and_path(lab):
    """Without CAP_SYS_ADMIN (dropped with util-linux's setpriv in a child process) setns fails with EPERM."""
    b = lab.box("ep")
    code = PROBE_EPERM % {"pid": b.pid, "cgroup": b.cgroup}
    res = run("setpriv", "--bounding-set=-sys_admin", "--inh-caps=-sys_admin", "--", sys.executable, "-c", code,
              cwd=CHECKOUT)
    out = json.loads(res.stdout)
    assert out["res"] is None and out["home"] is True
    assert len(out["logs"]) == 1, out
    key, message = out["logs"][0]
    assert "network skipped" in message and "EPERM" in message and "/proc/%d/ns/net" % b.pid in message, message


# -- threads -----------------------------------------------------------------------------------------------------

def test_failure_inside_the_namespace_returns_the_thread_from_every_path(lab, monkeypatch):
    """Several threads run passes at once; every third socket creation inside a container's namespace
    fails.  After each pass, on the same thread, "another callback" must find itself in the host namespace,
    and see the host's interfaces in /proc/thread-self/net/dev."""
    boxes = [lab.box("t%d" % i) for i in range(4)]
    host = lab.host_ident()
    container_ns = {b.ns() for b in boxes}
    host_ifs = set(proc_net_dev_of_thread_in(lab))
    real = network.netlink_socket
    lock = threading.Lock()
    calls = [0]
    raised_inside = []

    def flaky():
        here = netns.thread_ns_ident()
        if here == host:            # the pass's host dump
            return real()
        with lock:
            calls[0] += 1
            n = calls[0]
        if n % 3 == 0:
            raised_inside.append(here)
            raise OSError(errno.ENOBUFS, "injected failure")
        return real()
    monkeypatch.setattr(network, "netlink_socket", flaky)
    problems = []
    read_ok = []

    def worker(index):
        ctypes_setns(lab.host_path)
        logs = Logs()
        reader = network.NetworkReader(warn_once=logs.once, info_once=logs.once)
        for i in range(15):
            res = one_pass(reader, boxes[index % 2:] if i % 2 else boxes)
            # "another callback" on this very thread
            here = netns.thread_ns_ident()
            if here != host:
                problems.append("thread %d pass %d: in %s, not the host %s" % (index, i, here, host))
            with open("/proc/thread-self/net/dev", "rb") as f:
                seen = {l.split(b":")[0].strip().decode() for l in f.read().split(b"\n")[2:] if l.strip()}
            if seen != host_ifs:
                problems.append("thread %d pass %d sees %s" % (index, i, sorted(seen)))
            read_ok.extend(index for r in res.values() if r and r.samples)
        if not logs.about("injected failure"):
            problems.append("thread %d never saw the injected failure" % index)
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not problems, problems[:10]
    assert set(read_ok) == {0, 1, 2, 3}
    assert raised_inside and set(raised_inside) <= container_ns      # the failures happened inside
    assert not nsfs_fds()


def proc_net_dev_of_thread_in(lab):
    def names():
        with open("/proc/thread-self/net/dev", "rb") as f:
            return [l.split(b":")[0].strip().decode() for l in f.read().split(b"\n")[2:] if l.strip()]
    return lab.in_host(names)


def test_a_thread_that_cannot_return_disables_namespace_work(lab, monkeypatch):
    b = lab.box("st")
    logs = Logs()
    out = {}

    def stranded():
        ctypes_setns(lab.host_path)
        reader = network.NetworkReader(warn_once=logs.once, info_once=logs.once)
        real = netns._setns_impl or netns._cffi_setns()
        home_fds = []

        def failing_return(fd, nstype):
            if home_fds and fd == home_fds[0]:
                raise OSError(errno.ENOMEM, "injected")
            real(fd, nstype)
        monkeypatch.setattr(netns, "_setns_impl", failing_return)
        with reader.begin() as p:
            home_fds.append(p._home().fd)
            out["first"] = p.read(b.key, b.pid, b.cgroup)
            out["where"] = netns.thread_ns_ident()
            out["second"] = p.read(b.key, b.pid, b.cgroup)
        out["disabled"] = reader.disabled
    t = threading.Thread(target=stranded)      # this thread is left in the box's namespace, and ends
    t.start()
    t.join(30)
    assert out["first"] is None and out["second"] is None
    assert out["where"] == b.ns()             # it really is stuck: hence the reader stops
    assert out["disabled"] and "cannot return" in out["disabled"]
    assert len(logs.about("network figures disabled")) == 1


def test_a_pass_on_a_thread_outside_home_does_nothing(lab):
    b = lab.box("nh")
    logs = Logs()
    reader = lab.in_host(network.NetworkReader, warn_once=logs.once, info_once=logs.once)
    res = one_pass(reader, [b])         # this (pytest's) thread is in the root namespace, not the lab's host
    assert res["nh"] is None and logs.about("not in the network namespace the plugin started in")
    with pytest.raises(RuntimeError):
        p = reader.begin()
        lab.in_host(p.read, b.key, b.pid, b.cgroup)


# -- nothing held ------------------------------------------------------------------------------------------------

def test_no_namespace_descriptor_or_foreign_socket_after_a_pass(lab):
    boxes = [lab.box("f%d" % i) for i in range(3)]
    reader = lab.in_host(network.NetworkReader)
    sockets_before = socket_inodes()
    for _ in range(3):
        res = lab.in_host(one_pass, reader, boxes)
        assert all(r.samples for r in res.values())
        assert nsfs_fds() == []
        new = socket_inodes() - sockets_before
        assert not new, new
        for b in boxes:
            assert not (socket_inodes() & netlink_inodes(b.pid))


def test_stopped_container_namespace_is_freed(lab):
    """While something holds a namespace descriptor the veth stays; passes themselves hold nothing."""
    a = lab.box("fa")
    reader = lab.in_host(network.NetworkReader)
    for _ in range(3):
        assert lab.in_host(one_pass, reader, [a])["fa"].samples
    held = os.open("/proc/%d/ns/net" % a.pid, os.O_RDONLY)     # the control: what a leak would do
    try:
        a.stop()
        time.sleep(1.0)
        assert a.host_if in lab.host_links()
    finally:
        os.close(held)
    wait_for(lambda: a.host_if not in lab.host_links(), 20, "the host end of the veth to go")
    b = lab.box("fb")
    c = lab.box("fc")
    for _ in range(3):
        assert lab.in_host(one_pass, reader, [b, c])["fb"].samples
    b.stop()
    assert lab.in_host(one_pass, reader, [b, c])["fc"].samples
    wait_for(lambda: b.host_if not in lab.host_links(), 20, "the host end of the veth to go")


def test_passes_keep_one_pidfd_per_container_and_close_those_they_no_longer_see(lab):
    boxes = [lab.box("p%d" % i) for i in range(3)]
    reader = lab.in_host(network.NetworkReader)
    if reader.pidfds is None:
        pytest.skip("no pidfd_open in this Python or kernel (Linux 5.3+): namespaces opened afresh each pass")
    for _ in range(2):
        assert all(r.samples for r in lab.in_host(one_pass, reader, boxes).values())
    assert sorted(reader.pidfds.kept) == sorted(b.pid for b in boxes)

    def final_read():       # what CollectOnExit's reading does: a partial pass, from another thread
        with reader.begin(partial=True) as p:
            return p.read(boxes[0].key, boxes[0].pid, boxes[0].cgroup)
    assert lab.in_host(final_read).samples
    assert len(reader.pidfds) == 3 and reader.owners     # nothing the passes keep was dropped
    assert lab.in_host(one_pass, reader, boxes[1:])["p1"].samples
    assert sorted(reader.pidfds.kept) == sorted(b.pid for b in boxes[1:])
    reader.close()
    assert len(reader.pidfds) == 0 and nsfs_fds() == []

    # KeepFilesOpen false: nothing kept, every pass opens the namespaces afresh.
    before = pidfd_count()
    fresh = lab.in_host(network.NetworkReader, keep_pidfds=False)
    assert fresh.pidfds is None
    for _ in range(2):
        assert all(r.samples for r in lab.in_host(one_pass, fresh, boxes).values())
    assert pidfd_count() == before and nsfs_fds() == []


# -- under a real collectd ---------------------------------------------------------------------------------------

PROBE_PLUGIN = textwrap.dedent('''
    """Test plugin: the network reader inside collectd's embedded Python, on its read-thread pool."""
    import errno, json, os, re, threading
    import collectd
    import _cffi_backend
    from collectd_cgroups import containers, netns, network

    CONF = {}
    STATE = {"passes": 0}

    def config(node):
        for child in node.children:
            CONF[child.key] = child.values[0]

    def init():
        STATE["reader"] = network.NetworkReader(
            warn_once=lambda k, m, cause=None: collectd.warning("ccgt: " + m),
            info_once=lambda k, m, cause=None: collectd.info("ccgt: " + m))
        STATE["home"] = netns.thread_ns_ident()
        collectd.info("CCGT-CFFI %s" % _cffi_backend.__file__)
        real = network.netlink_socket
        def flaky():
            if STATE["passes"] % 3 == 2:
                raise OSError(errno.ENOBUFS, "injected failure inside")
            return real()
        network.netlink_socket = flaky

    def read(data=None):
        with open(CONF["Boxes"]) as f:
            boxes = json.load(f)
        reader = STATE["reader"]
        reported = 0
        with reader.begin() as p:
            for b in boxes:
                pid = containers.first_pid(b["dirs"])
                res = p.read(b["name"], pid, b["cgroup"]) if pid else None
                if not res:
                    continue
                for type_, ti, values in res.samples:
                    v = collectd.Values(plugin="container", plugin_instance="cgroup-" + b["name"], type=type_,
                                        type_instance=ti, values=list(values))
                    if ti in res.peers:
                        v.meta = {"host_interface": res.peers[ti]}
                    v.dispatch()
                    reported += 1
                if res.peers:
                    collectd.info("CCGT-PEERS %s %s" % (b["name"], json.dumps(res.peers, sort_keys=True)))
        STATE["passes"] += 1
        if netns.thread_ns_ident() != STATE["home"]:
            collectd.error("CCGT-LEAK thread %d not in the host namespace" % threading.get_ident())
        foreign = set()
        for b in boxes:
            try:
                with open("/proc/%d/net/netlink" % b["pid"]) as f:
                    foreign |= {r.split()[-1] for r in f.read().splitlines()[1:] if r.split()}
            except OSError:
                pass
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink("/proc/self/fd/" + fd)
            except OSError:
                continue
            if target.startswith("net:["):
                collectd.error("CCGT-LEAK nsfs descriptor %s -> %s" % (fd, target))
            m = re.match(r"socket:\\[(\\d+)\\]", target)
            if m and m.group(1) in foreign:
                collectd.error("CCGT-LEAK netlink socket %s in a container namespace" % fd)
        collectd.info("CCGT-PASS %d thread=%d values=%d" % (STATE["passes"], threading.get_ident(), reported))

    def other(data=None):
        """Another plugin's callback on the same pool: must always run in the host namespace."""
        if netns.thread_ns_ident() != STATE["home"]:
            collectd.error("CCGT-OTHER thread %d not in the host namespace" % threading.get_ident())
        else:
            collectd.info("CCGT-OTHER ok thread=%d" % threading.get_ident())

    collectd.register_config(config)
    collectd.register_init(init)
    collectd.register_read(read, name="ccgt_net")
    for n in range(3):
        collectd.register_read(other, name="ccgt_other_%d" % n)
''')


def test_under_real_collectd_nothing_held_and_namespace_freed(lab, tmp_path):
    from tests.support import collectd_harness as harness
    a = lab.box("cd1")
    b = lab.box("cd2")
    boxes_file = tmp_path / "boxes.json"
    boxes_file.write_text(json.dumps([{"name": x.name, "cgroup": x.cgroup, "dirs": x.dirs, "pid": x.pid}
                                      for x in (a, b)]))
    plugin_dir = tmp_path / "plugin"
    plugin_dir.mkdir()
    (plugin_dir / "ccgt_net_probe.py").write_text(PROBE_PLUGIN)
    site = next(p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix))
    dropin = textwrap.dedent("""\
        ReadThreads 1
        <LoadPlugin python>
          Globals true
        </LoadPlugin>
        <Plugin python>
          ModulePath "%s"
          ModulePath "%s"
          Import "ccgt_net_probe"
          <Module "ccgt_net_probe">
            Boxes "%s"
          </Module>
        </Plugin>
        """ % (site, plugin_dir, boxes_file))
    paths = harness.write_config(tmp_path, modules=None, dropin=dropin, interval=1)
    out = open(tmp_path / "collectd.stdout", "wb")
    proc = subprocess.Popen(["nsenter", "--net=" + lab.host_path, "--", harness.COLLECTD, "-f", "-C", paths.conf],
                            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=str(tmp_path),
                            start_new_session=True)
    log = lambda: harness._read(paths.log)
    passes = lambda: len(re.findall(r"CCGT-PASS \d+", log()))
    try:
        wait_for(lambda: passes() >= 6 or proc.poll() is not None, 40, "six passes")
        assert proc.poll() is None, log()
        sent = a.send_udp(50, 1200)
        n = passes()
        wait_for(lambda: passes() >= n + 2, 20, "two more passes")
        # The container stops: its namespace must go (the host end of its veth disappears) while collectd runs.
        a.stop()
        wait_for(lambda: a.host_if not in lab.host_links(), 20, "the host end of %s's veth to go" % a.name)
        n = passes()
        wait_for(lambda: passes() >= n + 2, 20, "passes after the container stopped")
        assert proc.poll() is None
        text = log()
    finally:
        harness._terminate(proc, 10)
        out.close()
    assert "CCGT-LEAK" not in text and "not in the host namespace" not in text, text
    assert not harness.READ_FAILED.search(text), text
    assert "CCGT-CFFI %s" % site in text, [l for l in text.splitlines() if "CFFI" in l]
    assert "injected failure inside" in text                    # the failure path did run under collectd
    # One read thread for four callbacks (collectd's pool at its smallest): the other callbacks ran on the
    # very thread that had run the network passes, right after them (the in-process test above covers
    # several threads at once).
    net_threads = set(re.findall(r"CCGT-PASS \d+ thread=(\d+)", text))
    other_threads = set(re.findall(r"CCGT-OTHER ok thread=(\d+)", text))
    assert net_threads & other_threads, (net_threads, other_threads)
    assert 'CCGT-PEERS cd1 {"eth0": "%s"}' % a.host_if in text
    assert 'CCGT-PEERS cd2 {"eth0": "%s"}' % b.host_if in text
    # The values reached collectd's writers: CSV rows for eth0 of both containers, tx grew by what cd1 sent.
    rows = {}
    for box in (a, b):
        files = sorted((tmp_path / "csv").glob("*/container-cgroup-%s/if_octets-eth0-*" % box.name))
        assert files, box.name
        lines = [l.split(",") for f in files for l in f.read_text().splitlines()[1:]]
        rows[box.name] = [(float(l[0]), int(float(l[1])), int(float(l[2]))) for l in lines]
    tx = [r[2] for r in rows["cd1"]]
    assert tx == sorted(tx) and tx[-1] - tx[0] >= sent
