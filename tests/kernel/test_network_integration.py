"""The network reader wired into the whole plugin: Collector, command line, real collectd, README contract.

Everything runs in the lab of netnsutil.py: a "host" namespace ``ccgt<hex>-h`` made by the test (never the
root namespace), "containers" that are ``sleep`` processes of ours in cgroups ``ccg-test-net-<hex>/<name>``,
each in its own namespace (``unshare --net``) with a veth ``eth0`` <-> ``ccgt<hex>v<n>`` into the lab host,
addresses from 192.0.2.0/24, and traffic only between those addresses.  The collector runs on a thread that
entered the lab host namespace, the command line and collectd run under ``nsenter --net=<lab host>``: that
namespace is the plugin's "home".  Teardown removes every namespace, veth, process and cgroup.

Independent sources: ``/proc/<pid>/net/dev`` of the container's process (taken just before and just after a
pass), ``ip -j link`` in both namespaces (which host interface is whose peer), readlink of
``/proc/<collectd>/fd/*``, ``/proc/<pid>/net/netlink`` of each namespace, ``/proc/<collectd>/task/*/ns/net``,
collectd's own CSV files and unixsock, and types.db for the data-source types.
"""

import json
import os
import re
import subprocess
import sys
import textwrap
import time

from collectd_cgroups import config, identifiers
from collectd_cgroups.collector import Collector, Options
from tests.support import CHECKOUT, fake_collectd, fixtureutil
from tests.support import collectd_harness as harness
from tests.support.netnsutil import (
    as_netdev, netlink_inodes, ns_of, nsfs_fds, proc_net_dev, socket_inodes, wait_for)
from tests.unit import test_readme_contract as contract     # its README identifier table

IF_TYPES = ("if_octets", "if_packets", "if_errors", "if_dropped")


def _prefix(lab):
    assert re.match(r"^[a-z0-9-]+$", lab.tree.prefix)     # nothing to escape, in Python or in collectd.conf
    return lab.tree.prefix


def match_regex(lab):
    return r"^/%s/(?P<name>[^/]+)$" % _prefix(lab)


def others_regex(lab):
    """Ignore: every container outside the lab (other tests' synthetic docker containers, say): their
    namespaces are not ours to enter."""
    return r"^/(?!%s/)" % _prefix(lab)


def lab_options(lab, **kw):
    return Options(match=[(match_regex(lab), "cgroup")], ignore=[others_regex(lab)], **kw)


NETWORK_WORDS = re.compile(r"network|namespace|netns|netlink|setns|interface|veth", re.I)


def network_warnings(text):
    """The lines of ``text`` that are warnings (or errors) about the network side."""
    return [l for l in text.splitlines() if re.search(r"warning|error", l, re.I) and NETWORK_WORDS.search(l)]


def if_samples(item):
    """The if_* samples of one ContainerSamples."""
    return [s for s in item.samples if s[0] in IF_TYPES]


def peer_of(lab, box, inside="eth0"):
    """The lab host interface whose veth peer is ``inside`` of ``box``, from iproute2 on both sides."""
    mine = [l for l in json.loads(box.sh("ip -j link show").stdout) if l["ifname"] == inside][0]
    host = [l for l in lab.host_links().values() if l.get("ifindex") == mine["link_index"]]
    assert len(host) == 1 and host[0]["link_index"] == mine["ifindex"], (mine, host)
    return host[0]["ifname"]


def settled_pass(lab, collector, boxes, tries=10):
    """One ``collect()`` on the lab host thread, with /proc/<pid>/net/dev of each box read just before and
    just after; repeated until nothing moved in between.  Returns ({instance: ContainerSamples}, after)."""
    for _ in range(tries):
        before = {b.name: proc_net_dev(b.pid) for b in boxes}
        results = lab.in_host(collector.collect)
        after = {b.name: proc_net_dev(b.pid) for b in boxes}
        if before == after:
            return {r.instance: r for r in results}, after
    raise AssertionError("counters kept moving around the pass: %r / %r" % (before, after))


# -- 1. the Collector ---------------------------------------------------------------------------------------------

def test_collector_reports_interface_counters_of_each_container(lab):
    a, b = lab.box("a"), lab.box("b")
    h = lab.box("h", in_host=True)          # --network host
    s = lab.box("s", share_with=b)          # --network container:b
    assert s.ns() == b.ns() and h.ns() == lab.host_ident()
    warnings = []
    collector = lab.in_host(Collector, lab_options(lab), warn=warnings.append)
    got, ref = settled_pass(lab, collector, [a, b])
    assert set(got) == {"cgroup-a", "cgroup-b", "cgroup-h", "cgroup-s"}, sorted(got)

    item = got["cgroup-a"]
    # eth0 only (lo is left out by default), every counter as /proc/<pid>/net/dev has it
    assert sorted((t, ti) for t, ti, _ in if_samples(item)) == sorted((t, "eth0") for t in IF_TYPES)
    assert as_netdev(if_samples(item)) == {"eth0": ref["a"]["eth0"]}
    assert item.peers == {"eth0": a.host_if} and a.host_if == peer_of(lab, a)
    assert any(t == "cpu" for t, _, _ in item.samples)      # the cgroup figures are there too
    # The host's namespace: cgroup figures, no interface figures of its own.
    assert not if_samples(got["cgroup-h"]) and got["cgroup-h"].peers is None
    assert any(t == "memory" for t, _, _ in got["cgroup-h"].samples)
    # b and s share a namespace: its interfaces are reported once, under one of them.
    shared = [got[i] for i in ("cgroup-b", "cgroup-s") if if_samples(got[i])]
    assert len(shared) == 1, [(i, if_samples(got[i])) for i in ("cgroup-b", "cgroup-s")]
    assert as_netdev(if_samples(shared[0])) == {"eth0": ref["b"]["eth0"]}
    assert shared[0].peers == {"eth0": b.host_if} == {"eth0": peer_of(lab, b)}
    owner = shared[0].instance
    other = ({"cgroup-b", "cgroup-s"} - {owner}).pop()
    assert got[other].peers is None and got[other].samples      # its cgroup figures stay

    # Traffic from a to the lab host: a's tx grows by at least what was sent, b's figures stay its own.
    sent = a.send_udp(200, 1000)
    got2, ref2 = settled_pass(lab, collector, [a, b])
    tx = lambda g, i: dict(((t, ti), v) for t, ti, v in g[i].samples)[("if_octets", "eth0")][1]
    packets = lambda g, i: dict(((t, ti), v) for t, ti, v in g[i].samples)[("if_packets", "eth0")][1]
    assert tx(got2, "cgroup-a") - tx(got, "cgroup-a") >= sent
    assert packets(got2, "cgroup-a") - packets(got, "cgroup-a") >= 200
    assert as_netdev(if_samples(got2["cgroup-a"])) == {"eth0": ref2["a"]["eth0"]}
    assert as_netdev(if_samples(got2[owner])) == {"eth0": ref2["b"]["eth0"]}
    # The shared namespace stays under the same container from pass to pass.
    assert if_samples(got2[owner]) and not if_samples(got2[other])
    assert not if_samples(got2["cgroup-h"])
    assert not [w for w in warnings if NETWORK_WORDS.search(w)], warnings
    # Nothing held by this process after the passes: no namespace descriptor, no socket in a container's.
    assert nsfs_fds() == []
    for box in (a, b):
        assert not (socket_inodes() & netlink_inodes(box.pid))
    print("a sent %d bytes: tx %d -> %d; shared namespace reported under %s"
          % (sent, tx(got, "cgroup-a"), tx(got2, "cgroup-a"), owner))


def _options(lab, *lines):
    """Options from a <Module> block, through the plugin's own config parser."""
    block = fake_collectd.module_block(fake_collectd.option("Match", match_regex(lab)),
                                       fake_collectd.option("Ignore", others_regex(lab)),
                                       *(fake_collectd.option(*line) for line in lines))
    opts, _, _ = config.parse_config(block)
    return opts


def test_interface_and_ignore_selected_options(lab):
    a = lab.box("a")
    # Interface "/^eth/" + IgnoreSelected true: eth0 dropped, every other interface (here lo) reported,
    # as collectd's interface plugin does.
    dropped = lab.in_host(Collector, _options(lab, ("Interface", "/^eth/"), ("IgnoreSelected", True)))
    got, ref = settled_pass(lab, dropped, [a])
    assert {ti for _, ti, _ in if_samples(got["cgroup-a"])} == {"lo"}
    assert as_netdev(if_samples(got["cgroup-a"])) == {"lo": ref["a"]["lo"]}
    assert got["cgroup-a"].peers is None          # lo has no veth peer
    # Interface "/^eth/" alone: only eth0.
    only = lab.in_host(Collector, _options(lab, ("Interface", "/^eth/")))
    got, ref = settled_pass(lab, only, [a])
    assert as_netdev(if_samples(got["cgroup-a"])) == {"eth0": ref["a"]["eth0"]}
    # Both names selected and ignored: no interface left, no if_* at all.
    none = lab.in_host(Collector, _options(lab, ("Interface", "/^eth/"), ("Interface", "lo"),
                                           ("IgnoreSelected", True)))
    got, _ = settled_pass(lab, none, [a])
    assert not if_samples(got["cgroup-a"]) and got["cgroup-a"].samples
    # Metrics without "network": no namespace is entered at all.
    nonet = lab.in_host(Collector, _options(lab, ("Metrics", "cpu", "memory")))
    assert nonet.network is None
    got, _ = settled_pass(lab, nonet, [a])
    assert not if_samples(got["cgroup-a"])


# -- 2. the command line ------------------------------------------------------------------------------------------

UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}


def human_range(text):
    """(low, high) of the byte counts that print as ``text`` ("123 B", "1.5 KiB")."""
    number, unit = text.split()
    if unit == "B":
        return int(number), int(number)
    n = float(number) * UNITS[unit]
    return n - 0.051 * UNITS[unit], n + 0.051 * UNITS[unit]      # printed with one decimal


def parse_table(text):
    """[{column: cell}] of the CLI table (columns padded to the widest cell, two spaces apart)."""
    lines = text.rstrip("\n").splitlines()
    header = lines[0]
    names = re.findall(r"\S+(?: \S+)?", header)       # column names hold at most one space ("CPU s")
    starts = [header.index(n) for n in names]
    rows = []
    for line in lines[1:]:
        cells = [line[s:e].strip() for s, e in zip(starts, starts[1:] + [None])]
        rows.append(dict(zip(names, cells)))
    return rows


def cli(lab, *args):
    """``python -m collectd_cgroups ARGS`` run in the lab host namespace: (stdout, stderr)."""
    res = lab.host_run(sys.executable, "-m", "collectd_cgroups", "--match", match_regex(lab),
                       "--ignore", others_regex(lab), *args, cwd=CHECKOUT)
    return res.stdout.decode(), res.stderr.decode()


def test_cli_table_shows_net_columns_and_host_veth(lab):
    a, b = lab.box("a"), lab.box("b")
    lab.box("h", in_host=True)
    sent = a.send_udp(300, 1400)
    for _ in range(10):
        before = {x.name: proc_net_dev(x.pid)["eth0"] for x in (a, b)}
        out, err = cli(lab, "--host-veth")
        after = {x.name: proc_net_dev(x.pid)["eth0"] for x in (a, b)}
        if before == after:
            break
    assert before == after
    assert not network_warnings(err), err
    print(out)
    header = out.splitlines()[0].split()
    for column in ("NET", "RX", "TX", "HOST", "VETH", "CGROUP"):
        assert column in header, header
    rows = {r["CONTAINER"]: r for r in parse_table(out)}
    assert set(rows) == {"cgroup-a", "cgroup-b", "cgroup-h"}, rows
    for box in (a, b):
        row = rows["cgroup-" + box.name]
        assert row["HOST VETH"] == "eth0=%s" % peer_of(lab, box), row
        assert row["CGROUP"] == box.cgroup
        rx_bytes, tx_bytes = after[box.name][0], after[box.name][4]
        low, high = human_range(row["NET RX"])
        assert low <= rx_bytes <= high, (row, rx_bytes)
        low, high = human_range(row["NET TX"])
        assert low <= tx_bytes <= high, (row, tx_bytes)
    assert human_range(rows["cgroup-a"]["NET TX"])[1] >= sent
    # In the host's namespace: no figures of its own, no peer.
    assert rows["cgroup-h"]["NET RX"] == rows["cgroup-h"]["NET TX"] == "-"
    assert rows["cgroup-h"]["HOST VETH"] == "-"
    # Without --host-veth: no such column.
    out, _ = cli(lab)
    assert "HOST VETH" not in out.splitlines()[0] and "NET RX" in out.splitlines()[0]


def test_cli_json_carries_host_interface_meta(lab):
    a, b = lab.box("a"), lab.box("b")
    lab.box("h", in_host=True)
    a.send_udp(20, 500)
    for _ in range(10):
        before = {x.name: proc_net_dev(x.pid) for x in (a, b)}
        out, err = cli(lab, "--json")
        after = {x.name: proc_net_dev(x.pid) for x in (a, b)}
        if before == after:
            break
    assert before == after
    assert not network_warnings(err), err
    entries = json.loads(out)
    by = {}
    for e in entries:
        by.setdefault(e["plugin_instance"], []).append(e)
    for box in (a, b):
        mine = [e for e in by["cgroup-" + box.name] if e["type"] in IF_TYPES]
        assert sorted((e["type"], e["type_instance"]) for e in mine) == sorted((t, "eth0") for t in IF_TYPES)
        host_if = peer_of(lab, box)
        for e in mine:
            assert e["meta"]["host_interface"] == host_if, e
            assert e["dsnames"] == ["rx", "tx"] and e["dstypes"] == ["derive", "derive"]
            assert e["meta"]["cgroup"] == box.cgroup
        samples = [(e["type"], e["type_instance"], tuple(e["values"])) for e in mine]
        assert as_netdev(samples) == {"eth0": after[box.name]["eth0"]}
        # Only interface values name the host interface.
        assert not [e for e in by["cgroup-" + box.name] if e["type"] not in IF_TYPES and "host_interface" in e["meta"]]
    assert not [e for e in by["cgroup-h"] if e["type"] in IF_TYPES or "host_interface" in e["meta"]]


def test_cli_on_a_captured_tree_has_no_network():
    root = fixtureutil.tree("hybrid-debian12")
    rc, out, err = fixtureutil.run_cli(["--root", root, "--json"])
    assert rc == 0, err
    entries = json.loads(out)
    assert entries and not [e for e in entries if e["type"].startswith("if_")]
    assert not [e for e in entries if "host_interface" in e["meta"]]
    assert not network_warnings(err) and not NETWORK_WORDS.search(err), err
    rc, out, err = fixtureutil.run_cli(["--root", root, "--host-veth"])
    assert rc == 0 and not NETWORK_WORDS.search(err), err
    rows = parse_table(out)
    assert rows and all(r["NET RX"] == r["NET TX"] == r["HOST VETH"] == "-" for r in rows), out


# -- 3. a real collectd -------------------------------------------------------------------------------------------

META_PROBE = textwrap.dedent('''
    """Test write plugin: logs, once per identifier, the host_interface meta data of container values."""
    import collectd

    seen = set()

    def write(v, data=None):
        if v.plugin != "container":
            return
        host_if = (v.meta or {}).get("host_interface")
        key = (v.plugin_instance, v.type, v.type_instance, host_if)
        if key in seen:
            return
        seen.add(key)
        if v.type.startswith("if_"):
            collectd.info("CCGT-META %s %s-%s %s" % (v.plugin_instance, v.type, v.type_instance, host_if))
        elif host_if is not None:
            collectd.error("CCGT-META-WRONG %s %s-%s %s" % (v.plugin_instance, v.type, v.type_instance, host_if))

    collectd.register_write(write)
''')


class NsCollectd(harness.Collectd):
    """The harness's collectd, started under ``nsenter --net=<namespace>`` (nsenter execs collectd: same PID)."""

    def __init__(self, netns_path, workdir, **kw):
        self.netns_path = netns_path
        super().__init__(workdir, **kw)

    def start(self, timeout=30):
        self._stdout = open(os.path.join(self.paths.workdir, "collectd.stdout"), "wb")
        self.proc = subprocess.Popen(["nsenter", "--net=" + self.netns_path, "--", harness.COLLECTD, "-f", "-C",
                                      self.paths.conf], stdout=self._stdout, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=self.paths.workdir, start_new_session=True)
        try:
            harness.wait_until(self._started, timeout, what="collectd to open %s" % self.paths.sock)
        except BaseException:
            self.stop()
            raise
        return self


def watch(pid, boxes, host_ident, until, deadline, interval=1.0):
    """Sample collectd's namespace descriptors, its sockets that live in a container's namespace and its threads
    that are not in the host namespace, every 20 ms until ``until()`` is true (bounded by ``deadline``).

    Returns (samples, held): ``held`` lists what stayed across a pass: present in every sample, or in a run of
    samples (no gap over 0.25 s between two of them) lasting 1.5 intervals or more.  A pass (which holds its
    home descriptor and, for an instant, a container's) is far shorter than that."""
    samples = []
    end = time.monotonic() + deadline
    while True:
        now = time.monotonic()
        seen = set(("nsfs", target) for _, target in nsfs_fds(pid))
        foreign = set()
        for b in boxes:
            try:
                foreign |= netlink_inodes(b.pid)
            except OSError:
                pass
        seen |= set(("container netlink socket", i) for i in socket_inodes(pid) & foreign)
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                ident = ns_of("/proc/%d/task/%s/ns/net" % (pid, tid))
            except OSError:
                continue
            if ident != host_ident:
                seen.add(("thread elsewhere", tid, ident))
        samples.append((now, seen))
        if until() or now > end:
            break
        time.sleep(0.02)
    held = []
    keys = set().union(*(s for _, s in samples))
    for key in keys:
        if all(key in s for _, s in samples):
            held.append((key, "in every sample"))
            continue
        start = last = None
        for t, s in samples:
            if key in s and start is not None and t - last <= 0.25:
                last = t
            elif key in s:
                start = last = t
            else:
                start = None
            if start is not None and last - start >= 1.5 * interval:
                held.append((key, "for %.2f s" % (last - start)))
                break
    return samples, held


def test_real_collectd_reports_and_holds_no_namespace(lab, tmp_path):
    a, b = lab.box("cda"), lab.box("cdb")
    probe_dir = tmp_path / "probe"
    probe_dir.mkdir()
    (probe_dir / "ccgt_meta_probe.py").write_text(META_PROBE)
    # The drop-in block as shipped, then a second python block of ours for the meta data probe.
    dropin = harness.dropin_text() + textwrap.dedent("""
        <Plugin python>
          ModulePath "%s"
          Import "ccgt_meta_probe"
        </Plugin>
        """ % probe_dir)
    options = ['Match "%s"' % match_regex(lab), 'Ignore "%s"' % others_regex(lab), "Interval 1"]
    cd = NsCollectd(lab.host_path, tmp_path, modules=[options], dropin=dropin)
    ident = lambda box, t, ti="eth0": harness.identifier("cgroup-" + box.name, "%s-%s" % (t, ti))
    with cd:
        try:
            _collectd_flow(lab, cd, a, b, ident)
        finally:
            print(cd.log())


def _collectd_flow(lab, cd, a, b, ident):
    # Its main thread (hence /proc/<pid>/net/*) is in the lab host namespace: that is "home".
    assert ns_of("/proc/%d/ns/net" % cd.pid) == lab.host_ident()
    listed = cd.wait_listval({ident(x, t) for x in (a, b) for t in IF_TYPES}, timeout=30)
    mine = sorted(i for i in listed if "/container-cgroup-cd" in i and "/if_" in i)
    assert mine == sorted(ident(x, t) for x in (a, b) for t in IF_TYPES), mine     # no lo
    # From the first pass on: the first if_octets row is older than the second pass's count-pids row.
    for x in (a, b):
        pids = cd.wait_csv_rows("cgroup-" + x.name, "count-pids", 2)
        octets = cd.wait_csv_rows("cgroup-" + x.name, "if_octets-eth0", 1)
        assert octets[0][0] < pids[1][0], (x.name, octets[:2], pids[:2])
    # Meta data seen by a write plugin: host_interface on every interface value, the right veth.
    for x in (a, b):
        host_if = peer_of(lab, x)
        for t in IF_TYPES:
            line = "CCGT-META cgroup-%s %s-eth0 %s" % (x.name, t, host_if)
            harness.wait_until(lambda: line in cd.log(), 20, what=line)
    assert "CCGT-META-WRONG" not in cd.log()

    # Traffic: the raw counter in the CSV (StoreRates false) grows by at least what was sent.
    rows = cd.wait_csv_rows("cgroup-cda", "if_octets-eth0", 1)
    tx0 = rows[-1][2]
    sent = a.send_udp(100, 1200)
    kernel_tx = proc_net_dev(a.pid)["eth0"][4]
    harness.wait_until(lambda: cd.csv_rows("cgroup-cda", "if_octets-eth0")[-1][2] >= tx0 + sent, 20,
                       what="the CSV tx of cda to grow by %d" % sent)
    assert cd.csv_rows("cgroup-cda", "if_octets-eth0")[-1][2] <= proc_net_dev(a.pid)["eth0"][4]
    assert kernel_tx - tx0 >= sent

    # Several passes: nothing held on any namespace between them, no thread left elsewhere.
    start = len(cd.csv_rows("cgroup-cdb", "if_octets-eth0"))
    samples, held = watch(cd.pid, [a, b], lab.host_ident(),
                          until=lambda: len(cd.csv_rows("cgroup-cdb", "if_octets-eth0")) >= start + 5, deadline=60)
    passes = len(cd.csv_rows("cgroup-cdb", "if_octets-eth0")) - start
    transient = sum(1 for _, s in samples if s)
    print("watched collectd %d over %d passes: %d samples, %d of them during a pass (%s)"
          % (cd.pid, passes, len(samples), transient, sorted(set().union(*(s for _, s in samples)))))
    assert passes >= 5
    assert not held, held
    own_netlink = socket_inodes(cd.pid) & netlink_inodes(cd.pid)      # the host's view: those are fine
    for x in (a, b):
        assert not (socket_inodes(cd.pid) & netlink_inodes(x.pid)), x.name
    print("collectd's netlink sockets in its own namespace: %s" % sorted(own_netlink))

    # The container stops (its process killed, its cgroup removed): its namespace goes, and with it the host
    # end of its veth, while collectd keeps running and keeps dispatching for the other container.
    gone_at = time.monotonic()
    a.remove()
    wait_for(lambda: a.host_if not in lab.host_links(), 30, "the host end of %s's veth to go" % a.name)
    print("host end %s gone %.2f s after the container stopped" % (a.host_if, time.monotonic() - gone_at))
    cd.wait_gone(harness.identifier("cgroup-cda", ""), timeout=30)
    n = len(cd.csv_rows("cgroup-cdb", "if_octets-eth0"))
    cd.wait_csv_rows("cgroup-cdb", "if_octets-eth0", n + 3, timeout=30)
    a_rows = len(cd.csv_rows("cgroup-cda", "if_octets-eth0"))
    n = len(cd.csv_rows("cgroup-cdb", "if_octets-eth0"))
    cd.wait_csv_rows("cgroup-cdb", "if_octets-eth0", n + 2, timeout=30)
    assert len(cd.csv_rows("cgroup-cda", "if_octets-eth0")) == a_rows, "a stopped container still dispatched"
    assert cd.alive(), cd.output()
    assert ident(b, "if_octets") in cd.listval()
    log = cd.log()
    assert not cd.read_failures(), log
    assert "Traceback" not in log and "Unhandled python exception" not in log, log
    assert not network_warnings(log), network_warnings(log)


HOLDER = textwrap.dedent("""
    import ctypes, os, socket, sys, threading, time
    libc = ctypes.CDLL(None, use_errno=True)
    held = os.open("/proc/%d/ns/net" % int(sys.argv[1]), os.O_RDONLY)
    ready = threading.Event()
    def inside():
        if libc.setns(held, 0x40000000) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
        sock.bind((0, 0))       # listed in /proc/net/netlink once bound (a send autobinds, as the plugin's do)
        ready.set()
        time.sleep(120)
    threading.Thread(target=inside, daemon=True).start()
    ready.wait(30)
    print("ready", flush=True)
    time.sleep(120)
""")


def test_watch_sees_what_a_leak_would_hold(lab):
    """Control for ``watch``: a process of ours that keeps a container's namespace descriptor, a netlink socket
    made inside it and a thread left there is caught on all three counts; while it lives the namespace outlives
    the container (the host end of the veth stays), and goes once the holder is gone."""
    a = lab.box("leak")
    holder = subprocess.Popen([sys.executable, "-I", "-c", HOLDER, str(a.pid)], stdout=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        assert holder.stdout.readline().strip() == b"ready"
        _, held = watch(holder.pid, [a], ns_of("/proc/%d/ns/net" % holder.pid), until=lambda: False, deadline=1.8)
        keys = [key for key, _ in held]
        assert {key[0] for key in keys} == {"nsfs", "container netlink socket", "thread elsewhere"}, held
        assert ("nsfs", "net:[%d]" % a.ns()[1]) in keys
        assert [key for key in keys if key[0] == "thread elsewhere"][0][2] == a.ns()
        a.remove()
        time.sleep(1.0)
        assert a.host_if in lab.host_links()
    finally:
        holder.kill()
        holder.wait(10)
        holder.stdout.close()
    wait_for(lambda: a.host_if not in lab.host_links(), 30, "the host end of the veth to go")


# -- 4. the README contract ---------------------------------------------------------------------------------------

def types_db():
    """{type: [DS type, ...]} from collectd's types.db (lower case)."""
    out = {}
    with open(fake_collectd.TYPES_DB) as f:
        for line in f:
            fields = line.split("#", 1)[0].split()
            if fields:
                out[fields[0]] = [spec.rstrip(",").split(":")[1].lower() for spec in fields[1:]]
    return out


def test_live_interface_identifiers_are_documented(lab):
    a = lab.box("a")
    a.sh("ip link add ccgd0 type veth peer name ccgd1")      # a second interface name inside, no host peer
    collector = lab.in_host(Collector, lab_options(lab))
    results = lab.in_host(collector.collect)
    emitted = {}
    for item in results:
        for type_, ti, values in item.samples:
            if type_.startswith("if_"):
                emitted[(type_, ti)] = [t for _, t in identifiers.data_sources(type_)]
    assert {ti for _, ti in emitted} == {"eth0", "ccgd0", "ccgd1"}, emitted
    assert {t for t, _ in emitted} == set(IF_TYPES)
    db = types_db()
    missing, wrong, rows = [], [], set()
    for (type_, ti), dstypes in sorted(emitted.items()):
        assert dstypes == db[type_], (type_, dstypes, db[type_])
        row = contract._documented(type_, ti)
        if row is None:
            missing.append("%s-%s" % (type_, ti))
        elif contract.TABLE[row] != "derive" or set(dstypes) != {"derive"}:
            wrong.append("%s-%s: README %s, emitted %s" % (type_, ti, contract.TABLE[row], dstypes))
        else:
            rows.add(row)
    assert not missing, "identifiers missing from README.rst: %s" % missing
    assert not wrong, wrong
    # The rows no captured tree can produce are exactly the ones this live pass covers.
    assert rows == contract.LIVE_ONLY, (rows, contract.LIVE_ONLY)
